"""`bn2gn scan` (the plan, read-only) and `bn2gn rewrite` (BatchNorm2d -> get_group_norm)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..core import progress
from ..core.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Bn2gnError
from .common import (
    analysis_flags,
    check_output,
    cli,
    echo_rules,
    mode_of,
    mode_options,
    name_options,
    output_options,
    rule_options,
)
from .model_options import model_build_options


def analysis_options(func):
    """PATH... and the analysis flags: scan and rewrite."""
    return click.argument("paths", nargs=-1, type=click.Path(path_type=Path))(analysis_flags(func))


def load(paths, config_file, **values):
    from ..api import load_settings

    if not paths:
        raise Bn2gnError("no PATH given: name the files or folders to analyse (e.g. lib/models)")
    return load_settings(list(paths), config_file=config_file, **values)


def trace_options(func):
    """scan --trace: build the real model and decide every site from where its instances end up."""
    func = click.option(
        "--allow-global",
        "allow_globals",
        multiple=True,
        metavar="NAME",
        help="With --checkpoint: allow one pickled global by dotted name (repeatable).",
    )(func)
    func = click.option(
        "--trust-pickle",
        is_flag=True,
        help="With --checkpoint: load with weights_only=False (runs the file's pickled code).",
    )(func)
    func = click.option(
        "--checkpoint",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="With --trace: also check backbone BatchNorm statistics after loading this "
        "checkpoint.",
    )(func)
    func = model_build_options(
        func, prefix="With --trace: "
    )  # --stub, --model-opts, --model-opts-arg
    func = click.option(
        "--path",
        "model_paths",
        multiple=True,
        type=click.Path(path_type=Path),
        metavar="DIR",
        help="With --trace: folder put first on sys.path to import the model (repeatable).",
    )(func)
    func = click.option(
        "--model-arg",
        "model_args",
        multiple=True,
        metavar="KEY=VALUE",
        help="With --trace: keyword argument for the factory, a Python literal or a string "
        "(repeatable).",
    )(func)
    func = click.option(
        "--trace-arg",
        "trace_args",
        multiple=True,
        metavar="WORDS",
        help="With --trace SCRIPT: the script's command-line words, split like a shell would "
        "(repeatable), e.g. 'ctdet --arch dla_34'.",
    )(func)
    return click.option(
        "--trace",
        "trace_spec",
        metavar="MODULE:FACTORY|SCRIPT",
        help="Build the model on CPU and decide each site from the module paths of the "
        "BatchNorm instances it creates: call the factory, or run the train script (a .py file; "
        "its arguments with --trace-arg) up to its first optimizer and take the model it trains.",
    )(func)


def _trace(
    plan,
    project,
    config,
    trace_spec,
    model_args,
    model_paths,
    stubs,
    checkpoint,
    trust_pickle,
    allow_globals,
    model_opts=None,
    model_opts_args=(),
    trace_args=(),
):
    if not trace_spec:
        if (
            model_args
            or model_paths
            or stubs
            or checkpoint
            or trust_pickle
            or allow_globals
            or model_opts
            or model_opts_args
            or trace_args
        ):
            raise Bn2gnError(
                "--model-arg, --path, --stub, --model-opts, --checkpoint, --trust-pickle, "
                "--allow-global and --trace-arg need --trace MODULE:FACTORY (or --trace SCRIPT)"
            )
        return None
    from ..decide.trace import trace_plan
    from ..model.checkpoint_load import LoadOptions

    # the model is --trace here (factory or script), --model / --script elsewhere
    name_options(model="--trace", script="--trace", path="--path")
    if _is_script(trace_spec):
        if model_args or model_paths or model_opts or model_opts_args:
            raise Bn2gnError(
                f"--trace {trace_spec} runs the train script, which builds the model itself: "
                "leave out --model-arg, --path, --model-opts and --model-opts-arg (give its "
                "arguments with --trace-arg)",
                EXIT_USAGE,
            )
        spec = _script_spec(trace_spec, trace_args, stubs)
    else:
        if trace_args:
            raise Bn2gnError(
                f"--trace-arg gives a train script its arguments; --trace {trace_spec} is a "
                "factory: give its arguments with --model-arg",
                EXIT_USAGE,
            )
        from ..model.spec import parse_model_spec

        spec = parse_model_spec(
            trace_spec, model_args, model_paths, stubs, model_opts, model_opts_args
        )
    return trace_plan(
        plan, project, spec, config, checkpoint, LoadOptions(trust_pickle, tuple(allow_globals))
    )


def _is_script(trace_spec: str) -> bool:
    """--trace SCRIPT: a value ending in .py or naming an existing file (a factory is MODULE:NAME)."""
    return trace_spec.endswith(".py") or Path(trace_spec).is_file()


def _script_spec(script: str, trace_args, stubs):
    """The train script and its words, built exactly as ``verify --script PATH -- ARGS`` builds it."""
    import shlex

    from ..model.spec import parse_script_spec

    words = []
    for text in trace_args:
        try:
            words += shlex.split(text)
        except ValueError as exc:
            raise Bn2gnError(f"--trace-arg {text!r}: {exc}", EXIT_USAGE) from None
    return parse_script_spec(Path(script), words, stubs)


@cli.command()
@analysis_options
@output_options
@trace_options
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the plan as JSON to this file.",
)
def scan(
    paths,
    config_file,
    backbone_attrs,
    roots,
    convert,
    keep,
    include,
    exclude,
    strict,
    quiet,
    verbose,
    fmt,
    trace_spec,
    model_args,
    model_paths,
    stubs,
    model_opts,
    model_opts_args,
    checkpoint,
    trust_pickle,
    allow_globals,
    trace_args,
    output,
):
    """Print the plan: every BatchNorm site, its decision (convert/keep/unsure) and why. Writes nothing."""
    from ..api import Session
    from ..decide.plan import UNSURE, render_text

    check_output("-o", output, [*paths, config_file, checkpoint])

    config = load(
        paths,
        config_file,
        backbone_names=backbone_attrs,
        roots=roots,
        convert=convert,
        keep=keep,
        include=include,
        exclude=exclude,
    )
    progress.enable(quiet)
    session = Session(paths, config, with_insertions=True)
    plan, project, _ = session.planned()
    trace = _trace(
        plan,
        project,
        config,
        trace_spec,
        model_args,
        model_paths,
        stubs,
        checkpoint,
        trust_pickle,
        allow_globals,
        model_opts,
        model_opts_args,
        trace_args,
    )
    if trace is not None:
        plan = trace.plan
    plan_json = _plan_json(plan, trace) if fmt == "json" or output else None
    if fmt == "json":
        click.echo(plan_json, nl=False)
    else:
        text = render_text(plan, verbose=verbose)
        click.echo(text.splitlines()[-1] if quiet else text.rstrip("\n"))
        if trace is not None and not quiet:
            from ..decide.trace_report import render_trace_text

            click.echo("\n".join(render_trace_text(trace)))
    for warning in trace.warnings if trace is not None else ():
        click.echo(f"bn2gn: warning: {warning}", err=True)
    if output:
        _write_plan(output, plan_json)
    if plan.errors:
        return sys.exit(EXIT_FAILED)
    if strict and plan.counts()[UNSURE]:
        click.echo(
            f"bn2gn: {plan.counts()[UNSURE]} unsure site(s) and --strict was given", err=True
        )
        return sys.exit(EXIT_FAILED)
    return sys.exit(EXIT_OK)


def _plan_json(plan, trace) -> str:
    """The plan as ``--format json`` prints it and ``-o`` writes it (with the trace when there is one)."""
    if trace is None:
        from ..decide.plan import render_json

        return render_json(plan)
    import json

    return json.dumps(dict(plan.as_dict(), trace=trace.as_dict()), indent=2) + "\n"


def _write_plan(output: Path, plan_json: str) -> None:
    """scan -o: a folder that does not exist, a device or a full disk is the user's to fix (exit 2)."""
    from ..core.source_files import WriteRefused, write_atomic

    if not output.parent.is_dir():
        raise Bn2gnError(
            f"-o {output}: folder {output.parent} does not exist; create it first or choose "
            "another path",
            EXIT_USAGE,
        )
    try:
        write_atomic(output, plan_json.encode("utf-8"))
    except WriteRefused as exc:
        raise Bn2gnError(f"-o {exc}", EXIT_USAGE) from None
    except OSError as exc:
        raise Bn2gnError(
            f"-o {output}: cannot write the plan ({exc.strerror or exc})", EXIT_USAGE
        ) from None


@cli.command()
@analysis_options
@mode_options
@rule_options
@output_options
@click.option(
    "--format-code",
    "format_code",
    is_flag=True,
    help="Also run black on every changed file (off by default: only injected code is formatted).",
)
@click.option(
    "-j",
    "--jobs",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Rewrite files in parallel with N processes.",
)
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PLAN.json",
    help="Apply the decisions of a saved (reviewed, possibly edited) plan from bn2gn scan -o; "
    "sites whose source changed since are reported and skipped (exit 1).",
)
def rewrite(
    paths,
    config_file,
    backbone_attrs,
    roots,
    convert,
    keep,
    include,
    exclude,
    strict,
    diff,
    check,
    select,
    skip,
    list_rules,
    quiet,
    verbose,
    fmt,
    format_code,
    jobs,
    plan_file,
):
    """BatchNorm2d -> get_group_norm(C) in non-backbone layers; helper injected; init loops updated."""
    if list_rules:
        echo_rules("BN2GN1")
        return
    from ..api import Session
    from ..core.rule_codes import select_rules
    from ..decide.plan import UNSURE

    mode = mode_of(diff, check)
    config = load(
        paths,
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
    rules = select_rules(config.select, config.skip)
    if not any(r.code.startswith("BN2GN1") for r in rules):
        raise Bn2gnError("no rewrite rule selected: see bn2gn rewrite --list-rules")
    progress.enable(quiet)
    session = Session(paths, config, plan_file=plan_file)
    run = session.rewrite(frozenset(rules), workers=jobs)  # plans first: its workers start before
    applied = session.planned()[2]
    if format_code:
        _black_changed(run.results)
    code = apply_and_report("rewrite", run.plan, run.results, mode, fmt, quiet, verbose)
    if run.plan.openmmlab_configs and fmt == "text":
        from ..decide.plan import openmmlab_config_note

        click.echo(f"note: {openmmlab_config_note(run.plan.openmmlab_configs)}", err=True)
    if applied is not None:
        click.echo(applied.summary(), err=mode == "diff" or fmt == "json")
        if code == EXIT_OK and applied.skipped:
            code = EXIT_FAILED
    if code == EXIT_OK and strict and run.plan.counts()[UNSURE]:
        code = EXIT_FAILED
    sys.exit(code)


def _black_changed(results) -> None:
    """Replace each changed result by its black-formatted one, parse-checked again by ``finish``."""
    import dataclasses

    import black

    from ..core.file_results import finish

    for index, result in enumerate(results):
        if result.status != "changed":
            continue
        try:
            formatted = black.format_str(result.new_text, mode=black.Mode())
        except Exception as exc:  # noqa: BLE001 - black failing leaves our own output in place
            note = f"{result.path}: black could not format the file ({exc})"
            results[index] = dataclasses.replace(result, notes=result.notes + (note,))
            continue
        checked = finish(result.source, formatted, result.changes, result.notes, result.refused)
        if checked.status != "failed":
            results[index] = checked
        else:
            note = f"{result.path}: black's output did not pass the parse check; not formatted"
            results[index] = dataclasses.replace(result, notes=result.notes + (note,))


def apply_and_report(
    command: str, plan, results, mode: str, fmt: str, quiet: bool, verbose: bool
) -> int:
    """Write / print diffs / check, then report; with --format json the diffs go into the JSON, not beside it."""
    import io

    from ..core.file_results import apply_results

    code = apply_results(results, mode, sys.stdout if fmt == "text" else io.StringIO())
    report_results(command, plan, results, mode, fmt, quiet, verbose)
    return code


def report_results(
    command: str, plan, results, mode: str, fmt: str, quiet: bool, verbose: bool
) -> None:
    """The end-of-run report shared by rewrite and patch-trainer: per-file changes, failures, a summary."""
    changed = [r for r in results if r.status == "changed"]
    failures = [r for r in results if r.status == "failed"]
    summary = {
        "command": command,
        "mode": mode,
        "files_scanned": plan.files if plan else len(results),
        "files_changed": len(changed),
        "files_failed": len(failures),
    }
    if plan is not None and command == "rewrite":
        counts = plan.counts()
        summary.update(
            sites_converted=sum(
                len([c for c in r.changes if c.rule.code == "BN2GN101"]) for r in changed
            ),
            sites_planned_convert=counts["convert"],
            sites_kept=counts["keep"],
            sites_unsure=counts["unsure"],
        )
    if fmt == "json":
        from ..core.file_results import unified_diff

        data = dict(
            summary,
            results=[
                dict(r.as_dict(), **({"diff": unified_diff(r)} if mode == "diff" else {}))
                for r in results
                if r.status != "unchanged"
            ],
        )
        if plan is not None:
            data["plan"] = plan.as_dict()
        import json

        click.echo(json.dumps(data, indent=2))
        return
    verb = {"write": "changed", "diff": "would change", "check": "would change"}[mode]
    out = sys.stderr if mode == "diff" else sys.stdout
    if not quiet:
        for result in changed:
            click.echo(f"{result.path}: {verb} ({len(result.changes)} edits)", file=out)
            if verbose:
                for change in result.changes:
                    click.echo(
                        f"  {result.path}:{change.line}: {change.rule.code} {change.message}",
                        file=out,
                    )
        for result in results:
            for note in result.notes:
                click.echo(f"note: {note}", file=out)
        if plan is not None and command == "rewrite":
            for site in plan.sites:
                if site.decision == "unsure":
                    click.echo(f"unsure: {site.location}: {site.scope}: {site.reason}", file=out)
    for result in failures:
        click.echo(f"error: {result.error}", err=True)
    line = (
        f"{command}: {summary['files_scanned']} files scanned, {len(changed)} {verb}, "
        f"{len(failures)} failed"
    )
    if "sites_kept" in summary:
        line += (
            f"; sites: {summary['sites_planned_convert']} convert, {summary['sites_kept']} keep, "
            f"{summary['sites_unsure']} unsure"
        )
    click.echo(line, file=out)
