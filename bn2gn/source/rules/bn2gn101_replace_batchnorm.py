"""BN2GN101: a BatchNorm2d construction in a non-backbone layer becomes ``get_group_norm(C)``.

``eps`` and ``affine`` are kept (as keywords, since get_group_norm's second parameter is
num_groups); ``momentum`` and ``track_running_stats`` go, GroupNorm has neither.
"""

from __future__ import annotations

from typing import Dict, List, Set, Tuple

import libcst as cst

from ...core.file_results import Change, Refusal
from ...core.rule_codes import Rule
from ..codemod import Context, Outcome
from ..support.names import HELPER

#: BatchNorm2d(num_features, eps, momentum, affine, track_running_stats, device, dtype)
BN_PARAMS = ("num_features", "eps", "momentum", "affine", "track_running_stats", "device", "dtype")
KEPT = ("eps", "affine")


class ReplaceBatchNorm(cst.CSTTransformer):
    """Replace the calls that start at the given (line, 0-based column) positions.

    Runs in the shared pass (``support.combined``), which gives ``start_of``.
    """

    def __init__(self, positions: Set[Tuple[int, int]]):
        super().__init__()
        self.positions = set(positions)
        self.lines = {line for line, _ in positions}
        self.converted: List[Tuple[int, str]] = []  # (line, what changed)
        self.refused: List[Tuple[int, str]] = []

    def descends(self, span) -> bool:
        """Only statements holding the start of a site are looked into."""
        return any(span.holds(line) for line in self.lines)

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        start = self.start_of(original)
        if start not in self.positions:
            return updated
        # only the innermost call at a position is the site: `nn.BatchNorm2d(8).cuda(0)` starts there too
        self.positions.discard(start)
        line = start[0]
        mapped = map_batchnorm_args(updated.args)
        if isinstance(mapped, str):
            self.refused.append((line, mapped))
            return updated
        args, dropped = mapped
        note = f"BatchNorm2d -> {HELPER}" + (f" (dropped {', '.join(dropped)})" if dropped else "")
        self.converted.append((line, note))
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
    # eps= and affine= stay where the user wrote them (they are keywords either way)
    name_of = {id(arg): name for name, arg in named.items()}
    kept = [first] + [a for a in args if a is not first and name_of.get(id(a)) in KEPT]
    new_args = [first.with_changes(keyword=None, equal=cst.MaybeSentinel.DEFAULT)]
    for arg in kept[1:]:
        new_args.append(
            arg.with_changes(
                keyword=cst.Name(name_of[id(arg)]),
                equal=cst.AssignEqual(
                    whitespace_before=cst.SimpleWhitespace(""),
                    whitespace_after=cst.SimpleWhitespace(""),
                ),
            )
        )
    dropped = [n for n in BN_PARAMS if n in named and n not in KEPT and n != "num_features"]
    fixed = _fix_commas(new_args, args[-1])
    gone = [a for a in args if a not in kept]
    if gone:
        fixed[-1] = _keep_comments(fixed[-1], kept[-1], gone, args)
    return fixed, dropped


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


def _keep_comments(last: cst.Arg, own: cst.Arg, gone: List[cst.Arg], args) -> cst.Arg:
    """The new last argument, closing the call as the original last argument did, with
    the comments that stood after ``own`` (the argument it was) on its line and those of the dropped
    arguments (``gone``) on lines of their own: no comment of the user's is lost."""
    own_ws = _after(own)
    trailing = own_ws.first_line if _commented(own_ws) else None
    lines = _own_lines(own_ws) if trailing is not None else _comment_lines(own_ws)
    for arg in gone:
        lines += _comment_lines(_after(arg))
    if trailing is None and not lines:
        return last
    end = _after(args[-1])
    between = _after(args[0])  # before the second argument: the indentation of argument lines
    indent = (
        between.last_line
        if isinstance(between, cst.ParenthesizedWhitespace)
        else cst.SimpleWhitespace("")
    )
    merged = cst.ParenthesizedWhitespace(
        first_line=trailing or cst.TrailingWhitespace(),
        empty_lines=[line.with_changes(whitespace=indent) for line in lines],
        indent=end.indent if isinstance(end, cst.ParenthesizedWhitespace) else True,
        last_line=end.last_line
        if isinstance(end, cst.ParenthesizedWhitespace)
        else cst.SimpleWhitespace(""),
    )
    if isinstance(last.comma, cst.Comma):
        return last.with_changes(comma=last.comma.with_changes(whitespace_after=merged))
    return last.with_changes(whitespace_after_arg=merged)


def _after(arg: cst.Arg):
    """The whitespace (and comments) after an argument's comma, or after the argument when it has none."""
    return (
        arg.comma.whitespace_after if isinstance(arg.comma, cst.Comma) else arg.whitespace_after_arg
    )


def _commented(ws) -> bool:
    return isinstance(ws, cst.ParenthesizedWhitespace) and ws.first_line.comment is not None


def _own_lines(ws) -> List[cst.EmptyLine]:
    return [line for line in ws.empty_lines if line.comment is not None]


def _comment_lines(ws) -> List[cst.EmptyLine]:
    """Every comment in ``ws`` as a line of its own."""
    if not isinstance(ws, cst.ParenthesizedWhitespace):
        return []
    first = [cst.EmptyLine(comment=ws.first_line.comment)] if _commented(ws) else []
    return first + _own_lines(ws)


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
