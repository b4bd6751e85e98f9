"""Where a definition fetches pretrained weights (``backbone_inference.Evidence``) is looked for
only in definitions whose lines spell what such a call needs; the answer is the one a walk of
every definition gives: on hand-written spellings and on every function and method of the
fixtures."""

from __future__ import annotations

import ast

import pytest
from conftest import FIXTURES

from bn2gn.core.errors import SourceError
from bn2gn.decide.backbone_inference import WEIGHT_CALLS, WEIGHT_DOTTED, Evidence
from bn2gn.decide.graph import Project
from bn2gn.decide.scan import parse_facts

SHAPES = """\
import torch
import torch.hub as hub
from torch import load as fetch
from torch.utils import model_zoo


def plain():
    return torch.load("w.pth")


def aliased(path):
    state = fetch(
        path)
    return state


def continued():
    return torch.\\
        hub.load("repo", "m")


def via_module():
    return hub.load("repo", "m")


def url():
    return model_zoo.load_url("https://x/resnet18.pth")


def pretrained_model(self):
    self.load_pretrained_model(1)


def none_here():
    return torch.zeros(1)  # load nothing


def in_a_string():
    return "torch.load"
"""


def whole_walk(facts, node) -> int:
    """The first weight call of ``node``'s whole walk (``ast.walk``), as the planner defines it."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            dotted = facts.qualify(sub.func) or ""
            last = getattr(sub.func, "attr", None) or getattr(sub.func, "id", "")
            if last in WEIGHT_CALLS or dotted in WEIGHT_DOTTED:
                return sub.lineno
    return 0


def check(facts) -> int:
    """Every function and method of ``facts``: the same line; returns how many had a call."""
    evidence = Evidence(Project([facts]))
    found = 0
    for definition in facts.defs.values():
        nodes = [definition.node]
        if definition.kind == "class":
            nodes += [n for n in definition.node.body if isinstance(n, ast.FunctionDef)]
        for node in nodes:
            expected = whole_walk(facts, node)
            assert evidence._direct_weight_call(definition, node) == expected, node.lineno
            found += bool(expected)
    return found


def test_hand_written_spellings(tmp_path):
    path = tmp_path / "weights.py"
    path.write_text(SHAPES, encoding="utf-8")
    for keep_tree in (True, False):
        facts = parse_facts(path, path.read_bytes(), keep_tree=keep_tree)
        evidence = Evidence(Project([facts]))
        lines = {name: evidence._direct_weight_call(d, d.node) for name, d in facts.defs.items()}
        # read off the source by hand: the line of each function's weight call
        assert lines == {
            "plain": 8,
            "aliased": 12,
            "continued": 18,  # where the call starts, not where ``load`` is
            "via_module": 23,
            "url": 27,
            "pretrained_model": 31,
            "none_here": 0,
            "in_a_string": 0,
        }
        assert check(facts) == 6


@pytest.mark.parametrize(
    "path",
    sorted(p for p in FIXTURES.rglob("*.py") if b"def " in p.read_bytes()),
    ids=lambda p: str(p.relative_to(FIXTURES)),
)
def test_every_fixture_definition(path):
    try:
        facts = parse_facts(path, path.read_bytes())
    except SourceError:
        pytest.skip("a fixture of broken input")
    check(facts)
