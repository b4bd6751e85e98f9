"""The patch-trainer codemods (BN2GN2xx) as registry entries: thin adapters over the planners.

The recognisers and planners (``freeze_before_optimizer``, ``eval_after_train``, ``exclude_frozen``,
``trainer_facts``) decide everything on the file's ``ast`` and hand ``bn2gn.source.patch_trainer`` a
``FilePlan``; these adapters apply that plan with LibCST and inject the helpers, so
``bn2gn.source.patch_trainer`` only runs the registry. Each reports the planned entries of its own rules.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, List, Optional

from ...core.errors import Opt, message_text
from ...core.rule_codes import Rule
from ..codemod import Context, Outcome

if TYPE_CHECKING:  # LibCST only where a file is edited: a file with notes only is not parsed
    import libcst as cst


@dataclasses.dataclass(frozen=True)
class TrainerPlan:
    """``Context.job`` for the patch-trainer codemods: one file's plan (``patch_trainer.plan_module``)."""

    options: Any  # patch_trainer.TrainerOptions
    plan: Any  # patch_patch_trainer.FilePlan: insertions anchored at (line, column), rewrites, entries, helpers

    def changes_for(self, rules) -> tuple:
        return tuple(e.change() for e in self.plan.entries if e.rule in rules)


class PlannedEdits:
    """BN2GN201, BN2GN203, BN2GN204: the planned insertions and call rewrites, in one pass."""

    rules = (
        Rule.FREEZE_BEFORE_OPTIMIZER,
        Rule.EVAL_AFTER_TRAIN,
        Rule.EXCLUDE_FROZEN_FROM_OPTIMIZER,
    )

    def applies(self, context: Context) -> bool:
        plan = context.job.plan
        return bool(plan.insertions or plan.rewrites)

    def transform(self, module: cst.Module, context: Context) -> Outcome:
        from .inject import InsertStatements

        insertions, rewrites = anchored(module, context.job.plan)
        module = module.visit(InsertStatements(insertions, rewrites))
        return Outcome(module, changes=context.job.changes_for(self.rules))


class FreezeHelper:
    """BN2GN202: define (or import) the runtime functions the patched file calls but lacks."""

    rules = (Rule.INJECT_FREEZE_HELPER,)

    def applies(self, context: Context) -> bool:
        plan = context.job.plan
        return Rule.INJECT_FREEZE_HELPER in context.rules and bool(
            plan.helpers or plan.update_helpers
        )

    def transform(self, module: cst.Module, context: Context) -> Outcome:
        from ..rules.bn2gn202_freeze_helper import InjectFreezeHelper

        options, plan = context.job.options, context.job.plan
        helper = InjectFreezeHelper(options.backbone.spellings, options.helper_module)
        if plan.update_helpers:
            module = helper.update(module)
        if plan.helpers:
            module, _ = helper.apply(module, plan.helpers)
        return Outcome(module, changes=context.job.changes_for(self.rules))


class HelperChecks:
    """Reports only (no rule, needs no tree): a helper the file calls but neither defines nor imports
    (BN2GN202 skipped), and injected helpers whose backbone attributes differ from the configuration."""

    rules = ()

    def applies(self, context: Context) -> bool:
        return bool(self._notes(context))

    def transform(self, module: Optional[cst.Module], context: Context) -> Outcome:
        return Outcome(module, notes=tuple(self._notes(context)))

    @staticmethod
    def _notes(context: Context) -> List[str]:
        plan, options, path = context.job.plan, context.job.options, context.source.path
        notes = []
        if plan.helpers and Rule.INJECT_FREEZE_HELPER not in context.rules:
            notes.append(
                f"{path}: calls {', '.join(plan.helpers)} without defining or importing it "
                + message_text(
                    "(BN2GN202 skipped): import it from bn2gn.runtime or use ", Opt("helper_module")
                )
            )
        if plan.stale is not None and not plan.update_helpers:
            notes.append(
                f"{path}: its freeze_backbone_bn / keep_backbone_bn_eval default to backbone "
                f"entries {plan.stale}, the plan's backbone is {options.backbone.spellings}; "
                "set their backbone_attrs default to the plan's entries"
            )
        return notes


def anchored(module: cst.Module, plan) -> tuple:
    """The plan's insertions and call rewrites keyed by the LibCST nodes at their positions."""
    import libcst as cst
    from libcst.metadata import MetadataWrapper, PositionProvider

    from .inject import PlannedInsertion, format_snippet

    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    positions = wrapper.resolve(PositionProvider)
    anchors = {i.anchor for i in plan.insertions}
    statements, small, calls = {}, {}, {}
    for node, where in positions.items():
        start = (where.start.line, where.start.column)
        if start in anchors:
            if isinstance(node, cst.BaseStatement):
                statements[start] = node
            elif isinstance(node, cst.BaseSmallStatement):
                small[start] = node
        elif isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
            end = positions[node.func.attr].end
            if (end.line, end.column) in plan.rewrites:
                calls[node] = plan.rewrites[(end.line, end.column)]
    insertions = []
    for item in plan.insertions:
        anchor = statements.get(item.anchor) or small.get(item.anchor)
        if anchor is None:  # bn2gn's own bug: the plan names a statement LibCST does not have
            raise AssertionError(f"no statement at {item.anchor} for {item.rule.code}")
        insertions.append(
            PlannedInsertion(
                item.rule,
                anchor,
                item.where,
                format_snippet(item.code),
                item.line,
                item.scope,
                item.message,
            )
        )
    if len(calls) != len(plan.rewrites):
        raise AssertionError("a planned parameters() rewrite has no call at its position")
    return insertions, calls
