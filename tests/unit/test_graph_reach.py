"""The construction graph's walk (graph.Project.reach): breadth first from each start, never
entering what it avoids, each definition mapped to the start it was first reached from."""

from __future__ import annotations

from bn2gn.decide.graph import Project
from bn2gn.decide.scan import parse_facts

SOURCE = """\
class A:
    pass


class B:
    def __init__(self):
        self.a = A()


class D:
    def __init__(self):
        self.a = A()


class C:
    def __init__(self):
        self.b = B()
        self.d = D()
"""


def project(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(SOURCE, encoding="utf-8")
    for keep_tree in (True, False):
        facts = parse_facts(path, path.read_bytes(), keep_tree=keep_tree)
        yield Project([facts]), facts.defs


def test_each_definition_is_reached_from_the_first_start_that_reaches_it(tmp_path):
    for graph, defs in project(tmp_path):
        a, b, c, d = (defs[name] for name in "ABCD")
        assert graph.reach([c]) == {c: c, b: c, d: c, a: c}
        assert graph.reach_order([b, d]) == [(b, b), (d, d), (a, b)]
        assert graph.reach_order([d, b, d]) == [(d, d), (b, b), (a, d)]


def test_an_avoided_definition_is_neither_reached_nor_entered(tmp_path):
    for graph, defs in project(tmp_path):
        a, b, c, d = (defs[name] for name in "ABCD")
        assert graph.reach([c], avoid=b) == {c: c, d: c, a: c}
        assert graph.reach([c, b], avoid=[b, d]) == {c: c}
        assert graph.reach([b], avoid={a}) == {b: b}
