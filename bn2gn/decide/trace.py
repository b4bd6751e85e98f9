"""`bn2gn scan --trace`: build the real model on CPU and decide every BatchNorm site from evidence.

While the factory runs, ``_BatchNorm.__init__`` is wrapped to record, for each instance, the first
stack frame inside the scanned files and the exact call expression it is executing (Python 3.11
``co_positions``, so several calls on one line stay apart). After construction ``named_modules()``
gives each instance's module paths. A site whose instances all sit under backbone attributes is
``keep``, none ``convert``, some of each ``unsure``; a site that never ran keeps its static decision.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import linecache
import os
import sys
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ..core.errors import EXIT_USAGE, Bn2gnError, Message, Opt, message_text
from ..core.settings import Config
from .backbone import Backbone
from .classify import _apply_overrides
from .plan import CONVERT, KEEP, UNSURE, Plan, Site
from .trace_report import TraceReport, Untracked, check_statistics, show

#: (display path, line, col, end_line, end_col): columns 1-based characters, like Site
Where = Tuple[str, int, int, int, int]


@dataclasses.dataclass
class Creation:
    """One BatchNorm instance built during the trace, and the call in the scanned files that built it."""

    instance: Any
    op: str
    where: Optional[Where]  # None: no frame of the build was inside the scanned files


def trace_plan(
    static: Plan, project, spec, config: Config, checkpoint=None, load_options=None
) -> TraceReport:
    """The traced plan for ``static``: build ``spec`` while recording, then decide each site."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise Bn2gnError(
            Message(
                "scan ",
                Opt("trace", command="scan"),
                " builds the model with PyTorch, which is not installed here: "
                "python -m pip install 'bn2gn[torch]' (CPU is enough)",
            ),
            EXIT_USAGE,
        ) from None
    files = scanned_files(project)
    with record_batchnorm(files) as creations, _forget_imports(spec, files):
        built = _build(spec)
    model = built.model
    paths = module_paths(model)
    inside = backbone_paths(model, config, static)
    by_site, untracked = match_creations(creations, static.sites, paths)
    report = TraceReport(
        plan=Plan(
            files=static.files,
            roots=list(static.roots),
            errors=list(static.errors),
            notes=list(static.notes),
            insertions=list(static.insertions),
            backbones=dict(static.backbones),
        ),
        model=spec.describe(),
        instances=len(creations),
        stubs=built.stub_uses(),
        untracked=untracked,
        build=built,
    )
    for site in static.sites:
        report.plan.sites.append(traced_site(site, by_site.get(_key(site)), paths, config, inside))
    report.executed = sum(1 for s in static.sites if _key(s) in by_site)
    report.differences = [
        (s, t) for s, t in zip(static.sites, report.plan.sites) if s.decision != t.decision
    ]
    if creations and not by_site and static.sites:
        report.warnings.append(
            message_text(
                "the build executed none of the BatchNorm sites in the scanned files: does ",
                Opt("path"),
                " import the same source tree that was scanned?",
            )
        )
    check_statistics(model, config, report, checkpoint, load_options)
    return report


def backbone_paths(model, config: Config, static: Optional[Plan] = None) -> set:
    """Module paths of ``model`` inside the backbone the static plan decided (the runtime's rule)."""
    backbone = Backbone.decided(
        config.backbone_names, static.backbones if static is not None else {}
    )
    return {path for path, _ in backbone.modules(model)}


def traced_site(
    site: Site,
    found: Optional[List[Creation]],
    paths: Dict[int, List[str]],
    config: Config,
    inside: Optional[set] = None,
) -> Site:
    traced = dataclasses.replace(site, module_paths=[])
    if found is None and site.form != "call":
        traced.reason = (
            f"{site.reason} (a trace sees the calls that use this {site.form}: see 'untracked')"
        )
        return traced
    if found is None:
        traced.reason = f"{site.reason} (not executed in trace)"
        return traced
    groups = [paths.get(id(c.instance), []) for c in found]
    traced.module_paths = [p for group in groups for p in group]
    traced.decision, traced.reason = decide_from_trace(site, groups, config, inside)
    if site.against and traced.decision != UNSURE:
        traced.decision, traced.reason = (
            UNSURE,
            (
                f"{site.against}; {traced.reason}, which says where the layer sits, not whether "
                "pretrained weights cover it"
            ),
        )
    traced.decision, traced.reason = _apply_overrides(
        traced, None, set(), config, traced.decision, traced.reason
    )
    return traced


def decide_from_trace(
    site: Site, groups: Sequence[List[str]], config: Config, inside: Optional[set] = None
) -> Tuple[str, str]:
    """All instances under backbone attributes -> keep; none -> convert; some of each -> unsure."""
    found = [p for group in groups for p in group]
    if site.op != "BatchNorm2d":
        return site.decision, f"{site.reason}; traced: {len(groups)} instance(s) {show(found)}"
    if not found:
        return (
            site.decision,
            f"{site.reason} (traced: built {len(groups)} instance(s), none of them part of the model)",
        )
    names = Backbone.named(config.backbone_names)
    backbone = [p for p in found if (p in inside if inside is not None else names.contains(p))]
    other = [p for p in found if p not in backbone]
    if backbone and other:
        return (
            UNSURE,
            f"traced: shared at run time: backbone {show(backbone)} and non-backbone {show(other)}",
        )
    if backbone:
        return (
            KEEP,
            f"traced: all {len(backbone)} instance(s) under backbone attributes: {show(backbone)}",
        )
    if site.form != "call":
        return UNSURE, (
            f"traced: instances outside the backbone {show(other)}, but this is {site.form}; "
            "change it by hand"
        )
    return (
        CONVERT,
        f"traced: {len(other)} instance(s), none under a backbone attribute: {show(other)}",
    )


# -- recording ------------------------------------------------------------------------------------
def scanned_files(project) -> Dict[str, str]:
    """Real path -> display path for every scanned file."""
    if project is None:
        return {}
    return {os.path.realpath(str(facts.path)): facts.display for facts in project.modules}


@contextlib.contextmanager
def record_batchnorm(files: Dict[str, str]) -> Iterator[List[Creation]]:
    """Wrap ``_BatchNorm.__init__`` so every instance built meanwhile is recorded with its creator call."""
    from torch.nn.modules.batchnorm import _BatchNorm

    original = _BatchNorm.__dict__["__init__"]
    creations: List[Creation] = []
    cache: Dict[str, Optional[str]] = {}

    def recording_init(self, *args, **kwargs):
        where = _creator(self, sys._getframe(1), files, cache)
        original(self, *args, **kwargs)
        creations.append(Creation(self, type(self).__name__, where))

    recording_init.__wrapped__ = original  # type: ignore[attr-defined]
    _BatchNorm.__init__ = recording_init
    try:
        yield creations
    finally:
        _BatchNorm.__init__ = original


def _creator(
    instance, frame, files: Dict[str, str], cache: Dict[str, Optional[str]]
) -> Optional[Where]:
    """The first frame inside the scanned files that is not the instance's own (subclass) constructor."""
    while frame is not None:
        code = frame.f_code
        own = (
            code.co_argcount
            and code.co_name == "__init__"
            and frame.f_locals.get(code.co_varnames[0]) is instance
        )
        if not own:
            filename = code.co_filename
            if filename not in cache:
                cache[filename] = files.get(os.path.realpath(filename))
            if cache[filename] is not None:
                return (cache[filename],) + _call_span(frame)
        frame = frame.f_back
    return None


def _call_span(frame) -> Tuple[int, int, int, int]:
    """Line and 1-based character columns of the call the frame is executing."""
    code = frame.f_code
    line, end_line, col, end_col = next(
        itertools.islice(code.co_positions(), frame.f_lasti // 2, None), (None, None, None, None)
    )
    if line is None or col is None:
        return frame.f_lineno, 0, frame.f_lineno, 0
    return (
        line,
        _chars(code.co_filename, line, col) + 1,
        end_line or line,
        _chars(code.co_filename, end_line or line, end_col or 0) + 1,
    )


def _chars(filename: str, line: int, byte_col: int) -> int:
    text = linecache.getline(filename, line)
    return len(text.encode("utf-8")[:byte_col].decode("utf-8", "replace")) if text else byte_col


def _build(spec):
    from ..model.spec import build

    saved = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # scan writes nothing, not even __pycache__ in the user's tree
    try:
        return build(spec)
    finally:
        sys.dont_write_bytecode = saved


@contextlib.contextmanager
def _forget_imports(spec, files: Dict[str, str]) -> Iterator[None]:
    """Drop the user's modules imported by the build, so a later build (or test) imports them afresh."""
    before = set(sys.modules)
    # a train script's own folder holds what it imports, as --path folders do for a factory
    folders = spec.paths if spec.script is None else (spec.script.resolve().parent,)
    roots = tuple(os.path.join(os.path.realpath(str(p)), "") for p in folders)
    try:
        yield
    finally:
        for name in set(sys.modules) - before:
            filename = getattr(sys.modules[name], "__file__", None)
            real = os.path.realpath(filename) if filename else ""
            if real and (real in files or real.startswith(roots)):
                del sys.modules[name]


def module_paths(model) -> Dict[int, List[str]]:
    """id(module) -> every path it is reachable under (a module registered twice has two)."""
    paths: Dict[int, List[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        paths.setdefault(id(module), []).append(name or "<root>")
    return paths


# -- matching instances to static sites ------------------------------------------------------------
def _key(site: Site) -> Tuple[str, int, int]:
    return site.path, site.line, site.col


def match_creations(
    creations: Sequence[Creation], sites: Sequence[Site], paths: Dict[int, List[str]]
) -> Tuple[Dict[Tuple[str, int, int], List[Creation]], List[Untracked]]:
    """Each creation goes to the static site whose call it executed: same start, else the smallest site
    whose span contains the call's start. The rest are reported by creating call."""
    by_file: Dict[str, List[Site]] = {}
    for site in sites:
        by_file.setdefault(site.path, []).append(site)
    matched: Dict[Tuple[str, int, int], List[Creation]] = {}
    loose: Dict[Tuple[str, str], List[str]] = {}
    for creation in creations:
        site = _site_for(creation.where, by_file)
        if site is not None:
            matched.setdefault(_key(site), []).append(creation)
            continue
        where = creation.where
        location = f"{where[0]}:{where[1]}:{where[2]}" if where else "<outside the scanned files>"
        found = paths.get(id(creation.instance)) or ["<not in the model>"]
        loose.setdefault((location, creation.op), []).extend(found)
    return matched, [Untracked(location, op, found) for (location, op), found in loose.items()]


def _site_for(where: Optional[Where], by_file: Dict[str, List[Site]]) -> Optional[Site]:
    if where is None:
        return None
    path, line, col, _, _ = where
    candidates = by_file.get(path, [])
    for site in candidates:
        if (site.line, site.col) == (line, col):
            return site
    if col == 0:  # no column information: only a line with one call site is certain
        on_line = [s for s in candidates if s.line == line and s.form == "call"]
        return on_line[0] if len(on_line) == 1 else None
    containing = [
        s
        for s in candidates
        if (s.line, s.col) <= (line, col) < (s.end_line, s.end_col) and s.form == "call"
    ]
    if not containing:
        return None
    return min(containing, key=lambda s: (s.end_line - s.line, s.end_col - s.col))
