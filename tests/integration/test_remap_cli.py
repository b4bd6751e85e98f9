"""`bn2gn remap-ckpt` through the real CLI on checkpoints saved from small real models.

The "before" and "after" models differ only in BatchNorm2d vs GroupNorm outside the backbone,
as `bn2gn rewrite` leaves them. Every test checks that its input checkpoint is unchanged.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
import textwrap

import pytest
from conftest import run_cli

torch = pytest.importorskip("torch")

#: these checkpoints come from models whose backbone attribute is `backbone`; no source tree
#: is around them, so the user names it (without it bn2gn refuses to guess)
BY_NAME = ("--backbone-attr", "backbone")

MODELS = textwrap.dedent("""
    import torch.nn as nn


    def norm(channels, group_norm):
        return nn.GroupNorm(2, channels) if group_norm else nn.BatchNorm2d(channels)


    class Backbone(nn.Module):
        def __init__(self, wide=False):
            super().__init__()
            out = 20 if wide else 16
            self.base_layer = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
            self.level1 = nn.Sequential(nn.Conv2d(8, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out),
                                        nn.ReLU())

        def forward(self, x):
            return self.level1(self.base_layer(x))


    class Detector(nn.Module):
        def __init__(self, group_norm=False, wide_backbone=False, extra_head=False):
            super().__init__()
            self.backbone = Backbone(wide_backbone)
            self.neck = nn.Sequential(nn.Conv2d(20 if wide_backbone else 16, 12, 3, padding=1), norm(12, group_norm),
                                      nn.ReLU())
            self.hm = nn.Sequential(nn.Conv2d(12, 6, 3, padding=1), norm(6, group_norm), nn.ReLU(), nn.Conv2d(6, 2, 1))
            if extra_head:
                self.wh = nn.Conv2d(12, 2, 1)

        def forward(self, x):
            return self.hm(self.neck(self.backbone(x)))


    def original(**kwargs):
        return Detector(group_norm=False, **kwargs)


    def converted(**kwargs):
        return Detector(group_norm=True, **kwargs)
""")
CONVERTED_LAYERS = ["neck.1", "hm.1"]
BACKBONE_BN = ["backbone.base_layer.1", "backbone.level1.1"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The model module, importable as ``remap_tiny_models`` (in-process and through --model/--path)."""
    folder = tmp_path_factory.mktemp("models")
    (folder / "remap_tiny_models.py").write_text(MODELS)
    spec = importlib.util.spec_from_file_location(
        "remap_tiny_models", folder / "remap_tiny_models.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["remap_tiny_models"] = module
    spec.loader.exec_module(module)
    module.FOLDER = folder
    yield module
    sys.modules.pop("remap_tiny_models", None)


@pytest.fixture
def inputs():
    """Register input files; after the test each must still have the hash it had when registered."""
    registered = {}

    def register(path):
        registered[path] = hashlib.sha256(path.read_bytes()).hexdigest()
        return path

    yield register
    for path, digest in registered.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{path} was modified"


def trained_original(models):
    """An original model after one SGD step in train mode: running stats and momentum are non-trivial."""
    torch.manual_seed(0)
    model = models.original()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 16, 16)).mean().backward()
    optimizer.step()
    return model, optimizer


def save_centernet(models, path, data_parallel=False):
    model, optimizer = trained_original(models)
    state = model.state_dict()
    if data_parallel:
        state = torch.nn.DataParallel(model).state_dict()
    torch.save({"epoch": 7, "state_dict": state, "optimizer": optimizer.state_dict()}, path)
    return model.state_dict()


def load_output(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("data_parallel", [False, True])
def test_centernet_checkpoint_loads_strictly_into_the_converted_model(
    models, inputs, tmp_path, data_parallel
):
    original = save_centernet(models, tmp_path / "model_last.pth", data_parallel)
    inputs(tmp_path / "model_last.pth")
    result = run_cli(["remap-ckpt", *BY_NAME, tmp_path / "model_last.pth"])
    assert result.exit_code == 0, result.output
    out = load_output(tmp_path / "model_last.bn2gn.pth")
    assert list(out) == ["epoch", "state_dict"] and out["epoch"] == 7
    assert "dropped optimizer state 'optimizer'" in result.stderr
    converted = models.converted()
    converted.load_state_dict(out["state_dict"], strict=True)
    state = out["state_dict"]
    for name, tensor in original.items():
        if name.startswith("backbone."):
            assert tensor.dtype == state[name].dtype and torch.equal(tensor, state[name]), name
    for layer in CONVERTED_LAYERS:
        assert not any(
            f"{layer}.{stat}" in state
            for stat in ("running_mean", "running_var", "num_batches_tracked")
        )
        assert torch.equal(state[f"{layer}.weight"], original[f"{layer}.weight"])
        assert torch.equal(state[f"{layer}.bias"], original[f"{layer}.bias"])
    assert all(not k.startswith("module.") for k in state)
    assert "wrote " in result.stdout and "(re-opened and checked)" in result.stdout


def test_reset_affine_leaves_groupnorm_at_one_and_zero(models, inputs, tmp_path):
    save_centernet(models, tmp_path / "old.pth")
    inputs(tmp_path / "old.pth")
    result = run_cli(["remap-ckpt", *BY_NAME, tmp_path / "old.pth", "--reset-affine"])
    assert result.exit_code == 0, result.output
    converted = models.converted()
    torch.nn.init.normal_(converted.hm[1].weight)
    converted.load_state_dict(load_output(tmp_path / "old.bn2gn.pth")["state_dict"], strict=True)
    for layer in (converted.neck[1], converted.hm[1]):
        assert isinstance(layer, torch.nn.GroupNorm)
        assert torch.all(layer.weight == 1) and torch.all(layer.bias == 0)
    assert "reset         4" in result.stdout


def test_keep_prefix_and_keep_optimizer(models, inputs, tmp_path):
    save_centernet(models, tmp_path / "old.pth", data_parallel=True)
    inputs(tmp_path / "old.pth")
    result = run_cli(
        ["remap-ckpt", *BY_NAME, tmp_path / "old.pth", "--keep-prefix", "--keep-optimizer"]
    )
    assert result.exit_code == 0, result.output
    before = torch.load(tmp_path / "old.pth", weights_only=True)
    out = load_output(tmp_path / "old.bn2gn.pth")
    assert list(out) == ["epoch", "state_dict", "optimizer"]
    assert all(k.startswith("module.") for k in out["state_dict"])
    assert "module.hm.1.running_mean" not in out["state_dict"]
    assert out["optimizer"]["param_groups"] == before["optimizer"]["param_groups"]
    assert result.stderr == ""


def test_json_report_lists_every_decision(models, inputs, tmp_path):
    save_centernet(models, tmp_path / "old.pth")
    inputs(tmp_path / "old.pth")
    result = run_cli(["remap-ckpt", *BY_NAME, tmp_path / "old.pth", "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (sd,) = report["state_dicts"]
    assert sd["key"] == "state_dict"
    assert sd["dropped"] == {
        "neck.1": ["neck.1.running_mean", "neck.1.running_var", "neck.1.num_batches_tracked"],
        "hm.1": ["hm.1.running_mean", "hm.1.running_var", "hm.1.num_batches_tracked"],
    }
    assert sd["backbone_batchnorm_layers"] == BACKBONE_BN
    # 28 = backbone 2 convs + 2 BN x 5, neck conv 2 + BN 5, hm conv 2 + BN 5 + conv 2
    assert sd["counts"] == {
        "total": 28,
        "kept": 22,
        "renamed": 0,
        "dropped": 6,
        "reset": 0,
        "converted_layers": 2,
        "backbone_batchnorm_layers": 2,
    }
    assert report["top_level"] == {"kept": ["epoch"], "dropped": ["optimizer"]}
    assert report["written"] is True and report["exit_code"] == 0
    assert report["output"] == str(tmp_path / "old.bn2gn.pth")


def test_dry_run_writes_nothing(models, inputs, tmp_path):
    save_centernet(models, tmp_path / "old.pth")
    inputs(tmp_path / "old.pth")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run_cli(
        [
            "remap-ckpt",
            *BY_NAME,
            tmp_path / "old.pth",
            "--dry-run",
            "--model",
            "remap_tiny_models:converted",
            "--path",
            models.FOLDER,
            "--strict",
        ]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert "dropped       6  running statistics of 2 converted layers" in result.stdout
    assert "ok (strict load clean)" in result.stdout
    assert result.stdout.rstrip().endswith(f"dry run: would write {tmp_path / 'old.bn2gn.pth'}")


def test_model_verification_passes_for_the_converted_model(models, inputs, tmp_path):
    save_centernet(models, tmp_path / "old.pth", data_parallel=True)
    inputs(tmp_path / "old.pth")
    result = run_cli(
        [
            "remap-ckpt",
            *BY_NAME,
            tmp_path / "old.pth",
            "--model",
            "remap_tiny_models:converted",
            "--path",
            models.FOLDER,
            "--strict",
            "-q",
        ]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "old.bn2gn.pth").exists()


def test_missing_or_mismatched_backbone_tensor_fails_and_writes_nothing(models, inputs, tmp_path):
    save_centernet(models, tmp_path / "old.pth")
    inputs(tmp_path / "old.pth")
    result = run_cli(
        [
            "remap-ckpt",
            *BY_NAME,
            tmp_path / "old.pth",
            "--model",
            "remap_tiny_models:converted",
            "--model-arg",
            "wide_backbone=True",
            "--path",
            models.FOLDER,
        ]
    )
    assert result.exit_code == 1, result.output
    assert (
        "backbone.level1.0.weight: checkpoint (16, 8, 3, 3) vs model (20, 8, 3, 3)" in result.stdout
    )
    # level1.0.weight and level1.1 weight/bias/running_mean/running_var; neck.0.weight is not backbone
    assert (
        "backbone tensors lost: backbone.level1.0.weight, backbone.level1.1.bias," in result.stdout
    )
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("bn2gn: error: verification failed: 5 backbone tensor(s)")
    )
    assert not (tmp_path / "old.bn2gn.pth").exists()


def test_missing_head_keys_pass_unless_strict(models, inputs, tmp_path):
    save_centernet(models, tmp_path / "old.pth")
    inputs(tmp_path / "old.pth")
    args = [
        "remap-ckpt",
        *BY_NAME,
        tmp_path / "old.pth",
        "--model",
        "remap_tiny_models:converted",
        "--model-arg",
        "extra_head=True",
        "--path",
        models.FOLDER,
    ]
    strict = run_cli(args + ["--strict"])
    assert strict.exit_code == 1, strict.output
    assert "missing    wh: weight, bias" in strict.stdout
    assert not (tmp_path / "old.bn2gn.pth").exists()
    lenient = run_cli(args)
    assert lenient.exit_code == 0, lenient.output
    assert "ok (loads with strict=False)" in lenient.stdout
    assert (tmp_path / "old.bn2gn.pth").exists()


def test_existing_output_needs_force(models, inputs, tmp_path):
    save_centernet(models, tmp_path / "old.pth")
    inputs(tmp_path / "old.pth")
    target = tmp_path / "new.pth"
    target.write_bytes(b"keep me")
    result = run_cli(["remap-ckpt", *BY_NAME, tmp_path / "old.pth", "-o", target])
    assert result.exit_code == 2
    assert "already exists; use --force" in result.stderr and target.read_bytes() == b"keep me"
    assert (
        run_cli(["remap-ckpt", *BY_NAME, tmp_path / "old.pth", "-o", target, "--dry-run"]).exit_code
        == 0
    )
    assert target.read_bytes() == b"keep me"
    result = run_cli(["remap-ckpt", *BY_NAME, tmp_path / "old.pth", "-o", target, "--force"])
    assert result.exit_code == 0, result.output
    assert "hm.1.running_var" not in load_output(target)["state_dict"]


def test_in_place_keeps_the_original_as_bak(models, tmp_path):
    save_centernet(models, tmp_path / "old.pth")
    original = (tmp_path / "old.pth").read_bytes()
    same = run_cli(["remap-ckpt", *BY_NAME, tmp_path / "old.pth", "-o", tmp_path / "old.pth"])
    assert same.exit_code == 2 and "is the input; to replace it use --in-place" in same.stderr
    result = run_cli(["remap-ckpt", *BY_NAME, tmp_path / "old.pth", "--in-place"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "old.pth.bak").read_bytes() == original
    assert "hm.1.running_mean" not in load_output(tmp_path / "old.pth")["state_dict"]
    again = run_cli(["remap-ckpt", *BY_NAME, tmp_path / "old.pth", "--in-place"])
    assert again.exit_code == 2 and "old.pth.bak: already exists" in again.stderr
    assert (tmp_path / "old.pth.bak").read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.pth", "old.pth.bak"]


def test_safetensors_round_trip(models, inputs, tmp_path):
    from safetensors.torch import load_file, save_file

    original = trained_original(models)[0].state_dict()
    save_file(
        {k: v.contiguous() for k, v in original.items()},
        tmp_path / "w.safetensors",
        metadata={"source": "test"},
    )
    inputs(tmp_path / "w.safetensors")
    result = run_cli(["remap-ckpt", *BY_NAME, tmp_path / "w.safetensors"])
    assert result.exit_code == 0, result.output
    out = load_file(tmp_path / "w.bn2gn.safetensors")
    models.converted().load_state_dict(out, strict=True)
    assert all(torch.equal(out[k], original[k]) for k in out)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "w.bn2gn.safetensors"), framework="pt") as handle:
        assert handle.metadata() == {"source": "test"}
    to_torch = run_cli(
        ["remap-ckpt", *BY_NAME, tmp_path / "w.safetensors", "-o", tmp_path / "w.pth"]
    )
    assert to_torch.exit_code == 0, to_torch.output
    models.converted().load_state_dict(load_output(tmp_path / "w.pth"), strict=True)


def test_torch_checkpoint_to_safetensors_keeps_only_the_state_dict(models, inputs, tmp_path):
    from safetensors.torch import load_file

    save_centernet(models, tmp_path / "old.pth", data_parallel=True)
    inputs(tmp_path / "old.pth")
    result = run_cli(
        ["remap-ckpt", *BY_NAME, tmp_path / "old.pth", "-o", tmp_path / "new.safetensors"]
    )
    assert result.exit_code == 0, result.output
    assert "not written: epoch" in result.stderr
    models.converted().load_state_dict(load_file(tmp_path / "new.safetensors"), strict=True)


def test_every_known_state_dict_key_is_remapped_and_key_chooses(models, inputs, tmp_path):
    state = trained_original(models)[0].state_dict()
    torch.save({"model": state, "state_dict_ema": state, "epoch": 3}, tmp_path / "ema.pth")
    inputs(tmp_path / "ema.pth")
    result = run_cli(["remap-ckpt", *BY_NAME, tmp_path / "ema.pth"])
    assert result.exit_code == 0, result.output
    out = load_output(tmp_path / "ema.bn2gn.pth")
    for key in ("model", "state_dict_ema"):
        models.converted().load_state_dict(out[key], strict=True)
    only = run_cli(
        [
            "remap-ckpt",
            *BY_NAME,
            tmp_path / "ema.pth",
            "--key",
            "model",
            "-o",
            tmp_path / "model_only.pth",
        ]
    )
    assert only.exit_code == 0, only.output
    out = load_output(tmp_path / "model_only.pth")
    assert "hm.1.running_mean" not in out["model"] and "hm.1.running_mean" in out["state_dict_ema"]


def test_raw_state_dict_and_legacy_format(models, inputs, tmp_path):
    state = trained_original(models)[0].state_dict()
    torch.save(state, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    inputs(tmp_path / "legacy.pth")
    result = run_cli(["remap-ckpt", *BY_NAME, tmp_path / "legacy.pth"])
    assert result.exit_code == 0, result.output
    out = load_output(tmp_path / "legacy.bn2gn.pth")
    models.converted().load_state_dict(out, strict=True)
    assert (tmp_path / "legacy.bn2gn.pth").read_bytes()[:4] == b"PK\x03\x04", (
        "written in the zip format"
    )


def test_backbone_attr_option_and_config_file(models, inputs, tmp_path):
    save_centernet(models, tmp_path / "old.pth")
    inputs(tmp_path / "old.pth")
    result = run_cli(
        [
            "remap-ckpt",
            *BY_NAME,
            tmp_path / "old.pth",
            "--backbone-attr",
            "neck",
            "--format",
            "json",
            "--dry-run",
        ]
    )
    assert result.exit_code == 0, result.output
    assert list(json.loads(result.stdout)["state_dicts"][0]["dropped"]) == ["hm.1"]
    (tmp_path / "bn2gn.toml").write_text('[tool.bn2gn]\nbackbone-attrs = ["hm"]\n')
    # the configured names decide (no --backbone-attr on the command line)
    result = run_cli(["remap-ckpt", tmp_path / "old.pth", "--format", "json", "--dry-run"])
    assert list(json.loads(result.stdout)["state_dicts"][0]["dropped"]) == ["neck.1"]
