"""The trace's result, and what `scan --trace` says besides the plan: untrained backbone
statistics, stubs, differences. The engine builds a TraceReport; this module needs nothing from it.

Freezing a backbone BatchNorm whose running statistics were never trained (running_mean 0,
running_var 1, num_batches_tracked 0) pins an untrained normalisation, so the trace checks them
after the factory ran and, with ``--checkpoint``, after the checkpoint's values are applied.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..core.errors import Opt, message_text
from ..core.settings import Config
from ..model.bn_statistics import untrained_backbone_batchnorms
from ..model.checkpoint_load import LoadOptions, model_state_dict
from .backbone import Backbone
from .plan import Plan, Site

SHOWN = 4  # module paths quoted in one reason


@dataclasses.dataclass
class Untracked:
    """Instances built by a call that is not a static site (a callable, a partial, code outside the scan)."""

    location: str
    op: str
    module_paths: List[str]

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class TraceReport:
    plan: Plan
    model: str
    instances: int = 0
    executed: int = 0
    differences: List[Tuple[Site, Site]] = dataclasses.field(default_factory=list)
    untracked: List[Untracked] = dataclasses.field(default_factory=list)
    stubs: Dict[str, Tuple[str, ...]] = dataclasses.field(default_factory=dict)
    warnings: List[str] = dataclasses.field(default_factory=list)
    notes: List[str] = dataclasses.field(default_factory=list)
    build: Optional[Any] = None  # bn2gn.model.spec.Build: stand-ins and weights of the build

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "instances": self.instances,
            "sites_executed": self.executed,
            "stubs": {name: list(used) for name, used in self.stubs.items()},
            "build": self.build.as_dict() if self.build is not None else None,
            "differences": [
                {
                    "location": s.location,
                    "static": {"decision": s.decision, "reason": s.reason},
                    "traced": {"decision": t.decision, "reason": t.reason},
                }
                for s, t in self.differences
            ],
            "untracked": [u.as_dict() for u in self.untracked],
            "warnings": self.warnings,
            "notes": self.notes,
        }


def show(paths: Sequence[str]) -> str:
    listed = ", ".join(paths[:SHOWN])
    return f"({listed}, ... {len(paths) - SHOWN} more)" if len(paths) > SHOWN else f"({listed})"


def check_statistics(
    model, config: Config, report: TraceReport, checkpoint=None, load_options=None
) -> None:
    """Warn about backbone BatchNorm still untrained after the factory, and after ``checkpoint``."""
    attrs = Backbone.decided(config.backbone_names, report.plan.backbones).spellings
    after_factory = untrained_backbone_batchnorms(model, attrs)
    missing = report.build.weights.missing if report.build is not None else []
    if checkpoint is None and after_factory and missing:
        report.notes.append(
            f"pretrained statistics not available offline: {len(after_factory)} backbone BatchNorm "
            f"layer(s) keep their initial statistics because {', '.join(missing)} is not in the torch "
            "hub cache; give the pretrained weights with " + message_text(Opt("checkpoint", "FILE"))
        )
        return
    if checkpoint is None:
        if after_factory:
            report.warnings.append(
                f"{len(after_factory)} backbone BatchNorm layer(s) still have untrained statistics after the factory "
                f"ran (running_mean 0, running_var 1, num_batches_tracked 0): {show(after_factory)}; freezing them "
                "pins an untrained normalisation: load pretrained backbone weights, or check your checkpoint with "
                + message_text(Opt("checkpoint", "FILE"))
            )
        return
    state = model_state_dict(checkpoint, load_options or LoadOptions())
    after_checkpoint = untrained_backbone_batchnorms(model, attrs, state)
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


def render_trace_text(report: TraceReport) -> List[str]:
    """The trace section printed after the plan: what was built, stubs, differences, untracked instances."""
    lines = [
        f"trace: built {report.model} on CPU: {report.instances} BatchNorm instance(s); "
        f"{report.executed} of {len(report.plan.sites)} site(s) executed"
    ]
    lines += [f"trace: {note}" for note in (report.build.notes() if report.build else ())]
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
