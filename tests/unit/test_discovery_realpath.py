"""Discovery names each real file once while resolving each folder once, not each file."""

from __future__ import annotations

import os

from bn2gn.core import discovery


def _tree(tmp_path):
    real = tmp_path / "real"
    (real / "pkg").mkdir(parents=True)
    for name in ("a.py", "b.py", "pkg/c.py"):
        (real / name).write_text("x = 1\n")
    os.symlink(real, tmp_path / "link")  # the same folder under a second name
    os.symlink(real / "a.py", real / "alias.py")  # a file under a second name
    return real


def test_each_real_file_once_across_symlinked_folders(tmp_path):
    real = _tree(tmp_path)
    found = discovery.discover([tmp_path / "link", real])
    names = sorted(p.relative_to(tmp_path).as_posix() for p in found.files)
    # link/ is walked first and its files come first in the order; the symlinked file is skipped
    assert names == ["link/a.py", "link/b.py", "link/pkg/c.py"]
    reasons = {p.name: why for p, why in found.skipped}
    assert reasons["alias.py"].startswith("same file as")


def test_folders_are_resolved_once(tmp_path, monkeypatch):
    real = _tree(tmp_path)
    for index in range(40):
        (real / f"m{index}.py").write_text("y = 2\n")
    calls = []
    resolve = os.path.realpath

    def counted(path, *args, **kwargs):
        calls.append(path)
        return resolve(path, *args, **kwargs)

    monkeypatch.setattr(os.path, "realpath", counted)
    found = discovery.discover([real])
    assert len(found.files) == 43
    assert len(calls) < 10  # the given folder, its subfolder, the symlink: not one per file


def test_files_in_a_folder_are_not_stat_ed_one_by_one(tmp_path, monkeypatch):
    """The folder listing says whether an entry is a symlink, a folder or a regular file."""
    real = _tree(tmp_path)
    for index in range(40):
        (real / f"m{index}.py").write_text("y = 2\n")
    os.symlink(real / "missing.py", real / "broken.py")
    calls = []
    stat = os.stat

    def counted(path, *args, **kwargs):
        calls.append(path)
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counted)
    found = discovery.discover([real])
    assert len(found.files) == 43
    reasons = {p.name: why for p, why in found.skipped}
    assert reasons["broken.py"] == "broken symlink"
    assert reasons["alias.py"].startswith("same file as")
    assert len(calls) < 10  # the given folder, the symlinks: not one per file
