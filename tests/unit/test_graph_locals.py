"""What a function's locals hold (graph.Project.local_values), worked out per name when asked, is
what the whole fixpoint over all of the function's locals gives: on hand-written shapes (chains,
cycles, every way of binding a name) and on every function of the fixtures, asked in any order."""

from __future__ import annotations

import ast
from collections import defaultdict

import pytest
from conftest import fixture_projects

from bn2gn.core.errors import SourceError
from bn2gn.decide.graph import Project, local_assignments
from bn2gn.decide.scan import parse_facts

SHAPES = """\
import torch.nn as nn


class Block(nn.Module):
    pass


class Other(nn.Module):
    pass


class Net(nn.Module):
    def __init__(self, block=Block, extra=None, *, tail=Other):
        a = b = block
        c, (d, *e) = a, [Other]
        f = c if extra else d
        layers = []
        layers.append(Block())
        layers.extend([f, e])
        chosen = {}
        chosen["x"] = tail
        for g in (Block, Other):
            pass
        h = [k for k in layers if (w := k)]
        with open("x") as (i, j):
            pass
        ring1 = ring2
        ring2 = ring3
        ring3 = ring1 or Block
        cycle = cycle
        total: int = 1
        total += len(layers)
        unused = lambda m=Other: m
        self.body = Net2(a, b, c, d, e, f, layers, chosen, g, h, w, i, j, ring1, cycle, tail)


class Net2(nn.Module):
    def __init__(self, *parts):
        def inner(q=Block):
            r = q
            return r

        self.parts = inner(parts)
"""


def eager(project, facts, func):
    """The fixpoint the analysis iterated before it asked per name: every local's direct values,
    then what the locals it names hold, until nothing changes."""
    sources = defaultdict(list)
    for node in ast.walk(func):
        for name, value in local_assignments(node):
            sources[name].append(value)
    direct = {
        name: set().union(*(project.refs_in(facts, v) for v in values))
        for name, values in sources.items()
    }
    uses = {
        name: {
            n.id for v in values for n in ast.walk(v) if isinstance(n, ast.Name) and n.id in sources
        }
        for name, values in sources.items()
    }
    result = {name: set(found) for name, found in direct.items()}
    changed = True
    while changed:
        changed = False
        for name, used in uses.items():
            for other in used:
                extra = result[other] - result[name]
                if extra:
                    result[name] |= extra
                    changed = True
    return result


def check(modules) -> int:
    """Compare every function of ``modules`` (one Project), names asked forwards and backwards on
    fresh projects; returns how many names were compared."""
    compared = 0
    forwards, backwards = Project(modules), Project(modules)
    for facts in modules:
        for func in ast.walk(facts.tree):  # a fresh parse when the file let its tree go
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            expected = eager(forwards, facts, func)
            first = forwards.local_values(facts, func)
            second = backwards.local_values(facts, func)
            assert sorted(first) == sorted(expected) and len(first) == len(expected)
            assert {name: first[name] for name in expected} == expected
            assert {name: second[name] for name in reversed(list(expected))} == expected
            assert all(name in first for name in expected) and "not_a_local" not in first
            assert first.get("not_a_local", "default") == "default"
            assert dict(second.items()) == expected
            if not facts.tree_kept:  # worked out at once: no node of the function is kept
                assert first._func is None and second._func is None
                assert not any(first._sources.values())
            compared += len(expected)
    return compared


def test_hand_written_shapes(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(SHAPES, encoding="utf-8")
    facts = parse_facts(path, path.read_bytes())
    assert check([facts]) >= 25
    let_go = parse_facts(path, path.read_bytes(), keep_tree=False)
    assert not let_go.tree_kept and check([let_go]) >= 25
    project = Project([facts])
    init = next(
        n for n in ast.walk(facts.tree) if isinstance(n, ast.FunctionDef) and n.lineno == 13
    )
    held = project.local_values(facts, init)
    names = {name: sorted(d.name for d in held[name]) for name in held}
    # read off the source by hand: what each local can hold
    assert names["a"] == names["b"] == ["Block"]
    assert names["c"] == ["Block", "Other"] and names["d"] == ["Block", "Other"]
    assert names["f"] == ["Block", "Other"]
    assert names["layers"] == ["Block", "Other"]
    assert names["chosen"] == ["Other"] and names["tail"] == ["Other"]
    assert names["ring1"] == names["ring2"] == names["ring3"] == ["Block"]
    assert names["cycle"] == []
    assert names["total"] == ["Block", "Other"]  # ``total += len(layers)``
    with pytest.raises(KeyError):
        held["not_a_local"]


@pytest.mark.parametrize("keep_tree", [True, False])
@pytest.mark.parametrize("name, files", list(fixture_projects()), ids=lambda v: str(v)[:60])
def test_every_fixture(name, files, keep_tree):
    modules = []
    for path in files:
        try:
            modules.append(parse_facts(path, path.read_bytes(), keep_tree=keep_tree))
        except SourceError:
            continue
    check(modules)


def generated(order: str, size: int = 200) -> str:
    """A function of ``size`` locals naming each other: a chain either way, or at random."""
    import random

    pick = random.Random(size).randrange
    body = []
    for i in range(size):
        if order == "forwards":
            other, second = max(i - 1, 0), max(i - 2, 0)
        elif order == "backwards":
            other, second = min(i + 1, size - 1), i
        else:
            other, second = pick(size), pick(size)
        body.append(f"        h{i} = h{other} if c else h{second}")
    body += ["        h7 = Block", "        h9 = Other"]
    return (
        "import torch.nn as nn\n\n\nclass Block(nn.Module):\n    pass\n\n\n"
        "class Other(nn.Module):\n    pass\n\n\nclass Net(nn.Module):\n    def __init__(self, c):\n"
        + "\n".join(body)
        + f"\n        self.body = Block(h0, h{size // 2}, h{size - 1})\n"
    )


@pytest.mark.parametrize("order", ["forwards", "backwards", "at random"])
def test_long_chains_and_cycles_of_locals(tmp_path, order):
    path = tmp_path / "net.py"
    path.write_text(generated(order), encoding="utf-8")
    for keep_tree in (True, False):
        assert check([parse_facts(path, path.read_bytes(), keep_tree=keep_tree)]) == 200
