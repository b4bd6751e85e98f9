"""A command's module is imported when that command runs: `bn2gn scan` and the pre-commit hook pay
for no other command's imports, and `bn2gn --help` still lists every command."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
MODULES = ("config_cmd", "migrate", "patch_trainer", "remap", "scan_rewrite", "smoke")


def _cli_modules_after(args, cwd, prefixes=("bn2gn.cli.",)) -> set:
    """The modules whose names start with one of ``prefixes`` once ``bn2gn ARGS`` ran in ``cwd``."""
    code = (
        "import atexit, sys, runpy; sys.argv=['bn2gn', *sys.argv[1:]];\n"
        "atexit.register(lambda: print('LOADED', ' '.join(sorted(m for m in sys.modules"
        f" if m.startswith({tuple(prefixes)!r})))))\n"
        "runpy.run_module('bn2gn', run_name='__main__')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("LOADED")]
    return set(line.split()[1:])


def test_the_table_names_exactly_the_commands_each_module_registers():
    from bn2gn.cli import common

    for module in MODULES:
        importlib.import_module(f"bn2gn.cli.{module}")
    registered = {
        name: command.callback.__module__.rsplit(".", 1)[1]
        for name, command in common.cli.commands.items()
    }
    # a group's callback lives in the module that defines the group, like a command's
    assert registered == common.COMMAND_MODULES


def test_scan_imports_only_its_own_command_module(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    assert _cli_modules_after(["scan", "-q", "."], tmp_path) == {
        "bn2gn.cli.common",
        "bn2gn.cli.entry",
        "bn2gn.cli.guard",
        "bn2gn.cli.model_options",
        "bn2gn.cli.scan_rewrite",
    }


def test_the_pre_commit_hook_imports_no_other_command_and_no_click(tmp_path):
    """The hook's command line calls migrate's body directly: neither click nor any command
    module is loaded; a migrate command line with another flag goes through click's command."""
    (tmp_path / "a.py").write_text("x = 1\n")
    hook_modules = {
        "bn2gn.cli.entry",
        "bn2gn.cli.flag_checks",
        "bn2gn.cli.guard",
        "bn2gn.cli.migrate_call",
    }
    loaded = _cli_modules_after(
        ["migrate", "--check", "-q", "."], tmp_path, ("bn2gn.cli.", "click")
    )
    assert loaded == hook_modules
    other = _cli_modules_after(["migrate", "--check", "-q", "--strict", "."], tmp_path)
    assert other == hook_modules | {"bn2gn.cli.common", "bn2gn.cli.migrate"}


def test_the_hook_on_a_migrated_repository_loads_none_of_what_it_does_not_use(tmp_path):
    """The plan's fingerprints are hashed only when read, and the rewrite's text hash is blake2b
    from its own module: loading OpenSSL for ``import hashlib`` would cost the hook 2 ms. pickle is
    loaded only when parse workers start (none for a repository this size), the search for a
    BatchNorm the repository freezes itself only for a plan without sites."""
    import shutil

    from conftest import CENTERNET, run_cli

    repo = tmp_path / "repo"
    shutil.copytree(CENTERNET, repo)
    assert run_cli(["migrate", "--write", "-q", str(repo)]).exit_code == 0
    hook = ["migrate", "--check", "-q", "."]
    unused = ("_hashlib", "hashlib", "pickle", "bn2gn.migrate.frozen_bn", "bn2gn.migrate.argparse")
    assert _cli_modules_after(hook, repo, unused) == set()
    # a plan that is read does hash: the same check then sees OpenSSL loaded
    loaded = _cli_modules_after(["scan", "--format", "json", "-q", "."], repo, ("_hashlib",))
    assert loaded == {"_hashlib"}


def test_help_lists_every_command_with_its_short_help():
    from bn2gn.cli import cli

    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    listed = result.output.split("Commands:\n", 1)[1].splitlines()
    names = [line.split()[0] for line in listed if line.strip()]
    assert names == [
        "config",
        "demo",
        "migrate",
        "patch-trainer",
        "remap-ckpt",
        "rewrite",
        "scan",
        "verify",
    ]
    scan_line = next(line for line in listed if line.split()[0] == "scan")
    assert "Print the plan" in scan_line


def test_an_unknown_command_is_still_a_usage_error():
    from bn2gn.cli import cli

    result = CliRunner().invoke(cli, ["scna"])
    assert result.exit_code == 2
    assert "No such command 'scna'" in result.output
