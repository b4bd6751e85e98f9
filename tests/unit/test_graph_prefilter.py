"""The construction graph walks only statements whose text can call a scanned class
(graph.call_lines): it must keep every call the full walk would record."""

from __future__ import annotations

from pathlib import Path

import pytest

from bn2gn.core.errors import SourceError
from bn2gn.decide import facts as facts_module
from bn2gn.decide.graph import Project, call_lines, calls_with_scopes, module_calls
from bn2gn.decide.scan import parse_facts

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = sorted((ROOT / "fixtures").rglob("*.py"))

BLOCKS = """\
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()


class Other:
    def __init__(self, c):
        pass
"""

SPELLINGS = """\
import torch.nn as nn
from blocks import Block as B, Other
import blocks
from blocks import Block


class Net(nn.Module):
    def __init__(self, block=Block):
        super().__init__()
        self.a = B(1)
        self.b = blocks.Block (
            2)
        self.c = (Block)(3)
        self.d = Block \\
            (4)
        self.e = Block  # a comment
        self.f = [Other(5), lambda: Block(c=6)]

    @staticmethod
    def make(n):
        return [Block(i) for i in range(n)]


@Block(7)
def decorated():
    pass


TABLE = {18: Block(8)}
print(Block.__name__, "Block(9)")
"""


def two_files(tmp_path):
    modules = []
    for name, text in (("blocks.py", BLOCKS), ("net.py", SPELLINGS)):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        modules.append(parse_facts(path, path.read_bytes()))
    return modules


def recorded(project: Project, facts, lines):
    """(line, col, enclosing functions, module level) of each call of a module class with arguments."""
    out = set()
    for call, funcs, module_level in calls_with_scopes(facts.tree, lines):
        callee = project.resolve(facts, call.func)
        if (call.args or call.keywords) and callee in project.modules_classes:
            out.add((call.lineno, call.col_offset, tuple(id(f) for f in funcs), module_level))
    return out


def check(modules):
    project = Project(modules)
    names = {d.name for d in project.modules_classes}
    for facts in modules:
        lines = call_lines(facts, names)
        full = recorded(project, facts, None)
        kept = recorded(project, facts, lines) if lines is None or lines else set()
        assert kept == full, facts.display
    return project


def test_every_spelling_of_a_constructor_call_is_kept(tmp_path):
    modules = two_files(tmp_path)
    project = check(modules)
    full = recorded(project, modules[1], None)
    # B(1), blocks.Block (, (Block)(3), the continuation, c=6, Block(i), @Block(7), TABLE; not Other(5)
    assert {line for line, *_ in full} == {10, 11, 13, 14, 17, 21, 24, 29}


def test_statements_without_such_a_call_are_skipped(tmp_path):
    facts = two_files(tmp_path)[1]
    lines = call_lines(facts, {"Block"})
    # the class header is no call; B is an alias of Block; a "(" after a continuation counts
    # whatever the word before it
    assert 7 not in lines and 3 not in lines and 10 in lines and 15 in lines


ACROSS_LINES = """\
from blocks import Block


TABLE = [
    (1, 2),
    (3, 4),
]
x = (Block  # the block
     (5))
y = [Block
     (6)]
z = (Block  # )
     (7))
"""


def test_a_paren_that_starts_a_line_counts_only_where_a_comment_may_hide_the_name(tmp_path):
    """A tuple starting a line is no call; below a comment the word found may be the comment's
    (``the block``, ``)``), so the ``(`` counts whatever the word; across a bare line break the
    word before it is the call's own."""
    modules = two_files(tmp_path)[:1]
    path = tmp_path / "across.py"
    path.write_text(ACROSS_LINES, encoding="utf-8")
    facts = parse_facts(path, path.read_bytes())
    project = check(modules + [facts])
    assert {line for line, *_ in recorded(project, facts, None)} == {8, 10, 12}
    assert call_lines(facts, {"Block"}) == [9, 11, 13]
    assert call_lines(facts, {"Other"}) == [9, 13]


@pytest.mark.parametrize("crlf", [False, True])
def test_line_numbers_follow_ast_line_breaks(tmp_path, crlf):
    text = "class A:\n    pass\nx = 1\ny = A(\n    2)\n"
    if crlf:
        text = text.replace("\n", "\r\n")
    path = tmp_path / "m.py"
    path.write_bytes(text.encode())
    facts = parse_facts(path, path.read_bytes())
    assert call_lines(facts, {"A"}) == [4]


CLASS_WITH_METHODS = """\
from blocks import Block


class Net:
    def a(self):
        return 1

    def b(self):
        return Block(2)

    def c(self):
        return 3


class K: x = Block(4)
"""


def test_a_class_that_let_its_tree_go_is_parsed_member_by_member(tmp_path, monkeypatch):
    """Only the method that can call ``Block`` is parsed again, its calls with their lines,
    columns and functions; a member on its class's header line does not parse alone, and the
    class is parsed whole."""
    path = tmp_path / "net.py"
    path.write_text(CLASS_WITH_METHODS, encoding="utf-8")
    facts = parse_facts(path, path.read_bytes(), keep_tree=False)
    parsed = []
    parse = facts_module._parse
    monkeypatch.setattr(
        facts_module, "_parse", lambda text, display: parsed.append(text) or parse(text, display)
    )
    lines = call_lines(facts, {"Block"})
    assert lines == [9, 15]
    calls = [
        (call.lineno, call.col_offset, [f.name for f in funcs], module_level)
        for call, funcs, module_level in module_calls(facts, lines)
    ]
    assert calls == [(15, 13, [], False), (9, 15, ["b"], False)]
    # K's member alone (which fails), K whole, then b alone
    assert len(parsed) == 3 and "if 1:\nclass K" in parsed[0] and "if" not in parsed[1]
    assert "def b" in parsed[2] and "def a" not in parsed[2] and "def c" not in parsed[2]


UNICODE_SPELLINGS = """\
from blocks import Block as Bl\u00f6ck, Other


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.name = "r\u00e9seau"
        self.a = \uff22\uff4c\uff4f\uff43\uff4b(1)
        self.b = Bl\u00f6ck(2)
        self.c = Blo\u0308ck(3)
        self.d = Other(4)
        self.e = [caf\u00e9(5), \u00e9t\u00e9 (6)]


def caf\u00e9(n):
    return n
"""


def test_a_non_ascii_file_is_walked_where_a_word_can_name_the_class(tmp_path):
    """Identifiers are compared as ``ast`` names them (NFKC): ``\uff22\uff4c\uff4f\uff43\uff4b``
    is ``Block``; ``Blo\u0308ck`` (a combining mark, which ``re``'s ``\\w`` does not match)
    counts whatever the word. A non-ASCII file was walked whole before."""
    modules = two_files(tmp_path)[:1]
    path = tmp_path / "uni.py"
    path.write_text(UNICODE_SPELLINGS, encoding="utf-8")
    facts = parse_facts(path, path.read_bytes())
    project = check(modules + [facts])
    # the alias Bl\u00f6ck, composed (9) and with a combining mark (10); Block is not imported here
    assert {line for line, *_ in recorded(project, facts, None)} == {9, 10}
    # and Block(1) in full width (8) may call it too; not Other(4), caf\u00e9(5), \u00e9t\u00e9 (6)
    assert call_lines(facts, {"Block"}) == [8, 9, 10]


def test_fixture_trees_keep_every_recorded_call():
    modules = []
    for path in FIXTURES:
        try:
            modules.append(parse_facts(path, path.read_bytes()))
        except SourceError:
            continue  # the syntax-error fixtures
    assert len(modules) > 100
    check(modules)


NESTED_IMPORTS = """\
import a


def f():
    x = 1
    if x:
        from b import c as d


class K:
    import e

    def g(self):
        try:
            pass
        except ImportError:
            from .h import i
        match self:
            case K():
                import j
            case _:
                pass


s = "import nothing"  # a comment that says import too
"""


def test_nested_imports_are_found_below_the_lines_that_spell_import(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(NESTED_IMPORTS)
    facts = parse_facts(path, path.read_bytes())
    assert facts.imports == {"a": "a", "d": "b.c", "e": "e", "i": "h.i", "j": "j"}


def test_fixture_imports_are_those_of_the_full_walk(monkeypatch):
    def facts_of(path):
        try:
            return parse_facts(path, path.read_bytes())
        except SourceError:
            return None  # the syntax-error fixtures

    pruned = [facts_of(p) for p in FIXTURES]
    monkeypatch.setattr(facts_module, "import_lines", lambda text: None)
    full = [facts_of(p) for p in FIXTURES]
    pairs = [(a, b) for a, b in zip(pruned, full) if a is not None]
    assert len(pairs) > 100
    assert sum(1 for a, _ in pairs if a.imports) > 100
    for a, b in pairs:
        assert (a.imports, a.star_imports) == (b.imports, b.star_imports), a.display


def test_import_lines_find_the_word_only():
    text = (
        "import a\n"  # 1: at the start of the text
        "x = reimport + import_ + _import + imports + import2\n"  # 2: none of these
        "from b import(c)\n"  # 3
        "s = 'import'\n"  # 4: a string spells it too (only ever more lines to look in)
        "y = 1\rimport d"  # 5 and then 6: a lone \r ends a line; the text ends with the word
    )
    assert facts_module.import_lines(text) == [1, 3, 4, 6]
    assert facts_module.import_lines("café = 1\nimport x\n") == [2]  # the regex path
