"""The indentation unit of new definitions: the one most function and class bodies use, found
without walking expressions or simple statement lines (no block is ever below one)."""

from __future__ import annotations

from collections import Counter

import libcst as cst
import pytest
from conftest import FIXTURES

from bn2gn.source.support.inject import dominant_indent


@pytest.mark.parametrize(
    "text, unit",
    [
        (
            "try:\n  import a\nexcept ImportError:\n  a = None\n\ndef f():\n    x = 1\n    return x\n",
            "    ",
        ),
        ("def f():\n\tif x:\n\t\tpass\n\treturn 1\n", "\t"),
        ("x = [lambda: 1 for _ in ()]\nif x:\n   y = 1\n", "   "),
        # a match case's block counts like any other, relative to its ``case`` line
        ("match x:\n case 1:\n        a = 1\n        b = 2\n", "       "),
        ("x = 1\n", "    "),
    ],
)
def test_hand_written_shapes(text, unit):
    assert dominant_indent(cst.parse_module(text)) == unit


def every_block_unit(module: cst.Module) -> str:
    """The same count over every node of the tree (the walk the skipping must equal)."""
    defs: Counter = Counter()
    blocks: Counter = Counter()

    def unit(block):
        return module.default_indent if block.indent is None else block.indent

    class Count(cst.CSTVisitor):
        def visit_IndentedBlock(self, node):
            blocks[unit(node)] += len(node.body)

        def visit_FunctionDef(self, node):
            if isinstance(node.body, cst.IndentedBlock):
                defs[unit(node.body)] += len(node.body.body)

        visit_ClassDef = visit_FunctionDef

    module.visit(Count())
    counts = defs or blocks
    return counts.most_common(1)[0][0] if counts else module.default_indent


def test_every_fixture_file_gets_what_a_full_walk_gets():
    checked = 0
    for path in sorted(FIXTURES.rglob("*.py")):
        try:
            module = cst.parse_module(path.read_text(encoding="utf-8"))
        except Exception:  # the fixtures of broken input
            continue
        assert dominant_indent(module) == every_block_unit(module), path
        checked += 1
    assert checked > 200
