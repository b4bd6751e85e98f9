"""Render a remap-ckpt result as text (summary, then grouped lists) or as one JSON document."""

from __future__ import annotations

import collections
from typing import Dict, List

from ..core.errors import Opt, message_text
from .job import RemapResult
from .remap import StateDictReport
from .verification import Verification


def as_dict(result: RemapResult) -> dict:
    report = result.report
    data = {
        "input": str(result.source),
        "output": str(result.output),
        "input_format": result.source_format,
        "output_format": result.output_format,
        "state_dict_keys": list(result.state_keys),
        "dry_run": result.dry_run,
        "decided_by": str(result.decided_by),
        "model_build": list(result.build_notes),
        "written": result.written,
        "backup": str(result.backup) if result.backup else None,
        "state_dicts": [_state_dict_as_dict(sd) for sd in report.state_dicts],
        "top_level": {"kept": report.kept_entries, "dropped": report.dropped_entries},
        "warnings": report.warnings,
        "verification": _verification_as_dict(result.verification),
        "exit_code": result.exit_code,
    }
    return data


def _state_dict_as_dict(sd: StateDictReport) -> dict:
    return {
        "key": sd.key,
        "counts": {
            "total": sd.total,
            "kept": len(sd.kept),
            "renamed": len(sd.renamed),
            "dropped": sd.dropped_count,
            "reset": len(sd.reset),
            "converted_layers": len(sd.dropped),
            "backbone_batchnorm_layers": len(sd.backbone_batchnorm),
        },
        "stripped_prefix": sd.stripped_prefix,
        "kept": sd.kept,
        "renamed": [[old, new] for old, new in sd.renamed],
        "dropped": sd.dropped,
        "reset": sd.reset,
        "backbone_batchnorm_layers": sd.backbone_batchnorm,
    }


def _verification_as_dict(check: Verification) -> dict:
    if check is None:
        return None
    return {
        "model": check.model,
        "strict": check.strict,
        "ok": check.ok,
        "clean": check.clean,
        "missing": check.missing,
        "unexpected": check.unexpected,
        "mismatched": {
            k: [{"key": n, "checkpoint": c, "model": m} for n, c, m in v]
            for k, v in check.mismatched.items()
        },
        "backbone_lost": check.backbone_lost,
        "load_error": check.load_error,
    }


def summary_line(result: RemapResult) -> str:
    kept = sum(len(sd.kept) for sd in result.report.state_dicts)
    renamed = sum(len(sd.renamed) for sd in result.report.state_dicts)
    dropped = sum(sd.dropped_count for sd in result.report.state_dicts)
    layers = sum(len(sd.dropped) for sd in result.report.state_dicts)
    reset = sum(len(sd.reset) for sd in result.report.state_dicts)
    counts = f"{kept} kept ({renamed} renamed), {dropped} dropped from {layers} converted layers, {reset} reset"
    if result.written:
        done = f"wrote {result.output} (re-opened and checked)"
        if result.backup:
            done += f"; original kept as {result.backup}"
    elif result.dry_run:
        done = f"dry run: would write {result.output}"
    else:
        done = "nothing written"
    return f"{result.source}: {counts}; {done}"


def render_text(result: RemapResult, verbose: bool = False) -> List[str]:
    """The human report; ``summary_line`` closes it. Long lists are grouped, -v lists every entry."""
    lines = [
        f"{result.source} ({result.source_format}) -> {result.output} ({result.output_format})"
    ]
    if result.decided_by:
        lines.append(f"converted layers decided by {result.decided_by}")
    lines += [f"model build: {note}" for note in result.build_notes]
    for sd in result.report.state_dicts:
        lines.extend(_state_dict_lines(sd, verbose))
    report = result.report
    if report.kept_entries or report.dropped_entries:
        lines.append(
            f"top-level entries: kept {', '.join(report.kept_entries) or 'none'}; "
            f"dropped {', '.join(report.dropped_entries) or 'none'}"
        )
    if result.verification is not None:
        lines.extend(_verification_lines(result.verification))
    return lines


def _state_dict_lines(sd: StateDictReport, verbose: bool) -> List[str]:
    where = f"state dict {sd.key!r}" if sd.key else "state dict"
    lines = [f"{where}: {sd.total} entries"]
    lines.append(f"  kept     {len(sd.kept):6d}  (bit-identical){_groups(sd.kept, verbose)}")
    if sd.renamed:
        lines.append(
            f"  renamed  {len(sd.renamed):6d}  ({sd.stripped_prefix}* -> *, DataParallel prefix stripped)"
        )
        if verbose:
            lines.extend(f"      {old} -> {new}" for old, new in sd.renamed)
    lines.append(
        f"  dropped  {sd.dropped_count:6d}  running statistics of {len(sd.dropped)} converted layers"
    )
    for layer, keys in sd.dropped.items():
        leaves = ", ".join(k.rpartition(".")[2] for k in keys) or "(no running statistics)"
        lines.append(f"      {layer}: {leaves}")
    if sd.reset:
        lines.append(
            f"  reset    {len(sd.reset):6d}  GroupNorm weight=1 / bias=0 ("
            + message_text(Opt("reset_affine"), ")")
        )
        if verbose:
            lines.extend(f"      {name}" for name in sd.reset)
    lines.append(
        f"  backbone BatchNorm layers kept with their statistics: {len(sd.backbone_batchnorm)}"
    )
    return lines


def _groups(names: List[str], verbose: bool) -> str:
    if verbose:
        return "".join(f"\n      {name}" for name in names)
    counts: Dict[str, int] = collections.Counter(name.split(".", 1)[0] for name in names)
    shown = ", ".join(f"{top}: {n}" for top, n in list(counts.items())[:12])
    more = ", ..." if len(counts) > 12 else ""
    return f"  [{shown}{more}]" if counts else ""


def _verification_lines(check: Verification) -> List[str]:
    status = "ok" if check.ok else "FAILED"
    detail = (
        "strict load clean"
        if check.clean
        else check.problems()
        if not check.ok
        else "loads with strict=False"
    )
    lines = [f"verification against {check.model}: {status} ({detail})"]
    for title, groups in (("missing", check.missing), ("unexpected", check.unexpected)):
        for module, names in groups.items():
            leaves = ", ".join(n.rpartition(".")[2] for n in names)
            lines.append(f"  {title:<10} {module}: {leaves}")
    for entries in check.mismatched.values():
        for name, have, want in entries:
            lines.append(
                f"  {'mismatched':<10} {name}: checkpoint {tuple(have)} vs model {tuple(want)}"
            )
    if check.backbone_lost:
        lines.append(
            f"  backbone tensors lost: {', '.join(check.backbone_lost[:10])}"
            f"{', ...' if len(check.backbone_lost) > 10 else ''}"
        )
    if check.load_error:
        lines.append(f"  load error: {check.load_error}")
    return lines
