"""Results are data: immutable, failures carry their path and line as fields, refused sites are
structured, and one ordered codemod registry covers every rule. Expected values are read off the
inputs below by hand."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

from bn2gn.core.errors import SourceFailure
from bn2gn.core.file_results import WRITE, FileResult, apply_results
from bn2gn.core.rule_codes import Rule, select_rules
from bn2gn.core.settings import Config
from bn2gn.core.source_files import read_source
from bn2gn.decide.plan import CONVERT, UNSURE, Plan
from bn2gn.source.rewrite import rewrite_paths

NET = """

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Conv2d(3, 8, 3)
        self.head = Head(8)
"""
BROKEN = "import torch.nn as nn\n\n\nclass Head(nn.Module:\n    bn = nn.BatchNorm2d(8)\n"


def test_a_windows_path_in_an_analysis_error_stays_whole():
    """The failed result names the whole path (``C:\\...``), not what comes before its first colon."""
    where = "C:\\work\\models\\head.py"
    failure = SourceFailure.at(where, 4, "cannot parse: invalid syntax")
    run = rewrite_paths([], Config(), select_rules((), ()), plan=Plan(errors=[failure]))
    [result] = run.results
    assert result.status == "failed"
    assert result.path == Path(where)
    assert (result.failure.path, result.failure.line) == (where, 4)
    assert result.error == "C:\\work\\models\\head.py:4: cannot parse: invalid syntax"


def test_a_colon_in_a_file_name_is_reported_with_its_whole_path(tmp_path):
    folder = tmp_path / "C:"
    folder.mkdir()
    (folder / "a:b.py").write_text(BROKEN)
    result = run_cli(["rewrite", "--check", "--format", "json", "."], cwd=tmp_path)
    assert result.exit_code == 1, result.output
    [failed] = json.loads(result.stdout)["results"]
    assert failed["path"] == "C:/a:b.py"
    assert failed["error"].startswith("C:/a:b.py:4: cannot parse")
    assert (folder / "a:b.py").read_text() == BROKEN


def test_refused_sites_are_data_and_the_given_plan_is_not_changed(tmp_path):
    from bn2gn.decide.scan import build_plan

    (tmp_path / "model.py").write_text(
        "import torch.nn as nn\n\n\nclass Head(nn.Module):\n    def __init__(self, c, *shape):\n"
        "        super().__init__()\n        self.bn = nn.BatchNorm2d(*shape)\n" + NET
    )
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        plan, project = build_plan([Path(".")], Config())
        [site] = [s for s in plan.sites if s.line == 7]
        assert site.decision == CONVERT
        run = rewrite_paths([Path(".")], Config(), select_rules((), ()), plan=plan, project=project)
    finally:
        os.chdir(old)
    [result] = run.results
    assert result.status == "unchanged"
    [refusal] = result.refused
    assert (refusal.rule, refusal.path, refusal.line) == (Rule.REPLACE_BATCHNORM, "model.py", 7)
    assert "*args" in refusal.reason
    [marked] = [s for s in run.plan.sites if s.line == 7]
    assert marked.decision == UNSURE and "cannot be mapped to get_group_norm" in marked.reason
    assert site.decision == CONVERT and plan.sites[plan.sites.index(site)] is site


def test_results_are_immutable(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("x = 1\n")
    result = FileResult(path=path, status="unchanged", source=read_source(path), notes=["a"])
    assert result.notes == ("a",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.status = "failed"


def test_output_not_made_by_finish_is_parse_checked_before_it_is_written(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("x = 1\n")
    results = [
        FileResult(path=path, status="changed", source=read_source(path), new_text="x = (\n")
    ]
    assert apply_results(results, WRITE, None) == 1
    assert results[0].status == "failed" and "does not parse" in results[0].error
    assert results[0].failure.line == 1
    assert path.read_text() == "x = 1\n"


def test_one_registry_entry_per_rule_in_the_engine_of_its_command():
    from bn2gn.source.registry import patch_trainer_codemods, rewrite_codemods

    rewrite = [rule for codemod in rewrite_codemods() for rule in codemod.rules]
    patch = [rule for codemod in patch_trainer_codemods() for rule in codemod.rules]
    assert sorted(r.code for r in rewrite) == ["BN2GN101", "BN2GN102", "BN2GN103"]
    assert sorted(r.code for r in patch) == ["BN2GN201", "BN2GN202", "BN2GN203", "BN2GN204"]
    assert set(rewrite) | set(patch) == set(Rule)
    assert {r.command for r in rewrite} == {"rewrite"}
    assert {r.command for r in patch} == {"patch-trainer"}


def test_the_registry_module_imports_no_libcst():
    """The pre-filter imports ``bn2gn.source.support.names`` before anything heavy is needed."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    code = "import sys, bn2gn.source.support.names; print('libcst' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
