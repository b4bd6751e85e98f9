"""The shared ``ast`` toolkit: expected values written by hand from the small sources below."""

import ast
import sys

from bn2gn.core.ast_tools import (
    COMPOUND,
    dotted,
    first_line,
    lines_spelling,
    spans_a_line,
    walk,
    walk_statements,
)

SOURCE = """\
import torch

@decorator
@other.decorator(1)
def build(x):
    if x:
        y = torch.nn.BatchNorm2d(3)
    return y

class Model:
    pass
"""


def test_walk_visits_what_ast_walk_visits_in_the_same_order_without_contexts():
    tree = ast.parse(SOURCE)
    expected = [n for n in ast.walk(tree) if not isinstance(n, ast.expr_context)]
    assert list(walk(tree)) == expected


#: syntax of the Python running the tests that 3.11 does not parse (``TypeAlias.name`` is a node)
NEWER_SYNTAX = (
    ["type Alias[T: int, *Ts, **P] = list[T]\n", "def f[T](x: T) -> T:\n    return x\n"]
    if sys.version_info >= (3, 12)
    else []
)


def test_walk_visits_what_ast_walk_visits_on_the_fixtures_and_the_standard_library():
    """``walk`` looks only into the fields that can hold a node (``child_fields``): it still visits
    every node ``ast.walk`` visits, in its order, on every fixture, the standard library's own
    modules and a source using every statement holder."""
    from pathlib import Path

    fixtures = Path(__file__).resolve().parents[2] / "fixtures"
    texts = [SOURCE, NESTED, *NEWER_SYNTAX] + [
        p.read_text("utf-8", "replace") for p in sorted(fixtures.rglob("*.py"))
    ]
    texts += [p.read_text("utf-8") for p in sorted(Path(ast.__file__).parent.glob("*.py"))[:80]]
    nodes = 0
    for text in texts:
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        expected = [n for n in ast.walk(tree) if not isinstance(n, ast.expr_context)]
        assert list(walk(tree)) == expected
        nodes += len(expected)
    assert nodes > 200_000


def test_walk_with_lines_skips_the_statements_off_the_lines_at_every_depth():
    tree = ast.parse(SOURCE)
    assert lines_spelling(SOURCE.splitlines(), ("BatchNorm2d", "Model")) == [7, 10]
    build = tree.body[1]
    seen = list(walk(build, parents=True, lines=[7]))
    if_stmt, assign, ret = build.body[0], build.body[0].body[0], build.body[1]
    assert if_stmt in seen and assign in seen and ret not in seen
    # in walk's order, with what the skipped statement holds left out
    inside = {id(n) for n in walk(ret)}
    assert seen == [n for n in walk(build) if id(n) not in inside]
    assert assign.value._bn2gn_parent is assign and assign._bn2gn_parent is if_stmt
    # the statement walked from is yielded whatever its lines; nothing below it spans line 12
    assert [type(n).__name__ for n in walk(build, lines=[12])][:2] == [
        "FunctionDef",
        "arguments",
    ]
    assert not any(isinstance(n, ast.stmt) for n in list(walk(build, lines=[12]))[1:])


def test_walk_with_parents_records_each_parent():
    tree = ast.parse("a = f(b)")
    call = next(n for n in walk(tree, parents=True) if isinstance(n, ast.Call))
    assert isinstance(call._bn2gn_parent, ast.Assign)


def test_walk_statements_skips_statements_that_span_none_of_the_lines():
    tree = ast.parse(SOURCE)
    every = [type(n).__name__ for n in walk_statements(tree)]
    assert every == [
        "Module",
        "Import",
        "FunctionDef",
        "ClassDef",
        "If",
        "Return",
        "Pass",
        "Assign",
    ]
    only_line_1 = [type(n).__name__ for n in walk_statements(tree, lines=[1])]
    assert only_line_1 == ["Module", "Import"]


NESTED = """\
def method(self, x):
    try:
        a = 1
    except ValueError as err:
        b = self.f(err)
    except* TypeError:
        pass
    else:
        c = [d for d in x]
    finally:
        del x
    match x:
        case [1, *rest] if rest:
            e = rest
        case _:
            for f in x:
                while f:
                    f -= 1
                else:
                    continue
    async def inner():
        async with g as h:
            return h
    class Local:
        i = 1
    with open(x) as j, k:
        if j:
            pass
        elif k:
            raise
"""


def test_walk_statements_yields_the_statements_of_walk_in_its_order():
    """``roots`` finds a method's statements with ``walk_statements``: what ``walk`` gives, less
    the expressions, on every statement holder of the grammar, the fixtures and the standard
    library's own modules."""
    from pathlib import Path

    fixtures = Path(__file__).resolve().parents[2] / "fixtures"
    texts = [NESTED] + [p.read_text("utf-8", "replace") for p in sorted(fixtures.rglob("*.py"))]
    texts += [p.read_text("utf-8") for p in sorted(Path(ast.__file__).parent.glob("*.py"))[:80]]
    compared = 0
    for text in texts:
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        for node in walk(tree):
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef)):
                expected = [n for n in walk(node) if isinstance(n, ast.stmt)]
                assert [n for n in walk_statements(node) if isinstance(n, ast.stmt)] == expected
                compared += len(expected)
    assert compared > 50_000


def test_first_line_counts_decorators():
    build = ast.parse(SOURCE).body[1]
    assert (build.lineno, first_line(build)) == (5, 3)
    assert spans_a_line(build, [3]) and not spans_a_line(build, [1, 9])


def test_dotted_names_a_name_or_attribute_chain_only():
    def expr(text):
        return ast.parse(text, mode="eval").body

    assert dotted(expr("torch.nn.BatchNorm2d")) == "torch.nn.BatchNorm2d"
    assert dotted(expr("x")) == "x"
    assert dotted(expr("f().y")) is None
    assert dotted(expr("a[0].b")) is None


def test_compound_statements_are_those_that_hold_a_block():
    tree = ast.parse(SOURCE)
    kinds = {type(n).__name__ for n in ast.walk(tree) if isinstance(n, COMPOUND)}
    assert kinds == {"FunctionDef", "If", "ClassDef"}


def spelling_line_by_line(lines, words):
    return [number for number, line in enumerate(lines, 1) if any(w in line for w in words)]


def test_lines_spelling_finds_what_a_test_of_every_line_finds():
    """One search per word over the whole text gives the lines a test of each line gives: lines
    with and without their line breaks, CRLF, a word at a line's end or start, several hits on a
    line, words inside others, a range of the lines, on every fixture with the words the analysis
    looks for."""
    from pathlib import Path

    shapes = [
        "ab\ncd\nab ab\n\nxab",
        "ab\r\ncd\r\n\r\nabcd\r\n",
        "get_group_norm(x)\n  fill\nfill_fc(get_group_norm)\n",
    ]
    word_sets = [
        ("ab",),
        ("cd", "ab"),
        ("b\nc",),
        ("",),
        ("fill", "get_group_norm"),
        ("isinstance", "BatchNorm2d", "fill", "nn", "import"),
        ("zzz",),
    ]
    fixtures = Path(__file__).resolve().parents[2] / "fixtures"
    texts = shapes + [p.read_text("utf-8", "replace") for p in sorted(fixtures.rglob("*.py"))]
    hits = 0
    for text in texts:
        for lines in (text.splitlines(keepends=True), text.splitlines(), text.split("\n")):
            for words in word_sets:
                expected = spelling_line_by_line(lines, words)
                assert lines_spelling(lines, words) == expected, (text[:40], words)
                assert lines_spelling(lines, list(reversed(words))) == expected
                hits += len(expected)
                for first, last in ((2, 3), (3, len(lines)), (len(lines), None), (1, 1)):
                    inside = [n for n in expected if first <= n <= (last or len(lines))]
                    assert lines_spelling(lines, words, first, last) == inside
    assert hits > 10_000
    assert lines_spelling(["ab", "cd"], ("bc",)) == []  # never across two lines
    assert lines_spelling(["ab ab", "x", "ab"], ("ab",)) == [1, 3]
