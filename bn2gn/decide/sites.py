"""Find every BatchNorm construction site in a file, whatever the import style."""

from __future__ import annotations

import ast
from typing import FrozenSet, List, Optional, Tuple

from ..core.ast_tools import lines_spelling, spans_a_line, walk
from .facts import (
    ATTR_SETTERS,
    BATCHNORM_OPS,
    PARTIAL,
    TYPE_CHECKS,
    ModuleFacts,
    RawSite,
    lines_tell,
)
from .plan import scope_name

CONTAINER_CALLS = {"Sequential", "ModuleList"}
LIST_BUILDERS = {"append", "extend", "insert"}


def parent_of(node: ast.AST) -> Optional[ast.AST]:
    return getattr(node, "_bn2gn_parent", None)


def collect_sites(facts: ModuleFacts) -> List[RawSite]:
    """All sites of ``facts`` in source order; calls, partials and BatchNorm2d passed as a callable.

    Only the statements whose lines spell a word a BatchNorm reference needs are walked, at every
    depth: a site's own text spells one, so every statement holding it does.
    """
    found = []
    words = _site_words(facts)
    lines = None if words is None else lines_spelling(facts.lines, words)
    names = _site_names(facts)
    for top in facts.tree.body:
        if lines is not None and not spans_a_line(top, lines):
            continue
        top._bn2gn_parent = facts.tree  # type: ignore[attr-defined]
        for node in walk(top, parents=True, lines=lines):
            if _last_name(node.func if isinstance(node, ast.Call) else node) not in names:
                continue  # ``_classify_node`` would qualify it for nothing
            hit = _classify_node(facts, node)
            if hit:
                op, form = hit
                found.append(_raw_site(facts, node, op, form))
    found.sort(key=lambda s: (s.node.lineno, s.node.col_offset))
    facts.sites = found
    return found


def _site_words(facts: ModuleFacts) -> Optional[FrozenSet[str]]:
    """What the text of a BatchNorm reference holds, one of: ``BatchNorm`` (every BatchNorm class's
    name has it), a name the file binds to one at the top level (``BN = nn.BatchNorm2d``) or imports
    as one (``from torch.nn import BatchNorm2d as BN``). None where lines cannot tell: a text that is
    not ASCII (``ast`` names identifiers after NFKC) or holds a line break Python does not count."""
    if not lines_tell("".join(facts.lines)):
        return None
    imported = {name for name, dotted in facts.imports.items() if dotted in BATCHNORM_OPS}
    return frozenset({"BatchNorm"} | set(facts.bn_aliases) | imported)


#: the last names of what a site's expression qualifies to (``BATCHNORM_OPS``, ``PARTIAL``)
LAST_NAMES = frozenset(dotted.rpartition(".")[2] for dotted in (*BATCHNORM_OPS, *PARTIAL))


def _site_names(facts: ModuleFacts) -> FrozenSet[str]:
    """The names a site's call, partial or callable ends with: ``qualify`` gives a dotted name of
    ``BATCHNORM_OPS`` or ``PARTIAL`` only to a name the file binds to one (an import, a BatchNorm
    alias) or to an expression that ends with such a last name (``nn.BatchNorm2d``, a star import,
    a definition of the module itself)."""
    wanted = BATCHNORM_OPS.keys() | PARTIAL
    bound = {name for name, dotted in facts.imports.items() if dotted in wanted}
    return LAST_NAMES | bound | facts.bn_aliases.keys()


def _last_name(node: ast.AST) -> Optional[str]:
    """A Name's id or an Attribute's attr (what ``qualify`` ends with); None for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _classify_node(facts: ModuleFacts, node: ast.AST) -> Optional[Tuple[str, str]]:
    if isinstance(node, ast.Call):
        op = facts.batchnorm_op(node.func)
        if op:
            return op, "call"
        if facts.qualify(node.func) in PARTIAL and node.args:
            op = facts.batchnorm_op(node.args[0])
            if op:
                return op, "partial"
        return None
    if isinstance(node, (ast.Name, ast.Attribute)) and isinstance(
        getattr(node, "ctx", None), ast.Load
    ):
        op = facts.batchnorm_op(node)
        if op and _is_passed_as_callable(facts, node):
            return op, "callable"
    return None


def _is_passed_as_callable(facts: ModuleFacts, node: ast.AST) -> bool:
    parent = parent_of(node)
    if isinstance(parent, ast.Call):
        if node is parent.func:
            return False
        if facts.qualify(parent.func) in PARTIAL and parent.args and parent.args[0] is node:
            return False
        return not _inside_type_check(node)
    if isinstance(parent, ast.keyword):
        return not _inside_type_check(node)
    if isinstance(parent, ast.arguments):
        return True
    if isinstance(parent, (ast.Tuple, ast.List, ast.Set, ast.Dict)):
        return not _inside_type_check(node)
    if isinstance(parent, (ast.Assign, ast.AnnAssign)) and parent.value is node:
        return parent_of(parent) is not facts.tree
    return False


def _inside_type_check(node: ast.AST) -> bool:
    current = node
    while current is not None and not isinstance(current, ast.stmt):
        parent = parent_of(current)
        if isinstance(parent, ast.Call):
            func = parent.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else None
            )
            if name in TYPE_CHECKS or name == "type":
                return True
        if isinstance(parent, (ast.Compare, ast.ExceptHandler)):
            return True
        current = parent
    return isinstance(current, ast.ClassDef)


def _raw_site(facts: ModuleFacts, node: ast.expr, op: str, form: str) -> RawSite:
    chain, class_name, statement, owner = [], None, None, None
    current = node
    while True:
        parent = parent_of(current)
        if statement is None and isinstance(current, ast.stmt):
            statement = current
        if (
            isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            and current is not node
        ):
            chain.insert(0, current)
        if isinstance(current, ast.ClassDef) and class_name is None and not chain:
            class_name = current.name
        elif isinstance(current, ast.ClassDef) and class_name is None:
            class_name = current.name
        if parent is facts.tree or parent is None:
            owner = _owner_name(current)
            break
        current = parent
    funcs = [f.name for f in chain if not isinstance(f, ast.Lambda)]
    return RawSite(
        node=node,
        op=op,
        form=form,
        scope=scope_name(class_name, funcs),
        owner=owner,
        statement=statement,
        func_chain=tuple(chain),
        target=describe_target(node),
    )


def _owner_name(top: ast.stmt) -> Optional[str]:
    if isinstance(top, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        return top.name
    if isinstance(top, ast.Assign) and isinstance(top.targets[0], ast.Name):
        return top.targets[0].id
    if isinstance(top, ast.AnnAssign) and isinstance(top.target, ast.Name):
        return top.target.id
    return None


def _text(node: ast.AST, limit: int = 40) -> str:
    text = ast.unparse(node)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_target(node: ast.AST) -> str:
    """Where the module ends up: ``self.actf[0]``, ``layers.append(...)``, ``return``."""
    suffix = ""
    current = node
    while True:
        parent = parent_of(current)
        if isinstance(parent, ast.Call) and current in parent.args:
            func = parent.func
            attr = (
                func.attr
                if isinstance(func, ast.Attribute)
                else func.id
                if isinstance(func, ast.Name)
                else ""
            )
            if attr in LIST_BUILDERS and isinstance(func, ast.Attribute):
                return f"{_text(func.value)}.{attr}(...){suffix}"
            if attr in ATTR_SETTERS or attr == "setattr":
                return _setter_target(parent) + suffix
            if attr in CONTAINER_CALLS and not any(isinstance(a, ast.Starred) for a in parent.args):
                suffix = f"[{parent.args.index(current)}]{suffix}"
            current = parent
            continue
        if isinstance(parent, (ast.List, ast.Tuple)) and current in parent.elts:
            if not any(isinstance(e, ast.Starred) for e in parent.elts):
                suffix = f"[{parent.elts.index(current)}]{suffix}"
            current = parent
            continue
        if isinstance(
            parent, (ast.keyword, ast.Starred, ast.ListComp, ast.GeneratorExp, ast.IfExp)
        ):
            current = parent
            continue
        break
    if isinstance(parent, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        target = parent.targets[0] if isinstance(parent, ast.Assign) else parent.target
        return _text(target) + suffix
    if isinstance(parent, ast.Return):
        return "return" + suffix
    if isinstance(parent, ast.arguments):
        return "default argument"
    if isinstance(parent, ast.Call):
        return f"argument of {_text(parent.func)}(...)"
    return _text(parent) if isinstance(parent, ast.AST) else "?"


def _setter_target(call: ast.Call) -> str:
    name_arg = (
        call.args[1]
        if (isinstance(call.func, ast.Name) and len(call.args) > 1)
        else (call.args[0] if call.args else None)
    )
    if isinstance(name_arg, ast.Constant) and isinstance(name_arg.value, str):
        return f"self.{name_arg.value}"
    return f"self.<{_text(name_arg) if name_arg is not None else '?'}>"
