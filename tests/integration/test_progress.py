"""The progress line: done/total on a terminal's stderr, silent with -q or without a TTY."""

from __future__ import annotations

import io

import pytest
from conftest import run_cli

from bn2gn.core import progress


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def reset_progress():
    yield
    progress.disable()


def run_phase(total: int, quiet: bool = False, stream=None) -> str:
    stream = stream if stream is not None else FakeTerminal()
    progress.enable(quiet, stream)
    progress.start("bn2gn: reading", total)
    for _ in range(total):
        progress.step()
    progress.done()
    return stream.getvalue()


def test_terminal_shows_done_over_total_and_erases_the_line():
    out = run_phase(50)
    assert out.startswith("\rbn2gn: reading: 1/50 files")
    assert "\rbn2gn: reading: 50/50 files\x1b[K" in out
    assert out.endswith("\r\x1b[K")


@pytest.mark.parametrize(
    "quiet, stream, total",
    [
        (True, FakeTerminal(), 500),  # -q
        (False, io.StringIO(), 500),  # not a terminal
        (False, FakeTerminal(), progress.MIN_FILES - 1),  # too few files to need it
    ],
)
def test_silent_when_quiet_not_a_tty_or_few_files(quiet, stream, total):
    assert run_phase(total, quiet, stream) == ""


def test_cli_run_without_a_terminal_prints_no_progress(tmp_path):
    for i in range(progress.MIN_FILES + 5):
        (tmp_path / f"m{i}.py").write_text("import torch.nn as nn\nBN = nn.BatchNorm2d(3)\n")
    result = run_cli(["scan", "."], cwd=tmp_path)
    assert result.exit_code == 0
    assert "\r" not in result.stderr and "files" not in result.stderr
