"""Backbone BatchNorm whose running statistics were never trained: the one check `scan --trace`,
`demo` and `verify` share.

Freezing such a layer (running_mean all 0, running_var all 1, num_batches_tracked 0) pins an
untrained normalisation. The backbone is ``bn2gn.runtime.backbone_batchnorms``, the rule the
injected freeze uses, so the check looks at exactly the layers that get frozen.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Iterable, List, Optional

from ..runtime import backbone_batchnorms

STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def untrained_backbone_batchnorms(
    model, backbone_attrs: Iterable[str], state: Optional[Mapping] = None
) -> List[str]:
    """Paths of the backbone BatchNorm whose statistics are the untouched defaults; a ``state``
    dict (keys like ``model.state_dict()``) overrides the model's own values where it has them."""
    from torch.nn.parameter import is_lazy

    found = []
    for path, module in backbone_batchnorms(model, tuple(backbone_attrs)):
        if not module.track_running_stats:
            continue
        mean, var, count = (_value(state, path, leaf, module) for leaf in STATISTICS)
        if mean is None or var is None or is_lazy(mean) or is_lazy(var):
            continue
        if (
            bool((mean == 0).all())
            and bool((var == 1).all())
            and (count is None or int(count) == 0)
        ):
            found.append(path)
    return found


def _value(state: Optional[Mapping], path: str, leaf: str, module):
    key = f"{path}.{leaf}"
    if state is not None and key in state:
        return state[key]
    return getattr(module, leaf, None)
