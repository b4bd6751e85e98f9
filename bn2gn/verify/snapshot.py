"""Read a model without changing it: its norm layers, its backbone BatchNorm tensors, and how they compare.

The backbone rule is ``bn2gn.runtime.backbone_batchnorms`` (the one the injected freeze uses), so
the checks look at exactly the layers the patched code is supposed to freeze.
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional

from ..runtime import backbone_batchnorms, unwrap_model

BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
AFFINE = ("weight", "bias")


def norm_census(model, backbone_attrs: Iterable[str]) -> dict:
    """Backbone BatchNorm paths, BatchNorm2d paths outside the backbone, and every GroupNorm with its sizes."""
    import torch.nn as nn

    network = unwrap_model(model)
    backbone = [path for path, _ in backbone_batchnorms(network, tuple(backbone_attrs))]
    inside = set(backbone)
    outside, groupnorms = [], []
    for path, module in network.named_modules():
        if isinstance(module, (nn.BatchNorm2d, nn.SyncBatchNorm)) and path not in inside:
            outside.append(path)
        elif isinstance(module, nn.GroupNorm):
            groupnorms.append(
                {"path": path, "groups": module.num_groups, "channels": module.num_channels}
            )
    return {
        "root": type(network).__name__,
        "batchnorm_backbone": backbone,
        "batchnorm_outside": outside,
        "groupnorm": groupnorms,
    }


def backbone_tensors(
    model, backbone_attrs: Iterable[str], leaves=BN_BUFFERS + AFFINE
) -> Dict[str, object]:
    """CPU copies of the chosen tensors of every backbone BatchNorm, keyed like the state dict."""
    found = {}
    for path, module in backbone_batchnorms(unwrap_model(model), tuple(backbone_attrs)):
        for leaf in leaves:
            tensor = getattr(module, leaf, None)
            if tensor is not None:
                found[f"{path}.{leaf}"] = tensor.detach().to("cpu", copy=True)
    return found


def groupnorm_tensors(model) -> Dict[str, object]:
    """CPU copies of every GroupNorm weight and bias."""
    import torch.nn as nn

    found = {}
    for path, module in unwrap_model(model).named_modules():
        if isinstance(module, nn.GroupNorm):
            for leaf in AFFINE:
                tensor = getattr(module, leaf, None)
                if tensor is not None:
                    found[f"{path}.{leaf}"] = tensor.detach().to("cpu", copy=True)
    return found


def compare_tensors(before: Dict[str, object], after: Dict[str, object]) -> dict:
    """Which tensors are not bit-identical, and the largest absolute change of a floating-point one (and where)."""
    changed, largest, where = [], 0.0, None
    for name, old in before.items():
        new = after.get(name)
        if new is None or new.shape != old.shape or new.dtype != old.dtype or not _equal(old, new):
            changed.append(name)
            if new is not None and new.shape == old.shape and old.is_floating_point():
                delta = float((new.double() - old.double()).abs().max()) if old.numel() else 0.0
                if delta >= largest:
                    largest, where = delta, name
    return {
        "count": len(before),
        "changed": changed,
        "max_abs_change": largest,
        "max_change_at": where,
    }


def compare_with_checkpoint(model, path, names: Optional[Iterable[str]] = None) -> dict:
    """Compare the model's state with a checkpoint file, tensor by tensor (bit-identical or not).

    ``names`` limits the comparison to those state-dict keys (e.g. the backbone BatchNorm tensors);
    without it every key on both sides counts, so missing and unexpected keys are reported too.
    """
    from ..core.errors import Bn2gnError
    from ..model.checkpoint_load import model_state_dict

    try:
        saved = model_state_dict(path)
    except Bn2gnError as exc:
        return {"path": str(path), "error": exc.format_message()}
    current = unwrap_model(model).state_dict()
    wanted = list(names) if names is not None else list(current)
    result = {
        "path": str(path),
        "compared": 0,
        "missing": [],
        "unexpected": [],
        "shape_mismatch": [],
        "different": [],
        "error": None,
    }
    for name in wanted:
        if name not in saved:
            result["missing"].append(name)
        elif tuple(saved[name].shape) != tuple(current[name].shape):
            result["shape_mismatch"].append(name)
        else:
            result["compared"] += 1
            if not _equal(saved[name], current[name]):
                result["different"].append(name)
    if names is None:
        result["unexpected"] = [name for name in saved if name not in current]
    return result


def _equal(a, b) -> bool:
    import torch

    return a.dtype == b.dtype and torch.equal(a.detach().cpu(), b.detach().cpu())
