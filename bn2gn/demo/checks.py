"""The demo's own checks, on top of the runtime checks: the checkpoint remap and the unpatched contrast run."""

from __future__ import annotations

from typing import List, Optional

from ..verify.checks import checkpoint_loaded_check, preview, record_checks
from ..verify.report import FAIL, PASS, Check, Section


def remap_check(remap: Optional[dict], before: Optional[dict], record: dict) -> Check:
    """remap-ckpt dropped exactly the running statistics of the converted layers; the backbone arrived intact.

    ``before`` is the census of the original model: its BatchNorm2d outside the backbone are the
    layers that became GroupNorm. ``record['pretrained']`` compares the patched run's backbone
    BatchNorm at its first step with the original (pre-remap) checkpoint.
    """
    if remap is None or not remap.get("state_dicts"):
        return Check(
            "checkpoint-remap",
            FAIL,
            "no remap-ckpt report",
            "the remap-ckpt step did not produce JSON",
        )
    dropped = {layer: keys for sd in remap["state_dicts"] for layer, keys in sd["dropped"].items()}
    expected = set(before["batchnorm_outside"]) if before else set()
    unexpected = sorted(set(dropped) - expected)
    not_dropped = sorted(expected - set(dropped))
    pretrained = record.get("pretrained") or {}
    lost = (
        (pretrained.get("missing") or [])
        + (pretrained.get("different") or [])
        + (pretrained.get("shape_mismatch") or [])
    )
    if pretrained.get("error"):
        lost.append(pretrained["error"])
    tensors = sum(len(keys) for keys in dropped.values())
    value = (
        f"dropped {tensors} running-statistics tensors of {len(dropped)} converted layers (expected "
        f"{len(expected)}); {pretrained.get('compared', 0) - len(pretrained.get('different') or [])} backbone "
        f"BatchNorm tensors identical to the pretrained checkpoint"
    )
    problems = []
    if unexpected:
        problems.append(f"dropped layers that were not converted: {preview(unexpected)}")
    if not_dropped:
        problems.append(
            f"converted layers whose statistics were not dropped: {preview(not_dropped)}"
        )
    if lost or not pretrained:
        problems.append(
            f"backbone tensors not carried over from the pretrained checkpoint: {preview(lost)}"
        )
    data = {"dropped": dropped, "verification": remap.get("verification"), "pretrained": pretrained}
    return Check("checkpoint-remap", FAIL if problems else PASS, value, "; ".join(problems), data)


def contrast_check(original: Optional[dict]) -> Check:
    """The same steps on the unpatched original: its backbone statistics drift (shown as the max change)."""
    if not original or "backbone_buffers" not in original:
        error = (original or {}).get("script", {}).get("error") or "no record"
        return Check(
            "contrast-drift",
            FAIL,
            f"unpatched run not measured: {error}",
            "the original copy's train script failed; see its log",
        )
    buffers, affine = original["backbone_buffers"], original["backbone_affine"]
    layers = {name.rpartition(".")[0] for name in buffers["changed"]}
    total = len(original["census"]["batchnorm_backbone"])
    value = (
        f"unpatched original, same steps: {len(layers)} of {total} backbone BatchNorm layers drifted, max "
        f"|delta| {buffers['max_abs_change']:.3g} ({buffers['max_change_at']}); affine max |delta| "
        f"{affine['max_abs_change']:.3g}"
    )
    drifted = buffers["max_abs_change"] > 0
    message = (
        ""
        if drifted
        else (
            "the unpatched run left the backbone statistics unchanged, so the contrast shows "
            "nothing: is the original copy already patched?"
        )
    )
    return Check(
        "contrast-drift",
        PASS if drifted else FAIL,
        value,
        message,
        {
            "buffers": buffers,
            "affine": affine,
            "losses": [s["loss"] for s in original.get("steps", [])],
        },
    )


def arch_section(
    title: str, patched: Optional[dict], original: Optional[dict], remap: Optional[dict]
) -> Section:
    """All checks for one fixture architecture, in report order."""
    section = Section(title)
    if patched is None:
        section.checks.append(
            Check(
                "train-script",
                FAIL,
                "the patched run left no record",
                "the harness could not write its report; see the training log",
            )
        )
        return section
    before = (original or {}).get("census")
    checks: List[Check] = record_checks(patched, before=before, expect_checkpoint=False)
    position = next((i for i, c in enumerate(checks) if c.name.startswith("loss-")), len(checks))
    checks[position:position] = [
        checkpoint_loaded_check(patched.get("checkpoint")),
        remap_check(remap, before, patched),
    ]
    checks.append(contrast_check(original))
    section.checks = checks
    return section
