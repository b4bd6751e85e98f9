"""The remap-ckpt line migrate prints runs as printed on a CenterNet-shaped repository, offline.

fixtures/repos/tracknet (its README lists its shapes): the factory's ``head`` is computed at run
time (``opt.heads``), so, like the verify line, the remap-ckpt line runs the train script the way
``experiments/train.sh`` does (``cd src && python main.py tracking ...``). The fixture's
``--load_model`` has no default (the line keeps ``CHECKPOINT`` to fill in); a copy whose default
names a checkpoint gets a line that runs as printed. Expected values are read off the fixture by
hand: the task ``tracking`` gives the heads hm, reg, wh and tracking, each ``fc[1]`` a BatchNorm
the migration converts, as it converts the neck's two ``DeformConv.actf[0]`` (proj, node); the
backbone keeps its 5 BatchNorm layers (base_conv.1 and bn1/bn2 of level1 and level2).
"""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
import sys

import pytest
from conftest import FIXTURES, run_cli, snapshot

torch = pytest.importorskip("torch")

OWN_MODULES = ("opts", "model", "dataset", "_init_paths", "main", "trackdevkit_missing_sdk", "_ext")
ARGS = "tracking --exp_id tiny --arch dla_tiny --head_conv 8 --batch_size 2 --lr 1e-4"
CONVERTED = ["proj.actf.0", "node.actf.0", "hm.1", "reg.1", "wh.1", "tracking.1"]
BACKBONE_BN = [
    "backbone.base_conv.1",
    "backbone.level1.bn1",
    "backbone.level1.bn2",
    "backbone.level2.bn1",
    "backbone.level2.bn2",
]
NO_DEFAULT = "self.parser.add_argument('--load_model', default='')"


def _forget_repository():
    for name in [n for n in sys.modules if n.split(".")[0] in OWN_MODULES]:
        del sys.modules[name]


def _git(repo, *args):
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def offline(tmp_path, monkeypatch):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")

    def unreachable(self, address):
        raise OSError(f"network unreachable in tests ({address})")

    monkeypatch.setattr(socket.socket, "connect", unreachable)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    _forget_repository()
    yield tmp_path
    _forget_repository()


def _copy(tmp_path, load_model: str = ""):
    """A git-committed copy of tracknet, its ``--load_model`` defaulting to ``load_model``."""
    repo = shutil.copytree(FIXTURES / "repos" / "tracknet", tmp_path / "tracknet")
    opts = repo / "src" / "lib" / "opts.py"
    text = opts.read_text()
    assert NO_DEFAULT in text
    opts.write_text(text.replace(NO_DEFAULT, NO_DEFAULT.replace("''", repr(load_model))))
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "original"]):
        _git(repo, *args)
    return repo


def _remap_block(output: str):
    lines = output.splitlines()
    start = lines.index("  remap the checkpoints the train scripts load:") + 1
    end = lines.index("  check the converted model at run time:")
    return lines[start:end]


def test_an_unknown_checkpoint_is_all_there_is_to_fill_in(offline):
    repo = _copy(offline)
    migrated = run_cli(["migrate", "--write"], cwd=repo)
    assert migrated.exit_code == 0, migrated.output
    block = _remap_block(migrated.stdout)
    assert block[:2] == [
        "    # fill in CHECKPOINT: the checkpoint you pass to --load_model",
        f"    #   bn2gn remap-ckpt CHECKPOINT --script src/main.py --strict -- {ARGS}",
    ]
    assert [line for line in block if "fill in" in line] == block[:1]  # no head=... to fill in
    assert block[-1] == "    #     (then train with --load_model CHECKPOINT.bn2gn.pth)"


def _save_original(repo, path, monkeypatch):
    """The original (BatchNorm) model's state dict, built from the unmigrated copy the way verify
    builds a model from ``--script``."""
    from bn2gn.model.spec import build, parse_script_spec

    monkeypatch.chdir(repo)
    model = build(parse_script_spec("src/main.py", ARGS.split())).model
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert names == BACKBONE_BN + CONVERTED  # the checkpoint holds every layer's statistics
    path.parent.mkdir()
    torch.save(model.state_dict(), path)
    _forget_repository()
    return model.state_dict()


def test_the_printed_remap_line_runs_as_printed(offline, monkeypatch):
    checkpoint = offline / "weights" / "tracknet_base.pth"
    repo = _copy(offline, str(checkpoint))
    original = _save_original(repo, checkpoint, monkeypatch)
    migrated = run_cli(["migrate", "--write"], cwd=repo)
    assert migrated.exit_code == 0, migrated.output
    block = _remap_block(migrated.stdout)
    printed = f"bn2gn remap-ckpt {checkpoint} --script src/main.py --strict -- {ARGS}"
    assert block[0] == "    " + printed  # a command, not a comment
    assert not any("fill in" in line for line in block)
    assert (
        block[-1]
        == f"      # then train with --load_model {offline}/weights/tracknet_base.bn2gn.pth"
    )
    _forget_repository()
    before = snapshot(repo)
    result = run_cli(shlex.split(printed)[1:], cwd=repo)
    assert result.exit_code == 0, result.output
    report = [line.strip() for line in result.stdout.splitlines()]
    assert (
        "converted layers decided by the model --script src/main.py (GroupNorm in the model = "
        "converted)"
    ) in report
    assert "dropped      18  running statistics of 6 converted layers" in report
    for layer in CONVERTED:
        assert f"{layer}: running_mean, running_var, num_batches_tracked" in report
    assert "backbone BatchNorm layers kept with their statistics: 5" in report
    assert f"verification against src/main.py {ARGS}: ok (strict load clean)" in report
    assert snapshot(repo) == before  # the repository is left as migrate wrote it
    remapped = torch.load(offline / "weights" / "tracknet_base.bn2gn.pth", weights_only=True)
    assert not any(k.startswith(tuple(f"{layer}.running" for layer in CONVERTED)) for k in remapped)
    for layer in BACKBONE_BN:
        assert torch.equal(remapped[f"{layer}.running_mean"], original[f"{layer}.running_mean"])
    assert torch.equal(remapped["hm.1.weight"], original["hm.1.weight"])
