"""The shared ``ast`` toolkit: expected values written by hand from the small sources below."""

import ast

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
