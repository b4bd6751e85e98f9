"""A package another repository put in ``sys.modules`` earlier in the process (``lib`` of a second
checkout) must not shadow the repository being built: library callers and the test suite build
several repositories in one process."""

from __future__ import annotations

import shutil
import sys

import pytest
from conftest import FIXTURES, run_cli

pytest.importorskip("torch")


def test_a_foreign_package_of_the_same_name_does_not_shadow_the_repository(tmp_path):
    other = tmp_path / "other"
    shutil.copytree(FIXTURES / "centernet_mini", other)
    sys.path.insert(0, str(other))
    try:
        import lib.models  # noqa: F401 - the other checkout's `lib`, as an earlier build left it
    finally:
        sys.path.remove(str(other))
    assert sys.modules["lib"].__file__.startswith(str(other))
    repo = tmp_path / "repo"
    shutil.copytree(FIXTURES / "backbones" / "named_backbone", repo / "lib")
    (repo / "lib" / "__init__.py").write_text("")
    try:
        result = run_cli(
            ["verify", "--model", "lib.models:create_model", "--path", "."]
            + ["--input-shape", "1,3,32,32", "--steps", "2", "--no-compare"],
            cwd=repo,
        )
        # built from this repository's lib, not the other checkout's (which has no such factory);
        # the model is the unconverted one, so the runtime checks then fail (exit 1), not the build
        assert result.exit_code == 1, result.output
        assert "verification: lib.models:create_model() on cpu" in result.output
        assert "neck.1" in result.output
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] == "lib"]:
            del sys.modules[name]
