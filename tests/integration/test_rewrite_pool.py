"""``rewrite -j N`` starts its workers before the plan, so that they import LibCST while it is made.

They take every job when there is one; when there is none they are stopped without waiting for
their imports; a tree that spells nothing the rewrite changes starts none.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time

import pytest
from conftest import CENTERNET, child_processes, process_alive, run_cli

from bn2gn import api
from bn2gn.core import process
from bn2gn.source import rewrite

KEEP_ONLY = """import torch.nn as nn


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(8)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = Backbone()
"""


@pytest.fixture
def repo(tmp_path):
    folder = tmp_path / "repo"
    shutil.copytree(CENTERNET, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def test_workers_started_before_the_plan_take_every_job(repo, monkeypatch):
    mapped = []
    real_map = process.WarmPool.map

    def recording(self, func, items, chunksize=1):
        items = list(items)
        mapped.append(len(items))
        return real_map(self, func, items, chunksize)

    monkeypatch.setattr(process.WarmPool, "map", recording)
    serial = api.Session.open([repo]).rewrite(workers=1)
    warm = api.Session.open([repo]).rewrite(workers=2)
    assert mapped == [len(api.Session.open([repo]).rewrite_jobs())]
    assert mapped[0] >= 2
    assert [(r.path, r.status, r.new_text, r.changes) for r in warm.results] == [
        (r.path, r.status, r.new_text, r.changes) for r in serial.results
    ]


def test_the_cli_diff_is_the_same_with_one_and_two_workers(repo):
    one = run_cli(["rewrite", "--diff", "-j", "1", "."], cwd=repo)
    two = run_cli(["rewrite", "--diff", "-j", "2", "."], cwd=repo)
    assert one.exit_code == two.exit_code == 0
    assert one.output == two.output and "get_group_norm" in two.output


def test_unused_workers_are_stopped_without_waiting_for_their_imports(tmp_path, monkeypatch):
    """Nothing to convert (the only BatchNorm is the backbone's): the workers, still importing
    (here: sleeping a minute), are ended at once and none is left."""
    (tmp_path / "net.py").write_text(KEEP_ONLY)
    monkeypatch.setattr(rewrite, "import_codemods", lambda: time.sleep(60))
    started = []
    real = process.warm_pool

    def recording(*args, **kwargs):
        manager = real(*args, **kwargs)
        started.append(manager)
        return manager

    monkeypatch.setattr(rewrite, "warm_pool", recording)
    before = {c for c in child_processes(os.getpid()) if process_alive(c)}
    start = time.monotonic()
    run = api.Session.open([tmp_path]).rewrite(workers=2)
    assert time.monotonic() - start < 20
    assert started and not [r for r in run.results if r.status == "changed"]
    assert {c for c in child_processes(os.getpid()) if process_alive(c)} <= before


def test_a_tree_without_batchnorm2d_starts_no_worker(tmp_path, monkeypatch):
    (tmp_path / "net.py").write_text("import torch.nn as nn\n\nlayer = nn.Conv2d(3, 8, 3)\n")

    def refuse(*args, **kwargs):
        raise AssertionError("workers started for a tree with nothing to rewrite")

    monkeypatch.setattr(rewrite, "warm_pool", refuse)
    run = api.Session.open([tmp_path]).rewrite(workers=2)
    assert run.results == []


@pytest.mark.parametrize(
    "cores, big_tree, warm_size",
    [(2, True, 1), (2, False, 2), (8, True, 2)],
    ids=["two-cores-big-tree", "two-cores-small-tree", "eight-cores-big-tree"],
)
def test_warm_workers_and_the_workers_asked(repo, monkeypatch, cores, big_tree, warm_size):
    """On a big tree one core is left to the plan, so on two cores ``-j 2`` warms one worker; when
    the jobs are big, ``-j 2`` means two workers: a pool of two is started after the plan. On a
    small tree every worker asked for is warmed."""
    monkeypatch.setattr(rewrite.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(rewrite, "IN_PROCESS_BYTES", 0)  # every job set counts as big
    if big_tree:
        monkeypatch.setattr(rewrite, "SMALL_TREE_BYTES", 0)
    warm_sizes, full = [], []
    real_warm, real_full = rewrite.warm_pool, rewrite.worker_pool

    def warm(workers, *args, **kwargs):
        warm_sizes.append(workers)
        return real_warm(workers, *args, **kwargs)

    def full_pool(workers, *args, **kwargs):
        full.append(workers)
        return real_full(workers, *args, **kwargs)

    monkeypatch.setattr(rewrite, "warm_pool", warm)
    monkeypatch.setattr(rewrite, "worker_pool", full_pool)
    run = api.Session.open([repo]).rewrite(workers=2)
    assert warm_sizes == [warm_size]
    assert full == ([2] if warm_size < 2 else [])
    assert sum(1 for r in run.results if r.status == "changed") >= 2


def test_a_system_that_cannot_start_workers_rewrites_in_this_process(repo, monkeypatch):
    @contextlib.contextmanager
    def no_processes(*args, **kwargs):
        raise ImportError("This platform lacks a functioning sem_open implementation")
        yield  # pragma: no cover

    serial = api.Session.open([repo]).rewrite(workers=1)
    monkeypatch.setattr(process, "worker_pool", no_processes)
    run = api.Session.open([repo]).rewrite(workers=2)
    assert [(r.path, r.status, r.new_text) for r in run.results] == [
        (r.path, r.status, r.new_text) for r in serial.results
    ]
    assert sum(1 for r in run.results if r.status == "changed") >= 2
