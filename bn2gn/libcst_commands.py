"""bn2gn's rules as LibCST ``CodemodCommand``s, for projects that run their migrations with LibCST's runner.

    python -m libcst.tool codemod --no-format -x bn2gn.libcst_commands.Rewrite lib/models

Each command wraps the same per-file transform ``bn2gn rewrite`` / ``bn2gn patch-trainer`` run
(through the seam ``bn2gn.api``), so the output is byte for byte theirs. Every rule needs the
whole-tree plan — the rewrite rules for their sites, the patch-trainer rules for the backbone the
injected freeze carries: it is built once, when the command is created, from ``--scan PATH``
(default: the current folder) and the usual analysis options, or read from ``--plan PLAN.json``. ``--no-format``
keeps LibCST from running black over every changed file (bn2gn formats only what it injects).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, FrozenSet, Optional

import libcst as cst
from libcst.codemod import CodemodCommand, CodemodContext

from . import api as engine
from .core.errors import Bn2gnError
from .core.rule_codes import Rule


class Bn2gnCodemodError(Exception):
    """A file bn2gn could not transform (reported by the runner as a failed file)."""


def _analysis_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scan",
        dest="scan_paths",
        action="append",
        metavar="PATH",
        help="File or folder the whole-tree analysis reads (repeatable; default: the current folder).",
    )
    parser.add_argument(
        "--plan",
        dest="plan_file",
        metavar="PLAN.json",
        help="Apply the decisions of a saved plan (bn2gn scan -o) instead of analysing.",
    )
    for flag, dest, what in (
        ("--root", "roots", "root model class"),
        ("--convert", "convert", "CLASS[.METHOD] to convert"),
        ("--keep", "keep", "CLASS[.METHOD] to keep"),
        ("--include", "include", "GLOB to enter"),
        ("--exclude", "exclude", "GLOB to skip"),
    ):
        parser.add_argument(
            flag,
            dest=dest,
            action="append",
            default=[],
            help=f"{what} (repeatable), as for bn2gn scan",
        )
    _config_args(parser)


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backbone-attr",
        dest="backbone_attrs",
        action="append",
        default=[],
        metavar="NAME",
        help="Attribute holding backbone layers (repeatable; added to backbone, base_layer).",
    )
    parser.add_argument(
        "--config", dest="config_file", metavar="FILE", help="Read [tool.bn2gn] from FILE."
    )


def _session(
    scan_paths=None,
    plan_file=None,
    roots=(),
    convert=(),
    keep=(),
    include=(),
    exclude=(),
    backbone_attrs=(),
    config_file=None,
) -> "engine.Session":
    """The seam's session for the analysis flags every command takes (the plan is built lazily)."""
    return engine.Session.open(
        [Path(p) for p in scan_paths or ["."]],
        Path(config_file) if config_file else None,
        Path(plan_file) if plan_file else None,
        backbone_names=backbone_attrs,
        roots=roots,
        convert=convert,
        keep=keep,
        include=include,
        exclude=exclude,
    )


def _fail(exc: Bn2gnError) -> None:
    """Bad options: one line and bn2gn's exit code, as from the bn2gn command line (these commands
    take their options under the same flags)."""
    print(f"bn2gn: error: {exc.text.render({})}", file=sys.stderr)
    raise SystemExit(exc.code)


class _Bn2gnCommand(CodemodCommand):
    """Shared: turn a file's tree into bn2gn's SourceText and the FileResult back into a tree."""

    def _finish(self, tree: cst.Module, result) -> cst.Module:
        for note in result.notes:
            self.warn(note)
        if result.status == "failed":
            raise Bn2gnCodemodError(result.error)
        return cst.parse_module(result.new_bytes) if result.status == "changed" else tree

    def _source(self, tree: cst.Module):
        return engine.SourceText(
            path=Path(self.context.filename or "<stdin>"),
            raw=tree.bytes,
            text=tree.code,
            encoding=tree.encoding,
            bom=False,
        )


class Rewrite(_Bn2gnCommand):
    DESCRIPTION = "bn2gn rewrite: non-backbone BatchNorm2d -> get_group_norm(C), helper injected, init loops widened."
    #: None: the rules bn2gn rewrite runs with the configuration's select/skip
    RULES: Optional[FrozenSet[Rule]] = None

    @staticmethod
    def add_args(arg_parser: argparse.ArgumentParser) -> None:
        _analysis_args(arg_parser)

    def __init__(self, context: CodemodContext, **analysis) -> None:
        """``analysis``: the flags ``_analysis_args`` defines (scan paths, plan, overrides, settings)."""
        super().__init__(context)
        try:
            session = _session(**analysis)
            rules = self.RULES if self.RULES is not None else session.rewrite_rules()
            self.jobs: Dict[str, object] = session.rewrite_jobs(rules)
        except Bn2gnError as exc:
            _fail(exc)

    def transform_module_impl(self, tree: cst.Module) -> cst.Module:
        job = (
            self.jobs.get(engine.file_key(self.context.filename)) if self.context.filename else None
        )
        if job is None:  # nothing planned here: bn2gn rewrite would not touch the file
            return tree
        return self._finish(tree, engine.rewrite_one(self._source(tree), job))


class ReplaceBatchNorm(Rewrite):
    DESCRIPTION = f"{Rule.REPLACE_BATCHNORM.code} {Rule.REPLACE_BATCHNORM.description}"
    RULES = frozenset({Rule.REPLACE_BATCHNORM})


class InjectGroupNormHelper(Rewrite):
    DESCRIPTION = (
        f"{Rule.INJECT_GROUP_NORM_HELPER.code} {Rule.INJECT_GROUP_NORM_HELPER.description}"
    )
    RULES = frozenset({Rule.INJECT_GROUP_NORM_HELPER})


class InitLoops(Rewrite):
    DESCRIPTION = f"{Rule.INIT_LOOPS.code} {Rule.INIT_LOOPS.description}"
    RULES = frozenset({Rule.INIT_LOOPS})


class PatchTrainer(_Bn2gnCommand):
    DESCRIPTION = (
        "bn2gn patch-trainer: freeze the backbone BatchNorm before the optimizer, re-assert eval() "
        "after every .train()."
    )
    #: None: patch-trainer's default rules with the configuration's select/skip
    RULES: Optional[FrozenSet[Rule]] = None

    @staticmethod
    def add_args(arg_parser: argparse.ArgumentParser) -> None:
        _analysis_args(arg_parser)
        arg_parser.add_argument(
            "--optimizer-call",
            dest="optimizer_calls",
            action="append",
            default=[],
            metavar="NAME",
            help="Also treat calls to NAME as building the optimizer.",
        )
        arg_parser.add_argument(
            "--model-var", dest="model_var", metavar="EXPR", help="The model the optimizer trains."
        )
        arg_parser.add_argument(
            "--helper-module",
            dest="helper_module",
            metavar="MODULE",
            help="Import the freeze helpers from MODULE instead of defining them.",
        )
        arg_parser.add_argument(
            "--exclude-frozen-from-optimizer",
            dest="exclude_frozen",
            action="store_true",
            help="Also run BN2GN204.",
        )

    def __init__(
        self,
        context: CodemodContext,
        optimizer_calls=(),
        model_var=None,
        helper_module=None,
        exclude_frozen=False,
        **analysis,
    ) -> None:
        super().__init__(context)
        try:
            session = _session(**analysis)
            session.tolerate_no_model = True  # a tree of train scripts only: the configured names
            self.options = session.trainer_options(
                exclude_frozen, optimizer_calls, model_var, helper_module
            )
        except Bn2gnError as exc:
            _fail(exc)
        if self.RULES is not None:
            self.options = engine.replace_rules(self.options, self.RULES)

    def transform_module_impl(self, tree: cst.Module) -> cst.Module:
        result, _ = engine.patch_one(self._source(tree), self.options)
        return self._finish(tree, result)


class FreezeBeforeOptimizer(PatchTrainer):
    DESCRIPTION = f"{Rule.FREEZE_BEFORE_OPTIMIZER.code} {Rule.FREEZE_BEFORE_OPTIMIZER.description}"
    RULES = frozenset({Rule.FREEZE_BEFORE_OPTIMIZER})


class InjectFreezeHelper(PatchTrainer):
    DESCRIPTION = f"{Rule.INJECT_FREEZE_HELPER.code} {Rule.INJECT_FREEZE_HELPER.description}"
    RULES = frozenset({Rule.INJECT_FREEZE_HELPER})


class EvalAfterTrain(PatchTrainer):
    DESCRIPTION = f"{Rule.EVAL_AFTER_TRAIN.code} {Rule.EVAL_AFTER_TRAIN.description}"
    RULES = frozenset({Rule.EVAL_AFTER_TRAIN})


class ExcludeFrozenFromOptimizer(PatchTrainer):
    DESCRIPTION = f"{Rule.EXCLUDE_FROZEN_FROM_OPTIMIZER.code} {Rule.EXCLUDE_FROZEN_FROM_OPTIMIZER.description}"
    RULES = frozenset({Rule.EXCLUDE_FROZEN_FROM_OPTIMIZER})


#: rule code -> command class, one per rule (``libcst_commands.<Class>`` in LibCST's runner)
COMMANDS = {
    cls.RULES and next(iter(cls.RULES)).code: cls
    for cls in (
        ReplaceBatchNorm,
        InjectGroupNormHelper,
        InitLoops,
        FreezeBeforeOptimizer,
        InjectFreezeHelper,
        EvalAfterTrain,
        ExcludeFrozenFromOptimizer,
    )
}
