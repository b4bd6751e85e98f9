"""Shared test helpers: fixture locations, copying a case, running the CLI in-process."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

# One math thread per process: the suite runs torch in several subprocesses on 2-core machines.
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
TREES = FIXTURES / "trees"
CENTERNET = FIXTURES / "centernet_mini"


TIERS = ("unit", "integration", "runtime")


def pytest_collection_modifyitems(config, items):
    """Each test carries the marker of its tier (the folder it sits in); the runtime tier (demo,
    trainings, model builds, corpora) is also ``slow``."""
    for item in items:
        tier = next((t for t in TIERS if t in Path(str(item.fspath)).parts), None)
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))
        if tier == "runtime":
            item.add_marker(pytest.mark.slow)


def pytest_addoption(parser):
    parser.addoption(
        "--regen-goldens",
        action="store_true",
        help="Rewrite the goldens from the current output (read every diff before committing).",
    )


@pytest.fixture
def regen(request) -> bool:
    return request.config.getoption("--regen-goldens")


def case_dir(case: str) -> Path:
    if case.startswith("plans/"):
        return FIXTURES / case  # the shapes of real CenterNet-family repositories
    return CENTERNET if case == "centernet_mini" else TREES / case / "in"


def copy_case(case: str, dest: Path) -> Path:
    target = dest / case.replace("/", "_")
    shutil.copytree(case_dir(case), target, symlinks=True)
    return target


def snapshot(folder: Path) -> dict:
    """relative path -> bytes, for every file below ``folder``."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def run_cli(args, cwd: Path = None):
    """Invoke the click group in-process from ``cwd``; returns click's Result."""
    from bn2gn.cli import cli

    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    finally:
        os.chdir(old)


def recognised(path: Path, text: str, options) -> bool:
    """patch-trainer's LibCST recognisers' verdict on ``text``, without any pre-filter: whether they
    find training code (shared by the pre-filter tests and the torch corpus)."""
    from bn2gn.core.source_files import decode_source
    from bn2gn.source.patch_trainer import NotTrainingCode, _patch
    from bn2gn.source.rules.bn2gn201_freeze_before_optimizer import NeedsUserInput

    try:
        _patch(decode_source(path, text.encode("utf-8")), options, prefilter=False, check=False)
    except NotTrainingCode:
        return False
    except NeedsUserInput:
        return True  # found a site, needs a flag to patch it
    return True


def child_processes(pid: int) -> list:
    """The process ids whose parent is ``pid``, zombies included (Linux: read from /proc; elsewhere
    none are seen)."""
    found = []
    if not os.path.isdir("/proc"):
        return found
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def process_alive(pid: int) -> bool:
    """Running (a zombie, waiting to be reaped, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def fixture_projects():
    """Each fixture tree (its ``in`` folder, or the tree itself) as one list of files, then every
    other fixture file alone: (name, files)."""
    seen = set()
    for tree in sorted(TREES.iterdir()):
        folder = tree / "in" if (tree / "in").is_dir() else tree
        files = sorted(folder.rglob("*.py"))
        seen.update(files)
        yield tree.name, files
    for path in sorted(FIXTURES.rglob("*.py")):
        if path not in seen:
            yield str(path.relative_to(FIXTURES)), [path]
