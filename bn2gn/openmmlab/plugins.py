"""The class a config's ``type`` means, read from the source the user's stack imports; the table last.

Search order: the config's plugin folder and ``custom_imports`` modules, the repository the
config lives in, the installed packages that fit the config's stack (``targets``), then bn2gn's
built-in table. A class found in source gets its keywords, ``**kwargs`` handling, children,
hard-coded BatchNorm and freezing from there, following its base classes across files; what the
source cannot tell (stage names, channel counts) comes from the table entry of the same name, and
``facts`` says which is which. Nothing is imported.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .class_entry import TABLE_WHERE, TERMINAL, build_entry, keywords, terminal
from .class_source import SourceClass
from .components import ComponentClass, known_class
from .source_index import (
    Root,
    SourceIndex,
    import_target,
    module_paths,
    repository_root,
)
from .targets import release


class Catalog:
    """Type string -> ComponentClass, from the roots in order, then the built-in table."""

    def __init__(self, plugin_dirs: Iterable[Path] = (), roots: Optional[Sequence[Root]] = None):
        self.plugin_dirs = tuple(Path(p) for p in plugin_dirs)
        if roots is None:
            roots = [Root(p.resolve(), "plugin folder") for p in self.plugin_dirs]
        self.index = SourceIndex(roots)
        self.notes: List[str] = []
        self.assumed: List[str] = []
        #: package -> release the config targets, for table entries that differ by version
        self.versions: Dict[str, Tuple[int, ...]] = {}
        self.custom_imports: Tuple[Path, ...] = ()
        self._cache: Dict[str, Optional[ComponentClass]] = {}

    def lookup(self, type_name: object) -> Optional[ComponentClass]:
        if not isinstance(type_name, str):
            return None
        if type_name not in self._cache:
            self._cache[type_name] = self._lookup(type_name)
        return self._cache[type_name]

    def _lookup(self, type_name: str) -> Optional[ComponentClass]:
        scope, _, name = type_name.rpartition(".")
        found = self.index.find(name, scope=scope)
        if found is not None:
            cls, root = found
            chain, tail = self._chain(cls)
            methods, method_tail = self._chain(cls, init=False)
            return build_entry(chain, tail, root.label, (methods, method_tail))
        table = known_class(name, self.versions)
        if table is not None and scope and table.package.split(" ")[0] != scope.split(".")[0]:
            table = None  # another package's class of that name: the table's is not it
        problem = self.index.parse_problem(name)
        if problem is not None:
            fallback = "its facts come from bn2gn's table" if table else "it is not checked"
            self.notes.append(f"{problem}: {name} could not be read there, so {fallback}")
        if table is None:
            return None
        return dataclasses.replace(
            table, package=self._version_label(table), facts=(("everything", TABLE_WHERE),)
        )

    def _version_label(self, table: ComponentClass) -> str:
        """The entry's package and version, and when the config targets another release, that."""
        package, _, versions = table.package.partition(" ")
        wanted = self.versions.get(package)
        if wanted is None or not versions:
            return table.package
        known = [release(v) for v in versions.split(" / ")]
        if any(k[: len(wanted)] == wanted or wanted[: len(k)] == k for k in known):
            return table.package
        target = ".".join(map(str, wanted))
        return f"{table.package}; the config targets {package} {target}, taken to be the same"

    def hook_keys(self, type_name: str, table: Dict[str, set]) -> Optional[Tuple[frozenset, str]]:
        """(the keys a hook / wrapper class of the project's own accepts, how that was decided)."""
        found = self.index.find(type_name)
        if found is None:
            return None
        known = {
            name: ComponentClass(name, TABLE_WHERE, TABLE_WHERE, "hook", frozenset(keys))
            for name, keys in table.items()
        }
        chain, tail = self._chain(found[0], lambda base: known.get(base))
        accepts, _, _, where = keywords(chain, 0, tail)
        if accepts is None:
            return None
        own = "; ".join(w for w in where if w != TABLE_WHERE)
        via = f" passes **kwargs on to {tail.name} ({TABLE_WHERE})" if tail is not None else ""
        return (
            accepts,
            f" ({own}{via}; together they take {', '.join(sorted(accepts))})",
        )

    def _chain(
        self, cls: SourceClass, table=known_class, init: bool = True
    ) -> Tuple[List[SourceClass], Optional[ComponentClass]]:
        """The class and its bases found in source, and what stands for the first one not found.

        ``init``: the classes whose ``__init__`` runs (``super(X, self).__init__`` jumps past X);
        otherwise the first-base line that methods such as ``train()`` are looked up in.
        """
        chain = [cls]
        while chain[-1].bases:
            here = chain[-1]
            base = here.bases[0].rpartition(".")[2]
            if init and here.super_of:  # super(X, self).__init__ runs the __init__ after X
                skipped = self._base(here, here.super_of)
                if skipped is None or not skipped.bases:
                    return chain, None
                here, base = skipped, skipped.bases[0].rpartition(".")[2]
            if base in TERMINAL:
                return chain, terminal(base)
            found = self._base(here, base)
            if found is None or any(c.name == found.name and c.path == found.path for c in chain):
                return chain, table(base)
            chain.append(found)
        return chain, terminal("object")

    def _base(self, here: SourceClass, base: str) -> Optional[SourceClass]:
        tree = self.index.tree(here.path)
        target = import_target(tree, here.path, base) if tree is not None else None
        for path in (target, here.path):
            found = self.index.in_file(path, base) if path is not None else None
            if found is not None:
                return found
        located = self.index.find(base, registered=False, near=here.path)
        return located[0] if located else None


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


def custom_import_paths(config_path: Path, custom_imports: object) -> Tuple[Path, ...]:
    """The files or packages ``custom_imports=dict(imports=[...])`` names, found above the config."""
    imports = custom_imports.get("imports") if isinstance(custom_imports, dict) else None
    if isinstance(imports, str):
        imports = [imports]
    if not isinstance(imports, (list, tuple)):
        return ()
    here = config_path.resolve().parent
    found: List[Path] = []
    for module in imports:
        if isinstance(module, str) and module:
            found += module_paths(module, (here, *here.parents))[:1]
    return tuple(dict.fromkeys(found))


def source_roots(
    config_path: Path,
    plugin_dirs: Tuple[Path, ...],
    custom: Tuple[Path, ...],
    installed,
) -> List[Root]:
    roots = [Root(p.resolve(), "plugin folder") for p in plugin_dirs]
    roots += [Root(p.resolve(), "custom_imports") for p in custom]
    repo = repository_root(config_path)
    if repo is not None:
        roots.append(Root(repo, f"repository {repo}"))
    roots += [
        Root(
            i.folder,
            f"installed {i.package} {i.version}",
            registered_only=True,
            installed=True,
        )
        for i in installed
    ]
    return roots


def open_catalog(
    config_path: Path, data: dict, explicit: Iterable[Path], mmengine_runner: bool
) -> Catalog:
    """The catalog for one config: its roots in search order, and what it assumes about versions."""
    from .targets import (
        installed_packages,
        pinned_versions,
        target_versions,
        usable_installed,
    )

    plugin_dirs = find_plugin_dirs(Path(config_path), data.get("plugin_dir"), explicit)
    custom = custom_import_paths(Path(config_path), data.get("custom_imports"))
    repo = repository_root(Path(config_path))
    pins = pinned_versions(repo)
    usable, skipped = usable_installed(mmengine_runner, pins, installed_packages())
    catalog = Catalog(plugin_dirs, source_roots(Path(config_path), plugin_dirs, custom, usable))
    catalog.custom_imports = custom
    catalog.assumed = [f"{p.package}=={p.version} pinned at {p.where}" for p in pins.values()]
    catalog.assumed += [f"installed {i.package} {i.version} read from {i.folder}" for i in usable]
    catalog.assumed += skipped
    catalog.versions = target_versions(mmengine_runner, pins, usable)
    catalog.assumed.append(
        "the versions bn2gn's table is read for: "
        + ", ".join(f"{k} {'.'.join(map(str, v))}" for k, v in sorted(catalog.versions.items()))
    )
    return catalog
