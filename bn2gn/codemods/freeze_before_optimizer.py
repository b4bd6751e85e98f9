"""BN2GN201 (seed3 §3): call ``freeze_backbone_bn(model)`` right before the optimizer is built.

Finds every optimizer construction (``torch.optim.<Name>(...)`` however torch.optim was imported,
the common builders, ``--optimizer-call`` names, or the statement at ``--insert-before-line``),
works out which model it trains, and plans the freeze plus a line reporting the count, in the
file's own logging style. The frozen parameters then have ``requires_grad == False`` before the
optimizer sees them.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Sequence

import libcst as cst
import libcst.matchers as m
from libcst.metadata import ParentNodeProvider, PositionProvider

from ..errors import Opt, message_text
from ..rules import Rule
from .inject import (
    PlannedInsertion,
    defined_or_imported_names,
    dotted_name,
    enclosing_scope,
    enclosing_statement,
    format_snippet,
)
from .names import FREEZE, OPTIMIZER_BUILDERS, TORCH_OPTIMIZERS, OptimizerNames  # noqa: F401 (re-exported)

COUNT_VAR = "frozen_count"
REPORT_TEXT = "Frozen backbone BatchNorm modules"


class NeedsUserInput(Exception):
    """bn2gn cannot decide on its own; the message names the flag that settles it (exit 2)."""


class FreezeBeforeOptimizer:
    """Plan ``frozen_count = freeze_backbone_bn(model)`` and a report line before each optimizer site.

    A site already preceded, in the same function, by a call to freeze_backbone_bn (bn2gn's own
    insertion or the user's) gets nothing: that is what makes a second run a no-op.
    """

    def __init__(self, model_var: Optional[str] = None, call_kwargs: str = ""):
        self.model_var = model_var
        self.call_kwargs = call_kwargs

    def plan(
        self, wrapper: cst.MetadataWrapper, sites: Sequence[OptimizerSite], path
    ) -> List[PlannedInsertion]:
        parents = wrapper.resolve(ParentNodeProvider)
        positions = wrapper.resolve(PositionProvider)
        frozen = _Freezes(parents)
        for call in m.findall(
            wrapper.module, m.Call(func=m.Name(FREEZE) | m.Attribute(attr=m.Name(FREEZE)))
        ):
            statement = enclosing_statement(call, parents)
            if statement is not None:
                frozen.add(statement, positions[statement].start.line)
        planned = []
        for site in sites:
            if frozen.covers(site.statement, site.line):
                continue
            model = self.model_var or site.model
            if model is None:
                raise NeedsUserInput(
                    message_text(
                        f"{path}:{site.line}: cannot tell which model the optimizer built here "
                        f"(in {site.scope}) trains; name it with ",
                        Opt("model_var", "NAME"),
                    )
                )
            frozen.add(site.statement, site.line - 0.5)  # the freeze planned right before it
            code = f"{COUNT_VAR} = {FREEZE}({model}{self.call_kwargs})\n" + report_line(
                wrapper.module, site.statement, parents, positions
            )
            planned.append(
                PlannedInsertion(
                    Rule.FREEZE_BEFORE_OPTIMIZER,
                    site.statement,
                    "before",
                    format_snippet(code),
                    site.line,
                    site.scope,
                    f"{FREEZE}({model}) before the optimizer ({site.name})",
                )
            )
        return planned


class _Freezes:
    """Where the backbone is already frozen: a freeze covers a later statement of its own block, and
    everything nested in those statements, within the same function. A freeze inside one branch of an
    ``if``/``elif``/``try`` does not cover the other branches, so each optimizer built there gets its own."""

    def __init__(self, parents):
        self.parents = parents
        self.by_block: dict = {}  # block node -> lines of freeze statements directly in it

    def add(self, statement: cst.CSTNode, line: float) -> None:
        self.by_block.setdefault(self.parents.get(statement), []).append(line)

    def covers(self, statement: cst.CSTNode, line: int) -> bool:
        node = statement
        while node is not None:
            block = self.parents.get(node)
            if any(frozen < line for frozen in self.by_block.get(block, ())):
                return True
            if isinstance(node, (cst.FunctionDef, cst.Lambda)):
                return False  # a freeze outside the function does not run when the function does
            node = block
        return False


def report_line(module: cst.Module, statement: cst.CSTNode, parents, positions) -> str:
    """The line that reports the count: ``logger.info`` / ``logger.write`` when the file logs, else print."""
    visible = _visible_names(module, statement, parents, positions)
    methods = {}
    for call in m.findall(module, m.Call(func=m.Attribute(attr=m.Name("info") | m.Name("write")))):
        name = dotted_name(call.func.value) or ""
        if "log" in name.rpartition(".")[2].lower() and name.split(".")[0] in visible:
            methods.setdefault(name, set()).add(call.func.attr.value)
    stdlib = {
        dotted_name(t.target)
        for t in m.findall(module, m.AssignTarget())
        if _assigned_from_get_logger(t, parents)
    }
    for name in sorted(methods, key=lambda n: ("info" not in methods[n], n)):
        if "info" in methods[name] and name in stdlib:
            return f'{name}.info("{REPORT_TEXT}: %d", {COUNT_VAR})\n'
        if "info" in methods[name]:
            return f'{name}.info(f"{REPORT_TEXT}: {{{COUNT_VAR}}}")\n'
        return f'{name}.write(f"{REPORT_TEXT}: {{{COUNT_VAR}}}\\n")\n'
    return f'print(f"{REPORT_TEXT}: {{{COUNT_VAR}}}")\n'


def _visible_names(module, statement, parents, positions) -> set:
    """Names bound when ``statement`` runs: module-level ones (only earlier ones for module-level code)
    plus the parameters and earlier assignments of the enclosing functions."""
    line = positions[statement].start.line
    function = _innermost_function(statement, parents)
    top = (
        module.body
        if function is not None
        else [s for s in module.body if positions[s].start.line < line]
    )
    names = defined_or_imported_names(module.with_changes(body=top))
    while function is not None:
        names |= {p.name.value for p in function.params.params + function.params.kwonly_params}
        names |= {
            t.target.value
            for t in m.findall(function.body, m.AssignTarget(target=m.Name()))
            if positions[t].start.line < line
        }
        function = _innermost_function(function, parents)
    return names


def _assigned_from_get_logger(target: cst.AssignTarget, parents) -> bool:
    assign = parents.get(target)
    return isinstance(assign, cst.Assign) and m.matches(
        assign.value, m.Call(func=m.Name("getLogger") | m.Attribute(attr=m.Name("getLogger")))
    )


def collect_optimizer_names(module: cst.Module, extra_calls: Sequence[str] = ()) -> OptimizerNames:
    """Read every import in the file (function-local ones too) for the names of torch.optim."""
    namespaces, classes = set(), set()
    for node in m.findall(module, m.Import()):
        for alias in node.names:
            dotted, bound = _code(alias.name), _asname(alias)
            if dotted == "torch.optim" and bound:
                namespaces.add(bound)
            elif dotted == "torch" and bound:
                namespaces.add(f"{bound}.optim")
            elif dotted == "torch" or dotted.startswith("torch."):
                namespaces.add("torch.optim")
    for node in m.findall(module, m.ImportFrom()):
        if node.relative or node.module is None:
            continue
        source = _code(node.module)
        if source == "torch.optim" and isinstance(node.names, cst.ImportStar):
            classes |= TORCH_OPTIMIZERS
        elif source in ("torch", "torch.optim") and not isinstance(node.names, cst.ImportStar):
            for alias in node.names:
                name = _code(alias.name)
                if source == "torch" and name == "optim":
                    namespaces.add(_asname(alias) or "optim")
                elif source == "torch.optim" and name[:1].isupper() and name != "Optimizer":
                    classes.add(_asname(alias) or name)
    return OptimizerNames(namespaces, classes, tuple(OPTIMIZER_BUILDERS) + tuple(extra_calls))


@dataclasses.dataclass
class OptimizerSite:
    """One optimizer construction: the call, the statement to insert before, and the model it trains."""

    call: Optional[cst.Call]
    statement: cst.CSTNode
    line: int
    scope: str
    name: str
    model: Optional[str] = None


def find_optimizer_sites(
    wrapper: cst.MetadataWrapper, names: OptimizerNames
) -> List[OptimizerSite]:
    """Every optimizer construction in the file, in source order.

    A function of this file that builds the optimizer from a parameter it was given (so the model
    is not visible inside it) is treated as a builder: its call sites are patched instead.
    """
    parents = wrapper.resolve(ParentNodeProvider)
    positions = wrapper.resolve(PositionProvider)
    direct, delegating, local_builders = [], set(), set()
    for call in m.findall(wrapper.module, m.Call()):
        name = dotted_name(call.func)
        if name and names.is_direct(name):
            site = _site(call, name, parents, positions)
            site.model = model_of_call(call, parents)
            function = _innermost_function(call, parents)
            if function is not None:
                local_builders.add(function.name.value)
                if site.model is None and _is_builder(
                    function, call, site.statement, wrapper.module
                ):
                    delegating.add(function.name.value)
                    continue
            direct.append(site)
    builders = OptimizerNames(
        names.namespaces, names.classes, names.builders + tuple(sorted(delegating))
    )
    sites = list(direct)
    for call in m.findall(wrapper.module, m.Call()):
        name = dotted_name(call.func)
        if not name or names.is_direct(name) or not builders.is_builder(name):
            continue
        last = name.rpartition(".")[2]
        if last in local_builders and last not in delegating:
            continue  # the construction inside that function is patched instead
        site = _site(call, name, parents, positions)
        site.model = model_of_call(call, parents) or model_argument(call)
        sites.append(site)
    return sorted(sites, key=lambda s: (s.line, positions[s.call].start.column if s.call else 0))


def site_at_line(wrapper: cst.MetadataWrapper, line: int) -> Optional[OptimizerSite]:
    """The outermost statement starting on ``line`` (for ``--insert-before-line``)."""
    parents = wrapper.resolve(ParentNodeProvider)
    positions = wrapper.resolve(PositionProvider)
    for node, parent in parents.items():
        if (
            isinstance(parent, (cst.Module, cst.IndentedBlock))
            and positions[node].start.line == line
            and isinstance(node, cst.BaseStatement)
        ):
            site = OptimizerSite(None, node, line, enclosing_scope(node, parents), f"line {line}")
            calls = m.findall(node, m.Call())
            site.model = _model_from_receivers(r for c in calls for r in _parameter_receivers(c))
            return site
    return None


def _site(call, name, parents, positions) -> OptimizerSite:
    statement = enclosing_statement(call, parents)
    return OptimizerSite(
        call, statement, positions[statement].start.line, enclosing_scope(call, parents), name
    )


def model_of_call(call: cst.Call, parents) -> Optional[str]:
    """The model whose parameters reach the optimizer: ``X`` in ``X.parameters()``, directly or
    through a variable built earlier in the same function (``params = [...]``)."""
    receivers = [r for arg in call.args for r in _parameter_receivers(arg.value)]
    for arg in call.args:
        if isinstance(arg.value, cst.Name):
            receivers.extend(_receivers_via_variable(arg.value.value, call, parents))
    return _model_from_receivers(receivers)


def model_argument(call: cst.Call) -> Optional[str]:
    """For builder calls such as ``build_optimizer(cfg, model)``: the one argument that names a model."""
    found = []
    for arg in call.args:
        name = dotted_name(arg.value)
        keyword = arg.keyword.value if arg.keyword else ""
        if name and any(
            w in (keyword or name.rpartition(".")[2]).lower() for w in ("model", "net", "detector")
        ):
            found.append(name)
    return found[0] if len(set(found)) == 1 else None


def _parameter_receivers(node: cst.CSTNode) -> List[str]:
    receivers = []
    for call in m.findall(
        node, m.Call(func=m.Attribute(attr=m.Name("parameters") | m.Name("named_parameters")))
    ):
        name = dotted_name(call.func.value)
        if name:
            receivers.append(name)
    return receivers


def _receivers_via_variable(variable: str, call: cst.Call, parents) -> List[str]:
    """Receivers in the statements of the same function that assign, extend or append to ``variable``."""
    scope = _innermost_function(call, parents)
    root = scope.body if scope is not None else _module_of(call, parents)
    target = m.Name(variable)
    mutators = m.SimpleStatementLine(
        body=[
            m.ZeroOrMore(),
            m.OneOf(
                m.Assign(targets=[m.ZeroOrMore(), m.AssignTarget(target=target), m.ZeroOrMore()]),
                m.AugAssign(target=target),
                m.AnnAssign(target=target),
                m.Expr(value=m.Call(func=m.Attribute(value=target))),
            ),
            m.ZeroOrMore(),
        ]
    )
    receivers = []
    for statement in m.findall(root, mutators):
        receivers.extend(_parameter_receivers(statement))
        node = statement
        while node in parents and node is not root:
            node = parents[node]
            if isinstance(node, (cst.For, cst.CompFor)):
                receivers.extend(_parameter_receivers(node.iter))
    return receivers


def _model_from_receivers(receivers) -> Optional[str]:
    """``model`` for ``model.head`` / ``model.module``; ``self.model`` for ``self.model.backbone``.

    All receivers must agree; two different models cannot be told apart without --model-var.
    """
    bases = set()
    for name in receivers:
        parts = name.split(".")
        bases.add(".".join(parts[:2]) if parts[0] == "self" and len(parts) > 1 else parts[0])
    return bases.pop() if len(bases) == 1 else None


def _is_builder(function: cst.FunctionDef, call: cst.Call, statement, module: cst.Module) -> bool:
    """``return torch.optim.X(<its own arguments>)`` in a function this file calls: patch the callers."""
    if (
        not m.matches(statement, m.SimpleStatementLine(body=[m.Return(value=m.Call())]))
        or statement.body[0].value is not call
    ):
        return False
    params = {p.name.value for p in function.params.params + function.params.kwonly_params} - {
        "self",
        "cls",
    }
    if not any(n.value in params for arg in call.args for n in m.findall(arg.value, m.Name())):
        return False
    name = function.name.value
    return bool(m.findall(module, m.Call(func=m.Name(name) | m.Attribute(attr=m.Name(name)))))


def _innermost_function(node, parents) -> Optional[cst.FunctionDef]:
    while node in parents:
        node = parents[node]
        if isinstance(node, cst.FunctionDef):
            return node
    return None


def _module_of(node, parents) -> cst.Module:
    while node in parents:
        node = parents[node]
    return node


def _code(node: cst.CSTNode) -> str:
    return cst.Module(body=[]).code_for_node(node)


def _asname(alias: cst.ImportAlias) -> Optional[str]:
    if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
        return alias.asname.name.value
    return None
