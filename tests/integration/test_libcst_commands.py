"""bn2gn's rules from LibCST's own runner (``python -m libcst.tool codemod``): byte for byte bn2gn's output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CENTERNET, ROOT, run_cli, snapshot


def _copy(tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(CENTERNET, tmp_path / name))


def _codemod(repo: Path, command: str, *args, external: bool = True, jobs: str = "1"):
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    # the command first: libcst.tool's first pass takes the first word it does not know as the command
    argv = [
        sys.executable,
        "-m",
        "libcst.tool",
        "codemod",
        *(["-x"] if external else []),
        command,
        ".",
        "--no-format",
        "--hide-progress",
        "-j",
        jobs,
        *args,
    ]
    return subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=300)


def _changed(tree: dict) -> list:
    before = snapshot(CENTERNET)
    return sorted(rel for rel in tree if tree[rel] != before.get(rel))


def test_rewrite_command_equals_bn2gn_rewrite(tmp_path):
    by_libcst, by_bn2gn = _copy(tmp_path, "a"), _copy(tmp_path, "b")
    done = _codemod(by_libcst, "bn2gn.libcst_commands.Rewrite", jobs="2")
    assert done.returncode == 0, done.stderr
    assert run_cli(["rewrite", "."], cwd=by_bn2gn).exit_code == 0
    assert snapshot(by_libcst) == snapshot(by_bn2gn)
    assert _changed(snapshot(by_libcst)) == [
        "lib/models/dladcn_gru.py",
        "lib/models/resnet_fpn_dcn.py",
    ]
    again = _codemod(by_libcst, "bn2gn.libcst_commands.Rewrite")
    assert again.returncode == 0 and snapshot(by_libcst) == snapshot(by_bn2gn)


def test_found_through_the_modules_list_of_the_codemod_config(tmp_path):
    """Without -x, libcst.tool imports ``<module>.<command module>`` for each configured module."""
    by_libcst, by_bn2gn = _copy(tmp_path, "a"), _copy(tmp_path, "b")
    config = "modules:\n  - 'libcst.codemod.commands'\n  - 'bn2gn'\n"
    for repo in (by_libcst, by_bn2gn):
        (repo / ".libcst.codemod.yaml").write_text(config)
    done = _codemod(by_libcst, "libcst_commands.Rewrite", external=False)
    assert done.returncode == 0, done.stderr
    assert run_cli(["rewrite", "."], cwd=by_bn2gn).exit_code == 0
    assert snapshot(by_libcst) == snapshot(by_bn2gn)


@pytest.mark.parametrize(
    "command, code",
    [
        ("ReplaceBatchNorm", "BN2GN101"),
        ("InitLoops", "BN2GN103"),
        ("InjectGroupNormHelper", "BN2GN102"),
    ],
)
def test_one_command_per_rewrite_rule(tmp_path, command, code):
    by_libcst, by_bn2gn = _copy(tmp_path, "a"), _copy(tmp_path, "b")
    done = _codemod(by_libcst, f"bn2gn.libcst_commands.{command}")
    assert done.returncode == 0, done.stderr
    result = run_cli(["rewrite", ".", "--select", code], cwd=by_bn2gn)
    assert result.exit_code == 0, result.output
    assert snapshot(by_libcst) == snapshot(by_bn2gn)
    if code == "BN2GN101":
        assert _changed(snapshot(by_libcst)) == [
            "lib/models/dladcn_gru.py",
            "lib/models/resnet_fpn_dcn.py",
        ]


@pytest.mark.parametrize(
    "command, select",
    [
        ("PatchTrainer", ()),
        ("FreezeBeforeOptimizer", ("BN2GN201",)),
        ("EvalAfterTrain", ("BN2GN203",)),
    ],
)
def test_patch_trainer_commands_equal_bn2gn_patch_trainer(tmp_path, command, select):
    by_libcst, by_bn2gn = _copy(tmp_path, "a"), _copy(tmp_path, "b")
    done = _codemod(by_libcst, f"bn2gn.libcst_commands.{command}")
    assert done.returncode == 0, done.stderr
    args = [a for code in select for a in ("--select", code)]
    assert run_cli(["patch-trainer", ".", *args], cwd=by_bn2gn).exit_code == 0
    assert snapshot(by_libcst) == snapshot(by_bn2gn)
    if not select:
        assert _changed(snapshot(by_libcst)) == [
            "lib/Trainer/base_trainer.py",
            "train.py",
            "train_satmtb.py",
        ]
        again = _codemod(by_libcst, "bn2gn.libcst_commands.PatchTrainer")
        assert again.returncode == 0 and snapshot(by_libcst) == snapshot(by_bn2gn)


def test_plan_file_argument(tmp_path):
    by_libcst, by_bn2gn = _copy(tmp_path, "a"), _copy(tmp_path, "b")
    plan = tmp_path / "plan.json"
    assert run_cli(["scan", ".", "--keep", "DeConvGRUNet", "-o", plan], cwd=by_bn2gn).exit_code == 0
    done = _codemod(by_libcst, "bn2gn.libcst_commands.Rewrite", "--plan", str(plan))
    assert done.returncode == 0, done.stderr
    assert run_cli(["rewrite", ".", "--plan", plan], cwd=by_bn2gn).exit_code == 0
    assert snapshot(by_libcst) == snapshot(by_bn2gn)
    assert b"self.proj0 = nn.Sequential(" in (by_libcst / "lib/models/dladcn_gru.py").read_bytes()


def test_analysis_options_are_arguments(tmp_path):
    by_libcst, by_bn2gn = _copy(tmp_path, "a"), _copy(tmp_path, "b")
    done = _codemod(
        by_libcst, "bn2gn.libcst_commands.Rewrite", "--keep", "MaskProp", "--scan", "lib/models"
    )
    assert done.returncode == 0, done.stderr
    assert run_cli(["rewrite", "lib/models", "--keep", "MaskProp"], cwd=by_bn2gn).exit_code == 0
    assert snapshot(by_libcst) == snapshot(by_bn2gn)
    assert snapshot(by_libcst) != snapshot(CENTERNET)


def test_bad_option_is_one_line_exit_2(tmp_path):
    repo = _copy(tmp_path, "a")
    done = _codemod(repo, "bn2gn.libcst_commands.Rewrite", "--plan", "missing.json")
    assert done.returncode == 2
    assert (
        "bn2gn: error: missing.json: no such plan file" in done.stderr
        and "Traceback" not in done.stderr
    )
    assert snapshot(repo) == snapshot(CENTERNET)
