"""patch-trainer's one walk (``trainer_facts.Facts``) records what ``ast``'s own traversal gives:
every node's parent (but the leaves Python shares between nodes: ``ctx`` and the operators), each
statement's place in its body, and the calls, imports, definitions and assignments in the walk's
order."""

from __future__ import annotations

import ast
import sys

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
    noted = preorder(tree, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr))
    for nodes in facts.mutators.values():  # each name's statements in the walk's order
        held = set(map(id, nodes))
        assert nodes == [n for n in noted if id(n) in held]


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


GRAMMAR = """\
import os.path as p, sys
from . import a as b
global_name: int = 1
x = f"{a!r:>{w}}" + b"raw" + ...
async def run(arg, /, *args, key=None, **kw) -> None:
    global g
    async with lock as held:
        async for item in source:
            await item
    try:
        pass
    except* ValueError as err:
        raise err from None
    match arg:
        case {"k": [1, *rest]} | Point(x=0, y=_) as found if found:
            pass
        case str() | None:
            pass
    return [y async for y in gen if y], {k: v for k, v in kw.items()}, lambda q=1: q
class Point(Base, metaclass=Meta):
    x: int
    def __init__(self):
        nonlocal_holder = 1
        del self.x
        assert x, "message"
"""


def test_the_fields_the_walk_skips_never_hold_a_node():
    """``Facts`` does not look into identifier, string and number fields (``_NEVER_NODES``); every
    construct of the grammar, the fixtures and the standard library's own modules agree."""
    from pathlib import Path

    from bn2gn.core.ast_tools import child_fields

    texts = [GRAMMAR] + [p.read_text("utf-8", "replace") for p in sorted(FIXTURES.rglob("*.py"))]
    if sys.version_info >= (3, 12):  # ``TypeAlias.name`` is a node: the one ``name`` that is
        texts.append("type Alias[T: int, *Ts, **P] = list[T]\ndef f[T](x: T) -> T: ...\n")
    texts += [p.read_text("utf-8") for p in sorted(Path(ast.__file__).parent.glob("*.py"))[:120]]
    checked = 0
    for text in texts:
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            kept = child_fields(node.__class__)
            for field, value in ast.iter_fields(node):
                if field not in kept and field != "ctx":
                    assert not isinstance(value, ast.AST), (type(node).__name__, field)
                    assert not (
                        isinstance(value, list) and any(isinstance(v, ast.AST) for v in value)
                    ), (type(node).__name__, field)
                    checked += 1
    assert checked > 10_000
    if sys.version_info >= (3, 11):  # ``except*``
        check(GRAMMAR)
