"""The verification report shared by `bn2gn demo` and `bn2gn verify`: checks grouped in sections.

Each check has a name, a status, the measured value and, when it fails, a message that says what
it means and what to do. ``fail`` makes the command exit 1; ``warn`` and ``info`` never do.
"""

from __future__ import annotations

import dataclasses
from typing import List

from ..core.errors import Opt, message_text

PASS, FAIL, WARN, INFO = "pass", "fail", "warn", "info"
_LABEL = {PASS: "PASS", FAIL: "FAIL", WARN: "WARN", INFO: "INFO"}
#: Warnings of one kind shown one per line before the rest is summarised (JSON lists all of them).
TEXT_WARNING_LIMIT = 8


@dataclasses.dataclass
class Check:
    name: str
    status: str
    value: str
    message: str = ""
    data: dict = dataclasses.field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status != FAIL

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "passed": self.passed,
            "status": self.status,
            "value": self.value,
            "message": self.message,
            "data": self.data,
        }


@dataclasses.dataclass
class Section:
    """The checks for one run (one fixture architecture, or the user's model)."""

    title: str
    checks: List[Check] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.passed for check in self.checks)

    def as_dict(self) -> dict:
        return {"title": self.title, "ok": self.ok, "checks": [c.as_dict() for c in self.checks]}


def all_ok(sections: List[Section]) -> bool:
    return all(section.ok for section in sections)


def counts(sections: List[Section]) -> dict:
    tally = {PASS: 0, FAIL: 0, WARN: 0, INFO: 0}
    for section in sections:
        for check in section.checks:
            tally[check.status] += 1
    return tally


def render_section(section: Section, verbose: bool = False) -> List[str]:
    """One line per check: status, name, measured value; a failing check adds its message below."""
    lines = [f"verification: {section.title}"]
    width = max((len(c.name) for c in section.checks), default=0)
    warnings_by_name: dict = {}
    for check in section.checks:
        if check.status == WARN and not verbose:
            seen = warnings_by_name.setdefault(check.name, 0)
            warnings_by_name[check.name] = seen + 1
            if seen == TEXT_WARNING_LIMIT:
                lines.append(
                    f"  {'WARN':<4}  {check.name:<{width}}  ... more of these (see -v or "
                    + message_text(Opt("format", "json"), ")")
                )
            if seen >= TEXT_WARNING_LIMIT:
                continue
        lines.append(f"  {_LABEL[check.status]:<4}  {check.name:<{width}}  {check.value}")
        repeated = check.status == WARN and warnings_by_name.get(check.name, 0) > 1
        if check.message and (check.status in (FAIL, WARN) or verbose) and not repeated:
            lines.append(f"  {'':<4}  {'':<{width}}  -> {check.message}")
    return lines


def summary_line(sections: List[Section]) -> str:
    tally = counts(sections)
    verdict = "all checks passed" if all_ok(sections) else f"{tally[FAIL]} check(s) FAILED"
    return (
        f"result: {verdict} ({tally[PASS]} passed, {tally[FAIL]} failed, {tally[WARN]} warning(s), "
        f"{tally[INFO]} measurement(s))"
    )
