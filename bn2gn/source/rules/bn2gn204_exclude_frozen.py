"""BN2GN204 (opt-in): pass the optimizer only
the parameters that require grad.

``X.parameters()`` passed straight to the optimizer (or as a param group's ``'params'``) becomes
``[p for p in X.parameters() if p.requires_grad]``. It relies on BN2GN201 freezing the backbone
first. Off by default: an optimizer state saved before the change no longer matches the groups.
"""

from __future__ import annotations

import ast
from typing import List, Sequence, Tuple

from ...core.ast_tools import dotted
from ...core.rule_codes import Rule
from ..support.trainer_facts import Facts


class ExcludeFrozenParameters:
    """Plan call rewrites for the ``X.parameters()`` arguments of each optimizer site."""

    def plan(self, facts: Facts, sites: Sequence) -> Tuple[dict, list, List[str]]:
        """Return (call rewrites keyed by where the ``parameters`` name ends, as LibCST counts lines and
        columns; [(rule, line, scope, message)], problems)."""
        rewrites, changes, problems = {}, [], []
        for site in sites:
            if site.call is None:
                continue
            inner = list(ast.walk(site.call))
            if any(isinstance(n, ast.Attribute) and n.attr == "requires_grad" for n in inner):
                continue  # the arguments already filter on requires_grad
            calls = sorted(
                (n for n in inner if isinstance(n, ast.Call)),
                key=lambda c: (c.lineno, c.col_offset),
            )
            targets = [
                c
                for c in calls
                if isinstance(c.func, ast.Attribute)
                and c.func.attr == "parameters"
                and dotted(c.func.value)
                and _passed_directly(facts, c, site.call)
            ]
            if not targets:
                problems.append(
                    f"{site.line}: the optimizer's parameters are not passed as X.parameters(); "
                    "filter them on p.requires_grad by hand to exclude frozen ones"
                )
            for call in targets:
                rewrites[facts.position(call.func.end_lineno, call.func.end_col_offset)] = (
                    only_trainable
                )
                receiver = dotted(call.func.value)
                changes.append(
                    (
                        Rule.EXCLUDE_FROZEN_FROM_OPTIMIZER,
                        call.lineno,
                        site.scope,
                        f"{receiver}.parameters() -> only parameters that require grad",
                    )
                )
        return rewrites, changes, problems


def only_trainable(call):
    """``X.parameters()`` -> ``[p for p in X.parameters() if p.requires_grad]`` (LibCST nodes)."""
    import libcst as cst

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


def _passed_directly(facts: Facts, call: ast.Call, optimizer: ast.Call) -> bool:
    """An argument of the optimizer, a list or tuple element, or the value of a param-group dict entry."""
    child, node = call, facts.parent.get(call)
    while node is not None:
        if isinstance(node, ast.keyword):
            return facts.parent.get(node) is optimizer
        if isinstance(node, ast.Starred):
            owner = facts.parent.get(node)
            return owner is optimizer and any(a is node for a in owner.args)
        if isinstance(node, ast.Call):
            return node is optimizer and any(a is child for a in node.args)
        if isinstance(node, ast.Dict):
            index = next((i for i, v in enumerate(node.values) if v is child), None)
            key = node.keys[index] if index is not None else None
            if not (isinstance(key, ast.Constant) and key.value == "params"):
                return False
        elif not isinstance(node, (ast.List, ast.Tuple)):
            return False
        child, node = node, facts.parent.get(node)
    return False
