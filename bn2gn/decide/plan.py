"""The plan: every BatchNorm site with its decision and the reason, printable before anything is written."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Callable, Dict, List, Optional, Union

CONVERT, KEEP, UNSURE = "convert", "keep", "unsure"
DECISIONS = (CONVERT, KEEP, UNSURE)


@dataclasses.dataclass
class Site:
    """One place where a BatchNorm module is constructed (or BatchNorm2d is passed as a callable)."""

    path: str
    line: int
    col: int  # 1-based character column of the expression's start
    end_line: int
    end_col: int
    scope: str  # "Class.method", "function", "Class" or "<module>"
    op: str  # "BatchNorm2d", "BatchNorm1d", ...
    form: str  # "call", "partial" or "callable"
    target: (
        str  # where the module ends up: "self.actf[0]", "layers.append(...) -> self.deconv_layers"
    )
    decision: str = KEEP
    reason: str = ""
    #: ``fingerprint``, or what computes it on the first read (``ModuleFacts.fingerprint``): an
    #: ``ast.unparse`` and a sha256 a site are wasted on a run that reads none (``migrate --check``)
    _fingerprint: Union[str, Callable[[], str]] = dataclasses.field(
        default="", compare=False, repr=False
    )
    module_paths: List[str] = dataclasses.field(default_factory=list)
    #: static evidence a trace's module paths cannot outweigh (a new layer inside a backbone class
    #: that its pretrained checkpoint does not cover): the reason, or "" when there is none
    against: str = ""

    @property
    def fingerprint(self) -> str:
        """A short hash of the site's statement and scope: plan files match sites by it."""
        if callable(self._fingerprint):
            self._fingerprint = self._fingerprint()
        return self._fingerprint

    def __getstate__(self) -> dict:
        """Pickled for a worker (``-j N``) with its fingerprint taken: not the facts computing it."""
        return {**self.__dict__, "_fingerprint": self.fingerprint}

    @property
    def location(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"

    def as_dict(self) -> dict:
        self.fingerprint  # noqa: B018 -- taken before asdict copies the fields
        data = {
            ("fingerprint" if key == "_fingerprint" else key): value
            for key, value in dataclasses.asdict(self).items()
        }
        if not self.module_paths:
            data.pop("module_paths")
        if not self.against:
            data.pop("against")
        return data


@dataclasses.dataclass
class Plan:
    """The decisions of one analysis: every BatchNorm site, the roots, what could not be read."""

    sites: List[Site] = dataclasses.field(default_factory=list)
    roots: List[str] = dataclasses.field(default_factory=list)
    #: files the analysis could not read or parse (``bn2gn.core.errors.SourceFailure``; the text a saved
    #: plan holds, when read back from JSON)
    errors: List[object] = dataclasses.field(default_factory=list)
    notes: List[str] = dataclasses.field(default_factory=list)
    #: files that look like OpenMMLab configs (for the note pointing at ``bn2gn config audit``)
    openmmlab_configs: List[str] = dataclasses.field(default_factory=list)
    files: int = 0
    #: other planned edits (patch-trainer insertion points), as plain dicts with path/line/rule/message
    insertions: List[dict] = dataclasses.field(default_factory=list)
    #: root model name -> {backbone attribute: evidence}: the one backbone decision every command uses
    backbones: Dict[str, Dict[str, str]] = dataclasses.field(default_factory=dict)

    def counts(self) -> Dict[str, int]:
        counter = Counter(site.decision for site in self.sites)
        return {d: counter.get(d, 0) for d in DECISIONS}

    def sites_in(self, path: str) -> List[Site]:
        return [s for s in self.sites if s.path == path]

    def as_dict(self) -> dict:
        return {
            "files": self.files,
            "roots": self.roots,
            "sites": [s.as_dict() for s in self.sites],
            "insertions": self.insertions,
            "errors": [str(error) for error in self.errors],
            "notes": self.notes,
            "openmmlab_configs": self.openmmlab_configs,
            "backbones": self.backbones,
            "summary": self.counts(),
        }


def openmmlab_config_note(paths: List[str]) -> str:
    """One line for every file that looks like an OpenMMLab config: bn2gn config audit handles those."""
    shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
    return (
        f"{len(paths)} file(s) look like OpenMMLab configs ({shown}); rewrite does not change configs: "
        f"bn2gn config audit {paths[0]} checks their freezing"
    )


def render_text(plan: Plan, verbose: bool = False) -> str:
    lines = []
    for site in plan.sites:
        lines.append(
            f"{site.location}: {site.decision:<7} {site.scope}  {site.target}  "
            f"[{site.op}{'' if site.form == 'call' else ' ' + site.form}]  {site.reason}"
        )
    for item in plan.insertions:
        lines.append(
            f"{item['path']}:{item['line']}: insert  {item.get('scope', '')}  "
            f"[{item['rule']}]  {item['message']}"
        )
    if plan.openmmlab_configs:
        lines.append(f"note: {openmmlab_config_note(plan.openmmlab_configs)}")
    if verbose:
        lines.extend(f"note: {n}" for n in plan.notes)
        if plan.roots:
            lines.append("roots: " + ", ".join(plan.roots))
    lines.extend(f"error: {e}" for e in plan.errors)
    counts = plan.counts()
    summary = (
        f"{plan.files} files, {len(plan.sites)} sites: {counts[CONVERT]} convert, {counts[KEEP]} keep, "
        f"{counts[UNSURE]} unsure"
    )
    if plan.errors:
        summary += f"; {len(plan.errors)} files failed"
    lines.append(summary)
    return "\n".join(lines) + "\n"


def render_json(plan: Plan) -> str:
    import json

    return json.dumps(plan.as_dict(), indent=2) + "\n"


def site_from_dict(data: dict) -> Site:
    fields = {f.name for f in dataclasses.fields(Site)}
    data = {("_fingerprint" if k == "fingerprint" else k): v for k, v in data.items()}
    return Site(**{k: v for k, v in data.items() if k in fields})


def plan_from_dict(data: dict) -> Plan:
    return Plan(
        sites=[site_from_dict(s) for s in data.get("sites", [])],
        roots=list(data.get("roots", [])),
        errors=list(data.get("errors", [])),
        notes=list(data.get("notes", [])),
        files=int(data.get("files", 0)),
        insertions=list(data.get("insertions", [])),
        backbones={
            str(k): dict(v) for k, v in (data.get("backbones") or {}).items() if isinstance(v, dict)
        },
    )


def scope_name(class_name: Optional[str], func_names: List[str]) -> str:
    parts = ([class_name] if class_name else []) + func_names
    return ".".join(parts) if parts else "<module>"
