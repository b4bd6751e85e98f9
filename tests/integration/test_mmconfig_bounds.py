"""The static config resolver is bounded by result size and total work: texts whose evaluation
would need gigabytes or hours are refused in one line (exit 2), never a MemoryError or a hang."""

from __future__ import annotations

import time

import pytest
from conftest import run_cli

CASES = {
    "power-of-a-power": "x = 9 ** 9999\ny = x ** 9999\n",
    "sum-of-lists": "y = sum([[0] * 10**6] * 10**6, [])\n",
    "replace-chain": "s = 'ab' * 1000\ns = s.replace('', s)\ns = s.replace('', s)\n",
    "percent-width": "x = '%0100000000000d' % 1\n",
    "percent-precision": "x = '%.900000000f' % 1.0\n",
    "format-width": "x = '{:0100000000d}'.format(1)\n",
    "fstring-width": "x = f'{1:0100000000d}'\n",
    "total-work": "x = [('a' * 999999).replace('a', 'b') for i in range(10**6)]\n",
}


@pytest.mark.parametrize("text", list(CASES.values()), ids=list(CASES))
def test_runaway_evaluation_is_one_line_exit_2(tmp_path, text):
    config = tmp_path / "c.py"
    config.write_text(text + "model = dict(type='RetinaNet')\n")
    started = time.monotonic()
    result = run_cli(["config", "audit", config])
    assert time.monotonic() - started < 20
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "the static resolver does not evaluate" in lines[0], result.stderr
    assert "internal error" not in result.stderr


def test_ordinary_sizes_still_evaluate(tmp_path):
    config = tmp_path / "c.py"
    config.write_text(
        "x = 9 ** 9999\nname = 'work_dirs/1700000000123_%s' % 'run'\n"
        "scales = [(1333, 640 + 32 * i) for i in range(11)]\n"
        "w = '{:>8}'.format('a') + f'{3.14159:.3f}'\n"
        "model = dict(type='RetinaNet')\n"
    )
    result = run_cli(["config", "audit", config])
    assert result.exit_code == 0, result.output
