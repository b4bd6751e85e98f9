"""`bn2gn verify` on the toy models of fixtures/verify, and the runtime checks on hand-made records.

toy_models.TinyDetector: backbone with 2 BatchNorm2d (backbone.bn1, backbone.bn2); a neck GroupNorm
(C=8 -> 8 groups) and one GroupNorm per head (C=12 -> 12 groups, hm and wh): 3 GroupNorm.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import FIXTURES, run_cli

from bn2gn.verify.checks import frozen_checks, groupnorm_trained_check, loss_checks, unchanged_check
from bn2gn.verify.run import generic_loss, parse_input_shape

TOYS = FIXTURES / "verify"
TOY = ["--path", TOYS, "--device", "cpu"]


def _verify(*args):
    result = run_cli(["verify", *TOY, *args, "--format", "json"])
    report = json.loads(result.stdout) if result.stdout.strip() else None
    checks = {c["name"]: c for c in report["sections"][0]["checks"]} if report else {}
    return result, report, checks


def test_verify_tiny_detector_passes():
    result, report, checks = _verify(
        "--model", "toy_models:tiny_detector", "--input-shape", "1,3,16,16", "--steps", "3"
    )
    assert result.exit_code == 0, result.output
    assert report["ok"] is True
    assert all(c["passed"] for c in checks.values())
    assert (
        checks["frozen-eval"]["value"]
        == "0 of 2 backbone BatchNorm in training mode, at each of 3 steps"
    )
    assert [(g["channels"], g["groups"]) for g in checks["groupnorm"]["data"]["groupnorm"]] == [
        (8, 8),
        (12, 12),
        (12, 12),
    ]
    assert checks["groupnorm-trained"]["value"].startswith("3 of 3 GroupNorm layers changed")
    assert checks["backbone-statistics"]["value"].startswith(
        "6 running_mean/running_var/num_batches_tracked"
    )
    # A freshly built model: both backbone BatchNorm are untrained, each gets a warning.
    assert sorted(
        c["data"]["layer"]
        for c in report["sections"][0]["checks"]
        if c["name"] == "untrained-statistics"
    ) == ["backbone.bn1", "backbone.bn2"]
    assert "bn2gn.runtime" in checks["freeze-logic"]["value"]


def test_verify_nested_dict_and_list_outputs():
    result, report, checks = _verify(
        "--model", "toy_models:nested_output_net", "--input-shape", "1,3,16,16", "--steps", "2"
    )
    assert result.exit_code == 0, result.output
    assert checks["loss-finite"]["value"] == "2 of 2 steps finite"
    assert checks["loss-decreases"]["passed"]


def test_verify_two_input_model():
    result, report, checks = _verify(
        "--model",
        "toy_models:two_input_net",
        "--input-shape",
        "1,3,16,16",
        "--input-shape",
        "1,3,8,8",
        "--steps",
        "2",
    )
    assert result.exit_code == 0, result.output
    assert report["sections"][0]["title"].endswith("input 1,3,16,16 1,3,8,8")
    assert checks["groupnorm"]["value"].startswith("2 GroupNorm")


def test_verify_two_input_model_with_one_shape_is_a_usage_error():
    result = run_cli(
        ["verify", *TOY, "--model", "toy_models:two_input_net", "--input-shape", "1,3,16,16"]
    )
    assert result.exit_code == 2
    assert "forward(--input-shape 1,3,16,16) raised TypeError" in result.stderr
    assert "Traceback" not in result.output


def test_verify_unconverted_model_fails_the_norm_check():
    result, report, checks = _verify(
        "--model",
        "toy_models:tiny_detector",
        "--model-arg",
        "converted=False",
        "--input-shape",
        "1,3,16,16",
        "--steps",
        "2",
    )
    assert result.exit_code == 1
    assert checks["batchnorm-outside-backbone"]["value"] == "3 outside the backbone"
    assert not checks["batchnorm-outside-backbone"]["passed"] and not checks["groupnorm"]["passed"]
    assert "bn2gn rewrite" in checks["batchnorm-outside-backbone"]["message"]


def test_verify_freeze_from_patched_script(tmp_path):
    """patch-trainer's injected freeze, taken from the user's patched script, passes every check."""
    shutil.copy(TOYS / "train_toy.py", tmp_path / "train_toy.py")
    assert run_cli(["patch-trainer", tmp_path / "train_toy.py"]).exit_code == 0
    result, report, checks = _verify(
        "--model",
        "toy_models:tiny_detector",
        "--input-shape",
        "1,3,16,16",
        "--steps",
        "2",
        "--freeze-from",
        tmp_path / "train_toy.py",
    )
    assert result.exit_code == 0, result.output
    assert checks["freeze-logic"]["data"]["sources"] == {
        "freeze_backbone_bn": str(tmp_path / "train_toy.py"),
        "keep_backbone_bn_eval": str(tmp_path / "train_toy.py"),
    }


def test_verify_converted_centernet_fixture_with_its_patched_files(tmp_path):
    """The user's flow on the fixture repo: rewrite, patch-trainer, then verify with the injected freeze.

    The freeze comes from train.py, the keep-eval from the trainer module (which has relative
    imports, so it cannot be imported on its own). res_18: 20 backbone BatchNorm, 14 GroupNorm.
    """
    repo = tmp_path / "repo"
    shutil.copytree(FIXTURES / "centernet_mini", repo)
    assert run_cli(["rewrite", "lib/models"], cwd=repo).exit_code == 0
    trainer = ["train.py", "lib/Trainer/base_trainer.py"]
    assert run_cli(["patch-trainer", *trainer], cwd=repo).exit_code == 0
    result = run_cli(
        [
            "verify",
            "--model",
            "lib.models.model:create_model",
            "--model-arg",
            "arch=res_18",
            "--model-arg",
            "heads={'hm': 1, 'wh': 2, 'reg': 2}",
            "--path",
            ".",
            "--device",
            "cpu",
            "--input-shape",
            "1,9,32,32",
            "--steps",
            "2",
            "--freeze-from",
            trainer[0],
            "--freeze-from",
            trainer[1],
            "--format",
            "json",
        ],
        cwd=repo,
    )
    assert result.exit_code == 0, result.output
    checks = {c["name"]: c for c in json.loads(result.stdout)["sections"][0]["checks"]}
    assert checks["freeze-logic"]["data"]["sources"] == {
        "freeze_backbone_bn": trainer[0],
        "keep_backbone_bn_eval": trainer[1],
    }
    assert (
        checks["frozen-eval"]["value"]
        == "0 of 20 backbone BatchNorm in training mode, at each of 2 steps"
    )
    assert len(checks["groupnorm"]["data"]["groupnorm"]) == 14
    # The trainer alone holds keep_backbone_bn_eval but no freeze: a usage error, not a silent pass.
    result = run_cli(
        [
            "verify",
            "--model",
            "lib.models.model:create_model",
            "--path",
            ".",
            "--input-shape",
            "1,9,32,32",
            "--freeze-from",
            trainer[1],
        ],
        cwd=repo,
    )
    assert (
        result.exit_code == 2 and "neither defines nor imports freeze_backbone_bn" in result.stderr
    )


def test_verify_freeze_without_keep_eval_fails_frozen_eval():
    """A freeze without the eval re-assertion: model.train() before each step puts the backbone
    BatchNorm back in training mode."""
    result, report, checks = _verify(
        "--model",
        "toy_models:tiny_detector",
        "--input-shape",
        "1,3,16,16",
        "--steps",
        "2",
        "--freeze-from",
        TOYS / "freeze_only.py",
    )
    assert result.exit_code == 1
    assert "frozen-eval" in result.stderr
    assert checks["frozen-eval"]["value"].startswith(
        "2 of 2 steps had backbone BatchNorm in training mode"
    )
    assert checks["frozen-requires-grad"]["passed"]  # the freeze itself ran
    assert not checks["backbone-statistics"]["passed"]
    assert "not found" in checks["freeze-logic"]["value"]


def test_verify_freeze_from_file_without_freeze_is_a_usage_error():
    result = run_cli(
        [
            "verify",
            *TOY,
            "--model",
            "toy_models:tiny_detector",
            "--input-shape",
            "1,3,16,16",
            "--freeze-from",
            TOYS / "train_toy.py",
        ]
    )
    assert result.exit_code == 2
    assert "neither defines nor imports freeze_backbone_bn" in result.stderr


def test_verify_checkpoint_with_trained_statistics(tmp_path):
    """A DataParallel-style checkpoint with trained backbone statistics: loaded intact, no untrained warning."""
    import sys

    sys.path.insert(0, str(TOYS))
    try:
        import toy_models
    finally:
        sys.path.remove(str(TOYS))
    torch.manual_seed(0)
    model = toy_models.tiny_detector()
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 16, 16))
    torch.save(
        {"epoch": 3, "state_dict": {"module." + k: v for k, v in model.state_dict().items()}},
        tmp_path / "ckpt.pth",
    )
    result, report, checks = _verify(
        "--model",
        "toy_models:tiny_detector",
        "--input-shape",
        "1,3,16,16",
        "--steps",
        "2",
        "--checkpoint",
        tmp_path / "ckpt.pth",
    )
    assert result.exit_code == 0, result.output
    assert checks["checkpoint-loaded"]["passed"]
    assert checks["checkpoint-loaded"]["data"]["missing"] == []
    assert "untrained-statistics" not in checks


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--model", "toy_models", "--input-shape", "1,3,16,16"], "expected MODULE:FACTORY"),
        (
            ["--model", "toy_models:tiny_detector", "--input-shape", "1,3,x"],
            "--input-shape '1,3,x'",
        ),
        (
            [
                "--model",
                "toy_models:tiny_detector",
                "--input-shape",
                "1,3,16,16",
                "--device",
                "tpu",
            ],
            "--device 'tpu'",
        ),
    ],
)
def test_verify_usage_errors(args, expected):
    result = run_cli(["verify", "--path", TOYS, *args])
    assert result.exit_code == 2
    assert expected in result.stderr


def test_generic_loss_walks_nested_outputs():
    a = torch.full((2,), 2.0, requires_grad=True)
    b = torch.zeros(3, requires_grad=True)
    c = torch.full((1,), 4.0, requires_grad=True)
    output = [{"a": a, "more": [b, (c,)]}, {"count": torch.tensor([7])}]
    loss = generic_loss(output)
    assert loss.item() == pytest.approx(2.0)  # (2 + 0 + 4) / 3; the integer tensor is left out
    loss.backward()
    assert c.grad.item() == pytest.approx(1 / 3)


def test_parse_input_shape():
    assert parse_input_shape("1,3,512,512") == (1, 3, 512, 512)


# --- the checks on hand-made records: each can fail, and says where -------------------------
def _step(n, training=(), grad=(), loss=1.0):
    return {
        "step": n,
        "bn_training": list(training),
        "bn_requires_grad": list(grad),
        "loss": loss,
        "time_s": 0.1,
    }


def test_frozen_checks_name_the_first_bad_step():
    record = {
        "census": {"batchnorm_backbone": ["backbone.bn1", "backbone.bn2"]},
        "steps": [_step(1), _step(2, training=["backbone.bn2"]), _step(3)],
    }
    eval_check, grad_check = frozen_checks(record)
    assert eval_check.status == "fail"
    assert eval_check.value == (
        "1 of 3 steps had backbone BatchNorm in training mode; step 2: 1 of 2 (backbone.bn2)"
    )
    assert grad_check.status == "pass"


def test_frozen_checks_fail_without_backbone_batchnorm():
    record = {
        "census": {"batchnorm_backbone": []},
        "backbone_attrs": ["trunk"],
        "steps": [_step(1)],
    }
    assert all(c.status == "fail" and "trunk" in c.value for c in frozen_checks(record))


def test_loss_checks():
    finite, decreases = loss_checks([_step(1, loss=2.0), _step(2, loss=1.5)])
    assert (
        finite.status == decreases.status == "pass"
        and decreases.value == "2.0000 -> 1.5000 (-25.0%)"
    )
    finite, decreases = loss_checks([_step(1, loss=2.0), _step(2, loss="nan")])
    assert finite.status == "fail" and "[2]" in finite.message and decreases.status == "fail"
    assert loss_checks([_step(1, loss=1.0), _step(2, loss=1.0)])[1].status == "fail"


def test_unchanged_and_groupnorm_checks():
    diff = {
        "count": 6,
        "changed": ["b.bn1.running_var"],
        "max_abs_change": 0.5,
        "max_change_at": "b.bn1.running_var",
    }
    assert unchanged_check("backbone-statistics", diff, "tensors").status == "fail"
    change = {
        "layers": 2,
        "changed": ["h.0"],
        "unchanged": ["h.1"],
        "no_grad": [],
        "max_abs_change": 0.1,
    }
    check = groupnorm_trained_check(change)
    assert check.status == "fail" and "h.1" in check.message
