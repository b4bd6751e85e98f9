"""`bn2gn config audit | rewrite | verify`: OpenMMLab configs; the work happens in bn2gn.openmmlab."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

import click

from ..core.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Bn2gnError, SourceError
from .common import check_output, cli, mode_of, mode_options

RESOLVERS = ("static", "mmengine")


@cli.group("config")
def config_group() -> None:
    """OpenMMLab (mmdet / mmdet3d) configs: what is frozen, what is wasted, what will crash."""


def resolver_options(func: Callable) -> Callable:
    func = click.option(
        "--plugin-dir",
        "plugin_dirs",
        multiple=True,
        metavar="DIR",
        type=click.Path(file_okay=False, path_type=Path),
        help="Folder searched first for the config's classes (default: the config's plugin_dir).",
    )(func)
    func = click.option(
        "--resolver",
        type=click.Choice(RESOLVERS),
        default="static",
        show_default=True,
        help="static: read the config without running it; mmengine: let mmengine execute it.",
    )(func)
    return func


def _user_error(exc: SourceError) -> Bn2gnError:
    return Bn2gnError(str(exc), EXIT_USAGE)


@config_group.command("audit")
@click.argument("configs", nargs=-1, required=True, type=click.Path(path_type=Path))
@resolver_options
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report here too.",
)
@click.option(
    "--strict", is_flag=True, help="Also exit 1 when a component type is unknown (not checked)."
)
@click.option(
    "--exit-zero",
    is_flag=True,
    help="Exit 0 even when there are error findings (a report only, as in a linter).",
)
@click.option("-v", "--verbose", is_flag=True, help="More detail.")
def audit_cmd(configs, resolver, plugin_dirs, fmt, output, strict, exit_zero, verbose):
    """Resolve each CONFIG (with its _base_ files) and report its freezing, per component. Read-only.

    Exit codes: 0 no error finding (or --exit-zero), 1 an error finding (a key that crashes the
    build, frozen_stages out of range; with --strict also an unknown type), 2 bad input.
    """
    from ..openmmlab.audit import audit, render_text

    check_output("-o", output, configs)
    reports = []
    for path in configs:
        try:
            reports.append(audit(path, resolver, plugin_dirs))
        except SourceError as exc:
            raise _user_error(exc) from None
    check_output("-o", output, [f for r in reports for f in r.files])
    if fmt == "json":
        body = json.dumps(
            reports[0].as_dict() if len(reports) == 1 else [r.as_dict() for r in reports], indent=2
        )
    else:
        body = "\n".join(line for r in reports for line in render_text(r, verbose))
    click.echo(body)
    if output:
        from ..core.source_files import write_atomic

        write_atomic(output, (body + "\n").encode("utf-8"))
    failed = any(r.has_errors or (strict and r.has_unknown) for r in reports)
    return sys.exit(EXIT_FAILED if failed and not exit_zero else EXIT_OK)


@config_group.command("rewrite")
@click.argument("config", type=click.Path(path_type=Path))
@click.option(
    "--freeze",
    multiple=True,
    metavar="COMPONENT",
    help="Freeze a backbone fully: frozen_stages = its stage count and norm_eval=True (repeatable).",
)
@click.option(
    "--gn",
    multiple=True,
    metavar="COMPONENT",
    help="BatchNorm -> GroupNorm through norm_cfg, num_groups computed from the channels (repeatable).",
)
@click.option(
    "--drop-invalid-keys", is_flag=True, help="Remove keys the component does not accept (MMC001)."
)
@click.option(
    "--fix-lr-mult", is_flag=True, help="Remove lr_mult=0 made redundant by full freezing (MMC004)."
)
@click.option(
    "--allow-base", is_flag=True, help="Also edit _base_ files where the value is written there."
)
@click.option(
    "--renames-out",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="RENAMES.json",
    help="Write the checkpoint renames for bn2gn remap-ckpt --renames.",
)
@click.option(
    "--plugin-dir",
    "plugin_dirs",
    multiple=True,
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder searched first for the config's classes (default: the config's plugin_dir).",
)
@mode_options
def rewrite_cmd(
    config,
    freeze,
    gn,
    drop_invalid_keys,
    fix_lr_mult,
    allow_base,
    renames_out,
    plugin_dirs,
    diff,
    check,
):
    """Edit CONFIG itself (never a _base_ file unless --allow-base) with LibCST; comments and layout kept.

    Prints the checkpoint key renames the change implies. Exit codes: 0 done, 1 --check found
    changes or an operation was refused, 2 bad input.
    """
    from ..core.file_results import WRITE, apply_results
    from ..openmmlab.rewrite import RewriteOptions, rewrite_config

    mode = mode_of(diff, check)
    options = RewriteOptions(
        freeze=tuple(freeze),
        gn=tuple(gn),
        drop_invalid_keys=drop_invalid_keys,
        fix_lr_mult=fix_lr_mult,
        allow_base=allow_base,
        plugin_dirs=tuple(plugin_dirs),
    )
    if not options.anything:
        raise Bn2gnError(
            "nothing to do: give --freeze, --gn, --drop-invalid-keys and/or --fix-lr-mult",
            EXIT_USAGE,
        )
    check_output("--renames-out", renames_out, [config])
    try:
        result = rewrite_config(config, options)
    except SourceError as exc:
        raise _user_error(exc) from None
    check_output("--renames-out", renames_out, _config_inputs(config, result))
    for line in result.changes:
        click.echo(f"{'would change' if mode != WRITE else 'changed'}: {line}", err=mode == "diff")
    for line in result.notes:
        click.echo(f"note: {line}", err=True)
    for line in result.refused:
        click.echo(f"bn2gn: refused: {line}", err=True)
    if result.renames:
        click.echo(
            "checkpoint key renames (bn2gn remap-ckpt --renames FILE applies them):",
            err=mode == "diff",
        )
        for rule in result.renames:
            click.echo(f"  {rule.describe()}", err=mode == "diff")
    for line in result.remaining:
        click.echo(f"still: {line}", err=True)
    code = apply_results(result.results, mode, sys.stdout)
    if renames_out and result.renames and mode == WRITE:
        from ..checkpoint.renames import dump_rules
        from ..core.source_files import write_atomic

        write_atomic(renames_out, dump_rules(result.renames, str(config)).encode("utf-8"))
    for failed in (r for r in result.results if r.status == "failed"):
        click.echo(f"bn2gn: error: {failed.error}", err=True)
    return sys.exit(EXIT_FAILED if result.refused else code)


def _config_inputs(config: Path, result) -> list:
    """The config, its _base_ files and every file the rewrite would change."""
    from ..openmmlab.resolve import resolve_config

    try:
        files = list(resolve_config(config).files)
    except Exception:  # noqa: BLE001 - rewrite_config resolved it already; this is a courtesy
        files = []
    return [config, *files, *(r.path for r in result.results)]


@config_group.command("verify")
@click.argument("config", type=click.Path(path_type=Path))
@resolver_options
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "--input-size",
    default=64,
    show_default=True,
    type=click.IntRange(8, 1024),
    help="Height and width of the random image input.",
)
def verify_cmd(config, resolver, plugin_dirs, fmt, input_size):
    """Build each component with mmengine + mmcv-lite + mmdet on CPU, train(), one forward/backward.

    Reports BatchNorm in train mode, trainable/total parameters, frozen parameters the optimizer
    would still receive and custom keys matching no parameter. Components that cannot be built
    here are "static only". The verdict includes the audit's error findings. Exit codes: 0 done,
    1 a component failed or an error finding stands, 2 bad input or stack missing.
    """
    from ..openmmlab.verify import render_text, verify_config

    try:
        report = verify_config(config, resolver, plugin_dirs, input_size)
    except SourceError as exc:
        raise _user_error(exc) from None
    if fmt == "json":
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo("\n".join(render_text(report)))
    return sys.exit(EXIT_OK if report.ok else EXIT_FAILED)
