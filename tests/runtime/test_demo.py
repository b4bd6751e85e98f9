"""`bn2gn demo` end to end on CPU, read through its JSON report.

The expected numbers are counted by hand from fixtures/centernet_mini/lib/models/resnet_fpn_dcn.py
(PoseResNet, res_18): outside the backbone, 3 deconv stages x 2 BatchNorm + MaskProp.bn + the
ConvGRU net's proj0/proj_hm/motion/fuse + 3 heads = 14; in the backbone, the base_layer stem (1)
+ layer1 (2 blocks x 2) + layer2..4 (3 x (2 blocks x 2 + downsample)) = 20. The stem sits at
``base_layer.1`` and forward() never calls it, so its statistics stay untrained.
"""

from __future__ import annotations

import json
import time

from conftest import CENTERNET, run_cli

ALL_CHECKS = {
    "batchnorm-outside-backbone",
    "groupnorm",
    "frozen-eval",
    "frozen-requires-grad",
    "backbone-statistics",
    "backbone-affine",
    "groupnorm-trained",
    "checkpoint-loaded",
    "checkpoint-remap",
    "loss-finite",
    "loss-decreases",
    "untrained-statistics",
    "step-time",
    "peak-memory",
    "contrast-drift",
}


def _report(result) -> dict:
    return json.loads(result.stdout)


def _checks(report: dict, title_start: str) -> dict:
    section = next(s for s in report["sections"] if s["title"].startswith(title_start))
    return {c["name"]: c for c in section["checks"]}


def test_demo_res18_passes_every_check(tmp_path, capsys):
    started = time.perf_counter()
    result = run_cli(
        [
            "demo",
            "--arch",
            "res_18",
            "--steps",
            "4",
            "--device",
            "cpu",
            "--workdir",
            tmp_path / "demo",
            "--format",
            "json",
        ]
    )
    elapsed = time.perf_counter() - started
    with capsys.disabled():
        print(f"\n[demo res_18, 4 steps: {elapsed:.1f}s]")
    assert result.exit_code == 0, result.output
    report = _report(result)
    assert report["ok"] is True and report["device"] == "cpu"
    assert [s["name"] for s in report["steps"]][:3] == ["scan", "rewrite", "patch-trainer"]
    # every step has its own label; the per-architecture ones name the architecture
    assert [(s["label"], s["name"], s["cwd"].rpartition("/")[2]) for s in report["steps"]] == [
        ("1/4", "scan", "converted"),
        ("2/4", "rewrite", "converted"),
        ("3/4", "patch-trainer", "converted"),
        ("4/4", "pretrain", "original"),
        ("res_18 1/3", "remap-ckpt (res_18)", "converted"),
        ("res_18 2/3", "train (res_18, patched)", "converted"),
        ("res_18 3/3", "train (res_18, original)", "original"),
    ]
    assert report["conclusion"].startswith(
        "This run proved, on cpu, that bn2gn migrates the fixture detector "
        "(res_18) the way a user would"
    )
    assert all(step["exit_code"] == 0 for step in report["steps"])
    checks = _checks(report, "res_18")
    assert set(checks) == ALL_CHECKS
    assert all(c["passed"] for s in report["sections"] for c in s["checks"])
    assert checks["batchnorm-outside-backbone"]["value"] == "before 14, after 0"
    assert len(checks["groupnorm"]["data"]["groupnorm"]) == 14
    assert (
        checks["frozen-eval"]["value"]
        == "0 of 20 backbone BatchNorm in training mode, at each of 4 steps"
    )
    assert checks["untrained-statistics"]["status"] == "warn"
    assert checks["untrained-statistics"]["data"] == {"layer": "base_layer.1"}
    assert len(checks["loss-finite"]["data"]["losses"]) == 4
    assert checks["contrast-drift"]["data"]["buffers"]["max_abs_change"] > 0
    # What the demo leaves in --workdir: the migrated copy, the untouched copy, checkpoints, logs.
    workdir = tmp_path / "demo"
    converted, original = workdir / "converted", workdir / "original"
    assert report["workdir"] == str(workdir.resolve()) and report["workdir_kept"] is True
    assert "get_group_norm(" in (converted / "lib/models/resnet_fpn_dcn.py").read_text()
    assert "freeze_backbone_bn(model)" in (converted / "train.py").read_text()
    assert "keep_backbone_bn_eval(" in (converted / "lib/Trainer/base_trainer.py").read_text()
    assert (original / "train.py").read_bytes() == (CENTERNET / "train.py").read_bytes()
    assert (workdir / "checkpoints" / "pretrained_res_18.bn2gn.pth").is_file()
    assert any((workdir / "logs").glob("*scan.log"))


def test_demo_without_trainer_patch_fails_the_frozen_checks(tmp_path):
    result = run_cli(
        [
            "demo",
            "--arch",
            "res_18",
            "--steps",
            "3",
            "--device",
            "cpu",
            "--workdir",
            tmp_path / "demo",
            "--skip-step",
            "patch-trainer",
            "--format",
            "json",
        ]
    )
    assert result.exit_code == 1
    assert "check(s) failed: frozen-eval, frozen-requires-grad" in result.stderr
    report = _report(result)
    assert report["ok"] is False
    assert report["conclusion"].startswith(
        "This run left out patch-trainer on purpose and the checks caught it: "
    )
    skipped = report["sections"][0]["checks"][2]
    assert skipped["status"] == "warn" and skipped["value"].startswith(
        "[3/4] (converted/) bn2gn patch-trainer skipped"
    )
    checks = _checks(report, "res_18")
    for name in ("frozen-eval", "frozen-requires-grad", "backbone-statistics", "backbone-affine"):
        assert checks[name]["passed"] is False, name
    assert checks["frozen-eval"]["value"].startswith(
        "3 of 3 steps had backbone BatchNorm in training mode"
    )
    assert (
        "keep_backbone_bn_eval(model) must follow every .train()"
        in checks["frozen-eval"]["message"]
    )
    assert (
        "freeze_backbone_bn(model) must run before the optimizer"
        in checks["frozen-requires-grad"]["message"]
    )
    # The conversion itself was done, so those checks still pass: the failure is pinned on the freeze.
    assert checks["batchnorm-outside-backbone"]["passed"] and checks["groupnorm-trained"]["passed"]


def test_demo_refuses_a_non_empty_workdir(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = run_cli(["demo", "--workdir", tmp_path])
    assert result.exit_code == 2
    assert f"--workdir {tmp_path} is not empty" in result.stderr and "--force" in result.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine" and len(list(tmp_path.iterdir())) == 1


def test_demo_missing_fixtures_is_a_usage_error(tmp_path):
    result = run_cli(["demo", "--fixtures", tmp_path / "nowhere", "--workdir", tmp_path / "w"])
    assert result.exit_code == 2
    assert "fixture repository not found" in result.stderr and "--fixtures DIR" in result.stderr
    assert "Traceback" not in result.output


def test_demo_rejects_bad_input_size_and_batch_sizes(tmp_path):
    assert run_cli(["demo", "--input-size", "48", "--workdir", tmp_path / "a"]).exit_code == 2
    result = run_cli(
        ["demo", "--compare-norm", "--batch-sizes", "1,x", "--workdir", tmp_path / "b"]
    )
    assert result.exit_code == 2 and "--batch-sizes '1,x'" in result.stderr


# --- the harness on its own: it runs any script as __main__ and records what happened ----------
def _harness(tmp_path, script, *args):
    import subprocess
    import sys

    report = tmp_path / "record.json"
    done = subprocess.run(
        [sys.executable, "-m", "bn2gn.demo.harness", "--report", report, "--", script, *args],
        cwd=script.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    return done, json.loads(report.read_text())


def test_harness_sees_the_unpatched_toy_script_train_its_backbone(tmp_path):
    from conftest import FIXTURES

    done, record = _harness(tmp_path, FIXTURES / "verify" / "train_toy.py")
    assert done.returncode == 0, done.stderr
    assert record["script"]["exit_code"] == 0
    assert [s["step"] for s in record["steps"]] == [1, 2, 3]  # train_toy.main(steps=3)
    assert all(s["bn_training"] == ["backbone.bn1", "backbone.bn2"] for s in record["steps"])
    assert record["census"]["batchnorm_backbone"] == ["backbone.bn1", "backbone.bn2"]
    assert record["backbone_buffers"]["changed"]  # nothing froze it
    assert done.stderr.count("bn2gn-harness: step") == 3


def test_harness_reports_a_failing_script(tmp_path):
    script = tmp_path / "crash.py"
    script.write_text(
        "import sys\nimport torch\n"
        "net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))\n"
        "net.train()\nnet(torch.randn(2, 3, 4, 4)).mean().backward()\n"
        "sys.exit('boom: ' + ' '.join(sys.argv[1:]))\n"
    )
    done, record = _harness(tmp_path, script, "--flag", "x")
    assert done.returncode == 1
    assert record["script"] == {
        "path": str(script),
        "args": ["--flag", "x"],
        "exit_code": 1,
        "error": "boom: --flag x",
    }
    assert len(record["steps"]) == 1 and isinstance(record["steps"][0]["loss"], float)
    assert record["census"]["batchnorm_outside"] == ["1"]
