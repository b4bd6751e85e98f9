"""`bn2gn patch-trainer`: freeze the backbone BatchNorm before the optimizer and after every .train()."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..core.errors import EXIT_USAGE, Bn2gnError
from .common import (
    cli,
    config_options,
    echo_rules,
    mode_of,
    mode_options,
    output_options,
    rule_options,
)
from .flag_checks import check_flags


@cli.command("patch-trainer")
@click.argument("paths", nargs=-1, metavar="FILE...", type=click.Path(path_type=Path))
@click.option(
    "--kind",
    type=click.Choice(["auto", "script", "trainer"]),
    default="auto",
    show_default=True,
    help="Treat each file as a train script (optimizer), a trainer (.train()), or recognise both.",
)
@click.option(
    "--optimizer-call",
    "optimizer_calls",
    multiple=True,
    metavar="NAME",
    help="Also treat calls to NAME (or a.b.NAME when dotted) as building the optimizer (repeatable).",
)
@click.option(
    "--model-var",
    metavar="EXPR",
    help="The model the optimizer trains (e.g. model or self.model) when bn2gn cannot tell.",
)
@click.option(
    "--insert-before-line",
    type=click.IntRange(min=1),
    metavar="N",
    help="Insert the freeze before the statement starting on line N (one FILE only).",
)
@click.option(
    "--helper-module",
    metavar="MODULE",
    help="Import freeze_backbone_bn/keep_backbone_bn_eval from MODULE (e.g. bn2gn.runtime) "
    "instead of defining them in each file.",
)
@click.option(
    "--exclude-frozen-from-optimizer",
    "exclude_frozen",
    is_flag=True,
    help="Also pass the optimizer only parameters that require grad (BN2GN204).",
)
@click.option(
    "-j",
    "--jobs",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Patch files in N worker processes.",
)
@config_options
@mode_options
@rule_options
@output_options
def patch_trainer(
    paths,
    kind,
    optimizer_calls,
    model_var,
    insert_before_line,
    helper_module,
    exclude_frozen,
    jobs,
    config_file,
    backbone_attrs,
    diff,
    check,
    select,
    skip,
    list_rules,
    quiet,
    verbose,
    fmt,
):
    """Keep the backbone BatchNorm frozen: freeze before the optimizer (train scripts), re-assert eval
    after every .train() (trainers). FILE may also be a directory: files in it without training code
    are left alone."""
    if list_rules:
        echo_rules("BN2GN2")
        return
    from ..api import Session, load_settings
    from ..decide.backbone_inference import project_folder
    from .scan_rewrite import apply_and_report

    if not paths:
        raise Bn2gnError(
            "no FILE given: name the train script(s) and trainer(s), e.g. train.py "
            "lib/Trainer/base_trainer.py"
        )
    mode = mode_of(diff, check)
    check_flags(paths, optimizer_calls, model_var, insert_before_line, helper_module)
    settings = load_settings(
        list(paths),
        config_file=config_file,
        backbone_names=backbone_attrs,
        select=select,
        skip=skip,
    )
    # the models live around the given files: the plan of that folder decides the backbone
    session = Session([project_folder(paths)], settings, tolerate_no_model=True)
    options = session.trainer_options(
        exclude_frozen=exclude_frozen,
        optimizer_calls=optimizer_calls,
        model_var=model_var,
        helper_module=helper_module,
        kind=kind,
        insert_before_line=insert_before_line,
        strict_select=bool(select),
    )
    files = session.discover_files(list(paths))
    results, usage = session.patch(
        files, options, explicit=[p for p in paths if Path(p).is_file()], workers=jobs
    )
    if usage:
        for message in usage:
            click.echo(f"bn2gn: error: {message}", err=True)
        click.echo("bn2gn: nothing written; fix the invocation above and run again", err=True)
        sys.exit(EXIT_USAGE)
    code = apply_and_report("patch-trainer", None, results, mode, fmt, quiet, verbose=True)
    sys.exit(code)
