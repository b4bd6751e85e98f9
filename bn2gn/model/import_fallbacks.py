"""Names a module binds to ``None`` when an import fails, found with the standard-library ``ast``.

Detector repositories swallow a missing compiled extension::

    try:
        from .DCNv2.dcn_v2 import DCN
    except ImportError:      # or a bare ``except:``
        DCN = None

and the model build later fails with ``'NoneType' object is not callable``, far from the cause.
``model.spec`` uses these findings to name the module to stand in with ``--stub``.
"""

from __future__ import annotations

import ast
import dataclasses
from typing import List, Set

#: Exception names whose handler runs when an import fails.
_CATCHES_IMPORT_ERRORS = {
    "ImportError",
    "ModuleNotFoundError",
    "Exception",
    "BaseException",
    "OSError",
}


@dataclasses.dataclass(frozen=True)
class Fallback:
    """``name`` is bound to None at ``line`` when importing ``module`` (absolute) fails."""

    name: str
    module: str
    line: int


def find_fallbacks(text: str, module_name: str, is_package: bool = False) -> List[Fallback]:
    """Every ``try: import ... / except ImportError: NAME = None`` in ``text`` (any nesting level)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return []
    package = module_name if is_package else module_name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        nulled = set()
        for handler in node.handlers:
            if _catches_import_errors(handler.type):
                nulled |= _names_set_to_none(handler.body)
        if not nulled:
            continue
        for statement in node.body:
            for imported in ast.walk(statement):
                found += _fallbacks_of(imported, nulled, package)
    return found


def _catches_import_errors(kind) -> bool:
    if kind is None:
        return True  # bare except
    kinds = kind.elts if isinstance(kind, ast.Tuple) else [kind]
    names = {
        k.id if isinstance(k, ast.Name) else k.attr if isinstance(k, ast.Attribute) else ""
        for k in kinds
    }
    return bool(names & _CATCHES_IMPORT_ERRORS)


def _names_set_to_none(body) -> Set[str]:
    names = set()
    for statement in body:
        if isinstance(statement, ast.Assign):
            values = statement.value.elts if isinstance(statement.value, ast.Tuple) else None
            for target in statement.targets:
                if isinstance(target, ast.Name) and _is_none(statement.value):
                    names.add(target.id)
                elif (
                    isinstance(target, ast.Tuple)
                    and values is not None
                    and len(values) == len(target.elts)
                ):
                    names |= {
                        t.id
                        for t, v in zip(target.elts, values)
                        if isinstance(t, ast.Name) and _is_none(v)
                    }
    return names


def _is_none(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _fallbacks_of(node, nulled: Set[str], package: str) -> List[Fallback]:
    if isinstance(node, ast.Import):
        return [
            Fallback(alias.asname or alias.name.split(".")[0], alias.name, node.lineno)
            for alias in node.names
            if (alias.asname or alias.name.split(".")[0]) in nulled
        ]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = _absolute(node.module, node.level, package)
    found = []
    for alias in node.names:
        bound = alias.asname or alias.name
        if bound in nulled and base:
            # ``from . import dcn_v2``: the name is itself a module; otherwise the module it comes from
            module = f"{base}.{alias.name}" if node.module is None else base
            found.append(Fallback(bound, module, node.lineno))
    return found


def _absolute(module, level: int, package: str) -> str:
    if not level:
        return module or ""
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return ""
    base = parts[: len(parts) - (level - 1)]
    return ".".join(base + ([module] if module else []))
