"""The pre-commit hooks of .pre-commit-hooks.yaml: run the way pre-commit runs them.

``pass_filenames: false`` matters: the hook must fail for a commit that touches only train.py
while the models still hold head BatchNorm, because the analysis needs the whole tree.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import CENTERNET, ROOT, run_cli

HOOKS = {hook["id"]: hook for hook in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}


def _env() -> dict:
    return dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )


def _run_hook(hook_id: str, repo: Path, args=(), filenames=()):
    """What pre-commit executes: entry + args (+ the staged file names unless pass_filenames is false)."""
    hook = HOOKS[hook_id]
    argv = shlex.split(hook["entry"]) + list(args)
    if hook.get("pass_filenames", True):
        argv += list(filenames)
    assert argv[0] == "bn2gn"
    return subprocess.run(
        [sys.executable, "-m", "bn2gn", *argv[1:]],
        cwd=repo,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_hooks_analyse_the_whole_tree():
    for hook_id in ("bn2gn-check", "bn2gn-rewrite-check", "bn2gn-patch-trainer-check"):
        hook = HOOKS[hook_id]
        assert (
            hook["pass_filenames"] is False
            and hook["language"] == "python"
            and "--check" in hook["entry"]
        )


def test_bn2gn_check_hook_fails_until_migrated(tmp_path):
    repo = Path(shutil.copytree(CENTERNET, tmp_path / "repo"))
    first = _run_hook("bn2gn-check", repo, filenames=["train.py"])
    assert first.returncode == 1
    assert "lib/models/dladcn_gru.py: would change" in first.stdout
    assert run_cli(["migrate", "--write", "-q"], cwd=repo).exit_code == 0
    assert _run_hook("bn2gn-check", repo, filenames=["train.py"]).returncode == 0


def test_single_command_hooks_with_configured_paths(tmp_path):
    repo = Path(shutil.copytree(CENTERNET, tmp_path / "repo"))
    scripts = ["train.py", "train_satmtb.py", "lib/Trainer/base_trainer.py"]
    assert _run_hook("bn2gn-rewrite-check", repo, args=["lib/models"]).returncode == 1
    assert _run_hook("bn2gn-patch-trainer-check", repo, args=scripts).returncode == 1
    assert run_cli(["rewrite", "lib/models"], cwd=repo).exit_code == 0
    assert _run_hook("bn2gn-rewrite-check", repo, args=["lib/models"]).returncode == 0
    assert _run_hook("bn2gn-patch-trainer-check", repo, args=scripts).returncode == 1
    assert run_cli(["patch-trainer", *scripts], cwd=repo).exit_code == 0
    assert _run_hook("bn2gn-patch-trainer-check", repo, args=scripts).returncode == 0


def _pre_commit() -> str:
    found = os.environ.get("BN2GN_PRE_COMMIT") or shutil.which("pre-commit")
    if not found:
        pytest.skip("pre-commit is not installed (set BN2GN_PRE_COMMIT to its executable)")
    if not (ROOT / ".git").exists():
        pytest.skip("bn2gn's source is not a git checkout: pre-commit try-repo needs one")
    return found


@pytest.mark.slow
def test_pre_commit_try_repo(tmp_path):
    """pre-commit installs bn2gn from this checkout into its own environment (needs a package index)."""
    pre_commit = _pre_commit()
    repo = Path(shutil.copytree(CENTERNET, tmp_path / "repo"))
    git = ["git", "-c", "user.email=test@example.invalid", "-c", "user.name=test"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    env = dict(os.environ, PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"))
    env.pop(
        "PYTHONPATH", None
    )  # the hook must run the bn2gn pre-commit installed, not this tree by accident

    def try_repo():
        subprocess.run(git + ["add", "-A"], cwd=repo, check=True)
        return subprocess.run(
            [pre_commit, "try-repo", str(ROOT), "bn2gn-check", "--all-files"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )

    first = try_repo()
    if (
        "Installing environment" in first.stdout
        and "pip" in first.stdout
        and "bn2gn migration check" not in first.stdout
    ):
        pytest.skip(
            f"pre-commit could not install the hook environment: {first.stdout.splitlines()[-1]}"
        )
    assert first.returncode == 1, first.stdout
    assert "bn2gn migration check" in first.stdout and "Failed" in first.stdout
    assert "migrate: 15 files scanned, 5 would change" in first.stdout
    assert run_cli(["migrate", "--write", "-q"], cwd=repo).exit_code == 0
    second = try_repo()
    assert second.returncode == 0, second.stdout
    assert "Passed" in second.stdout
