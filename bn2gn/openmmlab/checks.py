"""The audit rules: each function reads the resolved model and returns findings (facts: docs/commands/config.md)."""

from __future__ import annotations

import difflib
import re
from typing import Any, Dict, Iterable, List, Optional, Tuple

from ..core.errors import Opt, message_text
from .components import gn_groups
from .findings import ERROR, INFO, WARNING, Code, Finding
from .model import (
    MMCV1,
    MMENGINE,
    Component,
    custom_keys,
    freeze_state,
    is_batchnorm,
    key_for_component,
    ordered_keys,
)
from .resolve import ResolvedConfig
from .values import CfgDict, Origin

#: mmcv 1.6 runner hooks (mmcv/runner/hooks/optimizer.py) and mmengine 0.10 optimizer wrappers
HOOK_ARGS = {
    "OptimizerHook": {"grad_clip", "detect_anomalous_params"},
    "Fp16OptimizerHook": {"grad_clip", "coalesce", "bucket_size_mb", "loss_scale", "distributed"},
    "GradientCumulativeOptimizerHook": {"grad_clip", "detect_anomalous_params", "cumulative_iters"},
    "GradientCumulativeFp16OptimizerHook": {
        "grad_clip",
        "coalesce",
        "bucket_size_mb",
        "loss_scale",
        "distributed",
        "cumulative_iters",
    },
}
WRAPPER_ARGS = {
    "OptimWrapper": {"optimizer", "accumulative_counts", "clip_grad"},
    "AmpOptimWrapper": {
        "optimizer",
        "accumulative_counts",
        "clip_grad",
        "loss_scale",
        "dtype",
        "use_fsdp",
    },
}
#: popped by mmengine's build_optim_wrapper / the constructor before the wrapper is built
WRAPPER_CONSUMED = {"type", "constructor", "paramwise_cfg"}
_FREEZE_KEYS = ("frozen_stages", "norm_eval", "norm_cfg")


def _at(origin: Optional[Origin]) -> Tuple[Any, int]:
    return (origin.file, origin.line) if origin else (None, 0)


def _finding(
    code: Code, severity: str, component: str, key: str, origin: Optional[Origin], message: str
) -> Finding:
    file, line = _at(origin)
    return Finding(code, severity, component, key, file, line, message)


def _inherited(cfg: ResolvedConfig, origin: Optional[Origin]) -> str:
    return f" (inherited from {origin})" if origin is not None and not cfg.is_own(origin) else ""


def invalid_keys(cfg: ResolvedConfig, comps: List[Component]) -> List[Finding]:
    """MMC001: keys ``__init__`` does not take; the model fails to build with a TypeError."""
    out = []
    for comp in comps:
        if comp.cls is None:
            continue
        for key in comp.cfg:
            if key in ("type", "_scope_", "_delete_"):
                continue
            accepted = key not in comp.cls.rejects and (
                comp.cls.accepts is None or key in comp.cls.accepts
            )
            if accepted or (key not in comp.cls.rejects and comp.cls.extra != "reject"):
                continue  # **kwargs take it: ignored_keys says what happens to it
            origin = comp.cfg.origin(key)
            hint = ""
            if key == "norm_eval":
                hint = (
                    f"; {comp.cls.name} has no norm_eval"
                    if comp.cls.role == "backbone"
                    else "; only backbones have norm_eval"
                )
            elif key == "frozen_stages":
                hint = f"; {comp.cls.name} has no freezing of its own"
            out.append(
                _finding(
                    Code.MMC001,
                    ERROR,
                    comp.path,
                    key,
                    origin,
                    f"{comp.cls.name} does not accept {key}={comp.cfg[key]!r}: building the model "
                    f"raises TypeError (unexpected keyword argument '{key}'){hint}"
                    f"{_inherited(cfg, origin)}",
                )
            )
    return out


def ignored_keys(cfg: ResolvedConfig, comps: List[Component]) -> List[Finding]:
    """MMC012: a key only ``**kwargs`` takes, which the class neither stores nor passes on."""
    out = []
    for comp in comps:
        cls = comp.cls
        if cls is None or cls.extra != "ignore" or cls.accepts is None:
            continue
        for key in comp.cfg:
            if key in ("type", "_scope_", "_delete_") or key in cls.accepts:
                continue
            origin = comp.cfg.origin(key)
            out.append(
                _finding(
                    Code.MMC012,
                    WARNING,
                    comp.path,
                    key,
                    origin,
                    f"accepted and ignored: this setting does nothing. {cls.name} takes "
                    f"{key}={comp.cfg[key]!r} through **kwargs, which {cls.ignored_by} neither "
                    f"stores nor passes on{_inherited(cfg, origin)}",
                )
            )
    return out


def stage_range(cfg: ResolvedConfig, comps: List[Component]) -> List[Finding]:
    """MMC002: ``frozen_stages`` above the stage count fails where the freezing runs."""
    out = []
    for comp in comps:
        if comp.cls is None or "frozen_stages" not in comp.cfg or not comp.cls.stages(comp.cfg):
            continue
        value, count = comp.frozen_stages(), comp.cls.stage_count(comp.cfg)
        if value is None or value <= count:
            continue
        stage = comp.cls.stages(comp.cfg)[-1].rstrip("0123456789") + str(value)
        where = {
            "__init__": "at build (AttributeError: no attribute '" + stage + "')",
            "train()": "in train() (IndexError: stages has only " + str(count) + " entries)",
            "init_weights()": "in init_weights() (no attribute '" + stage + "')",
        }[comp.cls.freeze_runs[0]]
        out.append(
            _finding(
                Code.MMC002,
                ERROR,
                comp.path,
                "frozen_stages",
                comp.cfg.origin("frozen_stages"),
                f"{comp.cls.name} has {count} stages, so frozen_stages goes from -1 to {count} "
                f"({count} freezes everything); {value} fails {where}",
            )
        )
    return out


def lr_mult_zero(
    cfg: ResolvedConfig, comps: List[Component], stack: str, paramwise, clip
) -> List[Finding]:
    """MMC003 / MMC004: ``lr_mult=0`` stops the update only; redundant when everything is frozen."""
    keys = custom_keys(paramwise)
    out = []
    for comp in comps:
        key = key_for_component(keys, comp)
        if key is None or keys[key].get("lr_mult", 1.0) != 0:
            continue
        origin = keys_origin(paramwise, key)
        if comp.cls is not None and not comp.cls.has_parameters:
            out.append(
                _finding(
                    Code.MMC004,
                    INFO,
                    comp.path,
                    f"custom_keys.{key}",
                    origin,
                    f"{comp.cls.name} has no parameters: lr_mult=0 on '{key}' does nothing",
                )
            )
            continue
        state = freeze_state(comp, stack)
        if state.frozen_in_training:
            if not state.fully_frozen:
                skipped = "the optimizer still receives the parameters (MMC008) but they get no gradient in training"
            elif stack == MMENGINE:
                skipped = "mmengine skips requires_grad=False parameters (one WARNING each)"
            else:
                skipped = "mmcv 1.x adds the frozen parameters to the optimizer silently; they never get a grad"
            out.append(
                _finding(
                    Code.MMC004,
                    INFO,
                    comp.path,
                    f"custom_keys.{key}",
                    origin,
                    message_text(
                        f"redundant: {comp.type} is fully frozen ({state.when}); {skipped}. "
                        "bn2gn config rewrite ",
                        Opt("fix_lr_mult", command="config rewrite"),
                        " removes it",
                    ),
                )
            )
            continue
        if comp.cls is None:
            continue
        parts = state.trainable_in_training
        trainable = (
            f"every parameter of {comp.type} still requires grad"
            if parts == ("everything",)
            else f"{comp.type} {', '.join(parts)} still require grad"
        )
        clipped = f" and counted in gradient clipping ({_clip_text(clip)})" if clip else ""
        stats = (
            f"BatchNorm statistics keep moving ({', '.join(state.bn_training)})"
            if state.bn_training
            else "BatchNorm statistics do not move"
            if comp.has_batchnorm()
            else "no BatchNorm"
        )
        out.append(
            _finding(
                Code.MMC003,
                WARNING,
                comp.path,
                f"custom_keys.{key}",
                origin,
                f"lr_mult=0 on '{key}' stops the update only: {trainable}, so gradients are "
                f"computed{clipped}; {stats}",
            )
        )
    return out


def _clip_text(clip: Any) -> str:
    if isinstance(clip, dict):
        return ", ".join(f"{k}={v}" for k, v in clip.items())
    return str(clip)


def keys_origin(paramwise: Optional[dict], key: str) -> Optional[Origin]:
    holder = paramwise.get("custom_keys") if isinstance(paramwise, dict) else None
    entry = holder.get(key) if isinstance(holder, dict) else None
    if isinstance(entry, CfgDict) and "lr_mult" in entry:
        return entry.origin("lr_mult")
    return holder.origin(key) if isinstance(holder, CfgDict) else None


def unmatched_keys(cfg: ResolvedConfig, comps: List[Component], paramwise) -> List[Finding]:
    """MMC005: a custom key contained in no parameter name silently does nothing.

    A key that a component of unknown type could hold is unchecked (MMC011 lists it), never
    "matches nothing"; a key naming a module a subclass set to None matches nothing for certain.
    """
    out = []
    for key in ordered_keys(custom_keys(paramwise)):
        gone = None if _key_matches(key, comps)[0] else _removed_match(key, comps)
        if gone is not None:
            out.append(
                _finding(
                    Code.MMC005,
                    WARNING,
                    "",
                    f"custom_keys.{key}",
                    keys_origin(paramwise, key),
                    f"'{key}' applies to nothing: {gone}",
                )
            )
            continue
        verdict, unknown = _key_matches(key, comps)
        if verdict or _unchecked_by(key, comps) or detector_modules(cfg):
            continue  # the unknown part could hold it: keys_unchecked says so
        shown = ", ".join(unknown[:5]) + (
            f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        )
        caveat = (
            f"; not known inside {shown}: `bn2gn config verify` checks the built model"
            if unknown
            else ""
        )
        method = next((c for c in comps if c.cls is not None and key in c.cls.methods), None)
        if method is not None:
            caveat += f"; '{key}' is a method of {method.cls.name}, not a module"
        near = _nearest(key, comps)
        if near:
            caveat += f"; nearest module names: {', '.join(near)}"
        out.append(
            _finding(
                Code.MMC005,
                WARNING,
                "",
                f"custom_keys.{key}",
                keys_origin(paramwise, key),
                f"'{key}' is part of no parameter name bn2gn knows for this model: its settings "
                f"apply to nothing{caveat}",
            )
        )
    return out


def _key_matches(key: str, comps: List[Component]) -> Tuple[bool, List[str]]:
    """(matches, modules whose insides are unknown). Keys match ``prefix.name`` by substring."""
    unknown: List[str] = []
    if key.startswith(".") or key in ("weight", "bias") or key in ".weight.bias":
        return True, []
    for comp in comps:
        if key in f"{comp.key}.":
            return True, []
        if comp.cls is None:
            unknown.append(f"{comp.path} ({comp.type})")
            continue
        paths = [f"{comp.key}.{child}" for child in comp.cls.children]
        if any(key in p or _extends(key, p) for p in paths):
            return True, []
        head = key.split(".")[0]
        if any(head in seg for seg in comp.cls.segments):
            return True, []
        unknown += [f"{comp.path}.{o}" for o in comp.cls.opaque]
    return False, unknown


def detector_modules(cfg: ResolvedConfig) -> List[str]:
    """Model entries the detector builds itself from a dict without ``type`` that configures
    layers (DETR's ``encoder=dict(layer_cfg=...)``); flat settings such as a voxel layer's hold
    no parameters."""
    model = cfg.data.get("model")
    return [
        f"model.{k}"
        for k, v in (model.items() if isinstance(model, dict) else ())
        if isinstance(v, dict)
        and "type" not in v
        and not str(k).endswith("_cfg")
        and any(isinstance(inner, dict) for inner in v.values())
    ]


def keys_unchecked(cfg: ResolvedConfig, comps: List[Component], paramwise) -> List[str]:
    """Custom keys matching no known module, which modules the detector builds itself may hold."""
    holders = detector_modules(cfg)
    if not holders:
        return []
    return [
        k
        for k in ordered_keys(custom_keys(paramwise))
        if not _key_matches(k, comps)[0] and not _unchecked_by(k, comps)
    ]


def _nearest(key: str, comps: List[Component], limit: int = 5) -> List[str]:
    """Module names a mistyped key may have meant: a shared word stem, or a close spelling."""
    words = [w for w in re.split(r"[._]", key) if len(w) >= 3]
    found: Dict[str, str] = {}
    for comp in comps:
        for child in comp.cls.children if comp.cls is not None else ():
            parts = [p for p in child.split("_") if len(p) >= 3]
            shared = any(p.startswith(w) or w.startswith(p) for w in words for p in parts)
            close = difflib.SequenceMatcher(None, key, child).ratio() >= 0.75
            if (shared or close) and child not in found:
                found[child] = f"'{child}' ({comp.path}.{child})"
    return list(found.values())[:limit]


def _removed_match(key: str, comps: List[Component]) -> Optional[str]:
    """Why ``key`` names a module that is not there: a subclass set it to None after super().__init__()."""
    for comp in comps:
        if comp.cls is None:
            continue
        for child, where in comp.cls.removed:
            path = f"{comp.key}.{child}"
            if (key in path or _extends(key, path)) and not _key_matches(key, [comp])[0]:
                return (
                    f"{comp.cls.name} sets {child} = None after super().__init__() ({where}), "
                    f"so {comp.path}.{child} holds no parameters"
                )
    return None


def _unchecked_by(key: str, comps: List[Component]) -> List[Component]:
    """Components of unknown type that could hold ``key`` (all of them, unless it names another)."""
    unknown = [c for c in comps if c.cls is None]
    owner = next((c for c in comps if key.startswith(f"{c.key}.") or key == c.key), None)
    if owner is not None:
        return [owner] if owner.cls is None else []
    return unknown


def _extends(key: str, path: str) -> bool:
    """``a.b.c`` continues below ``x.a.b``: the part below is not known statically."""
    parts = key.split(".")
    return any(path.endswith(".".join(parts[:i])) for i in range(1, len(parts)))


def batchnorm_training(
    cfg: ResolvedConfig, comps: List[Component], stack: str, paramwise
) -> List[Finding]:
    """MMC006: BatchNorm statistics keep moving in a component that is meant to be frozen."""
    keys = custom_keys(paramwise)
    out = []
    for comp in comps:
        if comp.cls is None or not comp.has_batchnorm():
            continue
        key = key_for_component(keys, comp)
        zero_lr = key is not None and keys[key].get("lr_mult", 1.0) == 0
        state = freeze_state(comp, stack)
        norm_cfg, _ = comp.norm()
        no_grad_bn = isinstance(norm_cfg, dict) and norm_cfg.get("requires_grad") is False
        if not state.bn_training:
            continue
        if comp.cls.has_norm_eval and (zero_lr or state.frozen_at_build or state.frozen_later):
            origin = comp.cfg.origin("norm_eval") or comp.cfg.origin("frozen_stages") or comp.origin
            out.append(
                _finding(
                    Code.MMC006,
                    WARNING,
                    comp.path,
                    "norm_eval",
                    origin,
                    f"norm_eval=False: BatchNorm statistics of {', '.join(state.bn_training)} keep "
                    "training in train() although the backbone is meant frozen; set norm_eval=True",
                )
            )
        elif not comp.cls.has_norm_eval and (zero_lr or no_grad_bn):
            why = f"lr_mult=0 on '{key}'" if zero_lr else "norm_cfg requires_grad=False"
            origin = keys_origin(paramwise, key) if zero_lr else comp.cfg.origin("norm_cfg")
            out.append(
                _finding(
                    Code.MMC006,
                    WARNING,
                    comp.path,
                    "norm_cfg" if not zero_lr else f"custom_keys.{key}",
                    origin,
                    f"{why} fixes the weights, but {comp.cls.name} has no norm_eval: its "
                    "BatchNorm running statistics keep moving in every training step (put those "
                    "layers in eval in code, e.g. bn2gn patch-trainer, or convert them to GroupNorm)",
                )
            )
    return out


def merge_surprises(cfg: ResolvedConfig, comps: List[Component], paramwise) -> List[Finding]:
    """MMC007: values that come from a ``_base_`` file where the user's file suggests otherwise."""
    if len(cfg.files) < 2:
        return []
    out = []
    holder = paramwise.get("custom_keys") if isinstance(paramwise, dict) else None
    if isinstance(holder, CfgDict) and _own_keys(cfg, holder):
        for key, entry in holder.items():
            origin = holder.origin(key)
            if not cfg.is_own(origin):
                out.append(
                    _finding(
                        Code.MMC007,
                        WARNING,
                        "",
                        f"custom_keys.{key}",
                        origin,
                        f"'{key}': {dict(entry)} comes from {origin} and still applies: custom_keys "
                        "dicts merge (set _delete_=True in your custom_keys to replace them)",
                    )
                )
            elif isinstance(entry, CfgDict):
                for field, value in entry.items():
                    if not cfg.is_own(entry.origin(field)):
                        out.append(
                            _finding(
                                Code.MMC007,
                                INFO,
                                "",
                                f"custom_keys.{key}.{field}",
                                origin,
                                f"'{key}' also gets {field}={value!r} from {entry.origin(field)} "
                                "(entries merge key by key)",
                            )
                        )
    for comp in comps:
        if not _own_keys(cfg, comp.cfg):
            continue
        for field in _FREEZE_KEYS:
            origin = comp.cfg.origin(field)
            value = comp.cfg.get(field)
            surprising = field != "norm_cfg" or (
                isinstance(value, dict) and value.get("requires_grad") is False
            )
            if field in comp.cfg and not cfg.is_own(origin) and surprising:
                out.append(
                    _finding(
                        Code.MMC007,
                        INFO,
                        comp.path,
                        field,
                        origin,
                        f"{field}={comp.cfg[field]!r} comes from {origin}, not from your file",
                    )
                )
    return out


def _own_keys(cfg: ResolvedConfig, holder: CfgDict) -> bool:
    return any(cfg.is_own(holder.origin(k)) for k in holder)


def freeze_timing(cfg: ResolvedConfig, comps: List[Component], stack: str) -> List[Finding]:
    """MMC008: freezing that runs only in train() or only in init_weights()."""
    out = []
    for comp in comps:
        state = freeze_state(comp, stack)
        if comp.cls is None or not (state.frozen_later or "init_weights" in state.when):
            continue
        origin = comp.cfg.origin("frozen_stages")
        if "train()" in state.when:
            text = (
                f"{comp.cls.name} freezes only in train(): when the optimizer is built every parameter "
                "still requires grad, so the optimizer receives the frozen stages too (they get no "
                "gradient later)"
            )
        elif stack == MMENGINE:
            text = (
                f"{comp.cls.name} freezes only in init_weights(), which the mmengine runner calls after "
                "building the optimizer: the frozen stages are handed to it with requires_grad=True"
            )
        else:
            text = (
                f"{comp.cls.name} freezes only in init_weights(); train() never re-freezes, so "
                "with norm_eval=False every BatchNorm trains, frozen stages included"
            )
        out.append(
            _finding(Code.MMC008, WARNING, comp.path, "frozen_stages", origin or comp.origin, text)
        )
    return out


def gn_caveat(cfg: ResolvedConfig, comp: Component, paramwise) -> str:
    """GroupNorm where a loaded checkpoint holds trained BatchNorm: it starts untrained there."""
    checkpoint = cfg.data.get("load_from") or _pretrained(comp.cfg)
    if not isinstance(checkpoint, str) or not checkpoint:
        return ""
    keys = custom_keys(paramwise)
    key = key_for_component(keys, comp)
    mult = keys[key].get("lr_mult", 1.0) if key is not None else 1.0
    slow = (
        f", and at lr_mult={mult} ('{key}') it learns {1 / mult:g}x slower than the rest"
        if isinstance(mult, (int, float)) and 0 < mult < 1
        else ""
    )
    return (
        f"; caveat: {checkpoint!r} holds this component's trained BatchNorm, which GroupNorm cannot "
        f"use: the GroupNorm layers start untrained (weight 1, bias 0){slow}"
    )


def _pretrained(comp_cfg: dict) -> Optional[str]:
    init = comp_cfg.get("init_cfg")
    if isinstance(init, dict) and str(init.get("type", "")) == "Pretrained":
        return init.get("checkpoint")
    return comp_cfg.get("pretrained") if isinstance(comp_cfg.get("pretrained"), str) else None


def groupnorm_candidates(
    cfg: ResolvedConfig, comps: List[Component], paramwise=None
) -> List[Finding]:
    """MMC009: non-backbone BatchNorm that GroupNorm can replace (from the config, or in source only)."""
    out = []
    for comp in comps:
        if comp.cls is None or comp.cls.role == "backbone":
            continue
        norm_cfg, where = comp.norm()
        if comp.cls.hard_coded_bn:
            out.append(
                _finding(
                    Code.MMC009,
                    INFO,
                    comp.path,
                    "",
                    comp.origin,
                    f"source-only: {comp.cls.name} hard-codes BatchNorm in "
                    f"{', '.join(comp.cls.hard_coded_bn)} ({_bn_where(comp.cls)}); "
                    "only a source rewrite changes it (bn2gn rewrite)"
                    + gn_caveat(cfg, comp, paramwise),
                )
            )
        settable = "norm_cfg" in comp.cfg or comp.cls.norm_default is not None
        if not is_batchnorm(norm_cfg) or not settable or not comp.cls.gn_from_config:
            continue
        channels = comp.cls.norm_channels(comp.cfg)
        groups = sorted({gn_groups(c) for c in channels})
        text = (
            ", ".join(f"C={c} -> {gn_groups(c)} groups" for c in dict.fromkeys(channels))
            or "channels unknown"
        )
        if len(groups) > 1:
            text += "; the channel counts need different group counts, so one norm_cfg cannot serve them all"
        out.append(
            _finding(
                Code.MMC009,
                INFO,
                comp.path,
                "norm_cfg",
                comp.cfg.origin("norm_cfg") or comp.origin,
                message_text(
                    "settable from the config: norm_cfg=dict(type='GN', num_groups=N, "
                    f"requires_grad=True) ({text}; BatchNorm now from {where}); "
                    "bn2gn config rewrite ",
                    Opt("gn", comp.key, command="config rewrite"),
                    gn_caveat(cfg, comp, paramwise),
                ),
            )
        )
    return out


def _bn_where(cls) -> str:
    """Where the source builds the hard-coded BatchNorm; the class's file when only the table says."""
    where = dict(cls.facts).get("hard-coded BatchNorm", "")
    return where if where and "table" not in where else cls.source


def hook_arguments(cfg: ResolvedConfig, stack: str, catalog=None) -> List[Finding]:
    """MMC010: arguments the optimizer hook (mmcv 1.x) or optimizer wrapper (mmengine) does not take.

    A hook or wrapper class of the project's own is followed through its base classes: what its
    ``**kwargs`` pass on must be accepted further up (mmcv's hook, as listed in HOOK_ARGS).
    """
    if stack == MMCV1:
        holder, table, name = cfg.data.get("optimizer_config"), HOOK_ARGS, "optimizer_config"
        default = "OptimizerHook"
    else:
        holder, table, name = cfg.data.get("optim_wrapper"), WRAPPER_ARGS, "optim_wrapper"
        default = "OptimWrapper"
    if not isinstance(holder, dict):
        return []
    kind = str(holder.get("type", default)).rpartition(".")[2]
    accepted = table.get(kind)
    chain_text = ""
    if accepted is None and catalog is not None:
        found = catalog.hook_keys(kind, table)
        if found is not None:
            accepted, chain_text = found
    if accepted is None:
        return []
    out = []
    for key in holder:
        if key in accepted or key in WRAPPER_CONSUMED:
            continue
        origin = holder.origin(key) if isinstance(holder, CfgDict) else None
        out.append(
            _finding(
                Code.MMC010,
                ERROR,
                name,
                key,
                origin,
                f"{kind} does not accept {key}: building it raises TypeError"
                f"{chain_text}{_hook_hint(key, stack)}",
            )
        )
    return out


def _hook_hint(key: str, stack: str) -> str:
    if key != "exclude_frozen_parameters":
        return ""
    if stack == MMCV1:
        return " (mmcv 1.x hooks have no exclude_frozen_parameters; frozen parameters need no hook argument)"
    return " (in mmengine it is an option of the DeepSpeed strategy, not of optimizer wrappers)"


def unknown_components(comps: List[Component], paramwise=None) -> List[Finding]:
    """MMC011, once per type: where bn2gn looked, and the custom keys left unchecked because of it."""
    by_type: Dict[str, List[Component]] = {}
    for comp in comps:
        if comp.cls is None:
            by_type.setdefault(repr(comp.type), []).append(comp)
    keys = ordered_keys(custom_keys(paramwise))
    out = []
    for kind, group in by_type.items():
        unchecked = [
            k
            for k in keys
            if any(c in group for c in _unchecked_by(k, comps))
            and not any(k in f"{c.key}." for c in comps)  # a whole component: it applies
            and not _key_matches(k, [c for c in comps if c.cls is not None])[0]
        ]
        also = f" (also {', '.join(c.path for c in group[1:])})" if len(group) > 1 else ""
        keys_text = (
            f"; custom keys not checked because of it: {', '.join(repr(k) for k in unchecked)}"
            if unchecked
            else ""
        )
        out.append(
            _finding(
                Code.MMC011,
                WARNING,
                group[0].path,
                "type",
                group[0].origin,
                f"type {kind}{also} is found in none of the plugin folder, custom_imports, the "
                f"config's repository, the installed packages or bn2gn's table: its keys are not "
                f"checked{keys_text}",
            )
        )
    return out


def all_findings(
    cfg: ResolvedConfig,
    comps: List[Component],
    stack: str,
    paramwise,
    clip,
    catalog=None,
) -> List[Finding]:
    found: Iterable[Finding] = (
        invalid_keys(cfg, comps)
        + ignored_keys(cfg, comps)
        + stage_range(cfg, comps)
        + lr_mult_zero(cfg, comps, stack, paramwise, clip)
        + unmatched_keys(cfg, comps, paramwise)
        + batchnorm_training(cfg, comps, stack, paramwise)
        + merge_surprises(cfg, comps, paramwise)
        + freeze_timing(cfg, comps, stack)
        + groupnorm_candidates(cfg, comps, paramwise)
        + hook_arguments(cfg, stack, catalog)
        + unknown_components(comps, paramwise)
    )
    return list(found)


def summary(findings: List[Finding]) -> Dict[str, int]:
    counts = {ERROR: 0, WARNING: 0, INFO: 0}
    for f in findings:
        counts[f.severity] += 1
    return counts
