"""Class facts from the source the config's stack imports; findings written by hand from the fixtures.

The fixtures model the shapes that the built-in table got wrong: a head subclass that sets an
inherited module to None, a head whose **kwargs are swallowed, a neck with FPN's exact keywords
and no **kwargs, two VoVNets of different projects, a hook subclass passing **kwargs on to mmcv's,
an unknown type with custom keys under it, and a SparseEncoder keyword that only newer mmdet3d has.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

from click.testing import CliRunner

from bn2gn.cli import cli
from bn2gn.openmmlab.audit import audit, render_text
from bn2gn.openmmlab.plugins import Catalog, open_catalog

MM = Path(__file__).resolve().parents[2] / "fixtures" / "mmconfig"
CMT = MM / "cmt"
CAMERA = CMT / "projects" / "configs" / "camera"
BASE = "cmt_voxel0100_r50_800x320_cbgs.py"
PLUGIN = CMT / "projects" / "mmdet3d_plugin"
DETR3D = MM / "mmdet3d_checkout" / "projects" / "DETR3D" / "configs" / "detr3d_vovnet_groupfree.py"


def found(report):
    return {
        (f.code.name, f.component, f.key, Path(f.file).name if f.file else None, f.line)
        for f in report.findings
    }


def messages(report):
    return {(f.code.name, f.key): f.message for f in report.findings}


def test_camera_only_head_drops_shared_conv_and_ignores_kwargs():
    report = audit(CAMERA / "cmt_camera_only.py")
    name = "cmt_camera_only.py"
    assert found(report) == {
        # CPFPN takes FPN's thirteen keywords and no **kwargs
        ("MMC001", "model.img_neck", "frozen_stages", name, 5),
        # CmtHead takes **kwargs and never uses them: both settings do nothing
        ("MMC012", "model.pts_bbox_head", "norm_eval", name, 8),
        ("MMC012", "model.pts_bbox_head", "frozen_stages", name, 9),
        # CmtImageHead sets shared_conv = None after super().__init__()
        ("MMC005", "", "custom_keys.shared_conv", name, 15),
        # the project's hook passes **kwargs on to mmcv 1.6's Fp16OptimizerHook
        ("MMC010", "optimizer_config", "exclude_frozen_parameters", name, 19),
        # the base's custom keys still apply beside the child's
        ("MMC007", "", "custom_keys.img_backbone", BASE, 85),
        ("MMC007", "", "custom_keys.img_neck", BASE, 86),
        ("MMC009", "model.pts_neck", "norm_cfg", BASE, 65),
        # no MMC009 for the head: without shared_conv it holds no BatchNorm
    }
    text = messages(report)
    assert text[("MMC012", "norm_eval")].startswith(
        "accepted and ignored: this setting does nothing. CmtImageHead takes norm_eval=True "
        "through **kwargs, which CmtHead.__init__ ("
    )
    assert "cmt_head.py:14)" in text[("MMC012", "norm_eval")]
    assert (
        "CmtImageHead sets shared_conv = None after super().__init__() ("
        in (text[("MMC005", "custom_keys.shared_conv")])
    )
    assert "cmt_head.py:72)" in text[("MMC005", "custom_keys.shared_conv")]
    hook = text[("MMC010", "exclude_frozen_parameters")]
    assert "CustomFp16OptimizerHook does not accept exclude_frozen_parameters" in hook
    assert "fp16_hook.py:9 passes **kwargs on to Fp16OptimizerHook (bn2gn's table)" in hook
    assert "bucket_size_mb, coalesce, custom_fp16, distributed, grad_clip, loss_scale" in hook
    head = next(c for c in report.components if c.component == "model.pts_bbox_head")
    assert head.known_as.startswith("CmtImageHead (plugin folder, ")
    assert head.facts["hard-coded BatchNorm"] == "none in the source"
    assert head.norm == "none"


def test_lidar_only_head_drops_rv_embedding():
    report = audit(CAMERA / "cmt_lidar_only.py")
    name = "cmt_lidar_only.py"
    assert found(report) == {
        ("MMC005", "", "custom_keys.rv_embedding", name, 5),
        ("MMC007", "", "custom_keys.img_backbone", BASE, 85),
        ("MMC007", "", "custom_keys.img_neck", BASE, 86),
        ("MMC009", "model.pts_neck", "norm_cfg", BASE, 65),
        # shared_conv is still there, BatchNorm written into its ConvModule
        ("MMC009", "model.pts_bbox_head", "", name, 4),
    }
    text = messages(report)
    assert "cmt_head.py:41)" in text[("MMC009", "")]
    assert "CmtLidarHead sets rv_embedding = None" in text[("MMC005", "custom_keys.rv_embedding")]


def test_same_class_name_in_another_project_is_that_projects_class():
    """The DETR3D-shaped VoVNet re-freezes in train(); the camera+LiDAR one only in init_weights()."""
    report = audit(DETR3D)
    name = DETR3D.name
    assert found(report) == {
        ("MMC008", "model.img_backbone", "frozen_stages", name, 7),
        ("MMC011", "model.img_neck", "type", name, 8),
        # GroupFree3DHead's decoder_* and SparseEncoder's return_middle_feats come from the
        # checkout's own source: no MMC005, no MMC001
    }
    text = messages(report)
    assert text[("MMC008", "frozen_stages")].startswith("VoVNet freezes only in train(): ")
    unknown = text[("MMC011", "type")]
    assert "'MysteryNeck' (also model.neck)" in unknown
    assert unknown.endswith("custom keys not checked because of it: 'neck.lateral_convs'")
    backbone = report.components[0]
    assert backbone.known_as.startswith("VoVNet (custom_imports, ")
    assert backbone.facts["freezing"].startswith("train: ")
    assert backbone.facts["freezing"].endswith("detr3d/vovnet.py:37")
    assert backbone.facts["stages"] == "bn2gn's table (VoVNet)"


def test_cmt_vovnet_from_its_plugin_freezes_in_init_weights(tmp_path):
    shutil.copytree(CMT, tmp_path / "cmt")
    config = tmp_path / "cmt" / "projects" / "configs" / "vov_probe.py"
    config.write_text(
        "plugin_dir = 'projects/mmdet3d_plugin/'\n"
        "model = dict(type='CmtDetector', img_backbone=dict(type='VoVNet', spec_name='V-99-eSE',\n"
        "    frozen_stages=4, norm_eval=False))\n"
        "optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-4))\n"
    )
    report = audit(config)
    assert found(report) == {
        ("MMC006", "model.img_backbone", "norm_eval", "vov_probe.py", 3),
        ("MMC008", "model.img_backbone", "frozen_stages", "vov_probe.py", 3),
    }
    assert "freezes only in init_weights()" in messages(report)[("MMC008", "frozen_stages")]
    assert report.components[0].facts["freezing"].endswith("backbones/vovnet.py:47")


def test_pinned_older_mmdet3d_has_no_return_middle_feats():
    report = audit(CAMERA / "cmt_middle_feats.py")
    assert (
        "MMC001",
        "model.pts_middle_encoder",
        "return_middle_feats",
        "cmt_middle_feats.py",
        4,
    ) in (found(report))
    encoder = next(c for c in report.components if c.component == "model.pts_middle_encoder")
    assert encoder.known_as.startswith("SparseEncoder (mmdet3d 1.0.0rc5, ")
    assert any("mmdet3d==1.0.0rc5 pinned at " in line for line in report.assumed)
    assert any(line.endswith("requirements.txt:5") for line in report.assumed)


def test_unknown_type_keys_are_unchecked_not_unmatched(tmp_path):
    path = tmp_path / "c.py"
    path.write_text(
        textwrap.dedent("""\
        model = dict(type='M', bbox_head=dict(type='NowhereHead', in_channels=8),
                     neck=dict(type='FPN', in_channels=[8], out_channels=8, num_outs=1))
        optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1), paramwise_cfg=dict(custom_keys={
            'bbox_head.decoder_self_attns': dict(lr_mult=0.1), 'neck.nothing_here': dict(lr_mult=0.1)}))
        """)
    )
    report = audit(path)
    assert found(report) == {
        ("MMC011", "model.bbox_head", "type", "c.py", 1),
        # a key under a known component that names nothing there is still MMC005
        ("MMC005", "", "custom_keys.neck.nothing_here", "c.py", 4),
    }
    assert messages(report)[("MMC011", "type")].endswith(
        "custom keys not checked because of it: 'bbox_head.decoder_self_attns'"
    )


def test_plugin_file_that_does_not_parse_falls_back_to_the_table(tmp_path):
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "heads.py").write_text(
        "from mmdet.models import HEADS\n\n\n@HEADS.register_module()\nclass CmtHead(object:\n    pass\n"
    )
    config = tmp_path / "c.py"
    config.write_text(
        "plugin_dir = 'plugin/'\n"
        "model = dict(type='M', pts_bbox_head=dict(type='CmtHead', in_channels=8))\n"
    )
    report = audit(config)
    head = report.components[0]
    assert head.facts == {"everything": "bn2gn's table"}
    (note,) = [n for n in report.notes if "cannot parse" in n]
    assert note.startswith(f"{plugin / 'heads.py'}:5: cannot parse (")
    assert note.endswith("CmtHead could not be read there, so its facts come from bn2gn's table")
    result = CliRunner().invoke(cli, ["config", "audit", str(config)])
    assert result.exit_code == 0 and "note: " in result.output and "Traceback" not in result.output


def test_subclass_forwarding_kwargs_gets_its_bases_keys(tmp_path):
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "necks.py").write_text(
        textwrap.dedent("""\
        from mmdet.models import NECKS

        from .base import Base


        @NECKS.register_module()
        class Child(Base):
            def __init__(self, extra=1, **kwargs):
                super().__init__(**kwargs)


        @NECKS.register_module()
        class Stores(Base):
            def __init__(self, **kwargs):
                super().__init__()
                self.options = kwargs


        class Middle(Base):
            def __init__(self, middle=2, **kwargs):
                super().__init__()


        @NECKS.register_module()
        class Skips(Child, Middle):
            def __init__(self, own=3, **kwargs):
                super(Middle, self).__init__(**kwargs)
        """)
    )
    (plugin / "base.py").write_text(
        "from mmcv.runner import BaseModule\n\n\nclass Base(BaseModule):\n"
        "    def __init__(self, width=8, init_cfg=None):\n        super().__init__(init_cfg)\n"
    )
    catalog = Catalog([plugin])
    child = catalog.lookup("Child")
    assert child.accepts == {"extra", "width", "init_cfg"} and child.extra == "reject"
    assert catalog.lookup("Stores").extra == "unknown"  # stored: it may be read later
    # super(Middle, self) runs Base.__init__: neither Child's nor Middle's keywords
    skips = catalog.lookup("Skips")
    assert skips.accepts == {"own", "width", "init_cfg"} and skips.extra == "reject"
    assert catalog.lookup("Nowhere") is None


def test_groupnorm_caveat_for_a_pretrained_neck_at_a_small_lr_mult(tmp_path):
    shutil.copytree(CMT, tmp_path / "cmt")
    config = (
        tmp_path
        / "cmt"
        / "projects"
        / "configs"
        / "fusion"
        / "cmt_aqr_voxel0100_r50_800x320_cbgs.py"
    )
    report = audit(config)
    neck = next(f for f in report.findings if f.code.name == "MMC009" and f.key == "norm_cfg")
    assert str(neck.message).endswith(
        "; caveat: 'ckpts/cmt_voxel0100_r50_800x320_epoch20.pth' holds this component's trained "
        "BatchNorm, which GroupNorm cannot use: the GroupNorm layers start untrained (weight 1, "
        "bias 0), and at lr_mult=0.05 ('pts_neck') it learns 20x slower than the rest"
    )
    result = CliRunner().invoke(cli, ["config", "rewrite", str(config), "--gn", "pts_neck"])
    assert result.exit_code == 0, result.output
    assert (
        "note: model.pts_neck: 'ckpts/cmt_voxel0100_r50_800x320_epoch20.pth' holds this "
        "component's trained BatchNorm" in result.stderr
    )


def test_no_groupnorm_caveat_without_a_checkpoint(tmp_path):
    path = tmp_path / "c.py"
    path.write_text(
        "model = dict(type='M', neck=dict(type='FPN', in_channels=[8], out_channels=8, num_outs=1,\n"
        "    norm_cfg=dict(type='BN')))\n"
    )
    (finding,) = [f for f in audit(path).findings if f.code.name == "MMC009"]
    assert "; caveat:" not in str(finding.message)


def test_learning_rate_per_module_and_nearest_names_for_a_key_that_matches_nothing():
    report = audit(
        CMT / "projects" / "configs" / "fusion" / "cmt_aqr_voxel0100_r50_800x320_cbgs.py"
    )
    head = next(c for c in report.components if c.component == "model.pts_bbox_head")
    # written by hand from the variant's custom_keys and the fixture head's children
    assert head.rates == {
        "shared_conv": "lr_mult=0.5 ('shared_conv')",
        "reference_points": "lr_mult=0.3 ('reference_points')",
        "bev_embedding, rv_embedding": "base rate",
        "transformer": "lr_mult=0.5 ('transformer')",
        "task_heads": "lr_mult=0.8 ('task_heads')",
        "aqr_weight_generator": "lr_mult=1.0 ('aqr_weight_generator')",
        "attention_bias_generator": "lr_mult=1.0 ('attention_bias_generator'), except names "
        "containing 'attention_bias_generator.bias_scale'",
    }
    neck = next(c for c in report.components if c.component == "model.pts_neck")
    assert neck.rates == {"deblocks": "lr_mult=0.05 ('pts_neck')"}
    (unmatched,) = [f for f in report.findings if f.code.name == "MMC005"]
    assert unmatched.message.endswith(
        "; 'query_embed' is a method of CmtAQRHead, not a module"
        "; nearest module names: 'bev_embedding' (model.pts_bbox_head.bev_embedding), "
        "'rv_embedding' (model.pts_bbox_head.rv_embedding)"
    )
    text = "\n".join(render_text(report))
    assert "    lr by module: shared_conv: lr_mult=0.5 ('shared_conv'); " in text


def test_registry_scope_picks_the_package():
    catalog = open_catalog(
        MM / "mmdet3d_checkout" / "configs" / "second" / "second_probe.py", {}, (), True
    )
    # the checkout's own mmdet3d package holds SECOND
    assert catalog.lookup("mmdet3d.SECOND").source.endswith("mmdet3d/models/backbones/second.py:11")
    # another package's class of the same name is not the table's mmdet3d SECOND / mmdet ResNet
    assert catalog.lookup("mmdet.SECOND") is None
    assert catalog.lookup("mmpretrain.ResNet") is None
    assert catalog.lookup("mmdet3d.HardSimpleVFE").package == "mmdet3d 1.4.0"


def test_versions_the_audit_assumed_and_the_json_shape():
    config = CMT / "projects" / "configs" / "fusion" / "cmt_aqr_voxel0100_r50_800x320_cbgs.py"
    result = CliRunner().invoke(
        cli, ["config", "audit", "--format", "json", "--exit-zero", str(config)]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert (
        "the versions bn2gn's table is read for: mmdet 2.24.0, mmdet3d 1.0.0" in document["assumed"]
    )
    known = {c["component"]: c["known_as"] for c in document["components"]}
    # the table knows HardSimpleVFE from mmdet3d 1.4.0 only, and says it took it as the same
    assert known["model.pts_voxel_encoder"].startswith(
        "HardSimpleVFE (mmdet3d 1.4.0; the config targets mmdet3d 1.0.0, taken to be the same, "
    )
    assert known["model.pts_middle_encoder"].startswith("SparseEncoder (mmdet3d 1.0.0rc5, ")
    head = next(c for c in document["components"] if c["component"] == "model.pts_bbox_head")
    assert set(head["facts"]) == {
        "signature",
        "children",
        "hard-coded BatchNorm",
        "freezing",
        "stages",
    }
    assert head["rates"]["bev_embedding, rv_embedding"] == "base rate"


def test_a_subclass_that_replaces_a_module_without_batchnorm_is_no_groupnorm_candidate(tmp_path):
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    shutil.copy(PLUGIN / "models" / "dense_heads" / "cmt_head.py", plugin / "cmt_head.py")
    (plugin / "light_head.py").write_text(
        textwrap.dedent("""\
        import torch.nn as nn
        from mmdet.models import HEADS

        from .cmt_head import CmtHead


        @HEADS.register_module()
        class LightHead(CmtHead):
            def __init__(self, norm_eval=False, **kwargs):
                super().__init__(**kwargs)
                self.shared_conv = nn.Conv2d(8, 8, 3)
        """)
    )
    config = tmp_path / "c.py"
    config.write_text(
        "plugin_dir = 'plugin/'\n"
        "model = dict(type='M', pts_bbox_head=dict(type='LightHead', in_channels=8, norm_eval=True))\n"
        "optimizer = dict(type='SGD', lr=0.1, paramwise_cfg=dict(custom_keys={'shared_conv': dict(lr_mult=0.5)}))\n"
    )
    report = audit(config)
    # norm_eval is LightHead's own keyword; shared_conv still exists (no MMC005), without BatchNorm
    assert found(report) == set()
    head = report.components[0]
    assert head.facts["hard-coded BatchNorm"] == "none in the source"
    assert head.rates["shared_conv"] == "lr_mult=0.5 ('shared_conv')"


def test_modules_the_detector_builds_itself_leave_keys_unchecked(tmp_path):
    path = tmp_path / "detr.py"
    path.write_text(
        textwrap.dedent("""\
        model = dict(
            type='DeformableDETR',
            init_cfg=dict(type='Pretrained', checkpoint='x.pth'),
            encoder=dict(num_layers=6, layer_cfg=dict(self_attn_cfg=dict(embed_dims=256))),
            neck=dict(type='FPN', in_channels=[8], out_channels=8, num_outs=1),
        )
        optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-4), paramwise_cfg=dict(custom_keys={
            'sampling_offsets': dict(lr_mult=0.1)}))
        """)
    )
    report = audit(path)
    # no MMC005 (the encoder could hold it), no MMC011 for init_cfg (a setting, not a module)
    assert found(report) == set()
    assert [c.component for c in report.components] == ["model.neck"]
    assert (
        "custom keys not checked: 'sampling_offsets' may name parameters inside model.encoder, "
        "which the detector builds itself"
    ) in report.notes


def test_only_calls_that_build_modules_are_children(tmp_path):
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "neck.py").write_text(
        textwrap.dedent("""\
        import copy

        import torch
        import torch.nn as nn
        from mmdet.models import NECKS


        @NECKS.register_module()
        class Neck(nn.Module):
            def __init__(self, in_channels=(8,), init_cfg=None):
                super().__init__()
                self.num_ins = len(in_channels)
                self.init_cfg = copy.deepcopy(init_cfg)
                self._device = torch.device("cpu")
                self.scale = nn.Parameter(torch.ones(1))
                self.convs = nn.ModuleList()
                self.norm = build_norm_layer(dict(type='BN'), 8)[1]
        """)
    )
    cls = Catalog([plugin]).lookup("Neck")
    assert cls.children == ("scale", "convs", "norm")
    assert cls.hard_coded_bn == ("norm",)


def test_cli_over_a_copied_tree_reports_sources_and_fixes_the_crash(tmp_path):
    shutil.copytree(CMT, tmp_path / "cmt")
    config = tmp_path / "cmt" / "projects" / "configs" / "camera" / "cmt_camera_only.py"
    runner = CliRunner()
    result = runner.invoke(cli, ["config", "audit", str(config)])
    assert result.exit_code == 1  # CPFPN frozen_stages and the hook argument raise at build
    assert "  model.img_neck: CPFPN - CPFPN (plugin folder, " in result.output
    assert "    signature from: CPFPN.__init__ " in result.output
    assert "  assumed: mmdet3d==1.0.0rc5 pinned at " in result.output
    assert "2 error(s), 5 warning(s), 1 info" in result.output
    fixed = runner.invoke(cli, ["config", "rewrite", str(config), "--drop-invalid-keys"])
    assert fixed.exit_code == 0, fixed.output
    assert "img_neck=dict(frozen_stages=1)" not in config.read_text()
    again = runner.invoke(cli, ["config", "audit", "--format", "json", str(config)])
    codes = sorted(
        f["code"] for f in json.loads(again.output)["findings"] if f["severity"] == "error"
    )
    assert again.exit_code == 1 and codes == ["MMC010"]  # the hook is not a model key


def test_a_class_registered_under_another_name(tmp_path):
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "neck.py").write_text(
        "from mmdet.models import NECKS\n\n\n@NECKS.register_module(name='ShortNeck')\n"
        "class VeryLongNeckName:\n    def __init__(self, width=8):\n        pass\n"
    )
    cls = Catalog([plugin]).lookup("ShortNeck")
    assert cls.accepts == {"width"} and cls.source.endswith("neck.py:5")


def test_freezing_runs_through_super_calls(tmp_path):
    """A subclass whose __init__ / train() call the base's freezes where the base does (mmdet's
    ResNeXt over ResNet); super(Base, self).__init__ skips Base's __init__ but not its train()."""
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "nets.py").write_text(
        textwrap.dedent("""\
        import torch.nn as nn
        from mmdet.models import BACKBONES


        class Base(nn.Module):
            def __init__(self, frozen_stages=-1, **kwargs):
                super().__init__()
                self._freeze_stages()

            def train(self, mode=True):
                super().train(mode)
                self._freeze_stages()


        @BACKBONES.register_module()
        class Wider(Base):
            def __init__(self, groups=1, **kwargs):
                super().__init__(**kwargs)


        @BACKBONES.register_module()
        class Jumps(Base):
            def __init__(self, frozen_stages=-1):
                super(Base, self).__init__()
        """)
    )
    catalog = Catalog([plugin])
    assert catalog.lookup("Wider").freeze_runs == ("__init__", "train()")
    assert catalog.lookup("Jumps").freeze_runs == ("train()",)
    assert catalog.lookup("Jumps").accepts == {"frozen_stages"}


def test_a_helper_whose_default_is_batchnorm_but_gets_norm_cfg_is_not_hard_coded(tmp_path):
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "neck.py").write_text(
        textwrap.dedent("""\
        import torch.nn as nn
        from mmcv.cnn import ConvModule
        from mmdet.models import NECKS


        class Block(nn.Module):
            def __init__(self, c, norm_cfg=dict(type='BN', requires_grad=True)):
                super().__init__()
                self.conv = ConvModule(c, c, 3, norm_cfg=norm_cfg)


        @NECKS.register_module()
        class Neck(nn.Module):
            def __init__(self, c=8, norm_cfg=None):
                super().__init__()
                self.block = Block(c, norm_cfg=norm_cfg)
                self.fixed = Block(c)
        """)
    )
    # by hand: self.block passes norm_cfg on (the config decides); self.fixed keeps Block's
    # BatchNorm default whatever the config says
    assert Catalog([plugin]).lookup("Neck").hard_coded_bn == ("fixed",)
