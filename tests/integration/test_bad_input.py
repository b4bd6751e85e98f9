"""Bad input through the real CLI: every case is one clear line and a documented
exit code (docs/concepts/robustness.md), nothing outside the given paths is written, and nothing is half-written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from conftest import run_cli, snapshot

MODEL = """import torch.nn as nn


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(8)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = Backbone()
        self.head = nn.Sequential(nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8))
"""
HEAD_ONLY = """import torch.nn as nn


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(4)
"""
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.output
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_model_fixture_has_one_convert_site(tmp_path):
    write(tmp_path / "model.py", MODEL)
    result = run_cli(["scan", "."], cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith("1 files, 2 sites: 1 convert, 1 keep, 0 unsure")


@pytest.mark.parametrize("command", [["scan"], ["rewrite"], ["rewrite", "--check"]])
def test_non_existent_path_is_exit_2(tmp_path, command):
    result = run_cli(command + ["nowhere/model.py"], cwd=tmp_path)
    assert result.exit_code == 2
    assert "nowhere/model.py: no such file or directory; check the path" in one_error_line(result)


@pytest.mark.parametrize("command", [["scan"], ["rewrite", "--diff"]])
def test_empty_directory_is_exit_2_with_a_message(tmp_path, command):
    (tmp_path / "empty").mkdir()
    result = run_cli(command + ["empty"], cwd=tmp_path)
    assert result.exit_code == 2
    assert "empty: no Python files found" in one_error_line(result)


def test_directory_of_only_skipped_files_says_how_to_include_them(tmp_path):
    write(tmp_path / "proj" / ".venv" / "lib" / "model.py", MODEL)
    result = run_cli(["scan", "proj"], cwd=tmp_path)
    assert result.exit_code == 2
    line = one_error_line(result)
    assert (
        "no Python files to process" in line and "--include" in line and ".venv/ is skipped" in line
    )


def test_directory_named_py_is_walked_not_read(tmp_path):
    write(tmp_path / "pkg.py" / "model.py", MODEL)
    result = run_cli(["scan", "."], cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert "pkg.py/model.py:14:" in result.output and "is a directory" not in result.output
    assert run_cli(["scan", "pkg.py"], cwd=tmp_path).exit_code == 0


def test_fifo_named_py_is_skipped_without_blocking(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this platform")
    write(tmp_path / "model.py", MODEL)
    os.mkfifo(tmp_path / "pipe.py")
    result = run_cli(["scan", "."], cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert "1 files, 2 sites" in result.output


# -- symlinks -----------------------------------------------------------------------------------------
@pytest.fixture
def linked_tree(tmp_path):
    """proj/ holds a model, a link to it, a link to a file outside, a broken link and a folder link."""
    outside = write(tmp_path / "outside" / "head.py", MODEL)
    proj = tmp_path / "proj"
    write(proj / "model.py", MODEL)
    (proj / "same.py").symlink_to("model.py")
    (proj / "external.py").symlink_to(outside)
    (proj / "broken.py").symlink_to(tmp_path / "gone.py")
    (proj / "linked_dir").symlink_to(outside.parent, target_is_directory=True)
    return tmp_path


def test_symlinks_outside_the_roots_are_never_written_through(linked_tree):
    outside = linked_tree / "outside" / "head.py"
    before = outside.read_bytes()
    result = run_cli(["rewrite", "proj"], cwd=linked_tree)
    assert result.exit_code == 0, result.output
    assert outside.read_bytes() == before
    assert (linked_tree / "proj" / "external.py").is_symlink()
    assert "get_group_norm(8)" in (linked_tree / "proj" / "model.py").read_text()
    assert (linked_tree / "proj" / "same.py").is_symlink()
    assert os.readlink(linked_tree / "proj" / "same.py") == "model.py"


def test_symlink_to_a_file_inside_is_one_file_not_two(linked_tree):
    result = run_cli(["scan", "proj", "--format", "json"], cwd=linked_tree)
    assert result.exit_code == 0, result.output
    assert '"files": 1' in result.stdout
    assert "same.py" not in result.stdout and "external.py" not in result.stdout


def test_named_symlink_to_outside_file_is_refused(linked_tree):
    result = run_cli(["rewrite", "proj/external.py"], cwd=linked_tree)
    assert result.exit_code == 2
    assert "outside the given folders" in one_error_line(result)
    assert (linked_tree / "outside" / "head.py").read_text() == MODEL


def test_symlink_inside_to_file_only_reachable_through_it_is_followed(tmp_path):
    write(tmp_path / "proj" / "build" / "real.py", MODEL)
    (tmp_path / "proj" / "model.py").symlink_to(Path("build") / "real.py")
    result = run_cli(["rewrite", "proj"], cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "proj" / "model.py").is_symlink()
    assert "get_group_norm(8)" in (tmp_path / "proj" / "build" / "real.py").read_text()


# -- unreadable and read-only files -------------------------------------------------------------------
NOBODY = 65534


@pytest.fixture
def shared_dir():
    """A folder an unprivileged user can reach (pytest's tmp_path sits below a root-only 0700 folder)."""
    folder = Path(tempfile.mkdtemp(prefix="bn2gn-perm-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(folder)


@contextlib.contextmanager
def permissions_apply(folder: Path):
    """Root reads and writes through any mode bit, and CI runs as root: there, hand ``folder`` to an
    unprivileged user and drop the effective uid/gid for the run, so the kernel's checks really apply."""
    if not AS_ROOT:
        yield
        return
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
    # The unprivileged user may not enter the checkout (CI clones it below root's 0700 home), so
    # while it runs, the working folder is ``folder``: run_cli's chdir back lands there, and the
    # checkout is entered again only as root.
    home = os.getcwd()
    os.chdir(folder)
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.chdir(home)


def _warm_up(folder: Path) -> None:
    """Import everything a rewrite needs while the interpreter's own files are still readable."""
    assert run_cli(["rewrite", "--diff", "."], cwd=folder).exit_code in (0, 1)


def test_unreadable_file_is_reported_and_the_rest_is_processed(shared_dir):
    write(shared_dir / "model.py", MODEL)
    secret = write(shared_dir / "secret.py", HEAD_ONLY)
    _warm_up(shared_dir)
    with permissions_apply(shared_dir):
        secret.chmod(0)
        assert not os.access(
            secret, os.R_OK, effective_ids=AS_ROOT
        )  # precondition: this user really cannot read it
        result = run_cli(["rewrite", "."], cwd=shared_dir)
        secret.chmod(0o644)
    assert result.exit_code == 1, result.output
    assert "secret.py:1: cannot read (Permission denied)" in result.stderr
    assert "Traceback" not in result.output
    assert "get_group_norm(8)" in (shared_dir / "model.py").read_text()
    assert (shared_dir / "secret.py").read_text() == HEAD_ONLY


def test_read_only_file_is_reported_not_written(tmp_path):
    path = write(tmp_path / "model.py", MODEL)
    path.chmod(0o444)
    result = run_cli(["rewrite", "."], cwd=tmp_path)
    assert result.exit_code == 1
    assert "model.py:1: file is read-only; make it writable (chmod u+w)" in result.stderr
    assert path.read_text() == MODEL and stat.S_IMODE(path.stat().st_mode) == 0o444
    diff = run_cli(["rewrite", ".", "--diff"], cwd=tmp_path)
    assert diff.exit_code == 0
    assert (
        "+        self.head = nn.Sequential(nn.Conv2d(8, 8, 3), get_group_norm(8))" in diff.stdout
    )
    path.chmod(0o644)
    assert run_cli(["rewrite", "."], cwd=tmp_path).exit_code == 0
    assert "get_group_norm(8)" in path.read_text()


def test_read_only_folder_fails_cleanly_without_temp_files(shared_dir):
    path = write(shared_dir / "proj" / "model.py", MODEL)
    _warm_up(shared_dir)
    with permissions_apply(shared_dir):
        (shared_dir / "proj").chmod(0o555)
        assert not os.access(shared_dir / "proj", os.W_OK, effective_ids=AS_ROOT)
        try:
            result = run_cli(["rewrite", "proj"], cwd=shared_dir)
        finally:
            (shared_dir / "proj").chmod(0o755)
    assert result.exit_code == 1 and "cannot write (Permission denied)" in result.stderr, (
        result.output
    )
    assert path.read_text() == MODEL and sorted(
        p.name for p in (shared_dir / "proj").iterdir()
    ) == ["model.py"]


# -- generated files and skipped folders ----------------------------------------------------------------
def test_generated_file_is_skipped_unless_included(tmp_path):
    generated = write(tmp_path / "gen_model.py", "# @generated by a tool; do not edit\n" + MODEL)
    write(tmp_path / "model.py", HEAD_ONLY)
    before = generated.read_bytes()
    result = run_cli(["rewrite", "."], cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert generated.read_bytes() == before
    scan = run_cli(["scan", ".", "--include", "gen_*.py"], cwd=tmp_path)
    assert "gen_model.py:15:" in scan.output and "2 files" in scan.output
    assert run_cli(["rewrite", ".", "--include", "gen_*.py"], cwd=tmp_path).exit_code == 0
    assert "get_group_norm(8)" in generated.read_text()


def test_marker_far_below_the_header_does_not_make_a_file_generated(tmp_path):
    body = MODEL + "\n" * 2 + "#" * 3000 + "\nMARK = '@generated'\n"
    write(tmp_path / "model.py", body)
    assert "1 files, 2 sites" in run_cli(["scan", "."], cwd=tmp_path).output


@pytest.mark.parametrize("folder", [".venv", "build", ".git", "site-packages", "venv/lib"])
def test_tool_folders_are_skipped_and_include_brings_them_back(tmp_path, folder):
    write(tmp_path / "model.py", MODEL)
    hidden = write(tmp_path / folder / "model.py", MODEL)
    result = run_cli(["rewrite", ".", "--diff"], cwd=tmp_path)
    assert result.exit_code == 0 and f"{folder}/model.py" not in result.output
    name = folder.split("/")[0]
    included = run_cli(["rewrite", ".", "--include", name], cwd=tmp_path)
    assert included.exit_code == 0, included.output
    assert "get_group_norm(8)" in hidden.read_text()


def test_exclude_glob_drops_files_and_folders(tmp_path):
    write(tmp_path / "model.py", MODEL)
    write(tmp_path / "vendor" / "model.py", MODEL)
    write(tmp_path / "legacy_model.py", MODEL)
    before = snapshot(tmp_path)
    result = run_cli(
        ["rewrite", ".", "--exclude", "vendor", "--exclude", "legacy_*.py"], cwd=tmp_path
    )
    assert result.exit_code == 0
    after = snapshot(tmp_path)
    assert after["vendor/model.py"] == before["vendor/model.py"]
    assert after["legacy_model.py"] == before["legacy_model.py"]
    assert after["model.py"] != before["model.py"]


def test_a_named_tool_folder_is_scanned(tmp_path):
    write(tmp_path / "build" / "model.py", MODEL)
    result = run_cli(["scan", "build"], cwd=tmp_path)
    assert result.exit_code == 0 and "1 files, 2 sites" in result.output


# -- code shapes found by the corpus run ------------------------------------------------------------------
def test_chained_call_on_a_converted_batchnorm_keeps_the_chain(tmp_path):
    """`nn.BatchNorm2d(8).cuda(0)` starts where the BatchNorm call starts; only the inner call is the site."""
    extra = "self.backbone = Backbone()\n        self.extra = nn.BatchNorm2d(4).cuda(0)"
    write(
        tmp_path / "model.py",
        MODEL.replace("nn.BatchNorm2d(8))\n", "nn.BatchNorm2d(8).to(dtype=None))\n").replace(
            "self.backbone = Backbone()", extra
        ),
    )
    result = run_cli(["rewrite", "."], cwd=tmp_path)
    assert result.exit_code == 0, result.output
    text = (tmp_path / "model.py").read_text()
    assert "self.extra = get_group_norm(4).cuda(0)" in text
    assert "get_group_norm(8).to(dtype=None))" in text
    assert "not converted" not in result.output


# -- edits made during a run, owners, hard links ---------------------------------------------
def test_a_file_edited_while_rewrite_runs_keeps_the_edit(tmp_path, monkeypatch):
    import bn2gn.core.source_files

    path = write(tmp_path / "model.py", MODEL)
    edited = MODEL + "\n\nEDITED_DURING_THE_RUN = True\n"
    real_fsync = bn2gn.core.source_files._fsync_file

    def edit_then_fsync(tmp):  # runs after the new text is in the temporary file, before the rename
        path.write_text(edited)
        real_fsync(tmp)

    monkeypatch.setattr(bn2gn.core.source_files, "_fsync_file", edit_then_fsync)
    result = run_cli(["rewrite", "."], cwd=tmp_path)
    assert result.exit_code == 1, result.output
    assert (
        "error: model.py: changed while bn2gn was running, not written"
        in result.stderr.splitlines()
    )
    assert path.read_text() == edited and sorted(p.name for p in tmp_path.iterdir()) == ["model.py"]
    monkeypatch.undo()
    assert run_cli(["rewrite", "."], cwd=tmp_path).exit_code == 0
    assert (
        "get_group_norm(8)" in path.read_text()
        and "EDITED_DURING_THE_RUN = True" in path.read_text()
    )


def test_rewrite_keeps_the_owner(tmp_path):
    if not AS_ROOT:
        pytest.skip("only root can give a file to another user; CI runs as root")
    path = write(tmp_path / "model.py", MODEL)
    os.chown(path, 1234, 1234)
    assert run_cli(["rewrite", "."], cwd=tmp_path).exit_code == 0
    assert "get_group_norm(8)" in path.read_text()
    assert (path.stat().st_uid, path.stat().st_gid) == (1234, 1234)


def test_hard_linked_file_is_refused_with_one_line(tmp_path):
    path = write(tmp_path / "proj" / "model.py", MODEL)
    os.link(path, tmp_path / "model_copy.py")
    result = run_cli(["rewrite", "proj"], cwd=tmp_path)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: proj/model.py: has 2 hard links; replacing it would leave the other names with the "
        "old content; not written (break the link first, e.g. cp FILE FILE.new && mv FILE.new FILE)"
    ]
    assert path.read_text() == MODEL and (tmp_path / "model_copy.py").read_text() == MODEL
    assert os.stat(path).st_ino == os.stat(tmp_path / "model_copy.py").st_ino


# -- input errors that used to be "internal error" (exit 3) ----------------------------------
@pytest.mark.parametrize(
    "output, fragment",
    [
        (
            "/nonexistent/x.json",
            "-o /nonexistent/x.json: folder /nonexistent does not exist; create it first "
            "or choose another path",
        ),
        (
            "pipe.json",
            "-o pipe.json: is not a regular file (named pipe); bn2gn only replaces regular files; "
            "not written",
        ),
    ],
)
def test_scan_output_that_cannot_be_written_is_exit_2(tmp_path, output, fragment):
    write(tmp_path / "model.py", MODEL)
    os.mkfifo(tmp_path / "pipe.json")
    result = run_cli(["scan", "model.py", "-o", output], cwd=tmp_path)
    assert result.exit_code == 2, result.output
    assert one_error_line(result) == f"bn2gn: error: {fragment}"


def test_config_tool_bn2gn_not_a_table_is_exit_2(tmp_path):
    write(tmp_path / "model.py", MODEL)
    (tmp_path / "pyproject.toml").write_text("[tool]\nbn2gn = 5\n")
    result = run_cli(["scan", "model.py"], cwd=tmp_path)
    assert result.exit_code == 2, result.output
    assert "pyproject.toml: [tool] bn2gn must be a table" in one_error_line(result)


def test_config_string_instead_of_list_is_exit_2(tmp_path):
    write(tmp_path / "model.py", MODEL)
    (tmp_path / "bn2gn.toml").write_text('backbone-attrs = "head"\n')
    result = run_cli(["rewrite", "model.py"], cwd=tmp_path)
    assert result.exit_code == 2, result.output
    assert "backbone-attrs must be a list of strings, not a string" in one_error_line(result)
    assert (tmp_path / "model.py").read_text() == MODEL
