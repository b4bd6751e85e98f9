"""The verify line migrate prints runs as printed on a CenterNet-shaped repository, offline.

fixtures/repos/tracknet (its README lists its shapes): the factory's ``head`` is computed at run
time (``opt.heads``), so the line runs the train script the way ``experiments/train.sh`` does
(``cd src && python main.py tracking ...``), from the repository root where migrate's next steps
run. The expected line and the inferred input are read off the fixture by hand: the first
convolution, ``backbone.base_conv.0``, takes 3 channels, and the network (two stride-2 levels, one
2x upsampling) runs at 64.
"""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
import sys

import pytest
from conftest import FIXTURES, run_cli, snapshot

pytest.importorskip("torch")

OWN_MODULES = ("opts", "model", "dataset", "_init_paths", "main", "trackdevkit_missing_sdk", "_ext")
PRINTED = (
    "bn2gn verify --script src/main.py --freeze-from src/main.py -- tracking --exp_id tiny "
    "--arch dla_tiny --head_conv 8 --batch_size 2 --lr 1e-4"
)


def _forget_repository():
    for name in [n for n in sys.modules if n.split(".")[0] in OWN_MODULES]:
        del sys.modules[name]


@pytest.fixture
def repo(tmp_path, monkeypatch):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    target = shutil.copytree(FIXTURES / "repos" / "tracknet", tmp_path / "tracknet")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "original"]):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=target,
            check=True,
            capture_output=True,
        )

    def unreachable(self, address):
        raise OSError(f"network unreachable in tests ({address})")

    monkeypatch.setattr(socket.socket, "connect", unreachable)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    _forget_repository()
    yield target
    _forget_repository()


def test_the_printed_verify_line_runs_as_printed_and_passes(repo):
    migrated = run_cli(["migrate", "--write"], cwd=repo)
    assert migrated.exit_code == 0, migrated.output
    lines = migrated.stdout.splitlines()
    verify = [line.strip() for line in lines if line.strip().startswith("bn2gn verify")]
    assert verify == [PRINTED]
    # printed as a command, not as a comment with something to fill in
    block = lines[lines.index("  check the converted model at run time:") + 1 :]
    assert block[0] == "    " + PRINTED
    assert not any("fill in" in line for line in block)
    _forget_repository()
    before = snapshot(repo)
    result = run_cli(shlex.split(verify[0])[1:], cwd=repo)
    assert result.exit_code == 0, result.output
    report = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    assert report[-1].startswith("result: all checks passed")
    assert [line for line in report if line.startswith(("FAIL", "WARN"))] == []
    assert (
        "INFO  input-shape                 input 1,3,64,64 inferred: forward() takes 1 tensor, "
        "the first convolution backbone.base_conv.0 takes 3 channels, 64 is the smallest size of "
        "64,128,256,512 that runs; give --input-shape to choose"
    ) in report
    assert (
        "INFO  original-model              original built from git HEAD (the migration is not "
        "committed yet), same spec"
    ) in report
    assert any(line.startswith("PASS  train-eval-gap              converted 0,") for line in report)
    changed = {k for k, v in snapshot(repo).items() if before.get(k) != v}
    assert {k for k in changed if not k.startswith(".git/")} == set()  # verify wrote nothing
