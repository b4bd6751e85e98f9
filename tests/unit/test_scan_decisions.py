"""The plan of every fixture site matches the decision written by hand in tests/expected_decisions.py."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from conftest import case_dir
from expected_decisions import EXPECTED

from bn2gn.core.settings import load_config
from bn2gn.decide.scan import build_plan

CASES = sorted({key[0] for key in EXPECTED})
TARGET = {"centernet_mini": "lib/models"}


def planned_decisions(case: str, monkeypatch) -> dict:
    root = case_dir(case)
    monkeypatch.chdir(root)
    target = Path(TARGET.get(case, "."))
    plan, _ = build_plan([target], load_config([target]))
    ordinals = defaultdict(int)
    found = {}
    for site in sorted(plan.sites, key=lambda s: (s.path, s.line, s.col)):
        rel = (Path(site.path) if TARGET.get(case) is None else Path(site.path)).as_posix()
        key = (case, rel, site.scope, ordinals[(rel, site.scope)])
        ordinals[(rel, site.scope)] += 1
        found[key] = (site.decision, site.reason)
    return found


@pytest.mark.parametrize("case", CASES)
def test_every_site_has_the_hand_written_decision(case, monkeypatch):
    found = planned_decisions(case, monkeypatch)
    expected = {k: v for k, v in EXPECTED.items() if k[0] == case}
    assert sorted(found) == sorted(expected), "sites found differ from the sites listed by hand"
    wrong = {k: (expected[k], found[k]) for k in expected if found[k][0] != expected[k]}
    assert not wrong
