"""`bn2gn config audit`: findings written by hand from reading the fixtures and the OpenMMLab sources."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from bn2gn.cli import cli
from bn2gn.openmmlab.audit import audit

MM = Path(__file__).resolve().parents[2] / "fixtures" / "mmconfig"
FUSION = MM / "cmt" / "projects" / "configs" / "fusion"
CMT_AQR = FUSION / "cmt_aqr_voxel0100_r50_800x320_cbgs.py"
CMT_BASE = FUSION / "cmt_voxel0100_r50_800x320_cbgs.py"


def found(report):
    return {
        (f.code.name, f.component, f.key, Path(f.file).name if f.file else None, f.line)
        for f in report.findings
    }


def test_camera_lidar_variant_findings():
    report = audit(CMT_AQR)
    aqr, base = CMT_AQR.name, CMT_BASE.name
    assert report.stack == "mmcv1"
    assert found(report) == {
        # SECONDFPN / CPFPN have no norm_eval, SECOND has no frozen_stages: the model does not build
        ("MMC001", "model.img_neck", "norm_eval", aqr, 25),
        ("MMC001", "model.pts_backbone", "frozen_stages", aqr, 21),
        ("MMC001", "model.pts_neck", "norm_eval", aqr, 28),
        # ResNet frozen_stages=4 freezes everything: lr_mult=0 adds nothing
        ("MMC004", "model.img_backbone", "custom_keys.img_backbone", aqr, 42),
        # HardSimpleVFE has no parameters
        ("MMC004", "model.pts_voxel_encoder", "custom_keys.pts_voxel_encoder", aqr, 44),
        # nothing freezes SECOND / SparseEncoder: gradients computed and clipped, BN statistics move
        ("MMC003", "model.pts_backbone", "custom_keys.pts_backbone", aqr, 43),
        ("MMC003", "model.pts_middle_encoder", "custom_keys.pts_middle_encoder", aqr, 45),
        ("MMC006", "model.pts_backbone", "custom_keys.pts_backbone", aqr, 43),
        ("MMC006", "model.pts_middle_encoder", "custom_keys.pts_middle_encoder", aqr, 45),
        # CmtHead has no query_embed
        ("MMC005", "", "custom_keys.query_embed", aqr, 51),
        # the base's decay_mult=5 survives the child's dict(lr_mult=0.0); the BN2d requires_grad=False
        ("MMC007", "", "custom_keys.img_backbone.decay_mult", aqr, 42),
        ("MMC007", "model.img_backbone", "norm_cfg", base, 20),
        # GroupNorm: SECONDFPN from the config; CmtHead's shared_conv only in source
        ("MMC009", "model.pts_neck", "norm_cfg", base, 65),
        ("MMC009", "model.pts_bbox_head", "", aqr, 30),
    }
    texts = {f.code.name + f.key: f.message for f in report.findings}
    assert "max_norm=35" in texts["MMC003custom_keys.pts_backbone"]
    assert "BatchNorm statistics keep moving" in texts["MMC003custom_keys.pts_backbone"]
    assert "C=256 -> 32 groups" in texts["MMC009norm_cfg"]
    backbone = report.components[0]
    assert backbone.component == "model.img_backbone"
    assert backbone.frozen_stages.startswith("4: stem + layer1..4: everything")
    assert "decay_mult=5" in backbone.lr and "lr_mult=0.0" in backbone.lr


def test_frozen_stages_3_leaves_layer4_trainable(tmp_path):
    path = tmp_path / "frozen_stages.py"
    path.write_text(
        textwrap.dedent("""
        model = dict(
            type='CmtDetector',
            img_backbone=dict(type='ResNet', depth=50, frozen_stages=3, norm_eval=True),
            pts_backbone=dict(type='SECOND', in_channels=256, frozen_stages=2),
        )
        optimizer = dict(type='AdamW', lr=1e-4, paramwise_cfg=dict(custom_keys={
            'img_backbone': dict(lr_mult=0.0)}))
        optimizer_config = dict(grad_clip=dict(max_norm=35, norm_type=2))
        """)
    )
    report = audit(path)
    assert found(report) == {
        ("MMC003", "model.img_backbone", "custom_keys.img_backbone", "frozen_stages.py", 8),
        ("MMC001", "model.pts_backbone", "frozen_stages", "frozen_stages.py", 5),
    }
    message = next(f.message for f in report.findings if f.code.name == "MMC003")
    assert "layer4 still require grad" in message and "BatchNorm statistics do not move" in message
    assert report.components[0].frozen_stages.startswith("3: stem + layer1..3; layer4 trainable")


def test_frozen_stages_5_is_out_of_range(tmp_path):
    path = tmp_path / "r50.py"
    path.write_text(
        "model = dict(type='RetinaNet', backbone=dict(type='ResNet', depth=50, frozen_stages=5))\n"
    )
    (finding,) = audit(path).findings
    assert (finding.code.name, finding.severity, finding.key, finding.line) == (
        "MMC002",
        "error",
        "frozen_stages",
        1,
    )
    assert "layer5" in finding.message and "-1 to 4" in finding.message


def test_delete_case_swin():
    report = audit(MM / "delete" / "swin_child.py")
    assert found(report) == {
        ("MMC001", "model.backbone", "norm_eval", "swin_child.py", 12),
        ("MMC008", "model.backbone", "frozen_stages", "swin_child.py", 11),
        ("MMC004", "model.backbone", "custom_keys.backbone", "swin_child.py", 19),
    }


def test_custom_imports_case_mmengine_stack():
    report = audit(MM / "custom_imports" / "r50_gn_neck.py")
    name = "r50_gn_neck.py"
    assert report.stack == "mmengine"
    assert found(report) == {
        ("MMC003", "model.backbone", "custom_keys.backbone", name, 27),
        ("MMC006", "model.backbone", "norm_eval", name, 14),
        ("MMC006", "model.neck", "norm_cfg", name, 21),
        ("MMC009", "model.neck", "norm_cfg", name, 21),
        ("MMC010", "optim_wrapper", "exclude_frozen_parameters", name, 29),
        ("MMC011", "model.bbox_head", "type", name, 22),
    }
    assert any("my_plugins.necks" in note for note in report.notes)


def test_vovnet_freezes_only_in_init_weights(tmp_path):
    path = tmp_path / "vov.py"
    path.write_text(
        textwrap.dedent("""
        model = dict(
            type='CmtDetector',
            img_backbone=dict(type='VoVNet', spec_name='V-99-eSE', frozen_stages=4, norm_eval=False,
                              norm_cfg=dict(type='BN')),
        )
        optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-4))
        """)
    )
    report = audit(path)
    assert found(report) == {
        ("MMC001", "model.img_backbone", "norm_cfg", "vov.py", 5),
        ("MMC006", "model.img_backbone", "norm_eval", "vov.py", 4),
        ("MMC008", "model.img_backbone", "frozen_stages", "vov.py", 4),
    }
    timing = next(f.message for f in report.findings if f.code.name == "MMC008")
    assert "after building the optimizer" in timing


def test_base_only_custom_key_still_applies(tmp_path):
    (tmp_path / "base.py").write_text(
        "model = dict(type='M', backbone=dict(type='ResNet', depth=50))\n"
        "optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1),\n"
        "    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.1), 'neck': dict(lr_mult=2.0)}))\n"
    )
    child = tmp_path / "child.py"
    child.write_text(
        "_base_ = './base.py'\n"
        "optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=0.5)}))\n"
    )
    report = audit(child)
    assert found(report) == {
        ("MMC007", "", "custom_keys.neck", "base.py", 3),
        ("MMC005", "", "custom_keys.neck", "base.py", 3),
    }
    message = next(f.message for f in report.findings if f.code.name == "MMC007")
    assert "still applies" in message and "_delete_=True" in message


def test_vovnet_on_the_mmcv1_stack(tmp_path):
    path = tmp_path / "vovnet_mmcv1.py"
    path.write_text(
        textwrap.dedent("""\
        model = dict(
            type='CmtDetector',
            img_backbone=dict(type='VoVNet', spec_name='V-99-eSE', frozen_stages=4, norm_eval=True),
            pts_backbone=dict(type='SECOND', in_channels=256, frozen_stages=4),
        )
        optimizer = dict(type='AdamW', lr=0.00014, paramwise_cfg=dict(custom_keys={
            'img_backbone': dict(lr_mult=0.0),
            'pts_backbone': dict(lr_mult=0.0),
        }))
        optimizer_config = dict(
            type='Fp16OptimizerHook',
            grad_clip=dict(max_norm=35, norm_type=2),
            exclude_frozen_parameters=True)
        """)
    )
    report = audit(path)
    assert report.stack == "mmcv1"
    assert found(report) == {
        ("MMC001", "model.pts_backbone", "frozen_stages", "vovnet_mmcv1.py", 4),
        ("MMC003", "model.pts_backbone", "custom_keys.pts_backbone", "vovnet_mmcv1.py", 8),
        ("MMC006", "model.pts_backbone", "custom_keys.pts_backbone", "vovnet_mmcv1.py", 8),
        # tools/train.py calls init_weights() before building the optimizer: VoVNet is frozen in time
        ("MMC004", "model.img_backbone", "custom_keys.img_backbone", "vovnet_mmcv1.py", 7),
        ("MMC008", "model.img_backbone", "frozen_stages", "vovnet_mmcv1.py", 3),
        ("MMC010", "optimizer_config", "exclude_frozen_parameters", "vovnet_mmcv1.py", 13),
    }
    messages = {f.code.name: f.message for f in report.findings}
    assert "train() never re-freezes" in messages["MMC008"]
    assert "Fp16OptimizerHook does not accept exclude_frozen_parameters" in messages["MMC010"]


def test_cli_json_and_output_file(tmp_path):
    out = tmp_path / "report.json"
    result = CliRunner().invoke(
        cli, ["config", "audit", "--format", "json", "-o", str(out), str(CMT_AQR)]
    )
    assert result.exit_code == 1, result.output  # three MMC001 errors
    document = json.loads(out.read_text())
    assert document == json.loads(result.output)
    finding = next(f for f in document["findings"] if f["key"] == "custom_keys.query_embed")
    assert set(finding) == {"code", "severity", "component", "key", "file", "line", "message"}
    assert (finding["code"], finding["severity"], finding["line"]) == ("MMC005", "warning", 51)
    assert document["summary"] == {"error": 3, "warning": 5, "info": 6}


def test_cli_exit_codes_like_a_linter():
    runner = CliRunner()

    def code(*args):
        return runner.invoke(cli, ["config", "audit", *args]).exit_code

    # the variant's build raises TypeError three times: exit 1 without any flag
    assert code(str(CMT_AQR)) == 1
    assert code("--strict", str(CMT_AQR)) == 1
    assert code("--exit-zero", str(CMT_AQR)) == 0
    assert code("--exit-zero", "--strict", str(CMT_AQR)) == 0
    # unknown types alone are not errors; --strict makes them one
    unknown = MM / "bad" / "unknown_types.py"
    assert code(str(unknown)) == 0
    assert code("--strict", str(unknown)) == 1
    # one crashing config among several fails the run
    assert code(str(unknown), str(CMT_AQR)) == 1
    # bad input stays exit 2, also with --exit-zero
    assert code("--exit-zero", str(MM / "bad" / "no_model.py")) == 2


@pytest.mark.parametrize(
    "name, words",
    [
        ("no_model.py", "no_model.py:1: no model = dict(...)"),
        ("syntax_error.py", "syntax_error.py:1: cannot parse"),
        ("cycle_a.py", "form a cycle"),
        ("missing_base.py", "does_not_exist.py does not exist"),
        (
            "uses_function.py",
            "uses_function.py:4: the static resolver does not evaluate a function definition; "
            "use --resolver mmengine",
        ),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(name, words):
    result = CliRunner().invoke(cli, ["config", "audit", str(MM / "bad" / name)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and lines[0].startswith("bn2gn: error: ")


def test_cli_lazy_config_and_missing_file():
    result = CliRunner().invoke(cli, ["config", "audit", str(MM / "lazy" / "retinanet_lazy.py")])
    assert result.exit_code == 2 and "retinanet_lazy.py:4: new-style lazy config" in result.output
    result = CliRunner().invoke(cli, ["config", "audit", str(MM / "nope.py")])
    assert result.exit_code == 2 and "no such config file" in result.output
