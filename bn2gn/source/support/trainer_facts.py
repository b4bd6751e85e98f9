"""What patch-trainer's planners need from one file, gathered in one ``ast`` walk.

The planners decide on the standard-library tree and LibCST only applies their edits, so ``bn2gn
scan`` lists the same insertions without importing LibCST. The decisions were first written on
LibCST's tree; this module models the few LibCST shapes they depend on: a *statement* is what
sits directly in a block (a whole ``a(); b()`` line, one small statement of a one-line suite
``if x: a(); b()``, or a compound statement; never an ``elif``), and lines and columns are those
of the first token, outside any parentheses.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from typing import Dict, List, Optional, Sequence, Tuple

from ...core.ast_tools import COMPOUND, FUNCTIONS, child_fields, dotted
from .names import PUBLIC_HELPERS

_BODIES = ("body", "orelse", "finalbody")
#: the nodes whose ``_BODIES`` are statement lists (``IfExp`` and ``Lambda`` have a ``body`` too:
#: an expression)
_BODY_HOLDERS = (ast.Module, ast.stmt, ast.excepthandler) + (
    (ast.match_case,) if hasattr(ast, "match_case") else ()
)
_NEWLINE = re.compile(r"\r\n|\r|\n")
_AST = ast.AST
#: what ``Facts._walk`` records of a node, by its class: one of these (or None), the fields that
#: can hold its children (``ast_tools.child_fields``) and those of ``_BODIES`` that are statement
#: lists
_CALL, _IMPORT, _FUNCTION, _MUTATOR = "call", "import", "function", "mutator"
_KINDS: Dict[type, Tuple[Optional[str], Tuple[str, ...], Tuple[str, ...]]] = {}


def _kind(cls: type) -> Tuple[Optional[str], Tuple[str, ...], Tuple[str, ...]]:
    """``_KINDS``' entry for ``cls``, made on its first node: the tests ``Facts`` made per node
    (``isinstance``), asked once per class."""
    if issubclass(cls, ast.Call):
        role = _CALL
    elif issubclass(cls, (ast.Import, ast.ImportFrom)):
        role = _IMPORT
    elif issubclass(cls, FUNCTIONS):
        role = _FUNCTION
    elif issubclass(cls, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr)):
        role = _MUTATOR
    else:
        role = None
    fields = child_fields(cls)
    bodies = _BODIES if issubclass(cls, _BODY_HOLDERS) else ()
    _KINDS[cls] = found = (role, fields, bodies)
    return found


@dataclasses.dataclass(eq=False)
class Statement:
    """One statement as LibCST sees it: ``members`` are its ``ast`` statements (several for ``a; b``)."""

    members: list
    owner: ast.AST  # the node whose body list holds it
    field: str
    suite: bool  # part of a one-line suite (``if x: a()``)

    @property
    def head(self) -> ast.stmt:
        return self.members[0]

    @property
    def line(self) -> int:
        return self.head.lineno

    @property
    def block(self) -> Tuple[int, str]:
        return id(self.owner), self.field


class Facts:
    """Parents, calls, imports, function definitions and simple statements of one module.

    ``walks`` counts the module traversals this process made (the tests check one per file).
    """

    walks = 0

    def __init__(self, text: str, tree: ast.Module):
        Facts.walks += 1
        self.text = text
        self.tree = tree
        self.parent: Dict[ast.AST, ast.AST] = {}
        self.place: Dict[ast.stmt, Tuple[ast.AST, str, int]] = {}
        self.calls: List[ast.Call] = []
        self.imports: list = []
        self.functions: list = []
        self.assigns: List[ast.Assign] = []
        self.mutators: Dict[
            str, list
        ] = {}  # variable -> simple statements assigning or calling on it
        self._statements: Dict[int, List[Statement]] = {}
        self._line_starts: Optional[List[int]] = None
        self._walk(tree)
        self.calls.sort(key=lambda c: (c.lineno, c.col_offset))  # stable: outer calls first

    def _walk(self, tree: ast.Module) -> None:
        parent, place = self.parent, self.place
        calls, imports, functions = self.calls, self.imports, self.functions
        kinds = _KINDS
        stack = [tree]
        pop, extend = stack.pop, stack.extend
        while stack:
            node = pop()
            role, fields, bodies = kinds.get(node.__class__) or _kind(node.__class__)
            if role:
                if role is _CALL:
                    calls.append(node)
                elif role is _IMPORT:
                    imports.append(node)
                elif role is _FUNCTION:
                    functions.append(node)
                else:
                    self._note_mutator(node)
            for field in bodies:
                body = getattr(node, field, None)
                if isinstance(body, list):
                    for index, child in enumerate(body):
                        place[child] = (node, field, index)
            # ``ast.iter_child_nodes`` inlined, without the ``ctx`` leaves (shared singletons no
            # recogniser asks the parent of): a third of the walk's cost
            children = []
            append = children.append
            for field in fields:
                value = getattr(node, field, None)
                if value.__class__ is list:
                    for item in value:
                        if isinstance(item, _AST):
                            parent[item] = node
                            append(item)
                elif isinstance(value, _AST):
                    parent[value] = node
                    append(value)
            if children:
                children.reverse()
                extend(children)

    def _note_mutator(self, node) -> None:
        if isinstance(node, ast.Assign):
            self.assigns.append(node)
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            names = [node.target.id] if isinstance(node.target, ast.Name) else []
        else:
            value = node.value
            names = (
                [value.func.value.id]
                if isinstance(value, ast.Call)
                and isinstance(value.func, ast.Attribute)
                and isinstance(value.func.value, ast.Name)
                else []
            )
        for name in names:
            self.mutators.setdefault(name, []).append(node)

    # -- statements -------------------------------------------------------------------------

    def statements(self, owner: ast.AST, field: str) -> List[Statement]:
        """The LibCST statements of one body list (cached)."""
        key = (id(owner), field)
        if key not in self._statements:
            body = [s for s in getattr(owner, field) if isinstance(s, ast.stmt)]
            suite = bool(body) and not isinstance(owner, ast.Module) and self._is_suite(body[0])
            found: List[Statement] = []
            for stmt in body:
                if isinstance(owner, ast.If) and field == "orelse" and self.is_elif(stmt):
                    continue
                previous = found[-1].members[-1] if found else None
                if (
                    not suite
                    and previous is not None
                    and not isinstance(stmt, COMPOUND)
                    and not isinstance(previous, COMPOUND)
                    and stmt.lineno == previous.end_lineno
                ):
                    found[-1].members.append(stmt)  # ``a; b`` on one line: one SimpleStatementLine
                else:
                    found.append(Statement([stmt], owner, field, suite))
            self._statements[key] = found
        return self._statements[key]

    def module_statements(self) -> List[Statement]:
        return self.statements(self.tree, "body")

    def statement_of(self, stmt: ast.stmt) -> Optional[Statement]:
        """The LibCST statement ``stmt`` belongs to (None for an ``elif``)."""
        owner, field, _ = self.place[stmt]
        for statement in self.statements(owner, field):
            if any(member is stmt for member in statement.members):
                return statement
        return None

    def enclosing_statement(self, node: ast.AST) -> Optional[Statement]:
        """The statement holding ``node`` directly in a block (an ``elif`` belongs to its ``if``)."""
        current = node
        while current is not None:
            if isinstance(current, ast.stmt) and current in self.place:
                statement = self.statement_of(current)
                if statement is not None:
                    return statement
            current = self.parent.get(current)
        return None

    def is_elif(self, stmt: ast.stmt) -> bool:
        if not isinstance(stmt, ast.If):
            return False
        owner, field, index = self.place.get(stmt, (None, "", 0))
        return (
            isinstance(owner, ast.If)
            and field == "orelse"
            and index == 0
            and len(owner.orelse) == 1
            and self.source_at(stmt.lineno, stmt.col_offset).startswith("elif")
        )

    def _is_suite(self, first: ast.stmt) -> bool:
        """A body whose first statement shares its line with the header (``if x: a()``)."""
        return bool(self.line_bytes(first.lineno)[: first.col_offset].strip())

    # -- names and scopes -------------------------------------------------------------------

    def innermost_function(self, node: ast.AST):
        current = self.parent.get(node)
        while current is not None:
            if isinstance(current, FUNCTIONS):
                return current
            current = self.parent.get(current)
        return None

    def scope(self, node: ast.AST) -> str:
        """``Class.method``, ``function``, ``outer.inner`` or ``<module>`` for the code holding ``node``."""
        names = []
        current = self.parent.get(node)
        while current is not None:
            if isinstance(current, (*FUNCTIONS, ast.ClassDef)):
                names.append(current.name)
            current = self.parent.get(current)
        return ".".join(reversed(names)) if names else "<module>"

    def inside(self, node: ast.AST, ancestor: ast.AST) -> bool:
        current = self.parent.get(node)
        while current is not None:
            if current is ancestor:
                return True
            current = self.parent.get(current)
        return False

    # -- text -------------------------------------------------------------------------------

    def line_bytes(self, line: int) -> bytes:
        """Line ``line`` (1-based) as UTF-8, the unit of ``ast`` column offsets."""
        if self._line_starts is None:
            self._line_starts = [0] + [m.end() for m in _NEWLINE.finditer(self.text)]
        if line - 1 >= len(self._line_starts):
            return b""
        start = self._line_starts[line - 1]
        end = self._line_starts[line] if line < len(self._line_starts) else len(self.text)
        return self.text[start:end].encode("utf-8", "surrogatepass")

    def source_at(self, line: int, col: int) -> str:
        return self.line_bytes(line)[col:].decode("utf-8", "replace")

    def char_column(self, line: int, col: int) -> int:
        """LibCST counts columns in characters, ``ast`` in UTF-8 bytes."""
        return len(self.line_bytes(line)[:col].decode("utf-8", "replace"))

    def position(self, line: int, col: int) -> Tuple[int, int]:
        return line, self.char_column(line, col)


def call_named(call: ast.Call, name: str) -> bool:
    """``name(...)`` or ``X.name(...)``."""
    func = call.func
    return (isinstance(func, ast.Name) and func.id == name) or (
        isinstance(func, ast.Attribute) and func.attr == name
    )


def argument_values(call: ast.Call) -> list:
    """Every argument expression in source order (``*x`` and ``**x`` give ``x``)."""
    values = [(a.value if isinstance(a, ast.Starred) else a) for a in call.args]
    values += [k.value for k in call.keywords]
    return sorted(values, key=lambda v: (v.lineno, v.col_offset))


def parameter_names(function) -> set:
    """The names of the positional-or-keyword and keyword-only parameters (LibCST's params + kwonly)."""
    return {a.arg for a in function.args.args + function.args.kwonlyargs}


def identifiers(node: ast.AST) -> set:
    """What LibCST holds as ``Name`` nodes in an expression: names, attribute and keyword names."""
    found = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            found.add(child.id)
        elif isinstance(child, ast.Attribute):
            found.add(child.attr)
        elif isinstance(child, ast.keyword) and child.arg:
            found.add(child.arg)
        elif isinstance(child, ast.arg):
            found.add(child.arg)
    return found


def parameter_receivers(node: ast.AST) -> List[str]:
    """``X`` of every ``X.parameters()`` / ``X.named_parameters()`` inside ``node``."""
    receivers = []
    for call in ast.walk(node):
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr in ("parameters", "named_parameters")
        ):
            name = dotted(call.func.value)
            if name:
                receivers.append(name)
    return receivers


def model_from_receivers(receivers) -> Optional[str]:
    """``model`` for ``model.head`` / ``model.module``; ``self.model`` for ``self.model.backbone``.

    All receivers must agree; two different models cannot be told apart without --model-var.
    """
    bases = set()
    for name in receivers:
        parts = name.split(".")
        bases.add(".".join(parts[:2]) if parts[0] == "self" and len(parts) > 1 else parts[0])
    return bases.pop() if len(bases) == 1 else None


def defined_or_imported_names(facts: Facts, statements: List[Statement]) -> set:
    """Top-level names the statements define (def/class/assign) or import, to avoid injecting twice;
    the bodies of ``if``/``try`` blocks count, one-line suites and other branches do not (as in LibCST)."""
    names = set()
    for statement in statements:
        for stmt in statement.members:
            if isinstance(stmt, (*FUNCTIONS, ast.ClassDef)):
                names.add(stmt.name)
            elif isinstance(stmt, ast.ImportFrom):
                names |= {a.asname or a.name for a in stmt.names if a.name != "*"}
            elif isinstance(stmt, ast.Import):
                names |= {(a.asname or a.name).split(".")[0] for a in stmt.names}
            elif isinstance(stmt, ast.Assign):
                names |= {t.id for t in stmt.targets if isinstance(t, ast.Name)}
            elif isinstance(stmt, (ast.If, ast.Try)):
                body = facts.statements(stmt, "body")
                if body and not body[0].suite:
                    names |= defined_or_imported_names(facts, body)
    return names


def import_end_index(facts: Facts, statements: List[Statement]) -> int:
    """Index among the module's statements right after the leading docstring / __future__ / imports."""

    def single(statement, kinds) -> bool:
        return len(statement.members) == 1 and isinstance(statement.head, kinds)

    def is_import(statement) -> bool:
        return single(statement, (ast.Import, ast.ImportFrom))

    index = 0
    if statements and single(statements[0], ast.Expr):
        value = statements[0].head.value
        if isinstance(value, ast.Constant) and isinstance(value.value, (str, bytes)):
            index = 1
    last = index
    for position in range(index, len(statements)):
        statement = statements[position]
        if is_import(statement):
            last = position + 1
        elif single(statement, ast.Try) and all(
            is_import(s) and not s.suite for s in facts.statements(statement.head, "body")
        ):
            last = position + 1
        elif (
            single(statement, ast.Assign)
            and len(statement.head.targets) == 1
            and isinstance(statement.head.targets[0], ast.Name)
            and statement.head.targets[0].id == "__all__"
        ):
            continue
        else:
            break
    return last


def line_after_imports(facts: Facts) -> int:
    """The line the injected definitions go before (the first statement after the imports)."""
    statements = facts.module_statements()
    index = import_end_index(facts, statements)
    if index < len(statements):
        return statements[index].line
    return facts.text.count("\n") + 1


def missing_helpers(facts: Facts, also_called: Sequence[str] = ()) -> List[str]:
    """The runtime functions (BN2GN202) the file calls, or will call (``also_called``: what the planned
    insertions call), without defining or importing them at the top level."""
    have = defined_or_imported_names(facts, facts.module_statements())
    called = {c.func.id for c in facts.calls if isinstance(c.func, ast.Name)} | set(also_called)
    return [name for name in PUBLIC_HELPERS if name in called and name not in have]


def injected_helpers_line(facts: Facts) -> int:
    """The first line of bn2gn's own injected helpers (``_bn2gn_*`` definitions), 0 when none: only
    those does patch-trainer update in place; a user's own helper gets a note instead."""
    for stmt in facts.tree.body:
        if isinstance(stmt, FUNCTIONS) and stmt.name.startswith("_bn2gn_"):
            return stmt.lineno
    return 0


def baked_attrs(facts: Facts, configured: Sequence[str]) -> Optional[Tuple[str, ...]]:
    """The backbone entries an earlier injection baked into a top-level helper's default, when they
    differ from ``configured`` (on ``ast``, for ``scan``; LibCST is not needed to tell)."""
    for stmt in facts.tree.body:
        if not (isinstance(stmt, FUNCTIONS) and stmt.name in PUBLIC_HELPERS):
            continue
        params = stmt.args.args
        defaults = [None] * (len(params) - len(stmt.args.defaults)) + list(stmt.args.defaults)
        for param, default in zip(params, defaults):
            if param.arg == "backbone_attrs" and isinstance(default, ast.Tuple):
                values = tuple(
                    e.value
                    for e in default.elts
                    if isinstance(e, ast.Constant) and isinstance(e.value, str)
                )
                if values != tuple(configured):
                    return values
    return None
