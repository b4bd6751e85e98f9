"""What a train script loads, read with ``ast``: argparse options with their defaults, ``torch.load`` paths.

Checkpoint options are recognised by name (``--load_model``, ``--resume_from``, ``--checkpoint``,
``--weights``, ``--pretrained``...) when they take a value: ``action='store_true'`` flags such as
``--resume`` are switches, not paths.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
from pathlib import Path
from typing import List, Optional

from ..core.ast_tools import dotted

CHECKPOINT_NAME = re.compile(r"(load|resume|ckpt|checkpoint|weights?|pretrain)", re.IGNORECASE)
SWITCH_ACTIONS = {
    "store_true",
    "store_false",
    "store_const",
    "count",
    "append_const",
    "help",
    "version",
}
NOT_PATH_TYPES = {"int", "float", "bool"}

_MISSING = object()


@dataclasses.dataclass(frozen=True)
class Option:
    """One ``add_argument`` call: its first long flag, its dest and its default when literal."""

    flag: str
    dest: str
    default: Optional[str] = None
    value: object = None
    has_literal_default: bool = False
    takes_value: bool = True
    type_name: str = ""


def collect_options(tree: ast.AST) -> List[Option]:
    """Every ``X.add_argument('--name', ...)`` call in the module."""
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_argument"
        ):
            option = _option(node)
            if option is not None:
                found.append(option)
    return found


def _option(call: ast.Call) -> Optional[Option]:
    flags = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if not flags or not all(f.startswith("-") for f in flags):
        return None
    longs = [f for f in flags if f.startswith("--")] or flags
    keywords = {k.arg: k.value for k in call.keywords if k.arg}
    dest = _literal(keywords.get("dest"), None) or longs[0].lstrip("-").replace("-", "_")
    action = _literal(keywords.get("action"), None)
    value = _literal(keywords["default"], _MISSING) if "default" in keywords else None
    type_node = keywords.get("type")
    type_name = type_node.id if isinstance(type_node, ast.Name) else ""
    return Option(
        flag=longs[0],
        dest=dest,
        default=value if isinstance(value, str) else None,
        value=None if value is _MISSING else value,
        has_literal_default=value is not _MISSING,
        takes_value=action not in SWITCH_ACTIONS,
        type_name=type_name,
    )


def _literal(node, fallback):
    if node is None:
        return fallback
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return fallback


def checkpoint_options(tree: ast.AST) -> List[Option]:
    """Options named like a checkpoint that take a path."""
    return [
        o
        for o in collect_options(tree)
        if o.takes_value
        and o.type_name not in NOT_PATH_TYPES
        and CHECKPOINT_NAME.search(o.dest)
        and (o.value is None or isinstance(o.value, str))
    ]


def torch_load_paths(tree: ast.AST) -> List[str]:
    """String literals passed as the file to ``torch.load`` (``torch.load('x.pth')``, ``f='x.pth'``)."""
    paths = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and dotted(node.func) == "torch.load":
            first = (
                node.args[0]
                if node.args
                else next((k.value for k in node.keywords if k.arg == "f"), None)
            )
            if isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value:
                paths.append(first.value)
    return paths


def imported_files(tree: ast.Module, roots) -> List[Path]:
    """Repository files the script imports at module level (absolute imports, found under ``roots``:
    its folder, what its sys.path set-up adds, the repository root)."""
    found = []
    for node in tree.body:
        names = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            path = module_file(name, roots)
            if path is not None and path not in found:
                found.append(path)
    return found


def module_file(name: str, roots) -> Optional[Path]:
    for root in roots:
        stem = Path(root, *name.split("."))
        for candidate in (stem.with_suffix(".py"), stem / "__init__.py"):
            if candidate.is_file() and os.path.realpath(candidate).startswith(
                os.path.realpath(root)
            ):
                return candidate
    return None
