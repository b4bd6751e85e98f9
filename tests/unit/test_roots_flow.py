"""A root's statements and where their values go (roots.class_flow), taken with one walk per
expression and the methods' statements found without walking their expressions, are what one
full ``ast.walk`` per method and per expression gives: on hand-written shapes and on every class of
the fixtures."""

from __future__ import annotations

import ast

import pytest
from conftest import fixture_projects

from bn2gn.core.ast_tools import COMPOUND
from bn2gn.core.errors import SourceError
from bn2gn.decide import roots
from bn2gn.decide.graph import FUNCTIONS, Project
from bn2gn.decide.scan import parse_facts

SHAPES = """\
import torch.nn as nn


class Net(nn.Module):
    scale = 2

    def __init__(self, cls=None):
        layers = []
        for i in range(3):
            layers.append(self._block(i))
        try:
            head = self.make_head()
        except ValueError:
            head = None
        else:
            head = self.cls_head(self.make_head())
        match cls:
            case None:
                tail = nn.ReLU()
            case _:
                tail = cls()
        with self.guard() as g:
            self.tail = tail if g else head
        self.layers = nn.Sequential(*layers)
        self.head = head

    def _block(self, i):
        conv = nn.Conv2d(i, i, 3)
        return conv

    @classmethod
    def make_head(cls):
        return cls.scale
"""


def reference(cls):
    """The statements as ``_class_statements`` took them before: every node of a method walked."""
    out = []
    for item in cls.node.body:
        if isinstance(item, FUNCTIONS):
            args = item.args.posonlyargs + item.args.args
            self_name = args[0].arg if args else "self"
            for node in ast.walk(item):
                if node is item:
                    continue
                if isinstance(node, (ast.For, ast.AsyncFor)):
                    sinks = roots._target_sinks(node.target, self_name)
                    out.append((node, item, sinks, [node.iter]))
                elif isinstance(node, ast.stmt) and not isinstance(node, COMPOUND):
                    expressions = roots._statement_expressions(node)
                    out.append((node, item, roots._statement_sinks(node, self_name), expressions))
        else:
            out.append((item, None, [("own", "")], [item]))
    found = []
    for node, method, sinks, expressions in out:
        reads, calls = set(), []
        for expr in expressions:
            for sub in ast.walk(expr):
                if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load):
                    reads.add(sub.id)
                if (
                    isinstance(sub, ast.Call)
                    and isinstance(sub.func, ast.Attribute)
                    and isinstance(sub.func.value, ast.Name)
                    and sub.func.value.id in ("self", "cls")
                ):
                    calls.append(sub.func.attr)
        reads -= {name for kind, name in sinks if kind == "local"}
        found.append((node, method, sinks, reads, expressions, tuple(calls)))
    return found


def check(modules) -> int:
    project = Project(modules)
    compared = 0
    for facts in modules:
        for definition in facts.defs.values():
            if definition.kind != "class":
                continue
            taken = [
                (s.node, s.method, s.sinks, s.reads, s.expressions, s.self_calls)
                for s in roots._flow_statements(definition)
            ]
            assert taken == reference(definition), definition.qualname
            statements, finals, _ = roots.class_flow(project, definition)
            assert len(finals) == len(statements)
            compared += len(taken)
    return compared


def test_hand_written_shapes(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(SHAPES, encoding="utf-8")
    facts = parse_facts(path, path.read_bytes())
    assert check([facts]) == 15  # 14 statements of the methods, one of the class body
    project = Project([facts])
    statements, finals, _ = roots.class_flow(project, facts.defs["Net"])
    calls = {s.node.lineno: s.self_calls for s in statements if s.self_calls}
    # read off the source by hand: the methods each line calls on self / cls
    assert calls == {
        10: ("_block",),  # ``layers.append`` is no call on self
        12: ("make_head",),
        16: ("cls_head", "make_head"),
    }
    by_line = {s.node.lineno: finals[i] for i, s in enumerate(statements)}
    assert by_line[28] == {"layers"}  # ``conv``, returned by _block, ends up in self.layers
    assert by_line[19] == {"tail"}


@pytest.mark.parametrize("name, files", list(fixture_projects()), ids=lambda v: str(v)[:60])
def test_every_fixture(name, files):
    modules = []
    for path in files:
        try:
            modules.append(parse_facts(path, path.read_bytes()))
        except SourceError:
            continue
    check(modules)
