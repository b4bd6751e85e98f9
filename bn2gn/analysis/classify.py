"""Decide convert / keep / unsure for every site, from the construction graph (issue 2, 'How backbone and
non-backbone are told apart'). The decision and its reason are produced together so the plan can show them.
"""

from __future__ import annotations

from typing import Dict, List, Set, Tuple

from ..config import Config
from ..errors import Bn2gnError
from .facts import Definition, ModuleFacts, RawSite
from .graph import Project
from .plan import CONVERT, KEEP, UNSURE, Plan, Site
from .roots import DYNAMIC, OWN, RootModel, analyse_root


def find_roots(project: Project, config: Config) -> Tuple[List[RootModel], Dict[Definition, str]]:
    """Root models, and the definitions kept because a dynamically built backbone may contain them."""
    classes = project.module_classes()
    attrs = set(config.backbone_attrs)
    if config.roots:
        chosen = [d for f in project.modules for d in f.defs.values() if d.kind == "class" and d.name in config.roots]
        missing = set(config.roots) - {d.name for d in chosen}
        if missing:
            raise Bn2gnError(f"--root {', '.join(sorted(missing))}: no such class in the scanned files")
        return [analyse_root(project, d, attrs) for d in chosen], {}
    candidates = [d for d in sorted(classes, key=lambda d: (d.module.display, d.node.lineno))
                  if not (project.built_by.get(d, set()) - {d})]
    models = [analyse_root(project, d, attrs) for d in candidates]
    models = [m for m in models if m.has_backbone or (set(m.head_reach) & classes)]
    models = _unwrap_wrappers(project, models, classes, attrs)
    possible: Dict[Definition, Dict[Definition, str]] = {}
    claims_by_globals: Dict[Tuple[Definition, Definition], bool] = {}
    for model in models:
        for attr, line, uses_globals in model.opaque:
            scope = _dynamic_scope(project, model, uses_globals)
            label = f"{model.name}.{attr}, built dynamically at {model.cls.module.display}:{line}"
            for definition in scope:
                if definition not in model.head_reach and definition is not model.cls:
                    possible.setdefault(definition, {}).setdefault(model.cls, label)
                    if uses_globals:
                        claims_by_globals[(model.cls, definition)] = True
    # A candidate that may be another root's dynamic backbone is not a root, unless they claim each other.
    # Only a globals() lookup can claim a candidate with backbone attributes of its own: a registry
    # lookup (BACKBONES[name]) does not make every other detector in the tree a backbone.
    roots = [m for m in models if not any(
        m.cls not in possible.get(claimer, {}) and (claims_by_globals.get((claimer, m.cls)) or not m.has_backbone)
        for claimer in possible.get(m.cls, {}))]
    root_defs = {m.cls for m in roots}
    labels = {d: next(iter(by.values())) for d, by in possible.items() if d not in root_defs}
    return roots, labels


def _unwrap_wrappers(project: Project, models: List[RootModel], classes, attrs) -> List[RootModel]:
    """A candidate with no backbone attribute that holds models which have one (``ModelWithLoss(DLASeg())``)
    is a wrapper: the top-most wrapped models are the roots instead."""
    out: List[RootModel] = []
    for model in models:
        if model.has_backbone:
            out.append(model)
            continue
        inner = [analyse_root(project, d, attrs) for d in model.head_reach if d in classes and _may_hold(d, attrs)]
        inner = [m for m in inner if m.has_backbone]
        reach = {m.cls: set(project.reach(project.refs(m.cls))) for m in inner}
        top = [m for m in inner if not any(m.cls in reach[o.cls] for o in inner if o is not m)]
        out.extend(top or [model])
    unique = {m.cls: m for m in out}
    return sorted(unique.values(), key=lambda m: (m.cls.module.display, m.cls.node.lineno))


def _may_hold(cls: Definition, attrs) -> bool:
    """Cheap text test before analyse_root: a class can only assign attributes whose names its source has."""
    text = "".join(cls.module.lines[cls.node.lineno - 1:cls.node.end_lineno])
    return any(attr in text for attr in attrs)


def _dynamic_scope(project: Project, model: RootModel, uses_globals: bool) -> Set[Definition]:
    if uses_globals:
        facts = model.cls.module
        start = set(facts.defs.values())
        for name in facts.imports:
            found = project.resolve_dotted(facts.imports[name])
            if found is not None:
                start.add(found)
        return set(project.reach(start))
    return {d for f in project.modules for d in f.defs.values()}


def classify(project: Project, config: Config, plan: Plan) -> None:
    roots, possible = find_roots(project, config)
    plan.roots = [f"{r.name} ({r.cls.module.display}:{r.cls.node.lineno}; backbone: "
                  f"{', '.join(r.backbone_attrs) or 'none'})" for r in roots]
    for root in roots:
        if not root.has_backbone:
            plan.notes.append(f"root model {root.name} has no backbone attribute "
                              f"({', '.join(config.backbone_attrs)}): nothing in it is converted")
    root_by_def = {r.cls: r for r in roots}
    for facts in project.modules:
        for raw in facts.sites:
            site = facts.make_site(raw)
            site.decision, site.reason = _decide(project, facts, raw, roots, root_by_def, possible, config)
            site.decision, site.reason = _apply_form(raw, site.decision, site.reason)
            site.decision, site.reason = _apply_overrides(site, config, site.decision, site.reason)
            plan.sites.append(site)


def _decide(project, facts: ModuleFacts, raw: RawSite, roots, root_by_def, possible, config) -> Tuple[str, str]:
    if raw.op != "BatchNorm2d":
        return KEEP, f"{raw.op} is out of scope (only BatchNorm2d is converted)"
    owner = facts.defs.get(raw.owner) if raw.owner else None
    if owner is None:
        return KEEP, "module-level code outside any definition; not referenced by a root model"
    root = root_by_def.get(owner)
    if root is not None:
        return _decide_in_root(root, raw, config)
    bb = sorted({_origin(r, r.bb_reach[owner]) for r in roots if owner in r.bb_reach})
    head = sorted({_origin(r, r.head_reach[owner]) for r in roots if r.has_backbone and owner in r.head_reach})
    if bb and head:
        return UNSURE, f"shared: {owner.name} is reached from {', '.join(bb)} and from {', '.join(head)}"
    if head:
        return CONVERT, f"{owner.name} is reached from {', '.join(head)} (not a backbone attribute)"
    if bb:
        return KEEP, f"{owner.name} is reached only from {', '.join(bb)} (backbone)"
    if owner in possible:
        return KEEP, f"{owner.name} may belong to {possible[owner]}; only code reached from non-backbone attributes is converted"
    no_bb = [r.name for r in roots if not r.has_backbone and owner in r.head_reach]
    if no_bb:
        return KEEP, f"{owner.name} is reached from {', '.join(no_bb)}, which has no backbone attribute"
    return KEEP, "not referenced by a root model"


def _decide_in_root(root: RootModel, raw: RawSite, config: Config) -> Tuple[str, str]:
    if not root.has_backbone:
        return KEEP, (f"root model {root.name} has no backbone attribute ({', '.join(config.backbone_attrs)}); "
                      "name it with --backbone-attr")
    attrs = root.attrs_of.get(id(raw.statement), {OWN})
    backbone = sorted(a for a in attrs if a in config.backbone_attrs)
    other = sorted(_attr_label(a) for a in attrs if a not in config.backbone_attrs)
    if backbone and other:
        return UNSURE, f"value ends up in backbone {', '.join(backbone)} and in {', '.join(other)}"
    if backbone:
        return KEEP, f"{root.name}.{'/'.join(backbone)} is a backbone attribute"
    if attrs == {OWN}:
        return CONVERT, f"{root.name}'s own code outside the backbone assignments"
    return CONVERT, f"{root.name}: assigned to {', '.join(other)} (not a backbone attribute)"


def _origin(root: RootModel, attr: str) -> str:
    if attr == OWN:
        return f"{root.name}'s own code"
    if attr == DYNAMIC:
        return f"{root.name}.<dynamically named attribute>"
    return f"{root.name}.{attr}"


def _attr_label(attr: str) -> str:
    if attr == OWN:
        return "its own code"
    if attr == DYNAMIC:
        return "a dynamically named attribute"
    return f"self.{attr}"


def _apply_form(raw: RawSite, decision: str, reason: str) -> Tuple[str, str]:
    if raw.form == "call" or decision != CONVERT:
        return decision, reason
    what = "functools.partial(BatchNorm2d, ...)" if raw.form == "partial" else "BatchNorm2d passed as a callable"
    return UNSURE, f"{what} in non-backbone code ({reason}); bn2gn does not rewrite it blindly: use get_group_norm by hand"


def _apply_overrides(site: Site, config: Config, decision: str, reason: str) -> Tuple[str, str]:
    for flag, wanted, names in (("--convert", CONVERT, config.convert), ("--keep", KEEP, config.keep)):
        for name in names:
            if site.scope == name or site.scope.startswith(name + "."):
                if wanted == CONVERT and (site.op != "BatchNorm2d" or site.form != "call"):
                    return UNSURE, f"{flag} {name} asked to convert, but this is {site.op} {site.form}; change it by hand"
                return wanted, f"forced by {flag} {name} (analysis said {decision}: {reason})"
    return decision, reason
