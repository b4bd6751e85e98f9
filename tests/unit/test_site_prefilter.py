"""``collect_sites`` walks only the top-level statements whose lines spell a BatchNorm reference's
word; it finds exactly the sites a walk of the whole tree finds."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FIXTURES

from bn2gn.core.ast_tools import walk
from bn2gn.decide import sites
from bn2gn.decide.scan import parse_with_sites


def every_node_sites(facts):
    """The sites of a walk over the whole tree (no statement left out)."""
    found = []
    for node in walk(facts.tree, parents=True):
        hit = sites._classify_node(facts, node)
        if hit:
            found.append(sites._raw_site(facts, node, *hit))
    found.sort(key=lambda s: (s.node.lineno, s.node.col_offset))
    return found


def described(found):
    return [
        (s.node.lineno, s.node.col_offset, s.op, s.form, s.scope, s.owner, s.target) for s in found
    ]


def facts_of(text: str, tmp_path: Path):
    path = tmp_path / "m.py"
    path.write_bytes(text.encode("utf-8"))
    return parse_with_sites(path, path.read_bytes())


SHAPES = {
    "an imported alias": (
        "from torch.nn import BatchNorm2d as BN\n\n\ndef head(c):\n    return BN(c)\n",
        [(5, 11, "BatchNorm2d", "call", "head", "head")],
    ),
    "a top-level alias used elsewhere": (
        "import torch.nn as nn\nNorm = nn.BatchNorm2d\n\n\nclass H(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.n = Norm(8)\n",
        [(8, 17, "BatchNorm2d", "call", "H.__init__", "H")],
    ),
    "a partial and a callable": (
        "import functools\nimport torch.nn as nn\n\nmake = functools.partial(nn.BatchNorm2d, eps=1e-3)"
        "\n\n\ndef build(norm_layer=nn.BatchNorm2d):\n    return norm_layer(4)\n",
        [
            (4, 7, "BatchNorm2d", "partial", "<module>", "make"),
            (7, 21, "BatchNorm2d", "callable", "build", "build"),
        ],
    ),
    "a star import, an imported partial and a BatchNorm alias": (
        "from torch.nn import *\n"  # 1
        "from functools import partial as bind\n"
        "import torch.nn.modules.batchnorm as bn_mod\n"
        "Norm = BatchNorm1d\n"  # 4: a module-level alias, no site of its own
        "\n"
        "\n"
        "def build(c, layer=SyncBatchNorm):\n"  # 7
        "    make = bind(BatchNorm3d, eps=0.1)\n"  # 8
        "    return [BatchNorm2d(c), Norm(c), bn_mod.BatchNorm2d(c), make(c)]\n",  # 9
        [
            (7, 19, "SyncBatchNorm", "callable", "build", "build"),
            (8, 11, "BatchNorm3d", "partial", "build", "build"),
            (9, 12, "BatchNorm2d", "call", "build", "build"),
            (9, 28, "BatchNorm1d", "call", "build", "build"),
            (9, 37, "BatchNorm2d", "call", "build", "build"),
        ],
    ),
    "sites below statements that spell nothing": (
        "import torch.nn as nn\n"  # 1
        "\n"
        "\n"
        "class Head(nn.Module):\n"  # 4
        "    def forward(self, x):\n"  # 5: walked into by no site search
        "        return self.body(x)\n"
        "\n"
        "    def __init__(self, c, deep=False):\n"  # 8
        "        super().__init__()\n"
        "        if deep:\n"  # 10
        "            try:\n"
        "                self.n = nn.BatchNorm2d(c)\n"  # 12
        "            except ValueError:\n"
        "                self.n = nn.BatchNorm1d(c)\n"  # 14
        "        norm = nn.BatchNorm2d\n"  # 15: a callable kept in a local
        "        match c:\n"
        "            case 1:\n"
        "                self.m = norm(c)\n"  # 18: a local alias, no site
        "            case _:\n"
        "                self.m = [nn.BatchNorm2d(c)][0]\n",  # 20
        [
            (12, 25, "BatchNorm2d", "call", "Head.__init__", "Head"),
            (14, 25, "BatchNorm1d", "call", "Head.__init__", "Head"),
            (15, 15, "BatchNorm2d", "callable", "Head.__init__", "Head"),
            (20, 26, "BatchNorm2d", "call", "Head.__init__", "Head"),
        ],
    ),
}


def test_a_statement_that_spells_no_batchnorm_word_is_not_walked(tmp_path):
    facts = facts_of(SHAPES["sites below statements that spell nothing"][0], tmp_path)
    head = facts.tree.body[1]
    forward, init = head.body
    assert (forward.name, init.name) == ("forward", "__init__")
    assert sites.parent_of(init) is head  # the class was walked into its __init__
    assert sites.parent_of(forward) is None  # but not into forward
    assert sites.parent_of(forward.body[0]) is None


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_hand_written_shapes(tmp_path, name):
    text, expected = SHAPES[name]
    facts = facts_of(text, tmp_path)
    got = [
        (line, col, op, form, scope, owner)
        for line, col, op, form, scope, owner, _ in described(facts.sites)
    ]
    assert got == expected
    assert described(facts.sites) == described(every_node_sites(facts))


def test_every_fixture_file_gets_the_sites_of_a_whole_walk():
    files = with_sites = 0
    for path in sorted(FIXTURES.rglob("*.py")):
        data = path.read_bytes()
        if b"BatchNorm" not in data:
            continue
        try:
            facts = parse_with_sites(path, data)
        except Exception:  # the fixtures of broken input
            continue
        files += 1
        with_sites += bool(facts.sites)
        assert described(facts.sites) == described(every_node_sites(facts)), path
    assert files > 100 and with_sites > 80
