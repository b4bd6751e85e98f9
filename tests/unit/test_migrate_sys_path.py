"""The folders a train script's imports are found in, from the repository's own sys.path set-up
(what migrate's --path and the checkpoint options are read with). Each tree is written here; the
expected folders are written by hand from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bn2gn.migrate.sys_path import import_roots

INIT_PATHS = """\
import os.path as osp
import sys


def add_path(path):
    if path not in sys.path:
        sys.path.insert(0, path)


this_dir = osp.dirname(__file__)
add_path(osp.join(this_dir, 'lib'))
"""


def _write(root: Path, files: dict) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


@pytest.mark.parametrize(
    "files, script, added",
    [
        (
            {"src/_init_paths.py": INIT_PATHS, "src/main.py": "import _init_paths\n"},
            "src/main.py",
            "src/lib",
        ),
        (
            {
                "tools/train.py": "import sys\nfrom pathlib import Path\n"
                "sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'src' / 'lib'))\n"
            },
            "tools/train.py",
            "src/lib",
        ),
        (
            {
                "tools/train.py": "import os, sys\n"
                "sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'lib'))\n"
            },
            "tools/train.py",
            "lib",
        ),
        ({"train.py": "import sys\nsys.path.append('src/lib')\n"}, "train.py", "src/lib"),
    ],
)
def test_sys_path_set_up_is_followed(tmp_path, files, script, added):
    repo = tmp_path / "repo"
    _write(repo, files)
    (repo / added).mkdir(parents=True, exist_ok=True)
    roots = import_roots(repo / script, repo, {})
    assert [r.resolve() for r in roots] == [
        (repo / script).parent.resolve(),
        (repo / added).resolve(),
        *([] if (repo / script).parent == repo else [repo.resolve()]),
    ]


def test_what_cannot_be_read_adds_nothing(tmp_path):
    repo = tmp_path / "repo"
    _write(
        repo,
        {
            "train.py": "import os, sys\n"
            "sys.path.insert(0, os.environ['LIB'])\n"
            "sys.path.insert(0, 'missing/lib')\n"
            "sys.path.insert(0, str(__import__('pathlib').Path(__file__).parents[7]))\n"
        },
    )
    assert import_roots(repo / "train.py", repo, {}) == (repo,)
