"""looks_like_openmmlab_config: the fixtures are configs; ordinary model code is not."""

from pathlib import Path

import pytest

from bn2gn.decide.openmmlab import looks_like_openmmlab_config, openmmlab_config_note

ROOT = Path(__file__).resolve().parents[2]
MM = ROOT / "fixtures" / "mmconfig"


@pytest.mark.parametrize(
    "name",
    [
        "cmt/projects/configs/fusion/cmt_aqr_voxel0100_r50_800x320_cbgs.py",
        "cmt/projects/configs/fusion/cmt_voxel0100_r50_800x320_cbgs.py",
        "delete/swin_child.py",
        "custom_imports/r50_gn_neck.py",
        "lazy/retinanet_lazy.py",
    ],
)
def test_configs_are_recognised(name):
    assert looks_like_openmmlab_config((MM / name).read_text())


@pytest.mark.parametrize(
    "text",
    [
        "import torch.nn as nn\n\nclass Net(nn.Module):\n    pass\n",
        "model = dict(a=1)\n",  # one name: too little to say
        "def build():\n    model = dict(type='X')\n    return model\n",
        "x = (\n",
        "",
    ],
)
def test_other_files_are_not(text):
    assert not looks_like_openmmlab_config(text)


def test_plugin_code_is_not_a_config():
    assert not looks_like_openmmlab_config(
        (MM / "cmt/projects/mmdet3d_plugin/models/dense_heads/cmt_aqr_head.py").read_bytes()
    )


def test_note():
    assert openmmlab_config_note(
        "a.py", "model = dict(type='X')\noptimizer = dict(type='SGD')\n"
    ) == ("a.py: looks like an OpenMMLab config; bn2gn config audit a.py checks its freezing")
    assert openmmlab_config_note("a.py", "x = 1\n") is None
