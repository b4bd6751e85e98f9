"""Where LibCST's calls and ``if`` statements start, read off the ``ast`` of the same text.

LibCST's ``PositionProvider`` generates the whole file's code once more to record where every node
starts and ends: on a model file that costs more than parsing it. A rewrite needs the start of a
few calls and ``if`` statements, inside a few statements. Both parsers see the same statements in
the same order, so ``StatementTracker`` pairs each LibCST statement with its ``ast`` statement(s),
block by block, as a traversal reaches it, and pairs the calls of one statement (those outside its
nested statements) in source order. Each statement's line span (decorators included) lets a
traversal skip the statements nothing is to be done in.

Every pairing is checked: the kinds of the statements, their counts in each block, and the name
each paired call calls. Any disagreement raises ``Mismatch``, and the caller goes back to
``PositionProvider``. Calls inside f-strings get no start and are not paired: before 3.12 Python
finds an f-string expression's position by searching the string for its text, so two equal
expressions in one f-string get the same start. No rewrite has anything to do there.
"""

from __future__ import annotations

import ast
import dataclasses
import unicodedata
from typing import Dict, List, Optional, Sequence, Tuple

import libcst as cst

from ...core.ast_tools import first_line
from ...decide.facts import LINE_BREAK


class Mismatch(Exception):
    """The two parses do not pair up here; positions must come from ``PositionProvider``."""


@dataclasses.dataclass(frozen=True)
class Span:
    """A LibCST statement's lines (decorators included) and the top-level definition it is in."""

    first: int
    last: int
    #: the name of the outermost class or function holding (or being) the statement, if any
    top: Optional[str]
    #: a compound statement: it may hold definitions (``if``, ``try`` and ``with`` blocks can)
    compound: bool

    def holds(self, line: int) -> bool:
        return self.first <= line <= self.last


# a LibCST compound statement and the ``ast`` statements it can be
_KINDS = {
    cst.FunctionDef: (ast.FunctionDef, ast.AsyncFunctionDef),
    cst.ClassDef: (ast.ClassDef,),
    cst.If: (ast.If,),
    cst.For: (ast.For, ast.AsyncFor),
    cst.While: (ast.While,),
    cst.With: (ast.With, ast.AsyncWith),
    cst.Try: (ast.Try,),
    cst.TryStar: (ast.TryStar,),
    cst.Match: (ast.Match,),
}
_COMPOUND_AST = tuple(kind for kinds in _KINDS.values() for kind in kinds)


@dataclasses.dataclass
class _Frame:
    node: cst.CSTNode  # the statement
    calls: List[ast.Call]  # the statement's own calls, in source order
    next: int = 0


class StatementTracker:
    """Follows a LibCST traversal of ``module``: ``enter`` and ``leave`` every node, in order."""

    def __init__(self, module: cst.Module, tree: ast.Module, text: str):
        self.text = text
        self._lines: Optional[List[str]] = None
        self._pairs: Dict[int, List[ast.stmt]] = {}
        self._tops: Dict[int, Optional[str]] = {}
        self._frames: List[_Frame] = []
        self._in_fstring = 0
        #: (line, 0-based column in characters) of each call entered (outside f-strings) and ``if``
        #: descended into, by id
        self.starts: Dict[int, Tuple[int, int]] = {}
        self._pair_block(module.body, tree.body, top=None)

    def enter(self, node: cst.CSTNode) -> Optional[Span]:
        """Record ``node``'s start if it is a call; a statement's span, else None."""
        if isinstance(node, cst.Call):
            if not self._in_fstring:
                self._enter_call(node)
            return None
        if isinstance(node, cst.FormattedString):
            self._in_fstring += 1
            return None
        group = self._pairs.get(id(node))
        if group is None:
            if isinstance(node, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
                raise Mismatch(f"no ast statement for a {type(node).__name__}")
            return None
        return _span(group, self._tops[id(node)], isinstance(node, cst.BaseCompoundStatement))

    def descend(self, node: cst.CSTNode) -> None:
        """The traversal goes into the statement ``node`` (``enter`` gave its span)."""
        group = self._pairs[id(node)]
        nested: List[ast.stmt] = []
        if isinstance(node, cst.BaseCompoundStatement):
            nested = self._pair_children(node, group[0], self._tops[id(node)])
            if isinstance(node, cst.If):
                self.starts[id(node)] = self._start(group[0])
        self._frames.append(_Frame(node, _own_calls(group, nested)))

    def leave(self, node: cst.CSTNode) -> None:
        if isinstance(node, cst.FormattedString):
            self._in_fstring -= 1
        elif self._frames and self._frames[-1].node is node:
            frame = self._frames.pop()
            if frame.next != len(frame.calls):
                raise Mismatch("a statement has calls LibCST did not visit")

    # -- pairing ---------------------------------------------------------------------------------------
    def _pair_block(self, statements: Sequence[cst.CSTNode], body: List[ast.stmt], top) -> List:
        """Pair a block's LibCST statements with ``body``; returns the ast statements paired."""
        index = 0
        for statement in statements:
            if isinstance(statement, cst.SimpleStatementLine):
                group = body[index : index + len(statement.body)]
                if len(group) != len(statement.body) or any(
                    isinstance(s, _COMPOUND_AST) for s in group
                ):
                    raise Mismatch("a simple statement line does not pair")
            else:
                group = body[index : index + 1]
                kinds = _KINDS.get(type(statement))
                if not group or kinds is None or not isinstance(group[0], kinds):
                    raise Mismatch(f"a {type(statement).__name__} does not pair")
            index += len(group)
            self._pairs[id(statement)] = group
            self._tops[id(statement)] = top if top is not None else _name(group[0])
        if index != len(body):
            raise Mismatch("a block has statements LibCST does not")
        return body

    def _pair_suite(self, suite: cst.BaseSuite, body: List[ast.stmt], top) -> List:
        if isinstance(suite, cst.IndentedBlock):
            return self._pair_block(suite.body, body, top)
        return []  # ``if x: a; b``: the small statements belong to the compound statement itself

    def _pair_children(self, node: cst.BaseCompoundStatement, tree: ast.stmt, top) -> List:
        """Pair the blocks of a compound statement; returns the nested ast statements paired."""
        if top is None:
            top = _name(tree)
        nested = [] if isinstance(node, cst.Match) else self._pair_suite(node.body, tree.body, top)
        if isinstance(node, (cst.Try, cst.TryStar)):
            if len(node.handlers) != len(tree.handlers):
                raise Mismatch("except clauses do not pair")
            for handler, ast_handler in zip(node.handlers, tree.handlers):
                nested += self._pair_suite(handler.body, ast_handler.body, top)
            if (node.finalbody is None) != (not tree.finalbody):
                raise Mismatch("finally clauses do not pair")
            if node.finalbody is not None:
                nested += self._pair_suite(node.finalbody.body, tree.finalbody, top)
        if isinstance(node, cst.Match):
            if len(node.cases) != len(tree.cases):
                raise Mismatch("match cases do not pair")
            for case, ast_case in zip(node.cases, tree.cases):
                nested += self._pair_suite(case.body, ast_case.body, top)
        orelse = getattr(node, "orelse", None)
        if isinstance(node, (cst.FunctionDef, cst.ClassDef, cst.With, cst.Match)):
            orelse = None
        ast_orelse = getattr(tree, "orelse", [])
        if isinstance(orelse, cst.If):  # elif: the If is the only statement of ast's orelse
            nested += self._pair_block([orelse], ast_orelse, top)
        elif isinstance(orelse, cst.Else):
            nested += self._pair_suite(orelse.body, ast_orelse, top)
        elif ast_orelse:
            raise Mismatch("an else clause does not pair")
        return nested

    # -- calls -------------------------------------------------------------------------------------
    def _enter_call(self, node: cst.Call) -> None:
        if not self._frames:
            raise Mismatch("a call outside every statement")
        frame = self._frames[-1]
        if frame.next >= len(frame.calls):
            raise Mismatch("LibCST visits more calls than ast has")
        call = frame.calls[frame.next]
        frame.next += 1
        if _called(node.func) != _ast_called(call.func):
            raise Mismatch("a call pairs with one of another name")
        self.starts[id(node)] = self._start(call)

    def _start(self, node: ast.AST) -> Tuple[int, int]:
        """(line, column in characters): ast counts the column in UTF-8 bytes."""
        line, col = node.lineno, node.col_offset
        if col and not self.text.isascii():
            if self._lines is None:
                self._lines = LINE_BREAK.split(self.text)
            col = len(self._lines[line - 1].encode("utf-8", "surrogatepass")[:col].decode("utf-8"))
        return line, col


def _name(statement: ast.stmt) -> Optional[str]:
    return getattr(statement, "name", None)


def _span(group: List[ast.stmt], top: Optional[str], compound: bool) -> Span:
    first = min(first_line(s) for s in group)
    return Span(first, max(s.end_lineno or s.lineno for s in group), top, compound)


def _own_calls(group: List[ast.stmt], nested) -> List[ast.Call]:
    """The calls of ``group`` outside the ``nested`` statements, in the order LibCST visits them."""
    skip = {id(s) for s in nested}
    calls: List[ast.Call] = []
    stack: List[ast.AST] = list(group)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.JoinedStr):
            continue  # LibCST's FormattedString: its calls are not paired
        if isinstance(node, ast.Call):
            calls.append(node)
        stack.extend(c for c in ast.iter_child_nodes(node) if id(c) not in skip)
    # an outer call starts where its callee does (``f(a)(b)``): LibCST visits it first
    calls.sort(key=lambda c: (c.lineno, c.col_offset, -c.end_lineno, -c.end_col_offset))
    return calls


def _called(func: cst.BaseExpression) -> Optional[str]:
    if isinstance(func, cst.Name):
        return unicodedata.normalize("NFKC", func.value)
    if isinstance(func, cst.Attribute):
        return unicodedata.normalize("NFKC", func.attr.value)
    return None


def _ast_called(func: ast.expr) -> Optional[str]:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None
