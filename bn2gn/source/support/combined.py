"""Run several per-file transformers in one LibCST traversal that shares one way to find starts.

Each part stays a transformer of its own (one behaviour per module); this only chains their
``visit_*``/``leave_*`` calls node by node, in the order given. Parts ask ``start_of(node)`` for
where a call or an ``if`` statement of the original tree starts. Those starts are read off the
``ast`` of the same text as the traversal goes (``node_starts``), and the traversal goes only into
the statements some part ``descends`` into; where the two parses do not pair up, the pass runs
again on LibCST's ``PositionProvider``, into every statement. ``OnePass`` makes such parts one
entry of the codemod registry (``bn2gn.source.registry``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, List, Optional, Protocol, Sequence, Set, Tuple

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from ...core.file_results import check_python
from ..codemod import Context, Outcome
from .node_starts import Mismatch, Span, StatementTracker

if TYPE_CHECKING:
    from ...core.rule_codes import Rule


class Combined(cst.CSTTransformer):
    """The parts' transformers, node by node; starts from ``tracker``, else from PositionProvider."""

    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, parts: Sequence[cst.CSTTransformer], tracker: Optional[StatementTracker]):
        super().__init__()
        self.parts = list(parts)
        self.tracker = tracker
        self._skipped: Set[int] = set()
        for part in self.parts:
            part.start_of = self.start_of

    def start_of(self, node: cst.CSTNode) -> Optional[Tuple[int, int]]:
        """(line, 0-based column in characters) where ``node`` (a call or an ``if``) starts;
        None for a call inside an f-string when the starts come from ``ast``."""
        if self.tracker is not None:
            return self.tracker.starts.get(id(node))
        start = self.get_metadata(PositionProvider, node).start
        return start.line, start.column

    def on_visit(self, node: cst.CSTNode) -> bool:
        if self.tracker is not None:
            span = self.tracker.enter(node)
            if span is not None:
                if not any(_descends(part, span) for part in self.parts):
                    self._skipped.add(id(node))
                    return False
                self.tracker.descend(node)
        for part in self.parts:
            part.on_visit(node)
        return True

    def on_leave(self, original_node, updated_node):
        if self.tracker is not None:
            if id(original_node) in self._skipped:
                return updated_node  # no part saw it
            self.tracker.leave(original_node)
        for part in self.parts:
            updated_node = part.on_leave(original_node, updated_node)
            if not isinstance(updated_node, cst.CSTNode):
                break  # a part removed the node
        return updated_node


def _descends(part: cst.CSTTransformer, span: Span) -> bool:
    descends = getattr(part, "descends", None)
    return True if descends is None else descends(span)


def transform(module: cst.Module, text: str, make_parts) -> "Tuple[cst.Module, List]":
    """``module`` after the parts ``make_parts()`` returns, in one pass; no copy of the tree.

    ``text`` is what ``module`` was parsed from. Returns the new module and the parts that ran.
    """
    try:
        tracker = StatementTracker(module, check_python(text), text)
        parts = make_parts()
        return module.visit(Combined(parts, tracker)), parts
    except (Mismatch, SyntaxError, ValueError):
        parts = make_parts()  # afresh: the first pass may have stopped half-way
        wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
        return wrapper.visit(Combined(parts, None)), parts


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
    """Codemods that share one traversal (one parse, one way to find starts); a codemod itself.

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
        if not active:
            return Outcome(module)
        before = module
        module, transformers = transform(
            module,
            context.source.text,
            lambda: [part.transformer(before, context) for part in active],
        )
        changes, notes, refused = list(context.changes), [], []
        for part, transformer in zip(active, transformers):
            seen = dataclasses.replace(context, changes=tuple(changes))
            outcome = part.outcome(module, transformer, seen)
            module = outcome.module
            changes += outcome.changes
            notes += outcome.notes
            refused += outcome.refused
        return Outcome(module, tuple(changes[len(context.changes) :]), tuple(notes), tuple(refused))
