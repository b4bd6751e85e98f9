"""A ComponentClass from classes read in source: keys through **kwargs, children, BatchNorm, freezing.

The chain is the class and its base classes found in source, the ``tail`` what stands for the
first base that was not found (a table entry, or mmengine's BaseModule). What the source cannot
say statically comes from the table entry of the same name; ``facts`` names the origin of each.
"""

from __future__ import annotations

import ast
import dataclasses
from typing import Dict, List, Optional, Tuple

from .class_source import FORWARDED, IGNORED, SourceClass
from .components import INIT, INIT_WEIGHTS, TRAIN, ComponentClass, known_class

TABLE_WHERE = "bn2gn's table"
#: base classes whose __init__ is known without reading them (mmengine/mmcv BaseModule, torch)
TERMINAL = {"BaseModule": frozenset({"init_cfg"}), "Module": frozenset(), "object": frozenset()}
_RUNS = {"__init__": INIT, "train": TRAIN, "init_weights": INIT_WEIGHTS}
_ROLES = {
    "BACKBONES": "backbone",
    "NECKS": "neck",
    "HEADS": "head",
    "MIDDLE_ENCODERS": "encoder",
    "VOXEL_ENCODERS": "encoder",
    "FUSION_LAYERS": "encoder",
}
_KwargsFacts = Tuple[Optional[frozenset], str, str, Tuple[str, ...]]


def terminal(name: str) -> ComponentClass:
    return ComponentClass(
        name=name,
        package=TABLE_WHERE,
        source=TABLE_WHERE,
        role="unknown",
        accepts=TERMINAL[name],
        has_parameters=False,
    )


def build_entry(
    chain: List[SourceClass],
    tail: Optional[ComponentClass],
    label: str,
    method_chain: Optional[Tuple[List[SourceClass], Optional[ComponentClass]]] = None,
) -> ComponentClass:
    """``chain``: the classes whose ``__init__`` runs; ``method_chain``: the first-base line
    ``train()`` / ``init_weights()`` are looked up in (the same unless ``super(X, self)`` jumps)."""
    top = chain[0]
    methods, method_tail = method_chain or (chain, tail)
    fallback = next((known_class(c.name) for c in chain if known_class(c.name)), None)
    if fallback is None and tail is not None and tail.name not in TERMINAL:
        fallback = tail
    accepts, extra, ignored_by, signature = keywords(chain, 0, tail)
    children, hard_bn, removed, child_where, bn_where = _modules(chain, tail)
    runs, run_where = _freezing(methods, method_tail)
    stages_known = fallback is not None and (accepts is None or "frozen_stages" in accepts)
    same_module = fallback is not None and str(top.path).endswith(fallback.source.split(":")[0])
    base = fallback or ComponentClass(
        name=top.name, package=label, source="", role="unknown", accepts=None
    )
    facts = [
        ("signature", "; ".join(signature) or TABLE_WHERE),
        ("children", child_where),
        ("hard-coded BatchNorm", bn_where),
        ("freezing", run_where),
        (
            "stages",
            (f"{TABLE_WHERE} ({base.name})" if stages_known and base.stages({}) else "none"),
        ),
    ]
    return dataclasses.replace(
        base,
        name=top.name,
        package=label,
        source=top.where,
        role=(base.role if base.role != "unknown" else _ROLES.get(top.registry, "unknown")),
        accepts=accepts,
        rejects=frozenset(),  # the source says what it takes; the table's memory does not count
        extra_keys=extra,
        ignored_by=ignored_by,
        norm_default=_default(chain, tail, "norm_cfg", base.norm_default),
        norm_eval_default=_default(chain, tail, "norm_eval", base.norm_eval_default),
        hard_coded_bn=hard_bn,
        stages=base.stages if stages_known else (lambda cfg: ()),
        freeze_runs=runs,
        children=children,
        segments=(base.segments - {name for name, _ in removed})
        | frozenset(children)
        | {"weight", "bias"},
        opaque=tuple(c for c in children if c not in base.children or c in base.opaque),
        removed=removed,
        methods=tuple(dict.fromkeys(m for c in methods for m in c.methods)),
        notes=base.notes if same_module else (),
        facts=tuple(facts),
    )


def keywords(chain: List[SourceClass], i: int, tail: Optional[ComponentClass]) -> _KwargsFacts:
    """(accepted keys, what happens to others, where they are ignored, the files that say so)."""
    if i >= len(chain):
        if tail is None:
            return None, "unknown", "", ()
        where = (TABLE_WHERE,) if tail.name not in TERMINAL else ()
        return tail.accepts, tail.extra, tail.ignored_by, where
    cls = chain[i]
    if not cls.has_init:
        return keywords(chain, i + 1, tail)
    own = frozenset(cls.keywords) | frozenset(cls.kwargs_keys)
    where = (f"{cls.name}.__init__ {cls.path}:{cls.init_line}",)
    if not cls.var_kwargs:
        return own, "reject", "", where
    if cls.kwargs_use == FORWARDED:
        accepts, extra, ignored, more = keywords(chain, i + 1, tail)
        return (
            (own | accepts if accepts is not None else None),
            extra,
            ignored,
            where + more,
        )
    if cls.kwargs_use == IGNORED:
        return own, "ignore", f"{cls.name}.__init__ ({cls.path}:{cls.init_line})", where
    return None, "unknown", "", where


def _modules(
    chain: List[SourceClass], tail: Optional[ComponentClass]
) -> Tuple[Tuple[str, ...], Tuple[str, ...], Tuple[Tuple[str, str], ...], str, str]:
    """(children, children that hard-code BatchNorm, children set to None, where from, where BN is)."""
    children: List[str] = list(tail.children) if tail is not None else []
    hard_bn: List[str] = list(tail.hard_coded_bn) if tail is not None else []
    bn_at: Dict[str, str] = {c: TABLE_WHERE for c in hard_bn}
    removed: Dict[str, str] = {}
    where = [TABLE_WHERE] if children else []
    for cls in reversed(chain):
        same = known_class(cls.name)
        if same is not None and any(a.name == "<computed>" for a in cls.assignments):
            # add_module with a computed name: the table names those children
            children += [c for c in same.children if c not in children]
            where.append(f"{TABLE_WHERE} ({cls.name}'s add_module children)")
        for item in cls.assignments:
            if item.name == "<computed>":
                if item.batchnorm and "layers added by add_module" not in hard_bn:
                    hard_bn.append("layers added by add_module")
                    bn_at[hard_bn[-1]] = f"{cls.path}:{item.line}"
                continue
            if item.kind == "none" and item.after_super:
                children = [c for c in children if c != item.name]
                hard_bn = [c for c in hard_bn if c != item.name]
                removed[item.name] = f"{cls.path}:{item.line}"
            elif item.kind == "module":
                children += [] if item.name in children else [item.name]
                hard_bn = [c for c in hard_bn if c != item.name]
                hard_bn += [item.name] if item.batchnorm else []
                bn_at[item.name] = f"{cls.path}:{item.line}"
                removed.pop(item.name, None)
        if cls.assignments:
            where.append(f"{cls.name}.__init__ {cls.path}:{cls.init_line}")
    bn_where = "; ".join(f"{c}: {bn_at[c]}" for c in hard_bn) or "none in the source"
    return (
        tuple(children),
        tuple(hard_bn),
        tuple(removed.items()),
        "; ".join(where),
        bn_where,
    )


def _freezing(
    chain: List[SourceClass], tail: Optional[ComponentClass]
) -> Tuple[Tuple[str, ...], str]:
    """Which methods freeze: the class's own, and the base's where it calls ``super().method()``."""
    runs, where = [], []
    for method, run in _RUNS.items():
        found = _freezes_in(chain, method)
        if found:
            runs.append(run)
            where.append(f"{method}: {found}")
        elif found is None and tail is not None and run in tail.freeze_runs:
            runs.append(run)
            where.append(f"{method}: {TABLE_WHERE} ({tail.name})")
    return tuple(runs), "; ".join(where) or "no freezing in the source"


def _freezes_in(chain: List[SourceClass], method: str) -> Optional[str]:
    """``file:line`` of the freezing ``method`` along the chain, "" when it does not freeze,
    None when the chain hands the method on to a base not read (the tail decides)."""
    i = 0
    while i < len(chain):
        cls = chain[i]
        i += 1
        if method not in cls.methods:
            continue
        line = dict(cls.freezes_in).get(method)
        if line is not None:
            return f"{cls.path}:{line}"
        if method not in cls.extends:
            return ""
        if method == "__init__" and cls.super_of:  # super(X, self).__init__ skips X's own
            names = [c.name for c in chain]
            if cls.super_of not in names[i:]:
                return None
            i = names.index(cls.super_of, i) + 1
    return None


def _default(chain: List[SourceClass], tail: Optional[ComponentClass], keyword: str, table):
    """The signature default of ``keyword`` along the **kwargs chain; the table's when not literal."""
    for cls in chain:
        if not cls.has_init:
            continue
        if keyword in cls.keywords:
            text = cls.default(keyword)
            return _literal(text, table) if text is not None else table
        if cls.kwargs_use != FORWARDED:
            return None
    return table


def _literal(text: str, otherwise):
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        return otherwise
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "dict" and not node.args:
        try:
            return {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
        except ValueError:
            return otherwise
    try:
        return ast.literal_eval(node)
    except ValueError:
        return otherwise
