"""``bn2gn config audit``: the effective config, per component, and the findings; read-only."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from ..core.errors import SourceError
from .checks import all_findings, detector_modules, keys_origin, keys_unchecked, summary
from .components import frozen_stages_meaning, gn_groups
from .findings import ERROR, Code, Finding
from .model import (
    MMENGINE,
    STACK_NAMES,
    Component,
    components,
    custom_keys,
    detect_stack,
    freeze_state,
    is_batchnorm,
    key_for_component,
    module_rates,
    optimizer_settings,
)
from .plugins import open_catalog
from .resolve import ResolvedConfig, resolve_config


@dataclasses.dataclass
class ComponentSummary:
    """What the report says about one component (also the JSON shape)."""

    component: str
    type: Any
    defined_at: str
    known_as: str
    norm: str
    norm_from: str
    norm_eval: Optional[str]
    frozen_stages: Optional[str]
    frozen_when: str
    lr: Optional[str]
    groupnorm: Optional[str]
    facts: Dict[str, str] = dataclasses.field(default_factory=dict)
    #: module -> the rate its parameters train at after custom_keys matching
    rates: Dict[str, str] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class AuditReport:
    config: Path
    stack: str
    resolver: str
    files: List[Path]
    plugin_dirs: List[Path]
    components: List[ComponentSummary]
    findings: List[Finding]
    notes: List[str]
    assumed: List[str] = dataclasses.field(default_factory=list)

    @property
    def has_errors(self) -> bool:
        return any(f.severity == ERROR for f in self.findings)

    @property
    def has_unknown(self) -> bool:
        return any(f.code is Code.MMC011 for f in self.findings)

    def as_dict(self) -> dict:
        return {
            "config": str(self.config),
            "stack": self.stack,
            "resolver": self.resolver,
            "files": [str(f) for f in self.files],
            "plugin_dirs": [str(p) for p in self.plugin_dirs],
            "components": [c.as_dict() for c in self.components],
            "findings": [f.as_dict() for f in self.findings],
            "summary": summary(self.findings),
            "notes": list(self.notes),
            "assumed": list(self.assumed),
        }


def load(path: Path, resolver: str = "static") -> ResolvedConfig:
    if resolver == "mmengine":
        from .mmengine_resolver import resolve_with_mmengine

        cfg = resolve_with_mmengine(path)
    else:
        cfg = resolve_config(path)
    model = cfg.data.get("model")
    if not isinstance(model, dict):
        raise SourceError(
            path,
            1,
            "no model = dict(...) in this config or its _base_ files; "
            "is this an OpenMMLab model config?",
        )
    return cfg


def audit(path: Path, resolver: str = "static", plugin_dirs: Sequence[Path] = ()) -> AuditReport:
    cfg = load(path, resolver)
    stack = detect_stack(cfg)
    catalog = open_catalog(Path(path), cfg.data, plugin_dirs, stack == MMENGINE)
    comps = components(cfg, catalog)
    paramwise, _, clip = optimizer_settings(cfg, stack)
    notes = []
    if isinstance(cfg.data.get("custom_imports"), dict):
        imports = cfg.data["custom_imports"].get("imports")
        where = ", ".join(str(p) for p in catalog.custom_imports)
        notes.append(
            f"custom_imports {imports!r} are not imported: their classes are read from {where}"
            if where
            else f"custom_imports {imports!r} are not imported and not found above the config: "
            "their classes are read from the installed packages or reported as unknown"
        )
    findings = all_findings(cfg, comps, stack, paramwise, clip, catalog)
    unchecked = keys_unchecked(cfg, comps, paramwise)
    if unchecked:
        notes.append(
            f"custom keys not checked: {', '.join(repr(k) for k in unchecked)} may name parameters "
            f"inside {', '.join(detector_modules(cfg))}, which the detector builds itself"
        )
    return AuditReport(
        config=Path(path),
        stack=stack,
        resolver=cfg.resolver,
        files=list(cfg.files),
        plugin_dirs=list(catalog.plugin_dirs),
        components=[describe(c, stack, paramwise) for c in comps],
        findings=findings,
        notes=notes + catalog.notes,
        assumed=list(catalog.assumed),
    )


def describe(comp: Component, stack: str, paramwise) -> ComponentSummary:
    norm_cfg, norm_from = comp.norm()
    cls = comp.cls
    norm = _norm_text(norm_cfg)
    norm_eval = comp.norm_eval()
    eval_text = None
    if norm_eval is not None:
        where = comp.cfg.origin("norm_eval") or "class default"
        eval_text = f"{norm_eval} ({where})"
    fs_text = None
    if cls is not None and cls.stages(comp.cfg):
        value = comp.frozen_stages()
        where = comp.cfg.origin("frozen_stages") or "class default"
        fs_text = f"{value}: {frozen_stages_meaning(cls, comp.cfg, value if value is not None else -1)} ({where})"
    state = freeze_state(comp, stack)
    keys = custom_keys(paramwise)
    key = key_for_component(keys, comp)
    lr_text = None
    if key is not None:
        entry = keys[key]
        parts = [
            f"{k}={entry[k]!r} ({entry.origin(k) if hasattr(entry, 'origin') else ''})"
            for k in entry
        ]
        lr_text = f"'{key}': " + ", ".join(parts)
    gn_text = None
    if cls is not None and cls.role != "backbone" and is_batchnorm(norm_cfg):
        channels = cls.norm_channels(comp.cfg)
        gn_text = (
            ", ".join(f"C={c}: {gn_groups(c)} groups" for c in dict.fromkeys(channels))
            or "channels unknown"
        )
    return ComponentSummary(
        component=comp.path,
        type=comp.type,
        defined_at=str(comp.origin or ""),
        known_as=f"{cls.name} ({cls.package}, {cls.source})" if cls else "unknown type",
        norm=norm,
        norm_from=norm_from,
        norm_eval=eval_text,
        frozen_stages=fs_text,
        frozen_when=state.when,
        lr=lr_text,
        groupnorm=gn_text,
        facts=dict(cls.facts) if cls else {},
        rates=dict(module_rates(keys, comp)),
    )


def _norm_text(norm_cfg: Any) -> str:
    if norm_cfg is None:
        return "none"
    if isinstance(norm_cfg, dict):
        return "dict(" + ", ".join(f"{k}={v!r}" for k, v in norm_cfg.items()) + ")"
    return repr(norm_cfg)


def render_text(report: AuditReport, verbose: bool = False) -> List[str]:
    lines = [
        f"{report.config}: {STACK_NAMES[report.stack]}; resolved by {report.resolver} "
        f"from {len(report.files)} file(s)"
    ]
    for comp in report.components:
        lines.append(f"  {comp.component}: {comp.type} - {comp.known_as}")
        if comp.norm_from != "unknown":
            lines.append(f"    norm: {comp.norm} from {comp.norm_from}")
        for label, value in (
            ("norm_eval", comp.norm_eval),
            ("frozen_stages", comp.frozen_stages),
            ("lr", comp.lr),
            ("GroupNorm", comp.groupnorm),
        ):
            if value:
                lines.append(f"    {label}: {value}")
        if len(comp.rates) > 1:  # one rate for everything is the lr line already
            lines.append(
                "    lr by module: " + "; ".join(f"{m}: {r}" for m, r in comp.rates.items())
            )
        for fact, where in comp.facts.items():
            lines.append(f"    {fact} from: {where}")
        if (
            comp.frozen_when not in ("nothing frozen", "the class has no freezing", "unknown class")
            or verbose
        ):
            lines.append(f"    freezing runs: {comp.frozen_when}")
    for line in report.assumed:
        lines.append(f"  assumed: {line}")
    for note in report.notes:
        lines.append(f"  note: {note}")
    for finding in report.findings:
        lines.append(finding.render())
    counts = summary(report.findings)
    lines.append(
        f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} info"
    )
    return lines


__all__ = [
    "AuditReport",
    "ComponentSummary",
    "audit",
    "describe",
    "keys_origin",
    "load",
    "render_text",
]
