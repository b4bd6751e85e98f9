"""The ``ast`` toolkit every analysis shares: a fast walk, statement walks, a definition's first
line, dotted names and the node kinds that open a block.

The static analysis, the trainer facts and migrate's readers of argparse and ``sys.path`` all
walk the standard-library tree; one copy of each helper keeps their answers the same.
"""

from __future__ import annotations

import ast
import bisect
import itertools
import operator
from collections import deque
from typing import Dict, List, Optional, Tuple

FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
DEFINITIONS = FUNCTIONS + (ast.ClassDef,)
#: statements that hold a block of statements (``elif`` is an ``If`` inside ``orelse``)
COMPOUND = (
    ast.If,
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.With,
    ast.AsyncWith,
    ast.Try,
    *DEFINITIONS,
) + tuple(getattr(ast, n) for n in ("TryStar", "Match") if hasattr(ast, n))


_AST = ast.AST
#: fields the grammar types as an identifier, a string or a number in every node class (and
#: ``Constant``'s ``value``): they never hold a node, so no walk looks into them. The one
#: exception is ``TypeAlias.name`` (Python 3.12), a ``Name`` node
NEVER_NODES = frozenset(
    ("id", "attr", "arg", "name", "module", "level", "kind", "type_comment", "conversion")
    + ("is_async", "simple", "tag")
)
_TYPE_ALIAS = getattr(ast, "TypeAlias", None)
#: ``child_fields``' answers: a hot loop reads this first and calls it for a class not in it yet
CHILD_FIELDS: Dict[type, Tuple[str, ...]] = {}


def child_fields(cls: type) -> Tuple[str, ...]:
    """The fields of the node class ``cls`` that can hold a node, in ``_fields`` order, without
    ``ctx`` (``Load``, ``Store``: shared singletons no analysis asks for); made once per class."""
    found = CHILD_FIELDS.get(cls)
    if found is None:
        constant = issubclass(cls, ast.Constant)
        never = NEVER_NODES
        if _TYPE_ALIAS is not None and issubclass(cls, _TYPE_ALIAS):
            never = never - {"name"}
        found = CHILD_FIELDS[cls] = tuple(
            f
            for f in cls._fields
            if f != "ctx" and f not in never and not (constant and f == "value")
        )
    return found


def walk(node: ast.AST, parents: bool = False, lines: Optional[List[int]] = None):
    """``ast.walk`` in the same breadth-first order, without the ``ctx`` leaves and without its
    three layers of generators, looking only into the fields that can hold a node
    (``child_fields``). With ``parents``, each node's parent is recorded (``sites.parent_of``)
    before the node is yielded, so every ancestor of a yielded node is known. With ``lines``
    (sorted), no statement that spans none of them is entered: where a word test on the lines tells
    which statements can hold what the caller looks for (a statement holding a node spans the
    node's lines)."""
    todo = [node]
    append = todo.append
    known = CHILD_FIELDS
    for current in todo:
        yield current
        fields = known.get(current.__class__)
        if fields is None:
            fields = child_fields(current.__class__)
        for field in fields:
            value = getattr(current, field, None)
            if value.__class__ is list:
                for item in value:
                    if isinstance(item, _AST) and (
                        lines is None or not isinstance(item, ast.stmt) or spans_a_line(item, lines)
                    ):
                        append(item)
                        if parents:
                            item._bn2gn_parent = current  # type: ignore[attr-defined]
            elif isinstance(value, _AST):
                append(value)
                if parents:
                    value._bn2gn_parent = current  # type: ignore[attr-defined]


def lines_spelling(
    lines: List[str], words, first: int = 1, last: Optional[int] = None
) -> List[int]:
    """The numbers of the ``lines`` that hold one of ``words`` (identifiers: none spans a line
    break), among lines ``first`` to ``last`` (1-based, inclusive; default: all of them).

    Each word is searched for in the whole text at once (``str.find``), its hits mapped to their
    lines: a test of every word on every line cost as much as the walks it spares."""
    words = tuple(words)
    some = lines[first - 1 : last]
    if not all(words) or any("\n" in w for w in words):  # not identifiers: line by line
        return [n for n, line in enumerate(some, first) if any(w in line for w in words)]
    text = "\n".join(some)  # no word holds the separator, so none is found across two lines
    # where each line ends in ``text``, its separator included (``len`` + 1 per line, added in C)
    ends = list(map(operator.add, itertools.accumulate(map(len, some)), itertools.count(1)))
    found = set()
    for word in words:
        at = text.find(word)
        while at >= 0:
            line = bisect.bisect_right(ends, at)  # the 0-based line holding offset ``at``
            found.add(line + first)
            at = text.find(word, ends[line])  # the next line: one hit per line is enough
    return sorted(found)


#: what a statement body holds: statements, and the except / case clauses of ``try`` / ``match``
BLOCKS = (ast.stmt, ast.excepthandler) + ((ast.match_case,) if hasattr(ast, "match_case") else ())


def walk_statements(tree: ast.AST, lines: Optional[List[int]] = None):
    """``ast.walk`` restricted to statements (and except/case clauses), in the same order; with
    ``lines`` (sorted), a statement spanning none of them is neither yielded nor entered.

    Expressions never contain statements, so imports are found without visiting every node.
    """
    queue = deque([tree])
    while queue:
        node = queue.popleft()
        yield node
        queue.extend(
            child
            for child in ast.iter_child_nodes(node)
            if isinstance(child, BLOCKS) and (lines is None or spans_a_line(child, lines))
        )


def spells(lines: List[str], node: ast.stmt, words) -> bool:
    """Whether the source ``lines`` of ``node`` (decorators included) hold one of ``words``; the
    caller makes sure ``lines`` number as ``ast`` does (see ``decide.facts.lines_tell``)."""
    segment = "".join(lines[first_line(node) - 1 : node.end_lineno])
    return any(word in segment for word in words)


def first_line(node: ast.AST) -> int:
    """The line a definition starts on, its decorators included."""
    return min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", ())])


def spans_a_line(node: ast.AST, lines: List[int]) -> bool:
    """Whether ``node`` (its decorators included) spans one of ``lines`` (sorted); a node without
    a position (a ``case`` clause) is taken to."""
    if not hasattr(node, "end_lineno"):
        return True
    first = first_line(node)
    index = bisect.bisect_left(lines, first)
    return index < len(lines) and lines[index] <= node.end_lineno


def dotted(node: ast.AST) -> Optional[str]:
    """``a.b.c`` for a Name/Attribute chain, None for anything else (calls, subscripts)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None
