"""Reading and writing user source files without losing anything.

Encoding (PEP 263 cookie, BOM), newline style and file mode survive; writes are atomic
(temporary file in the same directory, fsync, rename) and never happen for unchanged text.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import io
import os
import stat
import tempfile
import tokenize
from pathlib import Path
from typing import Iterator, Union

from .errors import SourceError


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
        raise SourceError(path, getattr(exc, "lineno", None) or 1, f"bad encoding declaration ({exc.msg})") from None
    bom = raw.startswith(codecs.BOM_UTF8)
    body = raw[len(codecs.BOM_UTF8):] if bom else raw
    codec = "utf-8" if encoding == "utf-8-sig" else encoding
    try:
        text = body.decode(codec)
    except UnicodeDecodeError as exc:
        raise SourceError(path, _line_of(body, exc.start),
                          f"not valid {codec} (byte 0x{body[exc.start]:02x}); add a PEP 263 coding cookie") from None
    return SourceText(path=path, raw=raw, text=text, encoding=codec, bom=bom)


def read_source(path: Union[str, Path]) -> SourceText:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SourceError(path, 1, f"cannot read ({exc.strerror or exc})") from None
    return decode_source(path, raw)


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def write_atomic(path: Union[str, Path], data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically, keeping its permission bits.

    A symlink is resolved first so the link itself survives and the target gets the new text.
    """
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)


@contextlib.contextmanager
def atomic_output(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it over ``path``.

    For outputs too large to hold in memory (checkpoints): the caller streams into the
    temporary file. If the block raises, the temporary file is removed and ``path`` is
    untouched. An existing target keeps its permission bits; a new one gets the umask default.
    A symlink is resolved first so the link itself survives.
    """
    target = Path(os.path.realpath(path))
    mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else _default_file_mode()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".bn2gn-tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        _fsync_file(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(target.parent)


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
