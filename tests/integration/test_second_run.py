"""A second identical run after a successful migration changes nothing and succeeds: a
``--convert`` override whose sites are get_group_norm calls already is satisfied, not a usage
error."""

from __future__ import annotations

import pytest
from conftest import run_cli, snapshot

BLOCKS = """\
import torch.nn as nn


class BasicBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3)
        self.bn = nn.BatchNorm2d(c)
"""
NET = """\
import torch.nn as nn

from .blocks import BasicBlock


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
        self.head = BasicBlock(8)
"""


@pytest.fixture
def tree(tmp_path):
    models = tmp_path / "src" / "lib" / "models"
    models.mkdir(parents=True)
    (models / "blocks.py").write_text(BLOCKS)
    (models / "net.py").write_text(NET)
    return tmp_path


@pytest.mark.parametrize(
    "override", ["BasicBlock", "BasicBlock.__init__", "src/lib/models/blocks.py:BasicBlock"]
)
def test_second_run_with_the_same_convert_override_is_a_no_op(tree, override):
    args = ["rewrite", "src/lib/models", "--convert", override]
    first = run_cli(args, cwd=tree)
    assert first.exit_code == 0, first.output
    assert "self.bn = get_group_norm(c)" in (tree / "src/lib/models/blocks.py").read_text()
    after = snapshot(tree)
    for extra in ([], ["--check"]):
        again = run_cli(args + extra, cwd=tree)
        assert again.exit_code == 0, again.output
        assert snapshot(tree) == after


def test_an_override_matching_nothing_at_all_is_still_a_usage_error(tree):
    result = run_cli(["rewrite", "src/lib/models", "--convert", "NoSuchBlock"], cwd=tree)
    assert result.exit_code == 2
    assert "--convert NoSuchBlock: matches no BatchNorm site" in result.stderr
