"""One remap-ckpt run from start to finish: plan the output, load, remap, verify, write.

Every check that can refuse the run (output path, model spec, input) happens before anything
is written, and ``--dry-run`` follows the same path up to the write. The input file is only
ever opened for reading; ``--in-place`` keeps it as ``OLD.bak`` (a hard link when possible).
Outputs are regular files only: an existing symlink, device, pipe or socket is refused (also with
``--force``), and ``--in-place`` refuses a symlink or a file with several hard links.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
import warnings
from pathlib import Path
from typing import List, Optional, Tuple

from ..core.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Bn2gnError, Message, Opt, message_text
from ..core.process import reading_mapped
from ..core.source_files import WriteRefused, atomic_output, file_kind
from ..model.checkpoint_load import (
    SAFETENSORS,
    LoadOptions,
    find_state_dicts,
    fold_warnings,
    load_checkpoint,
    refuse_meta_tensors,
    safetensors_module,
)
from ..model.checkpoint_save import build_payload, check_written, output_format, save_checkpoint
from ..model.spec import ModelSpec, build
from .remap import CheckpointReport, RemapOptions, remap_content, selection_from_model
from .verification import Verification, verify_state_dict


@dataclasses.dataclass(frozen=True)
class RemapJob:
    source: Path
    output: Optional[Path] = None
    in_place: bool = False
    force: bool = False
    dry_run: bool = False
    keys: Tuple[str, ...] = ()
    load: LoadOptions = LoadOptions()
    remap: RemapOptions = RemapOptions()
    model: Optional[ModelSpec] = None
    strict: bool = False


@dataclasses.dataclass
class RemapResult:
    source: Path
    output: Path
    source_format: str
    output_format: str
    state_keys: Tuple[str, ...]
    report: CheckpointReport
    dry_run: bool = False
    verification: Optional[Verification] = None
    written: bool = False
    backup: Optional[Path] = None
    decided_by: str = ""  # which rule said what was converted
    build_notes: Tuple[str, ...] = ()  # what the model build stood in, served or missed (offline)

    @property
    def exit_code(self) -> int:
        return (
            EXIT_FAILED if self.verification is not None and not self.verification.ok else EXIT_OK
        )


def default_output_path(source: Path) -> Path:
    """``model_last.pth`` → ``model_last.bn2gn.pth``; ``ckpt`` → ``ckpt.bn2gn``."""
    source = Path(source)
    return source.with_name(f"{source.stem}.bn2gn{source.suffix}")


def plan_output(job: RemapJob) -> Tuple[Path, Optional[Path], List[str]]:
    """The output path, the --in-place backup path, and what a real run would refuse to clobber.

    Conflicts raise, except under --dry-run where they become warnings in the report.
    """
    source = Path(job.source)
    if job.in_place and job.output is not None:
        raise Bn2gnError(
            Message(Opt("in_place"), " and ", Opt("output"), " cannot be combined"), EXIT_USAGE
        )
    if job.in_place:
        _check_in_place(source)
    output = source if job.in_place else Path(job.output or default_output_path(source))
    if not job.in_place and _same_file(output, source):
        raise Bn2gnError(
            Message(
                f"{output}: is the input; to replace it use ",
                Opt("in_place"),
                f" (keeps {source}.bak)",
            ),
            EXIT_USAGE,
        )
    if not output.parent.is_dir():
        raise Bn2gnError(
            f"{output}: output folder {output.parent} does not exist; create it first", EXIT_USAGE
        )
    if output.is_dir():
        raise Bn2gnError(
            Message(f"{output}: is a directory; give an output file name with ", Opt("output")),
            EXIT_USAGE,
        )
    backup = source.with_name(source.name + ".bak") if job.in_place else None
    if not job.in_place:
        _check_replaceable(output)
    _check_replaceable(backup)
    conflicts = []
    if not job.in_place and output.exists() and not job.force:
        conflicts.append(
            message_text(
                f"{output}: already exists; use ",
                Opt("force"),
                " to overwrite it or ",
                Opt("output"),
                " to choose another name",
            )
        )
    if backup is not None and backup.exists() and not job.force:
        conflicts.append(
            message_text(
                f"{backup}: already exists; ",
                Opt("in_place"),
                " keeps the original there, use ",
                Opt("force"),
                " to replace it",
            )
        )
    if conflicts and not job.dry_run:
        raise Bn2gnError(conflicts[0], EXIT_USAGE)
    return output, backup, conflicts


def run_remap(job: RemapJob) -> RemapResult:
    """Plan, load, remap, verify, write; torch's warnings end up in the report, never raw on stderr."""
    with (
        warnings.catch_warnings(record=True) as caught,
        reading_mapped(_changed(job.source), EXIT_USAGE),
    ):
        warnings.simplefilter("always")
        result = _run_remap(job)
    for text in fold_warnings(caught):
        if text not in result.report.warnings:
            result.report.warnings.append(text)
    return result


def _run_remap(job: RemapJob) -> RemapResult:
    output, backup, conflicts = plan_output(job)
    if output_format(output) == SAFETENSORS:
        safetensors_module(output, "write")
    built = build(job.model) if job.model is not None else None
    model = built.model if built is not None else None
    before = _identity(job.source)
    try:
        checkpoint = load_checkpoint(job.source, job.load)
    except Bn2gnError:
        if _identity(job.source) != before:  # shrunk or rewritten while torch read it
            raise Bn2gnError(_changed(job.source), EXIT_USAGE) from None
        raise
    refuse_meta_tensors(checkpoint.content, checkpoint.path)
    keys = find_state_dicts(checkpoint.content, checkpoint.path, job.keys)
    remap = job.remap
    if (
        model is not None and remap.plan is None
    ):  # the model itself says which layers were converted
        remap = dataclasses.replace(remap, plan=selection_from_model(model, job.model.describe()))
    content, report = remap_content(checkpoint.content, keys, remap)
    fmt = output_format(output)
    payload, notes = build_payload(content, keys, fmt)
    report.warnings.extend(
        [f"{job.source}: {w}" for w in checkpoint.warnings]
        + notes
        + [f"a real run would stop here: {c}" for c in conflicts]
    )
    result = RemapResult(
        source=Path(job.source),
        output=output,
        source_format=checkpoint.format,
        output_format=fmt,
        state_keys=keys,
        report=report,
        dry_run=job.dry_run,
        # with no backbone, decided_by is the refusal's reason (a Message), not a rule that decided
        decided_by=job.remap.decided_by if job.remap.backbone is not None else "",
        build_notes=tuple(str(n) for n in built.notes()) if built is not None else (),
    )
    if model is not None:
        primary = content[keys[0]] if keys else content
        result.verification = verify_state_dict(
            model,
            primary,
            job.remap.backbone.spellings if job.remap.backbone else (),
            job.strict,
            job.model.describe(),
        )
    if job.dry_run or result.exit_code != EXIT_OK:
        return result
    metadata = checkpoint.metadata if checkpoint.format == SAFETENSORS else {"format": "pt"}
    try:
        with atomic_output(output) as tmp:
            save_checkpoint(payload, tmp, fmt, metadata)
            check_written(tmp, fmt, payload, job.load)
            if _identity(job.source) != before:
                raise Bn2gnError(_changed(job.source), EXIT_USAGE)
            if backup is not None:
                keep_backup(Path(job.source), backup)
    except (
        WriteRefused
    ) as exc:  # the output changed into something else while the checkpoint was remapped
        raise Bn2gnError(str(exc), EXIT_USAGE) from None
    except OSError as exc:
        raise Bn2gnError(
            f"{output}: cannot write ({exc.strerror or exc}); nothing was written", EXIT_USAGE
        ) from None
    result.written = True
    result.backup = backup
    return result


def _check_in_place(source: Path) -> None:
    """--in-place replaces a real file with one name: never through a symlink, never splitting hard links."""
    if source.is_symlink():
        raise Bn2gnError(
            Message(
                f"{source}: is a symlink (to {os.path.realpath(source)}); ",
                Opt("in_place"),
                " does not write through links: run it on the file itself, or write a new file "
                "with ",
                Opt("output", "NEW"),
            ),
            EXIT_USAGE,
        )
    try:
        links = os.stat(source).st_nlink
    except OSError:
        return  # load_checkpoint reports a missing or unreadable file
    if links > 1:
        raise Bn2gnError(
            Message(
                f"{source}: has {links} hard links; ",
                Opt("in_place"),
                " would give this name a new file and leave the other names with the old "
                "checkpoint: write a new file with ",
                Opt("output", "NEW"),
                " instead",
            ),
            EXIT_USAGE,
        )


def _check_replaceable(path: Optional[Path]) -> None:
    """An output (or backup) that exists must be a regular file; a symlink or a device is refused, --force or not."""
    if path is None:
        return
    if path.is_symlink():
        raise Bn2gnError(
            Message(
                f"{path}: is a symlink (to {os.path.realpath(path)}); bn2gn does not write "
                "checkpoints through links: give the real file name or another name with ",
                Opt("output"),
            ),
            EXIT_USAGE,
        )
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode):
        raise Bn2gnError(
            Message(
                f"{path}: exists and is a {file_kind(info.st_mode)}, not a regular file; refused "
                "(also with ",
                Opt("force"),
                "): choose another output name with ",
                Opt("output"),
            ),
            EXIT_USAGE,
        )
    if info.st_nlink > 1:
        raise Bn2gnError(
            Message(
                f"{path}: has {info.st_nlink} hard links; replacing it would leave the other names "
                "with the old file: choose another output name with ",
                Opt("output"),
            ),
            EXIT_USAGE,
        )


def keep_backup(source: Path, backup: Path) -> None:
    """Put the untouched original at ``backup``: a hard link (same bytes, no copy) or a full copy."""
    tmp = backup.with_name(f".{backup.name}.{os.getpid()}.bn2gn-tmp")
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copy2(source, tmp)
    os.replace(tmp, backup)


def _changed(source) -> str:
    return f"{source}: changed while it was read; nothing written; run again when nothing writes it"


def _identity(path: Path) -> tuple:
    """What tells a file that was rewritten or shrunk from the one bn2gn started reading."""
    try:
        info = os.stat(path)
    except OSError:
        return ()
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and os.path.samefile(a, b)
    except OSError:
        return False
