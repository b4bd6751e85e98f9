"""Every front end freezes, keeps in eval and keeps in the checkpoint exactly what the plan keeps.

One repository per backbone form (``fixtures/backbones``); the expected BatchNorm layers below are
written by hand from reading each fixture's ``models.py``. Each front end is run as a user would
(the click commands, the LibCST commands), then the model is built with torch and the injected
freeze / keep-eval functions are taken from the patched ``train.py``.
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
import json
import shutil
import sys

import pytest
from conftest import FIXTURES, run_cli

torch = pytest.importorskip("torch")
nn = torch.nn

FORMS = FIXTURES / "backbones"

#: BatchNorm layers of the built model that are the pretrained backbone (stay BatchNorm, frozen)
KEPT = {
    "named_backbone": {"backbone.stem.1", "backbone.stage.1"},
    "dla_base": {"base.base_layer.1", "base.level0.1", "base.level1.1"},
    "inline_resnet": {"bn1", "layer1.1", "layer2.1"},
    "factory_table": {"encoder.stem.1", "encoder.stage.1"},
    # the tracker's new input layer is unsure: it stays BatchNorm under the backbone attribute,
    # so the freeze covers it until the user settles it
    "tracker_input_layer": {
        "base.base_layer.1",
        "base.level0.1",
        "base.level1.1",
        "base.pre_img_layer.1",
    },
}
#: BatchNorm layers of the original model that the migration turns into GroupNorm
CONVERTED = {
    "named_backbone": {"neck.1"},
    "dla_base": {"dla_up.1", "hm.1"},
    "inline_resnet": {"deconv_layers.1", "head.1"},
    "factory_table": {"head.1"},
    "tracker_input_layer": {"dla_up.1", "hm.1"},
}
_count = itertools.count()


def _repo(form, tmp_path):
    repo = tmp_path / form
    shutil.copytree(FORMS / form, repo, ignore=shutil.ignore_patterns("__pycache__"))
    return repo


def _build(repo):
    spec = importlib.util.spec_from_file_location(f"bn2gn_form_{next(_count)}", repo / "models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    return module.create_model()


def _freeze_functions(repo):
    from bn2gn.verify.freeze_source import load_freeze_logic

    logic = load_freeze_logic([repo / "train.py"], ())
    assert logic.keep is not None
    return logic.freeze, logic.keep


def _batchnorms(model):
    from torch.nn.modules.batchnorm import _BatchNorm

    return {p: m for p, m in model.named_modules() if isinstance(m, _BatchNorm)}


def _frozen(model):
    return {
        p
        for p, m in _batchnorms(model).items()
        if not m.training and not m.weight.requires_grad and not m.bias.requires_grad
    }


def _in_eval(model):
    return {p for p, m in _batchnorms(model).items() if not m.training}


def _check_freeze(repo, model, form):
    freeze, keep = _freeze_functions(repo)
    model.train()
    freeze(model)
    assert _frozen(model) == KEPT[form]
    model.train()
    keep(model)
    assert _in_eval(model) == KEPT[form]
    wrapped = nn.DataParallel(model)
    wrapped.train()
    keep(wrapped)
    assert _in_eval(model) == KEPT[form]


def _check_converted(model, form):
    assert set(_batchnorms(model)) == KEPT[form]
    groups = {p for p, m in model.named_modules() if isinstance(m, nn.GroupNorm)}
    assert groups == CONVERTED[form]


@pytest.mark.parametrize("form", sorted(KEPT))
def test_patch_trainer_freezes_the_planned_backbone(form, tmp_path):
    repo = _repo(form, tmp_path)
    result = run_cli(["patch-trainer", "train.py"], cwd=repo)
    assert result.exit_code == 0, result.output
    _check_freeze(repo, _build(repo), form)


@pytest.mark.parametrize("form", sorted(KEPT))
def test_migrate_freezes_the_planned_backbone(form, tmp_path):
    repo = _repo(form, tmp_path)
    result = run_cli(["migrate", "--write"], cwd=repo)
    assert result.exit_code == 0, result.output
    model = _build(repo)
    _check_converted(model, form)
    _check_freeze(repo, model, form)
    assert run_cli(["migrate", "--check"], cwd=repo).exit_code == 0


@pytest.mark.parametrize("form", sorted(KEPT))
def test_libcst_commands_freeze_the_planned_backbone(form, tmp_path, monkeypatch):
    from libcst.codemod import CodemodContext, TransformSuccess, transform_module

    from bn2gn.libcst_commands import PatchTrainer, Rewrite

    repo = _repo(form, tmp_path)
    monkeypatch.chdir(repo)
    for name, command in (("models.py", Rewrite), ("train.py", PatchTrainer)):
        path = repo / name
        context = CodemodContext(filename=str(path))
        done = transform_module(command(context, scan_paths=[str(repo)]), path.read_text())
        assert isinstance(done, TransformSuccess), getattr(done, "error", done)
        path.write_text(done.code)
    model = _build(repo)
    _check_converted(model, form)
    _check_freeze(repo, model, form)


def _saved_statistics(path):
    state = torch.load(path, weights_only=True)["state_dict"]
    return {key.rpartition(".")[0] for key in state if key.endswith(".running_mean")}


@pytest.mark.parametrize("form", sorted(KEPT))
def test_remap_keeps_the_planned_backbone_statistics(form, tmp_path):
    repo = _repo(form, tmp_path)
    (repo / "exp").mkdir()
    torch.save({"state_dict": _build(repo).state_dict()}, repo / "exp" / "model_last.pth")
    # from the source: the checkpoint sits inside the repository, whose plan decides
    result = run_cli(["remap-ckpt", "exp/model_last.pth", "-o", "exp/by_plan.pth"], cwd=repo)
    assert result.exit_code == 0, result.output
    assert "converted layers decided by the plan of" in result.output
    assert _saved_statistics(repo / "exp" / "by_plan.pth") == KEPT[form]
    # from the converted model (in-process: drop an earlier test's ``models``)
    assert run_cli(["migrate", "--write"], cwd=repo).exit_code == 0
    sys.modules.pop("models", None)
    result = run_cli(
        ["remap-ckpt", "exp/model_last.pth", "-o", "exp/by_model.pth"]
        + ["--model", "models:create_model", "--path", ".", "--strict"],
        cwd=repo,
    )
    assert result.exit_code == 0, result.output
    assert _saved_statistics(repo / "exp" / "by_model.pth") == KEPT[form]
    # from the model the patched train script optimizes
    sys.modules.pop("models", None)
    result = run_cli(
        ["remap-ckpt", "exp/model_last.pth", "-o", "exp/by_script.pth", "--strict"]
        + ["--script", "train.py"],
        cwd=repo,
    )
    sys.modules.pop("models", None)
    assert result.exit_code == 0, result.output
    assert "converted layers decided by the model --script train.py" in result.output
    assert _saved_statistics(repo / "exp" / "by_script.pth") == KEPT[form]
    converted = _build(repo)
    converted.load_state_dict(torch.load(repo / "exp" / "by_plan.pth")["state_dict"], strict=True)


@pytest.mark.parametrize("form", sorted(KEPT))
def test_verify_checks_the_planned_backbone(form, tmp_path):
    repo = _repo(form, tmp_path)
    assert run_cli(["migrate", "--write"], cwd=repo).exit_code == 0
    sys.modules.pop("models", None)
    args = ["verify", "--model", "models:create_model", "--path", ".", "--freeze-from", "train.py"]
    args += ["--input-shape", "1,3,32,32", "--steps", "2", "--format", "json"]
    result = run_cli(args, cwd=repo)
    assert result.exit_code == 0, result.output
    assert "freeze-backbone" not in result.output
    sys.modules.pop("models", None)


def test_verify_names_a_freeze_that_carries_another_backbone(tmp_path):
    repo = _repo("inline_resnet", tmp_path)
    assert run_cli(["migrate", "--write"], cwd=repo).exit_code == 0
    train = repo / "train.py"
    text = train.read_text()
    assert '"PoseResNet.bn1"' in text
    # the freeze as an older migration that froze by name only would have left it
    (definition,) = [
        node
        for node in ast.parse(text).body
        if isinstance(node, ast.FunctionDef) and node.name == "freeze_backbone_bn"
    ]
    default = definition.args.defaults[-1]
    lines = text.splitlines(keepends=True)
    start = sum(map(len, lines[: default.lineno - 1])) + default.col_offset
    end = sum(map(len, lines[: default.end_lineno - 1])) + default.end_col_offset
    train.write_text(text[:start] + '("backbone", "base_layer")' + text[end:])
    sys.modules.pop("models", None)
    args = ["verify", "--model", "models:create_model", "--path", ".", "--freeze-from", "train.py"]
    args += ["--input-shape", "1,3,32,32", "--steps", "2"]
    result = run_cli(args, cwd=repo)
    sys.modules.pop("models", None)
    assert result.exit_code == 1
    assert (
        "freeze_backbone_bn in train.py carries the backbone entries ('backbone', 'base_layer')"
        in (result.output)
    )
    assert "update it: bn2gn patch-trainer train.py" in result.output
    # the calls are there: no advice to add them
    assert "inserts both" not in result.output and "adds it" not in result.output
    assert "carries other backbone entries: see freeze-backbone" in result.output


def test_migrate_updates_helpers_when_the_plan_changes(tmp_path):
    """Inject, change the decision (a backbone attribute the user adds), run again: the injected
    helpers follow, --check shows it first, and a third run changes nothing."""
    repo = _repo("named_backbone", tmp_path)
    assert run_cli(["migrate", "--write"], cwd=repo).exit_code == 0
    first = (repo / "train.py").read_text()
    assert 'backbone_attrs=("backbone", "base_layer")' in first
    assert run_cli(["migrate", "--check", "--backbone-attr", "neck"], cwd=repo).exit_code == 1
    assert (repo / "train.py").read_text() == first
    result = run_cli(["migrate", "--write", "--backbone-attr", "neck"], cwd=repo)
    assert result.exit_code == 0, result.output
    second = (repo / "train.py").read_text()
    assert 'backbone_attrs=("backbone", "base_layer")' not in second
    assert second.count('backbone_attrs=("backbone", "base_layer", "neck")') == 4
    assert run_cli(["migrate", "--check", "--backbone-attr", "neck"], cwd=repo).exit_code == 0


def test_migrate_reports_the_backbone_it_bakes_in_json(tmp_path):
    repo = _repo("inline_resnet", tmp_path)
    result = run_cli(["migrate", "--format", "json"], cwd=repo)
    data = json.loads(result.stdout)
    entries = [e["entry"] for e in data["backbone"]["entries"]]
    assert entries == [
        "backbone",
        "base_layer",
        "PoseResNet.bn1",
        "PoseResNet.conv1",
        "PoseResNet.layer1",
        "PoseResNet.layer2",
    ]


def test_engines_take_the_decision_never_names_or_a_string():
    from bn2gn.checkpoint.remap import RemapOptions
    from bn2gn.core.settings import load_config
    from bn2gn.decide.backbone import Backbone
    from bn2gn.source.patch_trainer import TrainerOptions

    with pytest.raises(TypeError):
        TrainerOptions(backbone=("backbone", "base_layer"))
    with pytest.raises(TypeError):
        RemapOptions(backbone=("backbone",))
    with pytest.raises(TypeError):
        Backbone.named("backbone")
    with pytest.raises(TypeError):
        Backbone.decided("base", {})
    with pytest.raises(TypeError):
        load_config([FORMS], backbone_names="base")
    with pytest.raises(TypeError):  # the old keyword is gone, not silently ignored
        load_config([FORMS], backbone_attrs=("base",))


def test_backbone_contains_and_modules_agree_on_a_built_model(tmp_path):
    """``contains`` with the model's owners and ``modules`` (the runtime's rule) give the same set."""
    from bn2gn.api import Session

    repo = _repo("inline_resnet", tmp_path)
    backbone = Session.open([repo]).backbone
    model = nn.DataParallel(_build(repo))
    inner = model.module
    owners = {p: [k.__name__ for k in type(m).__mro__] for p, m in inner.named_modules()}
    by_contains = {p for p in _batchnorms(inner) if backbone.contains(p, owners)}
    by_modules = {p for p, _ in backbone.batchnorms(model)}
    assert by_contains == by_modules == KEPT["inline_resnet"]
    # without the model, a checkpoint key's path is taken relative to the root
    assert backbone.contains("layer1.1") and not backbone.contains("head.1")


def test_patch_trainer_writes_nothing_when_the_plan_cannot_be_built(tmp_path):
    repo = _repo("named_backbone", tmp_path)
    (repo / "bn2gn.toml").write_text('[tool.bn2gn]\nconvert = ["NoSuchClass"]\n')
    before = (repo / "train.py").read_bytes()
    result = run_cli(["patch-trainer", "train.py"], cwd=repo)
    assert result.exit_code == 2
    assert "NoSuchClass" in result.stderr and "Traceback" not in result.output
    assert (repo / "train.py").read_bytes() == before


def test_remap_refuses_to_guess_without_source_plan_model_or_names(tmp_path):
    torch.save(
        {"state_dict": nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).state_dict()},
        tmp_path / "old.pth",
    )
    result = run_cli(["remap-ckpt", "old.pth"], cwd=tmp_path)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    for option in ("--model", "--plan", "--source", "--backbone-attr"):
        assert option in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.pth"]


def test_a_kept_attribute_joins_the_backbone_and_the_injected_helpers_follow(tmp_path):
    """Inject, then settle the neck as backbone with --keep: the neck stays BatchNorm, so the
    helpers injected before are updated to freeze it too; a third run changes nothing."""
    repo = _repo("named_backbone", tmp_path)
    assert run_cli(["patch-trainer", "train.py"], cwd=repo).exit_code == 0
    assert 'backbone_attrs=("backbone", "base_layer")' in (repo / "train.py").read_text()
    result = run_cli(["migrate", "--write", "--keep", "Detector.neck"], cwd=repo)
    assert result.exit_code == 0, result.output
    assert "Detector.neck" in (repo / "train.py").read_text()
    assert run_cli(["migrate", "--check", "--keep", "Detector.neck"], cwd=repo).exit_code == 0
    model = _build(repo)
    freeze, keep = _freeze_functions(repo)
    model.train()
    freeze(model)
    assert _frozen(model) == {"backbone.stem.1", "backbone.stage.1", "neck.1"}
    model.train()
    keep(model)
    assert _in_eval(model) == {"backbone.stem.1", "backbone.stage.1", "neck.1"}


def test_remap_script_arguments_need_script_and_script_excludes_model(tmp_path):
    repo = _repo("inline_resnet", tmp_path)
    result = run_cli(["remap-ckpt", "old.pth", "--", "--arch", "res_18"], cwd=repo)
    assert result.exit_code == 2 and "belong to --script PATH" in result.stderr
    result = run_cli(
        ["remap-ckpt", "old.pth", "--script", "train.py", "--model", "models:create_model"],
        cwd=repo,
    )
    assert result.exit_code == 2 and "leave out --model" in result.stderr
