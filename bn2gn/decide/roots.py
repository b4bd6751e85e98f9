"""Inside a root model: which attribute each statement's value ends up in, and what each attribute reaches.

``self.layer1 = self._make_layer(block, ...)`` puts everything ``_make_layer`` returns into
``layer1``; ``layers.append(nn.BatchNorm2d(c))`` flows wherever ``layers`` goes. Statements whose
value reaches no attribute (``forward``, an unused ``_make_deconv_layer``) are the root's own code.
"""

from __future__ import annotations

import ast
import dataclasses
from typing import Dict, List, Optional, Set, Tuple

from ..core.ast_tools import COMPOUND, walk, walk_statements
from ..core.errors import Opt, message_text
from .facts import ATTR_SETTERS, Definition
from .graph import FUNCTIONS, Project

OWN = "<own code>"
DYNAMIC = "<dynamic attribute>"
DYNAMIC_CALLS = {"globals", "getattr", "locals", "vars", "eval", "__import__", "import_module"}
BUILDERS = ("append", "extend", "insert", "add_module", "update")


@dataclasses.dataclass
class FlowStatement:
    """A statement of a root's methods, with where its value goes and what it reads."""

    node: ast.AST  # a simple statement, or a For node standing for its header
    method: ast.AST
    sinks: List[Tuple[str, str]]  # ("attr", name) | ("local", name) | ("return", "") | ("own", "")
    reads: Set[str]
    expressions: List[ast.AST]
    owner: Optional[Definition] = None  # the class whose body holds the statement
    #: the methods its expressions call on ``self`` or ``cls`` (``self.name(...)``), one per call
    self_calls: Tuple[str, ...] = ()


@dataclasses.dataclass
class RootModel:
    """A root model class and what its backbone and head attributes reach."""

    cls: Definition
    attrs_of: Dict[int, Set[str]]  # id(statement) -> attributes its value ends up in
    backbone_attrs: List[str]
    bb_reach: Dict[Definition, str]  # definition -> backbone attribute it was reached from
    head_reach: Dict[Definition, str]
    opaque: List[Tuple[str, int, bool]]  # (attribute, line, uses globals())
    #: backbone attribute -> why it is backbone (pretrained evidence or a configured name)
    evidence: Dict[str, str] = dataclasses.field(default_factory=dict)
    #: attribute -> why bn2gn cannot tell (weights of unknown coverage loaded into the root)
    uncertain: Dict[str, str] = dataclasses.field(default_factory=dict)
    #: scanned base classes whose methods run on this root's instances (super().__init__)
    bases: List[Definition] = dataclasses.field(default_factory=list)

    @property
    def name(self) -> str:
        return self.cls.name

    @property
    def has_backbone(self) -> bool:
        return bool(self.backbone_attrs)


def class_flow(
    project: Project, cls: Definition
) -> Tuple[List["FlowStatement"], List[Set[str]], List[Definition]]:
    """The statements of ``cls`` and of the scanned base classes whose methods run on its instances,
    and the attributes each statement's value ends up in (cached per class)."""
    cache = project.__dict__.setdefault("_bn2gn_flow", {})
    if cls not in cache:
        from .backbone_inference import base_classes

        bases = base_classes(project, cls) if cls in project.modules_classes else []
        statements = _flow_statements(cls)
        defined = {item.name for item in cls.node.body if isinstance(item, FUNCTIONS)}
        for base in bases:
            # what the base's __init__ (and the helpers it calls on self) assigns lives on cls's instances
            wanted = _init_and_helpers(base) - (defined - {"__init__"})
            statements.extend(
                s for s in _flow_statements(base) if getattr(s.method, "name", None) in wanted
            )
            defined |= {item.name for item in base.node.body if isinstance(item, FUNCTIONS)}
        cache[cls] = (statements, _resolve_sinks(statements), bases)
    return cache[cls]


def _init_and_helpers(cls: Definition) -> Set[str]:
    """``__init__`` and the methods it calls as ``self.name(...)``."""
    init = next(
        (i for i in cls.node.body if isinstance(i, FUNCTIONS) and i.name == "__init__"), None
    )
    if init is None:
        return set()
    called = {
        n.func.attr
        for n in walk(init)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and isinstance(n.func.value, ast.Name)
        and n.func.value.id == "self"
    }
    return {"__init__"} | called


def evidence_of(project: Project):
    from .backbone_inference import Evidence

    found = project.__dict__.get("_bn2gn_evidence")
    if found is None:
        found = project.__dict__["_bn2gn_evidence"] = Evidence(project)
    return found


def analyse_root(project: Project, cls: Definition, backbone_attrs) -> RootModel:
    statements, finals, bases = class_flow(project, cls)
    attrs_of = {id(s.node): finals[i] for i, s in enumerate(statements)}
    init_bindings = project.param_bindings.get(cls, {})
    refs_of = [_statement_refs(project, cls, stmt, init_bindings) for stmt in statements]
    evidence, uncertain = _backbone_evidence(
        project, cls, statements, finals, refs_of, backbone_attrs
    )
    backbone = set(evidence)
    found_backbone = sorted(backbone)
    bb_start: Dict[Definition, str] = {}
    head_start: Dict[Definition, str] = {}
    opaque = []
    for index, stmt in enumerate(statements):
        refs = refs_of[index]
        for attr in sorted(finals[index]):
            bucket = bb_start if attr in backbone else head_start
            for definition in refs:
                bucket.setdefault(definition, attr)
            if attr in backbone and _is_opaque(project, cls, stmt, refs):
                opaque.append((attr, stmt.node.lineno, _uses_globals(stmt)))
                if _uses_globals(stmt):
                    for factory in _pretrained_factories(project, stmt.owner or cls):
                        bb_start.setdefault(factory, attr)
    avoid = [cls] + bases
    return RootModel(
        cls=cls,
        attrs_of=attrs_of,
        backbone_attrs=found_backbone,
        bb_reach=_reach_labelled(project, bb_start, avoid),
        head_reach=_reach_labelled(project, head_start, avoid),
        opaque=opaque,
        evidence=evidence,
        uncertain=uncertain,
        bases=bases,
    )


def _backbone_evidence(
    project: Project, cls: Definition, statements, finals, refs_of, names
) -> Tuple[Dict[str, str], Dict[str, str]]:
    """Attribute -> evidence that it holds the pretrained backbone; attribute -> why it is undecidable."""
    from .backbone_inference import pretrained_keyword, short

    ev = evidence_of(project)
    where = cls.module.display
    found: Dict[str, str] = {}
    attrs = sorted({a for f in finals for a in f if a not in (OWN, DYNAMIC)})
    for attr in attrs:
        if attr in names:
            found[attr] = f"{cls.name}.{attr}: a backbone attribute name"
    for index, stmt in enumerate(statements):
        targets = finals[index] - {OWN}
        if len(targets) != 1 or DYNAMIC in targets:
            continue
        attr = next(iter(targets))
        if attr in found:
            continue
        call = pretrained_keyword(stmt.expressions)
        if call is not None:
            found[attr] = (
                f"{cls.name}.{attr} holds {short(call)} at {where}:{call.lineno} (pretrained weights)"
            )
            continue
        for definition in sorted(refs_of[index], key=lambda d: d.qualname):
            if definition is cls or definition.kind not in ("class", "function", "var"):
                continue
            loads = ev.loads(definition)
            if loads:
                found[attr] = (
                    f"{cls.name}.{attr} holds {definition.name} at {where}:{stmt.node.lineno}, which {loads}"
                )
                break
    uncertain: Dict[str, str] = {}
    own = ev.self_load(cls) if cls in project.modules_classes else None
    if own is not None:
        for attr in attrs:
            if attr in found:
                continue
            if attr in own.covers:
                found[attr] = (
                    f"{cls.name}.{attr}: {own.describe()}, which covers {', '.join(own.covers)}"
                )
            elif not own.checkpoint:
                uncertain[attr] = message_text(
                    f"{own.describe()}; bn2gn cannot tell whether they cover {cls.name}.{attr}: ",
                    Opt("backbone_attr", attr),
                    " if they do, ",
                    Opt("convert", f"{cls.name}.{attr}"),
                    " if not",
                )
    return found, uncertain


def _reach_labelled(project: Project, start: Dict[Definition, str], avoid) -> Dict[Definition, str]:
    """What the attributes reach, never through the root class itself (``super(Root, self)`` names it)
    nor its base classes (their code runs on the root's instances and is decided with the root)."""
    start = {d: a for d, a in start.items() if d not in avoid}
    label = {id(d): a for d, a in start.items()}  # by id: ``Project.reach_order``'s reason
    return {d: label[id(first)] for d, first in project.reach_order(start, avoid=list(avoid))}


def _statement_refs(
    project: Project, cls: Definition, stmt: FlowStatement, init_bindings
) -> Set[Definition]:
    if stmt.owner is not None and stmt.owner is not cls:
        cls, init_bindings = stmt.owner, project.param_bindings.get(stmt.owner, {})
    facts = cls.module
    refs: Set[Definition] = set()
    is_init = getattr(stmt.method, "name", "") == "__init__"
    params = _param_names(stmt.method)
    used = set()
    for expr in stmt.expressions:
        refs |= project.refs_in(facts, expr)
        if is_init:
            used |= {n.id for n in value_names(expr) if n.id in params}
    for name in used:
        refs |= init_bindings.get(name, set())
    if used and isinstance(stmt.method, FUNCTIONS):
        defaults = project.local_values(facts, stmt.method)
        for name in used:
            refs |= defaults.get(name, set())
    return refs


def value_names(expr: ast.AST):
    """Names whose value an expression uses: not ``block`` in ``block.expansion`` (a class attribute read)."""
    called, skip = set(), set()
    for node in walk(expr):
        if isinstance(node, ast.Call):
            called.add(id(node.func))
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and id(node) not in called
        ):
            skip.add(id(node.value))
        elif isinstance(node, ast.Name) and id(node) not in skip:
            yield node


def _param_names(method: ast.AST) -> Set[str]:
    if not isinstance(method, FUNCTIONS):
        return set()
    args = method.args
    return {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}


def _is_opaque(
    project: Project, cls: Definition, stmt: FlowStatement, refs: Set[Definition]
) -> bool:
    """A backbone assignment whose classes cannot be followed (globals()[name], a registry lookup)."""
    if any(d.kind in ("class", "function") for d in refs):
        return False
    for expr in stmt.expressions:
        for node in walk(expr):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id in DYNAMIC_CALLS:
                    return True
                if isinstance(func, (ast.Subscript, ast.Call)):
                    return True
                if isinstance(func, ast.Attribute) and func.attr in DYNAMIC_CALLS:
                    return True
                target = project.resolve(
                    cls.module, func.value if isinstance(func, ast.Attribute) else func
                )
                if target is not None and target.kind == "var":
                    return True
    return False


def _pretrained_factories(project: Project, cls: Definition) -> List[Definition]:
    """What ``globals()[name](pretrained=...)`` can build: the module's functions (defined or imported)
    that take a ``pretrained`` parameter."""
    facts = cls.module
    found = [d for d in facts.defs.values() if d.kind == "function"]
    for dotted in facts.imports.values():
        target = project.resolve_dotted(dotted)
        if target is not None and target.kind == "function":
            found.append(target)
    return [d for d in found if "pretrained" in _param_names(d.node)]


def _uses_globals(stmt: FlowStatement) -> bool:
    return any(
        isinstance(n, ast.Name) and n.id in ("globals", "locals", "vars")
        for e in stmt.expressions
        for n in walk(e)
    )


# -- statements and where their values go --------------------------------------------------------
def _flow_statements(cls: Definition) -> List[FlowStatement]:
    out = _class_statements(cls)
    for stmt in out:
        stmt.owner = cls
    return out


def _class_statements(cls: Definition) -> List[FlowStatement]:
    out: List[FlowStatement] = []
    for item in cls.node.body:
        if isinstance(item, FUNCTIONS):
            self_name = (
                (item.args.posonlyargs + item.args.args)[0].arg
                if (item.args.posonlyargs + item.args.args)
                else "self"
            )
            for node in walk_statements(item):  # ``walk``'s statements, in its order
                if node is item:
                    continue
                if isinstance(node, (ast.For, ast.AsyncFor)):
                    out.append(
                        _flow(node, item, _target_sinks(node.target, self_name), [node.iter])
                    )
                elif isinstance(node, ast.stmt) and not isinstance(node, COMPOUND):
                    out.append(
                        _flow(
                            node,
                            item,
                            _statement_sinks(node, self_name),
                            _statement_expressions(node),
                        )
                    )
        else:
            out.append(_flow(item, None, [("own", "")], [item]))
    return out


def _flow(node, method, sinks, expressions) -> FlowStatement:
    """The statement with the names its expressions read and the methods they call on ``self`` or
    ``cls`` (``_resolve_sinks``' callers), taken in one walk."""
    reads, calls = set(), []
    for expr in expressions:
        for sub in walk(expr):
            if isinstance(sub, ast.Name):
                if isinstance(sub.ctx, ast.Load):
                    reads.add(sub.id)
            elif (
                isinstance(sub, ast.Call)
                and isinstance(sub.func, ast.Attribute)
                and isinstance(sub.func.value, ast.Name)
                and sub.func.value.id in ("self", "cls")
            ):
                calls.append(sub.func.attr)
    for kind, name in sinks:
        if kind == "local":
            reads.discard(name)
    return FlowStatement(
        node=node,
        method=method,
        sinks=sinks,
        reads=reads,
        expressions=expressions,
        self_calls=tuple(calls),
    )


def _statement_expressions(node: ast.stmt) -> List[ast.AST]:
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        return [node.value] if node.value is not None else []
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        value = _setter_value(node.value)
        if value is not None:
            return [value]  # self.__setattr__(head, fc) holds only what fc holds
    if isinstance(node, (ast.Expr, ast.Return)):
        return [node.value] if node.value is not None else []
    return [node]


def _setter_value(call: ast.Call) -> Optional[ast.AST]:
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr in ATTR_SETTERS and len(call.args) == 2:
        return call.args[1]
    if isinstance(func, ast.Name) and func.id == "setattr" and len(call.args) == 3:
        return call.args[2]
    return None


def _statement_sinks(node: ast.stmt, self_name: str) -> List[Tuple[str, str]]:
    if isinstance(node, ast.Assign):
        return [s for t in node.targets for s in _target_sinks(t, self_name)]
    if isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        return _target_sinks(node.target, self_name)
    if isinstance(node, ast.Return):
        return [("return", "")]
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        return _call_sinks(node.value, self_name)
    return [("own", "")]


def _call_sinks(call: ast.Call, self_name: str) -> List[Tuple[str, str]]:
    func = call.func
    if (
        isinstance(func, ast.Attribute)
        and func.attr in ATTR_SETTERS
        and _is_name(func.value, self_name)
    ):
        return [_named_attr(call.args[0] if call.args else None)]
    if (
        isinstance(func, ast.Name)
        and func.id == "setattr"
        and call.args
        and _is_name(call.args[0], self_name)
    ):
        return [_named_attr(call.args[1] if len(call.args) > 1 else None)]
    if isinstance(func, ast.Attribute) and func.attr in BUILDERS:
        return _target_sinks(func.value, self_name)
    return [("own", "")]


def _named_attr(arg: Optional[ast.AST]) -> Tuple[str, str]:
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return ("attr", arg.value)
    return ("attr", DYNAMIC)


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _target_sinks(target: ast.AST, self_name: str) -> List[Tuple[str, str]]:
    if isinstance(target, (ast.Tuple, ast.List)):
        return [s for elt in target.elts for s in _target_sinks(elt, self_name)]
    if isinstance(target, ast.Starred):
        return _target_sinks(target.value, self_name)
    if isinstance(target, ast.Name):
        return [("local", target.id)]
    base = target
    attr = None
    while isinstance(base, (ast.Attribute, ast.Subscript)):
        if isinstance(base, ast.Attribute):
            attr = base.attr
        base = base.value
    if _is_name(base, self_name) and attr is not None:
        return [("attr", attr)]
    if isinstance(base, ast.Name):
        return [("local", base.id)]
    return [("own", "")]


def _resolve_sinks(statements: List[FlowStatement]) -> List[Set[str]]:
    """Follow locals and returns until each statement's value lands in attributes (or the root's own code)."""
    callers: Dict[str, List[int]] = {}
    for index, stmt in enumerate(statements):
        for name in stmt.self_calls:
            callers.setdefault(name, []).append(index)
    readers: Dict[Tuple[int, str], List[int]] = {}
    for index, stmt in enumerate(statements):
        for name in stmt.reads:
            readers.setdefault((id(stmt.method), name), []).append(index)
    base: List[Set[str]] = []
    feeds: List[Set[int]] = []
    for index, stmt in enumerate(statements):
        own: Set[str] = set()
        into: Set[int] = set()
        for kind, name in stmt.sinks:
            if kind == "attr":
                own.add(name)
            elif kind == "own":
                own.add(OWN)
            else:
                if kind == "local":
                    targets = readers.get((id(stmt.method), name), [])
                else:
                    targets = callers.get(getattr(stmt.method, "name", ""), [])
                targets = [i for i in targets if i != index]
                if targets:
                    into.update(targets)
                else:
                    own.add(OWN)
        base.append(own)
        feeds.append(into)
    final = [set(b) for b in base]
    changed = True
    while changed:
        changed = False
        for index, into in enumerate(feeds):
            for other in into:
                extra = final[other] - final[index]
                if extra:
                    final[index] |= extra
                    changed = True
    return final
