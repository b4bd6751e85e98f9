"""The static config resolver: mmengine's merge rules, provenance, and what it refuses."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bn2gn.core.errors import SourceError
from bn2gn.openmmlab import LazyConfig, RefusedConstruct, resolve_config
from bn2gn.openmmlab.values import to_plain

MM = Path(__file__).resolve().parents[2] / "fixtures" / "mmconfig"
FUSION = MM / "cmt" / "projects" / "configs" / "fusion"
CMT_BASE = FUSION / "cmt_voxel0100_r50_800x320_cbgs.py"
CMT_AQR = FUSION / "cmt_aqr_voxel0100_r50_800x320_cbgs.py"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_camera_lidar_variant_merges_into_the_base_with_provenance():
    cfg = resolve_config(CMT_AQR)
    backbone = cfg.data["model"]["img_backbone"]
    assert backbone["type"] == "ResNet" and backbone["depth"] == 50
    assert backbone["frozen_stages"] == 4 and backbone["norm_eval"] is True
    assert backbone["norm_cfg"] == {"type": "BN2d", "requires_grad": False}
    # frozen_stages comes from the user's file (line 16), depth from the base (line 16 there too)
    assert (backbone.origin("frozen_stages").file, backbone.origin("frozen_stages").line) == (
        CMT_AQR,
        16,
    )
    assert (backbone.origin("depth").file, backbone.origin("depth").line) == (CMT_BASE, 16)
    # custom_keys merge too: the child's dict(lr_mult=0.0) keeps the base's decay_mult=5
    keys = cfg.data["optimizer"]["paramwise_cfg"]["custom_keys"]
    assert keys["img_backbone"] == {"lr_mult": 0.0, "decay_mult": 5}
    assert keys["img_backbone"].origin("decay_mult").file == CMT_BASE
    assert keys["img_neck"] == {"lr_mult": 0.05}
    assert cfg.files == (CMT_AQR, CMT_BASE)
    # the base's comprehension and arithmetic
    assert cfg.data["grid_size"] == [1080, 1080, 40]
    assert cfg.data["model"]["pts_bbox_head"]["tasks"][0]["num_class"] == 5
    assert cfg.data["model"]["pts_bbox_head"]["type"] == "CmtAQRHead"
    assert cfg.data["model"]["pts_bbox_head"]["attention_bias_config"]["window_size"] == 8


def test_delete_replaces_a_whole_dict():
    cfg = resolve_config(MM / "delete" / "swin_child.py")
    backbone = cfg.data["model"]["backbone"]
    assert backbone["type"] == "SwinTransformer"
    assert "depth" not in backbone and "norm_cfg" not in backbone and "_delete_" not in backbone
    assert cfg.data["model"]["neck"]["in_channels"] == [192, 384, 768]  # list replaced, not merged
    assert cfg.data["model"]["neck"]["out_channels"] == 256
    assert cfg.data["optim_wrapper"]["paramwise_cfg"]["custom_keys"] == {
        "backbone": {"lr_mult": 0.0}
    }
    assert cfg.data["optim_wrapper"]["optimizer"]["lr"] == 0.01


def test_expressions_classic_configs_use(tmp_path):
    path = write(
        tmp_path,
        "c.py",
        """
        a = 2
        b = [a * 3, a ** 2, 7 // 2, 7 % 4, -a, 1 / 4]
        c = dict(x=1, **dict(y=2))
        d = {'k': 1, **c}
        e = f"w{a:03d}_{'x'!r}"
        f = [i for i in range(3) if i != 1]
        g = {k: v for k, v in zip('ab', (1, 2))}
        h = b[1:3] + [len(b), sum([1, 2]), max(1, 5)]
        i = d['k'] if a > 1 and True else None
        k = 'a_{}'.format(a)
        tmp = 1
        del tmp
        d['z'] = 3
        a += 1
        """,
    )
    data = resolve_config(path).data
    assert data["b"] == [6, 4, 3, 3, -2, 0.25]
    assert data["c"] == {"x": 1, "y": 2}
    assert data["d"] == {"k": 1, "x": 1, "y": 2, "z": 3}
    assert data["e"] == "w002_'x'"
    assert data["f"] == [0, 2] and data["g"] == {"a": 1, "b": 2}
    assert data["h"] == [4, 3, 6, 3, 5]
    assert data["i"] == 1 and data["k"] == "a_2" and data["a"] == 3
    assert "tmp" not in data
    assert data["d"].origin("z").line == 14


def test_base_reference_and_placeholder(tmp_path):
    write(tmp_path, "base.py", "model = dict(depth=50, width=[64, 128])\nlr = 0.1\n")
    path = write(
        tmp_path,
        "child.py",
        """
        _base_ = 'base.py'
        depth = _base_.model.depth + 51
        widths = '{{_base_.model.width}}'
        model = dict(width=[32])
        """,
    )
    data = resolve_config(path).data
    assert data["depth"] == 101 and data["widths"] == [64, 128]
    assert data["model"] == {"depth": 50, "width": [32]} and data["lr"] == 0.1


def test_undefined_names_are_errors_with_a_line(tmp_path):
    path = write(tmp_path, "c.py", "a = 1\nb = '{{_base_.nothing}}'\n")
    with pytest.raises(SourceError) as info:
        resolve_config(path)
    assert info.value.line == 2 and "not defined" in info.value.reason
    path = write(tmp_path, "d.py", "a = undefined_name\n")
    with pytest.raises(SourceError, match="'undefined_name' is not defined"):
        resolve_config(path)


def test_refused_constructs_name_file_and_line():
    with pytest.raises(RefusedConstruct) as info:
        resolve_config(MM / "bad" / "uses_function.py")
    assert info.value.line == 4 and "use resolver=mmengine" in info.value.reason
    with pytest.raises(RefusedConstruct) as info:
        resolve_config(MM / "bad" / "imports_os.py")
    assert info.value.line == 2 and "an import" in info.value.reason


def test_refused_calls_are_never_made(tmp_path):
    marker = tmp_path / "ran"
    path = write(tmp_path, "evil.py", f"x = open({str(marker)!r}, 'w')\n")
    with pytest.raises(RefusedConstruct) as info:
        resolve_config(path)
    assert info.value.line == 1 and "open" in info.value.reason
    assert not marker.exists()
    path = write(tmp_path, "evil2.py", "x = ().__class__.__bases__\n")
    with pytest.raises(RefusedConstruct):
        resolve_config(path)


def test_runaway_sizes_are_refused(tmp_path):
    path = write(tmp_path, "big.py", "x = [i for i in range(10**9)]\n")
    with pytest.raises(SourceError, match="more than a config needs"):
        resolve_config(path)
    path = write(tmp_path, "big2.py", "x = [i * j for i in range(2000) for j in range(2000)]\n")
    with pytest.raises(RefusedConstruct, match="comprehensions of more than"):
        resolve_config(path)
    path = write(tmp_path, "deep.py", "x = " + "(" * 3000 + "1" + ")" * 3000 + "\n")
    with pytest.raises(SourceError):
        resolve_config(path)


def test_lazy_config_is_detected():
    with pytest.raises(LazyConfig) as info:
        resolve_config(MM / "lazy" / "retinanet_lazy.py")
    assert info.value.line == 4 and "read_base" in info.value.reason


@pytest.mark.parametrize(
    "name, line, words",
    [
        ("cycle_a.py", 1, "cycle"),
        ("missing_base.py", 1, "does not exist"),
        ("syntax_error.py", 1, "cannot parse"),
    ],
)
def test_bad_chains(name, line, words):
    with pytest.raises(SourceError) as info:
        resolve_config(MM / "bad" / name)
    assert info.value.line == line and words in info.value.reason


def test_duplicate_keys_among_bases_are_refused(tmp_path):
    write(tmp_path, "a.py", "x = 1\n")
    write(tmp_path, "b.py", "x = 2\n")
    path = write(tmp_path, "c.py", "_base_ = ['a.py', 'b.py']\n")
    with pytest.raises(SourceError, match="both define x"):
        resolve_config(path)


def test_missing_file():
    with pytest.raises(SourceError, match="no such config file"):
        resolve_config(MM / "nope.py")


@pytest.mark.parametrize(
    "config", [CMT_AQR, MM / "delete" / "swin_child.py", MM / "custom_imports" / "r50_gn_neck.py"]
)
def test_agrees_with_mmengine(config):
    mmengine_config = pytest.importorskip("mmengine.config")
    theirs = mmengine_config.Config.fromfile(str(config), import_custom_modules=False).to_dict()

    def norm(value):
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [norm(v) for v in value]
        return value

    assert norm(to_plain(resolve_config(config).data)) == norm(theirs)
