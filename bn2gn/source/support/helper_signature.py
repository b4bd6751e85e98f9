"""Whether the user's own ``get_group_norm`` can take the calls BN2GN101 writes.

A file that already defines or imports ``get_group_norm`` keeps it (BN2GN102 injects nothing). The
converted calls pass the channel count and, where the BatchNorm had them, ``eps=`` and
``affine=``; a helper of another shape would raise TypeError when the model is built. So its
signature is checked (defined in the file, or in the sibling module a relative import names), and
a file whose helper cannot take the calls is refused in one line instead.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import List, Optional, Tuple

from ...core.errors import SourceError

HELPER = "get_group_norm"


def helper_calls(tree: ast.Module) -> Tuple[int, set]:
    """(most positional arguments, keywords) over the file's calls of the helper."""
    positional, keywords = 0, set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == HELPER
        ):
            positional = max(positional, len(node.args))
            keywords |= {k.arg for k in node.keywords if k.arg}
    return positional, keywords


def find_helper(tree: ast.Module, path: Path) -> Optional[Tuple[ast.AST, str, int]]:
    """The helper's definition, where it is, and the line of this file that defines or imports it
    (from this file, or the module a relative import names)."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == HELPER:
            return node, f"{path}:{node.lineno}", node.lineno
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level and node.module:
            if any(a.name == HELPER and (a.asname or a.name) == HELPER for a in node.names):
                found = _from_module(path, node)
                return (*found, node.lineno) if found else None
    return None


def _from_module(path: Path, node: ast.ImportFrom) -> Optional[Tuple[ast.AST, str]]:
    folder = Path(path).parent
    for _ in range(node.level - 1):
        folder = folder.parent
    base = folder.joinpath(*node.module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        try:
            tree = ast.parse(candidate.read_bytes())
        except (OSError, SyntaxError, ValueError, RecursionError):
            continue
        for item in tree.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name == HELPER:
                return item, f"{candidate}:{item.lineno}"
        return None
    return None


def incompatibility(function, positional: int, keywords: set) -> Optional[str]:
    """Why ``function`` cannot take ``positional`` arguments and ``keywords``, or None."""
    args = function.args
    by_position = [*args.posonlyargs, *args.args]
    defaults = len(args.defaults)
    required = [a.arg for a in by_position[: len(by_position) - defaults]]
    if positional > len(by_position) and args.vararg is None:
        return f"takes {len(by_position)} positional argument(s), the converted calls pass {positional}"
    named = {a.arg for a in (*args.args, *args.kwonlyargs)}
    missing = sorted(k for k in keywords if k not in named) if args.kwarg is None else []
    if missing:
        return f"has no {', '.join(m + '=' for m in missing)} parameter, which the converted calls pass"
    unfilled = [name for name in required[positional:] if name not in keywords]
    unfilled += [
        a.arg
        for a, default in zip(args.kwonlyargs, args.kw_defaults)
        if default is None and a.arg not in keywords
    ]
    if unfilled:
        return f"requires {', '.join(unfilled)}, which the converted calls do not pass"
    return None


def signature(function) -> str:
    args = function.args
    parts: List[str] = [a.arg for a in (*args.posonlyargs, *args.args)]
    if args.vararg or args.kwonlyargs:
        parts.append("*" + (args.vararg.arg if args.vararg else ""))
    parts += [a.arg for a in args.kwonlyargs]
    if args.kwarg:
        parts.append("**" + args.kwarg.arg)
    return ", ".join(parts)


def check_user_helper(text: str, path: Path) -> None:
    """SourceError when the file's own get_group_norm cannot take its (converted) calls."""
    tree = ast.parse(text)
    found = find_helper(tree, path)
    if found is None:
        return
    function, where, line = found
    positional, keywords = helper_calls(tree)
    why = incompatibility(function, max(positional, 1), keywords)
    if why is None:
        return
    raise SourceError(
        path,
        line,
        f"your {HELPER}({signature(function)}) at {where} {why}; give it the parameters "
        f"(num_channels, num_groups=32, eps=1e-5, affine=True), or rename it so bn2gn injects "
        "its own; file left unchanged",
    )
