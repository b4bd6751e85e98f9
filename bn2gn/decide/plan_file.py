"""Saved plans: read a plan written by ``bn2gn scan -o``, apply its decisions.

A plan may have been reviewed and edited by hand. Its decisions are only trusted for sites whose
fingerprint (a hash of the statement and scope, see ``ModuleFacts.fingerprint``) still matches
the current source; any other site is reported and skipped, never rewritten blindly.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Dict, List, Tuple

from ..core.errors import EXIT_USAGE, Bn2gnError, Opt, message_text
from .plan import CONVERT, DECISIONS, UNSURE, Plan, Site, plan_from_dict

REQUIRED = ("path", "line", "col", "decision")


@dataclasses.dataclass
class PlanApplication:
    """What applying a saved plan did, for the report."""

    label: str
    applied: List[Site] = dataclasses.field(default_factory=list)
    changed: List[Site] = dataclasses.field(
        default_factory=list
    )  # current sites whose source changed
    unplanned: List[Site] = dataclasses.field(
        default_factory=list
    )  # current sites the plan does not list
    vanished: List[Site] = dataclasses.field(
        default_factory=list
    )  # plan sites no longer in the source

    @property
    def skipped(self) -> int:
        return len(self.changed) + len(self.unplanned)

    def summary(self) -> str:
        line = (
            f"plan {self.label}: {len(self.applied)} site(s) applied, {len(self.changed)} skipped (source "
            f"changed since the plan was made), {len(self.unplanned)} skipped (not in the plan)"
        )
        if self.vanished:
            line += f", {len(self.vanished)} planned site(s) no longer found"
        return line


def read_plan_file(path: Path) -> Plan:
    """Load and check a plan JSON; anything wrong is one line naming the file and the fix."""
    hint = message_text(
        "make one with: bn2gn scan PATH... ", Opt("format", "json", command="scan"), " -o plan.json"
    )
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Bn2gnError(f"{path}: no such plan file; {hint}", EXIT_USAGE) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise Bn2gnError(f"{path}: cannot read the plan ({exc}); {hint}", EXIT_USAGE) from None
    except json.JSONDecodeError as exc:
        raise Bn2gnError(
            f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); fix the edit or {hint}", EXIT_USAGE
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("sites"), list):
        raise Bn2gnError(f"{path}: not a bn2gn plan (no 'sites' list); {hint}", EXIT_USAGE)
    for index, site in enumerate(data["sites"]):
        missing = [k for k in REQUIRED if not isinstance(site, dict) or k not in site]
        if missing:
            raise Bn2gnError(
                f"{path}: site #{index + 1} lacks {', '.join(missing)}; {hint}", EXIT_USAGE
            )
        if site["decision"] not in DECISIONS:
            raise Bn2gnError(
                f"{path}: site {site['path']}:{site['line']}:{site['col']} has decision "
                f"{site['decision']!r}; use one of {', '.join(DECISIONS)}",
                EXIT_USAGE,
            )
    try:
        return plan_from_dict(data)
    except (TypeError, ValueError) as exc:
        raise Bn2gnError(f"{path}: malformed plan ({exc}); {hint}", EXIT_USAGE) from None


def apply_saved_plan(saved: Plan, current: Plan, label: str) -> PlanApplication:
    """Give ``current``'s sites the saved decisions where the fingerprints agree; mark the rest unsure."""
    result = PlanApplication(label=label)
    saved_by_file: Dict[str, List[Site]] = {}
    for site in saved.sites:
        saved_by_file.setdefault(_same_file(site.path, current), []).append(site)
    for path in sorted({s.path for s in current.sites} | set(saved_by_file)):
        pairs, old_left, new_left = pair_sites(saved_by_file.get(path, []), current.sites_in(path))
        for old, new in pairs:
            _take_decision(old, new, label)
            result.applied.append(new)
        unexplained = list(
            old_left
        )  # each planned site left over explains one changed current site
        for new in new_left:
            if new.op != "BatchNorm2d" and new.decision != CONVERT:
                continue
            same = [s for s in unexplained if (s.line, s.col) == (new.line, new.col)] or [
                s for s in unexplained if s.scope == new.scope
            ]
            changed = bool(same)
            if same:
                unexplained.remove(same[0])
            new.decision = UNSURE
            if changed:
                new.reason = (
                    f"skipped: the source changed since {label} was made (fingerprint mismatch); "
                    "re-run bn2gn scan and review the site"
                )
                result.changed.append(new)
            else:
                new.reason = (
                    f"skipped: not in {label} (added after it was made?); re-run bn2gn scan"
                )
                result.unplanned.append(new)
        result.vanished.extend(unexplained)
    return result


def pair_sites(
    old: List[Site], new: List[Site]
) -> Tuple[List[Tuple[Site, Site]], List[Site], List[Site]]:
    """Pair plan sites with current ones: same place and fingerprint first, then the same fingerprint
    elsewhere (lines shifted), in order, when both sides have it equally often."""
    pairs = []
    by_place = {(s.line, s.col, s.fingerprint): s for s in new if s.fingerprint}
    old_left = []
    for site in old:
        match = (
            by_place.pop((site.line, site.col, site.fingerprint), None)
            if site.fingerprint
            else None
        )
        if match is None:
            old_left.append(site)
        else:
            pairs.append((site, match))
    paired = {id(n) for _, n in pairs}
    new_left = [s for s in new if id(s) not in paired]
    for fingerprint in sorted({s.fingerprint for s in old_left if s.fingerprint}):
        olds = [s for s in old_left if s.fingerprint == fingerprint]
        news = [s for s in new_left if s.fingerprint == fingerprint]
        if len(olds) == len(news):
            pairs.extend(zip(olds, news))
            taken = {id(s) for s in olds + news}
            old_left = [s for s in old_left if id(s) not in taken]
            new_left = [s for s in new_left if id(s) not in taken]
    return pairs, old_left, new_left


def _take_decision(old: Site, new: Site, label: str) -> None:
    new.module_paths = list(old.module_paths)
    if old.decision == CONVERT and (new.op != "BatchNorm2d" or new.form != "call"):
        new.decision = UNSURE
        new.reason = (
            f"{label} says convert, but this is {new.op} {new.form}; bn2gn only rewrites "
            "BatchNorm2d(...) calls: change it by hand"
        )
        return
    new.decision = old.decision
    new.reason = f"{old.reason} [from {label}]" if old.reason else f"decided in {label}"


def _same_file(saved_path: str, current: Plan) -> str:
    """The current display path of a file named in the plan (the same text, or the same file on disk)."""
    names = {s.path for s in current.sites}
    if saved_path in names:
        return saved_path
    try:
        target = Path(saved_path).resolve()
    except OSError:
        return saved_path
    for name in names:
        if Path(name).resolve() == target:
            return name
    return saved_path


def plan_for_rewrite(plan_file: Path, paths, config) -> Tuple[Plan, object, PlanApplication]:
    """``rewrite --plan``: the current static plan with the saved decisions applied where still valid."""
    from .scan import build_plan

    saved = read_plan_file(plan_file)
    plan, project = build_plan(paths, config)
    return plan, project, apply_saved_plan(saved, plan, str(plan_file))
