"""Parsing in worker processes (decide/parse_pool.py) gives the facts, the failures and the plans a
parse in this process gives, in the order asked; forced here with a threshold of one file."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import pytest

from bn2gn.core.errors import SourceFailure
from bn2gn.core.settings import Config
from bn2gn.decide import parse_pool, relevance, scan
from bn2gn.decide.plan import render_json

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
#: this module: the workers' functions defined here pickle by reference to it
THIS = sys.modules[__name__]


@pytest.fixture(autouse=True)
def this_module_importable(monkeypatch):
    """A model build earlier in the run (in-process, from the checkout) drops the modules under the
    repository it built from, this one among them: put it back, or pickling a worker's function
    imports a second copy of it."""
    monkeypatch.setitem(sys.modules, __name__, THIS)


def summary(parsed):
    """What the analysis reads of one file's facts (or its failure), as plain values."""
    if isinstance(parsed, SourceFailure):
        return parsed
    return (
        parsed.path,
        parsed.display,
        parsed.modname,
        parsed.lines,
        parsed.tree_kept,
        parsed.imports,
        parsed.star_imports,
        parsed.bn_aliases,
        parsed.top_spans,
        parsed.class_members,
        [(raw.node.lineno, raw.node.col_offset, raw.op, raw.scope) for raw in parsed.sites],
        {
            name: (d.kind, d.top, d.lineno, d.col, d.first, d.end, d.bases, d.base_names)
            + (d.references,)
            for name, d in parsed.defs.items()
        },
    )


def summaries(parsed) -> list:
    return [summary(p) for p in parsed]


def serial(files) -> list:
    """The summaries of ``files`` parsed one by one in this process."""
    return summaries(parse_pool.parse_each(scan.parse_with_sites, files))


def fixture_files():
    return [(path, path.read_bytes()) for path in sorted(FIXTURES.rglob("*.py"))]


def test_workers_give_the_facts_and_failures_of_a_serial_parse():
    files = fixture_files()
    assert any(scan.keeps_tree(data) for _, data in files)  # both kinds are in the batch
    assert sum(not scan.keeps_tree(data) for _, data in files) > 100
    serial = parse_pool.parse_each(scan.parse_with_sites, files)
    in_worker = functools.partial(relevance.with_code_words, scan.parse_with_sites)
    with parse_pool.BatchParser(
        scan.parse_with_sites, scan.keeps_tree, in_worker, workers=2, threshold=1
    ) as parse:
        parallel = parse(files)
        assert parse._pool is not None  # the workers did parse
        again = parse(files[:5])  # a later round reuses the workers
    failures = [p for p in serial if isinstance(p, SourceFailure)]
    assert failures and "syntax_error.py" in failures[0].path  # a failure travels back too
    assert [summary(p) for p in parallel] == [summary(p) for p in serial]
    assert [summary(p) for p in again] == [summary(p) for p in serial[:5]]
    kept = [p for p in parallel if not isinstance(p, SourceFailure) and p.sites]
    assert kept and all(p.tree_kept for p in kept)  # parsed here: their nodes are this process's
    for (_, data), facts, alone in zip(files, parallel, serial):
        if isinstance(facts, SourceFailure):
            continue
        # a worker takes the words of each definition's code with the facts; this process does not
        assert facts.code_words == (
            None if scan.keeps_tree(data) else relevance.code_words(alone, data)
        )


def test_a_small_round_or_a_single_cpu_starts_no_worker():
    files = fixture_files()[:20]
    for workers, threshold in ((2, 1000), (1, 1)):
        with parse_pool.BatchParser(
            scan.parse_with_sites, scan.keeps_tree, None, workers=workers, threshold=threshold
        ) as parse:
            assert summaries(parse(files)) == serial(files)
            assert parse._pool is None


def test_a_first_round_parsed_here_starts_the_workers_of_a_big_tree(monkeypatch):
    """They parse ahead while this process parses the round's files (kept trees) and reads the
    text: when those files hold ``HERE_BYTES`` and the tree has ``AHEAD_ROUNDS`` times the
    threshold of files ahead."""
    files = fixture_files()
    ahead = dict(files)
    sendable = sum(not scan.keeps_tree(data) for _, data in files)
    first = [(p, d) for p, d in files if scan.keeps_tree(d)][:3]
    size = sum(len(data) for _, data in first)
    for threshold, here_bytes, started in (
        (sendable // parse_pool.AHEAD_ROUNDS, size, True),
        (sendable // parse_pool.AHEAD_ROUNDS, size + 1, False),
        (sendable // parse_pool.AHEAD_ROUNDS + 1, size, False),
    ):
        monkeypatch.setattr(parse_pool, "HERE_BYTES", here_bytes)
        with parse_pool.BatchParser(
            scan.parse_with_sites, scan.keeps_tree, None, 2, threshold, ahead
        ) as parse:
            assert summaries(parse(first)) == serial(first)
            assert (parse._pool is not None) == started
            assert summaries(parse(files)) == serial(files)


def test_a_system_that_cannot_start_workers_parses_here(monkeypatch):
    def no_semaphores(*args, **kwargs):
        raise ImportError("This platform lacks a functioning sem_open implementation")

    monkeypatch.setattr(parse_pool.process, "worker_pool", no_semaphores)
    files = fixture_files()
    with parse_pool.BatchParser(
        scan.parse_with_sites, scan.keeps_tree, None, workers=2, threshold=1
    ) as parse:
        assert summaries(parse(files)) == serial(files)
        assert parse._pool is None and parse.elsewhere(len, ()) is None


def dies_on_a_file(path, data):
    """A worker's parse that ends its process on one file (killed, out of memory)."""
    if path.name == "syntax_error.py":
        os._exit(1)
    return scan.parse_with_sites(path, data)


def test_a_worker_that_dies_leaves_its_files_to_this_process():
    files = fixture_files()
    with parse_pool.BatchParser(
        scan.parse_with_sites, scan.keeps_tree, dies_on_a_file, workers=2, threshold=1
    ) as parse:
        assert summaries(parse(files)) == serial(files)
        assert parse(files[:3]) and parse.elsewhere(len, ()) is None  # the pool is broken


def plan_json(folder: Path, monkeypatch, threshold: int, insertions=None) -> str:
    monkeypatch.setattr(parse_pool, "PARALLEL_FILES", threshold)
    monkeypatch.setattr(parse_pool, "available_cpus", lambda: 2)
    started = []
    real = parse_pool.BatchParser._started

    def counted(self):
        started.append(self)
        return real(self)

    monkeypatch.setattr(parse_pool.BatchParser, "_started", counted)
    plan, _ = scan.build_plan([folder], Config(), insertions)
    assert bool(started) == (threshold == 1)
    return render_json(plan)


@pytest.mark.parametrize(
    "folder", [FIXTURES, FIXTURES / "repos", FIXTURES / "backbones"], ids=lambda p: p.name
)
def test_the_plan_made_with_workers_is_the_serial_one(folder, monkeypatch):
    assert plan_json(folder, monkeypatch, 1) == plan_json(folder, monkeypatch, 10**9)


#: calls of ``listed_in`` in this process (a worker's are its own)
LISTED_HERE: list = []


def listed_in(parent: int, raw, config, backbone):
    from bn2gn.api import trainer_insertions

    if os.getpid() == parent:
        LISTED_HERE.append(True)
    return trainer_insertions(raw, config, backbone)


NO_BACKBONE = {
    "net.py": "import torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n"
    "        super().__init__()\n        self.bn = nn.BatchNorm2d(8)\n",
    "user.py": "import torch.nn as nn\n\nfrom net import Net\n\n\nclass User(nn.Module):\n"
    "    def __init__(self):\n        super().__init__()\n        self.net = Net()\n",
    "train.py": "import torch\n\nfrom user import User\n\n\ndef main():\n    model = User()\n"
    "    model.train()\n    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
    "    return optimizer\n",
}


@pytest.mark.parametrize("early", [True, False], ids=["no-backbone-inferred", "backbones-inferred"])
def test_insertions_listed_by_a_worker_are_the_serial_ones(tmp_path, early, monkeypatch):
    """``scan`` lists patch-trainer's insertions in a worker while the analysis decides; they are
    taken when the decided backbone is the one the worker was given (no root infers one), and
    listed here otherwise."""
    folder = FIXTURES / "backbones" if not early else tmp_path
    for name, text in NO_BACKBONE.items():
        (tmp_path / name).write_text(text)
    trainer_insertions = functools.partial(listed_in, os.getpid())
    serial = plan_json(folder, monkeypatch, 10**9, trainer_insertions)
    assert LISTED_HERE == [True]
    LISTED_HERE.clear()
    taken = []
    real = parse_pool.BatchParser.elsewhere

    def counted(self, func, *args):
        future = real(self, func, *args)
        taken.append(future)
        return future

    monkeypatch.setattr(parse_pool.BatchParser, "elsewhere", counted)
    assert plan_json(folder, monkeypatch, 1, trainer_insertions) == serial
    assert '"insertions": []' not in serial
    assert len(taken) == 1  # sent to a worker either way (and stopped when not taken)
    assert LISTED_HERE == ([] if early else [True])  # and again here unless the worker's is taken
    LISTED_HERE.clear()
    plan, _ = scan.build_plan([folder], Config())
    # what decides whether the worker's list is taken: a root infers a backbone not configured
    assert (scan.decided_backbone(Config(), plan.backbones).inferred == ()) == early
