"""The console process: it exits without tearing down the analysis, yet says everything and keeps its
exit codes (each case runs in a fresh process, as the user runs bn2gn)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from click.testing import CliRunner

from bn2gn.cli import cli

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "fixtures" / "centernet_mini"


def run_python(code: str, *args: str, cwd: Path = ROOT):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, *args] if not code else [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def test_console_scan_prints_the_whole_plan_with_the_in_process_exit_code():
    result = run_python("", "-m", "bn2gn", "scan", str(FIXTURE), "--format", "json", "-q")
    in_process = CliRunner().invoke(cli, ["scan", str(FIXTURE), "--format", "json", "-q"])
    assert result.returncode == in_process.exit_code
    assert json.loads(result.stdout) == json.loads(in_process.output)
    assert json.loads(result.stdout)["sites"], "the fixture has sites: the plan is not empty"


def test_console_usage_error_keeps_exit_code_2_and_one_line(tmp_path):
    missing = tmp_path / "missing"
    result = run_python("", "-m", "bn2gn", "scan", str(missing))
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "missing" in result.stderr


def test_quick_exit_runs_exit_handlers_and_flushes_in_order():
    result = run_python(
        """
        import atexit, sys
        from bn2gn.core.process import quick_exit
        atexit.register(lambda: print("handler"))
        print("out")
        sys.stderr.write("err")
        quick_exit(None)
        print("never")
        """
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "out\nhandler\n", "err")


def test_quick_exit_with_a_message_prints_it_and_exits_1():
    result = run_python("from bn2gn.core.process import quick_exit\nquick_exit('bn2gn: stopped')")
    assert (result.returncode, result.stderr) == (1, "bn2gn: stopped\n")


def test_quick_exit_waits_for_a_running_thread():
    result = run_python(
        """
        import threading, time
        from bn2gn.core.process import quick_exit
        def late():
            time.sleep(0.3)
            print("thread done", flush=True)
        threading.Thread(target=late).start()
        quick_exit(4)
        """
    )
    assert (result.returncode, result.stdout) == (4, "thread done\n")


FREEZE_CHECK = """
    import gc
    from bn2gn.core import process
    from bn2gn.decide.scan import collector_paused
    if {console}:
        process.mark_console()
    with collector_paused():
        assert not gc.isenabled()
        kept = [[i] for i in range(1000)]
    print(gc.isenabled(), gc.get_freeze_count() > 0)
"""


def test_console_analysis_is_frozen_out_of_the_collector_after_the_pause():
    result = run_python(FREEZE_CHECK.format(console=True))
    assert (result.returncode, result.stdout, result.stderr) == (0, "True True\n", "")


def test_library_analysis_stays_collectable():
    result = run_python(FREEZE_CHECK.format(console=False))
    assert (result.returncode, result.stdout, result.stderr) == (0, "True False\n", "")


def test_quick_exit_lets_a_profiler_report(tmp_path):
    stats = tmp_path / "scan.prof"
    result = run_python(
        "", "-m", "cProfile", "-o", str(stats), "-m", "bn2gn", "scan", str(FIXTURE), "-q"
    )
    assert result.returncode in (0, 1), result.stderr
    assert stats.stat().st_size > 0
