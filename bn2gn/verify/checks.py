"""The runtime checks (frozen backbone, trained GroupNorm, finite falling loss), from a recorded run.

Every function takes the plain dicts the recorder writes (``Recorder.finish``), so the same checks
serve the demo (record read from the harness's JSON) and verify (record made in-process), and
they can be tested without torch.
"""

from __future__ import annotations

import collections
import math
from typing import List, Optional

from ..core.errors import Opt, message_text
from .report import FAIL, INFO, PASS, WARN, Check

FREEZE_HINT = (
    "freeze_backbone_bn(model) must run before the optimizer is built and keep_backbone_bn_eval(model) "
    "after every model.train(); `bn2gn patch-trainer` inserts both"
)
EVAL_HINT = (
    "the backbone BatchNorm trained in batch-statistics mode: model.train() switches it back on, so "
    "keep_backbone_bn_eval(model) must follow every .train() (`bn2gn patch-trainer` on the trainer adds it) "
    "after freeze_backbone_bn(model)"
)
GRAD_HINT = (
    "backbone BatchNorm weight/bias still require grad: freeze_backbone_bn(model) must run before the "
    "optimizer is built (`bn2gn patch-trainer` on the train script adds it)"
)
UNTRAINED_HINT = (
    "freezing it pins an untrained normalisation (mean 0, var 1): load pretrained weights that cover "
    "it, or do not list its attribute as backbone"
)


def preview(items, limit: int = 4) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def _status(ok: bool) -> str:
    return PASS if ok else FAIL


def run_check(record: dict) -> Optional[Check]:
    """A failing check when the script did not finish or no training step was seen; None when all is well."""
    script = record.get("script") or {}
    if script.get("exit_code", 0) != 0:
        return Check(
            "train-script",
            FAIL,
            f"exit status {script['exit_code']}: {script.get('error') or ''}".strip(),
            "the training script failed; its output is in the log named above",
            {"script": script},
        )
    if record.get("error"):
        return Check(
            "train-script",
            FAIL,
            record["error"],
            "the script must call the model in training mode with gradients on (model.train())",
        )
    return None


def norm_checks(census: dict, before: Optional[dict] = None) -> List[Check]:
    """BatchNorm2d outside the backbone (before > 0, after = 0); GroupNorm count and group sizes."""
    after = census["batchnorm_outside"]
    if before is None:
        value, ok = f"{len(after)} outside the backbone", not after
    else:
        n_before = len(before["batchnorm_outside"])
        value, ok = f"before {n_before}, after {len(after)}", n_before > 0 and not after
    message = (
        ""
        if ok
        else (
            f"BatchNorm2d left outside the backbone: {preview(after)}; run `bn2gn rewrite` "
            "(`bn2gn scan` says why a site was kept)"
            if after
            else "the original model has no BatchNorm2d outside the backbone: nothing was converted"
        )
    )
    checks = [Check("batchnorm-outside-backbone", _status(ok), value, message, {"after": after})]
    groups = collections.Counter((g["channels"], g["groups"]) for g in census["groupnorm"])
    sizes = ", ".join(f"C={c}->{g} groups x{n}" for (c, g), n in sorted(groups.items()))
    expected = len(before["batchnorm_outside"]) if before is not None else None
    ok = bool(census["groupnorm"]) and (expected is None or len(census["groupnorm"]) == expected)
    message = (
        ""
        if ok
        else (
            f"expected one GroupNorm per converted BatchNorm2d ({expected}), found "
            f"{len(census['groupnorm'])}"
            if expected
            else "no GroupNorm in the model: is it the converted one?"
        )
    )
    checks.append(
        Check(
            "groupnorm",
            _status(ok),
            f"{len(census['groupnorm'])} GroupNorm: {sizes or 'none'}",
            message,
            {"groupnorm": census["groupnorm"]},
        )
    )
    return checks


def frozen_checks(record: dict) -> List[Check]:
    """At every step, every backbone BatchNorm: training == False; weight/bias requires_grad == False."""
    steps = record.get("steps") or []
    total = len((record.get("census") or {}).get("batchnorm_backbone", []))
    checks = []
    for name, key, what, hint in (
        ("frozen-eval", "bn_training", "in training mode", EVAL_HINT),
        ("frozen-requires-grad", "bn_requires_grad", "with weight/bias requiring grad", GRAD_HINT),
    ):
        bad = [s for s in steps if s[key]]
        if not steps or not total:
            why = (
                "no training step was observed"
                if not steps
                else (
                    "no BatchNorm under the backbone attributes "
                    + ", ".join(record.get("backbone_attrs", []))
                )
            )
            checks.append(
                Check(
                    name,
                    FAIL,
                    why,
                    message_text(
                        "check ", Opt("backbone_attr"), " (or [tool.bn2gn] backbone-attrs)"
                    ),
                )
            )
        elif bad:
            worst = max(bad, key=lambda s: len(s[key]))
            value = (
                f"{len(bad)} of {len(steps)} steps had backbone BatchNorm {what}; step {bad[0]['step']}: "
                f"{len(worst[key])} of {total} ({preview(worst[key])})"
            )
            checks.append(Check(name, FAIL, value, hint, {"steps": [s["step"] for s in bad]}))
        else:
            checks.append(
                Check(
                    name,
                    PASS,
                    f"0 of {total} backbone BatchNorm {what}, at each of {len(steps)} steps",
                )
            )
    return checks


def unchanged_check(name: str, diff: dict, what: str) -> Check:
    """Backbone tensors bit-identical after training (buffers or affine parameters)."""
    changed = diff["changed"]
    if not changed:
        return Check(
            name,
            _status(diff["count"] > 0),
            f"{diff['count']} {what} bit-identical after training",
            "" if diff["count"] else "nothing to compare: no backbone BatchNorm",
        )
    value = (
        f"{len(changed)} of {diff['count']} {what} changed (max |delta| {diff['max_abs_change']:.3g} at "
        f"{diff['max_change_at']})"
    )
    return Check(
        name,
        FAIL,
        value,
        "the backbone BatchNorm is being trained: " + FREEZE_HINT,
        {"changed": changed},
    )


def groupnorm_trained_check(change: dict) -> Check:
    """Head GroupNorm parameters changed (every layer that received a gradient)."""
    layers, changed = change["layers"], change["changed"]
    extra = (
        f"; {len(change['no_grad'])} got no gradient ({preview(change['no_grad'], 2)})"
        if change["no_grad"]
        else ""
    )
    value = f"{len(changed)} of {layers} GroupNorm layers changed (max |delta| {change['max_abs_change']:.3g}){extra}"
    ok = bool(changed) and not change["unchanged"]
    message = (
        ""
        if ok
        else (
            f"GroupNorm layers with a gradient did not change: {preview(change['unchanged'])}"
            if change["unchanged"]
            else "no GroupNorm parameter changed: are the heads trained?"
        )
    )
    return Check("groupnorm-trained", _status(ok), value, message, change)


def loss_checks(steps: List[dict]) -> List[Check]:
    """Loss finite at every step; lower at the end than at the start."""
    losses = [s["loss"] for s in steps]
    bad = [
        s["step"] for s in steps if not isinstance(s["loss"], float) or not math.isfinite(s["loss"])
    ]
    checks = [
        Check(
            "loss-finite",
            _status(bool(steps) and not bad),
            f"{len(steps) - len(bad)} of {len(steps)} steps finite",
            f"loss missing or not finite at steps {bad[:10]}" if bad else "",
            {"losses": losses},
        )
    ]
    if len(steps) < 2 or bad:
        checks.append(
            Check(
                "loss-decreases",
                FAIL,
                "not measured",
                "needs at least two steps with a finite loss",
            )
        )
    else:
        first, last = losses[0], losses[-1]
        change = (last - first) / abs(first) * 100 if first else float("-inf")
        checks.append(
            Check(
                "loss-decreases",
                _status(last < first),
                f"{first:.4f} -> {last:.4f} ({change:+.1f}%)",
                "" if last < first else "the loss did not go down over the run",
            )
        )
    return checks


def performance_checks(record: dict) -> List[Check]:
    """Step time and peak memory: measurements, never failures."""
    times = [s["time_s"] for s in record.get("steps", []) if s.get("time_s") is not None]
    later = sorted(times[1:]) or times
    median = later[len(later) // 2] if later else None
    value = (
        f"median {median * 1000:.1f} ms over {len(later)} steps after the first "
        f"(first {times[0] * 1000:.1f} ms) on {record.get('device', '?')}"
        if times
        else "no steps"
    )
    memory = record.get("memory") or {}
    cuda = memory.get("peak_cuda_bytes")
    mem = f"peak CUDA allocated {_mib(cuda)}, " if cuda is not None else ""
    mem += f"peak process RSS {_mib(memory.get('peak_rss_bytes'))}"
    return [
        Check("step-time", INFO, value, data={"times_s": times, "median_s": median}),
        Check("peak-memory", INFO, mem, data=memory),
    ]


def _mib(n: Optional[int]) -> str:
    return "n/a" if n is None else f"{n / 2**20:.0f} MiB"


def untrained_warnings(record: dict) -> List[Check]:
    return [
        Check(
            "untrained-statistics",
            WARN,
            f"{path}: running_mean all 0, running_var all 1, num_batches_tracked 0",
            UNTRAINED_HINT,
            {"layer": path},
        )
        for path in record.get("untrained_batchnorm", [])
    ]


def checkpoint_loaded_check(comparison: Optional[dict]) -> Check:
    """At the first step the model holds exactly the checkpoint it was told to load."""
    if comparison is None:
        return Check(
            "checkpoint-loaded",
            FAIL,
            "not measured",
            "the harness had no checkpoint to compare with",
        )
    if comparison.get("error"):
        return Check(
            "checkpoint-loaded", FAIL, comparison["error"], "the checkpoint could not be read back"
        )
    problems = {
        k: comparison[k]
        for k in ("missing", "unexpected", "shape_mismatch", "different")
        if comparison[k]
    }
    value = (
        f"{comparison['compared'] - len(comparison['different'])} of {comparison['compared']} tensors "
        f"bit-identical to the checkpoint at the first step; "
        + ", ".join(
            f"{len(comparison[k])} {k.replace('_', ' ')}"
            for k in ("missing", "unexpected", "shape_mismatch")
        )
    )
    message = "; ".join(f"{k.replace('_', ' ')}: {preview(v)}" for k, v in problems.items())
    return Check("checkpoint-loaded", _status(not problems), value, message, comparison)


def record_checks(
    record: dict, before: Optional[dict] = None, expect_checkpoint: bool = False
) -> List[Check]:
    """Every runtime check for one recorded run, in report order.

    ``before`` is the census of the original (unconverted) model when there is one (the demo);
    ``expect_checkpoint`` adds the check that the run started from the checkpoint it was given.
    """
    failed = run_check(record)
    checks = [failed] if failed else []
    if "census" not in record:
        return checks or [
            Check("train-script", FAIL, "no record", "the run produced no measurements")
        ]
    checks += norm_checks(record["census"], before)
    checks += frozen_checks(record)
    checks.append(
        unchanged_check(
            "backbone-statistics",
            record["backbone_buffers"],
            "running_mean/running_var/num_batches_tracked tensors",
        )
    )
    checks.append(
        unchanged_check("backbone-affine", record["backbone_affine"], "weight/bias tensors")
    )
    checks.append(groupnorm_trained_check(record["groupnorm_change"]))
    if expect_checkpoint:
        checks.append(checkpoint_loaded_check(record.get("checkpoint")))
    checks += loss_checks(record["steps"])
    checks += untrained_warnings(record)
    checks += performance_checks(record)
    return checks
