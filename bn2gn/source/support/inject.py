"""Shared LibCST helpers for injecting a definition once, after the imports, in the file's own style.

Injected code is formatted with black on its own (never the user's file) and parsed so its
indentation and newlines follow the host module's defaults (2 or 4 spaces, LF or CRLF). bn2gn's
snippets are written the way black writes them, so black is imported only for one that is not
(a long name, an unusual ``--model-var``); tests/unit/test_prerendered.py checks that claim.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections import Counter
from typing import List, Optional, Sequence

import libcst as cst

from .names import tuple_literal  # noqa: F401 (re-exported)

#: black's default line length
BLACK_LINE = 88
#: a line black keeps as it is: a comment, a docstring on one line, or one string item of a call
_UNSPLITTABLE = re.compile(r'\s*(#.*|"""[^\n]*"""|[fFrRbB]{0,2}"[^"\n]*",?)')


def format_snippet(code: str) -> List[cst.BaseStatement]:
    """Black-format ``code`` and parse it into statements (indent/newline resolved by the host module)."""
    return list(_snippet_statements(code))


@functools.lru_cache(maxsize=256)
def _snippet_statements(code: str) -> tuple:
    """Each snippet parsed once per process (LibCST nodes are immutable: every file may share them)."""
    return tuple(cst.parse_module(black_formatted(code)).body)


@functools.lru_cache(maxsize=256)
def black_formatted(code: str) -> str:
    """black's output for one of bn2gn's snippets: the same few recur in every file, and importing black
    costs more than a run that injects nothing; so it is imported here, only for a snippet that is not
    already in black's style (``prerendered``), and each text formatted once."""
    text = prerendered(code)
    if text is not None:
        return text
    import black

    return black.format_str(code, mode=black.Mode())


def prerendered(code: str) -> Optional[str]:
    """``code`` as black would write it, when bn2gn's template already is (else None): no leading blank
    lines, every line within black's length unless black cannot split it (or it is a ``def`` line
    black splits at its parameters), double quotes only, no tabs or trailing spaces."""
    text = code.lstrip("\n")
    if not text.endswith("\n") or "\t" in text or "\r" in text:
        return None
    lines = []
    for line in text.splitlines():
        if line != line.rstrip() or ("'" in line and not _UNSPLITTABLE.fullmatch(line)):
            return None
        if len(line) <= BLACK_LINE or _UNSPLITTABLE.fullmatch(line):
            lines.append(line)
            continue
        split = _split_def(line)
        if split is None:
            return None
        lines.extend(split)
    return "\n".join(lines) + "\n"


_DEF = re.compile(r"(\s*)def (\w+)\((.*)\):")


def _split_def(line: str) -> Optional[List[str]]:
    """black's split of a ``def`` line that is too long: the parameters on a line of their own, or
    one per line with a trailing comma; None when that is not enough (black decides then)."""
    match = _DEF.fullmatch(line)
    if not match or "*" in match.group(3) or "\\" in match.group(3):
        return None  # star parameters change black's trailing comma; escapes its string scan
    indent, name, params = match.groups()
    parts = _top_level_split(params)
    if parts is None or not parts or parts[-1] == "":
        return None  # a magic trailing comma, or brackets this does not follow
    inner = indent + "    "
    head, tail = f"{indent}def {name}(", f"{indent}):"
    if len(inner + params) <= BLACK_LINE:
        return [head, inner + params, tail]
    one_per_line = []
    for part in parts:
        line = f"{inner}{part},"
        if len(line) > BLACK_LINE:
            exploded = _explode_tuple_default(inner, part)
            if exploded is None:
                return None
            one_per_line.extend(exploded)
        else:
            one_per_line.append(line)
    if len(head) > BLACK_LINE:
        return None
    return [head, *one_per_line, tail]


_TUPLE_DEFAULT = re.compile(r"(\w+)=\((.*)\)")


def _explode_tuple_default(indent: str, part: str) -> Optional[List[str]]:
    """black's split of a parameter whose tuple default is too long (the backbone entries bn2gn bakes
    in): the tuple opened on the parameter's line, one element per line, a trailing comma each."""
    match = _TUPLE_DEFAULT.fullmatch(part)
    if not match:
        return None
    elements = _top_level_split(match.group(2))
    if not elements or any(not e or "(" in e or "[" in e or "{" in e for e in elements):
        return None
    inner = indent + "    "
    lines = [f"{inner}{e}," for e in elements]
    if any(len(line) > BLACK_LINE for line in lines):
        return None
    return [f"{indent}{match.group(1)}=(", *lines, f"{indent}),"]


def _top_level_split(params: str) -> Optional[List[str]]:
    """``params`` split at the commas outside brackets and strings (None for unbalanced text)."""
    parts, depth, quote, start = [], 0, None, 0
    for index, char in enumerate(params):
        if quote:
            if char == quote:
                quote = None
        elif char == '"':
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth < 0:
                return None
        elif char == "," and depth == 0:
            parts.append(params[start:index].strip())
            start = index + 1
    if depth or quote:
        return None
    parts.append(params[start:].strip())
    return parts


#: the nodes a block can be found below: no expression and no simple statement line holds one
_HOLD_BLOCKS = (
    cst.Module,
    cst.BaseCompoundStatement,
    cst.BaseSuite,
    cst.Else,
    cst.ExceptHandler,
    cst.ExceptStarHandler,
    cst.Finally,
    cst.MatchCase,
)


def dominant_indent(module: cst.Module) -> str:
    """The indentation unit of the file's function and class bodies, by statement count (a 2-space
    ``try:`` at the top of 4-space code makes LibCST's default 2 spaces; new definitions follow the code)."""
    defs: Counter = Counter()
    blocks: Counter = Counter()

    class _Count(cst.CSTVisitor):
        def on_visit(self, node: cst.CSTNode) -> bool:
            super().on_visit(node)
            return isinstance(node, _HOLD_BLOCKS)  # expressions and simple lines hold no block

        def visit_IndentedBlock(self, node: cst.IndentedBlock) -> None:
            blocks[module.default_indent if node.indent is None else node.indent] += len(node.body)

        def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
            self._body(node)

        def visit_ClassDef(self, node: cst.ClassDef) -> None:
            self._body(node)

        @staticmethod
        def _body(node) -> None:
            if isinstance(node.body, cst.IndentedBlock):
                defs[module.default_indent if node.body.indent is None else node.body.indent] += (
                    len(node.body.body)
                )

    module.visit(_Count())
    counts = defs or blocks
    return counts.most_common(1)[0][0] if counts else module.default_indent


def with_indent(statements: Sequence[cst.BaseStatement], indent: str) -> List[cst.BaseStatement]:
    """``statements`` (parsed on their own, so their blocks carry no indentation) indented by ``indent``."""

    class _Indent(cst.CSTTransformer):
        def leave_IndentedBlock(self, original_node, updated_node):
            return (
                updated_node.with_changes(indent=indent)
                if updated_node.indent is None
                else updated_node
            )

    return [s.visit(_Indent()) for s in statements]


def _only(stmt: cst.BaseStatement, kinds) -> Optional[cst.BaseSmallStatement]:
    """The one small statement of a line when it is of ``kinds``."""
    if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1:
        if isinstance(stmt.body[0], kinds):
            return stmt.body[0]
    return None


def _is_import(stmt: cst.BaseStatement) -> bool:
    return _only(stmt, (cst.Import, cst.ImportFrom)) is not None


def _is_docstring(stmt: cst.BaseStatement) -> bool:
    expr = _only(stmt, cst.Expr)
    return expr is not None and isinstance(expr.value, (cst.SimpleString, cst.ConcatenatedString))


def _is_guarded_import(stmt: cst.BaseStatement) -> bool:
    """``try: import x / except ImportError`` and ``if TYPE_CHECKING:`` blocks count as imports."""
    if isinstance(stmt, cst.Try):
        return all(_is_import(s) for s in stmt.body.body)
    return False


def _is_all(stmt: cst.BaseStatement) -> bool:
    """``__all__ = [...]`` on a line of its own."""
    assign = _only(stmt, cst.Assign)
    return (
        assign is not None
        and len(assign.targets) == 1
        and isinstance(assign.targets[0].target, cst.Name)
        and assign.targets[0].target.value == "__all__"
    )


def import_end_index(module: cst.Module) -> int:
    """Index in ``module.body`` right after the leading docstring / __future__ / import block."""
    index = 0
    body = module.body
    if body and _is_docstring(body[0]):
        index = 1
    last = index
    for position in range(index, len(body)):
        stmt = body[position]
        if _is_import(stmt) or _is_guarded_import(stmt):
            last = position + 1
        elif _is_all(stmt):
            continue
        else:
            break
    return last


def insert_after_imports(module: cst.Module, statements: Sequence[cst.BaseStatement]) -> cst.Module:
    """Insert ``statements`` after the imports, separated from the code around them by blank lines."""
    index = import_end_index(module)
    statements = list(statements)
    if not statements:
        return module
    blank = cst.EmptyLine()
    first = statements[0]
    statements[0] = first.with_changes(leading_lines=[blank, blank] if index else [])
    body = list(module.body)
    if index < len(body):
        follower = body[index]
        leading = list(follower.leading_lines)
        blanks = 0
        for line in leading:
            if line.comment is None:
                blanks += 1
            else:
                break
        if blanks < 2:
            leading = [cst.EmptyLine()] * (2 - blanks) + leading
        body[index] = follower.with_changes(leading_lines=leading)
    body[index:index] = statements
    return module.with_changes(body=body)


def defined_or_imported_names(module: cst.Module) -> set:
    """Top-level names a module defines (def/class/assign) or imports, to avoid injecting twice."""
    names = set()
    for stmt in module.body:
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            names.add(stmt.name.value)
        elif isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                if isinstance(small, cst.ImportFrom) and not isinstance(
                    small.names, cst.ImportStar
                ):
                    for alias in small.names:
                        names.add(_alias_name(alias))
                elif isinstance(small, cst.Import):
                    for alias in small.names:
                        names.add(_alias_name(alias).split(".")[0])
                elif isinstance(small, cst.Assign):
                    for target in small.targets:
                        if isinstance(target.target, cst.Name):
                            names.add(target.target.value)
        elif isinstance(stmt, (cst.If, cst.Try)):
            names |= defined_or_imported_names(cst.Module(body=list(stmt.body.body)))
    return names


def _alias_name(alias: cst.ImportAlias) -> str:
    if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
        return alias.asname.name.value
    return cst.Module(body=[]).code_for_node(alias.name)


def torch_nn_name(module: cst.Module) -> Optional[str]:
    """The expression this file uses for ``torch.nn``: ``nn`` (any alias) or ``torch.nn``; None if neither."""
    torch_name = None
    for stmt in module.body:
        if not isinstance(stmt, cst.SimpleStatementLine):
            continue
        for small in stmt.body:
            if isinstance(small, cst.Import):
                for alias in small.names:
                    dotted = cst.Module(body=[]).code_for_node(alias.name)
                    if dotted == "torch.nn" and alias.asname is not None:
                        return _alias_name(alias)
                    if dotted in ("torch", "torch.nn") and alias.asname is None:
                        torch_name = "torch.nn"
                    if dotted == "torch" and alias.asname is not None:
                        torch_name = f"{_alias_name(alias)}.nn"
            elif isinstance(small, cst.ImportFrom) and small.module is not None:
                source = cst.Module(body=[]).code_for_node(small.module)
                if (
                    source == "torch"
                    and not isinstance(small.names, cst.ImportStar)
                    and not small.relative
                ):
                    for alias in small.names:
                        if cst.Module(body=[]).code_for_node(alias.name) == "nn":
                            return _alias_name(alias)
    return torch_name


def ensure_nn_import(module: cst.Module) -> tuple:
    """Return (module, nn_expression); adds ``import torch.nn as nn`` only when torch.nn has no name yet."""
    name = torch_nn_name(module)
    if name is not None:
        return module, name
    index = import_end_index(module)
    stmt = cst.parse_statement("import torch.nn as nn\n")
    body = list(module.body)
    body[index:index] = [stmt]
    return module.with_changes(body=body), "nn"


def dotted_name(expr: cst.BaseExpression) -> Optional[str]:
    """``a.b.c`` for a Name/Attribute chain, None for anything else (calls, subscripts)."""
    if isinstance(expr, cst.Name):
        return expr.value
    if isinstance(expr, cst.Attribute):
        base = dotted_name(expr.value)
        return f"{base}.{expr.attr.value}" if base else None
    return None


def enclosing_statement(node: cst.CSTNode, parents) -> Optional[cst.CSTNode]:
    """The statement holding ``node`` that sits directly in a Module, IndentedBlock or one-line suite.

    ``parents`` maps node -> parent (LibCST's ParentNodeProvider); for a one-line suite
    (``if x: a(); b()``) the small statement inside the suite is returned.
    """
    current = node
    while current in parents:
        parent = parents[current]
        if isinstance(parent, (cst.Module, cst.IndentedBlock, cst.SimpleStatementSuite)):
            return current
        current = parent
    return None


@dataclasses.dataclass
class PlannedInsertion:
    """Statements to insert right before or after an anchor statement, and what the report says about it."""

    rule: object  # bn2gn.core.rule_codes.Rule
    anchor: cst.CSTNode  # a statement of the module being patched (compared by identity)
    where: str  # "before" | "after"
    statements: List[cst.BaseStatement]
    line: int
    scope: str
    message: str


class InsertStatements(cst.CSTTransformer):
    """Apply planned insertions (and whole-call replacements) in one pass, keyed by original nodes.

    In a one-line suite (``if x: model.train()``) the inserted statements join the suite with ``;``.
    """

    def __init__(
        self, insertions: Sequence[PlannedInsertion], call_rewrites: Optional[dict] = None
    ):
        super().__init__()
        self.before: dict = {}
        self.after: dict = {}
        for item in insertions:
            side = self.before if item.where == "before" else self.after
            side.setdefault(item.anchor, []).extend(item.statements)
        self.call_rewrites = call_rewrites or {}

    def _rebuild(self, originals, updated, small: bool) -> list:
        body = []
        for original, new in zip(originals, updated):
            body.extend(_as_small(self.before.get(original, ()), small))
            body.append(new)
            body.extend(_as_small(self.after.get(original, ()), small))
        return body

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        rewrite = self.call_rewrites.get(original_node)
        return rewrite(updated_node) if rewrite else updated_node

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        return updated_node.with_changes(
            body=self._rebuild(original_node.body, updated_node.body, False)
        )

    def leave_IndentedBlock(self, original_node, updated_node) -> cst.IndentedBlock:
        return updated_node.with_changes(
            body=self._rebuild(original_node.body, updated_node.body, False)
        )

    def leave_SimpleStatementSuite(self, original_node, updated_node) -> cst.SimpleStatementSuite:
        return updated_node.with_changes(
            body=self._rebuild(original_node.body, updated_node.body, True)
        )


def _as_small(statements, small: bool) -> list:
    if not small:
        return list(statements)
    flat = []
    for stmt in statements:
        flat.extend(s.with_changes(semicolon=cst.MaybeSentinel.DEFAULT) for s in stmt.body)
    return flat
