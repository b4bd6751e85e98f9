"""The folders a train script's absolute imports are found in: its own folder, the folders the
repository's own ``sys.path`` set-up adds, and the repository root.

CenterNet-family scripts start with ``import _init_paths``, a module beside them that runs
``sys.path.insert(0, osp.join(this_dir, 'lib'))`` (often through a small ``add_path`` function);
others do the same inline. The path expressions are read with ``ast`` and evaluated for the few
spellings they use: ``__file__``, ``os.path.dirname/abspath/realpath/join``, ``pathlib.Path(...)``
with ``.parent``/``.parents[N]``/``.resolve()``/``/``, string literals and module-level names bound
to such expressions. Anything else is skipped.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..core.ast_tools import dotted
from .repo_files import parse, read_text

_PATH_FUNCS = {"dirname", "abspath", "realpath", "normpath", "join", "expanduser"}


def import_roots(script: Path, repo: Path, texts) -> Tuple[Path, ...]:
    """The script's folder, then what its ``sys.path`` set-up adds (its own and that of the modules
    beside it that it imports), then the repository root; each folder once."""
    script = Path(script)
    roots: List[Path] = [script.parent]
    tree = parse(read_text(str(script), texts))
    if tree is not None:
        roots += added_paths(tree, script, repo)
        for path in _sibling_imports(tree, script.parent):
            module = parse(read_text(str(path), texts))
            if module is not None:
                roots += added_paths(module, path, repo)
    roots.append(Path(repo))
    seen, unique = set(), []
    for root in roots:
        key = os.path.realpath(root)
        if key not in seen and Path(root).is_dir():
            seen.add(key)
            unique.append(Path(os.path.normpath(root)))
    return tuple(unique)


def enclosing_folders(script: Path, repo: Path) -> tuple:
    """Where a script's absolute imports are looked for: its folders up to the repository root."""
    roots, folder, top = [], Path(script).parent, os.path.realpath(repo)
    while True:
        roots.append(folder)
        if os.path.realpath(folder) == top or folder.parent == folder:
            return tuple(roots)
        if not os.path.realpath(folder).startswith(top):
            return tuple(roots) + (Path(repo),)
        folder = folder.parent


def _sibling_imports(tree: ast.Module, folder: Path) -> List[Path]:
    """Modules beside the script that it imports at module level (``import _init_paths``)."""
    found = []
    for node in tree.body:
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        for name in names:
            candidate = folder / f"{name}.py"
            if "." not in name and candidate.is_file():
                found.append(candidate)
    return found


def added_paths(tree: ast.Module, path: Path, repo: Path) -> List[Path]:
    """Folders the module-level code of ``tree`` (the file at ``path``) puts on ``sys.path``. A
    relative path (``sys.path.append('src/lib')``) depends on where the script runs: the first of
    the script's folder and the repository root where that folder exists is taken."""
    bound: Dict[str, ast.AST] = {}
    adders = _adder_functions(tree)
    found = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                bound[target.id] = node.value
        for call in _calls(node):
            argument = _added_argument(call, adders)
            value = _evaluate(argument, bound, path, 0) if argument is not None else None
            if isinstance(value, str) and value and not os.path.isabs(value):
                value = next(
                    (b / value for b in (Path(path).parent, Path(repo)) if (b / value).is_dir()),
                    None,
                )
            if isinstance(value, Path):
                found.append(value)
    return found


def _calls(node: ast.AST) -> List[ast.Call]:
    """The calls of a module-level statement, not inside function or class bodies."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return []
    return [n for n in ast.walk(node) if isinstance(n, ast.Call)]


def _adder_functions(tree: ast.Module) -> Dict[str, int]:
    """Module-level functions that put one of their parameters on sys.path: name -> its index."""
    adders = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        params = [a.arg for a in node.args.args]
        for call in ast.walk(node):
            argument = _added_argument(call, {}) if isinstance(call, ast.Call) else None
            if isinstance(argument, ast.Name) and argument.id in params:
                adders[node.name] = params.index(argument.id)
    return adders


def _added_argument(call: ast.Call, adders: Dict[str, int]) -> Optional[ast.AST]:
    """The path argument of ``sys.path.insert(i, P)`` / ``sys.path.append(P)`` / ``add_path(P)``."""
    func = call.func
    if isinstance(func, ast.Attribute) and dotted(func.value) == "sys.path":
        if func.attr == "insert" and len(call.args) == 2:
            return call.args[1]
        if func.attr == "append" and len(call.args) == 1:
            return call.args[0]
        return None
    if isinstance(func, ast.Name) and func.id in adders and len(call.args) > adders[func.id]:
        return call.args[adders[func.id]]
    return None


def _evaluate(node: ast.AST, bound: dict, path: Path, depth: int):
    """A ``Path`` or ``str`` for the path spellings above; None for anything else."""
    if depth > 20:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        if node.id == "__file__":
            return Path(path)
        return _evaluate(bound[node.id], bound, path, depth + 1) if node.id in bound else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        left, right = (_evaluate(n, bound, path, depth + 1) for n in (node.left, node.right))
        return _join([left, right])
    if isinstance(node, ast.Attribute):
        value = _evaluate(node.value, bound, path, depth + 1)
        return Path(value).parent if node.attr == "parent" and value is not None else None
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute):
        base = _evaluate(node.value.value, bound, path, depth + 1)
        index = node.slice
        if node.value.attr == "parents" and base is not None and isinstance(index, ast.Constant):
            parents = Path(base).parents
            valid = isinstance(index.value, int) and 0 <= index.value < len(parents)
            return parents[index.value] if valid else None
        return None
    if isinstance(node, ast.Call):
        return _evaluate_call(node, bound, path, depth)
    return None


def _evaluate_call(node: ast.Call, bound: dict, path: Path, depth: int):
    func = node.func
    args = [_evaluate(a, bound, path, depth + 1) for a in node.args]
    if any(a is None for a in args) or node.keywords:
        return None
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if isinstance(func, ast.Attribute) and name in ("resolve", "absolute") and not args:
        return _evaluate(func.value, bound, path, depth + 1)
    if name == "str" and len(args) == 1:
        return args[0]
    if name in ("Path", "PurePath") and args:
        return _join(args)
    if name not in _PATH_FUNCS or not args:
        return None
    if name == "join":
        return _join(args)
    if name == "dirname":
        return Path(args[0]).parent
    return args[0]


def _join(parts) -> Optional[Path]:
    if any(p is None for p in parts):
        return None
    first, rest = parts[0], parts[1:]
    if not isinstance(first, Path):
        return None  # a path relative to the working folder: where the script runs is not known
    return Path(os.path.normpath(first.joinpath(*[str(p) for p in rest])))
