"""BN2GN101 (seed3 §2): a BatchNorm2d construction in a non-backbone layer becomes ``get_group_norm(C)``.

``eps`` and ``affine`` are kept (as keywords, since get_group_norm's second parameter is
num_groups); ``momentum`` and ``track_running_stats`` go, GroupNorm has neither.
"""

from __future__ import annotations

from typing import Dict, List, Set, Tuple

import libcst as cst
from libcst.metadata import PositionProvider

from ..pipeline import Change, Refusal
from ..rules import Rule
from .base import Context, Outcome

HELPER = "get_group_norm"
#: BatchNorm2d(num_features, eps, momentum, affine, track_running_stats, device, dtype)
BN_PARAMS = ("num_features", "eps", "momentum", "affine", "track_running_stats", "device", "dtype")
KEPT = ("eps", "affine")


class ReplaceBatchNorm(cst.CSTTransformer):
    """Replace the calls that start at the given (line, 0-based column) positions."""

    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, positions: Set[Tuple[int, int]]):
        super().__init__()
        self.positions = set(positions)
        self.converted: List[Tuple[int, str]] = []  # (line, what changed)
        self.refused: List[Tuple[int, str]] = []

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        start = self.get_metadata(PositionProvider, original).start
        if (start.line, start.column) not in self.positions:
            return updated
        # only the innermost call at a position is the site: `nn.BatchNorm2d(8).cuda(0)` starts there too
        self.positions.discard((start.line, start.column))
        mapped = map_batchnorm_args(updated.args)
        if isinstance(mapped, str):
            self.refused.append((start.line, mapped))
            return updated
        args, dropped = mapped
        note = f"BatchNorm2d -> {HELPER}" + (f" (dropped {', '.join(dropped)})" if dropped else "")
        self.converted.append((start.line, note))
        return updated.with_changes(func=cst.Name(HELPER), args=args)


def map_batchnorm_args(args) -> "Tuple[List[cst.Arg], List[str]] | str":
    """The get_group_norm arguments for a BatchNorm2d call, or the reason it cannot be mapped."""
    named: Dict[str, cst.Arg] = {}
    for index, arg in enumerate(args):
        if arg.star:
            return "uses *args/**kwargs; convert it by hand"
        if arg.keyword is None:
            if index >= len(BN_PARAMS):
                return "has more positional arguments than BatchNorm2d takes"
            named[BN_PARAMS[index]] = arg
        else:
            named[arg.keyword.value] = arg
    if "num_features" not in named:
        return "has no num_features argument"
    unknown = set(named) - set(BN_PARAMS)
    if unknown:
        return f"has unknown argument(s) {', '.join(sorted(unknown))}"
    first = named["num_features"]
    new_args = [first.with_changes(keyword=None, equal=cst.MaybeSentinel.DEFAULT)]
    for name in KEPT:
        if name in named:
            new_args.append(
                named[name].with_changes(
                    keyword=cst.Name(name),
                    equal=cst.AssignEqual(
                        whitespace_before=cst.SimpleWhitespace(""),
                        whitespace_after=cst.SimpleWhitespace(""),
                    ),
                )
            )
    dropped = [n for n in BN_PARAMS if n in named and n not in KEPT and n != "num_features"]
    return _fix_commas(new_args, args[-1]), dropped


def _fix_commas(args: List[cst.Arg], last: cst.Arg) -> List[cst.Arg]:
    """Commas between arguments; the last one takes the original last argument's comma and the
    whitespace before ``)``, so a call closed on its own line stays closed on its own line."""
    fixed = []
    for index, arg in enumerate(args):
        if index < len(args) - 1:
            comma = (
                arg.comma
                if isinstance(arg.comma, cst.Comma)
                else cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
            )
            fixed.append(
                arg.with_changes(comma=comma, whitespace_after_arg=cst.SimpleWhitespace(""))
            )
        else:
            fixed.append(
                arg.with_changes(comma=last.comma, whitespace_after_arg=last.whitespace_after_arg)
            )
    return fixed


class ReplaceBatchNormCodemod:
    """BN2GN101 in the registry: the job's converted call sites, in the shared pass."""

    rules = (Rule.REPLACE_BATCHNORM,)

    def applies(self, context: Context) -> bool:
        return Rule.REPLACE_BATCHNORM in context.rules and bool(context.job.converted_calls)

    def transformer(self, module: cst.Module, context: Context) -> ReplaceBatchNorm:
        return ReplaceBatchNorm(set(context.job.converted_calls))

    def outcome(
        self, module: cst.Module, transformer: ReplaceBatchNorm, context: Context
    ) -> Outcome:
        rule, display = Rule.REPLACE_BATCHNORM, context.job.display
        return Outcome(
            module,
            changes=tuple(Change(rule, line, note) for line, note in transformer.converted),
            notes=tuple(
                f"{display}:{line}: BatchNorm2d not converted: {why}"
                for line, why in transformer.refused
            ),
            refused=tuple(Refusal(rule, display, line, why) for line, why in transformer.refused),
        )
