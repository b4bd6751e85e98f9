"""BN2GN203 (seed3 §4): re-assert eval on the backbone BatchNorm after every ``X.train()``.

``model.train()`` puts every BatchNorm back in training mode, so a freeze done once is undone at
the start of each epoch. Right after each statement that switches a model to training
(``X.train()``, ``X.train(True)``, ``X.train(mode=...)``) this plans ``keep_backbone_bn_eval(X)``
in the same block. ``X.train(False)``, ``X.eval()`` and methods that merely share the name
(``trainer.train(epoch, loader)``) are left alone.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Sequence, Tuple

import libcst as cst
import libcst.matchers as m
from libcst.metadata import ParentNodeProvider, PositionProvider

from ..rules import Rule
from .inject import (
    PlannedInsertion,
    dotted_name,
    enclosing_scope,
    enclosing_statement,
    format_snippet,
)
from .names import KEEP

ON, OFF, UNKNOWN = "on", "off", "unknown"
_KEEP_CALL = m.Call(func=m.Name(KEEP) | m.Attribute(attr=m.Name(KEEP)))
_NESTED_SCOPES = (cst.Lambda, cst.ListComp, cst.SetComp, cst.DictComp, cst.GeneratorExp)
_SIMPLE_KINDS = (cst.Expr, cst.Assign, cst.AnnAssign, cst.AugAssign)


@dataclasses.dataclass
class TrainSwitch:
    """One ``X.train(...)`` call that switches a model to training (or might)."""

    call: cst.Call
    statement: Optional[cst.CSTNode]
    receiver: str
    line: int
    scope: str
    mode: str
    problem: str = ""  # why it cannot be patched, for the report


def train_mode(call: cst.Call) -> Optional[str]:
    """ON / OFF / UNKNOWN for ``X.train(...)`` on a module; None when the call is no mode switch."""
    if (
        not m.matches(call.func, m.Attribute(attr=m.Name("train")))
        or dotted_name(call.func.value) is None
    ):
        return None
    if not call.args:
        return ON
    if (
        len(call.args) > 1
        or (call.args[0].keyword and call.args[0].keyword.value != "mode")
        or call.args[0].star
    ):
        return None
    value = call.args[0].value
    if m.matches(value, m.Name("False") | m.Integer("0")):
        return OFF
    if m.matches(value, m.Name("True") | m.Integer()):
        return ON
    if (
        call.args[0].keyword
        or isinstance(value, (cst.Comparison, cst.BooleanOperation))
        or m.matches(value, m.UnaryOperation(operator=m.Not()))
    ):
        return ON  # a boolean expression: keeping the backbone in eval is right either way
    return UNKNOWN


def find_train_switches(wrapper: cst.MetadataWrapper) -> List[TrainSwitch]:
    """Every ``X.train(...)`` that is not ``train(False)``, in source order, with a problem if unpatchable."""
    parents = wrapper.resolve(ParentNodeProvider)
    positions = wrapper.resolve(PositionProvider)
    own_train = _defines_non_module_train(wrapper.module)
    switches = []
    for call in m.findall(wrapper.module, m.Call(func=m.Attribute(attr=m.Name("train")))):
        mode = train_mode(call)
        if mode in (None, OFF) or (mode == UNKNOWN and own_train):
            continue
        receiver = dotted_name(call.func.value)
        switch = TrainSwitch(
            call,
            enclosing_statement(call, parents),
            receiver,
            positions[call].start.line,
            enclosing_scope(call, parents),
            mode,
        )
        switch.problem = _problem(switch, parents)
        switches.append(switch)
    return switches


def _defines_non_module_train(module: cst.Module) -> bool:
    """The file defines ``train(self, epoch, ...)``: then ``x.train(arg)`` most likely calls that method."""
    for function in m.findall(module, m.FunctionDef(name=m.Name("train"))):
        names = [
            p.name.value for p in function.params.params if p.name.value not in ("self", "cls")
        ]
        if names and names[0] != "mode":
            return True
    return False


def _problem(switch: TrainSwitch, parents) -> str:
    if switch.mode == UNKNOWN:
        return (
            f"{switch.receiver}.train(...) with a non-boolean argument may not be nn.Module.train; "
            f"add {KEEP}({switch.receiver}) after it by hand if it is"
        )
    node = switch.call
    while node is not switch.statement and node in parents:
        node = parents[node]
        if isinstance(node, _NESTED_SCOPES):
            return f"{switch.receiver}.train() inside a lambda or comprehension; add {KEEP} by hand"
    small = _small_statement(switch)
    if small is None or not isinstance(small, _SIMPLE_KINDS):
        return (
            f"{switch.receiver}.train() is not a statement of its own; add {KEEP} by hand after it"
        )
    return ""


def _small_statement(switch: TrainSwitch) -> Optional[cst.CSTNode]:
    statement = switch.statement
    if isinstance(statement, cst.SimpleStatementLine):
        owners = [s for s in statement.body if _contains(s, switch.call)]
        return owners[0] if owners else None
    return statement if isinstance(statement, cst.BaseSmallStatement) else None


def _contains(node: cst.CSTNode, target: cst.CSTNode) -> bool:
    return any(found is target for found in m.findall(node, m.Call()))


class KeepEvalAfterTrain:
    """Plan ``keep_backbone_bn_eval(X)`` right after each patchable ``X.train()`` statement.

    Nothing is planned where that call already follows the statement: a second run is a no-op.
    """

    def __init__(self, call_kwargs: str = ""):
        self.call_kwargs = call_kwargs

    def plan(
        self, wrapper: cst.MetadataWrapper, switches: Sequence[TrainSwitch]
    ) -> Tuple[list, List[str]]:
        parents = wrapper.resolve(ParentNodeProvider)
        planned: List[PlannedInsertion] = []
        problems, seen = [], set()
        for switch in switches:
            if switch.problem:
                problems.append(f"{switch.line}: {switch.problem}")
                continue
            key = (id(switch.statement), switch.receiver)
            if key in seen or _followed_by_keep(switch.statement, parents):
                continue
            seen.add(key)
            code = f"{KEEP}({switch.receiver}{self.call_kwargs})\n"
            planned.append(
                PlannedInsertion(
                    Rule.EVAL_AFTER_TRAIN,
                    switch.statement,
                    "after",
                    format_snippet(code),
                    switch.line,
                    switch.scope,
                    f"{KEEP}({switch.receiver}) after {switch.receiver}.train()",
                )
            )
        return planned, problems


def _followed_by_keep(statement: cst.CSTNode, parents) -> bool:
    """True when the next statement of the block (or suite) is a call to keep_backbone_bn_eval."""
    block = parents.get(statement)
    body = list(block.body) if block is not None else []
    index = next((i for i, s in enumerate(body) if s is statement), None)
    if index is None or index + 1 >= len(body):
        return False
    follower = body[index + 1]
    return m.matches(follower, m.Expr(value=_KEEP_CALL)) or m.matches(
        follower, m.SimpleStatementLine(body=[m.Expr(value=_KEEP_CALL), m.ZeroOrMore()])
    )
