"""Decide convert / keep / unsure for every site, from the construction graph: how backbone and
non-backbone are told apart. The decision and its reason are produced together so the plan can show them.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

from ..core.errors import Bn2gnError, Message, Opt, message_text
from ..core.settings import Config
from .facts import Definition, ModuleFacts, RawSite
from .graph import Project
from .plan import CONVERT, KEEP, UNSURE, Plan, Site, scope_name
from .roots import DYNAMIC, OWN, RootModel, analyse_root, class_flow, evidence_of


def find_roots(project: Project, config: Config) -> Tuple[List[RootModel], Dict[Definition, str]]:
    """Root models, and the definitions kept because a dynamically built backbone may contain them."""
    classes = project.modules_classes
    attrs = set(config.backbone_names)
    if config.roots:
        chosen = [
            d
            for f in project.modules
            for d in f.defs.values()
            if d.kind == "class" and any(matches_definition(d, name) for name in config.roots)
        ]
        missing = [n for n in config.roots if not any(matches_definition(d, n) for d in chosen)]
        if missing:
            raise Bn2gnError(
                Message(
                    Opt("root", ", ".join(sorted(missing))), ": no such class in the scanned files"
                )
            )
        return [analyse_root(project, d, attrs) for d in chosen], {}
    entry_built = entry_point_classes(project, classes)
    if entry_built:
        candidates = entry_built
    else:
        candidates = [
            d
            for d in sorted(classes, key=lambda d: (d.module.display, d.node.lineno))
            if not (project.built_by.get(d, set()) - {d})
        ]
    models = [analyse_root(project, d, attrs) for d in candidates]
    models = [m for m in models if m.has_backbone or (set(m.head_reach) & classes) or entry_built]
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
    roots = [
        m
        for m in models
        if entry_built
        or not any(
            m.cls not in possible.get(claimer, {})
            and (claims_by_globals.get((claimer, m.cls)) or not m.has_backbone)
            for claimer in possible.get(m.cls, {})
        )
    ]
    root_defs = {m.cls for m in roots}
    labels = {d: next(iter(by.values())) for d, by in possible.items() if d not in root_defs}
    return roots, labels


ENTRY_NAME = re.compile(r"^(create|get|build|make)_(\w+_)?(model|net|network|detector)s?$")


def entry_point_classes(project: Project, classes: Set[Definition]) -> List[Definition]:
    """Model classes the entry points build (``create_model``, ``get_pose_net``, the tables they subscript):
    followed through functions and tables, stopping at the first nn.Module classes; a class that
    another of those classes builds (a block passed to its constructor) is not a root."""
    entries = [
        d
        for f in project.modules
        for d in f.defs.values()
        if d.kind == "function" and ENTRY_NAME.match(d.name)
    ]
    if not entries:
        return []
    seen: Set[Definition] = set(entries)
    queue = list(entries)
    found: List[Definition] = []
    while queue:
        current = queue.pop(0)
        for nxt in sorted(project.refs(current), key=lambda d: d.qualname):
            if nxt in seen:
                continue
            seen.add(nxt)
            if nxt.kind == "class":
                if nxt in classes:
                    found.append(nxt)
            else:
                queue.append(nxt)
    inside: Set[Definition] = set()
    for cls in found:
        start = set(project.refs(cls)) | {
            d for v in project.param_bindings.get(cls, {}).values() for d in v
        }
        inside |= set(project.reach(start - {cls}, avoid=cls))
    return sorted(
        (c for c in found if c not in inside), key=lambda d: (d.module.display, d.node.lineno)
    )


def _unwrap_wrappers(project: Project, models: List[RootModel], classes, attrs) -> List[RootModel]:
    """A candidate with no backbone attribute that holds models which have one (``ModelWithLoss(DLASeg())``)
    is a wrapper: the top-most wrapped models are the roots instead."""
    out: List[RootModel] = []
    for model in models:
        if model.has_backbone:
            out.append(model)
            continue
        inner = [
            analyse_root(project, d, attrs)
            for d in model.head_reach
            if d in classes and _may_hold(d, attrs)
        ]
        inner = [m for m in inner if m.has_backbone]
        reach = {m.cls: set(project.reach(project.refs(m.cls))) for m in inner}
        top = [m for m in inner if not any(m.cls in reach[o.cls] for o in inner if o is not m)]
        out.extend(top or [model])
    unique = {m.cls: m for m in out}
    return sorted(unique.values(), key=lambda m: (m.cls.module.display, m.cls.node.lineno))


def _may_hold(cls: Definition, attrs) -> bool:
    """Cheap text test before analyse_root: a class can only assign attributes whose names its source has."""
    text = "".join(cls.module.lines[cls.node.lineno - 1 : cls.node.end_lineno])
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
    plan.roots = [
        f"{r.name} ({r.cls.module.display}:{r.cls.node.lineno}; backbone: "
        f"{', '.join(r.backbone_attrs) or 'none'})"
        for r in roots
    ]
    plan.backbones = {r.name: dict(sorted(r.evidence.items())) for r in roots if r.evidence}
    _kept_attributes(project, roots, config, plan)
    for root in roots:
        if not root.has_backbone:
            plan.notes.append(
                f"root model {root.name} has no backbone attribute "
                f"({', '.join(config.backbone_names)}) and no pretrained weights: nothing in it is converted"
            )
        for attr, why in sorted(root.evidence.items()):
            plan.notes.append(f"backbone {root.name}.{attr}: {why}")
    root_by_def: Dict[Definition, List[RootModel]] = {}
    for root in roots:
        for definition in [root.cls] + root.bases:
            root_by_def.setdefault(definition, []).append(root)
    backbone_classes = {d for r in roots for d in r.bb_reach}
    used = _overrides_used(config)
    for facts in project.modules:
        for raw in facts.sites:
            site = facts.make_site(raw)
            site.decision, site.reason = _decide(
                project, facts, raw, roots, root_by_def, possible, config, backbone_classes
            )
            site.decision, site.reason = _apply_form(raw, site.decision, site.reason)
            targets = _site_targets(project, facts, raw) if used else set()
            site.decision, site.reason = _apply_overrides(
                site, facts, targets, config, site.decision, site.reason, used
            )
            site.against = _evidence_against(project, facts, raw, site)
            plan.sites.append(site)
    unused = [Opt(option, name) for (option, name), hit in used.items() if not hit]
    if unused:
        unused = _not_already_converted(project, unused)
    if unused:
        raise Bn2gnError(
            Message(
                unused[0],
                ": matches no BatchNorm site in the scanned files "
                "(use Class[.method], path/file.py:Class[.method] or module.Class[.method])",
            )
        )


def _not_already_converted(project, unused: List[Opt]) -> List[Opt]:
    """The overrides left unmatched once ``--convert X`` whose sites are get_group_norm calls
    already (a second run after the migration) count as satisfied."""
    converted = [
        (facts.display, facts.modname, scope)
        for facts in project.modules
        if any("get_group_norm" in line for line in facts.lines)
        for scope in _helper_call_scopes(facts.tree)
    ]
    return [
        opt
        for opt in unused
        if opt.name != "convert"
        or not any(_matches(d, m, scope, opt.value) for d, m, scope in converted)
    ]


def _helper_call_scopes(tree: ast.Module) -> Set[str]:
    """The scopes (as sites name them) of the get_group_norm calls in ``tree``."""
    scopes: Set[str] = set()
    stack = [(tree, None, ())]
    while stack:
        node, class_name, funcs = stack.pop()
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "get_group_norm":
            scopes.add(scope_name(class_name, list(funcs)))
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                stack.append((child, child.name, ()))
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                stack.append((child, class_name, funcs + (child.name,)))
            else:
                stack.append((child, class_name, funcs))
    return scopes


def _decide(
    project,
    facts: ModuleFacts,
    raw: RawSite,
    roots,
    root_by_def,
    possible,
    config,
    backbone_classes=(),
) -> Tuple[str, str]:
    if raw.op != "BatchNorm2d":
        return KEEP, f"{raw.op} is out of scope (only BatchNorm2d is converted)"
    owner = facts.defs.get(raw.owner) if raw.owner else None
    if owner is None:
        return KEEP, "module-level code outside any definition; not referenced by a root model"
    in_roots = root_by_def.get(owner)
    if in_roots:
        decided = {_decide_in_root(r, raw, config) for r in in_roots}
        if len({d for d, _ in decided}) == 1:
            return sorted(decided)[0]
        return UNSURE, "decided differently by the models that share it: " + "; ".join(
            f"{d} ({why})" for d, why in sorted(decided)
        )
    bb = sorted({_origin(r, r.bb_reach[owner]) for r in roots if owner in r.bb_reach})
    head = sorted(
        {_origin(r, r.head_reach[owner]) for r in roots if r.has_backbone and owner in r.head_reach}
    )
    if bb and head:
        return UNSURE, message_text(
            f"shared: {owner.name} is reached from {', '.join(bb)} and from {', '.join(head)} "
            f"(backbone: {', '.join(bb)}); ",
            *_settles(owner.name),
        )
    if head:
        return CONVERT, f"{owner.name} is reached from {', '.join(head)} (not a backbone attribute)"
    if bb:
        new_layer = _new_layer_in_backbone(project, owner, raw)
        if new_layer:
            return UNSURE, new_layer
        return KEEP, f"{owner.name} is reached only from {', '.join(bb)} (backbone)"
    if owner in possible:
        return (
            KEEP,
            f"{owner.name} may belong to {possible[owner]}; "
            "only code reached from non-backbone attributes is converted",
        )
    no_bb = [r.name for r in roots if not r.has_backbone and owner in r.head_reach]
    if no_bb:
        return (
            KEEP,
            f"{owner.name} is reached from {', '.join(no_bb)}, which has no backbone attribute",
        )
    return KEEP, "not used by any model (no root model builds it)"


def _evidence_against(project: Project, facts: ModuleFacts, raw: RawSite, site) -> str:
    """The new-layer reason when it is what left the site unsure: a trace that finds the layer under
    the backbone attribute does not answer it, so it must not settle the site."""
    if site.decision != UNSURE or not raw.owner or raw.owner not in facts.defs:
        return ""
    new_layer = _new_layer_in_backbone(project, facts.defs[raw.owner], raw)
    return new_layer if new_layer and new_layer == site.reason else ""


def _new_layer_in_backbone(project: Project, owner: Definition, raw: RawSite) -> Optional[str]:
    """A layer a backbone class adds beside what its pretrained checkpoint covers (a tracker's extra input)."""
    if owner.kind != "class" or owner not in project.modules_classes:
        return None
    loaded = evidence_of(project).self_load(owner)
    if loaded is None or not loaded.checkpoint:
        return None
    attrs = set(statement_attrs(project, owner).get(id(raw.statement), ()))
    new = sorted(a for a in attrs if a not in loaded.covers and a not in (OWN, DYNAMIC))
    if not new or len(new) < len(attrs - {OWN}):
        return None
    name = f"{owner.name}.{new[0]}"
    return message_text(
        f"new layer {name} inside backbone class {owner.name}: {loaded.describe()}, which covers "
        f"{', '.join(loaded.covers)} but not {new[0]} (no pretrained statistics); ",
        Opt("keep", name),
        " to freeze it as backbone, ",
        Opt("convert", name),
        " to convert it",
    )


def _settles(name: str) -> tuple:
    """'--keep or --convert NAME settles it', as message parts."""
    return Opt("keep"), " or ", Opt("convert", name), " settles it"


def _decide_in_root(root: RootModel, raw: RawSite, config: Config) -> Tuple[str, str]:
    attrs = root.attrs_of.get(id(raw.statement), {OWN})
    unsure = sorted(a for a in attrs if a in root.uncertain)
    if unsure:
        return UNSURE, root.uncertain[unsure[0]]
    if not root.has_backbone:
        return KEEP, message_text(
            f"root model {root.name} has no backbone attribute ({', '.join(config.backbone_names)}) "
            "and loads no pretrained weights; name it with ",
            Opt("backbone_attr"),
        )
    backbone = sorted(a for a in attrs if a in root.evidence)
    other = sorted(_attr_label(a) for a in attrs if a not in root.evidence)
    if backbone and other:
        return UNSURE, message_text(
            f"value ends up in backbone {', '.join(backbone)} and in {', '.join(other)}; ",
            *_settles(raw.scope),
        )
    if backbone:
        return KEEP, f"backbone: {root.evidence[backbone[0]]}"
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
    what = (
        "functools.partial(BatchNorm2d, ...)"
        if raw.form == "partial"
        else "BatchNorm2d passed as a callable"
    )
    return (
        UNSURE,
        f"{what} in non-backbone code ({reason}); bn2gn does not rewrite it blindly: use get_group_norm by hand",
    )


def _overrides_used(config: Config) -> Dict[Tuple[str, str], bool]:
    return {
        (flag, name): False
        for flag, names in (("convert", config.convert), ("keep", config.keep))
        for name in names
    }


def _kept_attributes(project: Project, roots, config: Config, plan: Plan) -> None:
    """``--keep Root.attr`` names an attribute of a root model as backbone: its sites stay
    BatchNorm, so the freeze must cover it too (it joins the plan's backbone, with that reason)."""
    for name in config.keep:
        owner, dot, attr = name.rpartition(".")
        root = next((r for r in roots if r.name == owner), None) if dot else None
        if root is None or attr in plan.backbones.get(root.name, {}):
            continue
        assigned = set().union(*statement_attrs(project, root.cls).values())
        if attr in assigned and attr not in config.backbone_names:
            plan.backbones.setdefault(root.name, {})[attr] = message_text(
                f"{root.name}.{attr}: kept as backbone by ", Opt("keep", name)
            )


def _site_targets(project: Project, facts: ModuleFacts, raw: RawSite) -> Set[str]:
    """``Class.attr`` for each attribute of the site's class its value ends up in (for attribute overrides)."""
    owner = facts.defs.get(raw.owner) if raw.owner else None
    if owner is None or owner.kind != "class":
        return set()
    final = statement_attrs(project, owner).get(id(raw.statement), ())
    return {f"{owner.name}.{a}" for a in final if a not in (OWN, DYNAMIC)}


def statement_attrs(project: Project, cls: Definition) -> Dict[int, Set[str]]:
    """id(statement node) -> attributes of ``cls`` its value ends up in (one index per class, not per site)."""
    cache = project.__dict__.setdefault("_bn2gn_statement_attrs", {})
    if cls not in cache:
        statements, finals, _ = class_flow(project, cls)
        index: Dict[int, Set[str]] = {}
        for stmt, final in zip(statements, finals):
            index.setdefault(id(stmt.node), set()).update(final)
        cache[cls] = index
    return cache[cls]


def matches_definition(definition: Definition, name: str) -> bool:
    """``Class``, ``path/file.py:Class`` or ``package.module.Class`` names ``definition``."""
    return _matches(definition.module.display, definition.module.modname, definition.name, name)


def _matches(
    display: str, modname: str, scope: str, name: str, targets: Set[str] = frozenset()
) -> bool:
    if ":" in name:
        path, _, rest = name.rpartition(":")
        want = Path(path).as_posix().lstrip("./")
        display = Path(display).as_posix()
        if not (display == want or display.endswith("/" + want)):
            return False
        return _scope_matches(scope, rest, targets)
    if _scope_matches(scope, name, targets):
        return True
    parts = name.split(".")
    for cut in range(1, len(parts)):
        module, rest = ".".join(parts[:cut]), ".".join(parts[cut:])
        if (modname == module or modname.endswith("." + module)) and _scope_matches(
            scope, rest, targets
        ):
            return True
    return False


def _scope_matches(scope: str, name: str, targets: Set[str]) -> bool:
    return scope == name or scope.startswith(name + ".") or name in targets


def _apply_overrides(
    site: Site,
    facts: Optional[ModuleFacts],
    targets: Set[str],
    config: Config,
    decision: str,
    reason: str,
    used: Optional[Dict[Tuple[str, str], bool]] = None,
) -> Tuple[str, str]:
    """--convert/--keep; ``facts`` None (a traced site): module-qualified names are matched by path."""
    display = facts.display if facts is not None else site.path
    modname = (
        facts.modname
        if facts is not None
        else Path(site.path).with_suffix("").as_posix().replace("/", ".")
    )
    for flag, wanted, names in (
        ("convert", CONVERT, config.convert),
        ("keep", KEEP, config.keep),
    ):
        for name in names:
            if _matches(display, modname, site.scope, name, targets):
                if used is not None:
                    used[(flag, name)] = True
                used[(flag, name)] = True
                if wanted == CONVERT and (site.op != "BatchNorm2d" or site.form != "call"):
                    return (
                        UNSURE,
                        message_text(
                            Opt(flag, name),
                            f" asked to convert, but this is {site.op} {site.form}; change it by hand",
                        ),
                    )
                return wanted, message_text(
                    "forced by ", Opt(flag, name), f" (analysis said {decision}: {reason})"
                )
    return decision, reason
