"""A command whose optional package is missing says which extra installs it: one line, exit 2."""

import subprocess
import sys
from pathlib import Path

from bn2gn.core.errors import missing_extra

ROOT = Path(__file__).resolve().parents[2]
WITHOUT = "import sys; sys.modules[{name!r}] = None; from bn2gn.cli import main; sys.argv = {argv!r}; main()"


def _run_without(name, *argv):
    code = WITHOUT.format(name=name, argv=["bn2gn", *argv])
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )


def test_verify_without_torch_names_the_torch_extra():
    done = _run_without("torch", "verify", "--model", "m:f", "--input-shape", "1,3,8,8")
    assert done.returncode == 2
    assert done.stderr == (
        "bn2gn: error: bn2gn verify needs torch, which is not installed here: "
        "python -m pip install 'bn2gn[torch]'\n"
    )


def test_only_optional_packages_are_named_as_extras():
    missing = ModuleNotFoundError("No module named 'mmcv._ext'", name="mmcv._ext")
    assert missing_extra(missing, "config verify") == (
        "bn2gn config verify needs mmcv, which is not installed here: "
        "python -m pip install 'bn2gn[openmmlab]'"
    )
    assert missing_extra(ModuleNotFoundError("x", name="lap"), "verify") is None
    assert missing_extra(ImportError("cannot import name"), "verify") is None
