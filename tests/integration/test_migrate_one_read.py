"""`migrate` discovers the repository once and reads each file once: the plan, patch-trainer and
the frozen-BatchNorm search share that read, and decide as they did on their own reads."""

from __future__ import annotations

import builtins
import io
import textwrap
from pathlib import Path

from bn2gn.core.settings import Config
from bn2gn.migrate.frozen_bn import frozen_batchnorm_use
from bn2gn.migrate.run import MigrateOptions, plan_migration

FROZEN_CLASS = textwrap.dedent(
    """\
    import torch
    import torch.nn as nn


    class FrozenBN(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.register_buffer("weight", torch.ones(n))
            self.register_buffer("bias", torch.zeros(n))
            self.register_buffer("running_mean", torch.zeros(n))
            self.register_buffer("running_var", torch.ones(n))
    """
)


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "models").mkdir(parents=True)
    (repo / "models" / "__init__.py").write_text("")
    (repo / "models" / "net.py").write_text(
        "import torch.nn as nn\n\n\nclass Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.conv = nn.Conv2d(3, 8, 3)\n"
    )
    (repo / "train.py").write_text(
        "import torch\nfrom models.net import Net\n\nmodel = Net()\n"
        "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\nmodel.train()\n"
    )
    (repo / "util.py").write_text("def helper():\n    return 1\n")
    return repo


def test_migrate_check_opens_each_file_once(tmp_path, monkeypatch):
    repo = _repo(tmp_path)
    opened = []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        if str(file).endswith(".py"):
            opened.append(Path(file).name)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(io, "open", counting_open)  # pathlib's read_bytes opens through io.open
    result = plan_migration(MigrateOptions(repo=repo, config=Config(), mode="check"))
    assert result.scripts == [str(repo / "train.py")]  # patch-trainer did see the script
    assert sorted(opened) == ["__init__.py", "net.py", "train.py", "util.py"]


def test_frozen_search_on_known_bytes_decides_as_on_disk(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    # not UTF-8: read_text replaces the byte, the search still finds both words
    (repo / "frozen.py").write_bytes(b"# caf\xe9\n" + FROZEN_CLASS.encode())
    (repo / "model.py").write_text("from frozen import FrozenBN\n\nnorm = FrozenBN(64)\n")
    (repo / "other.py").write_text("x = 'FrozenBN'\n")  # a string, not a use
    files = sorted(repo.glob("*.py"))
    known = {path: path.read_bytes() for path in files}
    on_disk = frozen_batchnorm_use(repo, files, {})
    from_known = frozen_batchnorm_use(repo, files, {}, known)
    assert str(on_disk) == str(from_known) == "model.py:3 uses FrozenBN (frozen.py:6)"
    for path in files:
        path.unlink()  # the known bytes are all it needs
    assert str(frozen_batchnorm_use(repo, files, {}, known)) == str(on_disk)


def test_frozen_search_finds_nothing_where_no_file_spells_a_frozen_class(tmp_path):
    repo = _repo(tmp_path)
    files = sorted(repo.rglob("*.py"))
    known = {path: path.read_bytes() for path in files}
    assert frozen_batchnorm_use(repo, files, {}, known) is None
    assert frozen_batchnorm_use(repo, files, {}) is None


def test_file_keys_are_real_paths_resolving_each_folder_once(tmp_path, monkeypatch):
    import os

    from bn2gn.api import file_key, file_keys

    real = tmp_path / "real"
    (real / "pkg").mkdir(parents=True)
    for name in ("a.py", "pkg/b.py"):
        (real / name).write_text("x = 1\n")
    os.symlink(real, tmp_path / "link")
    os.symlink(real / "a.py", real / "alias.py")
    monkeypatch.chdir(tmp_path)
    paths = [
        Path("link/a.py"),
        tmp_path / "real" / "pkg" / "b.py",
        Path("real/alias.py"),
        Path("real/missing.py"),
        Path("link/pkg/../a.py"),
        Path("a.py"),
        "real/pkg/",
    ]
    expected = [file_key(p) for p in paths]
    calls = []
    resolve = os.path.realpath

    def counted(path, *args, **kwargs):
        calls.append(path)
        return resolve(path, *args, **kwargs)

    monkeypatch.setattr(os.path, "realpath", counted)
    many = [real / f"m{i}.py" for i in range(30)]
    assert file_keys(paths) == expected
    calls.clear()
    assert file_keys(many) == [str(real / f"m{i}.py") for i in range(30)]
    assert len(calls) == 1


# -- one parse: patch-trainer decides on the plan's tree ---------------------------------------------
TRAIN_WITH_HEAD = textwrap.dedent(
    """\
    import torch
    import torch.nn as nn


    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.BatchNorm2d(8)


    model = Head()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    """
)


def _parses(monkeypatch) -> list:
    """The file names ``compile(..., PyCF_ONLY_AST)`` is handed from now on (``ast.parse`` too)."""
    import ast

    seen = []
    real_compile = builtins.compile

    def counting_compile(source, filename, mode, flags=0, *args, **kwargs):
        if flags & ast.PyCF_ONLY_AST and str(filename).endswith(".py"):
            seen.append(Path(str(filename)).name)
        return real_compile(source, filename, mode, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "compile", counting_compile)
    return seen


def _migrated_copy(tmp_path: Path) -> Path:
    import shutil

    from conftest import CENTERNET, run_cli

    repo = tmp_path / "centernet"
    shutil.copytree(CENTERNET, repo)
    assert run_cli(["migrate", "--write", "-q", str(repo)]).exit_code == 0
    return repo


def test_migrate_check_of_a_migrated_repository_parses_each_file_once(tmp_path, monkeypatch):
    repo = _migrated_copy(tmp_path)
    parsed = _parses(monkeypatch)
    result = plan_migration(MigrateOptions(repo=repo, config=Config(), mode="check"))
    assert result.counts()["files_changed"] == 0
    # the train scripts and the trainer are read by the plan and by patch-trainer: parsed once
    assert {"train.py", "train_satmtb.py", "base_trainer.py"} <= set(parsed)
    assert sorted(parsed) == sorted(set(parsed))


def test_patch_trainer_decides_on_the_plan_tree_as_on_its_own_parse(tmp_path, monkeypatch):
    from bn2gn import api

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "train.py").write_text(TRAIN_WITH_HEAD)
    shared = plan_migration(MigrateOptions(repo=repo, config=Config(), mode="diff"))
    handed = []
    monkeypatch.setattr(api.Session, "_plan_trees", lambda self, known: handed.append(known) or {})
    own = plan_migration(MigrateOptions(repo=repo, config=Config(), mode="diff"))
    assert handed  # the second run did go through the same seam, with no tree
    assert shared.scripts == own.scripts == [str(repo / "train.py")]
    assert [r.new_text for r in shared.results] == [r.new_text for r in own.results]
    assert [(c.line, c.rule, c.message) for r in shared.results for c in r.changes] == [
        (c.line, c.rule, c.message) for r in own.results for c in r.changes
    ]


def test_a_tree_of_other_bytes_is_not_handed_on(tmp_path):
    from bn2gn import api

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "train.py").write_text(TRAIN_WITH_HEAD)
    session = api.Session([repo], Config())
    session.rewrite()
    read = session.tree().raw
    assert list(session._plan_trees(read)) == [repo / "train.py"]
    # equal bytes, but not the ones the plan read: the tree may not be theirs (a rewritten file)
    copied = {path: bytes(bytearray(data)) for path, data in read.items()}
    assert session._plan_trees(copied) == {}
    assert session._plan_trees(None) == {}
