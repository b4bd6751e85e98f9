"""`bn2gn config verify` with the real mmengine + mmcv-lite + mmdet stack (CI installs it via the test extra).

Expected numbers come from reading mmdet's ResNet (stem = conv1 + bn1: 3 tensors; layer1..4 hold
30/39/57/30 parameter tensors of ResNet-50's 159) and are the table of the issue.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from bn2gn.cli import cli

MM = Path(__file__).resolve().parents[2] / "fixtures" / "mmconfig"

TABLE = textwrap.dedent("""\
    model = dict(
        type='Table',
        fs_m1=dict(type='ResNet', depth=50, frozen_stages=-1),
        fs_0=dict(type='ResNet', depth=50, frozen_stages=0),
        fs_1=dict(type='ResNet', depth=50, frozen_stages=1),
        fs_2=dict(type='ResNet', depth=50, frozen_stages=2),
        fs_3=dict(type='ResNet', depth=50, frozen_stages=3),
        fs_4=dict(type='ResNet', depth=50, frozen_stages=4),
        fs_5=dict(type='ResNet', depth=50, frozen_stages=5),
        swin=dict(type='SwinTransformer', norm_eval=True),
        neck=dict(type='FPN', in_channels=[256, 512], out_channels=64, num_outs=2, norm_cfg=dict(type='BN')),
        pts=dict(type='SECOND'),
    )
    optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1),
                         paramwise_cfg=dict(custom_keys={'fs_4': dict(lr_mult=0.0), 'nothing_here': dict()}))
    """)


@pytest.fixture(scope="module")
def table_report(tmp_path_factory):
    pytest.importorskip("mmengine")
    pytest.importorskip("mmcv")
    pytest.importorskip("mmdet")
    from bn2gn.openmmlab.verify import verify_config

    path = tmp_path_factory.mktemp("verify") / "table.py"
    path.write_text(TABLE)
    return path, verify_config(path, input_size=32)


def test_resnet50_frozen_stages_table(table_report):
    _, report = table_report
    checks = {c.component: c for c in report.checks}
    for name, trainable in (
        ("fs_m1", 159),
        ("fs_0", 156),
        ("fs_1", 126),
        ("fs_2", 87),
        ("fs_3", 30),
        ("fs_4", 0),
    ):
        check = checks[f"model.{name}"]
        assert (check.status, check.trainable, check.total) == ("verified", trainable, 159), name
        assert (check.batchnorm_training, check.batchnorm_total) == (0, 53), (
            name
        )  # norm_eval=True default
        assert check.gradients == trainable, name  # exactly the trainable tensors got a gradient
        # torchvision's ResNet-50 has 25,557,032 values; without its 2048x1000 fc: 23,508,032
        assert check.values == 23_508_032, name
        assert (
            check.frozen_received == 0
        )  # mmengine + paramwise_cfg skips requires_grad=False parameters


def test_parameter_values_are_counted(table_report):
    _, report = table_report
    checks = {c.component: c for c in report.checks}
    # layer4 of ResNet-50 (three bottlenecks, 2048 wide) holds 14,964,736 values
    assert checks["model.fs_3"].trainable_values == 14_964_736
    assert checks["model.fs_4"].trainable_values == 0
    from bn2gn.openmmlab.verify import render_text

    assert "    parameter values: 23.51M (14.96M trainable)" in render_text(report)


def test_static_predictions_fail_at_build(table_report):
    path, report = table_report
    checks = {c.component: c for c in report.checks}
    assert checks["model.fs_5"].status == "failed"
    assert "layer5" in checks["model.fs_5"].detail and checks["model.fs_5"].predicted == ("MMC002",)
    assert checks["model.swin"].status == "failed"
    assert "norm_eval" in checks["model.swin"].detail and checks["model.swin"].predicted == (
        "MMC001",
    )
    from bn2gn.openmmlab.audit import audit

    static = {(f.code.name, f.component) for f in audit(path).findings}
    assert {("MMC002", "model.fs_5"), ("MMC001", "model.swin")} <= static


def test_neck_batchnorm_trains_and_unbuildable_is_static_only(table_report):
    _, report = table_report
    checks = {c.component: c for c in report.checks}
    neck = checks["model.neck"]
    assert (neck.status, neck.batchnorm_training, neck.batchnorm_total, neck.trainable) == (
        "verified",
        4,
        4,
        12,
    )
    assert checks["model.pts"].status == "static only" and checks["model.pts"].total is None
    assert report.unmatched_keys == []  # model.pts (static only) could hold it
    assert report.unmatched_note == (
        "not checked, since model.fs_5, model.swin, model.pts could not be built here: nothing_here"
    )
    assert not report.ok


def test_custom_key_matching_nothing_when_everything_is_built(tmp_path):
    pytest.importorskip("mmdet")
    from bn2gn.openmmlab.verify import verify_config

    path = tmp_path / "c.py"
    path.write_text(
        "model = dict(type='M', neck=dict(type='FPN', in_channels=[8, 16], out_channels=8, num_outs=2))\n"
        "optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1), paramwise_cfg=dict(custom_keys={\n"
        "    'query_embed': dict(lr_mult=0.5), 'neck.fpn_convs': dict(lr_mult=0.1)}))\n"
    )
    report = verify_config(path)
    assert report.ok and report.unmatched_keys == ["query_embed"] and report.unmatched_note == ""


def test_static_errors_fail_the_verdict_of_unbuilt_components(tmp_path):
    """SECOND cannot be built here, but frozen_stages makes its build raise: verify must not pass."""
    pytest.importorskip("mmdet")
    from bn2gn.openmmlab.verify import render_text, verify_config

    path = tmp_path / "c.py"
    path.write_text(
        "model = dict(type='M', neck=dict(type='FPN', in_channels=[8, 16], out_channels=8, num_outs=2),\n"
        "    pts_backbone=dict(type='SECOND', in_channels=8, frozen_stages=2))\n"
        "optimizer = dict(type='SGD', lr=0.1)\n"
        "optimizer_config = dict(grad_clip=None, exclude_frozen_parameters=True)\n"
    )
    report = verify_config(path)
    statuses = {c.component: c.status for c in report.checks}
    assert statuses == {"model.neck": "verified", "model.pts_backbone": "static only"}
    assert [(f.code.name, f.component, f.key) for f in report.static_errors] == [
        ("MMC001", "model.pts_backbone", "frozen_stages"),
        ("MMC010", "optimizer_config", "exclude_frozen_parameters"),
    ]
    assert not report.ok
    assert (
        render_text(report)[-1] == "1 verified, 0 failed, 1 static only; 2 static error(s): FAILED"
    )
    result = CliRunner().invoke(cli, ["config", "verify", str(path)])
    assert result.exit_code == 1
    assert "static: " in result.output and "c.py:2: MMC001 error" in result.output


def test_compiled_ops_are_built_but_not_run(tmp_path):
    pytest.importorskip("mmdet")
    from bn2gn.openmmlab.verify import verify_config

    path = tmp_path / "dcn.py"
    path.write_text(
        "model = dict(type='M', backbone=dict(type='ResNet', depth=50, frozen_stages=4,\n"
        "    dcn=dict(type='DCNv2', deform_groups=1), stage_with_dcn=(False, False, True, True)))\n"
    )
    (check,) = verify_config(path).checks
    assert check.status == "verified" and check.trainable == 0 and check.gradients is None
    assert "forward not run" in check.detail and "ModulatedDeformConv2dPack" in check.detail


def test_optimizer_receives_frozen_parameters_without_paramwise_cfg(tmp_path):
    pytest.importorskip("mmdet")
    from bn2gn.openmmlab.verify import verify_config

    path = tmp_path / "swin.py"
    path.write_text(
        "model = dict(type='M', backbone=dict(type='SwinTransformer', frozen_stages=1, depths=(1, 1, 1, 1),"
        " embed_dims=32, num_heads=(1, 2, 4, 8)))\n"
        "optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1))\n"
    )
    (check,) = verify_config(path, input_size=64).checks
    assert check.status == "verified"
    # frozen only in train(): patch_embed (4 tensors) + stage 0 + norm0; mmengine without paramwise_cfg gets all
    assert check.frozen_received == check.total - check.trainable > 0
    assert check.batchnorm_total == 0


def test_cli_verify_json_and_exit_code(table_report):
    path, _ = table_report
    result = CliRunner().invoke(
        cli, ["config", "verify", "--format", "json", "--input-size", "32", str(path)]
    )
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["ok"] is False
    assert [c["status"] for c in document["components"]].count("verified") == 7


def test_mmengine_resolver_gives_the_same_findings():
    pytest.importorskip("mmengine")
    from bn2gn.openmmlab.audit import audit

    config = (
        MM / "cmt" / "projects" / "configs" / "fusion" / "cmt_aqr_voxel0100_r50_800x320_cbgs.py"
    )
    static = sorted((f.code.name, f.component, f.key) for f in audit(config).findings)
    executed = audit(config, resolver="mmengine")
    assert executed.resolver == "mmengine"
    ours = sorted((f.code.name, f.component, f.key) for f in executed.findings)
    # without line numbers mmengine cannot tell inherited from own values: no MMC007
    assert ours == [item for item in static if item[0] != "MMC007"]


def test_verify_without_the_stack_is_a_usage_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mmdet.registry", None)
    result = CliRunner().invoke(cli, ["config", "verify", str(MM / "delete" / "swin_child.py")])
    assert result.exit_code == 2 and "pip install 'bn2gn[openmmlab]'" in result.output


def test_classes_from_source_are_built_with_stand_in_registries(tmp_path):
    """SECOND from a checkout and CPFPN from a plugin folder build on CPU without mmdet3d."""
    pytest.importorskip("mmdet")
    from bn2gn.openmmlab.verify import render_text, verify_config

    report = verify_config(
        MM / "mmdet3d_checkout" / "configs" / "second" / "second_probe.py", input_size=16
    )
    (check,) = report.checks
    # by hand: 3x3 convs 8->16, 16->16, 16->32, 32->32 without bias (1152 + 2304 + 4608 + 9216)
    # and four BatchNorms (32 + 32 + 64 + 64): 12 tensors, 17,472 values
    assert (check.status, check.trainable, check.total, check.values) == (
        "verified",
        12,
        12,
        17_472,
    )
    assert (check.batchnorm_training, check.batchnorm_total, check.gradients) == (4, 4, 12)
    assert report.ok and render_text(report)[-1].startswith("1 verified, 0 failed, 0 static only")

    shutil.copytree(MM / "cmt", tmp_path / "cmt")
    camera = tmp_path / "cmt" / "projects" / "configs" / "camera" / "cmt_camera_only.py"
    checks = {c.component: c for c in verify_config(camera).checks}
    neck = checks["model.img_neck"]
    assert neck.status == "failed" and neck.predicted == ("MMC001",)
    assert "unexpected keyword argument 'frozen_stages'" in neck.detail
    head = checks["model.pts_bbox_head"]
    assert head.status == "static only"
    assert "build_transformer: nested components need the project's registry" in head.detail

    fusion = (
        tmp_path / "cmt" / "projects" / "configs" / "fusion" / "cmt_voxel0100_r50_800x320_cbgs.py"
    )
    neck = {c.component: c for c in verify_config(fusion).checks}["model.img_neck"]
    # by hand: 1x1 convs 1024->256 and 2048->256 with bias, one 3x3 256->256 with bias
    assert (neck.status, neck.total, neck.values) == ("verified", 6, 1_377_024)
