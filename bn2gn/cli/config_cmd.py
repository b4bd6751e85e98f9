"""`bn2gn config audit | rewrite | verify`: OpenMMLab configs; the work happens in bn2gn.mmconfig."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

import click

from ..errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Bn2gnError, SourceError
from . import cli, mode_of, mode_options

RESOLVERS = ("static", "mmengine")


@cli.group("config")
def config_group() -> None:
    """OpenMMLab (mmdet / mmdet3d) configs: what is frozen, what is wasted, what will crash."""


def resolver_options(func: Callable) -> Callable:
    func = click.option("--plugin-dir", "plugin_dirs", multiple=True, metavar="DIR",
                        type=click.Path(file_okay=False, path_type=Path),
                        help="Folder whose registered classes extend the component table "
                             "(default: the config's plugin_dir).")(func)
    func = click.option("--resolver", type=click.Choice(RESOLVERS), default="static", show_default=True,
                        help="static: read the config without running it; mmengine: let mmengine execute it.")(func)
    return func


def _user_error(exc: SourceError) -> Bn2gnError:
    return Bn2gnError(str(exc), EXIT_USAGE)


@config_group.command("audit")
@click.argument("configs", nargs=-1, required=True, type=click.Path(path_type=Path))
@resolver_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the report here too.")
@click.option("--strict", is_flag=True, help="Exit 1 on any error finding or unknown component type.")
@click.option("-v", "--verbose", is_flag=True, help="More detail.")
def audit_cmd(configs, resolver, plugin_dirs, fmt, output, strict, verbose):
    """Resolve each CONFIG (with its _base_ files) and report its freezing, per component. Read-only.

    Exit codes: 0 done, 1 --strict and an error finding (or unknown type), 2 bad input.
    """
    from ..mmconfig.audit import audit, render_text

    reports = []
    for path in configs:
        try:
            reports.append(audit(path, resolver, plugin_dirs))
        except SourceError as exc:
            raise _user_error(exc) from None
    if fmt == "json":
        body = json.dumps(reports[0].as_dict() if len(reports) == 1 else [r.as_dict() for r in reports], indent=2)
    else:
        body = "\n".join(line for r in reports for line in render_text(r, verbose))
    click.echo(body)
    if output:
        from ..sources import write_atomic

        write_atomic(output, (body + "\n").encode("utf-8"))
    failed = any(r.has_errors or r.has_unknown for r in reports)
    return sys.exit(EXIT_FAILED if strict and failed else EXIT_OK)
