"""The pure remapping engine: an old BatchNorm state dict in, the GroupNorm model's state dict out.

Old checkpoints hold running statistics for layers that are now
GroupNorm. A BatchNorm entry is recognised by its running-stat keys; when its module path is
not in the plan's backbone (``RemapOptions.backbone``, the decision ``rewrite`` applied) the
layer was converted, so its running_mean / running_var / num_batches_tracked go while
weight / bias (same shapes in GroupNorm) stay, or are reset to 1 / 0 with ``reset_affine``.
Every other tensor is carried over as the same object, so backbone entries stay bit-identical.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping
from typing import Any, Dict, List, Optional, Tuple

from ..core.errors import Bn2gnError, Opt, message_text
from ..core.settings import DEFAULT_BACKBONE_NAMES
from ..decide.backbone import Backbone
from ..model.checkpoint_load import DATA_PARALLEL_PREFIX, data_parallel_prefix

RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")
AFFINE = ("weight", "bias")
#: Top-level entry names that hold optimizer state even when it is not a plain state dict.
OPTIMIZER_KEYS = ("optimizer", "optimizer_state_dict", "optim", "opt_state")


@dataclasses.dataclass(frozen=True)
class ModelSelection:
    """``remap-ckpt --model``: a layer was converted when it is GroupNorm in the model and has running
    statistics in the checkpoint; BatchNorm in the model stays as it is (decided from the model, not from names)."""

    source: str
    converted: frozenset
    kept: frozenset

    def split(self, layers):
        converted = {layer for layer in layers if layer in self.converted}
        return converted, [
            layer for layer in layers if layer not in self.converted and layer not in self.kept
        ]

    def warning(self, unaccounted, where: str = "the state dict") -> str:
        shown = ", ".join(unaccounted[:5]) + (
            f", ... {len(unaccounted) - 5} more" if len(unaccounted) > 5 else ""
        )
        return message_text(
            f"{len(unaccounted)} BatchNorm layer(s) in {where} are neither GroupNorm nor BatchNorm "
            f"in the model {self.source} and were left as they are: {shown}; check that ",
            Opt("model"),
            " builds the network that wrote this checkpoint",
        )


def selection_from_model(model, source: str = "built in memory") -> ModelSelection:
    """GroupNorm and BatchNorm module paths of the converted model (DataParallel/wrappers unwrapped)."""
    from torch import nn
    from torch.nn.modules.batchnorm import _BatchNorm

    from ..runtime import unwrap_model

    network = unwrap_model(model)
    converted, kept = set(), set()
    for path, module in network.named_modules():
        if isinstance(module, nn.GroupNorm):
            converted.add(path)
        elif isinstance(module, _BatchNorm):
            kept.add(path)
    return ModelSelection(source=source, converted=frozenset(converted), kept=frozenset(kept))


@dataclasses.dataclass(frozen=True)
class RemapOptions:
    #: the plan's decision (``bn2gn.api.remap_decision``); None: nothing decides, and a checkpoint
    #: holding BatchNorm statistics is refused with ``decided_by`` as the reason
    backbone: Optional[Backbone] = Backbone.named(DEFAULT_BACKBONE_NAMES)
    keep_prefix: bool = False
    keep_optimizer: bool = False
    reset_affine: bool = False
    #: ``remap-ckpt --plan``: a PlanSelection whose traced module paths replace the prefix rule
    plan: Optional[Any] = None
    #: which rule decided what was converted, for the report; with no backbone, why none could
    decided_by: Any = ""

    def __post_init__(self) -> None:
        if self.backbone is not None and not isinstance(self.backbone, Backbone):
            raise TypeError("RemapOptions.backbone must be a Backbone (see bn2gn.api.Session)")


@dataclasses.dataclass
class StateDictReport:
    """What happened to one state dict; names are the new (prefix-stripped) ones unless stated."""

    key: Optional[str]  # the top-level entry, None for a raw state dict
    total: int = 0
    kept: List[str] = dataclasses.field(default_factory=list)
    renamed: List[Tuple[str, str]] = dataclasses.field(default_factory=list)
    dropped: Dict[str, List[str]] = dataclasses.field(
        default_factory=dict
    )  # converted layer -> keys
    reset: List[str] = dataclasses.field(default_factory=list)
    backbone_batchnorm: List[str] = dataclasses.field(default_factory=list)
    stripped_prefix: str = ""
    unaccounted: List[str] = dataclasses.field(
        default_factory=list
    )  # BatchNorm layers a --plan does not list

    @property
    def dropped_count(self) -> int:
        return sum(len(keys) for keys in self.dropped.values())


@dataclasses.dataclass
class CheckpointReport:
    state_dicts: List[StateDictReport] = dataclasses.field(default_factory=list)
    kept_entries: List[str] = dataclasses.field(default_factory=list)
    dropped_entries: List[str] = dataclasses.field(default_factory=list)
    warnings: List[str] = dataclasses.field(default_factory=list)


def remap_state_dict(
    state_dict: Mapping, options: RemapOptions = RemapOptions(), key: Optional[str] = None
) -> Tuple[collections.OrderedDict, StateDictReport]:
    report = StateDictReport(key=key, total=len(state_dict))
    prefix = "" if options.keep_prefix else data_parallel_prefix(state_dict)
    report.stripped_prefix = prefix
    names = {old: old[len(prefix) :] for old in state_dict}
    batchnorm = _batchnorm_layers(names.values())
    if options.plan is not None:
        converted, report.unaccounted = options.plan.split(batchnorm)
    elif batchnorm and options.backbone is None:
        raise Bn2gnError(options.decided_by or "cannot tell which BatchNorm layers were converted")
    else:
        converted = {layer for layer in batchnorm if not options.backbone.contains(layer)}
    report.backbone_batchnorm = [layer for layer in batchnorm if layer not in converted]
    out = collections.OrderedDict()
    rename = getattr(options.plan, "rename", None)  # remap-ckpt --renames (checkpoint/renames.py)
    for old, tensor in state_dict.items():
        new = names[old]
        layer, _, leaf = new.rpartition(".")
        if layer in converted and leaf in RUNNING_STATS:
            report.dropped.setdefault(layer, []).append(new)
            continue
        new = rename(new) if rename is not None else new
        if layer in converted and leaf in AFFINE and options.reset_affine:
            out[new] = _reset_value(tensor, leaf)
            report.reset.append(new)
            continue
        out[new] = tensor
        report.kept.append(new)
        if new != old:
            report.renamed.append((old, new))
    for layer in sorted(converted - set(report.dropped)):
        report.dropped[layer] = []
    _carry_metadata(state_dict, out, prefix)
    return out, report


def remap_content(
    content: Any, state_keys: Tuple[str, ...], options: RemapOptions = RemapOptions()
) -> Tuple[Any, CheckpointReport]:
    """Remap the state dicts of a whole checkpoint; other top-level entries are kept as they are.

    ``state_keys`` is ``()`` when ``content`` is itself the state dict. Optimizer state is dropped
    unless ``keep_optimizer``: its per-parameter slots no longer line up with the parameters.
    """
    report = CheckpointReport()
    if not state_keys:
        new, sd_report = remap_state_dict(content, options)
        report.state_dicts.append(sd_report)
        _warn_partial_prefix(content, sd_report, report)
        _warn_unaccounted(options, sd_report, report)
        return new, report
    out = collections.OrderedDict() if isinstance(content, collections.OrderedDict) else {}
    for name, value in content.items():
        if name in state_keys:
            out[name], sd_report = remap_state_dict(value, options, key=name)
            report.state_dicts.append(sd_report)
            _warn_partial_prefix(value, sd_report, report)
            _warn_unaccounted(options, sd_report, report)
        elif not options.keep_optimizer and is_optimizer_state(name, value):
            report.dropped_entries.append(str(name))
            report.warnings.append(
                message_text(
                    f"dropped optimizer state {name!r}: its per-parameter state no longer lines up "
                    "once parameters are frozen or replaced (keep it with ",
                    Opt("keep_optimizer"),
                    ")",
                )
            )
        else:
            out[name] = value
            report.kept_entries.append(str(name))
    return out, report


def is_optimizer_state(name: Any, value: Any) -> bool:
    """``optimizer.state_dict()`` (``state`` + ``param_groups``), a list of them, or a known entry name."""
    if isinstance(value, Mapping):
        return "param_groups" in value and "state" in value
    if isinstance(value, (list, tuple)) and value:
        return all(isinstance(v, Mapping) and "param_groups" in v for v in value)
    return name in OPTIMIZER_KEYS and value is not None


def _batchnorm_layers(names) -> List[str]:
    """Module paths that have running statistics, in first-seen order."""
    layers = {}
    for name in names:
        layer, _, leaf = name.rpartition(".")
        if leaf in ("running_mean", "running_var"):
            layers.setdefault(layer, None)
    return list(layers)


def _reset_value(tensor: Any, leaf: str) -> Any:
    import torch

    return torch.ones_like(tensor) if leaf == "weight" else torch.zeros_like(tensor)


def _carry_metadata(source: Mapping, out: collections.OrderedDict, prefix: str) -> None:
    """Keep ``state_dict()._metadata`` (module versions), renamed like the keys.

    With ``module.`` stripped, the wrapped model's entry ``module`` becomes the root ``""`` and
    the DataParallel wrapper's own entries above it go.
    """
    metadata = getattr(source, "_metadata", None)
    if not isinstance(metadata, Mapping):
        return
    root = prefix[:-1]
    renamed = collections.OrderedDict()
    for name, value in metadata.items():
        if not prefix:
            renamed[name] = value
        elif name == root:
            renamed[""] = value
        elif name.startswith(prefix):
            renamed[name[len(prefix) :]] = value
    out._metadata = renamed


def _warn_partial_prefix(
    source: Mapping, sd_report: StateDictReport, report: CheckpointReport
) -> None:
    if sd_report.stripped_prefix:
        return
    carrying = sum(1 for k in source if k.startswith(DATA_PARALLEL_PREFIX))
    if 0 < carrying < len(source):
        where = f"state dict {sd_report.key!r}" if sd_report.key else "the state dict"
        report.warnings.append(
            f"{carrying} of {len(source)} keys in {where} start with 'module.' but not all; "
            "left as they are (a DataParallel prefix would be on every key)"
        )


def _warn_unaccounted(
    options: RemapOptions, sd_report: StateDictReport, report: CheckpointReport
) -> None:
    if options.plan is not None and sd_report.unaccounted:
        where = f"state dict {sd_report.key!r}" if sd_report.key else "the state dict"
        report.warnings.append(options.plan.warning(sd_report.unaccounted, where))
