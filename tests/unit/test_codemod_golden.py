"""Codemod-level goldens: each ``fixtures/<RULE CODE>/<case>.in.py`` runs through the registry with
only that rule selected and must give ``<case>.out.py`` byte for byte; the output parses and a
second pass changes nothing. Every ``.out.py`` is written by hand from reading its input.

Rewrite rules (BN2GN1xx) convert every ``BatchNorm2d(...)`` call of the file except those on a
line holding ``# keep`` (the decisions are the analysis's business, tested elsewhere). Patch-trainer
rules (BN2GN2xx) run with the default options, or those of ``<case>.json`` (TrainerOptions fields).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FIXTURES

from bn2gn.core.file_results import check_python
from bn2gn.core.rule_codes import Rule
from bn2gn.core.source_files import decode_source
from bn2gn.decide.plan import CONVERT, KEEP

CASES = sorted(FIXTURES.glob("BN2GN*/*.in.py"))
RULES = {rule.code: rule for rule in Rule}


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.name[: -len('.in.py')]}"


def run_rule(rule: Rule, path: Path, data: bytes):
    """One file through the registry with only ``rule`` selected: the FileResult."""
    source = decode_source(path, data)
    if rule.code.startswith("BN2GN1"):
        return _rewrite(rule, path, data, source)
    return _patch(rule, path, source)


def _rewrite(rule, path, data, source):
    from bn2gn.decide.scan import parse_with_sites
    from bn2gn.source.rewrite import FileJob, batchnorm_ref_texts, init_loop_scopes, rewrite_source

    facts = parse_with_sites(path, data)
    lines = source.text.splitlines()
    sites = []
    for raw in facts.sites:
        site = facts.make_site(raw)
        if site.op == "BatchNorm2d" and site.form == "call":
            site.decision = KEEP if "# keep" in lines[site.line - 1] else CONVERT
        sites.append(site)
    job = FileJob(
        path=path,
        display=facts.display,
        sites=tuple(sites),
        init_scopes=frozenset(init_loop_scopes(facts, sites)),
        bn_refs=frozenset(batchnorm_ref_texts(facts)),
        rules=frozenset({rule}),
    )
    return rewrite_source(source, job)


def _patch(rule, path, source):
    from bn2gn.source.patch_trainer import NotTrainingCode, TrainerOptions, patch_source

    options_file = path.with_name(path.name[: -len(".in.py")] + ".json")
    options = json.loads(options_file.read_text()) if options_file.exists() else {}
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    try:
        return patch_source(source, TrainerOptions(rules=frozenset({rule}), **options))
    except NotTrainingCode:
        return None  # nothing for patch-trainer here: the file stays as it is


def _output(result, data: bytes) -> bytes:
    if result is None or result.status == "unchanged":
        return data
    assert result.status == "changed", result.error
    return result.new_bytes


def test_every_rule_has_goldens():
    folders = {p.name for p in FIXTURES.glob("BN2GN*") if p.is_dir()}
    assert folders == set(RULES)
    for folder in folders:
        cases = list((FIXTURES / folder).glob("*.in.py"))
        assert len(cases) >= 3, folder
        for case in cases:
            assert case.with_name(case.name.replace(".in.py", ".out.py")).is_file(), case


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_golden(case: Path):
    rule = RULES[case.parent.name]
    data = case.read_bytes()
    expected = case.with_name(case.name.replace(".in.py", ".out.py")).read_bytes()
    out = _output(run_rule(rule, case, data), data)
    assert out == expected, f"{_id(case)}: output differs from the golden"
    check_python(decode_source(case, out).text, str(case))
    again = run_rule(rule, case, out)
    assert _output(again, out) == out, f"{_id(case)}: a second pass changed the output"
    assert again is None or again.status == "unchanged"
