"""SIGINT, SIGTERM and SIGHUP while a command writes: no temporary file is left, the output is
either absent or complete, and the exit code says which signal ended the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, child_processes, process_alive

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


HEAD = "import torch.nn as nn\n\n\nclass Head{i}(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
NET = (
    "\n\nclass Net{i}(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
    "        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))\n"
    "        self.head = Head{i}()\n"
)


def _tree(folder):
    """300 detector files (1.2 MB): enough work for ``-j 2`` to start its workers."""
    folder.mkdir()
    layers = "".join(
        f"        self.b{j} = nn.Sequential(nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8))\n"
        for j in range(40)
    )
    texts = {}
    for i in range(300):
        texts[f"m{i}.py"] = (HEAD + layers + NET).replace("{i}", str(i))
        (folder / f"m{i}.py").write_text(texts[f"m{i}.py"])
    return texts


def two_workers_of(process) -> list:
    """The worker processes of ``process``, once it has two (a minute at most)."""
    end, workers = time.monotonic() + 60, []
    while time.monotonic() < end and process.poll() is None and len(workers) < 2:
        workers = child_processes(process.pid)
        time.sleep(0.01)
    assert len(workers) >= 2, process.communicate()
    return workers


def assert_all_ended(workers) -> None:
    end = time.monotonic() + 20
    while time.monotonic() < end and any(process_alive(w) for w in workers):
        time.sleep(0.05)
    assert not [w for w in workers if process_alive(w)], "workers outlived bn2gn"


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads the process table from /proc")
@pytest.mark.parametrize("command", ["rewrite", "patch-trainer"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_workers_end_with_their_parent(tmp_path, command, signum):
    import ast

    texts = _tree(tmp_path / "tree")
    if command == "patch-trainer":
        for name in list(texts)[:299]:
            texts[name] += "\n\ndef train(model):\n    return torch.optim.SGD(model.parameters())\n"
            (tmp_path / "tree" / name).write_text(texts[name])
    process = start([command, "tree", "-j", "2", "-q"], tmp_path)
    workers = two_workers_of(process)
    process.send_signal(signum)
    process.communicate(timeout=60)
    assert_all_ended(workers)
    for name in os.listdir(tmp_path / "tree"):
        assert name in texts, f"left behind: {name}"
        text = (tmp_path / "tree" / name).read_text()
        ast.parse(text)
        assert text == texts[name] or "freeze_backbone_bn" in text or "get_group_norm" in text


@pytest.mark.parametrize("size", [0, 100_000])
def test_remap_ckpt_input_that_shrinks_while_read_is_one_line(tmp_path, slow_checkpoint, size):
    """The memory-mapped read of a shrunk file gets SIGBUS: one line, exit 2, no temporary file."""
    source = tmp_path / "big.pth"
    source.write_bytes(slow_checkpoint.read_bytes())
    process = start(["remap-ckpt", "big.pth", "-q"], tmp_path)
    assert wait_for(tmp_path, ".bn2gn-tmp", process), process.communicate()
    os.truncate(source, size)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2, err
    assert err.strip() == (
        "bn2gn: error: big.pth: changed while it was read; nothing written; run again when "
        "nothing writes it"
    )
    assert sorted(os.listdir(tmp_path)) == ["big.pth"]


def _users_tree(folder, files=300):
    """One BatchNorm site and ``files`` big modules that build its class: the relevance filter
    admits them all in one round, which ``scan`` parses in worker processes."""
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "net.py").write_text(
        "import torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.bn = nn.BatchNorm2d(8)\n"
    )
    body = "".join(
        f"        self.l{j} = nn.Conv2d({j}, {j}, 3, padding=({j}, {j}))\n" for j in range(400)
    )
    for i in range(files):
        (folder / f"user{i}.py").write_text(
            f"import torch.nn as nn\n\nfrom .net import Net\n\n\nclass User{i}(nn.Module):\n"
            f"    def __init__(self):\n        super().__init__()\n        self.net = Net()\n{body}"
        )


FORCED_POOL = (
    "import sys; from bn2gn.decide import parse_pool; parse_pool.PARALLEL_FILES = 1; "
    "parse_pool.available_cpus = lambda: 2; from bn2gn.cli import main; "
    "sys.argv = ['bn2gn', 'scan', '-q', 'tree']; main()"
)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads the process table from /proc")
@pytest.mark.parametrize(
    "signum, code",
    [
        (signal.SIGINT, 130),
        (signal.SIGTERM, 128 + signal.SIGTERM),
        (signal.SIGHUP, 128 + signal.SIGHUP),
        (signal.SIGKILL, -signal.SIGKILL),
    ],
    ids=["SIGINT", "SIGTERM", "SIGHUP", "SIGKILL"],
)
def test_scan_parse_workers_end_with_their_parent(tmp_path, signum, code):
    _users_tree(tmp_path / "tree")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [sys.executable, "-c", FORCED_POOL],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    workers = two_workers_of(process)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 1, err
    assert_all_ended(workers)
