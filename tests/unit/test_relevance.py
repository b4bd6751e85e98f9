"""The relevance pre-filter (analysis/relevance.py) parses only the files that can take part in a
decision: which files it parses on hand-written trees, and that on every fixture folder the plan is the
one the analysis makes when every file is parsed."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bn2gn.core.errors import SourceError
from bn2gn.core.settings import Config
from bn2gn.decide import relevance, scan

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_FOLDERS = sorted(
    p
    for p in (ROOT / "fixtures").glob("*/")
    if p.is_dir() and any(p.rglob("*.py")) and not p.name.startswith("BN2GN")
)

HEAD = """\
import torch.nn as nn


class Head(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bn = nn.BatchNorm2d(c)
"""

DETECTOR = """\
import torch.nn as nn

from .head import Head


class Detector(nn.Module):
    def __init__(self, backbone_cfg):
        super().__init__()
        self.backbone = build(backbone_cfg)
        self.head = Head(64)
"""


def write(root: Path, files: Dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def parsed(root: Path, config: Optional[Config] = None) -> List[str]:
    config = config or Config()
    raw = {p: p.read_bytes() for p in sorted(root.rglob("*.py"))}
    errors: list = []
    modules = relevance.select_modules(raw, scan.parse_with_sites, config, errors)
    return sorted(m.path.relative_to(root).as_posix() for m in modules)


def test_words_in_strings_comments_and_configs_do_not_admit_a_file(tmp_path):
    write(
        tmp_path,
        {
            "lib/__init__.py": "",
            "lib/head.py": HEAD,
            "lib/detector.py": DETECTOR,
            # an OpenMMLab-style config: the class names and the backbone are strings and keywords
            "configs/det.py": "model = dict(type='Detector', backbone=dict(type='ResNet'),\n"
            "             head=dict(type='Head'))\n",
            # a docstring and a comment name Head, and the module is never imported
            "lib/notes.py": '"""Head and Detector are described here."""\n# see Head in the head module\n'
            "def main():\n    model = 'Head'\n    return model\n",
            # a tool whose words (main, model) the detector files share: no link to anything
            "tools/train.py": "from lib import notes\n\ndef main():\n    model = notes.main()\n",
            # would fail to parse if it were read
            "configs/broken.py": "model = dict(type='Head'\n",
        },
    )
    assert parsed(tmp_path) == ["lib/detector.py", "lib/head.py"]


def test_every_spelling_that_links_a_target_admits_its_file(tmp_path):
    write(
        tmp_path,
        {
            "lib/__init__.py": "",
            "lib/head.py": HEAD,
            "lib/a.py": "from .head import Head as H\n\nclass A(H):\n    pass\n",
            "lib/b.py": "from . import head\n\ndef make():\n    return head.Head(3)\n",
            "lib/c.py": "import lib\n\nTABLE = {'x': lib.head . Head}\n",
            "lib/d.py": "from lib.head import (\n    Head,\n)\n\nclass D:\n    part = Head\n",
            # the name alone, with no way to reach lib.head: not linked, not parsed
            "lib/e.py": "from other import Head\n\ndef f():\n    return Head(1)\n",
            # users of users: A is a target through lib/a.py, so its importer is parsed too
            "lib/f.py": "from .a import A\n\ndef g():\n    return A(2)\n",
        },
    )
    assert parsed(tmp_path) == [
        "lib/a.py",
        "lib/b.py",
        "lib/c.py",
        "lib/d.py",
        "lib/f.py",
        "lib/head.py",
    ]


def test_a_name_defined_in_a_package_init_links_from_below_it(tmp_path):
    write(
        tmp_path,
        {
            "pkg/__init__.py": HEAD,
            "pkg/sub/__init__.py": "",
            "pkg/sub/user.py": "from .. import Head\n\nclass User:\n    h = Head\n",
            "elsewhere/user.py": "from x import Head\n\nclass Other:\n    h = Head\n",
        },
    )
    assert parsed(tmp_path) == ["pkg/__init__.py", "pkg/sub/user.py"]


def test_a_class_holding_a_backbone_is_a_seed_without_batchnorm(tmp_path):
    """A root whose backbone is built from a config (no BatchNorm in its file) is parsed, so is the
    subclass that imports it; a keyword ``backbone=`` or a function touching ``.backbone`` is not."""
    write(
        tmp_path,
        {
            "det/__init__.py": "",
            "det/base.py": "import torch.nn as nn\n\nclass Base(nn.Module):\n"
            "    def __init__(self, cfg):\n        super().__init__()\n"
            "        setattr(self, 'backbone', make(cfg))\n",
            "det/two.py": "from .base import Base\n\nclass Two(Base):\n    pass\n",
            "det/cfg.py": "settings = dict(backbone=dict(depth=50))\n",
            "det/tool.py": "def show(model):\n    return model.backbone\n",
            "det/uses_tool.py": "from .tool import show\n\ndef run(m):\n    return show(m)\n",
        },
    )
    # tool.py spells .backbone but defines no class: not a seed, and nothing that uses it is read
    assert parsed(tmp_path) == ["det/base.py", "det/two.py"]


def test_a_root_option_seeds_its_class(tmp_path):
    write(
        tmp_path,
        {
            "m/__init__.py": "",
            "m/head.py": HEAD,
            "m/net.py": "import torch.nn as nn\n\nclass Net(nn.Module):\n    pass\n",
            "m/other.py": "import torch.nn as nn\n\nclass Other(nn.Module):\n    pass\n",
        },
    )
    assert parsed(tmp_path) == ["m/head.py"]
    assert parsed(tmp_path, Config(roots=("m/net.py:Net",))) == ["m/head.py", "m/net.py"]


def test_text_helpers():
    text = relevance.FileText(
        Path("x.py"),
        b"import a.b as c, d\nfrom . import (e,\n    f)\nfrom ..g import h\n"
        b"from m import n\nx = models.resnet . ResNet\n",
    )
    assert {b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h", b"m", b"n"} <= text.import_words
    assert b"models" not in text.import_words
    assert {b"a", b"d", b"e", b"f"} <= text.bare_imports
    assert not {b"b", b"c", b"h", b"n"} & text.bare_imports
    assert text.words_before(b"ResNet") == {b"resnet"}  # models.resnet . ResNet
    assert text.words_before(b"resnet") == {b"models"}
    assert text.words_before(b"models") == set()
    # a word read back from ``.name``: over spaces and line breaks, not from a digit, whole words only
    text = relevance.FileText(
        Path("y.py"),
        "p = (a\n . b, 1c.b, _1d.b, e.\n.b, f.bc, g.b2, h .b.b, ié.b, j..b, k . \\\n b)\n".encode(),
    )
    # ``h .b.b``: h before the first b, b before the second; a backslash is no space
    assert text.words_before(b"b") == {b"a", b"_1d", b"h", b"b", "ié".encode()}
    assert text.words_before(b"bc") == {b"f"}
    assert text.words_before(b"b2") == {b"g"}
    text = relevance.FileText(
        Path("z.py"),
        "class Fo0(B):\n    class Inner:\nclass Gé:\nclassy = 1\n  class\tBar2 :\nx = 'class Q'\n"
        "class Ré:\n".encode(),
    )
    for names, defined in [
        ({b"Fo0"}, True),
        ({b"Fo"}, False),
        ({b"Inner", b"Nope"}, True),
        ({b"Bar2"}, True),
        ({b"Bar"}, False),
        ({b"G"}, True),  # ``\b`` after an ASCII name: the non-ASCII letter after it ends it
        # as the search always did: ``\b`` after a non-ASCII letter needs an ASCII word after it
        ({"Ré".encode()}, False),
        ({"R".encode(), "Rê".encode()}, True),
        ({"Rê".encode()}, False),
        ({b"y"}, False),
        ({b"Q"}, False),
    ]:
        assert text.defines_class(names) is defined, names
    source = (
        b"x = 'A'  # B\n"
        b'y = f"{C}"\n'
        b"z = '''D\n''' + rb'\\'' + E\n"
        b"w = Rf'{G}' + br'H'\n"
        b"if'{Q}': pass\n"
    )
    code = relevance.code_only(source)
    # the prefix letters stay as words; f-strings keep their code; every line keeps its number
    assert [set(relevance.WORD.findall(line)) for line in code.splitlines()] == [
        {b"x"},
        {b"y", b"f", b"C"},
        {b"z"},
        {b"rb", b"E"},
        {b"w", b"Rf", b"G", b"br"},
        {b"if", b"pass"},
    ]
    old_mac = b"a = 1 # Head\rb = '''x\ry'''\rc = Head\r"
    assert [
        set(relevance.WORD.findall(line)) for line in relevance.code_only(old_mac).splitlines()
    ] == [
        {b"a"},
        {b"b"},
        set(),
        {b"c", b"Head"},
    ]


def test_each_definition_spells_its_own_code_words(tmp_path):
    path = tmp_path / "m.py"
    path.write_bytes(
        b"import torch.nn as nn\n"
        b"from .head import Head as H\n"
        b"\n"
        b"@register('Neck')\n"
        b"class A(nn.Module):\n"
        b"    '''Uses Neck.'''\n"
        b"    def __init__(self):\n"
        b"        self.h = H()  # not Tail\r"  # a lone carriage return ends a line for ast too
        b"TABLE = {'b': Tail, 'c': f'{Body}'}\n"
    )
    facts = scan.parse_facts(path, path.read_bytes())
    spelled = relevance.spelled_by_definition(facts, path.read_bytes())
    assert set(spelled) == {"A", "TABLE"}
    assert spelled["A"] == {
        b"register",
        b"class",
        b"A",
        b"nn",
        b"Module",
        b"def",
        b"__init__",
        b"self",
        b"h",
        b"H",
        b"Head",  # the name H imports
    }
    assert spelled["TABLE"] == {b"TABLE", b"Tail", b"f", b"Body"}


def test_a_compatibility_spelling_of_a_name_links_as_ast_reads_it(tmp_path):
    """A fullwidth H spells the identifier ``Head`` once Python reads it (NFKC): the file that builds
    it is parsed, and so is the latin-1 file that uses that file's class."""
    write(
        tmp_path,
        {
            "m/__init__.py": "",
            "m/head.py": HEAD,
            "m/block.py": "import torch.nn as nn\nfrom .head import \uff28ead\n\n"
            "class Block(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            "        self.h = \uff28ead(1)\n",
            "m/net.py": "import torch.nn as nn\nfrom .block import Block\n\n"
            "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
            "        self.backbone = nn.Identity()\n        self.b = Block()\n",
        },
    )
    (tmp_path / "m/tail.py").write_bytes(
        b"# -*- coding: latin-1 -*-\n# caf\xe9\nfrom .block import Block\n\n"
        b"def make():\n    return Block()\n"
    )
    assert parsed(tmp_path) == ["m/block.py", "m/head.py", "m/net.py", "m/tail.py"]


def plan_sites(folder: Path, everything: bool, monkeypatch) -> list:
    if everything:

        def parse_every_file(raw, parse, config, errors, parse_batch=None):
            out = []
            for path, data in raw.items():
                try:
                    out.append(parse(path, data))
                except SourceError:
                    pass
            return out

        monkeypatch.setattr(relevance, "select_modules", parse_every_file)
    try:
        plan, _ = scan.build_plan([folder], Config())
    finally:
        monkeypatch.undo()
    return [(s.path, s.line, s.col, s.decision, s.reason) for s in plan.sites]


@pytest.mark.parametrize("folder", FIXTURE_FOLDERS, ids=lambda p: p.name)
def test_the_plan_is_the_one_made_with_every_file_parsed(folder, monkeypatch):
    filtered = plan_sites(folder, False, monkeypatch)
    assert filtered == plan_sites(folder, True, monkeypatch)


# -- generated packages: the filtered plan decides every site as the every-file plan does ----------

#: how a class in module ``src`` can refer to class ``name`` of module ``dst`` (imports, expression);
#: the last ones spell the name without linking it (a string, a comment, a config keyword)
SPELLINGS = [
    lambda dst, name: ("", name) if dst is None else (f"from .{dst} import {name}", name),
    lambda dst, name: ("", name) if dst is None else (f"from . import {dst}", f"{dst}.{name}"),
    lambda dst, name: ("", name) if dst is None else (f"import pkg.{dst}", f"pkg.{dst}.{name}"),
    lambda dst, name: ("", name) if dst is None else ("import pkg", f"pkg.{dst}.{name}"),
    lambda dst, name: (
        ("", name) if dst is None else (f"from .{dst} import {name} as Alias{name}", f"Alias{name}")
    ),
    lambda dst, name: ("", f"build('{name}')"),
    lambda dst, name: ("", f"build(dict(type='{name}'))  # {name}"),
]


@st.composite
def packages(draw):
    """A package of 3-5 modules with 1-3 nn.Module classes and a factory function each. A class
    holds BatchNorm, another class or factory (through any spelling), a table of them, and rarely a
    backbone attribute: most modules are not seeds, so the filter has files to leave out; a spine
    of classes from a backbone holder to a BatchNorm crosses every module."""
    modules = draw(st.integers(3, 5))
    classes = [(m, c) for m in range(modules) for c in range(draw(st.integers(1, 3)))]
    names = [f"C{m}{c}" for m, c in classes] + [f"make{m}" for m in range(modules)]
    home = {f"C{m}{c}": m for m, c in classes} | {f"make{m}": m for m in range(modules)}
    bodies: Dict[int, List[str]] = {m: [] for m in range(modules)}
    imports: Dict[int, set] = {m: set() for m in range(modules)}

    def reference(m: int, exclude: str) -> str:
        other = draw(st.sampled_from([n for n in names if n != exclude]))
        spell = draw(st.sampled_from(SPELLINGS))
        line, expr = spell(None if home[other] == m else f"m{home[other]}", other)
        if line:
            imports[m].add(line)
        return expr if "(" in expr else f"{expr}()"

    kinds = ["bn"] * 3 + ["attr"] * 5 + ["table"] + ["backbone"]
    for m, c in classes:
        name = f"C{m}{c}"
        lines = []
        # a spine: C00 holds a backbone and each module's first class the next one's, through
        # any spelling; the last one holds BatchNorm (converted if every link is followed)
        if (m, c) == (0, 0):
            lines.append("self.backbone = nn.Identity()")
        if c == 0 and m + 1 < modules:
            spell = draw(st.sampled_from(SPELLINGS))
            line, expr = spell(f"m{m + 1}", f"C{m + 1}0")
            if line:
                imports[m].add(line)
            lines.append(f"self.next = {expr if '(' in expr else expr + '()'}")
        if (m, c) == (modules - 1, 0):
            lines.append("self.bn_last = nn.BatchNorm2d(8)")
        for index in range(draw(st.integers(0, 2))):
            kind = draw(st.sampled_from(kinds))
            if kind == "bn":
                lines.append("self.bn = nn.BatchNorm2d(8)")
            elif kind == "table":
                bodies[m].append(f"TABLE{m}{c}{index} = {{'k': {reference(m, name)}}}\n")
                lines.append(f"self.part{index} = TABLE{m}{c}{index}['k']")
            else:
                target = "backbone" if kind == "backbone" else f"part{index}"
                lines.append(f"self.{target} = {reference(m, name)}")
        body = "".join(f"        {line}\n" for line in lines)
        bodies[m].append(
            f"class {name}(nn.Module):\n    def __init__(self):\n        super().__init__()\n{body}\n"
        )
    for m in range(modules):
        bodies[m].append(f"def make{m}():\n    return {reference(m, f'make{m}')}\n")
    files = {"pkg/__init__.py": ""}
    for m in range(modules):
        head = "import torch.nn as nn\n" + "".join(f"{line}\n" for line in sorted(imports[m]))
        files[f"pkg/m{m}.py"] = head + "\n\n" + "\n\n".join(bodies[m])
    return files


def decisions(folder: Path, everything: bool, monkeypatch) -> list:
    return [site[:4] for site in plan_sites(folder, everything, monkeypatch)]


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(packages())
def test_generated_packages_are_decided_as_with_every_file_parsed(
    tmp_path_factory, monkeypatch, files
):
    root = tmp_path_factory.mktemp("gen")
    write(root, files)
    filtered = decisions(root, False, monkeypatch)
    assert filtered == decisions(root, True, monkeypatch), files


def test_import_keywords_finds_what_the_word_boundary_regex_finds():
    """``import_keywords`` (``bytes.find`` and the ends checked by hand) is ``rb"\\bimport\\b"``:
    on hand-written edges (letters, digits, ``_``, a dot, non-ASCII bytes and the text's ends
    beside the word) and on every fixture file."""
    import re

    pattern = re.compile(rb"\bimport\b")
    shapes = [
        b"import os",
        b"import",
        b"reimport importer _import import_ import2 2import",
        b"from x import (a,\n  b)\nx.import_y\n#import\n'import'",
        b"\xc3\xa9import \xe9import\xe9 importimport import\timport\nimport",
        b"",
    ]
    files = [p.read_bytes() for p in sorted((ROOT / "fixtures").rglob("*.py"))]
    found = 0
    for data in shapes + files:
        expected = [m.start() for m in pattern.finditer(data)]
        assert relevance.import_keywords(data) == expected, data[:60]
        found += len(expected)
    assert found > 400
    assert relevance.import_keywords(shapes[2]) == []  # each one is part of a longer word
    assert relevance.import_keywords(shapes[4]) == [2, 10, 31, 38, 45]
