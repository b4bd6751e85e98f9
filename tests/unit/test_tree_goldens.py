"""Whole-tree goldens, discovered: every ``fixtures/trees/<case>/`` holds ``in/`` (or names a shared
input in its sidecar), ``out/`` with the expected bytes of every file the command changes (a file
without one must come out unchanged), and ``case.toml``:

- ``command``: the argument list, run in-process from a copy of the input;
- ``input``: a shared input folder, relative to the case, instead of ``in/``;
- ``exit``: the exit code (default 0);
- ``output``: lines the command's output must contain (its notes and summary);
- ``also``: extra arguments that must give the same tree (``[["-j", "2"]]``);
- ``changes``: every edit as ``[rule, line in the input]``, read off the input by hand (the command
  is then also asked for its JSON report).

Each case is also run a second time on its own output, which must change nothing. Regenerate the
``out/`` folders with ``pytest tests/unit/test_tree_goldens.py --regen-goldens`` and read every diff.
"""

from __future__ import annotations

import ast
import json
import shutil
import sys
from pathlib import Path

import pytest
from conftest import FIXTURES, run_cli, snapshot

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TREES = FIXTURES / "trees"
SIDECAR_KEYS = {"command", "input", "exit", "output", "also", "changes"}


def _cases():
    for sidecar in sorted(TREES.glob("*/case.toml")):
        spec = tomllib.loads(sidecar.read_text(encoding="utf-8"))
        for extra in [[], *spec.get("also", [])]:
            label = sidecar.parent.name + ("" if not extra else "[" + " ".join(extra) + "]")
            yield pytest.param(sidecar.parent, spec, extra, id=label)


CASES = list(_cases())


def _input(case: Path, spec: dict) -> Path:
    return (case / spec["input"]).resolve() if "input" in spec else case / "in"


def _run(case: Path, spec: dict, extra, tmp_path: Path):
    root = tmp_path / case.name
    shutil.copytree(_input(case, spec), root, symlinks=True)
    before = snapshot(root)
    report = ["--format", "json"] if "changes" in spec else []
    result = run_cli([*spec["command"], *extra, *report], cwd=root)
    return root, before, result


def test_every_case_has_a_sidecar_with_known_keys_and_an_input():
    folders = sorted(p for p in TREES.iterdir() if p.is_dir())
    assert folders and all((p / "case.toml").is_file() for p in folders)
    for case, spec, _ in (param.values for param in CASES):
        assert set(spec) <= SIDECAR_KEYS, case.name
        assert _input(case, spec).is_dir(), case.name


@pytest.mark.parametrize("case, spec, extra", CASES)
def test_tree_golden(case, spec, extra, tmp_path, regen):
    root, before, result = _run(case, spec, extra, tmp_path)
    assert result.exit_code == spec.get("exit", 0), result.output
    for line in spec.get("output", []):
        assert line in result.output, f"{case.name}: {line!r} not in output"
    if "changes" in spec:
        report = json.loads(result.stdout)
        made = {(c["rule"], c["line"]) for r in report["results"] for c in r["changes"]}
        assert made == {tuple(change) for change in spec["changes"]}
    after = snapshot(root)
    golden = case / "out"
    if regen and not extra:
        shutil.rmtree(golden, ignore_errors=True)
        for rel, data in after.items():
            if before[rel] != data:
                (golden / rel).parent.mkdir(parents=True, exist_ok=True)
                (golden / rel).write_bytes(data)
    assert set(after) == set(before)
    for rel, data in after.items():
        expected = (golden / rel).read_bytes() if (golden / rel).exists() else before[rel]
        assert data == expected, (
            f"{case.name}/{rel} differs from its {'golden' if (golden / rel).exists() else 'input'}"
        )
        if data != before[rel]:
            ast.parse(data.decode("latin-1" if b"coding: latin-1" in data[:200] else "utf-8-sig"))


@pytest.mark.parametrize("case, spec, extra", [c for c in CASES if not c.values[2]])
def test_a_second_run_changes_nothing(case, spec, extra, tmp_path):
    root, _, _ = _run(case, spec, extra, tmp_path)
    once = snapshot(root)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    result = run_cli(spec["command"], cwd=root)
    assert snapshot(root) == once
    assert " 0 changed" in result.output, result.output
    # not even rewritten with the same bytes
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == stamps
