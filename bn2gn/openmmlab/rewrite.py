"""``bn2gn config rewrite``: fix the user's own config file with LibCST; ``_base_`` files only with allow_base.

Each step re-resolves the config (with the edits so far) and works from the same facts the
audit reports, so ``--freeze`` then ``--fix-lr-mult`` sees the freezing it just wrote. Values set
by bn2gn go into the user's file, where mmengine's merge makes them override the bases.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import libcst as cst

from ..checkpoint.renames import RenameRule
from ..core.errors import EXIT_USAGE, Bn2gnError, Opt, message_text
from ..core.file_results import FileResult, finish
from ..core.source_files import read_source
from .checks import all_findings, gn_caveat, invalid_keys, lr_mult_zero
from .components import gn_groups
from .cst_edit import Add, AppendStatement, Edit, EditError, Remove, SetValue, Target, apply_edits
from .findings import Code
from .model import (
    MMENGINE,
    Component,
    components,
    detect_stack,
    is_batchnorm,
    optimizer_settings,
)
from .plugins import Catalog, open_catalog
from .resolve import ResolvedConfig, resolve_config
from .values import CfgDict


@dataclasses.dataclass(frozen=True)
class RewriteOptions:
    freeze: Tuple[str, ...] = ()
    gn: Tuple[str, ...] = ()
    drop_invalid_keys: bool = False
    fix_lr_mult: bool = False
    allow_base: bool = False
    plugin_dirs: Tuple[Path, ...] = ()

    @property
    def anything(self) -> bool:
        return bool(self.freeze or self.gn or self.drop_invalid_keys or self.fix_lr_mult)


@dataclasses.dataclass
class ConfigRewrite:
    results: List[FileResult]
    changes: List[str]
    notes: List[str]
    refused: List[str]
    renames: List[RenameRule]
    remaining: List[str]


class _State:
    """The texts edited so far and the config they resolve to."""

    def __init__(self, path: Path, options: RewriteOptions):
        self.path = Path(path)
        self.options = options
        self.texts: Dict[Path, str] = {}
        self.changes: List[str] = []
        self.notes: List[str] = []
        self.refused: List[str] = []
        self.renames: List[RenameRule] = []
        self.catalogs: Dict[Tuple[str, str, str], Catalog] = {}
        self.catalog: Optional[Catalog] = None

    def resolve(self) -> Tuple[ResolvedConfig, List[Component], str]:
        cfg = resolve_config(self.path, {p.resolve(): t for p, t in self.texts.items()})
        if not isinstance(cfg.data.get("model"), dict):
            raise Bn2gnError(
                f"{self.path}:1: no model = dict(...) in this config or its _base_ files",
                EXIT_USAGE,
            )
        stack = detect_stack(cfg)
        # the sources do not change while the config is edited: one catalog per plugin setting
        setting = (repr(cfg.data.get("plugin_dir")), repr(cfg.data.get("custom_imports")), stack)
        if setting not in self.catalogs:
            self.catalogs[setting] = open_catalog(
                self.path, cfg.data, self.options.plugin_dirs, stack == MMENGINE
            )
        self.catalog = self.catalogs[setting]
        return cfg, components(cfg, self.catalog), stack

    def editable(self, file: Path) -> bool:
        return Path(file).resolve() == self.path.resolve() or self.options.allow_base

    def apply(self, edits: Dict[Path, List[Edit]]) -> None:
        for file, items in edits.items():
            if not items:
                continue
            text = self.texts.get(file, read_source(file).text)
            try:
                self.texts[file] = apply_edits(text, items)
            except EditError as exc:
                self.refused.append(f"{file}:{exc.line}: {exc.reason}")
            except cst.ParserSyntaxError as exc:
                self.refused.append(
                    f"{file}:{exc.raw_line}: LibCST cannot parse it ({exc.message}); "
                    "file left unchanged"
                )


def rewrite_config(path: Path, options: RewriteOptions) -> ConfigRewrite:
    state = _State(path, options)
    if options.drop_invalid_keys:
        _drop_invalid(state)
    for name in options.freeze:
        _freeze(state, name)
    for name in options.gn:
        _group_norm(state, name)
    if options.fix_lr_mult:
        _fix_lr_mult(state)
    cfg, comps, stack = state.resolve()
    paramwise, _, clip = optimizer_settings(cfg, stack)
    remaining = [
        f.render()
        for f in all_findings(cfg, comps, stack, paramwise, clip, state.catalog)
        if f.severity == "error"
    ]
    results = []
    for file, text in state.texts.items():
        results.append(finish(read_source(file), text, []))
    return ConfigRewrite(
        results=results,
        changes=state.changes,
        notes=state.notes,
        refused=state.refused,
        renames=state.renames,
        remaining=remaining,
    )


def _component(state: _State, comps: List[Component], name: str) -> Component:
    wanted = name[len("model.") :] if name.startswith("model.") else name
    for comp in comps:
        if comp.key == wanted:
            return comp
    have = ", ".join(c.key for c in comps) or "none"
    raise Bn2gnError(
        f"{state.path}: no component {name!r} in model (components: {have})", EXIT_USAGE
    )


def _drop_invalid(state: _State) -> None:
    cfg, comps, _ = state.resolve()
    edits: Dict[Path, List[Edit]] = {}
    for finding in invalid_keys(cfg, comps):
        if finding.file is None or not finding.line:
            continue
        if not state.editable(finding.file):
            state.notes.append(
                message_text(
                    f"{finding.file}:{finding.line}: {finding.component}.{finding.key} is written "
                    "in a _base_ file; remove it there or run with ",
                    Opt("allow_base"),
                )
            )
            continue
        edits.setdefault(Path(finding.file), []).append(Remove(Target(finding.key, finding.line)))
        state.changes.append(
            f"{finding.file}:{finding.line}: removed {finding.component}.{finding.key} "
            f"({finding.code.name})"
        )
    state.apply(edits)


def _freeze(state: _State, name: str) -> None:
    cfg, comps, stack = state.resolve()
    comp = _component(state, comps, name)
    if comp.cls is None:
        state.refused.append(
            f"{comp.path}: type {comp.type!r} is unknown to bn2gn; cannot freeze it from the config"
        )
        return
    count = comp.cls.stage_count(comp.cfg)
    if not count:
        state.notes.append(
            f"{comp.path}: {comp.cls.name} has no frozen_stages / norm_eval; freeze it in code "
            "(requires_grad=False and eval() after every train(), e.g. bn2gn patch-trainer)"
        )
        return
    wanted = [("frozen_stages", count)] + ([("norm_eval", True)] if comp.cls.has_norm_eval else [])
    _set_values(state, cfg, comp, wanted)
    if comp.cls.freeze_runs and comp.cls.freeze_runs[0] != "__init__":
        state.notes.append(
            f"{comp.path}: {comp.cls.name} freezes only in {comp.cls.freeze_runs[0]} "
            f"(see MMC008 in bn2gn config audit)"
        )


def _set_values(
    state: _State, cfg: ResolvedConfig, comp: Component, wanted: List[Tuple[str, object]]
) -> None:
    """Set keys of ``comp`` in the user's file: replace what it writes, add what it does not."""
    edits: List[Edit] = []
    additions = []
    for key, value in wanted:
        code = value if isinstance(value, str) and value.startswith("dict(") else repr(value)
        origin = comp.cfg.origin(key)
        if key in comp.cfg and _same(comp.cfg[key], value):
            continue
        if origin is not None and cfg.is_own(origin):
            edits.append(SetValue(Target(key, origin.line), code))
        else:
            additions.append((key, code))
        state.changes.append(f"{state.path}: {comp.path}.{key} = {code}")
    model_origin = cfg.data.origin("model")
    if additions:
        comp_origin = comp.origin
        if comp_origin is not None and cfg.is_own(comp_origin):
            edits.append(Add(Target(comp.key, comp_origin.line), tuple(additions)))
        else:
            inner = "dict(" + ", ".join(f"{k}={c}" for k, c in additions) + ")"
            if model_origin is not None and cfg.is_own(model_origin):
                edits.append(
                    Add(Target("model", model_origin.line, top=True), ((comp.key, inner),))
                )
            else:
                edits.append(AppendStatement(f"model = dict({comp.key}={inner})\n"))
    state.apply({state.path: edits})


def _same(current: object, wanted: object) -> bool:
    if isinstance(wanted, str) and wanted.startswith("dict("):
        return False
    return type(current) is type(wanted) and current == wanted


def _group_norm(state: _State, name: str) -> None:
    cfg, comps, _ = state.resolve()
    comp = _component(state, comps, name)
    cls = comp.cls
    if cls is None:
        state.refused.append(
            f"{comp.path}: type {comp.type!r} is unknown to bn2gn; cannot set GroupNorm"
        )
        return
    if cls.role == "backbone":
        state.refused.append(
            message_text(
                f"{comp.path}: {cls.name} is a backbone: its BatchNorm stays (frozen) to match the "
                "pretrained statistics; ",
                Opt("gn"),
                " is for necks and heads",
            )
        )
        return
    norm_cfg, _ = comp.norm()
    settable = ("norm_cfg" in comp.cfg or cls.norm_default is not None) and cls.gn_from_config
    hard_coded = (
        f"{cls.name} hard-codes BatchNorm in {', '.join(cls.hard_coded_bn)} ({cls.source}); "
        "only a source rewrite changes it (bn2gn rewrite)"
    )
    if not settable:
        # nothing the config can say converts it: the operation asked for cannot be done
        state.refused.append(
            f"{comp.path}: {hard_coded}"
            if cls.hard_coded_bn
            else f"{comp.path}: {cls.name} has no GroupNorm setting in its config"
        )
        return
    if cls.hard_coded_bn:
        # norm_cfg converts part of it; the hard-coded layers stay BatchNorm
        state.notes.append(f"{comp.path}: norm_cfg is converted, but {hard_coded}")
    channels = cls.norm_channels(comp.cfg)
    groups = sorted({gn_groups(c) for c in channels})
    if len(groups) != 1:
        detail = (
            ", ".join(f"C={c} -> {gn_groups(c)}" for c in dict.fromkeys(channels))
            or "channel counts unknown"
        )
        state.refused.append(
            f"{comp.path}: one norm_cfg cannot serve these channel counts ({detail}); "
            "set num_groups by hand to a divisor of every count"
        )
        return
    if (
        isinstance(norm_cfg, dict)
        and norm_cfg.get("type") == "GN"
        and norm_cfg.get("num_groups") == groups[0]
    ):
        return
    if not is_batchnorm(norm_cfg) and norm_cfg is not None:
        state.refused.append(
            f"{comp.path}: norm_cfg is {norm_cfg!r}, not BatchNorm; nothing to convert"
        )
        return
    inherited = (
        isinstance(norm_cfg, CfgDict)
        and "norm_cfg" in comp.cfg
        and any(not cfg.is_own(norm_cfg.origin(k)) for k in norm_cfg)
    )
    prefix = "_delete_=True, " if inherited else ""
    _set_values(
        state,
        cfg,
        comp,
        [("norm_cfg", f"dict({prefix}type='GN', num_groups={groups[0]}, requires_grad=True)")],
    )
    state.renames.extend(_renames(comp))
    paramwise, _, _ = optimizer_settings(cfg, detect_stack(cfg))
    caveat = gn_caveat(cfg, comp, paramwise)
    if caveat:
        state.notes.append(f"{comp.path}: {caveat[len('; caveat: ') :]}")


def _renames(comp: Component) -> List[RenameRule]:
    cls = comp.cls
    prefixes = sorted({pattern.split("{")[0] for pattern in cls.norm_layers}) or [""]
    if cls.norm_naming == "indexed":
        return [RenameRule(prefix=f"{comp.key}.{p}", old=None, new=None) for p in prefixes]
    return [RenameRule(prefix=f"{comp.key}.{p}", old="bn", new="gn") for p in prefixes]


def _fix_lr_mult(state: _State) -> None:
    cfg, comps, stack = state.resolve()
    paramwise, _, clip = optimizer_settings(cfg, stack)
    edits: Dict[Path, List[Edit]] = {}
    for finding in lr_mult_zero(cfg, comps, stack, paramwise, clip):
        if finding.code is not Code.MMC004 or "fully frozen" not in finding.message:
            continue
        if finding.file is None or not finding.line:
            continue
        if not state.editable(finding.file):
            state.notes.append(
                message_text(
                    f"{finding.file}:{finding.line}: lr_mult=0 for {finding.key} is written in a "
                    "_base_ file; remove it there or run with ",
                    Opt("allow_base"),
                )
            )
            continue
        entry = finding.key[len("custom_keys.") :]
        edits.setdefault(Path(finding.file), []).append(
            Remove(Target("lr_mult", finding.line, parent=entry))
        )
        state.changes.append(
            f"{finding.file}:{finding.line}: removed lr_mult=0 from {finding.key} (MMC004)"
        )
    state.apply(edits)
    _note_inherited_entries(state, [e.target.parent for items in edits.values() for e in items])


def _note_inherited_entries(state: _State, entries: List[str]) -> None:
    """A custom key the user's file no longer sets may still come from a _base_ file: say what applies now."""
    if not entries:
        return
    cfg, _, stack = state.resolve()
    paramwise, _, _ = optimizer_settings(cfg, stack)
    keys = paramwise.get("custom_keys") if isinstance(paramwise, dict) else None
    for entry in entries:
        value = keys.get(entry) if isinstance(keys, dict) else None
        if isinstance(value, dict):
            state.notes.append(
                f"custom_keys['{entry}'] is now {dict(value)} from the _base_ files; harmless, "
                "the parameters are frozen"
            )


def files_touched(rewrite: ConfigRewrite) -> Sequence[Path]:
    return [r.path for r in rewrite.results if r.status == "changed"]


__all__ = ["ConfigRewrite", "RewriteOptions", "files_touched", "rewrite_config"]
