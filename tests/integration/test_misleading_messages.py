"""Messages that name the real problem: a full disk, random bytes (never pushed toward
--trust-pickle) and a coding cookie that disagrees with the bytes."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest
from conftest import run_cli

torch = pytest.importorskip("torch")


def _checkpoint(path):
    torch.save({"state_dict": {"w": torch.zeros(1_000_000)}}, path)  # 4 MB
    return path


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A 1 MiB tmpfs, where the system lets this user mount one."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_full_disk_says_no_space_left_on_the_device(tmp_path, tiny_filesystem):
    source = _checkpoint(tmp_path / "a.pth")
    result = run_cli(["remap-ckpt", source, "-o", tiny_filesystem / "out.pth"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        f"bn2gn: error: {tiny_filesystem / 'out.pth'}: cannot write (no space left on device "
        f"{tiny_filesystem}); nothing was written"
    )
    assert os.listdir(tiny_filesystem) == []


def test_torch_write_error_on_a_full_file_system_is_named_as_such(tmp_path, monkeypatch):
    """Where no small file system can be mounted: torch's iostream error, with no free space left."""
    from bn2gn.model import checkpoint_save as save

    source = tmp_path / "a.pth"
    torch.save({"state_dict": {"w": torch.zeros(4)}}, source)

    def failing_save(*args, **kwargs):
        raise RuntimeError("basic_ios::clear: iostream error")

    monkeypatch.setattr(torch, "save", failing_save)
    monkeypatch.setattr(save, "free_bytes", lambda folder: 4096)
    result = run_cli(["remap-ckpt", source, "-q"])
    assert result.exit_code == 2, result.output
    assert "cannot write (no space left on device " in result.stderr
    assert "iostream" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pth"]


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_are_not_a_checkpoint_and_not_pushed_to_trust_pickle(tmp_path, seed):
    path = tmp_path / "r.pth"
    path.write_bytes(uuid.UUID(int=seed + 1).bytes * 200)
    result = run_cli(["remap-ckpt", path])
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert "\n" not in line and "not a checkpoint bn2gn can read" in line, line
    assert "--trust-pickle" not in line


def test_random_bytes_after_a_pickle_header_are_not_pushed_to_trust_pickle(tmp_path):
    path = tmp_path / "g.pth"
    path.write_bytes(b"\x80\x02garbage")
    result = run_cli(["remap-ckpt", path])
    assert result.exit_code == 2 and "not a checkpoint bn2gn can read" in result.stderr
    assert "--trust-pickle" not in result.stderr


def test_a_coding_cookie_that_disagrees_with_the_bytes_says_so(tmp_path):
    (tmp_path / "m.py").write_bytes(
        b'# -*- coding: utf-8 -*-\nimport torch.nn as nn\nx = "\xe9"\nb = nn.BatchNorm2d(3)\n'
    )
    result = run_cli(["scan", "m.py"], cwd=tmp_path)
    assert result.exit_code == 1
    assert (
        "m.py:3: the coding cookie says utf-8 but the bytes disagree (byte 0xe9 is not valid "
        "utf-8); fix the cookie to the file's real encoding" in result.output
    )
    assert "add a PEP 263 coding cookie" not in result.output
