"""What `scan --trace` says besides the plan (issue 7): untrained backbone statistics, stubs, differences.

Freezing a backbone BatchNorm whose running statistics were never trained (running_mean 0,
running_var 1, num_batches_tracked 0) pins an untrained normalisation, so the trace checks them
after the factory ran and, with ``--checkpoint``, after the checkpoint's values are applied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import List, Optional

from ..config import Config
from ..errors import Opt, message_text
from .trace import TraceReport, show

PREFIX = "module."


def check_statistics(
    model, config: Config, report: TraceReport, checkpoint=None, load_options=None
) -> None:
    from .backbone import backbone_attrs_of

    config = dataclasses.replace(
        config, backbone_attrs=backbone_attrs_of(config.backbone_attrs, report.plan.backbones)
    )
    after_factory = untrained_backbone_batchnorm(model, config)
    if checkpoint is None:
        if after_factory:
            report.warnings.append(
                f"{len(after_factory)} backbone BatchNorm layer(s) still have untrained statistics after the factory "
                f"ran (running_mean 0, running_var 1, num_batches_tracked 0): {show(after_factory)}; freezing them "
                "pins an untrained normalisation: load pretrained backbone weights, or check your checkpoint with "
                + message_text(Opt("checkpoint", "FILE"))
            )
        return
    state = checkpoint_state(checkpoint, load_options)
    after_checkpoint = untrained_backbone_batchnorm(model, config, state)
    if after_factory:
        report.notes.append(
            f"{len(after_factory)} backbone BatchNorm layer(s) were untrained after the factory; "
            f"{len(after_factory) - len(after_checkpoint)} get trained statistics from {checkpoint}"
        )
    if after_checkpoint:
        absent = [name for name in after_checkpoint if f"{name}.running_mean" not in state]
        why = f" ({len(absent)} of them have no entry in the checkpoint)" if absent else ""
        report.warnings.append(
            f"{len(after_checkpoint)} backbone BatchNorm layer(s) still have untrained statistics after loading "
            f"{checkpoint}{why}: {show(after_checkpoint)}; freezing them pins an untrained normalisation"
        )


def untrained_backbone_batchnorm(
    model, config: Config, state: Optional[Mapping] = None
) -> List[str]:
    """Backbone BatchNorm paths whose statistics are the untouched defaults (``state`` overriding the model's)."""
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.parameter import is_lazy

    from ..runtime import backbone_modules

    found = []
    for name, module in backbone_modules(model, config.backbone_attrs):
        if not (isinstance(module, _BatchNorm) and module.track_running_stats):
            continue
        stats = [
            _value(state, name, leaf, getattr(module, leaf, None))
            for leaf in ("running_mean", "running_var", "num_batches_tracked")
        ]
        if any(t is None or is_lazy(t) for t in stats[:2]):
            continue
        mean, var, count = stats
        if (
            bool((mean == 0).all())
            and bool((var == 1).all())
            and (count is None or int(count) == 0)
        ):
            found.append(name)
    return found


def _value(state: Optional[Mapping], name: str, leaf: str, default):
    if state is not None and f"{name}.{leaf}" in state:
        return state[f"{name}.{leaf}"]
    return default


def checkpoint_state(path, load_options=None) -> Mapping:
    """The model state dict inside a checkpoint, DataParallel's ``module.`` prefix stripped."""
    from ..checkpoint.load import LoadOptions, find_state_dicts, load_checkpoint

    loaded = load_checkpoint(path, load_options or LoadOptions())
    keys = find_state_dicts(loaded.content, loaded.path)
    state = loaded.content[keys[0]] if keys else loaded.content
    if state and all(k.startswith(PREFIX) for k in state):
        state = {k[len(PREFIX) :]: v for k, v in state.items()}
    return state


def render_trace_text(report: TraceReport) -> List[str]:
    """The trace section printed after the plan: what was built, stubs, differences, untracked instances."""
    lines = [
        f"trace: built {report.model} on CPU: {report.instances} BatchNorm instance(s); "
        f"{report.executed} of {len(report.plan.sites)} site(s) executed"
    ]
    for name, used in report.stubs.items():
        what = f"stood in for {', '.join(used)}" if used else "never imported by the build"
        lines.append(f"trace: stub {name}: {what}")
    if report.differences:
        lines.append(f"trace: {len(report.differences)} decision(s) differ from the static plan:")
    else:
        lines.append("trace: every decision agrees with the static plan")
    for static, traced in report.differences:
        lines.append(
            f"  {static.location}: {static.scope}: static {static.decision} ({static.reason}) "
            f"-> traced {traced.decision} ({traced.reason})"
        )
    for item in report.untracked:
        lines.append(
            f"untracked: {item.location}: {item.op} built by a call that is not a BatchNorm site bn2gn "
            f"rewrites (a callable, a partial, or code outside the scanned files): {show(item.module_paths)}"
        )
    lines.extend(f"note: {note}" for note in report.notes)
    return lines
