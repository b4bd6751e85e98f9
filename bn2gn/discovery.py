"""Which files a run looks at: the .py files under the given paths, minus build/venv folders."""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from pathlib import Path
from typing import Iterable, List, Sequence, Tuple

from .errors import Bn2gnError

SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", ".venv", "venv", ".tox", ".nox", "build", "dist",
                          "site-packages", "__pycache__", ".mypy_cache", ".pytest_cache", "node_modules",
                          ".eggs"})


@dataclasses.dataclass
class Discovery:
    files: List[Path]
    #: (path, reason) for things under the targets that were deliberately not read
    skipped: List[Tuple[Path, str]]


def _matches(path: Path, globs: Iterable[str]) -> bool:
    text = path.as_posix()
    return any(fnmatch.fnmatch(text, g) or fnmatch.fnmatch(path.name, g) for g in globs)


def discover(paths: Sequence[Path], include: Sequence[str] = (), exclude: Sequence[str] = ()) -> Discovery:
    """Expand files and directories into .py files, sorted, each once.

    Raises Bn2gnError for a path that does not exist. Directories named in SKIPPED_DIRS are not
    entered unless a path names them directly or an --include glob matches them.
    """
    found: dict = {}
    skipped: List[Tuple[Path, str]] = []
    for given in paths:
        given = Path(given)
        if not given.exists() and not given.is_symlink():
            raise Bn2gnError(f"{given}: no such file or directory")
        if given.is_dir():
            _walk(given, include, exclude, found, skipped)
        elif _matches(given, exclude):
            skipped.append((given, "excluded by --exclude"))
        else:
            found.setdefault(os.path.normpath(given), given)
    return Discovery(files=sorted(found.values()), skipped=skipped)


def _walk(root: Path, include, exclude, found: dict, skipped: list) -> None:
    root_real = os.path.realpath(root)
    for folder, dirnames, filenames in os.walk(root, followlinks=False):
        folder_path = Path(folder)
        keep_dirs = []
        for name in sorted(dirnames):
            sub = folder_path / name
            if _matches(sub, exclude):
                skipped.append((sub, "excluded by --exclude"))
            elif name in SKIPPED_DIRS and not _matches(sub, include):
                skipped.append((sub, f"{name}/ is skipped by default (use --include to scan it)"))
            elif sub.is_symlink():
                skipped.append((sub, "directory symlink not followed"))
            elif name.endswith(".py"):
                keep_dirs.append(name)
            else:
                keep_dirs.append(name)
        dirnames[:] = keep_dirs
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            path = folder_path / name
            if _matches(path, exclude):
                skipped.append((path, "excluded by --exclude"))
                continue
            if path.is_symlink():
                real = os.path.realpath(path)
                if not (real == root_real or real.startswith(root_real + os.sep)):
                    skipped.append((path, "symlink to a file outside the given paths; not followed"))
                    continue
            found.setdefault(os.path.normpath(path), path)
