"""Robustness corpus: scan and rewrite --diff over every .py file of the installed torch package.

torch is on every machine that runs the tests, has a few thousand files nobody here wrote and real
BatchNorm uses. The run must not crash, must account for every file, and must leave files without
BatchNorm alone. torch has no detector with a backbone, so nothing is converted by the analysis; to
exercise the codemods on real code as well, every BatchNorm2d call site is then forced to ``convert``
(what ``--convert Class`` does) and each changed file must parse and be stable under a second pass.
The counts are printed in the test output (with or without -s) and recorded as test properties.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from conftest import run_cli

from bn2gn.core.discovery import discover
from bn2gn.core.file_results import check_python
from bn2gn.core.rule_codes import select_rules
from bn2gn.core.settings import load_config
from bn2gn.decide.plan import CONVERT

pytestmark = pytest.mark.slow

TORCH = Path(importlib.util.find_spec("torch").submodule_search_locations[0])
ERROR_LINE = re.compile(r"^(?P<path>.+?\.py):(?P<line>\d+): (?P<reason>.+)$")


def report(capsys, record_property, title: str, counts: dict) -> None:
    """Print past pytest's capture, and keep the numbers in the junit properties."""
    with capsys.disabled():
        print(f"\n[corpus] {title}: " + json.dumps(counts, sort_keys=True))
    for key, value in counts.items():
        record_property(f"{title}.{key}", value)


def reason_kind(reason: str) -> str:
    """Group failure reasons: 'cannot parse: invalid syntax' and the like, without per-file detail."""
    return re.sub(r"\(.*\)|'.*?'|\".*?\"|\d+", "…", reason)[:80]


@pytest.fixture(scope="module")
def torch_rewrite():
    """One ``rewrite --diff --format json`` over all of torch, through the real CLI."""
    result = run_cli(["rewrite", "--diff", "--format", "json", "-j", "2", TORCH])
    return result


@pytest.fixture(scope="module")
def torch_plan():
    """The engine's plan and project for torch, to force conversions on."""
    from bn2gn.decide.scan import build_plan

    config = load_config([TORCH])
    plan, project = build_plan([TORCH], config)
    return config, plan, project


def test_rewrite_diff_over_torch_accounts_for_every_file(torch_rewrite, capsys, record_property):
    result = torch_rewrite
    assert result.exit_code in (0, 1), result.output[-2000:]
    assert "Traceback" not in result.output and "internal error" not in result.output
    data = json.loads(result.stdout)
    files = discover([TORCH]).files
    assert data["files_scanned"] == len(files) > 1000
    failures = [r for r in data["results"] if r["status"] == "failed"]
    reasons = Counter()
    for failure in failures:
        match = ERROR_LINE.match(failure["error"])
        assert match, failure["error"]
        assert Path(match["path"]).resolve().is_file()
        reasons[reason_kind(match["reason"])] += 1
    assert len(failures) == data["files_failed"] and result.exit_code == (1 if failures else 0)
    sites = data["plan"]["summary"]
    report(
        capsys,
        record_property,
        "torch rewrite --diff",
        {
            "files": len(files),
            "files_with_BatchNorm": sum(b"BatchNorm" in f.read_bytes() for f in files),
            "sites": len(data["plan"]["sites"]),
            **{f"sites_{k}": v for k, v in sites.items()},
            "files_would_change": data["files_changed"],
            "files_failed": len(failures),
            **{f"failed: {k}": v for k, v in reasons.items()},
        },
    )


def test_files_without_batchnorm_are_never_changed(torch_rewrite):
    data = json.loads(torch_rewrite.stdout)
    for item in data["results"]:
        if item["status"] == "changed":
            raw = Path(item["path"]).read_bytes()
            assert b"BatchNorm" in raw or b"get_group_norm" in raw, item["path"]
            assert item["diff"].startswith("--- a/")


def test_every_site_is_planned_with_a_reason(torch_rewrite):
    data = json.loads(torch_rewrite.stdout)
    for site in data["plan"]["sites"]:
        assert site["decision"] in ("convert", "keep", "unsure") and site["reason"], site
        assert (TORCH / site["path"]).is_file() or Path(site["path"]).is_file()


def test_scan_over_torch_matches_the_rewrite_plan(torch_rewrite, torch_plan):
    _, plan, _ = torch_plan
    data = json.loads(torch_rewrite.stdout)
    assert plan.counts() == data["plan"]["summary"]
    assert len(plan.errors) == data["files_failed"]


def test_forced_conversion_of_every_torch_site_parses_and_is_stable(
    torch_plan, capsys, record_property
):
    """Every BatchNorm2d call forced to convert: each changed file parses, and a second pass is a no-op."""
    from bn2gn.source.rewrite import rewrite_paths

    config, plan, project = torch_plan
    forced = dataclasses.replace(plan, sites=[dataclasses.replace(s) for s in plan.sites])
    for site in forced.sites:
        if site.op == "BatchNorm2d" and site.form == "call":
            site.decision = CONVERT
    sites_forced = sum(s.decision == CONVERT for s in forced.sites)
    rules = select_rules((), ())
    run = rewrite_paths([TORCH], config, rules, workers=2, plan=forced, project=project)
    changed = [r for r in run.results if r.status == "changed"]
    failed = [
        r for r in run.results if r.status == "failed" and "cannot parse" not in (r.error or "")
    ]
    assert not failed, [r.error for r in failed]
    assert changed, "forcing every BatchNorm2d site to convert changed no torch file"
    for result in changed:
        check_python(result.new_text, str(result.path))
        assert second_pass(result, config, rules) == result.new_text, result.path
    converted = sum(c.rule.code == "BN2GN101" for r in changed for c in r.changes)
    refused = sum("BatchNorm2d not converted" in note for r in run.results for note in r.notes)
    # each forced site is either converted or refused with a reason, never both (chained calls: `.to(...)`)
    assert converted + refused == sites_forced
    report(
        capsys,
        record_property,
        "torch forced conversion",
        {
            "sites_forced": sites_forced,
            "files_changed": len(changed),
            "sites_converted": converted,
            "sites_refused": refused,
        },
    )


def test_forced_conversion_is_the_same_with_libcsts_positions(torch_plan, monkeypatch):
    """The rewrite finds its sites from ``ast`` starts and looks only into the statements that hold
    one; with every file sent down the fallback (LibCST's PositionProvider, every statement looked
    into) each forced conversion of torch comes out byte for byte the same."""
    from bn2gn.source.rewrite import rewrite_paths
    from bn2gn.source.support import node_starts

    config, plan, project = torch_plan
    forced = dataclasses.replace(plan, sites=[dataclasses.replace(s) for s in plan.sites])
    for site in forced.sites:
        if site.op == "BatchNorm2d" and site.form == "call":
            site.decision = CONVERT
    rules = select_rules((), ())

    def texts():
        run = rewrite_paths([TORCH], config, rules, workers=1, plan=forced, project=project)
        return {r.path: (r.status, r.new_text, r.changes, r.notes) for r in run.results}

    fast = texts()

    def refuse(*args, **kwargs):
        raise node_starts.Mismatch("forced")

    monkeypatch.setattr(node_starts.StatementTracker, "__init__", refuse)
    slow = texts()
    assert sum(status == "changed" for status, *_ in fast.values()) >= 1
    assert fast == slow


def test_every_call_of_torch_nn_starts_where_libcst_says(monkeypatch):
    """Each call of torch.nn and torch.optim (outside f-strings) renamed at its ``ast`` start, in a
    pass that looks only into the statements holding one: the same code and the same calls seen as
    the pass on LibCST's PositionProvider, and no file falls back."""
    import libcst as cst

    from bn2gn.source.support import combined, node_starts

    class Rename(cst.CSTTransformer):
        def __init__(self, wanted, lines):
            super().__init__()
            self.wanted, self.lines, self.seen = wanted, lines, []

        def descends(self, span):
            return any(span.holds(line) for line in self.lines)

        def leave_Call(self, original, updated):
            start = self.start_of(original)
            if start not in self.wanted:
                return updated
            self.seen.append(start)
            return updated.with_changes(func=cst.Name("renamed"))

    def run(module, text, wanted):
        lines = {line for line, _ in wanted}
        module, parts = combined.transform(module, text, lambda: [Rename(wanted, lines)])
        return module.code, parts[0].seen

    files = calls = 0
    for path in sorted((TORCH / "nn").rglob("*.py")) + sorted((TORCH / "optim").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        try:
            module = cst.parse_module(text)
        except cst.ParserSyntaxError:
            continue
        wanted = every_call_start(text)
        if not wanted:
            continue
        with monkeypatch.context() as patched:
            patched.setattr(combined, "MetadataWrapper", None)  # a fallback would fail here
            fast = run(module, text, wanted)

        def refuse(*args, **kwargs):
            raise node_starts.Mismatch("forced")

        with monkeypatch.context() as patched:
            patched.setattr(node_starts.StatementTracker, "__init__", refuse)
            slow = run(module, text, wanted)
        assert fast == slow, path
        assert set(fast[1]) == wanted, path  # (``f(a)(b)``: two calls, one start)
        files, calls = files + 1, calls + len(wanted)
    assert files > 90 and calls > 8_000, (files, calls)


def every_call_start(text: str) -> set:
    """(line, column in characters) of every call outside f-strings, from ``ast``."""
    import ast

    tree = check_python(text)
    inside = {id(n) for f in ast.walk(tree) if isinstance(f, ast.JoinedStr) for n in ast.walk(f)}
    lines = re.split(r"\r\n|\r|\n", text)
    return {
        (n.lineno, len(lines[n.lineno - 1].encode()[: n.col_offset].decode()))
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and id(n) not in inside
    }


def second_pass(result, config, rules) -> str:
    """The engine on the new text alone, its BatchNorm2d calls forced to convert as in the first pass."""
    from bn2gn.core.source_files import decode_source
    from bn2gn.decide.scan import parse_with_sites
    from bn2gn.source.rewrite import FileJob, batchnorm_ref_texts, init_loop_scopes, rewrite_source

    source = decode_source(result.path, result.new_bytes)
    facts = parse_with_sites(result.path, result.new_bytes)
    sites = []
    for raw in facts.sites:
        site = facts.make_site(raw)
        site.decision = (
            CONVERT if site.op == "BatchNorm2d" and site.form == "call" else site.decision
        )
        sites.append(site)
    job = FileJob(
        path=result.path,
        display=facts.display,
        sites=tuple(sites),
        init_scopes=frozenset(init_loop_scopes(facts, sites)),
        bn_refs=frozenset(batchnorm_ref_texts(facts)),
        rules=rules,
    )
    again = rewrite_source(source, job)
    assert again.status in ("changed", "unchanged"), again.error
    return again.new_text


def test_patch_trainer_diff_over_torch(tmp_path, capsys, record_property):
    """patch-trainer --diff -j 2 over all of torch: no crash, nothing written; only files the pre-filter
    admits change, and every file the pre-filter drops is one the recognisers would not plan."""
    from bn2gn.source.support.recognise import may_plan

    tree = TORCH
    before = {p: p.read_bytes() for p in tree.rglob("*.py")}
    result = run_cli(["patch-trainer", "--diff", "--format", "json", "-j", "2", tree])
    assert result.exit_code in (0, 1, 2), result.output[-2000:]
    assert "Traceback" not in result.output and "internal error" not in result.output
    assert {p: p.read_bytes() for p in tree.rglob("*.py")} == before
    usage = [line for line in result.stderr.splitlines() if line.startswith("bn2gn: error:")]
    if result.exit_code == 2:
        assert usage and all(
            ERROR_LINE.match(line[len("bn2gn: error: ") :]) or "nothing written" in line
            for line in usage
        ), result.stderr[-2000:]
        counts = {"files": len(before), "exit": 2, "needs_user_input": len(usage)}
    else:
        data = json.loads(result.stdout)
        changed = [Path(r["path"]) for r in data["results"] if r["status"] == "changed"]
        for path in changed:
            assert may_plan(path.read_bytes().decode("utf-8", "replace")), path
        failures = Counter(
            reason_kind(m["reason"]) if m else r["error"]
            for r in data["results"]
            if r["status"] == "failed"
            for m in [ERROR_LINE.match(r["error"] or "")]
        )
        counts = {
            "files": data["files_scanned"],
            "files_would_change": len(changed),
            "files_failed": sum(failures.values()),
            **{f"failed: {k}": v for k, v in failures.items()},
        }
    report(capsys, record_property, "torch patch-trainer --diff", counts)


def _recognised(path: Path) -> bool:
    from conftest import recognised

    from bn2gn.source.patch_trainer import TrainerOptions

    try:
        return recognised(path, path.read_bytes().decode("utf-8"), TrainerOptions())
    except Exception:  # noqa: BLE001 - files LibCST or Python cannot read are no plan either
        return False


def test_prefilter_drops_no_torch_file_the_recognisers_plan(capsys, record_property):
    """Every torch file the pre-filter rejects although it mentions optim/train, run through the full
    recognisers: none of them would have been planned."""
    from concurrent.futures import ProcessPoolExecutor

    from bn2gn.source.support.recognise import loose_bytes_match, may_plan

    rejected = [
        p
        for p in discover([TORCH]).files
        if loose_bytes_match(p.read_bytes())
        and not may_plan(p.read_bytes().decode("utf-8", "replace"))
    ]
    with ProcessPoolExecutor(max_workers=2) as pool:
        planned = [
            p for p, found in zip(rejected, pool.map(_recognised, rejected, chunksize=8)) if found
        ]
    report(
        capsys,
        record_property,
        "torch pre-filter",
        {"rejected_by_prefilter": len(rejected), "of_those_recognised": len(planned)},
    )
    assert planned == []
