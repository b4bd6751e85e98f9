"""``bn2gn migrate``'s report: the combined plan, the per-file outcome and the next commands (text or JSON)."""

from __future__ import annotations

import os
from typing import List

from .. import api as engine
from ..core.errors import Opt, message_text
from .run import MigrateResult

VERB = {engine.WRITE: "changed", engine.DIFF: "would change", engine.CHECK: "would change"}


def plan_lines(result: MigrateResult, verbose: bool = False) -> List[str]:
    """What was found where, then the scan-style plan (sites and patch-trainer insertions)."""
    from ..decide.plan import render_text

    lines = [f"bn2gn migrate {result.repo}"]
    counts = {}
    for site in result.plan.sites:
        counts.setdefault(site.path, {}).setdefault(site.decision, 0)
        counts[site.path][site.decision] += 1
    lines.append(
        "models (files with BatchNorm sites):" if counts else "models: no BatchNorm site found"
    )
    for path in sorted(counts):
        lines.append(f"  {path}: " + ", ".join(f"{n} {d}" for d, n in sorted(counts[path].items())))
    lines.append("train scripts (optimizer): " + (", ".join(result.scripts) or "none to patch"))
    lines.append("trainers (.train()): " + (", ".join(result.trainers) or "none to patch"))
    if result.backbone is not None:
        # what the injected freeze carries: the decision, not only the configured names
        lines.append(f"backbone (frozen, kept in eval): {result.backbone.describe()}")
    lines.append("plan:")
    lines += ["  " + line for line in render_text(result.plan, verbose=verbose).splitlines()]
    return lines


def outcome_lines(result: MigrateResult, quiet: bool, verbose: bool) -> List[str]:
    """Per changed file its edits; notes; unsure sites; the summary line."""
    verb = VERB[result.mode]
    lines = []
    if not quiet:
        for item in result.results:
            if item.status == "changed":
                lines.append(f"{item.path}: {verb} ({len(item.changes)} edits)")
                if verbose:
                    lines += [
                        f"  {item.path}:{c.line}: {c.rule.code} {c.message}" for c in item.changes
                    ]
            lines += [f"note: {note}" for note in item.notes]
        lines += [f"note: {item}" for item in result.left_alone]
        lines += [
            f"unsure: {s.location}: {s.scope}: {s.reason}"
            for s in result.plan.sites
            if s.decision == "unsure"
        ]
        if result.plan_application is not None:
            lines.append(result.plan_application.summary())
    return lines + [summary_line(result)]


def summary_line(result: MigrateResult) -> str:
    counts, sites = result.counts(), result.plan.counts()
    return (
        f"migrate: {counts['files_scanned']} files scanned, {counts['files_changed']} {VERB[result.mode]}, "
        f"{counts['files_failed']} failed; sites: {sites['convert']} convert, {sites['keep']} keep, "
        f"{sites['unsure']} unsure; {len(result.scripts)} train script(s), {len(result.trainers)} trainer(s)"
    )


def error_lines(result: MigrateResult) -> List[str]:
    return [f"error: {r.error}" for r in result.results if r.status == "failed"]


def next_step_lines(result: MigrateResult) -> List[str]:
    steps = result.next_steps
    if steps is None:
        return []
    lines = [
        "next steps"
        + ("" if os.path.realpath(steps.cwd) == os.path.realpath(".") else f" (in {steps.cwd})")
        + ":"
    ]
    if result.mode != engine.WRITE and result.counts()["files_changed"]:
        lines.append("  apply the changes above:")
        lines.append(
            message_text(f"    bn2gn migrate {result.repo} ", Opt("write", command="migrate"))
        )
    for title, commands in (
        ("remap the checkpoints the train scripts load", steps.remap),
        ("check the converted model at run time", steps.verify),
    ):
        if commands:
            lines.append(f"  {title}:")
        for command in commands:
            lines += command_lines(command)
    lines += [f"  note: {note}" for note in steps.notes]
    return lines


def command_lines(command) -> List[str]:
    """A command to run as printed, or, when bn2gn could not fill in every value, comment lines:
    what to fill in, then the command itself commented out."""
    if command.runnable:
        return [f"    {command.line}"] + [f"      # {note}" for note in command.notes]
    lines = [f"    # fill in {what}" for what in command.fill_in]
    lines.append(f"    #   {command.line}")
    return lines + [f"    #     ({note})" for note in command.notes]


def as_dict(result: MigrateResult) -> dict:
    """The whole plan and result; diffs inside in --diff mode."""
    data = {
        "command": "migrate",
        "mode": result.mode,
        "repo": str(result.repo),
        **result.counts(),
        "models": result.models,
        "scripts": result.scripts,
        "trainers": result.trainers,
        "plan": result.plan.as_dict(),
        "backbone": result.backbone.as_dict() if result.backbone is not None else None,
        "left_alone": [item.as_dict() for item in result.left_alone],
        "frozen_already": None if result.frozen_already is None else str(result.frozen_already),
        "results": [
            dict(
                r.as_dict(),
                **({"diff": engine.unified_diff(r)} if result.mode == engine.DIFF else {}),
            )
            for r in result.results
            if r.status != "unchanged"
        ],
        "exit_code": result.exit_code,
    }
    if result.plan_application is not None:
        data["plan_file"] = result.plan_application.summary()
    if result.next_steps is not None:
        data["next_steps"] = result.next_steps.as_dict()
    return data
