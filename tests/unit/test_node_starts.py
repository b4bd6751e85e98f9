"""Starts of calls and ``if`` statements read off ``ast`` (``source.support.node_starts``) are the
ones LibCST's ``PositionProvider`` gives; where the two parses do not pair, the rewrite falls back.

The oracle is LibCST itself: every call (outside f-strings) and every ``if`` of every fixture file
and of hand-written shapes is compared with ``PositionProvider``'s start.
"""

from __future__ import annotations

import ast
import warnings

import libcst as cst
import pytest
from conftest import FIXTURES
from libcst.metadata import MetadataWrapper, PositionProvider

from bn2gn.source.support import combined, node_starts
from bn2gn.source.support.combined import Combined
from bn2gn.source.support.node_starts import Mismatch, Span, StatementTracker


class Everything(cst.CSTTransformer):
    """A part that looks into every statement and records what it saw."""

    def __init__(self):
        super().__init__()
        self.spans = []

    def descends(self, span: Span) -> bool:
        self.spans.append(span)
        return True


def tracked(text: str):
    """(module, tracker, spans seen) after a traversal that goes into every statement."""
    module = cst.parse_module(text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = ast.parse(text)
    tracker = StatementTracker(module, tree, text)
    part = Everything()
    module.visit(Combined([part], tracker))
    return module, tracker, part.spans


def libcst_starts(module: cst.Module):
    """{node: (line, column)} of every call outside f-strings and every ``if``, from LibCST."""
    positions = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    wanted = {}

    class Collect(cst.CSTVisitor):
        depth = 0

        def visit_FormattedString(self, node):
            self.depth += 1

        def leave_FormattedString(self, node):
            self.depth -= 1

        def visit_Call(self, node):
            if not self.depth:
                wanted[node] = positions[node].start

        def visit_If(self, node):
            wanted[node] = positions[node].start

    module.visit(Collect())
    return {node: (start.line, start.column) for node, start in wanted.items()}


def assert_same_starts(text: str) -> int:
    module, tracker, _ = tracked(text)
    expected = libcst_starts(module)
    got = {node: tracker.starts.get(id(node)) for node in expected}
    assert got == expected
    return len(expected)


SHAPES = {
    "compound statements": """
@register(name="x")
@other
class Net(Base(1), metaclass=meta()):
    x = build(1); y = build(2)

    async def forward(self, a=default(), *, b: hint() = 3) -> out():
        async with lock() as l, other():
            async for i in items():
                yield step(i)
        try:
            run()
        except (Bad, worse()) as e:
            handle(e)
        else:
            fine()
        finally:
            close()
        while cond():
            break
        else:
            never()
        for k in keys():
            pass
        else:
            done()
        if a(): b(); c()
        elif d(): e()
        else:
            if f(): g()
        match subject():
            case [p, q] if guard(p):
                use(q)
            case Point(x=0):
                origin()
            case _:
                other()
""",
    "calls in calls, lambdas and comprehensions": """
value = f(a)(b)(c(d(e)))
table = {key(k): val(v) for k, v in pairs() if keep(k)}
fn = lambda x: inner(x)(outer(x))
nested = [[g(i) for i in r(j)] for j in s()]
call = obj.method(arg).other[index()](tail())
""",
    "f-strings": """
label = f"{name(a)} and {name(a)!r:>{width()}}"
multi = f'''
{block(
  1)}''' + f'{one()}' f"{two()}" + plain()
nested = f"{f'{deep()}'}" + after()
""",
    "non-ASCII columns": """
größe = nn.BatchNorm2d(8); 名前 = nn.BatchNorm2d(16)
text = "ünïcode"; layer = conv(größe)(名前)
""",
    "one-line suites and semicolons": """
if x: a(); b()
for i in r(): c(i)
while w(): d()
def f(): return g(h())
class K: i = j()
""",
    "line continuations and brackets": """
x = f(1,
      g(2)) + \\
    h(3)
if (a() and
        b()):
    pass
""",
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_shapes_start_where_libcst_says(name):
    assert assert_same_starts(SHAPES[name]) >= 2


def test_every_fixture_file_starts_where_libcst_says():
    checked = 0
    for path in sorted(FIXTURES.rglob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
            cst.parse_module(text)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ast.parse(text)
        except Exception:  # not Python both parsers agree on (the fixtures of broken input)
            continue
        assert_same_starts(text)
        checked += 1
    assert checked > 200


def test_calls_inside_f_strings_get_no_start():
    module, tracker, _ = tracked('x = f"{a()} {a()}" + b()\n')
    calls = []

    class Collect(cst.CSTVisitor):
        def visit_Call(self, node):
            calls.append(node)

    module.visit(Collect())
    assert [tracker.starts.get(id(c)) for c in calls] == [None, None, (1, 21)]


def test_spans_hold_decorators_and_name_the_outermost_definition():
    text = """import torch

@decorate(
    1)
class Net:
    def __init__(self):
        self.bn = make()

if flag:
    class Inner:
        pass
"""
    _, _, spans = tracked(text)
    by_first = {(s.first, s.last): s for s in spans}
    assert by_first[(1, 1)] == Span(1, 1, None, False)
    assert by_first[(3, 7)] == Span(3, 7, "Net", True)
    assert by_first[(6, 7)] == Span(6, 7, "Net", True)
    assert by_first[(7, 7)] == Span(7, 7, "Net", False)
    assert by_first[(9, 11)] == Span(9, 11, None, True)
    assert by_first[(10, 11)] == Span(10, 11, "Inner", True)


@pytest.mark.parametrize(
    "text, tree_text",
    [
        ("a = 1\nb = 2\n", "a = 1\n"),  # a statement ast does not have
        ("a = 1\n", "a = 1\nb = 2\n"),  # one ast has and LibCST does not
        ("def f():\n    pass\n", "class f:\n    pass\n"),  # another kind
        ("x = f(g())\n", "x = f(h())\n"),  # a call of another name
        ("x = f(g())\n", "x = f(g(), k())\n"),  # a call LibCST does not visit
    ],
)
def test_parses_that_do_not_pair_raise(text, tree_text):
    module = cst.parse_module(text)
    with pytest.raises(Mismatch):
        tracker = StatementTracker(module, ast.parse(tree_text), text)
        module.visit(Combined([Everything()], tracker))


CONVERT = """import torch.nn as nn


class Head(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return self.bn(self.conv(x))
"""


class Replace(cst.CSTTransformer):
    """Renames the calls starting at ``wanted`` and records the starts it was given."""

    def __init__(self, wanted):
        super().__init__()
        self.wanted = wanted
        self.seen = []

    def descends(self, span):
        return any(span.holds(line) for line, _ in self.wanted)

    def leave_Call(self, original, updated):
        start = self.start_of(original)
        self.seen.append(start)
        return updated.with_changes(func=cst.Name("renamed")) if start in self.wanted else updated


def test_the_pass_goes_only_into_statements_a_part_wants():
    parts = []

    def make():
        parts[:] = [Replace({(8, 18)})]
        return parts

    module, ran = combined.transform(cst.parse_module(CONVERT), CONVERT, make)
    assert "self.bn = renamed(c)" in module.code
    # only the statement holding line 8 was looked into: neither the conv nor forward's calls
    assert ran[0].seen == [(8, 18)]


def test_a_mismatch_falls_back_to_position_provider(monkeypatch):
    def refuse(self, node):
        raise Mismatch("forced")

    monkeypatch.setattr(node_starts.StatementTracker, "descend", refuse)
    made = []

    def make():
        made.append(Replace({(8, 18)}))
        return [made[-1]]

    module, ran = combined.transform(cst.parse_module(CONVERT), CONVERT, make)
    assert "self.bn = renamed(c)" in module.code
    assert len(made) == 2 and ran == [made[1]]  # afresh, not the half-run part
    # PositionProvider's pass goes into every statement: every call was seen, in order
    assert ran[0].seen == [(6, 8), (6, 8), (7, 20), (8, 18), (11, 23), (11, 15)]


def test_text_python_cannot_parse_falls_back():
    text = "x = nn.BatchNorm2d(3)\n"
    made = []

    def make():
        made.append(Replace({(1, 4)}))
        return [made[-1]]

    module, _ = combined.transform(cst.parse_module(text), "x = (\n", make)
    assert module.code == "x = renamed(3)\n" and len(made) == 1  # no tracker was made


def test_the_centernet_rewrite_takes_the_fast_path(monkeypatch):
    """Every rewrite of the bundled CenterNet repository pairs up: no fallback."""
    from bn2gn import api

    fallbacks = []
    real = combined.MetadataWrapper

    class Counting(real):
        def __init__(self, *args, **kwargs):
            fallbacks.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(combined, "MetadataWrapper", Counting)
    run = api.Session.open([FIXTURES / "centernet_mini"]).rewrite()
    assert sum(1 for r in run.results if r.status == "changed") >= 2
    assert fallbacks == []
