"""Check a remapped state dict against the real (converted) model.

Missing keys, unexpected keys and shape mismatches are grouped by module path. A backbone
tensor that is missing or mismatched is lost pretrained data, so it fails the check; with
``strict`` anything short of a clean ``load_state_dict(strict=True)`` fails it.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping
from typing import Dict, List, Optional, Tuple


@dataclasses.dataclass
class Verification:
    model: str
    strict: bool
    missing: Dict[str, List[str]] = dataclasses.field(default_factory=dict)
    unexpected: Dict[str, List[str]] = dataclasses.field(default_factory=dict)
    mismatched: Dict[str, List[Tuple[str, list, list]]] = dataclasses.field(default_factory=dict)
    backbone_lost: List[str] = dataclasses.field(default_factory=list)
    load_error: Optional[str] = None

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched or self.load_error)

    @property
    def ok(self) -> bool:
        if self.strict:
            return self.clean
        return not self.backbone_lost and self.load_error is None

    def problems(self) -> str:
        """One line for the exit message: what failed."""
        if self.load_error:
            return f"loading into the model failed ({self.load_error})"
        if self.backbone_lost:
            return f"{len(self.backbone_lost)} backbone tensor(s) missing or mismatched (pretrained data would be lost)"
        counts = [
            f"{_count(self.missing)} missing",
            f"{_count(self.unexpected)} unexpected",
            f"{_count(self.mismatched)} mismatched",
        ]
        return "strict load is not clean: " + ", ".join(counts)


def verify_state_dict(
    model, state_dict: Mapping, backbone_attrs, strict: bool = False, description: str = ""
) -> Verification:
    """Compare names and shapes with ``model.state_dict()``, then load what fits with strict=False."""
    result = Verification(model=description or type(model).__name__, strict=strict)
    expected = model.state_dict()
    fitting = collections.OrderedDict()
    for name, tensor in state_dict.items():
        if name not in expected:
            _add(result.unexpected, name, name)
        elif tuple(tensor.shape) != tuple(expected[name].shape):
            _add(result.mismatched, name, (name, list(tensor.shape), list(expected[name].shape)))
        else:
            fitting[name] = tensor
    for name in expected:
        if name not in state_dict:
            _add(result.missing, name, name)
    lost = [n for group in result.missing.values() for n in group]
    lost += [entry[0] for group in result.mismatched.values() for entry in group]
    from ..runtime import backbone_modules

    inside = {path for path, _ in backbone_modules(model, tuple(backbone_attrs))}
    result.backbone_lost = sorted(n for n in lost if _module_of(n) in inside)
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        fitting._metadata = metadata
    try:
        model.load_state_dict(fitting, strict=False)
    except Exception as exc:  # noqa: BLE001 - the user's module may reject values; report, don't crash
        lines = str(exc).strip().splitlines()
        result.load_error = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    return result


def _module_of(name: str) -> str:
    return name.rpartition(".")[0]


def _add(groups: dict, name: str, entry) -> None:
    groups.setdefault(_module_of(name) or "(root)", []).append(entry)


def _count(groups: dict) -> int:
    return sum(len(v) for v in groups.values())
