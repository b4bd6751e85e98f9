"""File I/O keeps what it read: encoding, BOM, newlines, mode; writes are atomic."""

from __future__ import annotations

import codecs
import os
import stat

import pytest

from bn2gn.core.errors import SourceError
from bn2gn.core.source_files import read_source, write_atomic


def test_crlf_and_bom_round_trip(tmp_path):
    path = tmp_path / "m.py"
    raw = codecs.BOM_UTF8 + "x = 'é'\r\ny = 2\r\n".encode("utf-8")
    path.write_bytes(raw)
    source = read_source(path)
    assert source.bom and source.encoding == "utf-8" and source.newline == "\r\n"
    assert source.encode(source.text) == raw


def test_latin1_cookie_round_trip(tmp_path):
    path = tmp_path / "m.py"
    raw = b"# -*- coding: latin-1 -*-\n# Gr\xfc\xdfe\nx = 1\n"
    path.write_bytes(raw)
    source = read_source(path)
    assert source.encoding in ("latin-1", "iso-8859-1")
    assert "Grüße" in source.text
    assert source.encode(source.text) == raw


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "m.py"
    path.write_bytes(b"x = 1\ny = 2\n# \xff\xfe\n")
    with pytest.raises(SourceError) as info:
        read_source(path)
    assert info.value.line == 3


def test_binary_file_is_refused(tmp_path):
    path = tmp_path / "m.py"
    path.write_bytes(b"x = 1\n\x00\x01")
    with pytest.raises(SourceError, match="binary"):
        read_source(path)


def test_write_atomic_keeps_mode_and_leaves_no_temp(tmp_path):
    path = tmp_path / "m.py"
    path.write_bytes(b"old\n")
    os.chmod(path, 0o751)
    write_atomic(path, b"new\n")
    assert path.read_bytes() == b"new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o751
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.py"]


def test_write_atomic_through_symlink_keeps_link(tmp_path):
    real = tmp_path / "real.py"
    real.write_bytes(b"old\n")
    link = tmp_path / "link.py"
    link.symlink_to(real)
    write_atomic(link, b"new\n")
    assert link.is_symlink() and real.read_bytes() == b"new\n"


# -- what an atomic replace must not do -------------------------------------------------------
from bn2gn.core.source_files import WriteRefused  # noqa: E402


def test_write_atomic_keeps_owner_and_group(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another user; CI runs as root")
    path = tmp_path / "m.py"
    path.write_bytes(b"old\n")
    os.chown(path, 1234, 4321)
    write_atomic(path, b"new\n")
    info = path.stat()
    assert (info.st_uid, info.st_gid) == (1234, 4321) and path.read_bytes() == b"new\n"


def test_write_atomic_refuses_a_hard_linked_file(tmp_path):
    path = tmp_path / "m.py"
    path.write_bytes(b"old\n")
    os.link(path, tmp_path / "other.py")
    with pytest.raises(
        WriteRefused, match="m.py: has 2 hard links; replacing it would leave the other names"
    ):
        write_atomic(path, b"new\n")
    assert path.read_bytes() == b"old\n" and (tmp_path / "other.py").read_bytes() == b"old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.py", "other.py"]


def test_write_atomic_refuses_a_fifo(tmp_path):
    fifo = tmp_path / "m.py"
    os.mkfifo(fifo)
    with pytest.raises(WriteRefused, match=r"m.py: is not a regular file \(named pipe\)"):
        write_atomic(fifo, b"new\n")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and sorted(p.name for p in tmp_path.iterdir()) == [
        "m.py"
    ]


def test_write_atomic_leaves_a_file_that_changed_since_it_was_read(tmp_path):
    path = tmp_path / "m.py"
    path.write_bytes(b"old\n")
    path.write_bytes(b"old\nedited meanwhile\n")
    with pytest.raises(WriteRefused, match="m.py: changed while bn2gn was running, not written"):
        write_atomic(path, b"new\n", expected=b"old\n")
    assert path.read_bytes() == b"old\nedited meanwhile\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.py"]
    write_atomic(path, b"new\n", expected=b"old\nedited meanwhile\n")
    assert path.read_bytes() == b"new\n"
