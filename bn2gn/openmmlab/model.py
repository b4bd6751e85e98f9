"""The model a resolved config describes: its components, their freezing, the optimizer's custom keys.

One place decides what is frozen when the optimizer is built, which BatchNorm keeps training
and which custom key reaches which component, so the audit, ``rewrite --freeze`` and the
report all agree (the same rule as mmengine's DefaultOptimWrapperConstructor: substring match
on ``prefix.name``, longest key first).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Tuple

from .class_source import BN_TYPES as BATCHNORM_TYPES
from .components import INIT, INIT_WEIGHTS, TRAIN, ComponentClass
from .plugins import Catalog
from .resolve import ResolvedConfig
from .values import CfgDict, Origin

MMENGINE, MMCV1 = "mmengine", "mmcv1"
STACK_NAMES = {
    MMENGINE: "mmengine runner (mmdet 3.x / mmdet3d 1.x): optim_wrapper=",
    MMCV1: "mmcv 1.x runner (mmdet 2.x / mmdet3d 1.0.0rc): optimizer= + optimizer_config=",
}


@dataclasses.dataclass
class Component:
    key: str  # attribute name on the detector: parameter names start with "<key>."
    type: Any
    cfg: CfgDict
    cls: Optional[ComponentClass]
    origin: Optional[Origin]

    @property
    def path(self) -> str:
        return f"model.{self.key}"

    def value(self, name: str, default: Any = None) -> Any:
        return self.cfg.get(name, default)

    def norm(self) -> Tuple[Optional[dict], str]:
        """The norm config in effect and where it comes from."""
        if "norm_cfg" in self.cfg:
            return self.cfg["norm_cfg"], str(self.cfg.origin("norm_cfg") or "config")
        if self.cls is None:
            return None, "unknown"
        if self.cls.hard_coded_bn and self.cls.norm_default is None:
            where = dict(self.cls.facts).get("hard-coded BatchNorm", "")
            return (
                {"type": "BN"},
                f"hard-coded in {where if 'table' not in where and where else self.cls.source}",
            )
        return self.cls.norm_default, f"class default ({self.cls.source})"

    def has_batchnorm(self) -> bool:
        cfg, _ = self.norm()
        return bool(self.cls and self.cls.hard_coded_bn) or is_batchnorm(cfg)

    def frozen_stages(self) -> Optional[int]:
        value = self.cfg.get(
            "frozen_stages", -1 if self.cls and self.cls.stages(self.cfg) else None
        )
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def norm_eval(self) -> Optional[bool]:
        if self.cls is None or not self.cls.has_norm_eval:
            return None
        return bool(self.cfg.get("norm_eval", self.cls.norm_eval_default))


def is_batchnorm(norm_cfg: Any) -> bool:
    return (
        isinstance(norm_cfg, dict)
        and str(norm_cfg.get("type", "")).rpartition(".")[2] in BATCHNORM_TYPES
    )


def detect_stack(cfg: ResolvedConfig) -> str:
    if "optim_wrapper" in cfg.data:
        return MMENGINE
    if "optimizer" in cfg.data or "optimizer_config" in cfg.data or "runner" in cfg.data:
        return MMCV1
    return MMENGINE


def components(cfg: ResolvedConfig, catalog: Catalog) -> List[Component]:
    model = cfg.data.get("model")
    found = []
    for key, value in model.items():
        # init_cfg=dict(type='Pretrained'), dqs_cfg=dict(type='nms'): settings, not modules
        if isinstance(value, dict) and "type" in value and not str(key).endswith("_cfg"):
            cls = catalog.lookup(value["type"])
            if cls is not None and cls.role == "unknown":
                cls = dataclasses.replace(cls, role=_role_of(str(key)))
            found.append(
                Component(
                    key=str(key),
                    type=value["type"],
                    cfg=value,
                    cls=cls,
                    origin=model.origin(key),
                )
            )
    return found


def _role_of(key: str) -> str:
    """A class whose registry does not say: the detector's attribute name does (img_backbone, pts_neck)."""
    return next(
        (role for role in ("backbone", "neck", "head", "encoder") if role in key),
        "unknown",
    )


def optimizer_settings(
    cfg: ResolvedConfig, stack: str
) -> Tuple[Optional[CfgDict], Optional[CfgDict], Any]:
    """(paramwise_cfg, the dict holding it, grad clipping) for the config's stack."""
    holder = cfg.data.get("optim_wrapper" if stack == MMENGINE else "optimizer")
    if not isinstance(holder, dict):
        return None, None, None
    paramwise = holder.get("paramwise_cfg")
    if stack == MMENGINE:
        clip = holder.get("clip_grad")
    else:
        hook = cfg.data.get("optimizer_config")
        clip = hook.get("grad_clip") if isinstance(hook, dict) else None
    return (paramwise if isinstance(paramwise, dict) else None), holder, clip


def custom_keys(paramwise: Optional[dict]) -> Dict[str, dict]:
    keys = paramwise.get("custom_keys") if isinstance(paramwise, dict) else None
    return (
        {str(k): v for k, v in keys.items() if isinstance(v, dict)}
        if isinstance(keys, dict)
        else {}
    )


def ordered_keys(keys: Dict[str, dict]) -> List[str]:
    """mmengine's order: alphabetical, then longest first; the first key contained in a name wins."""
    return sorted(sorted(keys), key=len, reverse=True)


def key_for_component(keys: Dict[str, dict], comp: Component) -> Optional[str]:
    """The custom key every parameter of ``comp`` matches, when one does (it is part of ``comp.key``)."""
    return next((k for k in ordered_keys(keys) if k in f"{comp.key}."), None)


def module_rates(keys: Dict[str, dict], comp: Component) -> List[Tuple[str, str]]:
    """(children, the rate their parameters train at) for each child bn2gn knows, grouped.

    mmengine's rule per parameter name: the longest custom key contained in it wins; a child
    whose prefix no key reaches trains at the base rate, unless a key names something inside it.
    """
    if comp.cls is None or not comp.cls.children:
        return []
    groups: Dict[str, List[str]] = {}
    order = ordered_keys(keys)
    for child in comp.cls.children:
        prefix = f"{comp.key}.{child}."
        key = next((k for k in order if k in prefix), None)
        if key is not None:
            entry = keys[key]
            rate = ", ".join(f"{k}={entry[k]!r}" for k in entry) + f" ('{key}')"
        else:
            rate = "base rate"
        inside = [k for k in order if _inside(k, child) and (key is None or len(k) > len(key))]
        if inside:
            rate += f", except names containing {', '.join(repr(k) for k in inside)}"
        groups.setdefault(rate, []).append(child)
    return [(", ".join(children), rate) for rate, children in groups.items()]


def _inside(key: str, child: str) -> bool:
    """``key`` names something below ``child`` (``task_heads.0`` under ``task_heads``)."""
    return key.startswith(f"{child}.")


@dataclasses.dataclass(frozen=True)
class FreezeState:
    """What freezing does to one component, when it happens relative to the optimizer build."""

    frozen_at_build: Tuple[str, ...]
    trainable_at_build: Tuple[str, ...]
    frozen_later: Tuple[str, ...]
    when: str  # a sentence for the report
    bn_training: Tuple[str, ...]  # parts whose BatchNorm statistics keep moving in train()

    @property
    def fully_frozen(self) -> bool:
        """Nothing requires grad when the optimizer is built."""
        return bool(self.frozen_at_build) and not self.trainable_at_build

    @property
    def trainable_in_training(self) -> Tuple[str, ...]:
        return tuple(p for p in self.trainable_at_build if p not in self.frozen_later)

    @property
    def frozen_in_training(self) -> bool:
        """Nothing requires grad once training runs (the later freezing has happened)."""
        return bool(self.frozen_at_build or self.frozen_later) and not self.trainable_in_training


def freeze_state(comp: Component, stack: str) -> FreezeState:
    cls = comp.cls
    if cls is None:
        return FreezeState((), ("everything",), (), "unknown class", ())
    stages = cls.stages(comp.cfg)
    stem = (cls.stem or "stem").split(" ")[0]
    value = comp.frozen_stages()
    parts = ((stem,) + stages) if stages else ()
    if not stages or value is None or value < 0 or value > len(stages):
        frozen: Tuple[str, ...] = ()
    else:
        frozen = parts[: value + 1]
    rest = tuple(p for p in parts if p not in frozen) or (() if parts else ("everything",))
    norm_eval = comp.norm_eval()
    has_bn = comp.has_batchnorm()
    if not frozen:
        bn = () if not has_bn or norm_eval else ("every BatchNorm",)
        return FreezeState((), rest, (), "nothing frozen", bn)
    if INIT in cls.freeze_runs:
        bn = () if not has_bn or norm_eval else rest  # train() re-freezes (eval) the frozen stages
        return FreezeState(frozen, rest, (), "in __init__ and again in train()", bn)
    if TRAIN in cls.freeze_runs:
        return FreezeState((), parts, frozen, "only in train(), after the optimizer is built", ())
    if INIT_WEIGHTS in cls.freeze_runs:
        bn = () if not has_bn or norm_eval else ("every BatchNorm, frozen stages included",)
        if stack == MMCV1:
            return FreezeState(
                frozen,
                rest,
                (),
                "only in init_weights() (tools/train.py calls it before building the optimizer)",
                bn,
            )
        return FreezeState(
            (),
            parts,
            frozen,
            "only in init_weights(), which the mmengine runner calls after building the optimizer",
            bn,
        )
    return FreezeState((), rest, (), "the class has no freezing", ())
