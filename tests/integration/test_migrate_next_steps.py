"""The remap-ckpt / verify lines migrate prints, read from a train script with ast.

The repository below is written for this test; the expected command lines are written by hand
from reading it.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from conftest import run_cli

FACTORY = """\
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, num_classes, depth=18, width=1.0):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
        self.head = nn.Sequential(nn.Conv2d(8, num_classes, 3), nn.BatchNorm2d(num_classes))


def build_net(num_classes, depth=18, width=1.0):
    return Net(num_classes, depth, width)
"""

SCRIPT = """\
import argparse

import torch

from nets.factory import build_net


def parse():
    p = argparse.ArgumentParser()
    p.add_argument("--weights", type=str, default="weights/start.pth")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--depth", type=int, default=34)
    p.add_argument("--pretrained-backbone", dest="backbone_ckpt", default=None)
    p.add_argument("--lr", type=float, default=0.01)
    return p.parse_args()


def main(args):
    net = build_net(3, depth=args.depth, width=compute_width())
    net.load_state_dict(torch.load("ckpt/imagenet_init.pth", map_location="cpu"), strict=False)
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr)
    for _ in range(2):
        net.train()
        optimizer.step()
"""


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "proj"
    (repo / "nets").mkdir(parents=True)
    (repo / "nets/__init__.py").write_text("")
    (repo / "nets/factory.py").write_text(FACTORY)
    (repo / "tools").mkdir()
    (repo / "tools/train.py").write_text(SCRIPT)
    return repo


def _steps(repo: Path, *extra):
    result = run_cli(["migrate", "--format", "json", *extra], cwd=repo)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["next_steps"]


def test_checkpoint_options_and_torch_load_paths(tmp_path):
    repo = _repo(tmp_path)
    steps = _steps(repo)
    model = [
        "--model",
        "nets.factory:build_net",
        "--model-arg",
        "num_classes=3",
        "--model-arg",
        "depth=34",
        "--path",
        ".",
    ]  # nets/ is at the repository root, not beside the script
    assert [c["argv"] for c in steps["remap_ckpt"]] == [
        ["bn2gn", "remap-ckpt", "weights/start.pth", *model, "--strict"],
        ["bn2gn", "remap-ckpt", "CHECKPOINT", *model, "--strict"],
        ["bn2gn", "remap-ckpt", "ckpt/imagenet_init.pth", *model, "--strict"],
    ]
    first, placeholder, literal = steps["remap_ckpt"]
    assert "then train with --weights weights/start.bn2gn.pth" in first["notes"]
    assert placeholder["fill_in"] == [
        "CHECKPOINT: the checkpoint you pass to --pretrained-backbone"
    ]
    assert not placeholder["runnable"] and first["runnable"] and literal["runnable"]
    assert (
        "then load ckpt/imagenet_init.bn2gn.pth instead of ckpt/imagenet_init.pth"
        in literal["notes"]
    )
    assert any(
        n.startswith("width: compute_width() is computed at run time") for n in first["notes"]
    )
    # no input shapes: verify reads them off the model, so the line runs as printed
    assert steps["verify"][0]["argv"] == [
        "bn2gn",
        "verify",
        *model,
        "--freeze-from",
        "tools/train.py",
        "--checkpoint",
        "weights/start.bn2gn.pth",
    ]
    assert steps["verify"][0]["runnable"] and steps["verify"][0]["fill_in"] == []


def test_already_migrated_repository_still_gets_the_lines(tmp_path):
    repo = _repo(tmp_path)
    assert run_cli(["migrate", "--write", "-q"], cwd=repo).exit_code == 0
    steps = _steps(repo)
    assert [c["argv"][2] for c in steps["remap_ckpt"]] == [
        "weights/start.pth",
        "CHECKPOINT",
        "ckpt/imagenet_init.pth",
    ]
    assert steps["verify"][0]["argv"][-4:] == [
        "--freeze-from",
        "tools/train.py",
        "--checkpoint",
        "weights/start.bn2gn.pth",
    ]


def test_unknown_factory_is_a_placeholder(tmp_path):
    repo = tmp_path / "proj"
    repo.mkdir()
    (repo / "train.py").write_text(
        textwrap.dedent("""\
        import torch


        def main(make):
            model = make()
            optimizer = torch.optim.Adam(model.parameters())
        """)
    )
    steps = _steps(repo)
    assert steps["remap_ckpt"] == []
    # no factory to name: the train script itself says which model it trains
    assert steps["verify"][0]["argv"] == [
        "bn2gn",
        "verify",
        "--script",
        "train.py",
        "--freeze-from",
        "train.py",
    ]
    assert steps["verify"][0]["runnable"] and steps["verify"][0]["fill_in"] == []
    assert "its default arguments are used" in steps["verify"][0]["notes"][-1]


def test_script_form_takes_the_arguments_an_experiments_script_passes(tmp_path):
    repo = tmp_path / "proj"
    (repo / "src").mkdir(parents=True)
    (repo / "experiments").mkdir()
    (repo / "src" / "main.py").write_text(
        textwrap.dedent("""\
        import torch


        def main(make):
            model = make()
            optimizer = torch.optim.Adam(model.parameters())
        """)
    )
    (repo / "experiments" / "train_sat.sh").write_text(
        "#!/bin/bash\n"
        "cd src\n"
        "# train\n"
        "python main.py tracking --exp_id sat_dla \\\n"
        "  --arch dla_34 --batch_size 1 --gpus 0 && cd ..\n"
    )
    steps = _steps(repo)
    verify = steps["verify"][0]
    assert verify["argv"][2:4] == ["--script", "src/main.py"]
    assert verify["argv"][verify["argv"].index("--") + 1 :] == [
        "tracking",
        "--exp_id",
        "sat_dla",
        "--arch",
        "dla_34",
        "--batch_size",
        "1",
        "--gpus",
        "0",
    ]
    assert "experiments/train_sat.sh:4" in verify["notes"][-1]


def test_no_train_script(tmp_path):
    repo = tmp_path / "proj"
    repo.mkdir()
    (repo / "model.py").write_text(FACTORY)
    steps = _steps(repo)
    assert steps["remap_ckpt"] == [] and steps["verify"] == []
    assert steps["notes"] == [
        "no train script calls freeze_backbone_bn: no remap-ckpt / verify line to suggest"
    ]


OPTIMIZING = """\
import torch


def main(make):
    model = make()
    optimizer = torch.optim.Adam(model.parameters())
"""


def _script_repo(tmp_path: Path, shell: str, scripts=("src/main.py",)) -> Path:
    repo = tmp_path / "proj"
    for script in scripts:
        (repo / script).parent.mkdir(parents=True, exist_ok=True)
        (repo / script).write_text(OPTIMIZING)
    (repo / "experiments").mkdir(parents=True)
    (repo / "experiments" / "train.sh").write_text(shell)
    return repo


def test_cd_and_python_on_one_line_run_the_script_from_that_folder(tmp_path):
    repo = _script_repo(
        tmp_path,
        "cd src && python -u main.py ctdet --load_model ../models/start.pth --out ../runs/x "
        "--cfg cfg.yaml > log.txt\n",
    )
    (repo / "models").mkdir()
    (repo / "models" / "start.pth").write_bytes(b"")
    (repo / "src" / "cfg.yaml").write_text("")
    verify = _steps(repo)["verify"][0]
    # the files the arguments name from src/ are named from the repository root, where the line
    # runs; ../runs/x does not exist, so it stays as written
    assert verify["argv"] == [
        "bn2gn",
        "verify",
        "--script",
        "src/main.py",
        "--freeze-from",
        "src/main.py",
        "--",
        "ctdet",
        "--load_model",
        "models/start.pth",
        "--out",
        "../runs/x",
        "--cfg",
        "src/cfg.yaml",
    ]
    assert verify["runnable"]
    assert verify["notes"][-2] == "the script's arguments as experiments/train.sh:1 passes them"
    assert verify["notes"][-1].startswith("experiments/train.sh:1 runs it from src/; bn2gn runs")
    assert (
        "arguments naming files in src/ are given from here: ../models/start.pth -> "
        "models/start.pth, cfg.yaml -> src/cfg.yaml" in verify["notes"][-1]
    )


def test_a_script_of_the_same_name_in_another_folder_is_not_the_one_run(tmp_path):
    # the line runs tools/main.py from the root; src/main.py is the train script that freezes
    repo = _script_repo(
        tmp_path, "python tools/main.py --wrong\ncd src; python main.py --right 1\n"
    )
    verify = _steps(repo)["verify"][0]
    assert verify["argv"][verify["argv"].index("--") + 1 :] == ["--right", "1"]
    assert "experiments/train.sh:2" in verify["notes"][-2]


def test_a_folder_bn2gn_cannot_follow_falls_back_to_the_file_name(tmp_path):
    repo = _script_repo(tmp_path, "cd $ROOT/src\npython main.py --from-var\n")
    verify = _steps(repo)["verify"][0]
    assert verify["argv"][-2:] == ["--", "--from-var"]


def test_a_factory_argument_computed_at_run_time_makes_it_the_script_form(tmp_path):
    repo = _repo(tmp_path)
    (repo / "tools/train.py").write_text(
        SCRIPT.replace("build_net(3, depth=args.depth", "build_net(count(args), depth=args.depth")
    )
    steps = _steps(repo)
    # remap-ckpt runs the script too: runnable where the checkpoint is known, and where it is not,
    # CHECKPOINT is all there is to fill in (no num_classes=...)
    known, unknown, literal = steps["remap_ckpt"]
    assert known["argv"] == [
        "bn2gn",
        "remap-ckpt",
        "weights/start.pth",
        "--script",
        "tools/train.py",
        "--strict",
    ]
    assert known["runnable"] and known["fill_in"] == []
    assert known["notes"][-2:] == [
        "no shell script of the repository runs it: its default arguments are used",
        "then train with --weights weights/start.bn2gn.pth",
    ]
    assert (
        "the factory form needs values bn2gn cannot read (num_classes=...): the script computes "
        "them" in known["notes"]
    )
    assert unknown["argv"][2:] == ["CHECKPOINT", "--script", "tools/train.py", "--strict"]
    assert unknown["fill_in"] == ["CHECKPOINT: the checkpoint you pass to --pretrained-backbone"]
    assert literal["argv"][2] == "ckpt/imagenet_init.pth" and literal["runnable"]
    verify = steps["verify"][0]
    assert verify["argv"] == [
        "bn2gn",
        "verify",
        "--script",
        "tools/train.py",
        "--freeze-from",
        "tools/train.py",
        "--checkpoint",
        "weights/start.bn2gn.pth",
    ]
    assert verify["runnable"]
    assert (
        "the factory form needs values bn2gn cannot read (num_classes=...): the script computes "
        "them" in verify["notes"]
    )


LOADING = """\
import argparse

import torch


def main(make):
    parser = argparse.ArgumentParser()
    parser.add_argument("--load_model", default="../exp/model_last.pth")
    opt = parser.parse_args()
    model = make()
    optimizer = torch.optim.Adam(model.parameters())
"""


def test_a_checkpoint_default_is_named_from_the_root_when_the_shell_line_runs_from_a_folder(
    tmp_path,
):
    # the training runs from src/, where ../exp/model_last.pth is exp/model_last.pth of the root;
    # the remapped file is named for the training as it runs, from src/
    repo = _script_repo(tmp_path, "cd src && python main.py ctdet\n")
    (repo / "src" / "main.py").write_text(LOADING)
    steps = _steps(repo)
    (remap,) = steps["remap_ckpt"]
    assert remap["argv"][:3] == ["bn2gn", "remap-ckpt", "exp/model_last.pth"]
    assert remap["notes"][-1] == "then train with --load_model ../exp/model_last.bn2gn.pth"
    assert steps["verify"][0]["argv"][6:8] == ["--checkpoint", "exp/model_last.bn2gn.pth"]


def test_a_checkpoint_the_shell_line_passes_is_the_one_remapped(tmp_path):
    repo = _script_repo(
        tmp_path, "cd src && python main.py ctdet --load_model ../models/start.pth\n"
    )
    (repo / "src" / "main.py").write_text(LOADING)
    (repo / "models").mkdir()
    (repo / "models" / "start.pth").write_bytes(b"")
    (remap,) = _steps(repo)["remap_ckpt"]
    assert remap["argv"][:3] == ["bn2gn", "remap-ckpt", "models/start.pth"]
    assert remap["notes"][-1] == "then train with --load_model ../models/start.bn2gn.pth"


def test_a_checkpoint_default_from_the_root_stays_as_written(tmp_path):
    repo = _script_repo(tmp_path, "python src/main.py ctdet\n")
    (repo / "src" / "main.py").write_text(LOADING.replace("../exp/", "exp/"))
    (remap,) = _steps(repo)["remap_ckpt"]
    assert remap["argv"][2] == "exp/model_last.pth"
    assert remap["notes"][-1] == "then train with --load_model exp/model_last.bn2gn.pth"


def test_a_literal_torch_load_path_is_given_from_the_root_and_named_as_the_script_spells_it(
    tmp_path,
):
    repo = _script_repo(tmp_path, "cd src && python main.py\n")
    (repo / "src" / "main.py").write_text(
        OPTIMIZING.replace(
            "    model = make()\n",
            '    model = make()\n    model.load_state_dict(torch.load("../ckpt/init.pth"))\n',
        )
    )
    (remap,) = _steps(repo)["remap_ckpt"]
    assert remap["argv"][:3] == ["bn2gn", "remap-ckpt", "ckpt/init.pth"]
    assert remap["notes"][-1] == "then load ../ckpt/init.bn2gn.pth instead of ../ckpt/init.pth"
