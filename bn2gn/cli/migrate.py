"""`bn2gn migrate [REPO]`: scan + rewrite + patch-trainer over a whole repository, then the next commands."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .common import analysis_flags, cli, output_options
from .migrate_call import migrate_call


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
def migrate(repo, **flags):
    """The whole migration of REPO (default: the current folder): BatchNorm2d -> GroupNorm in the models
    the analysis finds, frozen backbone BatchNorm in the train scripts and trainers patch-trainer finds.
    Shows the plan and the diff (--diff, default) or applies it (--write); then prints the remap-ckpt
    and verify commands to run."""
    sys.exit(migrate_call(repo, **flags))  # the flags are migrate_call's keyword arguments
