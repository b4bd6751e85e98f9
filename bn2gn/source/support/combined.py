"""Run several per-file transformers in one LibCST traversal that shares one metadata resolution.

Each part stays a transformer of its own (one behaviour per module); this only chains their
``visit_*``/``leave_*`` calls node by node, in the order given. Parts must need no metadata
beyond ``PositionProvider`` (positions of the original nodes). ``OnePass`` makes such parts one
entry of the codemod registry (``bn2gn.source.registry``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Protocol, Sequence, Tuple

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from ..codemod import Context, Outcome

if TYPE_CHECKING:
    from ...core.rule_codes import Rule


class Combined(cst.CSTTransformer):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, parts: Sequence[cst.CSTTransformer]):
        super().__init__()
        self.parts = list(parts)

    def on_visit(self, node: cst.CSTNode) -> bool:
        if isinstance(node, cst.Module):
            for part in self.parts:
                part.metadata = self.metadata  # the resolution this pass was given
        for part in self.parts:
            part.on_visit(node)
        return True

    def on_leave(self, original_node, updated_node):
        for part in self.parts:
            updated_node = part.on_leave(original_node, updated_node)
            if not isinstance(updated_node, cst.CSTNode):
                break  # a part removed the node
        return updated_node


def transform(module: cst.Module, parts: Sequence[cst.CSTTransformer]) -> cst.Module:
    """``module`` after every part, in one pass; no copy of the tree, positions resolved once."""
    if not parts:
        return module
    return MetadataWrapper(module, unsafe_skip_copy=True).visit(Combined(parts))


class PassPart(Protocol):
    """A codemod whose work is one transformer in a shared traversal, plus what it does after it."""

    rules: "Tuple[Rule, ...]"

    def applies(self, context: Context) -> bool:
        """Whether the part has anything to do in this file."""

    def transformer(self, module: cst.Module, context: Context) -> cst.CSTTransformer:
        """The part's transformer, built from the module as it is before the pass."""

    def outcome(
        self, module: cst.Module, transformer: cst.CSTTransformer, context: Context
    ) -> Outcome:
        """After the pass: the report from ``transformer`` and any follow-up edit of ``module``."""


class OnePass:
    """Codemods that share one traversal (one parse, one metadata resolution); a codemod itself.

    The transformers run node by node in the order of ``parts``; afterwards each part's
    ``outcome`` runs in the same order, seeing the changes of the parts before it.
    """

    def __init__(self, *parts: PassPart):
        self.parts = parts
        self.rules = tuple(rule for part in parts for rule in part.rules)

    def applies(self, context: Context) -> bool:
        return any(part.applies(context) for part in self.parts)

    def transform(self, module: cst.Module, context: Context) -> Outcome:
        active = [part for part in self.parts if part.applies(context)]
        transformers = [part.transformer(module, context) for part in active]
        module = transform(module, transformers)
        changes, notes, refused = list(context.changes), [], []
        for part, transformer in zip(active, transformers):
            seen = dataclasses.replace(context, changes=tuple(changes))
            outcome = part.outcome(module, transformer, seen)
            module = outcome.module
            changes += outcome.changes
            notes += outcome.notes
            refused += outcome.refused
        return Outcome(module, tuple(changes[len(context.changes) :]), tuple(notes), tuple(refused))
