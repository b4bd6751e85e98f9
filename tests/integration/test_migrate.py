"""bn2gn migrate: the whole migration of a repository in one command, never more than the single commands.

The expected file lists and command lines below are written from reading fixtures/centernet_mini:
the two model files with converted sites (DLASeg / PoseResNet heads), the two train scripts that
build an optimizer, the trainer that calls model_with_loss.train(), and opts.py's --load_model
option (default '') and the create_model(opt.arch, opt.heads, opt.head_conv, opt.frames) call.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import CENTERNET, TREES, run_cli, snapshot

CHANGED = [
    "lib/Trainer/base_trainer.py",
    "lib/models/dladcn_gru.py",
    "lib/models/resnet_fpn_dcn.py",
    "train.py",
    "train_satmtb.py",
]
MODEL_ARGV = [
    "--model",
    "lib.models.model:create_model",
    "--model-arg",
    "arch=dla_34",
    "--model-arg",
    "head_conv=48",
    "--model-arg",
    "frames=3",
    "--path",
    ".",
]


def _copy(tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(CENTERNET, tmp_path / name))


def _changed(before: dict, after: dict) -> list:
    assert set(before) == set(after), "migrate created or removed files"
    return sorted(rel for rel in before if before[rel] != after[rel])


def test_write_is_rewrite_then_patch_trainer(tmp_path):
    migrated, single, demo_style = _copy(tmp_path, "a"), _copy(tmp_path, "b"), _copy(tmp_path, "c")
    before = snapshot(migrated)
    result = run_cli(["migrate", "--write"], cwd=migrated)
    assert result.exit_code == 0, result.output
    assert run_cli(["rewrite", "."], cwd=single).exit_code == 0
    assert run_cli(["patch-trainer", "."], cwd=single).exit_code == 0
    assert run_cli(["rewrite", "lib/models"], cwd=demo_style).exit_code == 0
    assert (
        run_cli(
            ["patch-trainer", "train.py", "train_satmtb.py", "lib/Trainer/base_trainer.py"],
            cwd=demo_style,
        ).exit_code
        == 0
    )
    after = snapshot(migrated)
    assert after == snapshot(single) == snapshot(demo_style)
    assert _changed(before, after) == CHANGED
    for rel in ("lib/models/dladcn_gru.py", "lib/models/resnet_fpn_dcn.py"):
        assert after[rel] == (TREES / "centernet_mini" / "out" / rel).read_bytes()


def test_second_run_changes_nothing(tmp_path):
    repo = _copy(tmp_path, "repo")
    assert run_cli(["migrate", "--write"], cwd=repo).exit_code == 0
    once = snapshot(repo)
    again = run_cli(["migrate", "--write"], cwd=repo)
    assert again.exit_code == 0
    assert snapshot(repo) == once
    assert "0 changed, 0 failed" in again.stdout


def test_diff_is_the_default_writes_nothing_and_applies_to_the_written_tree(tmp_path):
    repo, written = _copy(tmp_path, "repo"), _copy(tmp_path, "written")
    before = snapshot(repo)
    result = run_cli(["migrate"], cwd=repo)
    assert result.exit_code == 0
    assert snapshot(repo) == before
    for rel in CHANGED:
        assert f"--- a/{rel}\n+++ b/{rel}\n" in result.stdout
    assert "train scripts (optimizer): train.py, train_satmtb.py" in result.stderr
    assert "bn2gn migrate . --write" in result.stderr
    assert run_cli(["migrate", "--write"], cwd=written).exit_code == 0
    if shutil.which("patch") is None:
        pytest.skip("no patch program to apply the diff with")
    subprocess.run(["patch", "-p1", "-s"], input=result.stdout.encode(), cwd=repo, check=True)
    assert snapshot(repo) == snapshot(written)


def test_check_exit_codes(tmp_path):
    repo = _copy(tmp_path, "repo")
    before = snapshot(repo)
    result = run_cli(["migrate", ".", "--check"], cwd=repo)
    assert result.exit_code == 1
    assert snapshot(repo) == before
    assert "migrate: 15 files scanned, 5 would change, 0 failed" in result.stdout
    assert run_cli(["migrate", "--write", "-q"], cwd=repo).exit_code == 0
    assert run_cli(["migrate", "--check"], cwd=repo).exit_code == 0


def test_json_has_the_whole_plan_and_result(tmp_path):
    repo = _copy(tmp_path, "repo")
    result = run_cli(["migrate", "--format", "json"], cwd=repo)
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["mode"] == "diff" and data["exit_code"] == 0
    assert data["files_scanned"] == 15 and data["files_changed"] == 5 and data["files_failed"] == 0
    assert data["scripts"] == ["train.py", "train_satmtb.py"]
    assert data["trainers"] == ["lib/Trainer/base_trainer.py"]
    assert data["models"] == [
        "lib/models/dla.py",
        "lib/models/dladcn_gru.py",
        "lib/models/resnet.py",
        "lib/models/resnet_fpn_dcn.py",
    ]
    assert data["plan"]["summary"] == {"convert": 11, "keep": 15, "unsure": 0}
    assert sorted(r["path"] for r in data["results"]) == CHANGED
    assert all(r["diff"].startswith(f"--- a/{r['path']}") for r in data["results"])
    assert {(i["path"], i["rule"]) for i in data["plan"]["insertions"]} == {
        ("lib/Trainer/base_trainer.py", "BN2GN202"),
        ("lib/Trainer/base_trainer.py", "BN2GN203"),
        ("train.py", "BN2GN202"),
        ("train.py", "BN2GN201"),
        ("train_satmtb.py", "BN2GN202"),
        ("train_satmtb.py", "BN2GN201"),
    }
    steps = data["next_steps"]
    assert [c["argv"] for c in steps["remap_ckpt"]] == [
        ["bn2gn", "remap-ckpt", "CHECKPOINT", *MODEL_ARGV, "--strict"]
    ]
    assert steps["verify"][0]["argv"] == [
        "bn2gn",
        "verify",
        *MODEL_ARGV,
        "--freeze-from",
        "train.py",
        "--freeze-from",
        "lib/Trainer/base_trainer.py",
    ]
    assert len(steps["verify"]) == 1
    assert snapshot(repo) == snapshot(CENTERNET)


def test_repo_given_from_outside(tmp_path):
    repo = _copy(tmp_path, "repo")
    result = run_cli(["migrate", "repo", "--write", "--format", "json"], cwd=tmp_path)
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert sorted(r["path"] for r in data["results"]) == [f"repo/{rel}" for rel in CHANGED]
    assert data["next_steps"]["cwd"] == "repo"
    assert data["next_steps"]["verify"][0]["argv"][-4:] == [
        "--freeze-from",
        "train.py",
        "--freeze-from",
        "lib/Trainer/base_trainer.py",
    ]
    assert b"freeze_backbone_bn(model)" in (repo / "train.py").read_bytes()


def test_file_both_commands_change(tmp_path):
    """A train script that also defines the model: rewritten first, then patched, like the two commands."""
    source = textwrap.dedent("""\
        import torch
        import torch.nn as nn


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
                self.head = nn.Sequential(nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8))


        def main():
            model = Net()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            model.train()
            return optimizer
        """)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "train_all.py").write_text(source)
    assert run_cli(["migrate", "--write"], cwd=tmp_path / "a").exit_code == 0
    assert run_cli(["rewrite", "."], cwd=tmp_path / "b").exit_code == 0
    assert run_cli(["patch-trainer", "."], cwd=tmp_path / "b").exit_code == 0
    text = (tmp_path / "a" / "train_all.py").read_text()
    assert text == (tmp_path / "b" / "train_all.py").read_text()
    assert "nn.Sequential(nn.Conv2d(8, 8, 3), get_group_norm(8))" in text
    assert "nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))" in text
    assert "    frozen_count = freeze_backbone_bn(model)\n" in text
    assert "    model.train()\n    keep_backbone_bn_eval(model)\n" in text


def test_skipped_folders_are_left_alone(tmp_path):
    repo = _copy(tmp_path, "repo")
    for folder in (".venv/lib", "build/lib", "node_modules/x"):
        (repo / folder).mkdir(parents=True)
        shutil.copy(repo / "train.py", repo / folder / "train.py")
        shutil.copy(repo / "lib/models/dladcn_gru.py", repo / folder / "dladcn_gru.py")
    before = snapshot(repo)
    assert run_cli(["migrate", "--write"], cwd=repo).exit_code == 0
    assert _changed(before, snapshot(repo)) == CHANGED


def test_unparsable_file_is_reported_and_kept(tmp_path):
    repo = _copy(tmp_path, "repo")
    broken = b"import torch.nn as nn\nx = nn.BatchNorm2d(3\n"
    (repo / "lib/models/broken.py").write_bytes(broken)
    result = run_cli(["migrate", "--write"], cwd=repo)
    assert result.exit_code == 1
    assert "lib/models/broken.py:2" in result.stderr
    assert (repo / "lib/models/broken.py").read_bytes() == broken
    assert b"get_group_norm" in (repo / "lib/models/dladcn_gru.py").read_bytes()


def test_file_needing_a_model_var_fails_alone(tmp_path):
    """One file whose optimizer bn2gn cannot attribute to a model is a failed file (exit 1): the rest
    of the repository is migrated, and the message names the patch-trainer line that settles it."""
    repo = _copy(tmp_path, "repo")
    (repo / "tools").mkdir()
    finetune = b"import torch\n\n\ndef run(params):\n    return torch.optim.SGD(params, lr=0.1)\n"
    (repo / "tools/finetune.py").write_bytes(finetune)
    before = snapshot(repo)
    result = run_cli(["migrate", "--write"], cwd=repo)
    assert result.exit_code == 1
    assert (
        "error: tools/finetune.py:5: cannot tell which model the optimizer built here (in run) "
        "trains; file left unchanged: patch it on its own with bn2gn patch-trainer "
        "tools/finetune.py --model-var NAME (migrate then finds it done), or --exclude it"
    ) in result.stderr
    assert (repo / "tools/finetune.py").read_bytes() == finetune
    assert _changed(before, snapshot(repo)) == CHANGED
    # the way out the message gives: that file on its own, then migrate
    assert (
        run_cli(["patch-trainer", "tools/finetune.py", "--model-var", "params"], cwd=repo).exit_code
        == 0
    )
    assert run_cli(["migrate", "--write"], cwd=repo).exit_code == 0
    assert _changed(before, snapshot(repo)) == sorted(CHANGED + ["tools/finetune.py"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["migrate", "train.py"], "train.py: not a folder"),
        (["migrate", "missing"], "missing: not a folder"),
        (["migrate", "--diff", "--write"], "--diff, --write and --check exclude each other"),
        (["migrate", "--helper-module", "a b"], "--helper-module 'a b'"),
        (
            ["migrate", "--model-var", "model"],
            "--model-var",
        ),  # per file: patch-trainer FILE --model-var
    ],
)
def test_bad_invocation_is_exit_2(tmp_path, args, message):
    repo = _copy(tmp_path, "repo")
    result = run_cli(args, cwd=repo)
    assert snapshot(repo) == snapshot(CENTERNET)
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output


def test_file_changed_while_working_is_not_overwritten(tmp_path):
    from bn2gn import api as engine

    path = tmp_path / "model.py"
    path.write_text("x = 1\n")
    source = engine.source_from_bytes(path, path.read_bytes())
    result = engine.FileResult(path=path, status="changed", source=source, new_text="x = 2\n")
    path.write_text("x = 3\n")
    results = [result]
    assert engine.apply(results, engine.WRITE, None) == 1
    assert result.status == "changed"  # results are immutable: the failure replaces it in the list
    assert results[0].status == "failed" and "changed on disk" in results[0].error
    assert results[0].failure.path == str(path) and results[0].failure.line == 1
    assert path.read_text() == "x = 3\n"


@pytest.mark.parametrize(
    "codes, command",
    [
        (["BN2GN101", "BN2GN102", "BN2GN103"], ["rewrite", "."]),
        (["BN2GN201", "BN2GN202", "BN2GN203"], ["patch-trainer", "."]),
    ],
)
def test_select_one_command_s_rules(tmp_path, codes, command):
    migrated, single = _copy(tmp_path, "a"), _copy(tmp_path, "b")
    selected = [a for code in codes for a in ("--select", code)]
    assert run_cli(["migrate", "--write", *selected], cwd=migrated).exit_code == 0
    assert run_cli(command, cwd=single).exit_code == 0
    assert snapshot(migrated) == snapshot(single)


def test_strict_fails_on_unsure_sites(tmp_path):
    """partial(nn.BatchNorm2d) in a head is 'unsure' (never rewritten blindly): --strict makes that exit 1."""
    (tmp_path / "net.py").write_text(
        textwrap.dedent("""\
        import functools

        import torch.nn as nn

        Norm = functools.partial(nn.BatchNorm2d, momentum=0.01)


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
                self.head = nn.Sequential(nn.Conv2d(8, 8, 3), Norm(8))
        """)
    )
    plain = run_cli(["migrate", "--format", "json"], cwd=tmp_path)
    assert plain.exit_code == 0
    assert json.loads(plain.stdout)["plan"]["summary"]["unsure"] == 1
    strict = run_cli(["migrate", "--strict"], cwd=tmp_path)
    assert strict.exit_code == 1
    assert "1 unsure site(s) and --strict was given" in strict.stderr


def test_printed_remap_and_verify_lines_run(tmp_path):
    """The printed lines, with only the remap placeholder filled in, work on the migrated fixture;
    the verify line runs as printed (its input, 9 channels for 3 frames, is inferred)."""
    original, repo = _copy(tmp_path, "original"), _copy(tmp_path, "repo")
    build = (
        "import torch; from lib.models.model import create_model; "
        "torch.save({'epoch': 1, 'state_dict': create_model('dla_34', head_conv=48, frames=3).state_dict()}, "
        "'../pretrained.pth')"
    )
    subprocess.run([sys.executable, "-c", build], cwd=original, check=True, timeout=300)
    result = run_cli(["migrate", "--write", "--format", "json"], cwd=repo)
    steps = json.loads(result.stdout)["next_steps"]
    remap = [a.replace("CHECKPOINT", "../pretrained.pth") for a in steps["remap_ckpt"][0]["argv"]]
    done = run_cli(remap[1:], cwd=repo)
    assert done.exit_code == 0, done.output
    assert "ok (strict load clean)" in done.stdout
    verify = steps["verify"][0]["argv"]
    assert steps["verify"][0]["runnable"]
    done = run_cli(
        [*verify[1:], "--checkpoint", "../pretrained.bn2gn.pth", "--steps", "2", "--device", "cpu"],
        cwd=repo,
    )
    assert done.exit_code == 0, done.output
