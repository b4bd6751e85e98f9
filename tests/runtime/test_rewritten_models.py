"""Import the rewritten fixture models with torch: BatchNorm only in the backbone, GroupNorm with the right
group counts everywhere else, and a forward+backward pass at batch size 1 in train mode."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import copy_case, run_cli
from expected_decisions import (
    CREATE_MODEL_KWARGS,
    EXPECTED_BACKBONE_BATCHNORM,
    EXPECTED_GROUPNORM_MODULES,
    EXPECTED_GROUPS,
    INPUT_SHAPE,
)

torch = pytest.importorskip("torch")

PROBE = textwrap.dedent("""
    import json, sys, torch
    from lib.models.model import create_model
    arch, kwargs, shape = sys.argv[1], json.loads(sys.argv[2]), tuple(json.loads(sys.argv[3]))
    torch.manual_seed(0)
    model = create_model(arch, **kwargs)
    model.train()
    out = model(torch.randn(*shape))
    loss = sum(t.float().mean() for d in out for t in d.values())
    loss.backward()
    report = {
        "bn": sorted(n for n, m in model.named_modules() if type(m) is torch.nn.BatchNorm2d),
        "gn": {n: [m.num_channels, m.num_groups] for n, m in model.named_modules()
               if isinstance(m, torch.nn.GroupNorm)},
        "loss_finite": bool(torch.isfinite(loss)),
        "head_grad": any(p.grad is not None and p.grad.abs().sum() > 0
                         for n, p in model.named_parameters() if not n.startswith(("backbone", "base_layer", "layer"))),
    }
    print(json.dumps(report))
""")


@pytest.fixture(scope="module")
def rewritten(tmp_path_factory):
    root = copy_case("centernet_mini", tmp_path_factory.mktemp("models"))
    result = run_cli(["rewrite", "lib/models"], cwd=root)
    assert result.exit_code == 0, result.output
    return root


@pytest.mark.parametrize("arch", sorted(EXPECTED_GROUPNORM_MODULES))
def test_rewritten_model(rewritten, arch):
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            PROBE,
            arch,
            json.dumps(CREATE_MODEL_KWARGS),
            json.dumps(list(INPUT_SHAPE)),
        ],
        cwd=rewritten,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    expected_bn = EXPECTED_BACKBONE_BATCHNORM[arch]
    assert all(name.startswith(expected_bn["prefixes"]) for name in report["bn"]), report["bn"]
    assert len(report["bn"]) == expected_bn["count"]
    expected_gn = {name: list(pair) for name, pair in EXPECTED_GROUPNORM_MODULES[arch].items()}
    assert report["gn"] == expected_gn
    assert report["loss_finite"] and report["head_grad"]


@pytest.mark.parametrize("channels, groups", sorted(EXPECTED_GROUPS.items()))
def test_injected_helper_group_counts(channels, groups):
    from bn2gn.source.rules.bn2gn102_group_norm_helper import HELPER_SOURCE

    namespace = {"nn": torch.nn}
    exec(HELPER_SOURCE.format(nn="nn"), namespace)
    norm = namespace["get_group_norm"](channels)
    assert (norm.num_groups, norm.num_channels, norm.affine, norm.eps) == (
        groups,
        channels,
        True,
        1e-5,
    )
    assert namespace["get_group_norm"](channels, eps=1e-3, affine=False).affine is False
