"""BN2GN203: re-assert eval on the backbone BatchNorm after every ``X.train()``.

``model.train()`` puts every BatchNorm back in training mode, so a freeze done once is undone at
the start of each epoch. Right after each statement that switches a model to training
(``X.train()``, ``X.train(True)``, ``X.train(mode=...)``) this plans ``keep_backbone_bn_eval(X)``
in the same block. ``X.train(False)``, ``X.eval()`` and methods that merely share the name
(``trainer.train(epoch, loader)``) are left alone.
"""

from __future__ import annotations

import ast
import dataclasses
from typing import List, Optional, Sequence, Tuple

from ...core.ast_tools import dotted
from ...core.rule_codes import Rule
from ..support.names import KEEP
from ..support.trainer_facts import Facts, Statement, call_named
from .bn2gn201_freeze_before_optimizer import Insertion, anchor_of

ON, OFF, UNKNOWN = "on", "off", "unknown"
_NESTED_SCOPES = (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_SIMPLE_KINDS = (ast.Expr, ast.Assign, ast.AnnAssign, ast.AugAssign)


@dataclasses.dataclass
class TrainSwitch:
    """One ``X.train(...)`` call that switches a model to training (or might)."""

    call: ast.Call
    statement: Optional[Statement]
    receiver: str
    line: int
    scope: str
    mode: str
    problem: str = ""  # why it cannot be patched, for the report


def train_mode(call, text: str = "") -> Optional[str]:
    """ON / OFF / UNKNOWN for ``X.train(...)`` on a module; None when the call is no mode switch.

    ``call``: an ``ast.Call`` (``text``: the file, to read integer literals as written), or a LibCST
    call, read through its code."""
    if not isinstance(call, ast.AST):
        import libcst as cst

        text = cst.Module(body=[]).code_for_node(call)
        call = ast.parse(text, mode="eval").body
    func = call.func
    if not (isinstance(func, ast.Attribute) and func.attr == "train") or dotted(func.value) is None:
        return None
    arguments = [(None, a) for a in call.args] + [(k.arg, k.value) for k in call.keywords]
    if not arguments:
        return ON
    keyword, value = arguments[0]
    if len(arguments) > 1 or isinstance(value, ast.Starred) or keyword not in (None, "mode"):
        return None  # ``**kwargs`` has no keyword name: LibCST's star argument
    if call.keywords and call.keywords[0].arg is None:
        return None
    if isinstance(value, ast.Constant) and value.value is False:
        return OFF
    if _is_integer(value) and _literal(value, text) == "0":
        return OFF
    if (isinstance(value, ast.Constant) and value.value is True) or _is_integer(value):
        return ON
    if (
        keyword
        or isinstance(value, (ast.Compare, ast.BoolOp))
        or (isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.Not))
    ):
        return ON  # a boolean expression: keeping the backbone in eval is right either way
    return UNKNOWN


def _is_integer(value: ast.AST) -> bool:
    return (
        isinstance(value, ast.Constant)
        and isinstance(value.value, int)
        and not isinstance(value.value, bool)
    )


def _literal(value: ast.Constant, text: str) -> str:
    """The integer as written (``0``, but not ``00`` or ``0x0``, is LibCST's ``Integer("0")``)."""
    if not text:
        return str(value.value)
    segment = ast.get_source_segment(text, value)
    return segment.strip("() \t") if segment else str(value.value)


def find_train_switches(facts: Facts) -> List[TrainSwitch]:
    """Every ``X.train(...)`` that is not ``train(False)``, in source order, with a problem if unpatchable."""
    own_train = _defines_non_module_train(facts)
    switches = []
    for call in facts.calls:
        if not (isinstance(call.func, ast.Attribute) and call.func.attr == "train"):
            continue
        mode = train_mode(call, facts.text)
        if mode in (None, OFF) or (mode == UNKNOWN and own_train):
            continue
        receiver = dotted(call.func.value)
        switch = TrainSwitch(
            call,
            facts.enclosing_statement(call),
            receiver,
            call.lineno,
            facts.scope(call),
            mode,
        )
        switch.problem = _problem(facts, switch)
        switches.append(switch)
    return switches


def _defines_non_module_train(facts: Facts) -> bool:
    """The file defines ``train(self, epoch, ...)``: then ``x.train(arg)`` most likely calls that method."""
    for function in facts.functions:
        if function.name != "train":
            continue
        names = [a.arg for a in function.args.args if a.arg not in ("self", "cls")]
        if names and names[0] != "mode":
            return True
    return False


def _problem(facts: Facts, switch: TrainSwitch) -> str:
    if switch.mode == UNKNOWN:
        return (
            f"{switch.receiver}.train(...) with a non-boolean argument may not be nn.Module.train; "
            f"add {KEEP}({switch.receiver}) after it by hand if it is"
        )
    node = facts.parent.get(switch.call)
    while node is not None and not isinstance(node, ast.stmt):
        if isinstance(node, _NESTED_SCOPES):
            return f"{switch.receiver}.train() inside a lambda or comprehension; add {KEEP} by hand"
        node = facts.parent.get(node)
    if node is None or not isinstance(node, _SIMPLE_KINDS):
        return (
            f"{switch.receiver}.train() is not a statement of its own; add {KEEP} by hand after it"
        )
    return ""


class KeepEvalAfterTrain:
    """Plan ``keep_backbone_bn_eval(X)`` right after each patchable ``X.train()`` statement.

    Nothing is planned where that call already follows the statement: a second run is a no-op.
    """

    def __init__(self, call_kwargs: str = ""):
        self.call_kwargs = call_kwargs

    def plan(self, facts: Facts, switches: Sequence[TrainSwitch]) -> Tuple[list, List[str]]:
        planned: List[Insertion] = []
        problems, seen = [], set()
        for switch in switches:
            if switch.problem:
                problems.append(f"{switch.line}: {switch.problem}")
                continue
            key = (id(switch.statement), switch.receiver)
            if key in seen or _followed_by_keep(facts, switch.statement):
                continue
            seen.add(key)
            planned.append(
                Insertion(
                    Rule.EVAL_AFTER_TRAIN,
                    anchor_of(facts, switch.statement),
                    "after",
                    f"{KEEP}({switch.receiver}{self.call_kwargs})\n",
                    switch.line,
                    switch.scope,
                    f"{KEEP}({switch.receiver}) after {switch.receiver}.train()",
                )
            )
        return planned, problems


def _followed_by_keep(facts: Facts, statement: Statement) -> bool:
    """True when the next statement of the block (or suite) is a call to keep_backbone_bn_eval."""
    body = facts.statements(statement.owner, statement.field)
    index = next((i for i, s in enumerate(body) if s is statement), None)
    if index is None or index + 1 >= len(body):
        return False
    follower = body[index + 1].head
    return (
        isinstance(follower, ast.Expr)
        and isinstance(follower.value, ast.Call)
        and call_named(follower.value, KEEP)
    )
