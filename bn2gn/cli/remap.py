"""`bn2gn remap-ckpt`: the click command; the work happens in bn2gn.checkpoint (imported lazily)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..core.errors import EXIT_FAILED, EXIT_USAGE, Bn2gnError
from .common import check_output, cli, config_options, name_options, output_options
from .model_options import model_arg_options, model_build_options, script_option


@cli.command("remap-ckpt")
@click.argument("old", type=click.Path(path_type=Path))
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- ARGS...]")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    metavar="NEW",
    help="Output file (default: OLD with .bn2gn before the suffix). A .safetensors name writes safetensors.",
)
@click.option(
    "--in-place", is_flag=True, help="Replace OLD itself; the original is kept as OLD.bak."
)
@click.option(
    "--force", is_flag=True, help="Overwrite an existing output (or OLD.bak with --in-place)."
)
@click.option("--dry-run", is_flag=True, help="Print the report; write nothing.")
@click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="NAME",
    help="Top-level entry holding the state dict (repeatable; default: auto-detect "
    "state_dict, model, net, module, state_dict_ema).",
)
@click.option(
    "--keep-prefix",
    is_flag=True,
    help="Keep DataParallel's 'module.' key prefix (stripped by default).",
)
@click.option(
    "--keep-optimizer",
    is_flag=True,
    help="Keep optimizer state (dropped by default, with a warning).",
)
@click.option(
    "--reset-affine",
    is_flag=True,
    help="Reset converted layers' weight/bias to 1/0 instead of keeping them.",
)
@click.option(
    "--trust-pickle",
    is_flag=True,
    help="Load with weights_only=False: runs any code in the file's pickle. Only for files you trust.",
)
@click.option(
    "--allow-global",
    "allow_globals",
    multiple=True,
    metavar="NAME",
    help="Allow one pickled global by dotted name, e.g. argparse.Namespace (repeatable).",
)
@click.option(
    "--model",
    "model_spec",
    metavar="MODULE:FACTORY",
    help="Build the converted model on CPU and check the remapped state dict against it.",
)
@script_option
@model_arg_options
@model_build_options
@click.option(
    "--strict", is_flag=True, help="With --model: fail (exit 1) unless the strict load is clean."
)
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PLAN.json",
    help="A traced plan (bn2gn scan --trace ... -o PLAN.json): its module paths decide which layers "
    "were converted, instead of the backbone-prefix rule.",
)
@click.option(
    "--renames",
    "renames_file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="RENAMES.json",
    help="Renames from bn2gn config rewrite --gn ... --renames-out: the layers they cover were converted "
    "(bn -> gn names), every other BatchNorm is kept.",
)
@click.option(
    "--source",
    "source_tree",
    type=click.Path(path_type=Path),
    metavar="PATH",
    help="The converted model's source tree: its plan decides which layers were converted "
    "(default: the repository holding OLD).",
)
@config_options
@output_options
def remap_ckpt(
    old,
    output,
    in_place,
    force,
    dry_run,
    keys,
    keep_prefix,
    keep_optimizer,
    reset_affine,
    trust_pickle,
    allow_globals,
    model_spec,
    model_args,
    paths,
    stubs,
    model_opts,
    model_opts_args,
    strict,
    plan_file,
    config_file,
    backbone_attrs,
    quiet,
    verbose,
    fmt,
    renames_file=None,
    source_tree=None,
    script=None,
    script_args=(),
):
    """Remap an old BatchNorm checkpoint OLD for the GroupNorm-converted model.

    Converted (non-backbone) BatchNorm layers lose running_mean / running_var /
    num_batches_tracked; backbone tensors are copied bit for bit. OLD is never modified.
    Exit codes: 0 done, 1 verification failed (nothing written), 2 bad input or usage.
    """
    from ..api import load_settings, remap_options
    from ..checkpoint import LoadOptions, RemapJob, run_remap
    from ..checkpoint.plan_select import load_plan_selection
    from ..checkpoint.report import as_dict, render_text, summary_line
    from ..model.spec import parse_model_spec, parse_script_spec

    name_options(output="-o")  # the engine's `output` is -o in its messages, as in the docs
    if output is not None and (renames_file or plan_file or config_file):
        check_output("-o", output, [renames_file, plan_file, config_file])
    if script_args and script is None:
        raise Bn2gnError(
            f"unexpected arguments {' '.join(script_args)!r}: arguments after -- belong to "
            "--script PATH (give OLD before them)",
            EXIT_USAGE,
        )
    if script is not None and (model_spec or model_args or model_opts or model_opts_args):
        raise Bn2gnError(
            "--script takes the model from the train script: leave out --model, --model-arg, "
            "--model-opts and --model-opts-arg",
            EXIT_USAGE,
        )
    if (
        script is None
        and (model_args or paths or strict or stubs or model_opts or model_opts_args)
        and not model_spec
    ):
        raise Bn2gnError(
            "--model-arg, --path, --stub, --model-opts and --strict need --model MODULE:FACTORY",
            EXIT_USAGE,
        )
    if plan_file and renames_file:
        raise Bn2gnError("--plan and --renames cannot be combined", EXIT_USAGE)
    if renames_file:
        from ..checkpoint.renames import load_renames

        selection = load_renames(renames_file)
    settings = load_settings(
        [source_tree or (paths[0] if paths else old)], config_file, backbone_names=backbone_attrs
    )
    job = RemapJob(
        source=old,
        output=output,
        in_place=in_place,
        force=force,
        dry_run=dry_run,
        keys=tuple(keys),
        load=LoadOptions(trust_pickle=trust_pickle, allow_globals=tuple(allow_globals)),
        remap=remap_options(
            old,
            settings,
            source_tree,
            bool(backbone_attrs),
            model_spec or (f"--script {script}" if script is not None else None),
            plan_file,
            renames_file,
            keep_prefix=keep_prefix,
            keep_optimizer=keep_optimizer,
            reset_affine=reset_affine,
            plan=load_plan_selection(plan_file)
            if plan_file
            else selection
            if renames_file
            else None,
        ),
        model=parse_script_spec(script, script_args, stubs)
        if script is not None
        else parse_model_spec(model_spec, model_args, paths, stubs, model_opts, model_opts_args)
        if model_spec
        else None,
        strict=strict,
    )
    result = run_remap(job)
    if fmt == "json":
        click.echo(json.dumps(as_dict(result), indent=2))
    else:
        for warning in result.report.warnings:
            click.echo(f"bn2gn: warning: {warning}", err=True)
        if not quiet:
            for line in render_text(result, verbose):
                click.echo(line)
        click.echo(summary_line(result))
    if result.exit_code == EXIT_FAILED:
        if fmt == "json":
            raise click.exceptions.Exit(EXIT_FAILED)
        raise Bn2gnError(
            f"verification failed: {result.verification.problems()}; nothing written", EXIT_FAILED
        )
