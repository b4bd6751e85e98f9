"""scan and rewrite point at `bn2gn config audit` for files that look like OpenMMLab configs."""

import json

from conftest import run_cli

CONFIG = "_base_ = ['./base.py']\nmodel = dict(backbone=dict(frozen_stages=4, norm_eval=True))\n"
NOT_A_CONFIG = "def build():\n    model = dict(a=1)\n    return model\n"
MODEL = (
    "import torch.nn as nn\n\n\nclass Head(nn.Module):\n    def __init__(self):\n"
    "        super().__init__()\n        self.bn = nn.BatchNorm2d(8)\n"
)


def _tree(tmp_path):
    (tmp_path / "cfg.py").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "helpers.py").write_text(NOT_A_CONFIG, encoding="utf-8")
    (tmp_path / "head.py").write_text(MODEL, encoding="utf-8")
    return tmp_path


def test_scan_names_the_config_and_not_the_helper(tmp_path):
    result = run_cli(["scan", "."], cwd=_tree(tmp_path))
    notes = [line for line in result.output.splitlines() if "OpenMMLab" in line]
    assert notes == [
        "note: 1 file(s) look like OpenMMLab configs (cfg.py); rewrite does not change configs: "
        "bn2gn config audit cfg.py checks their freezing"
    ]
    data = json.loads(run_cli(["scan", ".", "--format", "json"], cwd=tmp_path).output)
    assert data["openmmlab_configs"] == ["cfg.py"]


def test_rewrite_notes_the_config_and_leaves_it(tmp_path):
    result = run_cli(["rewrite", "."], cwd=_tree(tmp_path))
    assert "bn2gn config audit cfg.py" in result.output
    assert (tmp_path / "cfg.py").read_text(encoding="utf-8") == CONFIG


def test_no_note_without_configs(tmp_path):
    (tmp_path / "head.py").write_text(MODEL, encoding="utf-8")
    assert "OpenMMLab" not in run_cli(["scan", "."], cwd=tmp_path).output
