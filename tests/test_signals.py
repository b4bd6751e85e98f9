"""SIGINT, SIGTERM and SIGHUP while a command writes: no temporary file is left, the output is
either absent or complete, and the exit code says which signal ended the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT

torch = pytest.importorskip("torch")


def start(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "bn2gn", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(folder, suffix, process, timeout=60.0):
    """Poll until a file ending in ``suffix`` appears in ``folder`` (or the process ends)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and process.poll() is None:
        if any(name.endswith(suffix) for name in os.listdir(folder)):
            return True
        time.sleep(0.005)
    return False


@pytest.fixture(scope="module")
def slow_checkpoint(tmp_path_factory):
    """Many small tensors: saving and re-opening them takes seconds, time to send a signal."""
    folder = tmp_path_factory.mktemp("ckpt")
    state = {f"layer{i}.weight": torch.zeros(4) for i in range(20000)}
    torch.save({"state_dict": state}, folder / "big.pth")
    return folder / "big.pth"


@pytest.mark.parametrize(
    "signum, code",
    [
        (signal.SIGTERM, 128 + signal.SIGTERM),
        (signal.SIGHUP, 128 + signal.SIGHUP),
        (signal.SIGINT, 130),
    ],
    ids=["SIGTERM", "SIGHUP", "SIGINT"],
)
def test_remap_ckpt_signal_leaves_no_temporary_file(tmp_path, slow_checkpoint, signum, code):
    source = tmp_path / "big.pth"
    source.write_bytes(slow_checkpoint.read_bytes())
    process = start(["remap-ckpt", "big.pth", "-q"], tmp_path)
    assert wait_for(tmp_path, ".bn2gn-tmp", process), process.communicate()
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert sorted(os.listdir(tmp_path)) == ["big.pth"], err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
