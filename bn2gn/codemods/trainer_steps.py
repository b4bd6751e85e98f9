"""The patch-trainer codemods (BN2GN2xx) as registry entries: thin adapters over the planners.

The recognisers and planners (``freeze_before_optimizer``, ``eval_after_train``, ``exclude_frozen``)
work on the original tree and hand ``bn2gn.trainer`` a plan; these adapters apply that plan and
inject the helpers, so ``bn2gn.trainer`` only runs the registry.
"""

from __future__ import annotations

import dataclasses
from typing import Any, List, Tuple

import libcst as cst
from libcst.metadata import PositionProvider

from ..errors import Opt, message_text
from ..pipeline import Change
from ..rules import Rule
from .base import Context, Outcome
from .freeze_helper import InjectFreezeHelper
from .inject import InsertStatements, import_end_index


@dataclasses.dataclass(frozen=True)
class TrainerPlan:
    """``Context.job`` for the patch-trainer codemods: one file's plan (``trainer.plan_module``)."""

    wrapper: cst.MetadataWrapper  # of the original tree; the insertions' anchors are its nodes
    options: Any  # trainer.TrainerOptions
    insertions: Tuple[Any, ...]  # inject.PlannedInsertion (BN2GN201, BN2GN203)
    rewrites: dict  # original call -> replacement function (BN2GN204)
    changes: Tuple[Change, ...]  # the report of the planned edits

    def helper(self) -> InjectFreezeHelper:
        return InjectFreezeHelper(self.options.backbone_attrs, self.options.helper_module)


class PlannedEdits:
    """BN2GN201, BN2GN203, BN2GN204: the planned insertions and call rewrites, in one pass."""

    rules = (
        Rule.FREEZE_BEFORE_OPTIMIZER,
        Rule.EVAL_AFTER_TRAIN,
        Rule.EXCLUDE_FROZEN_FROM_OPTIMIZER,
    )

    def applies(self, context: Context) -> bool:
        plan = context.job
        return bool(plan.insertions or plan.rewrites or plan.changes)

    def transform(self, module: cst.Module, context: Context) -> Outcome:
        plan = context.job
        module = module.visit(InsertStatements(plan.insertions, plan.rewrites))
        return Outcome(module, changes=plan.changes)


class FreezeHelper:
    """BN2GN202: define (or import) the runtime functions the patched file calls but lacks."""

    rules = (Rule.INJECT_FREEZE_HELPER,)

    def applies(self, context: Context) -> bool:
        return Rule.INJECT_FREEZE_HELPER in context.rules

    def transform(self, module: cst.Module, context: Context) -> Outcome:
        plan = context.job
        module, names = plan.helper().apply(module)
        if not names:
            return Outcome(module)
        helper_module = plan.options.helper_module
        how = f"import from {helper_module}" if helper_module else "define after the imports"
        change = Change(
            Rule.INJECT_FREEZE_HELPER,
            line_after_imports(plan.wrapper),
            f"{how}: {', '.join(names)} [in <module>]",
        )
        return Outcome(module, changes=(change,))


class HelperChecks:
    """Reports only: a helper called but neither defined nor imported (BN2GN202 skipped), and
    injected helpers whose backbone attributes differ from the configuration."""

    rules = ()

    def applies(self, context: Context) -> bool:
        return True

    def transform(self, module: cst.Module, context: Context) -> Outcome:
        plan, path = context.job, context.source.path
        helper = plan.helper()
        notes: List[str] = []
        missing = [] if Rule.INJECT_FREEZE_HELPER in context.rules else helper.missing(module)
        if missing:
            notes.append(
                f"{path}: calls {', '.join(missing)} without defining or importing it "
                + message_text(
                    "(BN2GN202 skipped): import it from bn2gn.runtime or use ", Opt("helper_module")
                )
            )
        stale = None if plan.options.helper_module else helper.stale_defaults(module)
        if stale is not None:
            notes.append(
                f"{path}: the injected helpers default to backbone attributes {stale}, the "
                f"configuration says {tuple(plan.options.backbone_attrs)}; delete them and run "
                "again to update"
            )
        return Outcome(module, notes=tuple(notes))


def line_after_imports(wrapper: cst.MetadataWrapper) -> int:
    """The original line of the first statement after the imports (where the helpers go)."""
    body = wrapper.module.body
    index = import_end_index(wrapper.module)
    if index < len(body):
        return wrapper.resolve(PositionProvider)[body[index]].start.line
    return wrapper.module.code.count("\n") + 1
