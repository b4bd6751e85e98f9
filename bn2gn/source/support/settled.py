"""Whether ``rewrite`` has nothing to do in a file it would otherwise parse with LibCST, on ``ast``.

A migrated file still calls ``get_group_norm``, so ``rewrite`` visits it on every run (BN2GN102 may
have to define the helper, BN2GN103 to widen an init loop) and, in an already migrated repository,
finds nothing: the pre-commit check then spent most of its time importing LibCST and resolving
positions. This module proves "nothing" from the ``ast`` the analysis already holds, with tests a
little wider than the codemods' own, so that a file it calls settled is one they leave unchanged;
anything it cannot prove goes to LibCST as before (``tests/integration/test_settled.py`` runs both on every
fixture and on generated init loops).
"""

from __future__ import annotations

import ast
import re
from typing import FrozenSet, Iterator, Optional, Tuple

from ...core.ast_tools import BLOCKS, lines_spelling, spans_a_line
from ...decide.facts import lines_tell
from .names import HELPER, INIT_FUNCS

#: between a tuple's comma and its next element: spaces and line breaks only (no parenthesis)
_BEFORE_ELEMENT = re.compile(r",[ \t\n]*$|,[ \t]*\\\n[ \t]*$")


def settled(
    tree: ast.Module, text: str, scopes: FrozenSet[str], bn_refs: FrozenSet[str], rules
) -> bool:
    """True when BN2GN102 and BN2GN103 change nothing in the file (it has no site to convert)."""
    from ...core.rule_codes import Rule

    if not lines_tell(text):
        return False  # ast compares names after NFKC, LibCST as written; ``lines`` below must
        # number as ast does
    if Rule.INJECT_GROUP_NORM_HELPER in rules and HELPER in text and not _helper_defined(tree):
        return False
    if Rule.INIT_LOOPS in rules and scopes and bn_refs:
        lines = text.splitlines(keepends=True)
        last_names = {ref.rpartition(".")[2] for ref in bn_refs}
        for test, body in _scoped_ifs(tree, scopes, lines):
            if not _leaves_alone(test, body, last_names, lines):
                return False
    return True


def _helper_defined(tree: ast.Module) -> bool:
    """``def get_group_norm`` or ``from ... import get_group_norm`` at the top level: BN2GN102 injects
    nothing then (it looks further, into ``if``/``try`` bodies; those go to LibCST)."""
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == HELPER:
            return True
        if isinstance(stmt, ast.ImportFrom) and any(
            (alias.asname or alias.name) == HELPER for alias in stmt.names
        ):
            return True
    return False


def _scoped_ifs(tree: ast.Module, scopes: FrozenSet[str], lines) -> Iterator[Tuple[ast.expr, list]]:
    """(test, body) of every ``if`` inside a class or function whose outermost enclosing definition
    is named in ``scopes`` (how BN2GN103 picks them: the first definition on the way down), among
    the statements, at every depth, whose ``lines`` spell ``isinstance`` (an ``if`` without it is
    left alone). Only statements are entered: no expression holds an ``if`` or a definition."""
    spelled = lines_spelling(lines, ("isinstance",))
    stack = [(node, None) for node in tree.body if spans_a_line(node, spelled)]
    while stack:
        node, scope = stack.pop()
        if scope is None and isinstance(
            node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        ):
            scope = node.name
        if isinstance(node, ast.If) and scope in scopes:
            yield node.test, node.body
        stack.extend(
            (child, scope)
            for child in ast.iter_child_nodes(node)
            if isinstance(child, BLOCKS) and spans_a_line(child, spelled)
        )


def _leaves_alone(test: ast.expr, body: list, last_names: set, lines) -> bool:
    """BN2GN103 neither widens this ``if``'s test nor guards a statement of its body."""
    if not (
        isinstance(test, ast.Call)
        and isinstance(test.func, ast.Name)
        and test.func.id == "isinstance"
    ):
        return True
    spelled = {
        getattr(node, "id", None) or getattr(node, "attr", None)
        for node in ast.walk(test)
        if isinstance(node, (ast.Name, ast.Attribute))
    }
    if not spelled & last_names:
        return True  # no BatchNorm2d spelling in it: not an init loop check
    if test.keywords or len(test.args) != 2 or not isinstance(test.args[1], ast.Tuple):
        return False
    if not any(_plain_group_norm(element, lines) for element in test.args[1].elts):
        return False  # a tuple without GroupNorm is widened
    return not any(_initialises(stmt) for stmt in body)


def _plain_group_norm(element: ast.expr, lines) -> bool:
    """``..., nn.GroupNorm``: a name ending in GroupNorm, after a comma, in no parentheses of its own."""
    name = element.attr if isinstance(element, ast.Attribute) else getattr(element, "id", None)
    if not isinstance(name, str) or not name.endswith("GroupNorm"):
        return False
    before = _text_before(lines, element.lineno, element.col_offset)
    return before is not None and bool(_BEFORE_ELEMENT.search(before))


def _text_before(lines, lineno: int, col: int) -> Optional[str]:
    """The source up to (line, UTF-8 column) on that line and the line before; ASCII text only."""
    if lineno > len(lines):
        return None
    return "".join(lines[max(0, lineno - 2) : lineno - 1]) + lines[lineno - 1][:col]


def _initialises(stmt: ast.stmt) -> bool:
    """A statement BN2GN103 may guard: a call of an init function as an expression statement."""
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Call)
        and isinstance(stmt.value.func, ast.Attribute)
        and stmt.value.func.attr in INIT_FUNCS
    )
