"""What ``bn2gn migrate`` does once its flags are read, without click.

The click command (``cli/migrate.py``) and the pre-commit hook's entry (``cli/entry.py``) both call
``migrate_call``; its keyword defaults are what each flag is when it is not given, and a test holds
them to the click command's defaults.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from ..core import progress
from ..core.errors import EXIT_USAGE, Bn2gnError
from .flag_checks import check_flags
from .guard import echo


def migrate_call(
    repo: Path = Path("."),
    *,
    diff: bool = False,
    write: bool = False,
    check: bool = False,
    config_file=None,
    backbone_attrs=(),
    strict: bool = False,
    plan_file=None,
    roots=(),
    convert=(),
    keep=(),
    include=(),
    exclude=(),
    select=(),
    skip=(),
    optimizer_calls=(),
    helper_module=None,
    exclude_frozen: bool = False,
    quiet: bool = False,
    verbose: bool = False,
    fmt: str = "text",
) -> int:
    """Plan the migration of ``repo``, print it as asked and apply it in its mode; the exit code."""
    from ..api import load_settings as load
    from ..migrate.run import MigrateOptions, plan_migration

    if diff + write + check > 1:
        raise Bn2gnError(
            "--diff, --write and --check exclude each other: give one (default --diff)", EXIT_USAGE
        )
    mode = "write" if write else "check" if check else "diff"
    if not repo.is_dir():
        raise Bn2gnError(
            f"{repo}: not a folder; name the repository root (default: the current folder)",
            EXIT_USAGE,
        )
    check_flags([repo], optimizer_calls, None, None, helper_module)
    config = load(
        [repo],
        config_file,
        backbone_names=backbone_attrs,
        roots=roots,
        convert=convert,
        keep=keep,
        include=include,
        exclude=exclude,
        select=select,
        skip=skip,
    )
    options = MigrateOptions(
        repo=repo,
        config=config,
        mode=mode,
        plan_file=plan_file,
        exclude_frozen=exclude_frozen,
        optimizer_calls=tuple(optimizer_calls),
        helper_module=helper_module,
        strict=strict,
    )
    progress.enable(quiet)
    result = plan_migration(options)
    _report(result, options, fmt, quiet, verbose)
    return result.exit_code


def _report(result, options, fmt, quiet, verbose) -> None:
    from ..migrate import report
    from ..migrate.run import apply_migration

    if fmt == "json":
        apply_migration(result, options, io.StringIO())
        import json

        echo(json.dumps(report.as_dict(result), indent=2))
        return
    out = sys.stderr if result.mode == "diff" else sys.stdout
    if not quiet and result.mode != "check":
        echo("\n".join(report.plan_lines(result, verbose)), file=out)
    sys.stdout.flush()
    shown = not quiet and result.mode != "check"
    apply_migration(result, options, sys.stdout, next_steps=shown)
    for line in report.error_lines(result):
        echo(line, err=True)
    unsure = result.plan.counts()["unsure"]
    if options.strict and unsure:
        echo(f"bn2gn: {unsure} unsure site(s) and --strict was given", err=True)
    echo("\n".join(report.outcome_lines(result, quiet, verbose)), file=out)
    if shown:
        echo("\n".join(report.next_step_lines(result)), file=out)
