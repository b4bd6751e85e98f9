"""Every -o / --renames-out refuses an output that is one of the command's inputs (also through a
symlink or a hard link), a named pipe or a missing folder: one line, exit 2, nothing written -
and it refuses before the command writes anything else."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import run_cli, snapshot

MM = Path(__file__).resolve().parents[2] / "fixtures" / "mmconfig"
AQR = "cmt_aqr_voxel0100_r50_800x320_cbgs.py"
BASE = "cmt_voxel0100_r50_800x320_cbgs.py"
SOURCE = (
    "import torch.nn as nn\n\n\nclass Head(nn.Module):\n    def __init__(self):\n"
    "        super().__init__()\n        self.bn = nn.BatchNorm2d(4)\n"
)


@pytest.fixture
def cmt(tmp_path) -> Path:
    shutil.copytree(MM / "cmt", tmp_path / "cmt")
    return tmp_path / "cmt" / "projects" / "configs" / "fusion"


def _alias(folder: Path, target: Path, how: str) -> Path:
    """``target`` itself, a symlink to it, or a second hard link to it."""
    if how == "same":
        return target
    alias = folder / f"alias_{how}{target.suffix}"
    (os.symlink if how == "symlink" else os.link)(target, alias)
    return alias


def _assert_refused(result, flag: str, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"bn2gn: error: {flag} "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_config_rewrite_renames_out_onto_the_config_is_refused_before_any_write(cmt, how):
    config = cmt / AQR
    target = _alias(cmt, config, how)
    before = snapshot(cmt.parents[2])
    result = run_cli(["config", "rewrite", config, "--gn", "pts_neck", "--renames-out", target])
    _assert_refused(result, "--renames-out", "is one of this command's inputs", "not written")
    assert snapshot(cmt.parents[2]) == before


def test_config_rewrite_renames_out_onto_a_base_file_is_refused(cmt):
    before = snapshot(cmt.parents[2])
    result = run_cli(
        ["config", "rewrite", cmt / AQR, "--gn", "pts_neck", "--renames-out", cmt / BASE]
    )
    _assert_refused(result, "--renames-out", "is one of this command's inputs")
    assert snapshot(cmt.parents[2]) == before


@pytest.mark.parametrize("kind", ["missing folder", "fifo", "directory"])
def test_config_rewrite_renames_out_is_checked_before_the_config_is_written(cmt, tmp_path, kind):
    if kind == "missing folder":
        target, fragment = tmp_path / "nope" / "renames.json", "does not exist"
    elif kind == "fifo":
        target, fragment = tmp_path / "pipe.json", "is not a regular file (named pipe)"
        os.mkfifo(target)
    else:
        target, fragment = tmp_path / "adir", "is a directory"
        target.mkdir()
    before = snapshot(cmt.parents[2])
    result = run_cli(["config", "rewrite", cmt / AQR, "--gn", "pts_neck", "--renames-out", target])
    if kind == "directory":  # click's own usage error
        assert result.exit_code == 2 and fragment in result.stderr
    else:
        _assert_refused(result, "--renames-out", fragment)
    assert snapshot(cmt.parents[2]) == before


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_config_audit_output_onto_its_config_is_refused(cmt, how):
    target = _alias(cmt, cmt / AQR, how)
    before = snapshot(cmt.parents[2])
    result = run_cli(["config", "audit", cmt / AQR, "-o", target])
    _assert_refused(result, "-o", "is one of this command's inputs")
    assert snapshot(cmt.parents[2]) == before


def test_config_audit_output_onto_a_base_file_is_refused(cmt):
    before = snapshot(cmt.parents[2])
    _assert_refused(run_cli(["config", "audit", cmt / AQR, "-o", cmt / BASE]), "-o", "inputs")
    assert snapshot(cmt.parents[2]) == before


@pytest.mark.parametrize("kind", ["missing folder", "fifo"])
def test_config_audit_output_into_a_missing_folder_or_a_fifo_is_exit_2(cmt, tmp_path, kind):
    target = tmp_path / "nope" / "r.txt" if kind == "missing folder" else tmp_path / "pipe"
    if kind == "fifo":
        os.mkfifo(target)
    result = run_cli(["config", "audit", cmt / AQR, "-o", target])
    _assert_refused(result, "-o", "does not exist" if kind == "missing folder" else "named pipe")


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_scan_output_onto_a_scanned_file_is_refused(tmp_path, how):
    tree = tmp_path / "src"
    tree.mkdir()
    (tree / "head.py").write_text(SOURCE)
    target = _alias(tmp_path, tree / "head.py", how)
    for named in (tree / "head.py", tree):
        result = run_cli(["scan", named, "-o", target])
        _assert_refused(result, "-o", "is one of this command's inputs")
        assert (tree / "head.py").read_text() == SOURCE


def test_scan_output_onto_its_config_is_refused(tmp_path):
    (tmp_path / "head.py").write_text(SOURCE)
    config = tmp_path / "bn2gn.toml"
    config.write_text("[tool.bn2gn]\nbackbone-attrs = ['base']\n")
    result = run_cli(["scan", tmp_path / "head.py", "--config", config, "-o", config])
    _assert_refused(result, "-o", "inputs")
    assert config.read_text() == "[tool.bn2gn]\nbackbone-attrs = ['base']\n"


def test_scan_plan_next_to_the_sources_is_still_written(tmp_path):
    (tmp_path / "head.py").write_text(SOURCE)
    result = run_cli(["scan", tmp_path, "-o", tmp_path / "plan.json", "-q"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "plan.json").read_text().startswith("{")


def test_remap_output_onto_its_renames_file_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"state_dict": torch.nn.BatchNorm2d(4).state_dict()}, tmp_path / "a.pth")
    renames = tmp_path / "renames.json"
    renames.write_text('{"renames": []}\n')
    result = run_cli(["remap-ckpt", tmp_path / "a.pth", "--renames", renames, "-o", renames])
    _assert_refused(result, "-o", "inputs")
    assert renames.read_text() == '{"renames": []}\n'
