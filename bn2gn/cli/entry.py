"""The ``bn2gn`` console script: the pre-commit hook's command line runs without click.

``bn2gn-check`` runs ``bn2gn migrate --check`` on every commit. Building click's command line
(importing click, its types and the options of the command) was a tenth of that run on a
repository already migrated. That command line, with ``-q`` and one folder at most, calls the same
``migrate_call`` the click command calls, with the same error handling (``guard``). Any other
command line, or this one with any other argument, goes through click.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence, Tuple

from ..core import process
from ..core.errors import flag_style
from .guard import echo, failure

#: the only flags the hook's command line may hold besides ``--check``
HOOK_FLAGS = ("--check", "-q", "--quiet")


def main() -> None:
    """Console-script entry point: the process ends with the command (``bn2gn.core.process``)."""
    process.mark_console()
    process.end_on_signals()
    hook = hook_arguments(sys.argv[1:])
    if hook is not None:
        try:
            code = run_hook(*hook)
        except SystemExit as exc:
            code = exc.code
        process.quick_exit(code)
    from .common import cli

    try:
        cli.main(prog_name="bn2gn")
    except SystemExit as exc:
        process.quick_exit(exc.code)
    process.quick_exit(0)


def hook_arguments(args: Sequence[str]) -> Optional[Tuple[Path, bool]]:
    """(repository, quiet) when ``args`` are ``migrate --check`` with ``-q``/``--quiet`` and one
    folder at most, in any order; None for any other command line."""
    if not args or args[0] != "migrate":
        return None
    folders = [arg for arg in args[1:] if not arg.startswith("-")]
    flags = {arg for arg in args[1:] if arg.startswith("-")}
    if "--check" not in flags or not flags <= set(HOOK_FLAGS) or len(folders) > 1:
        return None
    if folders and not folders[0]:
        return None  # an empty argument: left to click's reading of it
    return Path(folders[0] if folders else "."), bool(flags & {"-q", "--quiet"})


def run_hook(repo: Path, quiet: bool) -> int:
    """``migrate --check [-q] REPO`` as the click command runs it; the exit code."""
    flags: dict = {}
    try:
        from .migrate_call import migrate_call

        with flag_style(flags):
            return migrate_call(repo, check=True, quiet=quiet)
    except BaseException as exc:
        said = failure(exc, "migrate", flags)
        if said is None:
            raise
        echo(said[0], err=True)
        return said[1]
