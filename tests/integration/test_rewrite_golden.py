"""Golden before/after files for every rewrite fixture: exact bytes, output parses, second run changes nothing.

Goldens live in fixtures/golden/<case>/<path>; a file without a golden must come out unchanged.
Regenerate with ``pytest tests/integration/test_rewrite_golden.py --regen-goldens`` and read every diff.
"""

from __future__ import annotations

import ast
import shutil

import pytest
from conftest import GOLDEN, REWRITE_CASES, copy_case, run_cli, snapshot

CASES = ["centernet_mini"] + sorted(p.name for p in REWRITE_CASES.iterdir() if p.is_dir())
TARGET = {"centernet_mini": "lib/models"}


def _rewrite(case_root, target):
    return run_cli(["rewrite", target], cwd=case_root)


@pytest.mark.parametrize("case", CASES)
def test_golden(case, tmp_path, regen):
    root = copy_case(case, tmp_path)
    before = snapshot(root)
    result = _rewrite(root, TARGET.get(case, "."))
    assert result.exit_code in (0, 1), result.output
    after = snapshot(root)
    golden_root = GOLDEN / case
    if regen:
        shutil.rmtree(golden_root, ignore_errors=True)
        for rel, data in after.items():
            if before[rel] != data:
                (golden_root / rel).parent.mkdir(parents=True, exist_ok=True)
                (golden_root / rel).write_bytes(data)
    for rel, data in after.items():
        golden = golden_root / rel
        expected = golden.read_bytes() if golden.exists() else before[rel]
        assert data == expected, (
            f"{case}/{rel} differs from {'golden' if golden.exists() else 'its input'}"
        )
        if data != before[rel]:
            ast.parse(data.decode(_encoding(data)))
    assert set(after) == set(before)


@pytest.mark.parametrize("case", CASES)
def test_second_run_changes_nothing(case, tmp_path):
    root = copy_case(case, tmp_path)
    _rewrite(root, TARGET.get(case, "."))
    once = snapshot(root)
    result = _rewrite(root, TARGET.get(case, "."))
    assert snapshot(root) == once
    assert "0 changed" in result.output, result.output


def test_goldens_exist_for_changed_cases():
    """A case whose golden folder is missing would silently compare against its input."""
    expected_changes = {
        "centernet_mini",
        "import_styles",
        "two_space",
        "crlf",
        "encodings",
        "init_loops",
        "strings_comments",
        "has_helper",
        "syntax_error",
        "shared_block",
        "dynamic_backbone",
        "inline_backbone",
        "unreached",
    }
    missing = [c for c in sorted(expected_changes) if c in CASES and not (GOLDEN / c).is_dir()]
    assert not missing


def _encoding(data: bytes) -> str:
    return "latin-1" if b"coding: latin-1" in data[:200] else "utf-8-sig"
