"""End to end on the bundled CenterNet-style fixture: save a checkpoint from the original models,
`bn2gn rewrite` a copy of lib/models, `bn2gn remap-ckpt --model ... --strict`, then load the
result into the rewritten models with strict=True.

The fixture's ``lib`` package is imported from two copies (original and rewritten), so every
import happens inside ``fixture_package``, which leaves sys.modules and sys.path as it found them.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import sys

import pytest
from conftest import copy_case, run_cli

torch = pytest.importorskip("torch")

HEADS = {"hm": 1, "wh": 2, "reg": 2}
ARCHS = {"dla_34": True, "res_18": False}  # arch -> saved with DataParallel's "module." prefix


@contextlib.contextmanager
def fixture_package(repo):
    """Import ``lib.models.model`` from ``repo``; afterwards forget every ``lib`` module again."""

    def owned():
        return {n: m for n, m in sys.modules.items() if n == "lib" or n.startswith("lib.")}

    saved_modules, saved_path = owned(), list(sys.path)
    for name in saved_modules:
        del sys.modules[name]
    sys.path.insert(0, str(repo))
    try:
        yield importlib.import_module("lib.models.model")
    finally:
        for name in owned():
            del sys.modules[name]
        sys.modules.update(saved_modules)
        sys.path[:] = saved_path


def save_original_checkpoints(repo):
    """CenterNet-style {'epoch', 'state_dict', 'optimizer'} after one Adam step; returns the state dicts."""
    states = {}
    with fixture_package(repo) as models:
        for arch, data_parallel in ARCHS.items():
            torch.manual_seed(0)
            model = models.create_model(arch, HEADS, 16, 3)
            optimizer = torch.optim.Adam(model.parameters(), 1e-3)
            out = model(torch.randn(2, 9, 32, 32))
            sum(t.float().mean() for d in out for t in d.values()).backward()
            optimizer.step()
            state = (
                torch.nn.DataParallel(model).state_dict() if data_parallel else model.state_dict()
            )
            torch.save(
                {"epoch": 3, "state_dict": state, "optimizer": optimizer.state_dict()},
                repo / f"{arch}.pth",
            )
            states[arch] = model.state_dict()
    return states


def test_rewritten_fixture_models_load_the_remapped_checkpoints_strictly(tmp_path):
    original_repo = copy_case("centernet_mini", tmp_path / "original")
    repo = copy_case("centernet_mini", tmp_path / "converted")
    rewrite = run_cli(["rewrite", repo / "lib" / "models", "-q"])
    assert rewrite.exit_code == 0, rewrite.output
    originals = save_original_checkpoints(original_repo)
    digests = {
        a: hashlib.sha256((original_repo / f"{a}.pth").read_bytes()).hexdigest() for a in ARCHS
    }
    for arch in ARCHS:
        with fixture_package(
            repo
        ):  # so --model imports the rewritten copy and forgets it afterwards
            result = run_cli(
                [
                    "remap-ckpt",
                    original_repo / f"{arch}.pth",
                    "-o",
                    repo / f"{arch}.pth",
                    "--model",
                    "lib.models.model:create_model",
                    "--path",
                    repo,
                    "--model-arg",
                    f"arch={arch}",
                    "--model-arg",
                    f"heads={HEADS!r}",
                    "--model-arg",
                    "head_conv=16",
                    "--strict",
                    "--format",
                    "json",
                ]
            )
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["verification"]["clean"] is True and report["written"] is True
        assert report["top_level"] == {"kept": ["epoch"], "dropped": ["optimizer"]}
        assert report["state_dicts"][0]["stripped_prefix"] == ("module." if ARCHS[arch] else "")
    with fixture_package(repo) as models:
        for arch, old in originals.items():
            new = torch.load(repo / f"{arch}.pth", weights_only=True)
            assert sorted(new) == ["epoch", "state_dict"]
            model = models.create_model(arch, HEADS, 16, 3)
            model.load_state_dict(new["state_dict"], strict=True)
            kinds = {n: type(m) for n, m in model.named_modules()}
            group_norm = [n for n, kind in kinds.items() if kind is torch.nn.GroupNorm]
            batch_norm = [n for n, kind in kinds.items() if kind is torch.nn.BatchNorm2d]
            assert group_norm and batch_norm, arch
            state = new["state_dict"]
            for name in group_norm:
                assert not any(
                    f"{name}.{s}" in state
                    for s in ("running_mean", "running_var", "num_batches_tracked")
                )
                assert torch.equal(state[f"{name}.weight"], old[f"{name}.weight"])
            for name in batch_norm:  # the backbone: statistics kept, bit for bit
                for leaf in (
                    "weight",
                    "bias",
                    "running_mean",
                    "running_var",
                    "num_batches_tracked",
                ):
                    key = f"{name}.{leaf}"
                    assert state[key].dtype == old[key].dtype and torch.equal(
                        state[key], old[key]
                    ), key
            assert all(
                torch.equal(state[k], old[k])
                for k in state
                if k.rpartition(".")[0] not in group_norm
            )
    for arch, digest in digests.items():
        assert hashlib.sha256((original_repo / f"{arch}.pth").read_bytes()).hexdigest() == digest
