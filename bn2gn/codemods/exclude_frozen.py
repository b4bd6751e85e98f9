"""BN2GN204 (seed2, "exclude frozen parameters from the optimizer"; opt-in): pass the optimizer only
the parameters that require grad.

``X.parameters()`` passed straight to the optimizer (or as a param group's ``'params'``) becomes
``[p for p in X.parameters() if p.requires_grad]``. It relies on BN2GN201 freezing the backbone
first. Off by default: an optimizer state saved before the change no longer matches the groups.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import libcst as cst
import libcst.matchers as m
from libcst.metadata import ParentNodeProvider, PositionProvider

from ..rules import Rule
from .inject import dotted_name

_PARAMETERS = m.Call(func=m.Attribute(attr=m.Name("parameters")))


class ExcludeFrozenParameters:
    """Plan call rewrites for the ``X.parameters()`` arguments of each optimizer site."""

    def plan(self, wrapper: cst.MetadataWrapper, sites: Sequence) -> Tuple[dict, list, List[str]]:
        """Return (call rewrites keyed by original call, [(rule, line, scope, message)], problems)."""
        parents = wrapper.resolve(ParentNodeProvider)
        positions = wrapper.resolve(PositionProvider)
        rewrites, changes, problems = {}, [], []
        for site in sites:
            if site.call is None:
                continue
            if m.findall(site.call, m.Attribute(attr=m.Name("requires_grad"))):
                continue  # the arguments already filter on requires_grad
            targets = [
                c
                for c in m.findall(site.call, _PARAMETERS)
                if dotted_name(c.func.value) and _passed_directly(c, site.call, parents)
            ]
            if not targets:
                problems.append(
                    f"{site.line}: the optimizer's parameters are not passed as X.parameters(); "
                    "filter them on p.requires_grad by hand to exclude frozen ones"
                )
            for call in targets:
                rewrites[call] = only_trainable
                receiver = dotted_name(call.func.value)
                changes.append(
                    (
                        Rule.EXCLUDE_FROZEN_FROM_OPTIMIZER,
                        positions[call].start.line,
                        site.scope,
                        f"{receiver}.parameters() -> only parameters that require grad",
                    )
                )
        return rewrites, changes, problems


def only_trainable(call: cst.Call) -> cst.BaseExpression:
    """``X.parameters()`` -> ``[p for p in X.parameters() if p.requires_grad]``."""
    return cst.ListComp(
        elt=cst.Name("p"),
        for_in=cst.CompFor(
            target=cst.Name("p"),
            iter=call,
            ifs=[
                cst.CompIf(test=cst.Attribute(value=cst.Name("p"), attr=cst.Name("requires_grad")))
            ],
        ),
    )


def _passed_directly(call: cst.Call, optimizer: cst.Call, parents) -> bool:
    """An argument of the optimizer, a list element, or the value of a param-group dict entry."""
    node = parents.get(call)
    while isinstance(node, (cst.Arg, cst.Element, cst.DictElement, cst.List, cst.Tuple, cst.Dict)):
        if isinstance(node, cst.DictElement) and not (
            isinstance(node.key, cst.SimpleString) and node.key.evaluated_value == "params"
        ):
            return False
        if isinstance(node, cst.Arg):
            return parents.get(node) is optimizer
        node = parents.get(node)
    return False
