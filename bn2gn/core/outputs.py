"""Where a command may write a report, plan or renames file, checked before anything is written.

Every ``-o``/``--renames-out`` of every command goes through ``output_problem``: an output that is
one of the command's inputs (the same file, also through a symlink or another hard link), a folder
that does not exist, a directory, or something that is not a regular file (a named pipe, a device)
is refused before the command writes anything, so a refused output never leaves half a job done.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable, Optional, Union

from .source_files import file_kind

PathLike = Union[str, Path]


def same_file(a: PathLike, b: PathLike) -> bool:
    """One file under two names: the same path, a symlink to it, or another hard link."""
    try:
        first, second = os.stat(a), os.stat(b)
    except (OSError, ValueError):
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def _inside(path: Path, folder: Path) -> bool:
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(folder))
    except ValueError:
        return False
    return True


def _linked_into(output: Path, folder: Path) -> bool:
    """A second hard link, outside ``folder``, to one of the Python files under it."""
    info = os.stat(output)
    if info.st_nlink < 2:
        return False
    for root, _, names in os.walk(folder):
        for name in names:
            if name.endswith(".py") and same_file(output, os.path.join(root, name)):
                return True
    return False


def input_hit(output: PathLike, inputs: Iterable[Optional[PathLike]]) -> Optional[Path]:
    """The input ``output`` would replace: a named file, or a Python file under a named folder."""
    output = Path(output)
    if not output.exists():
        return None
    for item in inputs:
        if item is None:
            continue
        item = Path(item)
        if item.is_dir():
            if output.suffix == ".py" and (_inside(output, item) or _linked_into(output, item)):
                return output
        elif same_file(output, item):
            return item
    return None


def output_problem(output: PathLike, inputs: Iterable[Optional[PathLike]] = ()) -> Optional[str]:
    """Why ``output`` cannot be written (the text after ``FLAG OUTPUT: ``), or None."""
    output = Path(output)
    hit = input_hit(output, inputs)
    if hit is not None:
        same = "" if hit == output else f" (the same file as {hit})"
        return (
            f"is one of this command's inputs{same}; writing there would replace it; "
            "choose another path; not written"
        )
    parent = output.parent
    if not parent.is_dir():
        return f"folder {parent} does not exist; create it first or choose another path"
    try:
        mode = os.stat(output).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        return f"cannot use it ({exc.strerror or exc}); choose another path"
    if mode is not None and stat.S_ISDIR(mode):
        return "is a directory; give a file name"
    if mode is not None and not stat.S_ISREG(mode):
        return (
            f"is not a regular file ({file_kind(mode)}); bn2gn only replaces regular files; "
            "not written"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot write in folder {parent} (permission denied); choose another path"
    return None
