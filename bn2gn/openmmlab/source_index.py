"""Where a config's classes live: the plugin folder, ``custom_imports``, the repository, installed packages.

Roots are searched in that order, as the user's stack imports them; a cheap text match on
``class Name`` picks the files worth parsing. A file that does not parse is remembered with its
``file:line`` so the report can say why a class fell back to bn2gn's table. Nothing is imported.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import re
import warnings
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from .class_source import SourceClass, read_class

MAX_FILES = 5000
MAX_BYTES = 2_000_000
#: how far above the config its repository's top may be (projects/X/configs/sub/cfg.py is 4)
MAX_DEPTH = 6
#: folders never entered when a repository is searched
SKIP_DIRS = {
    ".git",
    ".hg",
    ".venv",
    "venv",
    "build",
    "dist",
    "site-packages",
    "__pycache__",
    "node_modules",
    ".eggs",
    "data",
    "work_dirs",
    "tests",
}
#: files that mark the top of a repository
REPO_MARKERS = (".git", "setup.py", "setup.cfg", "pyproject.toml", "requirements.txt")


@dataclasses.dataclass(frozen=True)
class Root:
    folder: Path
    label: str  # "plugin folder", "custom_imports", "repository", "installed mmdet 3.3.0"
    registered_only: bool = True
    installed: bool = False  # a site-packages folder: its class list is read once per process


class SourceIndex:
    """Classes by name across the roots, in search order; parse failures kept as problems."""

    def __init__(self, roots: Iterable[Root]):
        self.roots = tuple(roots)
        self.problems: Dict[Path, str] = {}
        self._names: Dict[Path, Dict[str, Tuple[Path, ...]]] = {}

    def names(self, root: Root) -> Dict[str, Tuple[Path, ...]]:
        if root.installed:
            return installed_class_names(root.folder)
        if root.folder not in self._names:
            self._names[root.folder] = class_names(root.folder)
        return self._names[root.folder]

    def find(
        self, name: str, registered: bool = True, near: Optional[Path] = None, scope: str = ""
    ) -> Optional[Tuple[SourceClass, Root]]:
        """The first class called ``name`` in root order (``near``: that file's own folder first).

        A registry scope (``mmdet3d.SECOND``) limits the search to that package: installed, or
        the package folder of the same name in the repository.
        """
        roots = self.roots
        if scope:
            top = scope.split(".")[0]
            roots = tuple(
                Root(r.folder / top, r.label, r.registered_only, r.installed)
                if not r.installed and (r.folder / top).is_dir()
                else r
                for r in roots
                if r.folder.name == top or (not r.installed and (r.folder / top).is_dir())
            )
        for root in roots:
            files = self.names(root).get(name, ())
            if near is not None:
                files = sorted(files, key=lambda f: f.parent != near.parent)
            for path in files:
                found = self.in_file(path, name)
                if found is not None and (
                    found.registry or not registered or not root.registered_only
                ):
                    return found, root
        return None

    def in_file(self, path: Path, name: str) -> Optional[SourceClass]:
        parsed = self._parsed(path)
        if parsed is None:
            return None
        tree, classes = parsed
        node = classes.get(name)
        if node is None:  # @MODELS.register_module(name='Alias')
            node = next((n for n in classes.values() if name in _registered_names(n)), None)
        return read_class(node, path, tree) if node is not None else None

    def tree(self, path: Path) -> Optional[ast.Module]:
        parsed = self._parsed(path)
        return parsed[0] if parsed is not None else None

    def _parsed(self, path: Path) -> Optional[Tuple[ast.Module, Dict[str, ast.ClassDef]]]:
        try:
            stat = path.stat()
        except OSError as exc:
            self.problems[path] = f"{path}:1: cannot read ({type(exc).__name__})"
            return None
        result = _parse(str(path), stat.st_mtime_ns, stat.st_size)
        if isinstance(result, str):
            self.problems[path] = result
            return None
        return result

    def parse_problem(self, name: str) -> Optional[str]:
        """The parse failure of a file that defines ``name`` (for the fallback note)."""
        for root in self.roots:
            for path in self.names(root).get(name, ()):
                self.tree(path)
                if path in self.problems:
                    return self.problems[path]
        return None


@functools.lru_cache(maxsize=1024)
def _parse(path: str, mtime_ns: int, size: int):
    """(tree, its classes by name), or the one-line problem; cached while the file is unchanged
    (the same installed files serve every config of a corpus)."""
    try:
        with warnings.catch_warnings():  # invalid escapes in someone's docstring
            warnings.simplefilter("ignore")
            tree = ast.parse(Path(path).read_bytes(), filename=path)
    except SyntaxError as exc:
        return f"{path}:{exc.lineno or 1}: cannot parse ({exc.msg})"
    except (ValueError, OSError, RecursionError) as exc:
        return f"{path}:1: cannot read ({type(exc).__name__})"
    classes: Dict[str, ast.ClassDef] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            classes.setdefault(node.name, node)
    return tree, classes


_CLASS = re.compile(rb"^[ \t]*class[ \t]+([A-Za-z_][A-Za-z0-9_]*)", re.M)
_ALIAS = re.compile(rb"register_module\(\s*(?:name\s*=\s*)?['\"]([A-Za-z_][A-Za-z0-9_.]*)['\"]")


def _registered_names(node: ast.ClassDef) -> List[str]:
    """The names ``register_module(name=...)`` gives the class besides its own."""
    return [
        m.decode() for d in node.decorator_list for m in _ALIAS.findall(ast.unparse(d).encode())
    ]


def class_names(folder: Path) -> Dict[str, Tuple[Path, ...]]:
    """Every ``class Name`` written in the folder's Python files (a text match, before any parse)."""
    names: Dict[str, List[Path]] = {}
    for path in _python_files(folder):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        for match in [*_CLASS.finditer(data), *_ALIAS.finditer(data)]:
            names.setdefault(match.group(1).decode(), []).append(path)
    return {k: tuple(v) for k, v in names.items()}


@functools.lru_cache(maxsize=8)
def installed_class_names(folder: Path) -> Dict[str, Tuple[Path, ...]]:
    return class_names(folder)


def _python_files(folder: Path) -> List[Path]:
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        return []
    found: List[Path] = []
    stack = [folder]
    while stack and len(found) < MAX_FILES:
        here = stack.pop()
        try:
            entries = sorted(here.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.is_symlink():
                continue
            if entry.is_dir():
                if entry.name not in SKIP_DIRS and not entry.name.startswith("."):
                    stack.append(entry)
            elif entry.suffix == ".py" and entry.is_file() and _small(entry):
                found.append(entry)
    return sorted(found)[:MAX_FILES]


def _small(path: Path) -> bool:
    """Model code is never megabytes; a generated or data file that size is not read."""
    try:
        return path.stat().st_size <= MAX_BYTES
    except OSError:
        return False


def repository_root(config: Path) -> Optional[Path]:
    """The repository the config lives in: the nearest marked folder at most MAX_DEPTH above it.

    None inside an installed package (the installed roots cover it) or a hidden folder (a
    tool's own checkout, like ~/.pyenv, is not the user's project).
    """
    here = Path(config).resolve().parent
    if any(
        part in ("site-packages", "dist-packages") or part.startswith(".") for part in here.parts
    ):
        return None
    for folder in (here, *here.parents)[:MAX_DEPTH]:
        if any((folder / marker).exists() for marker in REPO_MARKERS):
            return folder
    return None


def module_paths(module: str, bases: Iterable[Path]) -> List[Path]:
    """``a.b.c`` as a file or package below one of ``bases``."""
    rel = Path(*module.split("."))
    out = []
    for base in bases:
        for candidate in (base / rel.with_suffix(".py"), base / rel):
            if candidate.exists():
                out.append(candidate)
                break
    return out


def import_target(tree: ast.Module, path: Path, name: str) -> Optional[Path]:
    """The file a base class ``name`` is imported from, for ``from .x import name`` in ``path``."""
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom) or not node.level:
            continue
        if not any((a.asname or a.name) == name for a in node.names):
            continue
        base = path.parent
        for _ in range(node.level - 1):
            base = base.parent
        target = base / Path(*(node.module or "").split(".")) if node.module else base
        for candidate in (target.with_suffix(".py"), target / "__init__.py"):
            if candidate.is_file():
                return candidate
    return None
