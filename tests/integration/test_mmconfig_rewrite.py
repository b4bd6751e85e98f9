"""`bn2gn config rewrite`: LibCST edits of the user's own file; expected texts written by hand."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from bn2gn.checkpoint.renames import RenameRule, RenameSelection, load_renames
from bn2gn.cli import cli

MM = Path(__file__).resolve().parents[2] / "fixtures" / "mmconfig"
AQR = "cmt_aqr_voxel0100_r50_800x320_cbgs.py"
BASE = "cmt_voxel0100_r50_800x320_cbgs.py"


@pytest.fixture
def cmt(tmp_path) -> Path:
    shutil.copytree(MM / "cmt", tmp_path / "cmt")
    return tmp_path / "cmt" / "projects" / "configs" / "fusion"


def run(*args):
    return CliRunner().invoke(cli, ["config", "rewrite", *map(str, args)])


def camera_lidar_fixed(original: str) -> str:
    """The camera+LiDAR variant after --drop-invalid-keys --fix-lr-mult --gn pts_neck, derived by hand."""
    text = original.replace("    pts_backbone=dict(\n        frozen_stages=3,\n    ),\n", "")
    text = text.replace("    img_neck=dict(\n        norm_eval=True,\n    ),\n", "")
    text = text.replace("    pts_neck=dict(\n        norm_eval=True,\n    ),\n", "")
    text = text.replace(
        "        attention_bias_config=attention_bias_config,\n    ),\n)\n",
        "        attention_bias_config=attention_bias_config,\n    ),\n"
        "    pts_neck=dict(norm_cfg=dict(_delete_=True, type='GN', num_groups=32, requires_grad=True)),\n)\n",
    )
    text = text.replace("            'img_backbone': dict(lr_mult=0.0),\n", "")
    return text


def test_camera_lidar_fix_writes_the_users_file_only(cmt, tmp_path):
    original = (cmt / AQR).read_text()
    base_bytes = (cmt / BASE).read_bytes()
    renames = tmp_path / "renames.json"
    result = run(
        cmt / AQR,
        "--drop-invalid-keys",
        "--fix-lr-mult",
        "--gn",
        "pts_neck",
        "--renames-out",
        renames,
    )
    assert result.exit_code == 0, result.output + result.stderr
    assert (cmt / AQR).read_text() == camera_lidar_fixed(original)
    assert (cmt / BASE).read_bytes() == base_bytes
    # every own-line comment of the user's file survives
    comments = [line.strip() for line in original.splitlines() if line.strip().startswith("#")]
    assert comments == [
        line.strip()
        for line in (cmt / AQR).read_text().splitlines()
        if line.strip().startswith("#")
    ]
    assert "pts_neck.*: BatchNorm layers stored by index keep their names" in result.output
    assert (
        "custom_keys['img_backbone'] is now {'lr_mult': 0.01, 'decay_mult': 5} from the _base_ files"
        in result.stderr
    )
    assert json.loads(renames.read_text())["rules"] == [
        {"prefix": "pts_neck.", "from": None, "to": None}
    ]
    # a second run changes nothing, and the audit no longer finds build errors
    again = run(cmt / AQR, "--drop-invalid-keys", "--fix-lr-mult", "--gn", "pts_neck", "--check")
    assert again.exit_code == 0, again.output + again.stderr
    audit = CliRunner().invoke(
        cli, ["config", "audit", "--strict", "--format", "json", str(cmt / AQR)]
    )
    codes = {f["code"] for f in json.loads(audit.stdout)["findings"]}
    assert (
        "MMC001" not in codes and "MMC004" in codes
    )  # HardSimpleVFE's lr_mult=0 stays (no parameters)


def test_check_and_diff_write_nothing(cmt):
    before = (cmt / AQR).read_bytes()
    check = run(cmt / AQR, "--drop-invalid-keys", "--check")
    assert check.exit_code == 1 and (cmt / AQR).read_bytes() == before
    diff = run(cmt / AQR, "--drop-invalid-keys", "--diff")
    assert diff.exit_code == 0 and (cmt / AQR).read_bytes() == before
    assert "-        frozen_stages=3,\n" in diff.stdout and diff.stdout.startswith("--- a/")


def test_freeze_sets_stage_count_and_norm_eval(tmp_path):
    path = tmp_path / "r50.py"
    path.write_text(
        textwrap.dedent("""\
        model = dict(
            type='RetinaNet',
            backbone=dict(type='ResNet', depth=50, frozen_stages=1),  # pretrained
            neck=dict(type='SECONDFPN'),
        )
        """)
    )
    result = run(path, "--freeze", "backbone", "--freeze", "neck")
    assert result.exit_code == 0, result.stderr
    assert path.read_text() == textwrap.dedent("""\
        model = dict(
            type='RetinaNet',
            backbone=dict(type='ResNet', depth=50, frozen_stages=4, norm_eval=True),  # pretrained
            neck=dict(type='SECONDFPN'),
        )
        """)
    assert "SECONDFPN has no frozen_stages / norm_eval; freeze it in code" in result.stderr
    assert run(path, "--freeze", "backbone", "--check").exit_code == 0


def test_freeze_inherited_component_goes_into_the_child(tmp_path):
    (tmp_path / "base.py").write_text(
        "model = dict(type='M', img_backbone=dict(type='ResNet', depth=50))\n"
    )
    child = tmp_path / "child.py"
    child.write_text("_base_ = './base.py'\n# nothing else yet\n")
    assert run(child, "--freeze", "img_backbone").exit_code == 0
    assert child.read_text() == (
        "_base_ = './base.py'\n# nothing else yet\n"
        "model = dict(img_backbone=dict(frozen_stages=4, norm_eval=True))\n"
    )
    assert (
        tmp_path / "base.py"
    ).read_text() == "model = dict(type='M', img_backbone=dict(type='ResNet', depth=50))\n"


def test_invalid_key_in_a_base_needs_allow_base(tmp_path):
    (tmp_path / "base.py").write_text(
        "model = dict(\n    type='M',\n    neck=dict(type='FPN', norm_eval=True),\n)\n"
    )
    child = tmp_path / "child.py"
    child.write_text("_base_ = ['./base.py']\nmodel = dict(neck=dict(out_channels=256))\n")
    result = run(child, "--drop-invalid-keys")
    assert result.exit_code == 0
    assert "base.py:3: model.neck.norm_eval is written in a _base_ file" in result.stderr
    assert "(tmp" not in (tmp_path / "base.py").read_text()
    assert "norm_eval" in (tmp_path / "base.py").read_text()
    assert run(child, "--drop-invalid-keys", "--allow-base").exit_code == 0
    assert (
        tmp_path / "base.py"
    ).read_text() == "model = dict(\n    type='M',\n    neck=dict(type='FPN'),\n)\n"


def test_gn_refusals(tmp_path):
    path = tmp_path / "c.py"
    path.write_text(
        "model = dict(type='M', backbone=dict(type='ResNet', depth=50),\n"
        "             pts_backbone=dict(type='SECONDFPN', out_channels=[256, 24]))\n"
    )
    before = path.read_bytes()
    result = run(path, "--gn", "backbone")
    assert result.exit_code == 1 and "is a backbone" in result.stderr
    result = run(path, "--gn", "pts_backbone")
    assert result.exit_code == 1 and "C=256 -> 32, C=24 -> 24" in result.stderr
    assert path.read_bytes() == before
    result = run(path, "--gn", "nope")
    assert result.exit_code == 2 and "no component 'nope'" in result.stderr


def test_gn_on_a_source_only_component_is_refused(tmp_path):
    """A head that hard-codes BatchNorm: no config value converts it, so --gn is refused (exit 1)."""
    path = tmp_path / "c.py"
    path.write_text("model = dict(type='M', pts_bbox_head=dict(type='CmtHead', in_channels=512))\n")
    before = path.read_bytes()
    result = run(path, "--gn", "pts_bbox_head")
    assert result.exit_code == 1, result.output + result.stderr
    assert "bn2gn: refused: model.pts_bbox_head: CmtHead hard-codes BatchNorm in shared_conv" in (
        result.stderr
    )
    assert path.read_bytes() == before


def test_crlf_and_named_renames(tmp_path):
    path = tmp_path / "c.py"
    path.write_bytes(
        b"model = dict(\r\n    type='M',\r\n    neck=dict(type='FPN', out_channels=256,\r\n"
        b"              norm_cfg=dict(type='BN')),\r\n)\r\n"
    )
    result = run(path, "--gn", "neck")
    assert result.exit_code == 0, result.stderr
    assert path.read_bytes() == (
        b"model = dict(\r\n    type='M',\r\n    neck=dict(type='FPN', out_channels=256,\r\n"
        b"              norm_cfg=dict(type='GN', num_groups=32, requires_grad=True)),\r\n)\r\n"
    )
    assert "neck.fpn_convs.*.bn[N].* -> gn[N].*" in result.stdout


def test_nothing_to_do_and_bad_input(tmp_path):
    assert run(MM / "bad" / "no_model.py").exit_code == 2
    result = run(MM / "bad" / "uses_function.py", "--freeze", "x")
    assert result.exit_code == 2 and "uses_function.py:4:" in result.stderr


def test_rename_selection_rules():
    selection = RenameSelection(
        "r.json", (RenameRule("neck.", "bn", "gn"), RenameRule("pts_neck.", None, None))
    )
    converted, unaccounted = selection.split(
        ["neck.lateral_convs.0.bn", "backbone.bn1", "pts_neck.deblocks.0.1", "necks.x.bn"]
    )
    assert converted == {"neck.lateral_convs.0.bn", "pts_neck.deblocks.0.1"} and unaccounted == []
    assert selection.rename("neck.lateral_convs.0.bn.weight") == "neck.lateral_convs.0.gn.weight"
    assert selection.rename("neck.stem.bn1.bias") == "neck.stem.gn1.bias"
    assert selection.rename("neck.bnx.weight") == "neck.bnx.weight"
    assert selection.rename("backbone.bn1.weight") == "backbone.bn1.weight"
    assert selection.rename("pts_neck.deblocks.0.1.weight") == "pts_neck.deblocks.0.1.weight"


def test_remap_ckpt_applies_renames(tmp_path):
    torch = pytest.importorskip("torch")
    state = {
        "img_backbone.bn1.weight": torch.ones(4),
        "img_backbone.bn1.running_mean": torch.zeros(4),
        "img_backbone.bn1.running_var": torch.ones(4),
        "img_backbone.bn1.num_batches_tracked": torch.tensor(3),
        "neck.lateral_convs.0.conv.weight": torch.ones(4, 4, 1, 1),
        "neck.lateral_convs.0.bn.weight": torch.full((4,), 2.0),
        "neck.lateral_convs.0.bn.bias": torch.zeros(4),
        "neck.lateral_convs.0.bn.running_mean": torch.zeros(4),
        "neck.lateral_convs.0.bn.running_var": torch.ones(4),
        "neck.lateral_convs.0.bn.num_batches_tracked": torch.tensor(3),
    }
    torch.save({"state_dict": state}, tmp_path / "old.pth")
    renames = tmp_path / "renames.json"
    renames.write_text(
        json.dumps(
            {
                "format": "bn2gn-renames/1",
                "config": "c.py",
                "rules": [{"prefix": "neck.", "from": "bn", "to": "gn"}],
            }
        )
    )
    result = CliRunner().invoke(
        cli,
        [
            "remap-ckpt",
            str(tmp_path / "old.pth"),
            "-o",
            str(tmp_path / "new.pth"),
            "--renames",
            str(renames),
        ],
    )
    assert result.exit_code == 0, result.output
    new = torch.load(tmp_path / "new.pth", weights_only=True)["state_dict"]
    assert sorted(new) == sorted(
        [
            "img_backbone.bn1.weight",
            "img_backbone.bn1.running_mean",
            "img_backbone.bn1.running_var",
            "img_backbone.bn1.num_batches_tracked",
            "neck.lateral_convs.0.conv.weight",
            "neck.lateral_convs.0.gn.weight",
            "neck.lateral_convs.0.gn.bias",
        ]
    )
    assert torch.equal(new["neck.lateral_convs.0.gn.weight"], torch.full((4,), 2.0))
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    result = CliRunner().invoke(
        cli, ["remap-ckpt", str(tmp_path / "old.pth"), "--dry-run", "--renames", str(bad)]
    )
    assert result.exit_code == 2 and "not a bn2gn renames file" in result.output
    assert load_renames(renames).rules == (RenameRule("neck.", "bn", "gn"),)
