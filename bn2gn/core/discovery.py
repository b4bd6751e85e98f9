"""Which files a run looks at: the .py files under the given paths, minus what is skipped by default.

Skip rules (docs/concepts/robustness.md): build/venv/VCS folders (SKIPPED_DIRS), files with an ``@generated``
marker near the top, symlinks whose target is outside the given paths, a second name for a file
already found, directory symlinks, and anything that is not a regular file. ``--include`` globs bring
back a skipped folder or generated file; ``--exclude`` globs drop more.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import stat
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

from .errors import Bn2gnError, Message, NothingToAnalyse, Opt, message_text

SKIPPED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        ".tox",
        ".nox",
        "build",
        "dist",
        "site-packages",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        "node_modules",
        ".eggs",
    }
)
GENERATED_MARKER = b"@generated"
#: the marker counts only in a file's header, not in code that writes it into other files
GENERATED_HEAD = 2048


@dataclasses.dataclass
class Discovery:
    """The files a run reads, in order, and what it skipped on purpose."""

    files: List[Path]
    #: (path, reason) for things under the targets that were deliberately not read
    skipped: List[Tuple[Path, str]]
    #: the bytes of every file that had to be read to decide (the @generated check); saves a second read
    data: Dict[Path, bytes] = dataclasses.field(default_factory=dict)


def _matches(path: Path, globs: Iterable[str]) -> bool:
    text = path.as_posix()
    return any(fnmatch.fnmatch(text, g) or fnmatch.fnmatch(path.name, g) for g in globs)


def _inside(real: str, roots: Sequence[str]) -> bool:
    return any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def discover(
    paths: Sequence[Path], include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> Discovery:
    """Expand files and directories into .py files, sorted, each once.

    Raises Bn2gnError (exit 2) for a path that does not exist and when the paths hold no Python
    file at all. Directories named in SKIPPED_DIRS are not entered unless a path names them directly
    or an --include glob matches them.
    """
    given_paths = [Path(p) for p in paths]
    for given in given_paths:
        if not given.exists() and not given.is_symlink():
            raise Bn2gnError(f"{given}: no such file or directory; check the path")
    roots = [os.path.realpath(p) for p in given_paths if p.is_dir()]
    found: Dict[str, Path] = {}
    skipped: List[Tuple[Path, str]] = []
    links: Dict[Path, bool] = {}
    for given in given_paths:
        if given.is_dir():
            _walk(given, include, exclude, found, skipped, links)
        elif _matches(given, exclude):
            skipped.append((given, _excluded()))
        else:
            _add_given_file(given, roots, found, skipped)
    result = Discovery(files=[], skipped=skipped)
    for path in _unique_files(found, skipped, links):
        if _is_generated(path, include, result):
            skipped.append(
                (
                    path,
                    message_text(
                        f"generated file ({GENERATED_MARKER.decode()} marker); ",
                        Opt("include"),
                        " it to scan it",
                    ),
                )
            )
        else:
            result.files.append(path)
    result.files.sort()
    if not result.files:
        raise NothingToAnalyse(_nothing_found(given_paths, skipped))
    return result


def _add_given_file(
    given: Path, roots: Sequence[str], found: Dict[str, Path], skipped: list
) -> None:
    """A file named on the command line is read even without .py; a symlink only into a given folder."""
    if given.is_symlink() and not _inside(os.path.realpath(given), roots):
        skipped.append(
            (given, "symlink to a file outside the given folders; name the target itself")
        )
    elif not _is_regular(given):
        skipped.append((given, "not a regular file"))
    else:
        found.setdefault(os.path.normpath(given), given)


def _walk(
    root: Path, include, exclude, found: Dict[str, Path], skipped: list, links: Dict[Path, bool]
) -> None:
    root_real = os.path.realpath(root)
    for folder, dirnames, filenames, entries in _scan_folders(os.fspath(root)):
        folder_path = Path(folder)
        keep_dirs = []
        for name in sorted(dirnames):
            sub = folder_path / name
            if _matches(sub, exclude):
                skipped.append((sub, _excluded()))
            elif name in SKIPPED_DIRS and not _matches(sub, include):
                skipped.append(
                    (
                        sub,
                        message_text(
                            f"{name}/ is skipped by default (use ", Opt("include"), " to scan it)"
                        ),
                    )
                )
            elif _is_link(entries[name]):
                skipped.append((sub, "directory symlink not followed"))
            else:
                keep_dirs.append(name)
        dirnames[:] = keep_dirs
        for name in sorted(filenames):
            if name.endswith(".py"):
                entry = entries[name]
                path = folder_path / name
                link = _is_link(entry)
                if _add_walked_file(path, link, entry, root_real, exclude, found, skipped):
                    links[path] = link


def _scan_folders(top: str):
    """``os.walk(top, followlinks=False)`` (top-down; the caller prunes ``dirnames``), yielding
    also each folder's ``os.DirEntry`` by name: an entry knows from the folder listing whether it
    is a symlink, a folder or a regular file, so discovery makes no ``stat`` call per file."""
    try:
        listing = os.scandir(top)
    except OSError:
        return
    dirs, nondirs, entries = [], [], {}
    with listing:
        while True:
            try:
                entry = next(listing)
            except StopIteration:
                break
            except OSError:
                return
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            (dirs if is_dir else nondirs).append(entry.name)
            entries[entry.name] = entry
    yield top, dirs, nondirs, entries
    for name in dirs:  # as pruned by the caller, which keeps no symlink
        yield from _scan_folders(os.path.join(top, name))


def _is_link(entry: os.DirEntry) -> bool:
    try:
        return entry.is_symlink()
    except OSError:
        return False


def _add_walked_file(
    path: Path, link: bool, entry: os.DirEntry, root_real: str, exclude, found, skipped
) -> bool:
    """Whether ``path`` was added to ``found`` (``link``: it is a symlink)."""
    if _matches(path, exclude):
        skipped.append((path, _excluded()))
    elif link and not _inside(os.path.realpath(path), [root_real]):
        skipped.append((path, "symlink to a file outside the given paths; not followed"))
    elif not _is_regular_entry(entry):
        skipped.append((path, "broken symlink" if link else "not a regular file"))
    else:
        found.setdefault(os.path.normpath(path), path)
        return True
    return False


def _is_regular_entry(entry: os.DirEntry) -> bool:
    """``_is_regular`` of the entry's path: a regular file, or a symlink to one."""
    try:
        return entry.is_file()
    except OSError:
        return False


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _unique_files(found: Dict[str, Path], skipped: list, walked: Dict[Path, bool]) -> List[Path]:
    """One name per real file: the file itself rather than a symlink to it (``walked``: whether
    each file found in a folder is a symlink, as its folder listing said)."""
    by_real: Dict[str, Path] = {}
    folders: Dict[str, str] = {}
    links = {path: walked[path] if path in walked else path.is_symlink() for path in found.values()}
    for path in sorted(found.values(), key=lambda p: (links[p], p.as_posix())):
        real = os.path.realpath(path) if links[path] else _real_in_folder(path, folders)
        if real in by_real:
            skipped.append((path, f"same file as {by_real[real]}; scanned once under that name"))
        else:
            by_real[real] = path
    return list(by_real.values())


def _real_in_folder(path: Path, folders: Dict[str, str]) -> str:
    """``os.path.realpath`` of a file that is no symlink: its folder's (resolved once per folder,
    not once per file: each resolution looks at every component of the path) joined with its name."""
    folder = os.path.dirname(path) or os.curdir
    if folder not in folders:
        folders[folder] = os.path.realpath(folder)
    return os.path.join(folders[folder], os.path.basename(path))


def _is_generated(path: Path, include: Sequence[str], result: Discovery) -> bool:
    """Reads the file once (kept in ``result.data``); unreadable files are left to the reader to report."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return False
    result.data[path] = data
    return GENERATED_MARKER in data[:GENERATED_HEAD] and not _matches(path, include)


def _excluded() -> str:
    return message_text("excluded by ", Opt("exclude"))


def _nothing_found(paths: Sequence[Path], skipped: List[Tuple[Path, str]]) -> Message:
    where = ", ".join(str(p) for p in paths)
    if not skipped:
        return Message(
            f"{where}: no Python files found; point bn2gn at a folder or .py files that exist"
        )
    first, why = skipped[0]
    return Message(
        f"{where}: no Python files to process ({len(skipped)} skipped, e.g. {first}: {why}); use ",
        Opt("include", "GLOB"),
        " to scan skipped files",
    )
