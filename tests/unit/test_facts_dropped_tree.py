"""A file with no BatchNorm lets its ``ast`` tree go once its facts are taken (on torch, keeping
every tree cost 1.3 GB); a definition's node is then parsed again from its lines. The node parsed
again must be the one the whole file's parse gives, positions included, and the analysis must decide
as it did with every tree kept."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bn2gn.core.ast_tools import first_line
from bn2gn.decide.facts import reference_facts
from bn2gn.decide.graph import Project, calls_with_scopes, module_calls
from bn2gn.decide.scan import parse_facts, parse_with_sites

ROOT = Path(__file__).resolve().parents[2]

SHAPES = """\
import torch.nn as nn
a = (1,
     2); Block2 = nn.Conv2d


@decorated(
    1)
class Block(nn.Module, Mixin):
    def __init__(self, c, block=Block2):
        super().__init__()
        self.conv = block(c)


x, (y, z) = Block, [nn.Linear, 3]
if True:
    def inner(): return Block(3)
else:
    inner = None
try:
    from fast import helper
except ImportError:
    class helper(nn.Module): pass
finally:
    last = 1; after = inner(); Net = nn.Sequential(Block(2), Block2(1))
caf\u00e9 = "\u00e9t\u00e9"; Block(1)
"""


def whole_file_nodes(text: str):
    """Every definition statement of the whole file's parse, by its position."""
    found = {}
    todo = list(ast.parse(text).body)
    for node in todo:
        if isinstance(node, (ast.If, ast.Try)):
            todo += node.body + node.orelse + getattr(node, "finalbody", [])
        found[(node.lineno, node.col_offset)] = node
    return found


def test_a_file_without_batchnorm_lets_its_tree_go(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(SHAPES, encoding="utf-8")
    facts = parse_with_sites(path, path.read_bytes())
    assert not facts.tree_kept and facts._tree is None
    assert sorted(facts.defs) == sorted(
        ["a", "Block2", "Block", "x", "y", "z", "inner", "last", "after", "Net", "café"]
    )
    nodes = whole_file_nodes(SHAPES)
    for definition in facts.defs.values():
        assert definition._node is None
        expected = nodes[(definition.lineno, definition.col)]
        # what the construction graph reads was taken from the whole file's parse
        code = expected.value if definition.kind == "var" else expected
        assert definition.references == reference_facts(facts, code)
        assert ast.dump(definition.node, include_attributes=True) == ast.dump(
            expected, include_attributes=True
        )
        assert definition.node is definition.node  # parsed once, then kept
        assert (definition.first, definition.end) == (first_line(expected), expected.end_lineno)
    # names bound by one statement share its node; the bases were read when the file was parsed
    assert facts.defs["x"].node is facts.defs["z"].node
    attrs, names = facts.defs["Net"].references
    assert attrs == {"torch.nn.Sequential"}
    assert names == {
        ("Block", "model.Block", None),
        ("Block2", "model.Block2", None),
        ("nn", "torch.nn", None),  # the callee's base
    }
    attrs, names = facts.defs["x"].references
    assert attrs == {"torch.nn.Linear"}
    # ``nn.Linear`` read, not called: ``nn`` counts only where ``torch.nn.Linear`` resolves
    assert names == {("Block", "model.Block", None), ("nn", "torch.nn", "torch.nn.Linear")}
    assert facts.defs["Block"].bases == ("torch.nn.Module", None)
    assert facts.defs["Block"].base_names == ("Module", "Mixin")
    assert "helper" not in facts.defs  # an ``except`` clause's names are not definitions


def test_a_file_with_batchnorm_keeps_its_tree(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(SHAPES + "norm = nn.BatchNorm2d(3)\n", encoding="utf-8")
    facts = parse_with_sites(path, path.read_bytes())
    assert facts.tree_kept and facts.sites
    assert facts.defs["Block"].node is facts.tree.body[3]


@pytest.mark.parametrize("odd", ["\f", "\x1c", "\u2028", "\x85", "\x0b"])
def test_a_line_break_python_does_not_count_keeps_the_tree(tmp_path, odd):
    """``lines`` (``str.splitlines``) would not number as ``ast`` does: no part is parsed again."""
    path = tmp_path / "model.py"
    path.write_text(f"x = 1  # a{odd}b\nclass A:\n    s = '{odd}'\n", encoding="utf-8")
    facts = parse_facts(path, path.read_bytes(), keep_tree=False)
    assert facts.tree_kept
    assert facts.defs["A"].node is facts.tree.body[1]


def test_the_constructor_walk_sees_the_calls_of_the_whole_tree(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(SHAPES, encoding="utf-8")
    kept = parse_facts(path, path.read_bytes())
    dropped = parse_facts(path, path.read_bytes(), keep_tree=False)

    def shape(calls):
        return [
            (ast.dump(c), [(f.lineno, f.col_offset) for f in funcs], top) for c, funcs, top in calls
        ]

    expected = shape(calls_with_scopes(kept.tree))
    assert shape(module_calls(dropped, None)) == expected
    assert shape(module_calls(kept, None)) == expected
    lines = [2, 11, 17, 24]

    def recorded(calls):
        """The calls ``Project`` records: in a function or at module level (of a class parsed
        member by member, its decorators, bases and keywords are not walked)."""
        return [call for call in shape(calls) if call[1] or call[2]]

    assert recorded(module_calls(dropped, lines)) == recorded(calls_with_scopes(kept.tree, lines))
    assert recorded(module_calls(kept, lines)) == recorded(calls_with_scopes(kept.tree, lines))


def project_facts(project: Project):
    """What the construction graph found, by qualified names."""
    name = lambda d: d.qualname  # noqa: E731
    return (
        sorted(name(d) for d in project.modules_classes),
        {name(d): sorted(map(name, refs)) for d, refs in project._refs.items()},
        {name(d): sorted(map(name, by)) for d, by in project.built_by.items() if by},
        {
            name(c): {p: sorted(map(name, ds)) for p, ds in b.items()}
            for c, b in project.param_bindings.items()
        },
    )


@pytest.mark.parametrize("folder", ["centernet_mini", "repos", "backbones"])
def test_the_graph_is_the_one_made_with_every_tree_kept(folder):
    files = sorted((ROOT / "fixtures" / folder).rglob("*.py"))
    assert files
    kept = Project([parse_facts(p, p.read_bytes()) for p in files])
    dropped = Project([parse_facts(p, p.read_bytes(), keep_tree=False) for p in files])
    assert project_facts(dropped) == project_facts(kept)
    assert all(not f.tree_kept for f in dropped.modules)
