"""The click group and the options several commands share; errors become exit codes in ``guard``.

Command modules import from here; the group imports them, by name, only when one of their commands
is asked for (``COMMAND_MODULES``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

import click

from ..core.errors import EXIT_USAGE, Bn2gnError, flag_style
from .guard import failure

#: command name -> the module below ``bn2gn.cli`` that defines it. A command's module is imported
#: when that command runs (or ``bn2gn --help`` lists it), so ``bn2gn scan`` and the pre-commit hook
#: do not import the other commands' modules. ``tests/integration/test_cli_lazy.py`` checks that importing
#: every module registers exactly these commands.
COMMAND_MODULES = {
    "config": "config_cmd",
    "demo": "smoke",
    "migrate": "migrate",
    "patch-trainer": "patch_trainer",
    "remap-ckpt": "remap",
    "rewrite": "scan_rewrite",
    "scan": "scan_rewrite",
    "verify": "smoke",
}


class _Group(click.Group):
    """Loads a command's module when the command is asked for, and turns any exception into one
    line and its exit code (``guard.failure``; 3 for an unexpected one): the user never sees a
    traceback."""

    def list_commands(self, ctx):
        return sorted(set(self.commands) | set(COMMAND_MODULES))

    def get_command(self, ctx, cmd_name):
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            # the module registers its commands on this group (``@cli.command``) as it is imported
            importlib.import_module(f"{__package__}.{COMMAND_MODULES[cmd_name]}")
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx):
        flags = ctx.meta.setdefault(OPTION_FLAGS, {})
        try:
            with flag_style(flags):  # engine messages name options as this command's flags
                return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BaseException as exc:
            said = failure(exc, ctx.invoked_subcommand or "", flags)
            if said is None:
                raise
            click.echo(said[0], err=True)
            raise click.exceptions.Exit(said[1]) from None


#: ``ctx.meta`` key: engine option name -> the flag this command takes it as (see ``name_options``);
#: any other option is shown as ``flag_of(name)``. Engine messages hold options as ``Opt`` data
#: (``bn2gn.core.errors``) and are rendered with this mapping, never rewritten as text.
OPTION_FLAGS = "bn2gn.option_flags"


def name_options(**flags: str) -> None:
    """Say which flag this command uses for an engine option, for its error messages
    (``name_options(model="--trace")``: scan takes the model factory as --trace)."""
    click.get_current_context().meta.setdefault(OPTION_FLAGS, {}).update(flags)


@click.group(
    cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(package_name="bn2gn")
def cli() -> None:
    """bn2gn: BatchNorm2d -> GroupNorm in non-backbone layers, a frozen backbone, remapped checkpoints."""


def config_options(func: Callable) -> Callable:
    """--backbone-attr and --config: the options every command that decides 'backbone or not' takes."""
    func = click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Read [tool.bn2gn] from this file instead of the nearest pyproject.toml/bn2gn.toml.",
    )(func)
    func = click.option(
        "--backbone-attr",
        "backbone_attrs",
        multiple=True,
        metavar="NAME",
        help="Attribute name that holds backbone layers (repeatable; added to backbone, base_layer).",
    )(func)
    return func


def analysis_flags(func):
    """Options shared by scan, rewrite and migrate: what the analysis may not see by itself
    (here, so that migrate does not build scan's and rewrite's commands to reach them)."""
    func = click.option(
        "--exclude", multiple=True, metavar="GLOB", help="Skip files/folders matching GLOB."
    )(func)
    func = click.option(
        "--include",
        multiple=True,
        metavar="GLOB",
        help="Enter folders skipped by default (.venv, build, site-packages...) matching GLOB.",
    )(func)
    func = click.option(
        "--keep",
        "keep",
        multiple=True,
        metavar="CLASS[.METHOD]",
        help="Force 'keep' for sites in this class/method (repeatable).",
    )(func)
    func = click.option(
        "--convert",
        "convert",
        multiple=True,
        metavar="CLASS[.METHOD]",
        help="Force 'convert' for sites in this class/method (repeatable).",
    )(func)
    func = click.option(
        "--root",
        "roots",
        multiple=True,
        metavar="CLASS",
        help="Name the root model class(es) instead of finding them (repeatable).",
    )(func)
    func = click.option("--strict", is_flag=True, help="Exit 1 when any site is 'unsure'.")(func)
    return config_options(func)


def mode_options(func: Callable) -> Callable:
    """--diff / --check: one code path with writing, nothing written."""
    func = click.option(
        "--check", is_flag=True, help="Write nothing; exit 1 if anything would change."
    )(func)
    func = click.option("--diff", is_flag=True, help="Print a unified diff; write nothing.")(func)
    return func


def output_options(func: Callable) -> Callable:
    func = click.option(
        "--format",
        "fmt",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="Report format.",
    )(func)
    func = click.option("-v", "--verbose", is_flag=True, help="More detail.")(func)
    func = click.option("-q", "--quiet", is_flag=True, help="Only errors and the summary line.")(
        func
    )
    return func


def rule_options(func: Callable) -> Callable:
    func = click.option("--list-rules", is_flag=True, help="List rule codes and exit.")(func)
    func = click.option(
        "--skip", multiple=True, metavar="CODE", help="Rule code to skip (repeatable)."
    )(func)
    func = click.option(
        "--select", multiple=True, metavar="CODE", help="Only run these rule codes (repeatable)."
    )(func)
    return func


def mode_of(diff: bool, check: bool) -> str:
    from ..core.file_results import CHECK, DIFF, WRITE

    if diff and check:
        raise Bn2gnError("--diff and --check cannot be combined", EXIT_USAGE)
    return DIFF if diff else CHECK if check else WRITE


def echo_rules(prefix: str = "") -> None:
    from ..core.rule_codes import Rule

    for rule in Rule:
        if rule.code.startswith(prefix):
            default = "" if rule.default else " (opt-in)"
            click.echo(f"{rule.code}  {rule.slug:<32} {rule.description}{default}")


def check_output(flag: str, output, inputs=()) -> None:
    """Refuse (exit 2, nothing written) an output that is an input, a pipe or in a missing folder."""
    from ..core.outputs import output_problem

    if output is None:
        return
    problem = output_problem(output, inputs)
    if problem:
        raise Bn2gnError(f"{flag} {output}: {problem}", EXIT_USAGE)
