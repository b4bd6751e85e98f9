"""The OpenMMLab note read from the text decides as the ``ast`` reading does.

``looks_like_openmmlab_config`` reads a file's top-level statements from its text where it can tell
(``analysis/openmmlab_text.py``) and parses with ``ast`` otherwise. Every verdict here is compared
with the ``ast`` reading of the same text, on every fixture and on hand-written shapes (each with the
verdict written by hand too), so a text shortcut that decides differently fails.
"""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path

import pytest
from conftest import FIXTURES
from hypothesis import given, settings
from hypothesis import strategies as st

from bn2gn.decide.openmmlab import _named_like_config, looks_like_openmmlab_config
from bn2gn.decide.openmmlab_text import (
    _BASE_LINE,
    _DEFINITION_LINE,
    config_statements,
    first_line_start,
    quick_verdict,
)


def by_ast(text: str) -> bool:
    """The verdict with the whole file parsed: what the note decided before the text reading."""
    if "dict(" not in text and "read_base" not in text and "_base_" not in text:
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return False
    return looks_like_openmmlab_config(tree)


# (text, verdict written by hand)
CASES = [
    ("_base_ = ['a.py']\nmodel = dict(a=1)\n", True),
    ("# a config\n_base_ = './a.py'\n", True),
    ('"""doc"""\n_base_ = "a.py"\n', True),
    ("_base_ == 1\nmodel = dict()\n", False),
    ("_base_: list = []\nmodel = dict()\n", False),  # an annotated assignment binds no plain name
    ("import os\n_base_ = 'a.py'\ndef f():\n    pass\n", False),
    ("_base_ = 'a.py'\n@decorate\nclass A:\n    pass\n", False),
    ("_base_ = 'a.py'\nasync def f():\n    pass\n", False),
    ("_base_ = 'a.py'\nasync with x:\n    pass\n", True),
    ("x = '''\ndef f():\n'''\n_base_ = 'a.py'\n", True),  # a def line inside a string
    ("x = dict(\n_base_ = 1)\nmodel = dict()\n", False),  # _base_ inside brackets: a keyword
    ("s = '''\n_base_ = 1\n'''\nmodel = dict()\n", False),  # _base_ inside a string
    ("x = \\\n_base_ = 1\n", True),  # continued line: ``x = _base_ = 1`` binds both
    ("model = dict(type='X')\noptimizer = dict(type='SGD')\n", True),
    ("model = dict(type='X')\n", False),
    ("model = cfg = dict()\ntrain_cfg = dict()\n", True),
    ("model = x.y = dict()\ntest_cfg = 1\n", True),
    ("model, optimizer = dict(), dict()\n", False),  # a tuple target binds no plain name
    ("(model) = dict()\noptimizer = dict()\n", True),
    ("model[0] = dict()\noptimizer = dict()\n", False),
    ("model = dict(); optimizer = dict()\n", True),
    ("import os; model = dict(); lr_config = 1\n", True),
    ("if True: model = dict(); optimizer = 1\n", False),  # the body of an if is not top-level
    ("if True:\n    model = dict()\n    optimizer = dict()\n", False),
    ("model = dict()\nf = lambda a=1: a\noptimizer = dict()\n", True),
    ("model = dict(x=(1, [2, {3: 4}]))\nrunner = dict(type='R')\n", True),
    ("model = dict(\n    a=1,  # ) not closed here\n)\noptimizer = dict()\n", True),
    ("model = dict(\n    type='A',\n    backbone=dict(type='R',\n)\n", False),  # unbalanced
    ("model = dict(a='unterminated)\noptimizer = dict()\n", False),
    ("from mmengine.config import read_base\nwith read_base():\n    from .a import *\n", True),
    ("with mmengine.config.read_base():\n    from .a import *\ndef f(): pass\n", True),
    ("def f(): pass\nwith read_base():\n    from .a import *\n", False),
    ("with (read_base()):\n    pass\ndict()\n", True),
    ("with read_base() as b, x():\n    pass\ndict()\n", True),
    ("with foo(read_base()):\n    pass\ndict()\n", False),
    ("with read_base[0]:\n    pass\ndict()\n", False),
    ("model = dict(name='ｍodel')\noptimizer = dict()\n", True),  # non-ASCII inside a string
    ("ｍodel = dict()\noptimizer = dict()\n", True),  # NFKC: ast reads ``model``
    ("model = dict()\r\noptimizer = dict()\r\n", True),
    ("model = dict()\n\x0coptimizer = dict()\n", True),
    ("x = (\n", False),
    ("", False),
]


@pytest.mark.parametrize("text, expected", CASES)
def test_hand_written_shapes(text, expected):
    assert by_ast(text) == expected  # the cases say what ast decides
    assert looks_like_openmmlab_config(text) == expected
    assert looks_like_openmmlab_config(text.encode("utf-8")) == expected


@pytest.mark.parametrize("text, expected", CASES)
def test_each_text_reading_agrees_where_it_answers(text, expected):
    assert quick_verdict(text) in (None, expected)
    read = config_statements(text)
    if read is not None:
        verdict, names = read
        assert (_named_like_config(names) if verdict is None else verdict) == expected


def test_most_configs_are_read_from_the_text():
    """The point of the text reading: the fixture configs need no parse."""
    configs = [
        "cmt/projects/configs/fusion/cmt_voxel0100_r50_800x320_cbgs.py",
        "delete/swin_child.py",
        "custom_imports/r50_gn_neck.py",
    ]
    for name in configs:
        text = (FIXTURES / "mmconfig" / name).read_text()
        assert quick_verdict(text) is True or config_statements(text) is not None


def _fixture_files():
    return sorted(p for p in Path(FIXTURES).rglob("*.py") if "__pycache__" not in p.parts)


def test_every_fixture_decides_as_with_ast():
    differ = []
    for path in _fixture_files():
        data = path.read_bytes()
        text = data.decode("utf-8", "replace")
        if looks_like_openmmlab_config(data) != by_ast(text):
            differ.append(str(path))
    assert differ == []


def test_scan_notes_configs_without_parsing_them(monkeypatch):
    """``bn2gn scan``'s note on a folder of configs costs no ``ast`` parse of them."""
    from bn2gn.decide import scan

    folder = FIXTURES / "mmconfig" / "delete"
    raw = {p: p.read_bytes() for p in sorted(folder.rglob("*.py"))}
    expected = scan.openmmlab_configs(raw)
    assert expected  # the folder holds configs

    def no_parse(*args, **kwargs):
        raise AssertionError("a config was parsed")

    monkeypatch.setattr(ast, "parse", no_parse)
    assert scan.openmmlab_configs(raw) == expected


@pytest.mark.parametrize(
    "data",
    [
        b"_base_ = 'a.py'\n",
        b"x = read_base\n",
        b"model = dict(a=1)\n",
        b"import os\nmodel  =  dict (a=1)\n",
        b"import os\nmodel = dict\n",
        b"import os\n  model = dict(a=1)\n",
        b"my_model = dict(a=1)\n",
        b"x = 1\r\nmodel = dict(a=1)\r\n",
        b"x = 1\rmodel = dict(a=1)\r",
        b"model\n= dict(a=1)\n",
        b"",
    ],
)
def test_config_text_is_the_regular_expression(data):
    from bn2gn.decide.scan import CONFIG_TEXT, config_text

    assert config_text(data) == bool(CONFIG_TEXT.search(data))


def test_display_paths_below_the_working_directory(tmp_path, monkeypatch):
    from bn2gn.decide.scan import display_path

    monkeypatch.chdir(tmp_path)
    assert display_path(tmp_path / "a" / "b.py") == "a/b.py"
    assert display_path(Path("a/../c.py")) == "c.py"
    assert display_path(tmp_path / "..x.py") == (tmp_path / "..x.py").as_posix()
    assert display_path(tmp_path.parent / "y.py") == (tmp_path.parent / "y.py").as_posix()


# -- line starts without a line-anchored pattern ---------------------------------------------------
DEFINITION_RE = re.compile(r"^(?:def\b|class\b|async\b|@)", re.MULTILINE)
BASE_RE = re.compile(r"^_base_[ \t]*=(?!=)", re.MULTILINE)


def by_regex(pattern, text: str) -> int:
    found = pattern.search(text)
    return found.start() if found else -1


LINE_STARTS = [
    "def f(): pass\n",
    "x = 1\ndefault = 2\ndef g(): pass\n",  # 'def' not followed by a word's end first
    "default = 1\nclassy = 2\n",
    "class_ = 1\n@dec\nclass A: pass\n",
    "x = 1\r\ndef f(): pass\n",
    "x = 1\rdef f(): pass\n",  # a lone \r starts no line for ^
    "  def f(): pass\n",
    "asyncio = 1\nasync def f(): pass\n",
    "x = '''\ndef in a string'''\n",
    "_base_ = ['a.py']\n",
    "y = 1\n_base_==2\n_base_ \t= 3\n",
    "_base_x = 1\n",
    "defé = 1\ndef\n",
    "",
    "\n",
    "@",
]


@pytest.mark.parametrize("text", LINE_STARTS)
def test_first_line_start_finds_what_a_multiline_pattern_finds(text):
    assert first_line_start(text, _DEFINITION_LINE) == by_regex(DEFINITION_RE, text)
    assert first_line_start(text, _BASE_LINE) == by_regex(BASE_RE, text)


def test_first_line_start_on_every_fixture():
    for path in sorted(FIXTURES.rglob("*.py")):
        text = path.read_bytes().decode("utf-8", "replace")
        assert first_line_start(text, _DEFINITION_LINE) == by_regex(DEFINITION_RE, text), path
        assert first_line_start(text, _BASE_LINE) == by_regex(BASE_RE, text), path


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.lists(
        st.sampled_from(
            ["def", "class", "async", "@", "_base_", " ", "=", "==", "x", "\n", "\r", "é", "_"]
        ),
        max_size=30,
    )
)
def test_first_line_start_on_generated_text(pieces):
    text = "".join(pieces)
    assert first_line_start(text, _DEFINITION_LINE) == by_regex(DEFINITION_RE, text)
    assert first_line_start(text, _BASE_LINE) == by_regex(BASE_RE, text)
