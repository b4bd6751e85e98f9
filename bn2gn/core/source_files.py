"""Reading and writing user source files without losing anything.

Encoding (PEP 263 cookie, BOM), newline style, file mode and owner survive; writes are atomic
(temporary file in the same directory, fsync, rename) and never happen for unchanged text, nor
onto anything but a regular file with one link, nor over a file that changed since it was read.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import io
import os
import re
import stat
import tempfile
import tokenize
from pathlib import Path
from typing import Iterator, Optional, Union

from .errors import SourceError
from .process import LIVE_TEMPORARIES


class WriteRefused(OSError):
    """bn2gn chose not to replace ``path``; ``str()`` is the one-line ``path: reason`` report."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclasses.dataclass(frozen=True)
class SourceText:
    """A decoded Python source: ``text`` has no BOM and keeps its original newlines."""

    path: Path
    raw: bytes
    text: str
    encoding: str
    bom: bool

    @property
    def newline(self) -> str:
        """The file's dominant newline, used for anything bn2gn injects."""
        return "\r\n" if self.text.count("\r\n") * 2 > self.text.count("\n") else "\n"

    def encode(self, text: str) -> bytes:
        """Encode new text the way the original was encoded (BOM included)."""
        data = text.encode(self.encoding)
        return codecs.BOM_UTF8 + data if self.bom else data


def decode_source(path: Union[str, Path], raw: bytes) -> SourceText:
    """Decode bytes as Python does (BOM, PEP 263 cookie); SourceError names the line that fails."""
    path = Path(path)
    if b"\0" in raw:
        raise SourceError(path, _line_of(raw, raw.index(b"\0")), "binary file (contains NUL bytes)")
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
    except SyntaxError as exc:
        raise SourceError(
            path, getattr(exc, "lineno", None) or 1, f"bad encoding declaration ({exc.msg})"
        ) from None
    bom = raw.startswith(codecs.BOM_UTF8)
    body = raw[len(codecs.BOM_UTF8) :] if bom else raw
    codec = "utf-8" if encoding == "utf-8-sig" else encoding
    try:
        text = body.decode(codec)
    except UnicodeDecodeError as exc:
        byte = body[exc.start]
        advice = (
            f"the coding cookie says {codec} but the bytes disagree (byte 0x{byte:02x} is not "
            f"valid {codec}); fix the cookie to the file's real encoding"
            if _has_cookie(body)
            else f"not valid {codec} (byte 0x{byte:02x}); add a PEP 263 coding cookie"
        )
        raise SourceError(path, _line_of(body, exc.start), advice) from None
    return SourceText(path=path, raw=raw, text=text, encoding=codec, bom=bom)


_COOKIE = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*[-\w.]+", re.MULTILINE)


def _has_cookie(body: bytes) -> bool:
    """A PEP 263 declaration on line 1 or 2 (where Python looks for one)."""
    return bool(_COOKIE.search(b"\n".join(body.split(b"\n", 2)[:2])))


def read_source(path: Union[str, Path]) -> SourceText:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SourceError(path, 1, f"cannot read ({exc.strerror or exc})") from None
    return decode_source(path, raw)


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def write_atomic(path: Union[str, Path], data: bytes, expected: Optional[bytes] = None) -> None:
    """Replace ``path`` with ``data`` atomically, keeping its permission bits and owner.

    A symlink is resolved first so the link itself survives and the target gets the new text.
    With ``expected`` (the bytes that were read), a file that no longer holds exactly them is
    left alone: WriteRefused, "changed while bn2gn was running".
    """
    with atomic_output(path, expected=expected) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)


@contextlib.contextmanager
def atomic_output(path: Union[str, Path], expected: Optional[bytes] = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it over ``path``.

    For outputs too large to hold in memory (checkpoints): the caller streams into the
    temporary file. If the block raises, the temporary file is removed and ``path`` is
    untouched. An existing target keeps its permission bits and, where the process may set
    them, its owner and group; a new one gets the umask default. A symlink is resolved first
    so the link itself survives. WriteRefused (an OSError) before anything is written: the
    target is not a regular file, or has several hard links (the rename would split them);
    and before the rename: the target no longer holds ``expected``.
    """
    target = Path(os.path.realpath(path))
    before = _existing_regular_file(path, target)
    mode = stat.S_IMODE(before.st_mode) if before else _default_file_mode()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".bn2gn-tmp")
    os.close(fd)
    LIVE_TEMPORARIES.add(tmp)
    try:
        yield Path(tmp)
        _fsync_file(tmp)
        os.chmod(tmp, mode)
        if before:
            _keep_owner(tmp, before)
        if expected is not None and not _still_holds(target, expected):
            raise WriteRefused(path, "changed while bn2gn was running, not written")
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    finally:
        LIVE_TEMPORARIES.discard(tmp)
    _fsync_dir(target.parent)


def _existing_regular_file(path, target: Path) -> Optional[os.stat_result]:
    """The target's stat when it exists; WriteRefused for a device, pipe, socket or hard-linked file."""
    try:
        info = os.stat(target)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise WriteRefused(
            path,
            f"is not a regular file ({file_kind(info.st_mode)}); bn2gn only replaces "
            "regular files; not written",
        )
    if info.st_nlink > 1:
        raise WriteRefused(
            path,
            f"has {info.st_nlink} hard links; replacing it would leave the other names "
            "with the old content; not written (break the link first, e.g. cp FILE "
            "FILE.new && mv FILE.new FILE)",
        )
    return info


def file_kind(mode: int) -> str:
    """``directory``, ``character device``, ``named pipe``... for messages about non-regular files."""
    kinds = (
        (stat.S_ISDIR, "directory"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISFIFO, "named pipe"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISLNK, "symlink"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")


def _keep_owner(tmp: str, before: os.stat_result) -> None:
    """Owner and group of the file being replaced; only root may give a file away, so try less after."""
    for uid in (before.st_uid, -1):
        try:
            os.chown(tmp, uid, before.st_gid)
            return
        except OSError:
            continue


def _still_holds(target: Path, expected: bytes) -> bool:
    try:
        with open(target, "rb") as handle:
            return handle.read(len(expected) + 1) == expected
    except OSError:
        return False


def _default_file_mode() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_file(path: Union[str, Path]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
