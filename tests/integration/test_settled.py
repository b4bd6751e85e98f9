"""``rewrite`` skips LibCST only where the ``ast`` proof says its codemods change nothing.

Every job the analysis calls settled (``source.support.settled``) is run again through LibCST with the
proof switched off: it must come back unchanged, with no change, note or refused site. Checked on
every fixture folder, on a migrated copy of the CenterNet repository (where every job is settled)
and on hand-written init loops whose verdict is written here.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from conftest import CENTERNET, FIXTURES, ROOT, run_cli

from bn2gn.api import Session
from bn2gn.core.source_files import read_source
from bn2gn.source.rewrite import rewrite_source


def jobs_of(folder: Path):
    session = Session.open([folder])
    return list(session.rewrite_jobs().values())


def through_libcst(job):
    result = rewrite_source(read_source(job.path), dataclasses.replace(job, settled=False))
    return result.status, result.changes, result.notes, result.refused


def assert_settled_jobs_unchanged(folder: Path) -> int:
    settled = 0
    for job in jobs_of(folder):
        if job.settled:
            settled += 1
            assert through_libcst(job) == ("unchanged", (), (), ()), job.path
    return settled


def _folders():
    return sorted({p.parent for p in FIXTURES.rglob("*.py") if "__pycache__" not in p.parts})


def test_every_settled_fixture_job_is_unchanged_by_libcst(monkeypatch):
    monkeypatch.chdir(ROOT)
    seen = 0
    for folder in _folders():
        try:
            seen += assert_settled_jobs_unchanged(folder)
        except Exception as exc:  # folders without models: nothing to plan
            if type(exc).__name__ not in ("NothingToAnalyse", "Bn2gnError"):
                raise
    assert seen >= 1


@pytest.fixture
def migrated(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    shutil.copytree(CENTERNET, repo, ignore=shutil.ignore_patterns("__pycache__"))
    result = run_cli(["migrate", ".", "--write"], cwd=repo)
    assert result.exit_code == 0, result.output
    monkeypatch.chdir(repo)
    return repo


def test_a_migrated_repository_needs_no_libcst(migrated):
    jobs = jobs_of(Path("."))
    assert jobs and all(job.settled for job in jobs)  # the files calling get_group_norm
    assert assert_settled_jobs_unchanged(Path(".")) == len(jobs)


def test_migrate_check_of_a_migrated_repository_imports_no_libcst(migrated):
    from test_trainer_plan import _run_recording_modules

    loaded = _run_recording_modules(["migrate", "--check", "."], migrated)
    assert "bn2gn.source.rewrite" in loaded  # it did plan the rewrite
    assert not {m for m in loaded if m.split(".")[0] == "libcst"}


HEAD = "import torch.nn as nn\n\n\ndef get_group_norm(c):\n    return nn.GroupNorm(1, c)\n\n\n"
LOOP = (
    "class Net(nn.Module):\n    def init(self):\n        self.norm = get_group_norm(4)\n"
    "        for m in self.modules():\n{body}"
)

# (init loop body, settled: written by hand)
BODIES = [
    (
        "            if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):\n"
        "                if hasattr(m, 'weight') and m.weight is not None:\n"
        "                    nn.init.constant_(m.weight, 1)\n",
        True,
    ),
    (  # the guard is still to add
        "            if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):\n"
        "                nn.init.constant_(m.weight, 1)\n",
        False,
    ),
    (  # GroupNorm still to add
        "            if isinstance(m, nn.BatchNorm2d):\n                pass\n",
        False,
    ),
    (  # parenthesised: LibCST's text of it does not end with GroupNorm
        "            if isinstance(m, (nn.BatchNorm2d, (nn.GroupNorm))):\n                pass\n",
        False,
    ),
    ("            if isinstance(m, nn.Conv2d):\n                nn.init.zeros_(m.bias)\n", True),
    (
        "            if isinstance(m, (nn.BatchNorm2d,\n                              nn.GroupNorm)):\n"
        "                m.eps = 1e-3\n",
        True,
    ),
    (  # in an except clause: the guard still to add
        "            try:\n                pass\n            except ValueError:\n"
        "                if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):\n"
        "                    nn.init.constant_(m.weight, 1)\n",
        False,
    ),
    (  # in a case clause: GroupNorm still to add
        "            match m:\n                case _:\n"
        "                    if isinstance(m, nn.BatchNorm2d):\n                        pass\n",
        False,
    ),
    (  # under a with and an else, below statements that spell no isinstance
        "            with open('x') as f:\n                if f:\n                    pass\n"
        "                else:\n                    if isinstance(m, nn.Conv2d):\n"
        "                        nn.init.zeros_(m.bias)\n",
        True,
    ),
]


@pytest.mark.parametrize("body, expected", BODIES)
def test_init_loops(tmp_path, monkeypatch, body, expected):
    (tmp_path / "net.py").write_text(HEAD + LOOP.format(body=body) + "\nnn.BatchNorm2d\n")
    monkeypatch.chdir(tmp_path)
    (job,) = jobs_of(Path("."))
    assert job.settled == expected
    if expected:
        assert through_libcst(job) == ("unchanged", (), (), ())
    else:
        assert through_libcst(job)[0] == "changed"


def test_helper_called_but_not_defined_is_not_settled(tmp_path, monkeypatch):
    (tmp_path / "net.py").write_text(
        "import torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.norm = get_group_norm(4)\n\n\nnn.BatchNorm2d\n"
    )
    monkeypatch.chdir(tmp_path)
    (job,) = jobs_of(Path("."))
    assert not job.settled
    assert through_libcst(job)[0] == "changed"


def test_migrate_check_works_out_no_next_steps(migrated, monkeypatch):
    """``migrate --check`` prints no next steps, so it does not read the train scripts for them."""
    from bn2gn.migrate import next_steps

    def refuse(*args, **kwargs):
        raise AssertionError("next steps worked out for --check")

    # migrate imports it where it is used, from its module
    monkeypatch.setattr(next_steps, "find_next_steps", refuse)
    result = run_cli(["migrate", "--check", "."], cwd=migrated)
    assert result.exit_code == 0, result.output
    assert "0 would change" in result.output


def test_a_form_feed_line_goes_to_libcst(tmp_path, monkeypatch):
    """``str.splitlines`` counts a form feed as a line break and Python does not: read by those
    lines, the parenthesised GroupNorm below would seem to follow the comma of the line before it
    (its column lies past that line's end), and the file would pass as settled although BN2GN103
    widens its check. Such a text is left to LibCST."""
    body = (
        "            if isinstance(m, (nn.BatchNorm2d,\n"
        + " " * 49
        + "(nn.GroupNorm))):\n                pass\n"
    )
    text = HEAD + "\x0c\n" + LOOP.format(body=body) + "\nnn.BatchNorm2d\n"
    (tmp_path / "net.py").write_text(text)
    monkeypatch.chdir(tmp_path)
    (job,) = jobs_of(Path("."))
    assert not job.settled
    assert through_libcst(job)[0] == "changed"
