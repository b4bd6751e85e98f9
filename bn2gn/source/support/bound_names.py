"""Which names are bound where BN2GN201 inserts ``freeze_backbone_bn(model)``.

The call goes right before the statement that builds the optimizer. A model named inside that
statement by a lambda's parameter or a comprehension's loop variable does not exist there (at
module level a NameError, before a comprehension in a function an UnboundLocalError), and a
``--model-var`` name may not be bound there either; the plan checks both before inserting.
"""

from __future__ import annotations

import ast
import re
from typing import Optional, Set

from .trainer_facts import FUNCTIONS, Facts, Statement

COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_NESTED = (*FUNCTIONS, ast.Lambda, ast.ClassDef, *COMPREHENSIONS)


def root_name(expression: str) -> Optional[str]:
    """``self`` for ``self.model``, ``m`` for ``m``; None when it does not start with a name."""
    match = re.match(r"[^\W\d]\w*", expression)
    return match.group(0) if match else None


def lambda_parameters(node: ast.Lambda) -> list:
    args = node.args
    return [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)] + [
        a.arg for a in (args.vararg, args.kwarg) if a is not None
    ]


def binder_between(facts: Facts, node: ast.AST, stop: ast.AST, name: str) -> Optional[ast.AST]:
    """The lambda or comprehension, between ``node`` and the statement ``stop``, that binds ``name``."""
    current = facts.parent.get(node)
    while current is not None and current is not stop:
        if isinstance(current, ast.Lambda) and name in lambda_parameters(current):
            return current
        if isinstance(current, COMPREHENSIONS) and name in _comprehension_targets(current):
            return current
        current = facts.parent.get(current)
    return None


def _comprehension_targets(node: ast.AST) -> Set[str]:
    return {
        n.id
        for generator in node.generators
        for n in ast.walk(generator.target)
        if isinstance(n, ast.Name)
    }


def bound_before(facts: Facts, statement: Statement, name: str) -> bool:
    """Whether ``name`` can be bound when ``statement`` runs: a parameter or local of an enclosing
    function, or a module-level name (bound earlier in the file, for module-level code)."""
    if _in_class_body(facts, statement.head):
        return True  # class attributes: not judged here
    function = facts.innermost_function(statement.head)
    module = _bindings(facts.tree, before=statement.line if function is None else None)
    if "*" in module:
        return True  # a star import may bind anything
    if function is None:
        return name in module
    while function is not None:
        if name in _bindings(function) or name in _parameters(function):
            return True
        function = facts.innermost_function(function)
    return name in module


def _in_class_body(facts: Facts, node: ast.AST) -> bool:
    current = facts.parent.get(node)
    while current is not None and not isinstance(current, FUNCTIONS):
        if isinstance(current, ast.ClassDef):
            return True
        current = facts.parent.get(current)
    return False


def _parameters(function) -> Set[str]:
    args = function.args
    return {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)} | {
        a.arg for a in (args.vararg, args.kwarg) if a is not None
    }


def _bindings(scope: ast.AST, before: Optional[int] = None) -> Set[str]:
    """Names the code of ``scope`` itself binds (not nested functions, lambdas or comprehensions)."""
    names: Set[str] = set()
    pending = list(ast.iter_child_nodes(scope))
    while pending:
        node = pending.pop()
        if before is not None and getattr(node, "lineno", 0) >= before:
            continue
        if isinstance(node, (*FUNCTIONS, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}  # "*" kept
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names |= set(node.names)
        if not isinstance(node, _NESTED):
            pending.extend(ast.iter_child_nodes(node))
    return names
