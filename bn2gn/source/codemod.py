"""The one interface every codemod has (``Codemod``), what it is given and returns, and ``run``.

Nothing here imports LibCST: the pre-filter imports ``source.support.names`` before anything heavy.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, FrozenSet, Iterable, Protocol, Tuple

if TYPE_CHECKING:
    import libcst as cst

    from ..core.file_results import Change, Refusal
    from ..core.rule_codes import Rule
    from ..core.source_files import SourceText


@dataclasses.dataclass(frozen=True)
class Context:
    """What a codemod knows about the file besides its tree."""

    source: "SourceText"
    rules: "FrozenSet[Rule]"  # the rules the run selected
    job: Any  # the engine's per-file input: a rewrite.FileJob, or a trainer_steps.TrainerPlan
    changes: "Tuple[Change, ...]" = ()  # made by the codemods that ran before this one


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A codemod's new tree and what it reports."""

    module: "cst.Module"
    changes: "Tuple[Change, ...]" = ()
    notes: Tuple[str, ...] = ()
    refused: "Tuple[Refusal, ...]" = ()


class Codemod(Protocol):
    #: the rules this codemod implements; empty for one that only reports
    rules: "Tuple[Rule, ...]"

    def applies(self, context: Context) -> bool:
        """Whether the codemod has anything to do (or to say) in this file."""

    def transform(self, module: "cst.Module", context: Context) -> Outcome:
        """The module after this codemod, with its changes, notes and refused sites."""


def run(codemods: Iterable[Codemod], module: "cst.Module", context: Context) -> Outcome:
    """Apply ``codemods`` in order to ``module``; the outcomes are concatenated in that order."""
    changes, notes, refused = [], [], []
    for codemod in codemods:
        if not codemod.applies(context):
            continue
        outcome = codemod.transform(module, context)
        module = outcome.module
        changes += outcome.changes
        notes += outcome.notes
        refused += outcome.refused
        context = dataclasses.replace(context, changes=tuple(changes))
    return Outcome(module, tuple(changes), tuple(notes), tuple(refused))
