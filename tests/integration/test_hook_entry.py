"""The pre-commit hook's command line (``migrate --check [-q] [REPO]``) runs without click: it must
print, exit and fail exactly as the click command does, with the same defaults for every flag."""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CENTERNET, FIXTURES, ROOT, run_cli

from bn2gn.cli.entry import hook_arguments, run_hook
from bn2gn.cli.migrate_call import migrate_call
from bn2gn.core.errors import Bn2gnError, Message, Opt
from bn2gn.core.process import Terminated


@pytest.mark.parametrize(
    "args, expected",
    [
        (["migrate", "--check"], (Path("."), False)),
        (["migrate", "--check", "-q"], (Path("."), True)),
        (["migrate", "-q", "--check", "repo"], (Path("repo"), True)),
        (["migrate", "repo", "--quiet", "--check"], (Path("repo"), True)),
        (["migrate", "--check", "--check", "lib/models"], (Path("lib/models"), False)),
        # any other command line is click's
        ([], None),
        (["scan", "--check"], None),
        (["migrate"], None),
        (["migrate", "-q", "repo"], None),
        (["migrate", "--check", "--strict"], None),
        (["migrate", "--check", "-qv"], None),
        (["migrate", "--check", "--format", "json"], None),
        (["migrate", "--check", "--exclude", "vendor"], None),
        (["migrate", "--check", "a", "b"], None),
        (["migrate", "--check", "--", "repo"], None),
        (["migrate", "--check", "-"], None),
        (["migrate", "--check", ""], None),
        (["migrate", "--check", "--help"], None),
        (["--version"], None),
    ],
)
def test_only_the_hooks_own_command_lines_skip_click(args, expected):
    assert hook_arguments(args) == expected


def test_migrate_call_defaults_are_what_the_click_command_reads_for_no_flag():
    """No drift: every flag of the click command is a keyword of ``migrate_call``, with the value
    click gives it when the flag is not given; and the hook's command lines read as click reads them."""
    from bn2gn.cli.migrate import migrate

    defaults = {name: p.default for name, p in inspect.signature(migrate_call).parameters.items()}
    assert migrate.make_context("migrate", []).params == defaults
    for args in (["--check"], ["-q", "--check", "repo"], ["repo", "--quiet", "--check"]):
        repo, quiet = hook_arguments(["migrate", *args])
        hook_params = dict(defaults, repo=repo, check=True, quiet=quiet)
        assert migrate.make_context("migrate", list(args)).params == hook_params


def _bn2gn(args, cwd: Path):
    out = subprocess.run(
        [sys.executable, "-m", "bn2gn", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=120,
    )
    return out.returncode, out.stdout, out.stderr


def _repos(tmp_path: Path) -> dict:
    """Repositories that take each exit of the hook: done (0), to migrate (1), with a file that does
    not parse (1, a failure line), a broken configuration (2), a file or nothing where the folder is
    named (2)."""
    done = tmp_path / "done"
    shutil.copytree(CENTERNET, done)
    assert run_cli(["migrate", "--write", "-q", str(done)]).exit_code == 0
    todo = tmp_path / "todo"
    shutil.copytree(CENTERNET, todo)
    broken = tmp_path / "broken"
    shutil.copytree(CENTERNET, broken)
    (broken / "lib" / "bad.py").write_text(
        "import torch.nn as nn\ndef f(:\n    nn.BatchNorm2d(4)\n"
    )
    config = tmp_path / "config"
    shutil.copytree(CENTERNET, config)
    (config / "pyproject.toml").write_text("[tool.bn2gn]\nbackbone-attrs = 'base'\n")
    (tmp_path / "file.py").write_text("x = 1\n")
    return {
        "done": done,
        "todo": todo,
        "broken": broken,
        "config": config,
        "file": tmp_path / "file.py",
        "missing": tmp_path / "missing",
    }


def test_the_hook_prints_and_exits_as_the_click_command(tmp_path):
    """Each repository checked twice: by the hook's command line, and by the same command with a
    flag that sends it through click (``--format text``, the default)."""
    codes = {}
    for name, repo in _repos(tmp_path).items():
        for quiet in (["-q"], []):
            hook = _bn2gn(["migrate", "--check", *quiet, str(repo)], tmp_path)
            through_click = _bn2gn(
                ["migrate", "--check", *quiet, "--format", "text", str(repo)], tmp_path
            )
            assert hook == through_click, (name, quiet)
            codes[name] = hook[0]
    assert codes == {"done": 0, "todo": 1, "broken": 1, "config": 2, "file": 2, "missing": 2}


def test_the_hook_with_no_folder_checks_the_current_one(tmp_path):
    repo = _repos(tmp_path)["todo"]
    assert _bn2gn(["migrate", "--check", "-q"], repo) == _bn2gn(
        ["migrate", "--check", "-q", "--format", "text"], repo
    )


def _boom(exc):
    def plan_migration(options):
        raise exc

    return plan_migration


@pytest.mark.parametrize(
    "exc, code, line",
    [
        (
            RuntimeError("boom\nsecond line"),
            3,
            "internal error: RuntimeError: boom (set BN2GN_DEBUG",
        ),
        (ModuleNotFoundError("no torch", name="torch"), 2, "pip install 'bn2gn[torch]'"),
        (Bn2gnError(Message("give ", Opt("exclude"))), 2, "bn2gn: error: give --exclude"),
        (KeyboardInterrupt(), 130, "bn2gn: interrupted"),
        (Terminated(15), 143, "bn2gn: terminated by signal 15; nothing half-written"),
    ],
)
def test_an_error_becomes_the_same_line_and_code_on_both_front_ends(
    exc, code, line, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr("bn2gn.migrate.run.plan_migration", _boom(exc))
    monkeypatch.delenv("BN2GN_DEBUG", raising=False)
    (tmp_path / "a.py").write_text("x = 1\n")
    clicked = run_cli(["migrate", "--check", "-q", str(tmp_path)])
    assert run_hook(tmp_path, True) == clicked.exit_code == code
    said = capsys.readouterr()
    assert said.out == clicked.stdout == ""
    assert said.err == clicked.stderr
    assert said.err.count("\n") == 1 and line in said.err


def test_bn2gn_debug_lets_the_hooks_error_rise_with_its_traceback(tmp_path, monkeypatch):
    monkeypatch.setattr("bn2gn.migrate.run.plan_migration", _boom(RuntimeError("boom")))
    monkeypatch.setenv("BN2GN_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        run_hook(tmp_path, True)


@pytest.mark.parametrize(
    "form", sorted(p.name for p in (FIXTURES / "backbones").iterdir() if p.is_dir())
)
def test_the_hook_judges_each_backbone_form_as_the_click_command(form, tmp_path, capsys):
    """Before the migration both front ends find work (exit 1) and print the same summary; after
    ``migrate --write`` both find the tree done (exit 0)."""
    repo = tmp_path / form
    shutil.copytree(
        FIXTURES / "backbones" / form, repo, ignore=shutil.ignore_patterns("__pycache__")
    )
    for expected in (1, 0):
        clicked = run_cli(["migrate", "--check", "-q", str(repo)])
        assert run_hook(repo, True) == clicked.exit_code == expected
        said = capsys.readouterr()
        assert (said.out, said.err) == (clicked.stdout, clicked.stderr)
        assert run_cli(["migrate", "--write", "-q", str(repo)]).exit_code == 0
