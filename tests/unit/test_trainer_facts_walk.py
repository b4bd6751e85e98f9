"""patch-trainer's one walk (``trainer_facts.Facts``) records what ``ast``'s own traversal gives:
every node's parent (but the leaves Python shares between nodes: ``ctx`` and the operators), each
statement's place in its body, and the calls, imports, definitions and assignments in the walk's
order."""

from __future__ import annotations

import ast

import pytest
from conftest import FIXTURES

from bn2gn.source.support.trainer_facts import Facts

SHAPES = """\
import torch
from torch import optim as O


def train(model, data, lr=0.1):
    opt = O.SGD(model.parameters(), lr=lr)
    for x in data:
        try:
            loss = model(x).sum()
        except ValueError:
            continue
        else:
            loss.backward()
        finally:
            opt.step()
    while False:
        model.train()
    else:
        pick = (lambda m: m) if lr else None
    match lr:
        case 0.1:
            model.eval()
        case _:
            pass
    with torch.no_grad():
        opt.zero_grad()
    return [m.train() for m in (model,)]
"""


#: leaves the parser shares between every node that has one: no parent of theirs is meaningful
SHARED = (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)


def expected(tree: ast.Module):
    """The same facts, taken with ``ast.walk`` and ``ast.iter_child_nodes``."""
    parent, place = {}, {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, SHARED):
                parent[child] = node
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if isinstance(body, list):
                for index, child in enumerate(body):
                    place[child] = (node, field, index)
    return parent, place


def preorder(tree: ast.AST, kinds) -> list:
    """The nodes of ``kinds`` in depth-first, source order (the walk's order)."""
    found = [tree] if isinstance(tree, kinds) else []
    for child in ast.iter_child_nodes(tree):
        found += preorder(child, kinds)
    return found


def check(text: str) -> None:
    tree = ast.parse(text)
    facts = Facts(text, tree)
    parent, place = expected(tree)
    assert {k: v for k, v in facts.parent.items() if not isinstance(k, SHARED)} == parent
    assert facts.place == place
    assert facts.imports == preorder(tree, (ast.Import, ast.ImportFrom))
    assert facts.functions == preorder(tree, (ast.FunctionDef, ast.AsyncFunctionDef))
    assert facts.assigns == preorder(tree, ast.Assign)
    calls = preorder(tree, ast.Call)
    assert facts.calls == sorted(calls, key=lambda c: (c.lineno, c.col_offset))


def test_hand_written_shapes():
    check(SHAPES)
    facts = Facts(SHAPES, ast.parse(SHAPES))
    assert [ast.unparse(c.func) for c in facts.calls][:4] == [
        "O.SGD",
        "model.parameters",
        "model(x).sum",  # at the column of the call inside it: outer calls first
        "model",
    ]
    assert sorted(facts.mutators) == ["loss", "model", "opt", "pick"]


@pytest.mark.parametrize(
    "path",
    sorted(p for p in FIXTURES.rglob("*.py") if b"train" in p.read_bytes())[:400],
    ids=lambda p: str(p.relative_to(FIXTURES)),
)
def test_every_fixture_with_training_words(path):
    text = path.read_bytes().decode("utf-8", "replace")
    try:
        ast.parse(text)
    except (SyntaxError, ValueError):
        pytest.skip("a fixture of broken input")
    check(text)
