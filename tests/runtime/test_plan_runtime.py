"""the rewritten fixtures/plans models, built with torch, hold BatchNorm only inside the
backbone the plan inferred, and freeze_backbone_bn (given the plan's backbone entries, as patch-trainer bakes
them) freezes exactly the BatchNorm the plan kept."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import copy_case, run_cli

torch = pytest.importorskip("torch")

# case -> (import statement, build expression, the backbone module-path prefixes written by hand, the
# number of BatchNorm2d modules expected to remain after the rewrite)
BUILDS = {
    "plans/dla_pretrained": (
        "from models.model import create_model",
        "create_model('dla_34', heads={'hm': 1, 'wh': 2}, head_conv=8)",
        ("base.",),
        3 + 3 + 3,
    ),
    "plans/flat_resnet": (
        "from nets.factory import create_model",
        "create_model('res_18', {'hm': 1}, 8)",
        ("bn1", "layer1.", "layer2.", "layer3.", "layer4."),
        1 + 4 + 5 * 3,
    ),
    "plans/tracker": (
        "from lib.model.model import create_model",
        "create_model('dla_34', {'hm': 1}, {'hm': [8]}, opt=Opt())",
        ("base.",),
        6,
    ),
    "plans/encoder_table": (
        "from detector import build_model",
        "build_model(Opt())",
        ("encoder.",),
        2,
    ),
    "plans/dla_alone": ("from seg import get_model", "get_model('seg')", ("base.",), 3),
}

PROBE = textwrap.dedent("""
    import json, sys, torch, torch.hub, torch.utils.model_zoo
    # no downloads: the fixtures' weight loaders get an empty state dict, loaded leniently
    torch.utils.model_zoo.load_url = torch.hub.load_state_dict_from_url = lambda *a, **k: {}
    torch.nn.Module.load_state_dict = lambda self, state, strict=True: None
    from bn2gn.runtime import backbone_batchnorms, freeze_backbone_bn

    class Opt:
        pre_img = pre_hm = True
        load_model = ''
        backbone = 'resnet'

    exec(sys.argv[1])
    model = eval(sys.argv[2])
    attrs = tuple(json.loads(sys.argv[3]))
    bn = sorted(n for n, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
    gn = sorted(n for n, m in model.named_modules() if isinstance(m, torch.nn.GroupNorm))
    model.train()
    frozen_count = freeze_backbone_bn(model, attrs)
    frozen = sorted(n for n, m in model.named_modules()
                    if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and not m.training
                    and not any(p.requires_grad for p in m.parameters()))
    print(json.dumps({"bn": bn, "gn": gn, "frozen": frozen, "count": frozen_count,
                      "listed": sorted(p for p, _ in backbone_batchnorms(model, attrs))}))
""")


def _plan_attrs(root) -> list:
    from bn2gn.core.settings import DEFAULT_BACKBONE_NAMES
    from bn2gn.decide.backbone import Backbone

    result = run_cli(["scan", ".", "--format", "json"], cwd=root)
    assert result.exit_code == 0, result.output
    backbones = json.loads(result.stdout)["backbones"]
    return list(Backbone.decided(DEFAULT_BACKBONE_NAMES, backbones).spellings)


@pytest.mark.parametrize("case", sorted(BUILDS))
def test_rewritten_model_keeps_batchnorm_only_in_the_planned_backbone(case, tmp_path):
    root = copy_case(case, tmp_path)
    attrs = _plan_attrs(root)
    result = run_cli(["rewrite", "."], cwd=root)
    assert result.exit_code == 0, result.output
    statement, build, prefixes, count = BUILDS[case]
    env_path = [str(root)] + sys.path
    out = subprocess.run(
        [sys.executable, "-c", PROBE, statement, build, json.dumps(attrs)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": ":".join(env_path), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["bn"], "the backbone BatchNorm must survive the rewrite"
    assert all(name.startswith(prefixes) for name in report["bn"]), report["bn"]
    assert len(report["bn"]) == count, report["bn"]
    assert report["gn"], "the neck/head BatchNorm must be GroupNorm after the rewrite"
    assert not any(name.startswith(prefixes) for name in report["gn"]), report["gn"]
    # the freeze patch-trainer injects, given the plan's entries, freezes exactly the BatchNorm left
    assert report["frozen"] == report["bn"] == report["listed"]
    assert report["count"] == len(report["bn"])


def test_patch_trainer_bakes_the_planned_backbone(tmp_path):
    root = copy_case("plans/encoder_table", tmp_path)
    (root / "train.py").write_text(
        textwrap.dedent("""
        import torch
        from detector import build_model


        def main(opt):
            model = build_model(opt)
            optimizer = torch.optim.Adam(model.parameters(), 1e-3)
            for _ in range(2):
                model.train()
                optimizer.step()
    """)
    )
    result = run_cli(["patch-trainer", "train.py"], cwd=root)
    assert result.exit_code == 0, result.output
    text = (root / "train.py").read_text()
    assert '"Detector.encoder"' in text
    assert "freeze_backbone_bn(model)" in text
