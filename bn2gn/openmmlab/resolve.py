"""The effective config of a classic OpenMMLab config file, with mmengine 0.10's merge rules.

``_base_`` (a string or list, paths relative to the file) is resolved first; bases may not
share top-level keys; the file's own names are then merged into the bases: dicts recursively
(``custom_keys`` included), everything else (lists too) replaced, ``_delete_=True`` replaces a
whole dict. Mirrors ``mmengine.Config._file2dict`` / ``ConfigDict._merge_a_into_b``.
"""

from __future__ import annotations

import ast
import dataclasses
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..core.errors import SourceError, message_text
from ..core.source_files import read_source
from .evaluate import BASE_KEY, MMENGINE_RESOLVER, RefusedConstruct, evaluate_module
from .values import CfgDict, Origin, deep_copy

DELETE_KEY = "_delete_"


class LazyConfig(SourceError):
    """A new-style config (``with read_base():`` and class imports): a different format."""


@dataclasses.dataclass
class ResolvedConfig:
    path: Path
    data: CfgDict
    #: every file read, the user's own first
    files: Tuple[Path, ...]
    #: the files named in each file's ``_base_``
    bases: Dict[Path, Tuple[Path, ...]]
    resolver: str = "static"
    #: ``file:line`` of the ``_base_`` assignment in each file that has one
    base_lines: Dict[Path, int] = dataclasses.field(default_factory=dict)

    def origin(self, *path: Any) -> Optional[Origin]:
        from .values import origin_at

        return origin_at(self.data, tuple(path))

    def is_own(self, origin: Optional[Origin]) -> bool:
        """Was this value written in the user's own file (not inherited)?"""
        return origin is not None and origin.file == self.path


def resolve_config(path: Path, overrides: Optional[Dict[Path, str]] = None) -> ResolvedConfig:
    """Resolve ``path`` statically; SourceError (file:line) for anything it cannot read.

    ``overrides`` maps resolved paths to text that replaces the file's content (a rewrite in progress).
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(path, 1, "no such config file" if not path.exists() else "not a file")
    files: List[Path] = []
    bases: Dict[Path, Tuple[Path, ...]] = {}
    base_lines: Dict[Path, int] = {}
    data = _resolve(path, (), files, bases, base_lines, overrides or {})
    for key in [k for k in data if str(k).startswith("__")]:
        del data[key]
    return ResolvedConfig(
        path=path, data=data, files=tuple(files), bases=bases, base_lines=base_lines
    )


def _resolve(
    path: Path, stack: Tuple[Path, ...], files: List[Path], bases, base_lines, overrides
) -> CfgDict:
    key = path.resolve()
    if key in stack:
        chain = " -> ".join(p.name for p in stack + (key,))
        raise SourceError(path, 1, f"_base_ files form a cycle ({chain}); remove one of the links")
    files.append(path)
    tree = _parse(path, overrides.get(key))
    check_not_lazy(path, tree)
    base_files, line = _base_files(path, tree)
    if line:
        base_lines[path] = line
    bases[path] = tuple(base_files)
    merged_base = CfgDict()
    for base in base_files:
        if not base.is_file():
            raise SourceError(path, line, f"_base_ file {base} does not exist")
        values = _resolve(base, stack + (key,), files, bases, base_lines, overrides)
        duplicate = sorted(set(merged_base) & set(values), key=str)
        if duplicate:
            raise SourceError(
                path,
                line,
                f"_base_ files both define {', '.join(map(str, duplicate))}; "
                "mmengine refuses duplicate keys among bases",
            )
        for name, value in values.items():
            merged_base.set(name, value, values.origin(name))
    try:
        own = evaluate_module(
            path, tree, merged_base
        )  # the same object, as in mmengine: del _base_.x counts
    except RecursionError:
        raise SourceError(
            path,
            1,
            message_text("too deeply nested for the static resolver; use ", MMENGINE_RESOLVER),
        ) from None
    for name in [n for n in own if str(n).startswith("__")]:
        del own[name]
    for name in list(
        own
    ):  # mmengine's _substitute_base_vars rebuilds each value: `b = a` no longer aliases
        own.set(name, deep_copy(own[name]), own.origin(name))
    return merge_into(own, merged_base)


def _parse(path: Path, text: Optional[str] = None) -> ast.Module:
    text = read_source(path).text if text is None else text
    try:
        return ast.parse(text, filename=str(path))
    except SyntaxError as exc:
        raise SourceError(path, exc.lineno or 1, f"cannot parse: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:
        raise SourceError(path, 1, f"cannot parse: {exc}") from None


def check_not_lazy(path: Path, tree: ast.Module) -> None:
    """mmengine's own test (``Config._is_lazy_import``): ``with read_base()`` or importing a package."""
    has_base = any(
        isinstance(s, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == BASE_KEY for t in s.targets)
        for s in tree.body
    )
    for node in ast.walk(tree):
        if isinstance(node, ast.With) and any(
            _is_read_base(item.context_expr) for item in node.items
        ):
            raise LazyConfig(
                path,
                node.lineno,
                "new-style lazy config (with read_base():); bn2gn config "
                "reads classic dict configs only",
            )
    for node in ast.walk(tree):
        if (
            not has_base
            and isinstance(node, ast.ImportFrom)
            and (node.level or not _is_stdlib(node.module))
        ):
            raise LazyConfig(
                path,
                node.lineno,
                "new-style lazy config (imports classes); bn2gn config "
                "reads classic dict configs only",
            )


def _is_read_base(expr: ast.expr) -> bool:
    return (
        isinstance(expr, ast.Call)
        and getattr(expr.func, "id", getattr(expr.func, "attr", None)) == "read_base"
    )


def _is_stdlib(module: Optional[str]) -> bool:
    return bool(module) and module.split(".")[0] in getattr(sys, "stdlib_module_names", ())


def _base_files(path: Path, tree: ast.Module) -> Tuple[List[Path], int]:
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == BASE_KEY for t in stmt.targets
        ):
            try:
                value = ast.literal_eval(stmt.value)
            except (ValueError, SyntaxError):
                raise RefusedConstruct(
                    path,
                    stmt.lineno,
                    message_text(
                        "_base_ must be a string or a list of strings written out; use ",
                        MMENGINE_RESOLVER,
                    ),
                ) from None
            names = value if isinstance(value, (list, tuple)) else [value]
            if not all(isinstance(n, str) for n in names):
                raise SourceError(path, stmt.lineno, "_base_ must be a string or a list of strings")
            for name in names:
                if "::" in name:
                    raise RefusedConstruct(
                        path,
                        stmt.lineno,
                        message_text(
                            f"_base_ {name!r} names a config inside an installed package; use ",
                            MMENGINE_RESOLVER,
                        ),
                    )
            return [path.parent / n for n in names], stmt.lineno
    return [], 0


def merge_into(child: dict, base: dict) -> CfgDict:
    """``Config._merge_a_into_b(child, base)`` as ``_file2dict`` calls it: child wins, dicts merge
    unless the child's dict says ``_delete_=True``; a child dict over a base non-dict is an error."""
    out = base.copy() if isinstance(base, CfgDict) else CfgDict(base)
    for key, value in child.items():
        origin = _origin(child, key)
        if isinstance(value, dict) and key in base and not value.pop(DELETE_KEY, False):
            if not isinstance(base[key], dict):
                file, line = (origin.file, origin.line) if origin else (None, 1)
                raise SourceError(
                    file,
                    line,
                    f"{key} is a dict here but a {type(base[key]).__name__} in the "
                    "_base_ files; mmengine refuses to merge them (set _delete_=True)",
                )
            out.set(key, merge_into(value, base[key]), origin)
        else:
            out.set(key, value, origin)
    return out


def _origin(container: dict, key: Any) -> Optional[Origin]:
    return container.origin(key) if isinstance(container, CfgDict) else None
