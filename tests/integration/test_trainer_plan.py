"""patch-trainer plans on ``ast`` in one walk per file; ``bn2gn scan`` lists the same insertions
without LibCST; the default paths import neither black nor ``libcst.matchers``.

The decisions themselves are pinned by the goldens of tests/integration/test_patch_trainer.py (expected edits
read off the inputs by hand); here the two paths that report them are held to each other.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CENTERNET, FIXTURES, ROOT, run_cli

from bn2gn.api import trainer_insertions as plan_insertions
from bn2gn.core.errors import SourceError
from bn2gn.core.settings import Config
from bn2gn.source.patch_trainer import TrainerOptions, patch_files
from bn2gn.source.support.trainer_facts import Facts

PT = FIXTURES / "patch_trainer"
#: the cases that need flags scan does not take
FLAGGED = {"script_exclude_frozen", "helper_module"}


def test_scan_lists_exactly_what_patch_trainer_plans_on_every_fixture():
    files = [
        p for p in sorted(FIXTURES.rglob("*.py")) if not any(case in p.name for case in FLAGGED)
    ]
    results, _ = patch_files(files, TrainerOptions())
    readable = {r.path: r for r in results if r.status != "failed"}
    assert sum(r.status == "changed" for r in readable.values()) >= 12
    listed = plan_insertions({p: p.read_bytes() for p in readable}, Config())
    by_path = {}
    for item in listed:
        by_path.setdefault(Path(item["path"]).resolve(), []).append(
            (item["rule"], item["line"], f"{item['message']} [in {item['scope']}]")
        )
    for path, result in readable.items():
        planned = [(c.rule.code, c.line, c.message) for c in result.changes]
        assert by_path.get(path.resolve(), []) == planned, path


def test_scan_and_patch_trainer_reports_agree_on_the_centernet_repository(tmp_path):
    tree = tmp_path / "repo"
    shutil.copytree(CENTERNET, tree)
    scan = json.loads(run_cli(["scan", "--format", "json", "."], cwd=tree).stdout)
    patched = json.loads(
        run_cli(["patch-trainer", "--diff", "--format", "json", "."], cwd=tree).stdout
    )
    from_scan = sorted(
        (i["path"], i["rule"], i["line"], f"{i['message']} [in {i['scope']}]")
        for i in scan["insertions"]
    )
    from_patch = sorted(
        (r["path"], c["rule"], c["line"], c["message"])
        for r in patched["results"]
        for c in r["changes"]
    )
    assert from_scan == from_patch
    # read off the fixture: the trainer's run_epoch switch and the two train scripts' optimizers
    assert {(p, rule, line) for p, rule, line, _ in from_scan} == {
        ("lib/Trainer/base_trainer.py", "BN2GN202", 11),
        ("lib/Trainer/base_trainer.py", "BN2GN203", 55),
        ("train.py", "BN2GN202", 17),
        ("train.py", "BN2GN201", 24),
        ("train_satmtb.py", "BN2GN202", 16),
        ("train_satmtb.py", "BN2GN201", 31),
    }


def test_planning_walks_each_file_once_and_never_uses_libcst_matchers(monkeypatch):
    import libcst.matchers

    def refuse(*args, **kwargs):
        raise AssertionError("planning used libcst.matchers")

    module_walks = []
    real_walk = ast.walk

    def walk(node):
        if isinstance(node, ast.Module):
            module_walks.append(node)
        return real_walk(node)

    monkeypatch.setattr(libcst.matchers, "findall", refuse)
    monkeypatch.setattr(libcst.matchers, "matches", refuse)
    monkeypatch.setattr(ast, "walk", walk)
    files = sorted((FIXTURES / "trees").glob("patch_trainer_*/in/*.py")) + sorted(
        CENTERNET.rglob("*.py")
    )
    before = Facts.walks
    found = plan_insertions({p: p.read_bytes() for p in files}, Config())
    assert {Path(i["path"]).name for i in found} >= {"train.py", "script_builders.py"}
    from bn2gn.source.support.recognise import admitted

    assert Facts.walks - before == len(admitted({p: p.read_bytes() for p in files}))
    assert module_walks == []


def test_patching_parses_each_changed_file_once_with_one_position_resolution(monkeypatch):
    import libcst.metadata

    from bn2gn.source import patch_trainer as trainer

    parses, resolutions = [], []
    real_parse, real_resolve = trainer.parse_module, libcst.metadata.MetadataWrapper.resolve

    def parse(source, checked=False):
        parses.append(source.path)
        return real_parse(source, checked)

    def resolve(self, provider):
        resolutions.append(provider)
        return real_resolve(self, provider)

    monkeypatch.setattr(trainer, "parse_module", parse)
    monkeypatch.setattr(libcst.metadata.MetadataWrapper, "resolve", resolve)
    files = sorted((FIXTURES / "trees" / "patch_trainer_project" / "in").glob("*.py")) + sorted(
        (FIXTURES / "trees" / "patch_trainer_project" / "out").glob("*.py")
    )
    results, _ = patch_files(files, TrainerOptions())
    changed = [r.path for r in results if r.status == "changed"]
    assert sorted(p.name for p in changed) == ["tiny_train.py", "tiny_trainer.py"]
    assert sorted(parses) == sorted(changed)  # the already patched copies need no LibCST at all
    assert len(resolutions) == len(changed)


def _run_recording_modules(args, cwd):
    """Run the CLI in a fresh interpreter; return the names of the modules it loaded."""
    # main() ends the process (bn2gn.core.process.quick_exit) after running the exit handlers
    code = (
        "import atexit, sys, json\n"
        "from bn2gn.cli import main\n"
        f"sys.argv = ['bn2gn', *{list(args)!r}]\n"
        "atexit.register(lambda: sys.stderr.write('MODULES ' + json.dumps(sorted(sys.modules))))\n"
        "main()\n"
    )
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True
    )
    return set(json.loads(done.stderr.rsplit("MODULES ", 1)[1]))


def test_scan_of_a_tree_with_training_code_imports_no_libcst(tmp_path):
    tree = tmp_path / "repo"
    shutil.copytree(CENTERNET, tree)
    loaded = _run_recording_modules(["scan", "-q", "."], tree)
    assert "bn2gn.source.support.trainer_facts" in loaded  # it did plan the insertions
    assert not {m for m in loaded if m.split(".")[0] in ("libcst", "black")}


@pytest.mark.parametrize("command", [["patch-trainer", "--diff"], ["rewrite", "--diff"]])
def test_default_paths_import_neither_black_nor_libcst_matchers(tmp_path, command):
    tree = tmp_path / "repo"
    shutil.copytree(CENTERNET, tree)
    loaded = _run_recording_modules([*command, "."], tree)
    assert "libcst" in loaded  # it did parse files with LibCST
    assert "black" not in loaded
    if command[0] == "patch-trainer":
        assert "libcst.matchers" not in loaded


def _trainer_option_sets():
    """Rules and helper settings that change what the codemods of a plan do."""
    from bn2gn.core.rule_codes import Rule
    from bn2gn.decide.backbone import Backbone

    every = frozenset(r for r in Rule if r.code.startswith("BN2GN2"))
    other = Backbone.named(("encoder",))
    return [
        TrainerOptions(),
        TrainerOptions(rules=every),
        TrainerOptions(rules=every - {Rule.INJECT_FREEZE_HELPER}),
        TrainerOptions(helper_module="bn2gn.runtime"),
        TrainerOptions(backbone=other),
        TrainerOptions(rules=every - {Rule.INJECT_FREEZE_HELPER}, backbone=other),
    ]


def test_a_silent_plan_is_one_no_codemod_applies_to_on_every_fixture():
    """``FilePlan.silent`` lets ``_apply`` skip the codemods (and their imports): on every fixture
    file, under rules and backbones that make the codemods act, a silent plan is one none applies to."""
    from bn2gn.core.source_files import decode_source
    from bn2gn.source.codemod import Context
    from bn2gn.source.patch_trainer import NeedsUserInput, plan_module
    from bn2gn.source.registry import patch_trainer_codemods
    from bn2gn.source.support.trainer_steps import TrainerPlan

    silent = loud = 0
    for path in sorted(FIXTURES.rglob("*.py")):
        try:
            source = decode_source(path, path.read_bytes())
            facts = Facts(source.text, ast.parse(source.text))
        except (SourceError, SyntaxError, ValueError, RecursionError):
            continue
        for options in _trainer_option_sets():
            try:
                plan = plan_module(facts, options, path)
            except NeedsUserInput:
                continue
            context = Context(source, options.rules, TrainerPlan(options, plan))
            applies = any(c.applies(context) for c in patch_trainer_codemods())
            assert not (plan.silent and applies), (path, options)
            silent += plan.silent
            loud += applies
    assert silent >= 10 and loud >= 10  # both kinds were met


def test_a_silent_plan_on_hand_written_shapes():
    """Every combination of a plan's edit fields, under every set of rules: silent only when no
    codemod applies (an edit, a helper to define or update, or a stale helper to note)."""
    import itertools

    from bn2gn.core.rule_codes import Rule
    from bn2gn.core.source_files import decode_source
    from bn2gn.source.codemod import Context
    from bn2gn.source.patch_trainer import FilePlan
    from bn2gn.source.registry import patch_trainer_codemods
    from bn2gn.source.support.trainer_steps import TrainerPlan

    rules = sorted(TrainerOptions().rules | {Rule.EXCLUDE_FROZEN_FROM_OPTIMIZER}, key=str)
    source = decode_source(Path("train.py"), b"pass\n")
    fields = itertools.product(
        ([], ["insertion"]),
        ({}, {(3, 4): "rewrite"}),
        ([], ["freeze_backbone_bn"]),
        (None, ("backbone",)),
        (False, True),
    )
    seen = set()
    for insertions, rewrites, helpers, stale, update in fields:
        plan = FilePlan(insertions, rewrites, [], [], helpers, 1, stale, update)
        for size in range(len(rules) + 1):
            for chosen in itertools.combinations(rules, size):
                options = TrainerOptions(rules=frozenset(chosen))
                context = Context(source, options.rules, TrainerPlan(options, plan))
                applies = any(c.applies(context) for c in patch_trainer_codemods())
                assert not (plan.silent and applies), (plan, chosen)
                seen.add((plan.silent, applies))
    assert seen == {(True, False), (False, True), (False, False)}


def test_a_patched_file_gets_the_result_the_codemods_give(monkeypatch):
    """The already patched copies of the fixtures: the result without the codemods is the result
    with them (the same text, changes and notes), and the codemods' modules are not needed."""
    from bn2gn.source import patch_trainer as trainer

    files = sorted((FIXTURES / "trees").glob("patch_trainer_*/out/*.py"))
    skipped = []
    real_apply = trainer._apply

    def recording(source, options, plan):
        skipped.append(plan.silent)
        return real_apply(source, options, plan)

    monkeypatch.setattr(trainer, "_apply", recording)
    for options in _trainer_option_sets():
        quick, _ = patch_files(files, options)
        with monkeypatch.context() as forced:
            forced.setattr(trainer.FilePlan, "silent", property(lambda plan: False))
            full, _ = patch_files(files, options)
        assert [(r.path, r.status, r.new_text, r.changes, r.notes) for r in quick] == [
            (r.path, r.status, r.new_text, r.changes, r.notes) for r in full
        ]
    assert skipped.count(True) >= 3


def test_migrate_check_on_a_migrated_repository_imports_no_codemod(tmp_path):
    """The pre-commit hook on a migrated repository: its train scripts are patched already, so
    neither the rewrite's nor patch-trainer's codemods are imported; its text is ASCII, so the
    Unicode tables are not loaded either."""
    tree = tmp_path / "repo"
    shutil.copytree(CENTERNET, tree)
    run_cli(["migrate", "--write", "-q", str(tree)])
    loaded = _run_recording_modules(["migrate", "--check", "-q", "."], tree)
    assert "bn2gn.source.support.trainer_facts" in loaded  # it did plan the train scripts
    assert not {"bn2gn.source.registry", "bn2gn.source.support.trainer_steps"} & loaded
    assert "unicodedata" not in loaded
