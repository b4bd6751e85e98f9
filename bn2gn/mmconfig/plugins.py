"""Classes the built-in table does not know, read statically from a plugin folder (``plugin_dir``).

A registered class (``@X.register_module()``) gets its ``__init__`` keywords and its
``self.name = ...`` children from the source; a subclass of a known class inherits that
class's entry. Nothing is imported.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from .components import ComponentClass, known_class

MAX_FILES = 5000


@dataclasses.dataclass(frozen=True)
class _PluginClass:
    name: str
    bases: Tuple[str, ...]
    keywords: Tuple[str, ...]
    var_kwargs: bool
    children: Tuple[str, ...]
    source: Path
    line: int


class Catalog:
    """The built-in table plus the plugin folder's classes."""

    def __init__(self, plugin_dirs: Iterable[Path] = ()):
        self.plugin_dirs = tuple(Path(p) for p in plugin_dirs)
        self._plugins: Dict[str, _PluginClass] = {}
        for folder in self.plugin_dirs:
            for found in _scan(folder):
                self._plugins.setdefault(found.name, found)

    def lookup(self, type_name: object) -> Optional[ComponentClass]:
        return self._lookup(type_name, ())

    def _lookup(self, type_name: object, seen: Tuple[str, ...]) -> Optional[ComponentClass]:
        known = known_class(type_name)
        if known is not None or not isinstance(type_name, str):
            return known
        plugin = self._plugins.get(type_name.rpartition(".")[2])
        if plugin is None or plugin.name in seen:
            return None
        parent = next(
            (p for p in (self._lookup(b, seen + (plugin.name,)) for b in plugin.bases) if p), None
        )
        return _entry(plugin, parent)


def _entry(plugin: _PluginClass, parent: Optional[ComponentClass]) -> ComponentClass:
    own = frozenset(plugin.keywords)
    if parent is not None:
        if not plugin.var_kwargs:
            accepts = own
        else:  # **kwargs go on to the parent class
            accepts = own | parent.accepts if parent.accepts is not None else None
        return dataclasses.replace(
            parent,
            name=plugin.name,
            package=f"{plugin.source}:{plugin.line}, subclass of {parent.name}",
            accepts=accepts,
            children=parent.children
            + tuple(c for c in plugin.children if c not in parent.children),
            segments=parent.segments | frozenset(plugin.children),
        )
    return ComponentClass(
        name=plugin.name,
        package="plugin",
        source=f"{plugin.source}:{plugin.line}",
        role="unknown",
        accepts=None if plugin.var_kwargs else own,
        children=plugin.children,
        segments=frozenset(plugin.children),
        opaque=plugin.children,
    )


def _scan(folder: Path) -> List[_PluginClass]:
    if not folder.is_dir():
        return []
    found: List[_PluginClass] = []
    for count, path in enumerate(sorted(folder.rglob("*.py"))):
        if count >= MAX_FILES:
            break
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError, RecursionError):
            continue
        found += [
            _read_class(node, path)
            for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef) and _is_registered(node)
        ]
    return found


def _is_registered(node: ast.ClassDef) -> bool:
    return any("register_module" in ast.unparse(d) for d in node.decorator_list)


def _read_class(node: ast.ClassDef, path: Path) -> _PluginClass:
    init = next(
        (s for s in node.body if isinstance(s, ast.FunctionDef) and s.name == "__init__"), None
    )
    keywords: Tuple[str, ...] = ()
    var_kwargs = init is None
    children: List[str] = []
    if init is not None:
        args = init.args
        keywords = tuple(
            a.arg for a in args.posonlyargs + args.args + args.kwonlyargs if a.arg != "self"
        )
        var_kwargs = args.kwarg is not None
        for stmt in ast.walk(init):
            if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Call):
                for target in stmt.targets:
                    if (
                        isinstance(target, ast.Attribute)
                        and getattr(target.value, "id", None) == "self"
                    ):
                        children.append(target.attr)
    bases = tuple(ast.unparse(b).rpartition(".")[2] for b in node.bases)
    return _PluginClass(
        node.name, bases, keywords, var_kwargs, tuple(dict.fromkeys(children)), path, node.lineno
    )


def find_plugin_dirs(
    config_path: Path, plugin_dir: object, explicit: Iterable[Path] = ()
) -> Tuple[Path, ...]:
    """``--plugin-dir`` folders, else the config's ``plugin_dir`` looked up from the config's folder upwards
    (CMT's ``plugin_dir`` is relative to the repository root the training runs from)."""
    explicit = tuple(Path(p) for p in explicit)
    if explicit:
        return explicit
    if not isinstance(plugin_dir, str) or not plugin_dir:
        return ()
    here = config_path.resolve().parent
    for folder in (here, *here.parents):
        candidate = folder / plugin_dir
        if candidate.is_dir():
            return (candidate,)
    return ()
