"""The suite does not depend on where the checkout lives.

CI clones the repository below a folder other users cannot enter (root's home is mode 0700). The
permission tests hand a folder to an unprivileged user and drop the effective uid for a run; if
anything then touched the checkout (a chdir back, a late import), every later test would fail.
This test copies the package and the tests below a chmod 700 folder and runs the permission tests
there, followed by the rest of their module, in a fresh interpreter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from conftest import ROOT

PERMISSION_TESTS = "tests/integration/test_bad_input.py"


def test_permission_tests_pass_from_a_checkout_under_a_chmod_700_folder(tmp_path):
    locked = tmp_path / "home"
    checkout = locked / "repo"
    for part in ("bn2gn", "tests"):
        shutil.copytree(
            ROOT / part, checkout / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    shutil.copy2(ROOT / "pyproject.toml", checkout / "pyproject.toml")
    locked.chmod(0o700)
    env = dict(os.environ, PYTHONPATH=str(checkout), PYTHONDONTWRITEBYTECODE="1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--basetemp={tmp_path / 'inner'}",  # leaves the outer run's temporary folders alone
            PERMISSION_TESTS,
        ],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert " passed" in output and "INTERNALERROR" not in output
    assert (
        str(checkout / "bn2gn")
        in subprocess.run(
            [sys.executable, "-c", "import bn2gn; print(bn2gn.__file__)"],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
        ).stdout
    ), "the copy, not the installed package, was tested"
