"""One class read with ``ast``: its ``__init__`` keywords, what ``**kwargs`` does, its children, its freezing.

Nothing is imported. Only what the source states is kept: a keyword list, where ``**kwargs`` goes
(to the base class's ``__init__``, somewhere else, or nowhere), ``self.x = ...`` assignments in
``__init__`` in order (``self.x = None`` after ``super().__init__()`` removes what the base built),
and which of ``__init__`` / ``train`` / ``init_weights`` freeze (docs/commands/config.md, "Where the facts
come from").
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

#: BatchNorm written as a class name, or as a norm_cfg type string (mmcv's registry names)
BN_CLASSES = {
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "SyncBatchNorm",
    "_BatchNorm",
}
BN_TYPES = {
    "BN",
    "BN1d",
    "BN2d",
    "BN3d",
    "SyncBN",
    "NaiveSyncBN",
    "naiveSyncBN2d",
    "naiveSyncBN1d",
    "MMSyncBN",
}
FREEZE_METHODS = ("__init__", "train", "init_weights")
#: what **kwargs does in __init__
FORWARDED, PASSED, STORED, IGNORED = "forwarded", "passed", "stored", "ignored"


@dataclasses.dataclass(frozen=True)
class Assignment:
    """``self.name = value`` (or ``self.add_module(name, value)``) at the top level of ``__init__``."""

    name: str
    line: int
    kind: str  # "none" | "module" | "value"
    batchnorm: bool  # the value hard-codes BatchNorm
    after_super: bool


@dataclasses.dataclass(frozen=True)
class SourceClass:
    name: str
    path: Path
    line: int
    registry: str  # the registry the decorator registers into ("" when not registered)
    bases: Tuple[str, ...]  # as written (dotted names)
    has_init: bool
    init_line: int
    keywords: Tuple[str, ...]
    defaults: Tuple[Tuple[str, str], ...]  # keyword -> default as source text
    var_kwargs: str  # the name of **kwargs, "" when there is none
    kwargs_use: str  # FORWARDED | PASSED | STORED | IGNORED ("" without **kwargs)
    kwargs_keys: Tuple[str, ...]  # kwargs.get('k') / kwargs.pop('k') / kwargs['k']
    assignments: Tuple[Assignment, ...]
    methods: Tuple[str, ...]
    freezes_in: Tuple[Tuple[str, int], ...]  # (method, line) for the methods that freeze
    #: ``X`` in ``super(X, self).__init__(...)`` when X is another class: the call skips to X's base
    super_of: str = ""
    #: the freezing methods that also run the base class's (``super().train(mode)``)
    extends: Tuple[str, ...] = ()

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def default(self, keyword: str) -> Optional[str]:
        return dict(self.defaults).get(keyword)


def shown(path: Path) -> Path:
    """``path`` relative to the working folder when it is below it (as the user typed the config)."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def read_class(node: ast.ClassDef, path: Path, tree: ast.Module) -> SourceClass:
    path = shown(path)
    defs = _module_defs(tree)
    init = _method(node, "__init__")
    keywords: Tuple[str, ...] = ()
    defaults: List[Tuple[str, str]] = []
    var_kwargs = ""
    if init is not None:
        args = init.args
        positional = args.posonlyargs + args.args
        keywords = tuple(a.arg for a in positional + args.kwonlyargs if a.arg != "self")
        pairs = list(zip(positional[len(positional) - len(args.defaults) :], args.defaults))
        pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
        defaults = [(a.arg, ast.unparse(d)) for a, d in pairs]
        var_kwargs = args.kwarg.arg if args.kwarg is not None else ""
    return SourceClass(
        name=node.name,
        path=path,
        line=node.lineno,
        registry=_registry(node),
        bases=tuple(ast.unparse(b) for b in node.bases),
        has_init=init is not None,
        init_line=init.lineno if init is not None else node.lineno,
        keywords=keywords,
        defaults=tuple(defaults),
        var_kwargs=var_kwargs,
        kwargs_use=_kwargs_use(init, var_kwargs) if var_kwargs else "",
        kwargs_keys=_kwargs_keys(init, var_kwargs) if var_kwargs else (),
        assignments=_assignments(init, defs) if init is not None else (),
        methods=tuple(s.name for s in node.body if isinstance(s, ast.FunctionDef)),
        freezes_in=tuple(
            (name, method.lineno)
            for name in FREEZE_METHODS
            if (method := _method(node, name)) is not None and _freezes(method)
        ),
        super_of=_super_of(init, node.name) if init is not None else "",
        extends=tuple(
            name
            for name in FREEZE_METHODS
            if (method := _method(node, name)) is not None and _calls_super(method, name)
        ),
    )


def _calls_super(method: ast.FunctionDef, name: str) -> bool:
    """``super().name(...)`` or ``Base.name(self, ...)`` somewhere in the method."""
    for node in ast.walk(method):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if node.func.attr == name and (
                (isinstance(owner, ast.Call) and getattr(owner.func, "id", None) == "super")
                or (
                    isinstance(owner, (ast.Name, ast.Attribute))
                    and getattr(owner, "id", "") != "self"
                )
            ):
                return True
    return False


def _super_of(init: ast.FunctionDef, own: str) -> str:
    for node in ast.walk(init):
        if isinstance(node, ast.Call) and _is_super_init(node):
            owner = node.func.value
            if isinstance(owner, ast.Call) and owner.args:
                name = ast.unparse(owner.args[0]).rpartition(".")[2]
                return name if name != own else ""
            return ""
    return ""


def _method(node: ast.ClassDef, name: str) -> Optional[ast.FunctionDef]:
    return next(
        (s for s in node.body if isinstance(s, ast.FunctionDef) and s.name == name),
        None,
    )


def _registry(node: ast.ClassDef) -> str:
    for deco in node.decorator_list:
        text = ast.unparse(deco)
        if "register_module" in text:
            return text.split(".register_module")[0].rpartition(".")[2]
    return ""


def _is_super_init(call: ast.Call) -> bool:
    """``super().__init__(...)``, ``super(C, self).__init__(...)`` or ``Base.__init__(self, ...)``."""
    func = call.func
    if not (isinstance(func, ast.Attribute) and func.attr == "__init__"):
        return False
    owner = func.value
    return (
        isinstance(owner, ast.Call) and getattr(owner.func, "id", None) == "super"
    ) or isinstance(owner, (ast.Name, ast.Attribute))


def _kwargs_use(init: ast.FunctionDef, name: str) -> str:
    use = IGNORED
    for node in ast.walk(init):
        if isinstance(node, ast.Call) and any(
            k.arg is None and getattr(k.value, "id", None) == name for k in node.keywords
        ):
            if _is_super_init(node):
                return FORWARDED
            use = PASSED
        elif isinstance(node, ast.Assign) and getattr(node.value, "id", None) == name:
            use = STORED if use == IGNORED else use
    return use


def _kwargs_keys(init: ast.FunctionDef, name: str) -> Tuple[str, ...]:
    keys = []
    for node in ast.walk(init):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and getattr(node.func.value, "id", None) == name
            and node.func.attr in ("get", "pop", "setdefault")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            keys.append(str(node.args[0].value))
        elif (
            isinstance(node, ast.Subscript)
            and getattr(node.value, "id", None) == name
            and isinstance(node.slice, ast.Constant)
        ):
            keys.append(str(node.slice.value))
    return tuple(dict.fromkeys(keys))


def _assignments(init: ast.FunctionDef, defs: Dict[str, ast.AST]) -> Tuple[Assignment, ...]:
    found: List[Assignment] = []
    # without a super().__init__() call nothing is inherited: every assignment is final
    after = not any(
        isinstance(n, ast.Call) and _is_super_init(n) for s in init.body for n in ast.walk(s)
    )
    for stmt in init.body:
        calls = [n for n in ast.walk(stmt) if isinstance(n, ast.Call)]
        if any(_is_super_init(c) for c in calls):
            after = True
            continue
        nested = not isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.Expr))
        for node in ast.walk(stmt):
            target, value = _self_target(node)
            if target is None:
                continue
            kind = (
                "none"
                if isinstance(value, ast.Constant) and value.value is None
                else "module"
                if _builds_module(value)
                else "value"
            )
            if nested and kind == "none":
                continue  # a conditional removal: the base's module may still be there
            found.append(Assignment(target, node.lineno, kind, _hard_bn(value, defs, set()), after))
    return tuple(found)


def _builds_module(value: ast.AST) -> bool:
    """A call that makes a module or parameter: a class (``nn.Conv2d``, ``ConvModule``,
    ``nn.Parameter``) or a builder (``build_norm_layer``, ``MODELS.build``, ``_make_layer``);
    not ``len(...)``, ``torch.device(...)``, ``copy.deepcopy(...)``."""
    if isinstance(value, ast.Subscript):  # build_norm_layer(cfg, c)[1]
        value = value.value
    if not isinstance(value, ast.Call):
        return False
    func = value.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if name in ("dict", "list", "tuple", "set", "len", "int", "float", "bool", "str", "range"):
        return False
    lowered = name.lower()
    return name[:1].isupper() or "build" in lowered or "make" in lowered or "layer" in lowered


def _self_target(node: ast.AST) -> Tuple[Optional[str], Optional[ast.AST]]:
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
        if isinstance(target, ast.Attribute) and getattr(target.value, "id", None) == "self":
            return target.attr, node.value
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "add_module"
        and getattr(node.func.value, "id", None) == "self"
        and len(node.args) == 2
    ):
        first = node.args[0]
        name = first.value if isinstance(first, ast.Constant) else "<computed>"
        return str(name), node.args[1]
    return None, None


def _module_defs(tree: ast.Module) -> Dict[str, ast.AST]:
    return {s.name: s for s in tree.body if isinstance(s, (ast.FunctionDef, ast.ClassDef))}


def _hard_bn(value: ast.AST, defs: Dict[str, ast.AST], seen: Set[str]) -> bool:
    """The expression builds BatchNorm whatever the config says (looked up through this file's defs).

    A helper's own signature defaults (``norm_cfg=dict(type='BN')``) do not count: the caller
    usually passes its norm_cfg on."""
    for node in _walk_bodies(value):
        name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", None)
        if name in BN_CLASSES:
            return True
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "dict":
            kind = next((k.value for k in node.keywords if k.arg == "type"), None)
            if isinstance(kind, ast.Constant) and kind.value in BN_TYPES:
                return True
        if isinstance(node, ast.Dict):
            for key, item in zip(node.keys, node.values):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "type"
                    and isinstance(item, ast.Constant)
                    and item.value in BN_TYPES
                ):
                    return True
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in defs:
            callee = node.func.id
            if _bn_default_kept(node, defs[callee], defs):
                return True
            if callee not in seen and _hard_bn(defs[callee], defs, seen | {callee}):
                return True
    return False


def _bn_default_kept(call: ast.Call, callee: ast.AST, defs: Dict[str, ast.AST]) -> bool:
    """The call leaves a BatchNorm default of the helper's signature in place (passes no value)."""
    init = _method(callee, "__init__") if isinstance(callee, ast.ClassDef) else callee
    if not isinstance(init, ast.FunctionDef):
        return False
    if any(k.arg is None for k in call.keywords):
        return False  # **cfg may carry it
    args = init.args
    positional = [a.arg for a in args.posonlyargs + args.args if a.arg != "self"]
    given = set(positional[: len(call.args)]) | {k.arg for k in call.keywords}
    pairs = list(zip(positional[len(positional) - len(args.defaults) :], args.defaults))
    pairs += [(a.arg, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
    return any(name not in given and _hard_bn(default, {}, set()) for name, default in pairs)


def _walk_bodies(root: ast.AST):
    """``ast.walk`` without the parameter lists (and their defaults) of the functions inside."""
    todo = [root]
    while todo:
        node = todo.pop()
        yield node
        todo.extend(c for c in ast.iter_child_nodes(node) if not isinstance(c, ast.arguments))


def _freezes(method: ast.FunctionDef) -> bool:
    """Calls ``self.<...freeze...>()`` or sets ``.requires_grad = False``."""
    for node in ast.walk(method):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and getattr(node.func.value, "id", None) == "self"
            and "freeze" in node.func.attr
        ):
            return True
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Attribute) and t.attr == "requires_grad" for t in node.targets
        ):
            if isinstance(node.value, ast.Constant) and node.value.value is False:
                return True
    return False
