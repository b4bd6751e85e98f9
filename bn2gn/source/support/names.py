"""Names the recognisers and codemods look for, without LibCST (the pre-filters and ``scan`` use them
before anything heavy is imported)."""

from __future__ import annotations

import dataclasses
from typing import Sequence

#: what BN2GN101 calls instead of BatchNorm2d, and BN2GN102 defines
HELPER = "get_group_norm"
#: the initialisers whose ``m.weight`` / ``m.bias`` BN2GN103 guards
INIT_FUNCS = frozenset(
    {"constant_", "ones_", "zeros_", "normal_", "uniform_", "fill_", "zero_", "trunc_normal_"}
)
FREEZE = "freeze_backbone_bn"
KEEP = "keep_backbone_bn_eval"
PUBLIC_HELPERS = (FREEZE, KEEP)  # what BN2GN202 defines, in this order
OPTIMIZER_BUILDERS = ("build_optimizer", "get_optimizer", "create_optimizer")
#: What ``from torch.optim import *`` binds that builds an optimizer.
TORCH_OPTIMIZERS = frozenset(
    {
        "ASGD",
        "Adadelta",
        "Adafactor",
        "Adagrad",
        "Adam",
        "AdamW",
        "Adamax",
        "LBFGS",
        "NAdam",
        "RAdam",
        "RMSprop",
        "Rprop",
        "SGD",
        "SparseAdam",
    }
)


@dataclasses.dataclass
class OptimizerNames:
    """The names under which this file can reach torch.optim, and the builder calls to look for."""

    namespaces: set  # expressions bound to torch.optim: "torch.optim", "optim", "T.optim"
    classes: set  # names bound to optimizer classes: "Adam", "SGD"
    builders: tuple  # builder function names; dotted ones must match the whole call name

    def is_direct(self, name: str) -> bool:
        head, _, last = name.rpartition(".")
        return (head in self.namespaces and last[:1].isupper() and last != "Optimizer") or (
            not head and name in self.classes
        )

    def is_builder(self, name: str) -> bool:
        last = name.rpartition(".")[2]
        return any(
            name == wanted or ("." not in wanted and last == wanted) for wanted in self.builders
        )


def tuple_literal(values: Sequence[str]) -> str:
    """A tuple of strings as black writes it (double quotes), for the names bn2gn bakes into snippets."""
    values = tuple(values)
    if any('"' in v or "\\" in v or not v.isprintable() for v in values):
        return repr(values)
    items = ", ".join(f'"{v}"' for v in values)
    return f"({items},)" if len(values) == 1 else f"({items})"
