"""Checkpoints of odd shapes are the user's input (exit 2, one line), never a RecursionError:
a container that holds itself, containers nested thousands deep, and .safetensors files when the
optional safetensors package is missing."""

from __future__ import annotations

import sys

import pytest
from conftest import run_cli

torch = pytest.importorskip("torch")


def _save(content, path):
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)  # torch.save itself recurses through the nesting
    try:
        torch.save({"state_dict": torch.nn.BatchNorm2d(4).state_dict(), "x": content}, path)
    finally:
        sys.setrecursionlimit(limit)


def _nested_list(depth):
    value = 0
    for _ in range(depth):
        value = [value]
    return value


def _nested_dict(depth):
    top = current = {}
    for _ in range(depth):
        current["k"] = {}
        current = current["k"]
    return top


def _cyclic():
    value = [1]
    value.append(value)
    return value


@pytest.mark.parametrize(
    "make, fragment",
    [
        (_cyclic, "a.pth: entry ['x'][1] contains itself (a cyclic container)"),
        (lambda: _nested_list(3000), "is nested more than 100 containers deep"),
        (lambda: _nested_dict(3000), "is nested more than 100 containers deep"),
    ],
    ids=["cyclic", "deep-list", "deep-dict"],
)
def test_odd_container_shapes_are_one_line_exit_2(tmp_path, make, fragment):
    _save(make(), tmp_path / "a.pth")
    result = run_cli(["remap-ckpt", tmp_path / "a.pth", "-q"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pth"]


def test_moderate_nesting_is_kept(tmp_path):
    _save(_nested_dict(20), tmp_path / "a.pth")
    result = run_cli(["remap-ckpt", tmp_path / "a.pth", "-q", "--backbone-attr", "backbone"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("direction", ["read", "write"])
def test_safetensors_without_the_package_names_it(tmp_path, monkeypatch, direction):
    torch.save(torch.nn.BatchNorm2d(4).state_dict(), tmp_path / "a.pth")
    args = ["remap-ckpt", tmp_path / "a.pth", "-o", tmp_path / "out.safetensors"]
    if direction == "read":
        from safetensors.torch import save_file

        save_file(torch.nn.BatchNorm2d(4).state_dict(), tmp_path / "in.safetensors")
        args = ["remap-ckpt", tmp_path / "in.safetensors", "-o", tmp_path / "out.pth"]
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    result = run_cli(args)
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert "\n" not in line and "needs the optional safetensors package" in line, line
    assert "python -m pip install 'bn2gn[safetensors]'" in line
    assert not (tmp_path / "out.safetensors").exists() and not (tmp_path / "out.pth").exists()


def test_a_named_pipe_as_input_is_refused_without_waiting(tmp_path):
    import os
    import subprocess

    from conftest import ROOT

    os.mkfifo(tmp_path / "p.pth")
    result = subprocess.run(
        [sys.executable, "-m", "bn2gn", "remap-ckpt", "p.pth"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=30,  # the old code waited for a writer forever
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "bn2gn: error: p.pth: is a named pipe, not a regular file; give the checkpoint file itself"
    )
