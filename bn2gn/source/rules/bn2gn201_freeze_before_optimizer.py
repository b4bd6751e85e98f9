"""BN2GN201: call ``freeze_backbone_bn(model)`` right before the optimizer is built.

Finds every optimizer construction (``torch.optim.<Name>(...)`` however torch.optim was imported,
the common builders, ``--optimizer-call`` names, or the statement at ``--insert-before-line``),
works out which model it trains, and plans the freeze plus a line reporting the count, in the
file's own logging style. The frozen parameters then have ``requires_grad == False`` before the
optimizer sees them.
"""

from __future__ import annotations

import ast
import dataclasses
from typing import List, Optional, Sequence

from ...core.errors import Opt, message_text
from ...core.rule_codes import Rule
from ..support.bound_names import binder_between, bound_before, lambda_parameters, root_name
from ..support.names import FREEZE, OPTIMIZER_BUILDERS, TORCH_OPTIMIZERS, OptimizerNames  # noqa: F401 (re-exported)
from ..support.recognise import optimizer_names, own_builder_calls
from ..support.trainer_facts import (
    FUNCTIONS,
    Facts,
    Statement,
    argument_values,
    call_named,
    defined_or_imported_names,
    dotted,
    identifiers,
    model_from_receivers,
    parameter_names,
    parameter_receivers,
)

COUNT_VAR = "frozen_count"
REPORT_TEXT = "Frozen backbone BatchNorm modules"


class NeedsUserInput(Exception):
    """bn2gn cannot decide on its own; the message names the flag that settles it (exit 2).

    ``line`` and ``reason`` say where and why without naming a flag, for a front end that words
    the way out in its own options (``bn2gn migrate`` points at ``bn2gn patch-trainer FILE``)."""

    def __init__(self, message, line: Optional[int] = None, reason: str = ""):
        super().__init__(message)
        self.line = line
        self.reason = reason


@dataclasses.dataclass
class Insertion:
    """Code to insert right before or after a statement, and what the report says about it.

    The statement is named by where it starts (line, column in characters, as LibCST counts), so
    the plan is made on ``ast`` and applied to LibCST's tree."""

    rule: Rule
    anchor: tuple  # (line, column) of the statement
    where: str  # "before" | "after"
    code: str  # the snippet, before formatting
    line: int
    scope: str
    message: str


def anchor_of(facts: Facts, statement: Statement) -> tuple:
    return facts.position(statement.head.lineno, statement.head.col_offset)


class FreezeBeforeOptimizer:
    """Plan ``frozen_count = freeze_backbone_bn(model)`` and a report line before each optimizer site.

    A site already preceded, in the same function, by a call to freeze_backbone_bn (bn2gn's own
    insertion or the user's) gets nothing: that is what makes a second run a no-op.
    """

    def __init__(self, model_var: Optional[str] = None, call_kwargs: str = ""):
        self.model_var = model_var
        self.call_kwargs = call_kwargs

    def plan(self, facts: Facts, sites: Sequence[OptimizerSite], path) -> List[Insertion]:
        frozen = _Freezes(facts)
        for call in facts.calls:
            if call_named(call, FREEZE):
                statement = facts.enclosing_statement(call)
                if statement is not None:  # by position: `if x: freeze(m); opt = SGD(...)`
                    frozen.add(statement, (call.lineno, call.col_offset))
        planned = []
        for site in sites:
            if frozen.covers(site.statement, _position(site)):
                continue
            model = self.model_var or site.model
            if model is None:
                reason = (
                    f"cannot tell which model the optimizer built here (in {site.scope}) trains"
                )
                raise NeedsUserInput(
                    message_text(
                        f"{path}:{site.line}: {reason}; name it with ", Opt("model_var", "NAME")
                    ),
                    site.line,
                    reason,
                )
            _refuse_unbound(facts, site, model, path, bool(self.model_var))
            frozen.add(site.statement, (site.line, -1))  # the freeze planned right before it
            code = f"{COUNT_VAR} = {FREEZE}({model}{self.call_kwargs})\n" + report_line(
                facts, site.statement
            )
            planned.append(
                Insertion(
                    Rule.FREEZE_BEFORE_OPTIMIZER,
                    anchor_of(facts, site.statement),
                    "before",
                    code,
                    site.line,
                    site.scope,
                    f"{FREEZE}({model}) before the optimizer ({site.name})",
                )
            )
        return planned


def _position(site: OptimizerSite) -> tuple:
    """Where the optimizer is built, as (line, column): a freeze earlier in the same one-line
    suite covers it."""
    return (site.call.lineno, site.call.col_offset) if site.call else (site.line, 0)


class _Freezes:
    """Where the backbone is already frozen: a freeze covers a later statement of its own block, and
    everything nested in those statements, within the same function. A freeze inside one branch of an
    ``if``/``elif``/``try`` does not cover the other branches, so each optimizer built there gets its own."""

    def __init__(self, facts: Facts):
        self.facts = facts
        self.by_block: dict = {}  # block -> lines of freeze statements directly in it

    def add(self, statement: Statement, position: tuple) -> None:
        self.by_block.setdefault(statement.block, []).append(position)

    def covers(self, statement: Statement, position: tuple) -> bool:
        node = statement.head
        while node is not None:
            owner = self.facts.place.get(node) if isinstance(node, ast.stmt) else None
            if owner is not None and not self.facts.is_elif(node):
                block = (id(owner[0]), owner[1])
                if any(frozen < position for frozen in self.by_block.get(block, ())):
                    return True
            if isinstance(node, (*FUNCTIONS, ast.Lambda)):
                return False  # a freeze outside the function does not run when the function does
            node = self.facts.parent.get(node)
        return False


def _refuse_unbound(facts: Facts, site: OptimizerSite, model: str, path, named: bool) -> None:
    """The freeze goes before the statement: every name it uses must exist there."""
    name = root_name(model)
    if name is None:
        return
    binder = site.call and binder_between(facts, site.call, site.statement.head, name)
    if binder is None and bound_before(facts, site.statement, name):
        return
    where = f"before line {site.line} (in {site.scope})"
    if binder is not None:
        kind = "lambda" if isinstance(binder, ast.Lambda) else "comprehension"
        why = f"{name} is bound only inside the {kind} that builds the optimizer, not {where}"
    else:
        why = f"{name} is not bound {where}, where the freeze would go"
    if named:
        raise NeedsUserInput(
            message_text(f"{path}:{site.line}: ", Opt("model_var", model), f": {why}")
        )
    raise NeedsUserInput(
        message_text(
            f"{path}:{site.line}: {why}; name the model to freeze there with ",
            Opt("model_var", "NAME"),
        )
    )


def report_line(facts: Facts, statement: Statement) -> str:
    """The line that reports the count: ``logger.info`` / ``logger.write`` when the file logs, else print."""
    visible = _visible_names(facts, statement)
    methods = {}
    for call in facts.calls:
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr in ("info", "write"):
            name = dotted(func.value) or ""
            if "log" in name.rpartition(".")[2].lower() and name.split(".")[0] in visible:
                methods.setdefault(name, set()).add(func.attr)
    stdlib = {
        dotted(target)
        for assign in facts.assigns
        if isinstance(assign.value, ast.Call) and call_named(assign.value, "getLogger")
        for target in assign.targets
    }
    for name in sorted(methods, key=lambda n: ("info" not in methods[n], n)):
        if "info" in methods[name] and name in stdlib:
            return f'{name}.info("{REPORT_TEXT}: %d", {COUNT_VAR})\n'
        if "info" in methods[name]:
            return f'{name}.info(f"{REPORT_TEXT}: {{{COUNT_VAR}}}")\n'
        return f'{name}.write(f"{REPORT_TEXT}: {{{COUNT_VAR}}}\\n")\n'
    return f'print(f"{REPORT_TEXT}: {{{COUNT_VAR}}}")\n'


def _visible_names(facts: Facts, statement: Statement) -> set:
    """Names bound when ``statement`` runs: module-level ones (only earlier ones for module-level code)
    plus the parameters and earlier assignments of the enclosing functions."""
    line = statement.line
    function = facts.innermost_function(statement.head)
    top = facts.module_statements()
    if function is None:
        top = [s for s in top if s.line < line]
    names = defined_or_imported_names(facts, top)
    while function is not None:
        names |= parameter_names(function)
        names |= {
            target.id
            for assign in facts.assigns
            for target in assign.targets
            if isinstance(target, ast.Name)
            and target.lineno < line
            and facts.inside(assign, function)
        }
        function = facts.innermost_function(function)
    return names


def collect_optimizer_names(facts: Facts, extra_calls: Sequence[str] = ()) -> OptimizerNames:
    """Read every import in the file (function-local ones too) for the names of torch.optim."""
    return optimizer_names(facts.imports, extra_calls)


@dataclasses.dataclass
class OptimizerSite:
    """One optimizer construction: the call, the statement to insert before, and the model it trains."""

    call: Optional[ast.Call]
    statement: Statement
    line: int
    scope: str
    name: str
    model: Optional[str] = None


def find_optimizer_sites(facts: Facts, names: OptimizerNames) -> List[OptimizerSite]:
    """Every optimizer construction in the file, in source order.

    A function of this file that builds the optimizer from a parameter it was given (so the model
    is not visible inside it) is treated as a builder: its call sites are patched instead.
    """
    direct, delegating, local_builders, lambdas = [], set(), set(), {}
    for call in facts.calls:
        name = dotted(call.func)
        if name and names.is_direct(name):
            site = _site(facts, call, name)
            site.model = model_of_call(facts, call)
            builder = _lambda_builder(facts, site)
            if builder is not None:  # `make = lambda m: SGD(m.parameters())`: patch make(...)
                lambdas[builder[0]] = builder[1]
                delegating.add(builder[0])
                continue
            function = facts.innermost_function(call)
            if function is not None:
                local_builders.add(function.name)
                if site.model is None and _is_builder(facts, function, call, site.statement):
                    delegating.add(function.name)
                    continue
            direct.append(site)
    builders = OptimizerNames(
        names.namespaces, names.classes, names.builders + tuple(sorted(delegating))
    )
    sites = list(direct)
    for call in facts.calls:
        name = dotted(call.func)
        if not name or names.is_direct(name) or not builders.is_builder(name):
            continue
        last = name.rpartition(".")[2]
        if last in local_builders and last not in delegating:
            continue  # the construction inside that function is patched instead
        site = _site(facts, call, name)
        site.model = (
            model_of_call(facts, call)
            or _passed_argument(call, lambdas.get(last))
            or model_argument(call)
        )
        sites.append(site)
    sites += own_builder_sites(facts, names, sites)
    return sorted(sites, key=lambda s: (s.line, s.call.col_offset if s.call else 0))


def _lambda_builder(facts: Facts, site: OptimizerSite) -> Optional[tuple]:
    """``(name, index)`` when the optimizer is built by ``name = lambda ...`` from its parameter
    number ``index``: the model is what each call of ``name`` passes there."""
    model = site.model and root_name(site.model)
    binder = model and binder_between(facts, site.call, site.statement.head, model)
    head = site.statement.head
    if (
        not isinstance(binder, ast.Lambda)
        or not isinstance(head, ast.Assign)
        or head.value is not binder
        or len(head.targets) != 1
        or not isinstance(head.targets[0], ast.Name)
    ):
        return None
    name = head.targets[0].id
    if not any(call_named(other, name) for other in facts.calls):
        return None
    return name, lambda_parameters(binder).index(model)


def _passed_argument(call: ast.Call, index: Optional[int]) -> Optional[str]:
    if index is None or index >= len(call.args):
        return None
    return dotted(call.args[index])


def own_builder_sites(
    facts: Facts, names: OptimizerNames, found: Sequence[OptimizerSite]
) -> List[OptimizerSite]:
    """``optimizer = build_one_cycle_optimizer(model, cfg)``: a call no recogniser knows whose result
    is kept as the optimizer and that is given the model is the repository's own builder, so an
    optimizer chosen by a flag between it and ``build_optimizer`` is frozen on both paths."""
    taken = {id(site.statement) for site in found}
    sites = []
    for _, call, name in own_builder_calls(facts, names):
        model = model_of_call(facts, call) or model_argument(call)
        site = _site(facts, call, name)
        if model is not None and id(site.statement) not in taken and not site.statement.suite:
            site.model = model
            sites.append(site)
    return sites


def undecided_builders(facts: Facts, names: OptimizerNames, sites: Sequence[OptimizerSite]):
    """``(line, message)`` for each ``optimizer = NAME(...)`` bn2gn cannot tell the model of (it is
    given no model), so no freeze goes before it: the option that settles it is in the message."""
    planned = {id(site.call) for site in sites}
    notes = []
    for assign, call, name in own_builder_calls(facts, names):
        if id(call) in planned:
            continue
        target = dotted(assign.targets[0])
        notes.append(
            (
                call.lineno,
                message_text(
                    f"{target} = {name}(...) may build the optimizer, but bn2gn cannot tell which "
                    "model it trains, so nothing was inserted before it; if it builds the optimizer, "
                    "name it with ",
                    Opt("optimizer_call", name),
                    " (and the model, if bn2gn then asks)",
                ),
            )
        )
    return notes


def site_at_line(facts: Facts, line: int) -> Optional[OptimizerSite]:
    """The outermost statement starting on ``line`` (for ``--insert-before-line``)."""
    pending = [facts.module_statements()]
    while pending:
        for statement in pending.pop(0):
            if statement.suite:
                continue
            if statement.line == line:
                site = OptimizerSite(
                    None, statement, line, facts.scope(statement.head), f"line {line}"
                )
                site.model = model_from_receivers(
                    r for member in statement.members for r in parameter_receivers(member)
                )
                return site
            pending.extend(_bodies(facts, statement.head))
    return None


def _bodies(facts: Facts, node: ast.AST) -> list:
    """The statement lists nested directly in a compound statement, ``elif`` branches included."""
    found = []
    for field in ("body", "orelse", "finalbody"):
        if isinstance(getattr(node, field, None), list):
            found.append(facts.statements(node, field))
            if field == "orelse" and node.orelse and facts.is_elif(node.orelse[0]):
                found.extend(_bodies(facts, node.orelse[0]))
    for handler in getattr(node, "handlers", ()) or ():
        found.append(facts.statements(handler, "body"))
    for case in getattr(node, "cases", ()) or ():
        found.append(facts.statements(case, "body"))
    return found


def _site(facts: Facts, call: ast.Call, name: str) -> OptimizerSite:
    statement = facts.enclosing_statement(call)
    return OptimizerSite(call, statement, statement.line, facts.scope(call), name)


def model_of_call(facts: Facts, call: ast.Call) -> Optional[str]:
    """The model whose parameters reach the optimizer: ``X`` in ``X.parameters()``, directly or
    through a variable built earlier in the same function (``params = [...]``)."""
    values = argument_values(call)
    receivers = [r for value in values for r in parameter_receivers(value)]
    for value in values:
        if isinstance(value, ast.Name):
            receivers.extend(_receivers_via_variable(facts, value.id, call))
    return model_from_receivers(receivers)


def model_argument(call: ast.Call) -> Optional[str]:
    """For builder calls such as ``build_optimizer(cfg, model)``: the one argument that names a model."""
    found = []
    pairs = [("", a.value if isinstance(a, ast.Starred) else a) for a in call.args]
    pairs += [(k.arg or "", k.value) for k in call.keywords]
    for keyword, value in pairs:
        name = dotted(value)
        if name and any(
            w in (keyword or name.rpartition(".")[2]).lower() for w in ("model", "net", "detector")
        ):
            found.append(name)
    return found[0] if len(set(found)) == 1 else None


def _receivers_via_variable(facts: Facts, variable: str, call: ast.Call) -> List[str]:
    """Receivers in the statements of the same function that assign, extend or append to ``variable``."""
    scope = facts.innermost_function(call)
    receivers, seen = [], set()
    for stmt in facts.mutators.get(variable, ()):
        if scope is not None and not facts.inside(stmt, scope):
            continue
        statement = facts.statement_of(stmt)
        if statement is None or statement.suite or id(statement) in seen:
            continue  # LibCST's SimpleStatementLine: lines of a block, not one-line suites
        seen.add(id(statement))
        for member in statement.members:
            receivers.extend(parameter_receivers(member))
        node = facts.parent.get(statement.head)
        while node is not None and node is not scope:
            if isinstance(node, (ast.For, ast.AsyncFor)):
                receivers.extend(parameter_receivers(node.iter))
            node = facts.parent.get(node)
    return receivers


def _is_builder(facts: Facts, function, call: ast.Call, statement: Statement) -> bool:
    """``return torch.optim.X(<its own arguments>)`` in a function this file calls: patch the callers."""
    head = statement.head
    if (
        statement.suite
        or len(statement.members) != 1
        or not isinstance(head, ast.Return)
        or head.value is not call
    ):
        return False
    params = parameter_names(function) - {"self", "cls"}
    if not any(params & identifiers(value) for value in argument_values(call)):
        return False
    return any(call_named(other, function.name) for other in facts.calls)
