"""`bn2gn patch-trainer`: golden before/after files, idempotence, flags, exit codes, the scan plan.

The goldens are tree goldens (fixtures/trees/patch_trainer_*, checked by
tests/unit/test_tree_goldens.py); this file checks what goldens cannot: flags, exit codes,
line endings, the scan plan.
"""

from __future__ import annotations

import ast
import codecs
import json
import shutil
import stat

import pytest
from conftest import FIXTURES, run_cli

PT = FIXTURES / "patch_trainer"
PROJECT = FIXTURES / "trees" / "patch_trainer_project"
CASE_PREFIX = "patch_trainer_"


def case_file(case: str, side: str):
    """The one file of a single-file patch-trainer tree golden (``side``: in or out; a case whose
    file does not change has no out)."""
    folder = FIXTURES / "trees" / f"{CASE_PREFIX}{case}"
    return folder / (side if (folder / side).is_dir() else "in") / f"{case}.py"


def _copy_case(case, tmp_path):
    target = tmp_path / f"{case}.py"
    shutil.copyfile(case_file(case, "in"), target)
    return target


def _patch(path, *args):
    return run_cli(["patch-trainer", path.name, *args], cwd=path.parent)


def test_nested_helper_reports_what_it_leaves_alone(tmp_path):
    target = _copy_case("trainer_nested_helper", tmp_path)
    result = _patch(target)
    assert (
        "trainer_nested_helper.py:23: self.net.train(...) with a non-boolean argument"
        in result.output
    )
    assert (
        "trainer_nested_helper.py:25: m.train() inside a lambda or comprehension" in result.output
    )
    assert (
        "self.teacher.train(False)\n" in target.read_text()
    )  # .train(False) gets nothing after it
    assert (
        "BN2GN203 keep_backbone_bn_eval(self.net) after self.net.train() [in Runner.epoch.set_mode]"
        in result.output
    )


def test_crlf_survives(tmp_path):
    target = tmp_path / "train.py"
    target.write_bytes(
        (case_file("script_main_load_model", "in")).read_bytes().replace(b"\n", b"\r\n")
    )
    assert _patch(target).exit_code == 0
    expected = (case_file("script_main_load_model", "out")).read_bytes().replace(b"\n", b"\r\n")
    assert target.read_bytes() == expected
    assert _patch(target).exit_code == 0 and target.read_bytes() == expected


def test_bom_coding_cookie_and_mode_survive(tmp_path):
    bom = tmp_path / "bom.py"
    bom.write_bytes(codecs.BOM_UTF8 + (case_file("trainer_run_epoch", "in")).read_bytes())
    bom.chmod(0o754)
    latin = tmp_path / "latin.py"
    latin.write_bytes(
        b"# -*- coding: latin-1 -*-\n# caf\xe9\nimport torch\n\n\ndef fit(net):\n"
        b"    net.train()\n    return net\n"
    )
    result = run_cli(["patch-trainer", "bom.py", "latin.py"], cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert (
        bom.read_bytes() == codecs.BOM_UTF8 + (case_file("trainer_run_epoch", "out")).read_bytes()
    )
    assert stat.S_IMODE(bom.stat().st_mode) == 0o754
    data = latin.read_bytes()
    assert data.startswith(b"# -*- coding: latin-1 -*-\n# caf\xe9\nimport torch\n")
    assert b"    net.train()\n    keep_backbone_bn_eval(net)\n    return net\n" in data


def test_no_optimizer_exits_2_and_writes_nothing(tmp_path):
    bad = tmp_path / "no_optimizer.py"
    shutil.copyfile(PT / "errors" / "no_optimizer.py", bad)
    good = _copy_case("script_module_level", tmp_path)
    before = {p.name: p.read_bytes() for p in (bad, good)}
    result = run_cli(["patch-trainer", bad.name, good.name], cwd=tmp_path)
    assert result.exit_code == 2
    assert (
        "no_optimizer.py: neither an optimizer construction nor a model.train() call found"
        in result.stderr
    )
    assert "--optimizer-call NAME" in result.stderr and "--insert-before-line N" in result.stderr
    assert "Traceback" not in result.output
    assert {p.name: p.read_bytes() for p in (bad, good)} == before

    result = run_cli(["patch-trainer", "--kind", "script", "no_optimizer.py"], cwd=tmp_path)
    assert result.exit_code == 2
    assert "no optimizer construction found (searched for torch.optim.<Name>(...)" in result.stderr


def test_kind_forces_one_side(tmp_path):
    target = _copy_case("script_module_level", tmp_path)
    result = run_cli(
        ["patch-trainer", "--kind", "trainer", target.name, "--format", "json"], cwd=tmp_path
    )
    assert result.exit_code == 0, result.output
    changes = {
        (c["rule"], c["line"]) for r in json.loads(result.stdout)["results"] for c in r["changes"]
    }
    assert changes == {("BN2GN202", 6), ("BN2GN203", 12)}
    assert "freeze_backbone_bn(model)" not in target.read_text()
    assert "def freeze_backbone_bn" not in target.read_text()

    trainer = _copy_case("trainer_run_epoch", tmp_path)
    result = run_cli(["patch-trainer", "--kind", "script", trainer.name], cwd=tmp_path)
    assert result.exit_code == 2 and "no optimizer construction found" in result.stderr


UNUSUAL = """import torch

REGISTRY = {"adam": torch.optim.Adam}


def setup(model, params, lr):
    opt = make_opt(model.parameters(), lr)
    other = torch.optim.SGD(params, lr=lr)
    third = REGISTRY["adam"](model.parameters(), lr=lr)
    return opt, other, third
"""


def test_optimizer_call_model_var_and_insert_before_line(tmp_path):
    target = tmp_path / "setup.py"
    target.write_text(UNUSUAL)
    result = run_cli(["patch-trainer", "setup.py"], cwd=tmp_path)
    assert result.exit_code == 2
    assert (
        "setup.py:8: cannot tell which model the optimizer built here (in setup) trains; "
        "name it with --model-var NAME" in result.stderr
    )
    assert target.read_text() == UNUSUAL

    result = run_cli(
        ["patch-trainer", "setup.py", "--model-var", "model", "--optimizer-call", "make_opt"],
        cwd=tmp_path,
    )
    assert result.exit_code == 0, result.output
    body = target.read_text().split("def setup(model, params, lr):\n")[1]
    assert body.startswith(
        "    frozen_count = freeze_backbone_bn(model)\n"
        '    print(f"Frozen backbone BatchNorm modules: {frozen_count}")\n'
        "    opt = make_opt(model.parameters(), lr)\n"
        "    other = torch.optim.SGD(params, lr=lr)\n"
    )
    assert body.count("freeze_backbone_bn") == 1  # the second optimizer is already covered


def test_insert_before_line(tmp_path):
    target = tmp_path / "setup.py"
    target.write_text(UNUSUAL.replace("    other = torch.optim.SGD(params, lr=lr)\n", ""))
    result = run_cli(["patch-trainer", "setup.py", "--insert-before-line", "8"], cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert (
        "    frozen_count = freeze_backbone_bn(model)\n"
        '    print(f"Frozen backbone BatchNorm modules: {frozen_count}")\n'
        '    third = REGISTRY["adam"](model.parameters(), lr=lr)\n' in target.read_text()
    )

    patched = target.read_text()
    for args in (
        ["--insert-before-line", "8"],
        [],
    ):  # a second run, with or without the flag, is a no-op
        result = run_cli(["patch-trainer", "setup.py", *args], cwd=tmp_path)
        assert result.exit_code == 0 and "0 changed" in result.output, result.output
        assert target.read_text() == patched

    target.write_text(UNUSUAL)
    result = run_cli(["patch-trainer", "setup.py", "--insert-before-line", "5"], cwd=tmp_path)
    assert result.exit_code == 2 and "setup.py:5: no statement starts on this line" in result.stderr
    other = _copy_case("script_module_level", tmp_path)
    result = run_cli(
        ["patch-trainer", "setup.py", other.name, "--insert-before-line", "8"], cwd=tmp_path
    )
    assert result.exit_code == 2 and "applies to one file" in result.stderr


def test_check_and_diff_write_nothing(tmp_path):
    target = _copy_case("trainer_run_epoch", tmp_path)
    before = target.read_bytes()
    result = _patch(target, "--check")
    assert result.exit_code == 1
    assert "1 would change" in result.output
    result = _patch(target, "--diff")
    assert result.exit_code == 0
    assert target.read_bytes() == before
    assert "+      keep_backbone_bn_eval(model_with_loss)\n" in result.stdout
    assert (
        '+def keep_backbone_bn_eval(model, backbone_attrs=("backbone", "base_layer")):\n'
        in result.stdout
    )
    assert _patch(target, "--diff", "--check").exit_code == 2
    assert _patch(target).exit_code == 0
    assert _patch(target, "--check").exit_code == 0


def test_select_skip_and_list_rules(tmp_path):
    target = _copy_case("trainer_run_epoch", tmp_path)
    result = _patch(target, "--skip", "BN2GN202")
    assert result.exit_code == 0
    text = target.read_text()
    assert (
        "keep_backbone_bn_eval(model_with_loss)" in text and "def keep_backbone_bn_eval" not in text
    )
    assert "without defining or importing it (BN2GN202 skipped)" in result.output
    result = _patch(target, "--select", "inject-freeze-helper")  # the missing definition comes now
    assert result.exit_code == 0 and "def keep_backbone_bn_eval" in target.read_text()
    assert target.read_bytes() == (case_file("trainer_run_epoch", "out")).read_bytes()

    assert _patch(target, "--select", "BN2GN101").exit_code == 2
    assert _patch(target, "--select", "BN2GN999").exit_code == 2
    listed = run_cli(["patch-trainer", "--list-rules"]).output.splitlines()
    assert [line.split()[0] for line in listed] == ["BN2GN201", "BN2GN202", "BN2GN203", "BN2GN204"]
    assert "(opt-in)" in listed[3]


def test_failed_parse_does_not_stop_the_run(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\nprint 'py2'\nmodel.train()\n")
    good = _copy_case("trainer_run_epoch", tmp_path)
    result = run_cli(["patch-trainer", "broken.py", good.name], cwd=tmp_path)
    assert result.exit_code == 1
    assert "broken.py:2:" in result.stderr
    assert broken.read_text() == "import torch\nprint 'py2'\nmodel.train()\n"
    assert good.read_bytes() == (case_file("trainer_run_epoch", "out")).read_bytes()


def test_usage_errors(tmp_path):
    assert run_cli(["patch-trainer"]).exit_code == 2
    assert run_cli(["patch-trainer", "missing.py"], cwd=tmp_path).exit_code == 2
    target = _copy_case("trainer_run_epoch", tmp_path)
    for flag, value in (
        ("--model-var", "model()"),
        ("--helper-module", "a-b"),
        ("--optimizer-call", "x y"),
    ):
        result = _patch(target, flag, value)
        assert result.exit_code == 2 and flag in result.stderr


def test_stale_injected_helpers_are_updated_in_place(tmp_path):
    """The helpers carry another backbone than the decision: they are updated where they stand,
    --check reports the update as pending, and a second run changes nothing."""
    target = tmp_path / "trainer.py"
    shutil.copyfile(case_file("trainer_run_epoch", "out"), target)
    before = target.read_text()
    check = _patch(target, "--backbone-attr", "encoder", "--check")
    assert check.exit_code == 1 and target.read_text() == before
    result = _patch(target, "--backbone-attr", "encoder")
    assert result.exit_code == 0, result.output
    after = target.read_text()
    assert after.count('"backbone", "base_layer", "encoder"') == 3
    assert 'backbone_attrs=("backbone", "base_layer")' not in after
    # exactly what a fresh injection with that backbone writes, in the same place
    fresh = tmp_path / "fresh" / "trainer.py"
    fresh.parent.mkdir()
    shutil.copyfile(case_file("trainer_run_epoch", "in"), fresh)
    assert _patch(fresh, "--backbone-attr", "encoder").exit_code == 0
    assert after == fresh.read_text()
    again = _patch(target, "--backbone-attr", "encoder", "--check")
    assert again.exit_code == 0, again.output


def test_centernet_mini_scripts_and_trainer(tmp_path):
    """The bundled mini CenterNet: both train scripts and the trainer, through the CLI, twice."""
    from conftest import CENTERNET

    files = ["train.py", "train_satmtb.py", "lib/Trainer/base_trainer.py"]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CENTERNET / name, tmp_path / name)
    result = run_cli(["patch-trainer", *files], cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert "3 files scanned, 3 changed, 0 failed" in result.output
    train = (tmp_path / "train.py").read_text()
    assert (
        "    frozen_count = freeze_backbone_bn(model)\n"
        '    print(f"Frozen backbone BatchNorm modules: {frozen_count}")\n'
        "    optimizer = torch.optim.Adam(model.parameters(), opt.lr)\n" in train
    )
    satmtb = (tmp_path / "train_satmtb.py").read_text()
    assert (
        '    logger.info("Frozen backbone BatchNorm modules: %d", frozen_count)\n'
        "    optimizer = optim.SGD(" in satmtb
    )
    trainer = (tmp_path / "lib/Trainer/base_trainer.py").read_text()
    assert (
        "            model_with_loss.train()\n            keep_backbone_bn_eval(model_with_loss)\n"
        in trainer
    )
    assert trainer.count("keep_backbone_bn_eval(") == 2  # the definition and the one call
    for text in (train, satmtb, trainer):
        ast.parse(text)
    again = run_cli(["patch-trainer", "--check", *files], cwd=tmp_path)
    assert again.exit_code == 0 and "0 would change" in again.output


def test_plan_trainer_insertions_for_scan():
    from bn2gn.source.patch_trainer import plan_trainer_insertions

    found = plan_trainer_insertions([PROJECT / "in"])
    summary = {(p["path"].rsplit("/", 1)[1], p["line"], p["rule"], p["scope"]) for p in found}
    assert summary == {
        ("tiny_train.py", 10, "BN2GN202", "<module>"),
        ("tiny_train.py", 38, "BN2GN201", "main"),
        ("tiny_trainer.py", 6, "BN2GN202", "<module>"),
        ("tiny_trainer.py", 34, "BN2GN203", "Trainer.run_epoch"),
    }
    assert plan_trainer_insertions([PROJECT / "out"]) == []


@pytest.mark.parametrize(
    "source, expected",
    [
        ("m.train()", "on"),
        ("m.train(True)", "on"),
        ("m.train(mode=True)", "on"),
        ("m.train(1)", "on"),
        ("m.train(phase == 'train')", "on"),
        ("m.train(mode=flag)", "on"),
        ("m.train(not frozen)", "on"),
        ("m.train(False)", "off"),
        ("m.train(mode=False)", "off"),
        ("m.train(0)", "off"),
        ("m.train(flag)", "unknown"),
        ("trainer.train(epoch, loader)", None),
        ("m.train(x=1)", None),
        ("super().train(mode)", None),
        ("m.eval()", None),
        ("train()", None),
    ],
)
def test_train_mode(source, expected):
    import libcst as cst

    from bn2gn.source.rules.bn2gn203_eval_after_train import train_mode

    assert train_mode(cst.parse_expression(source)) == expected


def test_injected_definitions_are_the_runtime_functions():
    """The golden's injected bodies equal bn2gn.runtime's, up to the _bn2gn_ prefix of the helpers."""
    import inspect

    from bn2gn import runtime

    injected = ast.parse((PROJECT / "out" / "tiny_train.py").read_text().replace("_bn2gn_", ""))
    defs = {node.name: node for node in injected.body if isinstance(node, ast.FunctionDef)}
    assert {"unwrap_model", "backbone_batchnorms", "freeze_backbone_bn"} <= set(defs)
    for name in ("unwrap_model", "backbone_batchnorms", "freeze_backbone_bn"):
        original = ast.parse(inspect.getsource(getattr(runtime, name))).body[0]
        assert [ast.dump(s) for s in defs[name].body] == [ast.dump(s) for s in original.body], name
    for name in ("backbone_batchnorms", "freeze_backbone_bn"):
        assert ast.literal_eval(defs[name].args.defaults[-1]) == ("backbone", "base_layer")
    assert all(ch.isascii() for ch in (PROJECT / "out" / "tiny_train.py").read_text())


def test_importing_runtime_and_cli_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, bn2gn.runtime, bn2gn.cli; "
        "print(sorted(m for m in ('torch', 'libcst') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
