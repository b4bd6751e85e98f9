"""The LibCST shapes the ``ast`` planner models: one-line suites, ``a; b`` lines, ``elif``,
decorated definitions, and columns after non-ASCII text (``ast`` counts bytes, LibCST characters).

Expected edits are read off the sources by hand.
"""

from __future__ import annotations

import ast
from pathlib import Path

from bn2gn.core.rule_codes import Rule
from bn2gn.core.source_files import decode_source
from bn2gn.source.patch_trainer import DEFAULT_RULES, TrainerOptions, patch_source

SHAPES = """import torch


def run(model, loader, resume):
    if resume: model.train()
    x = "é"; opt = torch.optim.SGD(model.parameters(), lr=0.1)
    if loader:
        pass
    elif resume:
        model.train()
    return opt
"""
DECORATED = """import torch
from torch import optim


@torch.no_grad()
def build(model):
    return optim.Adam(model.parameters())
"""
OPTIONS = TrainerOptions(rules=DEFAULT_RULES | {Rule.EXCLUDE_FROZEN_FROM_OPTIMIZER})


def _patch(text: str):
    result = patch_source(decode_source(Path("shapes.py"), text.encode("utf-8")), OPTIONS)
    return result, {(c.rule.code, c.line) for c in result.changes}


def test_suites_semicolons_elif_and_non_ascii_columns():
    result, changes = _patch(SHAPES)
    assert changes == {
        ("BN2GN202", 4),  # before `def run`
        ("BN2GN203", 5),  # the one-line suite
        ("BN2GN201", 6),  # before the whole `x = ...; opt = ...` line
        ("BN2GN204", 6),  # the call after "é"
        ("BN2GN203", 10),  # in the elif branch
    }
    text = result.new_text
    assert "    if resume: model.train(); keep_backbone_bn_eval(model)\n" in text
    assert (
        "    frozen_count = freeze_backbone_bn(model)\n"
        '    print(f"Frozen backbone BatchNorm modules: {frozen_count}")\n'
        '    x = "é"; opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)\n'
    ) in text
    assert "    elif resume:\n        model.train()\n        keep_backbone_bn_eval(model)\n" in text
    ast.parse(text)
    again, _ = _patch(text)
    assert again.status == "unchanged"


def test_decorated_definition_is_placed_at_its_def_line():
    result, changes = _patch(DECORATED)
    assert changes == {("BN2GN202", 6), ("BN2GN201", 7), ("BN2GN204", 7)}
    assert (
        "def build(model):\n"
        "    frozen_count = freeze_backbone_bn(model)\n"
        '    print(f"Frozen backbone BatchNorm modules: {frozen_count}")\n'
        "    return optim.Adam([p for p in model.parameters() if p.requires_grad])\n"
    ) in result.new_text
    assert _patch(result.new_text)[0].status == "unchanged"
