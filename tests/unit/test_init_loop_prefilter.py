"""``rewrite.init_loop_scopes`` walks only the definitions whose lines spell what it looks for; on
every fixture file it finds the scopes whole walks find."""

from __future__ import annotations

import ast

from conftest import FIXTURES

from bn2gn.decide.plan import CONVERT
from bn2gn.decide.scan import parse_with_sites
from bn2gn.source.rewrite import init_loop_scopes
from bn2gn.source.support.names import HELPER

DEFINITIONS = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def whole_walk_scopes(facts, sites) -> set:
    """The scopes, every definition walked whole (``ast.walk``)."""
    scopes = {s.scope.split(".")[0] for s in sites if s.decision == CONVERT}
    for node in facts.tree.body:
        if isinstance(node, DEFINITIONS) and any(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == HELPER
            for n in ast.walk(node)
        ):
            scopes.add(node.name)
    functions = {n.name for n in facts.tree.body if isinstance(n, DEFINITIONS[1:])}
    for node in facts.tree.body:
        if getattr(node, "name", None) in scopes:
            scopes |= {
                n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in functions
            }
    return scopes


def converted_sites(facts):
    sites = [facts.make_site(raw) for raw in facts.sites]
    for site in sites:
        site.decision = CONVERT
    return sites


def test_a_helper_call_and_the_function_its_scope_calls(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(
        "import torch.nn as nn\n"
        "\n"
        "\n"
        "def fill(m):\n"
        "    pass\n"
        "\n"
        "\n"
        "class Head(nn.Module):\n"
        "    def forward(self, x):\n"
        "        return x\n"
        "\n"
        "    def __init__(self, c):\n"
        "        super().__init__()\n"
        "        if c:\n"
        "            self.n = get_group_norm(c)\n"
        "        fill(self)\n"
    )
    facts = parse_with_sites(path, path.read_bytes())
    assert init_loop_scopes(facts, []) == {"Head", "fill"}


def test_names_on_lines_inside_statements_that_start_elsewhere(tmp_path):
    """Only the statements spanning a line that spells a name are entered: a call or a name on a
    continuation line, in a nested block or a decorator is still found; a name in a string or a
    comment makes a statement entered, and nothing more."""
    path = tmp_path / "m.py"
    path.write_text(
        "def fill(m):\n"
        "    pass\n"
        "\n"
        "\n"
        "def other(m):\n"
        "    pass\n"
        "\n"
        "\n"
        "def unused(m):\n"
        "    pass\n"
        "\n"
        "\n"
        "class Head:\n"
        "    def __init__(self, c):\n"
        "        self.n = (\n"
        "            get_group_norm\n"
        "        )(c)\n"
        "        if c:\n"
        "            for i in range(c):\n"
        "                self.apply(\n"
        "                    fill)\n"
        "        text = 'unused'  # unused\n"
        "\n"
        "        @other\n"
        "        def inner():\n"
        "            pass\n"
    )
    facts = parse_with_sites(path, path.read_bytes())
    assert init_loop_scopes(facts, []) == {"Head", "fill", "other"}
    assert whole_walk_scopes(facts, []) == {"Head", "fill", "other"}


def test_every_fixture_file_gets_the_scopes_of_whole_walks():
    checked = with_scopes = 0
    for path in sorted(FIXTURES.rglob("*.py")):
        data = path.read_bytes()
        if b"BatchNorm" not in data and HELPER.encode() not in data:
            continue
        try:
            facts = parse_with_sites(path, data)
        except Exception:  # the fixtures of broken input
            continue
        for sites in ([], converted_sites(facts)):
            found = init_loop_scopes(facts, sites)
            assert found == whole_walk_scopes(facts, sites), path
            checked += 1
            with_scopes += bool(found)
    assert checked > 200 and with_scopes > 100
