"""bn2gn migrate on the shapes of real repositories: fixtures/migrate/satrepo.

The tree (written for these tests) is laid out like the CenterNet family: ``src/main.py`` puts
``src/lib`` on sys.path through ``import _init_paths``, builds the optimizer in
``setup_optimization(model, opt)`` and hands the epochs to ``trains.trainer.Trainer`` (a plain
class whose ``train()`` is the loop; its ``run_epoch`` calls ``self.model_with_loss.train()``);
``models/model.py`` ends with a ``__main__`` self-test that builds an SGD optimizer; a dataset
devkit with its own LICENSE (two scripts that train a baseline) sits in ``src/tools/sat_devkit``,
a copied re-id trainer in ``third_party/reid``; ``src/tools/finetune_head.py`` passes the optimizer
``decay_groups(net, 1e-4)``, parameter groups a helper collects. Every expectation below is written
from reading those files.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import FIXTURES, run_cli, snapshot

SATREPO = FIXTURES / "migrate" / "satrepo"
FINETUNE = "src/tools/finetune_head.py"
MODEL = [
    "--model",
    "models.model:create_model",
    "--model-arg",
    "arch=dla_34",
    "--model-arg",
    "head_conv=64",
    "--path",
    "src/lib",
]


def _copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(SATREPO, tmp_path / "satrepo"))


def _changed(before: dict, after: dict) -> list:
    assert set(before) == set(after), "migrate created or removed files"
    return sorted(rel for rel in before if before[rel] != after[rel])


def _migrate(repo: Path, *extra):
    result = run_cli(["migrate", "--write", "--format", "json", *extra], cwd=repo)
    return result, json.loads(result.stdout)


def test_one_unattributable_optimizer_fails_alone(tmp_path):
    repo = _copy(tmp_path)
    before = snapshot(repo)
    result, data = _migrate(repo)
    assert result.exit_code == 1 and data["exit_code"] == 1
    failed = [r for r in data["results"] if r["status"] == "failed"]
    assert failed == [
        {
            "path": FINETUNE,
            "status": "failed",
            "changes": [],
            "error": f"{FINETUNE}:19: cannot tell which model the optimizer built here (in main) "
            f"trains; file left unchanged: patch it on its own with bn2gn patch-trainer {FINETUNE} "
            "--model-var NAME (migrate then finds it done), or --exclude it",
        }
    ]
    assert _changed(before, snapshot(repo)) == [
        "src/lib/models/model.py",
        "src/lib/trains/trainer.py",
        "src/main.py",
    ]
    # the printed way out works: that file on its own, then migrate finds nothing left
    assert run_cli(["patch-trainer", FINETUNE, "--model-var", "net"], cwd=repo).exit_code == 0
    again, data = _migrate(repo)
    assert again.exit_code == 0 and data["files_changed"] == 0


def test_code_that_is_not_the_users_training_code_is_left_alone(tmp_path):
    repo = _copy(tmp_path)
    before = snapshot(repo)
    result, data = _migrate(repo, "--exclude", FINETUNE)
    assert result.exit_code == 0, result.output
    after = snapshot(repo)
    assert _changed(before, after) == [
        "src/lib/models/model.py",
        "src/lib/trains/trainer.py",
        "src/main.py",
    ]
    model = after["src/lib/models/model.py"].decode()
    assert "get_group_norm(head_conv)" in model and "freeze_backbone_bn" not in model
    main = after["src/main.py"].decode()
    assert "    frozen_count = freeze_backbone_bn(model)\n" in main
    assert "keep_backbone_bn_eval(trainer" not in main
    assert (
        "        self.model_with_loss.train()\n        keep_backbone_bn_eval(self.model_with_loss)\n"
        in (after["src/lib/trains/trainer.py"].decode())
    )
    assert data["left_alone"] == [
        {
            "path": "src/lib/models/model.py",
            "line": 35,
            "reason": 'the `if __name__ == "__main__":` block of a library module (the module '
            "defines models; the block runs no training loop) is a quick self-test, not training "
            "code; left alone",
        },
        {
            "path": "src/main.py",
            "line": 22,
            "reason": "trainer.train(...) left alone: trainer is a Trainer "
            "(src/lib/trains/trainer.py:22), which is not an nn.Module; its train() is the "
            "training loop",
        },
        {
            "path": "src/tools/sat_devkit/",
            "line": None,
            "reason": "a copied project (its own LICENSE), not your training code: 2 file(s) with "
            "training code there left alone (bn2gn patch-trainer src/tools/sat_devkit patches "
            "them if they are yours)",
        },
        {
            "path": "third_party/",
            "line": None,
            "reason": "a vendored folder (third_party/), not your training code: 1 file(s) with "
            "training code there left alone (bn2gn patch-trainer third_party patches them if "
            "they are yours)",
        },
    ]
    assert data["scripts"] == ["src/main.py"] and data["trainers"] == ["src/lib/trains/trainer.py"]
    text = run_cli(["migrate", "--check", "--exclude", FINETUNE], cwd=repo)
    assert text.exit_code == 0 and snapshot(repo) == after  # a second run changes nothing


def test_next_step_lines_follow_the_repositorys_sys_path(tmp_path):
    repo = _copy(tmp_path)
    result, data = _migrate(repo, "--exclude", FINETUNE)
    steps = data["next_steps"]
    assert [c["argv"] for c in steps["remap_ckpt"]] == [
        ["bn2gn", "remap-ckpt", "CHECKPOINT", *MODEL, "--strict"]
    ]
    assert steps["remap_ckpt"][0]["fill_in"] == [
        "CHECKPOINT: the checkpoint you pass to --load_model"
    ]
    assert steps["verify"][0]["argv"] == [
        "bn2gn",
        "verify",
        *MODEL,
        "--freeze-from",
        "src/main.py",
        "--freeze-from",
        "src/lib/trains/trainer.py",
    ]
    text = run_cli(["migrate", "--exclude", FINETUNE], cwd=repo).stderr  # --diff: report on stderr
    lines = text[text.index("next steps") :].splitlines()
    # every line that is not a comment runs as printed; placeholders are only in comments
    commands = [line.strip() for line in lines if line.startswith("    ") and "#" not in line]
    # --write was given before: nothing left to apply; the verify line needs nothing filled in
    assert commands == [shlex.join(steps["verify"][0]["argv"])]
    remap = "bn2gn remap-ckpt CHECKPOINT " + " ".join(MODEL) + " --strict"
    assert lines[
        lines.index("    # fill in CHECKPOINT: the checkpoint you pass to --load_model") + 1
    ] == (f"    #   {remap}")


def test_printed_lines_run_once_filled_in(tmp_path):
    repo = _copy(tmp_path)
    _, data = _migrate(repo, "--exclude", FINETUNE)
    build = (
        "import torch, sys; sys.path.insert(0, 'src/lib'); from models.model import create_model; "
        "torch.save(create_model('dla_34', 64).state_dict(), '../old.pth')"
    )
    original = _copy(tmp_path / "original")
    subprocess.run([sys.executable, "-c", build], cwd=original, check=True, timeout=300)
    remap = [
        a.replace("CHECKPOINT", str(tmp_path / "original" / "old.pth"))
        for a in data["next_steps"]["remap_ckpt"][0]["argv"]
    ]
    done = run_cli(remap[1:], cwd=repo)
    assert done.exit_code == 0, done.output
    verify = data["next_steps"]["verify"][0]["argv"]  # as printed: verify infers the shapes
    done = run_cli([*verify[1:], "--steps", "2", "--device", "cpu"], cwd=repo)
    assert done.exit_code == 0, done.output


def test_vendored_trees(tmp_path):
    from bn2gn.migrate.not_training import vendored_tree

    repo = tmp_path / "repo"
    for folder, marker in [
        ("lib/DCNv2", "setup.py"),
        ("tools/kit", "pyproject.toml"),
        ("tools/devkit", "COPYING"),
        ("lib/models", None),
        ("src/external/nms", None),
    ]:
        (repo / folder).mkdir(parents=True)
        if marker:
            (repo / folder / marker).write_text("")
    (repo / "pyproject.toml").write_text("")  # the repository's own: not a nested package
    assert vendored_tree(repo / "lib/DCNv2/src/x.py", repo) == (
        repo / "lib/DCNv2",
        "a separate package (its own setup.py)",
    )
    assert vendored_tree(repo / "tools/kit/train.py", repo)[1] == (
        "a separate package (its own pyproject.toml)"
    )
    assert vendored_tree(repo / "tools/devkit/train.py", repo)[1] == (
        "a copied project (its own COPYING)"
    )
    assert vendored_tree(repo / "src/external/nms/x.py", repo) == (
        repo / "src/external",
        "a vendored folder (external/)",
    )
    assert vendored_tree(repo / "lib/models/train.py", repo) is None
    assert vendored_tree(repo / "train.py", repo) is None


ONE_CYCLE = FIXTURES / "migrate" / "one_cycle"


def test_the_repositorys_own_optimizer_builders_are_found(tmp_path):
    """tools/train.py picks build_one_cycle_optimizer(model, cfg) or build_optimizer(model, cfg) by a
    flag: both paths get the freeze. tools/finetune.py gives build_one_cycle_optimizer layer groups,
    not the model: nothing is inserted there, and a note names the call and --optimizer-call."""
    repo = Path(shutil.copytree(ONE_CYCLE, tmp_path / "one_cycle"))
    result, data = _migrate(repo)
    assert result.exit_code == 0, result.output
    train = (repo / "tools/train.py").read_text()
    freeze = (
        "        frozen_count = freeze_backbone_bn(model)\n"
        '        print(f"Frozen backbone BatchNorm modules: {frozen_count}")\n'
    )
    assert (
        "    if cfg.one_cycle:\n"
        + freeze
        + "        optimizer = build_one_cycle_optimizer(model, cfg)\n"
        + "    else:\n"
        + freeze
        + "        optimizer = build_optimizer(model, cfg)\n"
    ) in train
    finetune = next(r for r in data["results"] if r["path"] == "tools/finetune.py")
    assert finetune["notes"] == [
        "tools/finetune.py:10: optimizer = build_one_cycle_optimizer(...) may build the optimizer, "
        "but bn2gn cannot tell which model it trains, so nothing was inserted before it; if it "
        "builds the optimizer, name it with --optimizer-call build_one_cycle_optimizer (and the "
        "model, if bn2gn then asks)"
    ]
    assert "= freeze_backbone_bn(" not in (repo / "tools/finetune.py").read_text()


FROZEN_BN = FIXTURES / "migrate" / "frozen_bn"


def test_a_repository_with_frozen_batchnorm_needs_nothing(tmp_path):
    """det/layers.py's FrozenBN registers weight, bias, running_mean and running_var as buffers; the
    backbone is built of it, the head uses GroupNorm: no BatchNorm2d anywhere."""
    repo = Path(shutil.copytree(FROZEN_BN, tmp_path / "frozen_bn"))
    before = snapshot(repo)
    result, data = _migrate(repo)
    assert result.exit_code == 0, result.output
    assert snapshot(repo) == before
    assert data["files_changed"] == 0 and data["scripts"] == [] and data["trainers"] == []
    assert data["frozen_already"] == "det/model.py:7 uses FrozenBN (det/layers.py:5)"
    assert data["next_steps"]["remap_ckpt"] == [] and data["next_steps"]["verify"] == []
    assert data["next_steps"]["notes"] == [
        "nothing to migrate: the models hold no BatchNorm2d, and det/model.py:7 uses FrozenBN "
        "(det/layers.py:5), a BatchNorm whose statistics and affine are buffers: frozen already; "
        "no train script patched, no checkpoint to remap"
    ]
    text = run_cli(["migrate"], cwd=repo)
    assert "remap-ckpt" not in text.output and "nothing to migrate" in text.stderr


def test_torchvisions_frozen_batchnorm_counts(tmp_path):
    from bn2gn.migrate.frozen_bn import frozen_batchnorm_use

    (tmp_path / "net.py").write_text(
        "from torchvision.models import resnet50\n"
        "from torchvision.ops import FrozenBatchNorm2d\n\n"
        "backbone = resnet50(norm_layer=FrozenBatchNorm2d)\n"
    )
    (tmp_path / "bn.py").write_text(
        "import torch.nn as nn\n\n\nclass NotFrozen(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.register_buffer('running_mean', None)\n\n\n"
        "x = NotFrozen()\n"
    )
    found = frozen_batchnorm_use(tmp_path, [tmp_path / "bn.py", tmp_path / "net.py"], {})
    assert str(found) == "net.py:4 uses FrozenBatchNorm2d (torchvision)"
    assert frozen_batchnorm_use(tmp_path, [tmp_path / "bn.py"], {}) is None


MAIN_ONLY_SCRIPT = """\
import torch

from nets import build

if __name__ == "__main__":
    model = build()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
"""

HELPER_WITH_SELF_TEST = """\
import torch


def warmup(optimizer, steps):
    return torch.optim.lr_scheduler.LinearLR(optimizer, total_iters=steps)


if __name__ == "__main__":
    weight = torch.zeros(3, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=0.1)
    print(warmup(optimizer, 5))
"""

UNKNOWN_TRAINER = """\
import torch
from somewhere_else import Runner

from nets import build


def main():
    model = build()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    runner = Runner(model, optimizer)
    runner.train()
"""


def _tree(root: Path, files: dict) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_what_is_training_code_is_still_patched(tmp_path):
    """A script whose whole run is its __main__ block (imported by nobody, no model class), a
    .train() on an object of a class bn2gn cannot follow, and a project below REPO with its own
    setup.py when it holds all the training code: all patched as before, no note."""
    nets = "def build():\n    return None\n"
    repo = _tree(
        tmp_path / "work",
        {
            "proj/setup.py": "",
            "proj/nets.py": nets,
            "proj/train.py": MAIN_ONLY_SCRIPT,
            "proj/run.py": UNKNOWN_TRAINER,
            "proj/sched.py": HELPER_WITH_SELF_TEST,
            "proj/fit.py": "import sched  # noqa: F401\n",
        },
    )
    result, data = _migrate(repo)
    assert result.exit_code == 0, result.output
    assert sorted(r["path"] for r in data["results"]) == ["proj/run.py", "proj/train.py"]
    run = (repo / "proj/run.py").read_text()
    assert "    runner.train()\n    keep_backbone_bn_eval(runner)\n" in run
    assert data["left_alone"] == [
        {
            "path": "proj/sched.py",
            "line": 8,
            "reason": 'the `if __name__ == "__main__":` block of a library module (the module is '
            "imported by proj/fit.py) is a quick self-test, not training code; left alone",
        }
    ]


LOCAL_RUNNER = """\
import torch

from nets import build


class Runner:
    def __init__(self, model, optimizer):
        self.model = model
        self.optimizer = optimizer

    def train(self):
        for _ in range(3):
            self.optimizer.step()


def main():
    model = build()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    runner = Runner(model, optimizer)
    runner.train()
"""


def test_a_trainer_class_of_the_same_file(tmp_path):
    repo = _tree(
        tmp_path / "repo", {"nets.py": "def build():\n    return None\n", "fit.py": LOCAL_RUNNER}
    )
    result, data = _migrate(repo)
    assert result.exit_code == 0, result.output
    text = (repo / "fit.py").read_text()
    assert "    frozen_count = freeze_backbone_bn(model)\n" in text
    assert "keep_backbone_bn_eval(runner" not in text and "def keep_backbone_bn_eval" not in text
    assert data["left_alone"] == [
        {
            "path": "fit.py",
            "line": 20,
            "reason": "runner.train(...) left alone: runner is a Runner (fit.py:6), which is not an "
            "nn.Module; its train() is the training loop",
        }
    ]


ONE_FILE_TRAINING = """\
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))


if __name__ == "__main__":
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(10):
        model.train()
        optimizer.step()
"""


def test_a_one_file_train_script_defining_its_model_is_patched(tmp_path):
    repo = _tree(tmp_path / "repo", {"train_toy.py": ONE_FILE_TRAINING})
    result, data = _migrate(repo)
    assert result.exit_code == 0, result.output
    assert data["left_alone"] == [] and data["scripts"] == ["train_toy.py"]
    assert "        model.train()\n        keep_backbone_bn_eval(model)\n" in (
        (repo / "train_toy.py").read_text()
    )


MODEL_AND_SCRIPT = """\
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
        self.head = nn.Sequential(nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8))


def groups(net):
    return [{"params": [p]} for p in net.parameters()]


def main():
    net = Net()
    optimizer = torch.optim.SGD(groups(net), lr=0.1)
    return optimizer
"""


def test_the_failure_names_the_line_as_it_is_on_disk(tmp_path):
    """The file is also rewritten (its head BatchNorm): the optimizer's line is 18 on disk, not in
    the rewritten text with get_group_norm defined above it."""
    repo = _tree(tmp_path / "repo", {"train_all.py": MODEL_AND_SCRIPT})
    result, data = _migrate(repo)
    assert result.exit_code == 1
    assert data["results"][0]["error"].startswith(
        "train_all.py:18: cannot tell which model the optimizer built here (in main) trains"
    )
    assert (repo / "train_all.py").read_text() == MODEL_AND_SCRIPT
