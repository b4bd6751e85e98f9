"""The README is a front page users can read: short, links that resolve, every rule documented,
no references to design documents or issue numbers a user does not have."""

import re
from pathlib import Path

from conftest import run_cli

from bn2gn.core.rule_codes import Rule

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
USER_DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
INTERNAL_REFERENCE = re.compile(
    r"\bseed[0-4]\b|\bseed[0-4]?\.md\b|\bissues? \d+\b|§", re.IGNORECASE
)


def test_readme_is_a_front_page():
    assert len(README.splitlines()) <= 250


def test_readme_keeps_the_two_setup_commands_and_ci_runs_the_test_one():
    demo = 'python -m pip install torch==2.13.0 -e ".[test]" && python -m bn2gn demo'
    tests = 'python -m pip install torch==2.13.0 -e ".[test]" && python -m pytest -q'
    assert demo in README and tests in README
    assert tests in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_every_relative_link_resolves():
    broken = []
    for doc in USER_DOCS:
        prose = re.sub(
            r"`[^`\n]*`", "", doc.read_text(encoding="utf-8")
        )  # code spans hold no links
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", prose):
            if "://" not in target and not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(REPO)} -> {target}")
    assert broken == []


def test_no_internal_references_in_user_docs_or_rule_listing():
    found = [
        f"{doc.relative_to(REPO)}:{n}: {line.strip()}"
        for doc in USER_DOCS
        for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1)
        if INTERNAL_REFERENCE.search(line) and "--seed" not in line
    ]
    assert found == []
    listing = (
        run_cli(["rewrite", "--list-rules"]).output
        + run_cli(["patch-trainer", "--list-rules"]).output
    )
    assert not INTERNAL_REFERENCE.search(listing)


def test_no_internal_references_in_modules_or_tests():
    """The package and its tests speak for themselves: where a reason matters, it is written out."""
    sources = [*sorted((REPO / "bn2gn").rglob("*.py")), *sorted((REPO / "tests").rglob("*.py"))]
    found = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in sources
        if path.name != "test_docs.py"  # the pattern itself
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if INTERNAL_REFERENCE.search(line)
    ]
    assert found == []


def test_every_rule_has_a_section_in_the_rules_page():
    rules_page = (REPO / "docs" / "concepts" / "rules.md").read_text(encoding="utf-8")
    missing = [
        rule.code
        for rule in Rule
        if not re.search(rf"^## {rule.code} {rule.slug}\b", rules_page, re.M)
    ]
    assert missing == []
