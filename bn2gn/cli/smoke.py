"""`bn2gn demo` and `bn2gn verify`: the click commands; bn2gn.demo and bn2gn.verify do the work (lazily)."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import click

from ..core.errors import EXIT_FAILED, EXIT_USAGE, Bn2gnError
from .common import cli, config_options, output_options
from .model_options import model_arg_options, model_build_options, script_option

DEVICE_HELP = "auto: CUDA when torch.cuda.is_available(), else CPU."


def _batch_sizes(text: str):
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or any(n <= 0 for n in sizes):
        raise Bn2gnError(
            f"--batch-sizes {text!r}: expected positive integers separated by commas, e.g. 1,8",
            EXIT_USAGE,
        )
    return sizes


def _emit(sections, fmt: str, quiet: bool, verbose: bool, document: dict, printed: int = 0) -> None:
    """The report: JSON document, or one block per section and the summary line over all of them.

    ``printed`` sections at the front were already shown as they ran (the demo's steps) and are
    only counted in the summary, unless quiet mode suppressed them then.
    """
    from ..verify.report import FAIL, counts, render_section, summary_line

    if fmt == "json":
        document.update(
            {
                "ok": all(s.ok for s in sections),
                "counts": counts(sections),
                "sections": [s.as_dict() for s in sections],
            }
        )
        click.echo(json.dumps(document, indent=2))
        return
    for section in sections[0 if quiet else printed :]:
        if quiet:
            section = type(section)(section.title, [c for c in section.checks if c.status == FAIL])
            if not section.checks:
                continue
        click.echo("")
        for line in render_section(section, verbose):
            click.echo(line)
    click.echo(summary_line(sections))


def _fail_if_needed(sections) -> None:
    failed = [c.name for s in sections for c in s.checks if not c.passed]
    if failed:
        shown = ", ".join(dict.fromkeys(failed))
        raise Bn2gnError(f"{len(failed)} check(s) failed: {shown}", EXIT_FAILED)


@cli.command("demo")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help=DEVICE_HELP,
)
@click.option(
    "--steps",
    type=click.IntRange(3, 10000),
    default=8,
    show_default=True,
    help="Training steps per run (batch size 1); the loss must be lower after the last than after the first.",
)
@click.option(
    "--arch",
    "archs",
    multiple=True,
    type=click.Choice(["res_18", "dla_34"]),
    help="Fixture architecture (repeatable; default: both).",
)
@click.option(
    "--input-size",
    type=click.IntRange(32, 4096),
    default=32,
    show_default=True,
    help="Square input size of the synthetic clips (a multiple of 32).",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Work here and keep everything (default: a temporary folder, removed when every check passes).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Use a non-empty --workdir, replacing the demo's own folders in it.",
)
@click.option(
    "--fixtures",
    type=click.Path(file_okay=False, path_type=Path),
    help="The fixture repository to copy (default: bn2gn's fixtures/centernet_mini).",
)
@click.option(
    "--skip-step",
    "skip_steps",
    multiple=True,
    type=click.Choice(["rewrite", "patch-trainer"]),
    help="Leave a migration step out, to see the checks catch it (the demo then fails).",
)
@click.option(
    "--compare-norm",
    is_flag=True,
    help="Also time GroupNorm heads (converted) against BatchNorm heads (original) at --batch-sizes.",
)
@click.option(
    "--batch-sizes",
    default="1,8",
    show_default=True,
    metavar="N,N",
    help="Batch sizes for --compare-norm.",
)
@output_options
def demo(
    device,
    steps,
    archs,
    input_size,
    workdir,
    force,
    fixtures,
    skip_steps,
    compare_norm,
    batch_sizes,
    quiet,
    verbose,
    fmt,
):
    """Run the whole migration on a copy of the bundled fixture detector, then verify it by training.

    Copies fixtures/centernet_mini twice, runs scan, rewrite and patch-trainer on one copy, builds a
    pretrained BatchNorm checkpoint from the original model, remaps it with remap-ckpt, trains the
    patched train.py at batch size 1 under a test harness (and the untouched copy for contrast), and
    prints one check per line with its measured value.
    Exit codes: 0 every check passed, 1 a check failed, 2 usage error (e.g. non-empty --workdir).
    """
    from ..demo.fixture import default_fixtures, prepare_workdir
    from ..demo.run import DemoOptions, conclusion

    if input_size % 32:
        raise Bn2gnError(
            f"--input-size {input_size}: must be a multiple of 32 (the detectors downsample 32x)",
            EXIT_USAGE,
        )
    sizes = _batch_sizes(batch_sizes)
    temporary = workdir is None
    root = Path(tempfile.mkdtemp(prefix="bn2gn-demo-")) if temporary else workdir
    options = DemoOptions(
        fixtures=(fixtures or default_fixtures()).resolve(),
        workdir=root,
        device=device,
        steps=steps,
        archs=tuple(dict.fromkeys(archs)) or ("res_18", "dla_34"),
        input_size=input_size,
        skip_steps=tuple(skip_steps),
    )
    try:
        prepare_workdir(options.fixtures, root, force)
        result = _run_demo(options, fmt, quiet, compare_norm, sizes)
    except BaseException:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
        raise
    keep = not temporary or not result.ok
    document = {
        "command": "demo",
        "device": result.device,
        "workdir": str(result.workdir),
        "workdir_kept": keep,
        "options": {
            "steps": steps,
            "archs": list(options.archs),
            "input_size": input_size,
            "batch_size": 1,
            "skip_steps": list(skip_steps),
        },
        "steps": [s.as_dict() for s in result.steps],
        "comparison": result.comparison,
        "conclusion": conclusion(result, options),
    }
    _emit(
        result.sections, fmt, quiet, verbose, document, printed=1
    )  # the steps were printed as they ran
    if fmt == "text":
        click.echo(document["conclusion"])
    if keep:
        if fmt == "text":
            click.echo(f"work directory kept: {result.workdir} (logs in {result.workdir / 'logs'})")
    else:
        shutil.rmtree(root, ignore_errors=True)
        if fmt == "text" and not quiet:
            click.echo(
                f"temporary work directory {result.workdir} removed (keep one with --workdir DIR)"
            )
    _fail_if_needed(result.sections)


def _run_demo(options, fmt: str, quiet: bool, compare_norm: bool, sizes):
    from ..demo.compare import compare_norms
    from ..demo.run import Demo

    text = fmt == "text"
    echo = click.echo if text and not quiet else (lambda line: None)
    progress = (
        (lambda line: click.echo("\r\033[K" + line, nl=False, err=True))
        if text and sys.stderr.isatty()
        else None
    )
    echo(f"bn2gn demo: {', '.join(options.archs)} in {options.workdir}")
    echo(
        "steps: [1/4]-[3/4] migrate converted/, [4/4] a pretrained checkpoint from original/; then per "
        "architecture: [ARCH 1/3] remap-ckpt, [ARCH 2/3] train converted/, [ARCH 3/3] train original/ for contrast"
    )
    runner = Demo(options, echo=echo, progress=progress)
    result = runner.run()
    if compare_norm and len(result.sections) > 1:
        echo(
            f"comparing GroupNorm and BatchNorm heads at batch sizes {', '.join(map(str, sizes))} ..."
        )
        result.sections.append(compare_norms(runner, sizes, max(options.steps, 3)))
    return result


@cli.command("verify")
@click.option(
    "--model",
    "model_spec",
    metavar="MODULE:FACTORY",
    help="The converted model's factory, e.g. lib.models.model:create_model.",
)
@script_option
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- ARGS...]")
@model_arg_options
@model_build_options
@click.option(
    "--input-shape",
    "input_shapes",
    multiple=True,
    metavar="1,3,H,W",
    help="Shape of one forward argument; repeat for each argument, in order (default: one "
    "1,C,S,S tensor per required forward() argument, C the first convolution's in_channels, S "
    "the smallest of 64,128,256,512 that runs).",
)
@click.option(
    "--steps", type=click.IntRange(2, 10000), default=5, show_default=True, help="Training steps."
)
@click.option(
    "--device", default="auto", show_default=True, metavar="auto|cpu|cuda[:N]", help=DEVICE_HELP
)
@click.option(
    "--freeze-from",
    "freeze_from",
    multiple=True,
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="Take freeze_backbone_bn / keep_backbone_bn_eval from these patched files (repeatable; "
    "default: bn2gn's own).",
)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    metavar="CKPT",
    help="Load this (remapped) checkpoint first, strict=False, and check it arrived intact.",
)
@click.option(
    "--before",
    metavar="REV",
    help="The pre-migration git revision to measure the original model from (default: HEAD "
    "when the migration is not committed yet).",
)
@click.option(
    "--compare/--no-compare",
    default=True,
    show_default=True,
    help="Also build the original model and measure both at batch size 1 (train/eval gap, loss).",
)
@config_options
@output_options
def verify(
    model_spec,
    script,
    script_args,
    model_args,
    paths,
    stubs,
    model_opts,
    model_opts_args,
    input_shapes,
    steps,
    device,
    freeze_from,
    checkpoint,
    before,
    compare,
    config_file,
    backbone_attrs,
    quiet,
    verbose,
    fmt,
):
    """Check a converted model at runtime: frozen backbone BatchNorm, trained GroupNorm, finite falling loss.

    Builds the model, freezes it, runs --steps train-mode steps at the given input shapes (or the
    ones inferred from the model, see --input-shape) on fixed random input (loss: the mean of
    every tensor in the output), calling .train() before each step, and prints the same report as `bn2gn demo`.
    Exit codes: 0 every check passed, 1 a check failed, 2 usage error or the model could not be built/run.
    """
    from ..api import Session, load_settings
    from ..verify.run import VerifyOptions, parse_input_shape, run_verify

    if device not in ("auto", "cpu", "cuda") and not (
        device.startswith("cuda:") and device[5:].isdigit()
    ):
        raise Bn2gnError(f"--device {device!r}: use auto, cpu, cuda or cuda:N", EXIT_USAGE)
    if checkpoint is not None and not checkpoint.is_file():
        raise Bn2gnError(f"--checkpoint {checkpoint}: no such file", EXIT_USAGE)
    # the plan of the --path folders (or the script's folder) decides the backbone; without
    # them only the names can
    folders = list(paths) or ([script.parent] if script is not None and script.is_file() else [])
    settings = load_settings(
        [folders[0] if folders else Path.cwd()], config_file, backbone_names=backbone_attrs
    )
    session = Session(folders, settings, tolerate_no_model=True)
    options = VerifyOptions(
        spec=_verify_spec(
            model_spec, script, script_args, model_args, paths, stubs, model_opts, model_opts_args
        ),
        input_shapes=tuple(parse_input_shape(s) for s in input_shapes),
        backbone=session.backbone,
        steps=steps,
        device=device,
        freeze_from=tuple(freeze_from),
        checkpoint=checkpoint,
        compare=compare,
        before=before,
    )
    verified = run_verify(options)
    _emit(
        [verified.section],
        fmt,
        quiet,
        verbose,
        {
            "command": "verify",
            "backbone_attrs": list(options.backbone.spellings),
            "input_shapes": [list(shape) for shape in verified.input_shapes],
            "input_shapes_inferred": verified.inferred is not None,
        },
    )
    _fail_if_needed([verified.section])


def _verify_spec(model_spec, script, script_args, model_args, paths, stubs, opts, opts_args):
    """--model MODULE:FACTORY with its options, or --script PATH -- ARGS: exactly one of them."""
    from ..model.spec import parse_model_spec, parse_script_spec

    if script is None:
        if not model_spec:
            raise Bn2gnError(
                "verify needs the model: --model MODULE:FACTORY, or --script PATH -- ARGS "
                "(the train script that builds it)",
                EXIT_USAGE,
            )
        if script_args:
            raise Bn2gnError(
                f"unexpected arguments {' '.join(script_args)!r}: arguments after -- belong to "
                "--script PATH",
                EXIT_USAGE,
            )
        return parse_model_spec(model_spec, model_args, paths, stubs, opts, opts_args)
    if model_spec or model_args or opts or opts_args:
        raise Bn2gnError(
            "--script takes the model from the train script: leave out --model, --model-arg, "
            "--model-opts and --model-opts-arg",
            EXIT_USAGE,
        )
    return parse_script_spec(script, script_args, stubs)
