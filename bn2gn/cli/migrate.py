"""`bn2gn migrate [REPO]`: scan + rewrite + patch-trainer over a whole repository, then the next commands."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import click

from ..core import progress
from ..core.errors import EXIT_USAGE, Bn2gnError
from .common import analysis_flags, cli, output_options


def _mode_options(func):
    for flag, text in (
        ("--check", "Write nothing; exit 1 if anything would change (CI, pre-commit)."),
        ("--write", "Apply every change (atomically), then print the next commands."),
        ("--diff", "Print the plan and a unified diff of every change; write nothing (default)."),
    ):
        func = click.option(flag, flag[2:], is_flag=True, help=text)(func)
    return func


def _analysis_options(func):
    """scan/rewrite's analysis flags, and --plan for the BatchNorm decisions."""
    func = click.option(
        "--plan",
        "plan_file",
        type=click.Path(dir_okay=False, path_type=Path),
        metavar="PLAN.json",
        help="Apply the BatchNorm decisions of a saved plan (bn2gn scan -o).",
    )(func)
    return analysis_flags(func)


def _trainer_options(func):
    func = click.option(
        "--exclude-frozen-from-optimizer",
        "exclude_frozen",
        is_flag=True,
        help="Also pass the optimizer only parameters that require grad (BN2GN204).",
    )(func)
    func = click.option(
        "--helper-module",
        metavar="MODULE",
        help="Import the freeze helpers from MODULE instead of defining them in each file.",
    )(func)
    func = click.option(
        "--optimizer-call",
        "optimizer_calls",
        multiple=True,
        metavar="NAME",
        help="Also treat calls to NAME as building the optimizer (repeatable).",
    )(func)
    func = click.option(
        "--skip", multiple=True, metavar="CODE", help="Rule code to skip (repeatable)."
    )(func)
    return click.option(
        "--select", multiple=True, metavar="CODE", help="Only run these rule codes (repeatable)."
    )(func)


@cli.command()
@click.argument("repo", required=False, default=".", type=click.Path(path_type=Path))
@_mode_options
@_analysis_options
@_trainer_options
@output_options
def migrate(
    repo,
    diff,
    write,
    check,
    config_file,
    backbone_attrs,
    strict,
    plan_file,
    roots,
    convert,
    keep,
    include,
    exclude,
    select,
    skip,
    optimizer_calls,
    helper_module,
    exclude_frozen,
    quiet,
    verbose,
    fmt,
):
    """The whole migration of REPO (default: the current folder): BatchNorm2d -> GroupNorm in the models
    the analysis finds, frozen backbone BatchNorm in the train scripts and trainers patch-trainer finds.
    Shows the plan and the diff (--diff, default) or applies it (--write); then prints the remap-ckpt
    and verify commands to run."""
    from ..api import load_settings as load
    from ..migrate.run import MigrateOptions, plan_migration
    from .patch_trainer import _check_flags

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
    _check_flags([repo], optimizer_calls, None, None, helper_module)
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
    sys.exit(result.exit_code)


def _report(result, options, fmt, quiet, verbose) -> None:
    from ..migrate import report
    from ..migrate.run import apply_migration

    if fmt == "json":
        apply_migration(result, options, io.StringIO())
        import json

        click.echo(json.dumps(report.as_dict(result), indent=2))
        return
    out = sys.stderr if result.mode == "diff" else sys.stdout
    if not quiet and result.mode != "check":
        click.echo("\n".join(report.plan_lines(result, verbose)), file=out)
    sys.stdout.flush()
    shown = not quiet and result.mode != "check"
    apply_migration(result, options, sys.stdout, next_steps=shown)
    for line in report.error_lines(result):
        click.echo(line, err=True)
    unsure = result.plan.counts()["unsure"]
    if options.strict and unsure:
        click.echo(f"bn2gn: {unsure} unsure site(s) and --strict was given", err=True)
    click.echo("\n".join(report.outcome_lines(result, quiet, verbose)), file=out)
    if shown:
        click.echo("\n".join(report.next_step_lines(result)), file=out)
