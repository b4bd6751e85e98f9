"""Runtime checks with real PyTorch on CPU: the patched train script and trainer keep the backbone frozen.

The patched project (fixtures/trees/patch_trainer_project/out, the golden output of patch-trainer) is run
for a few steps at batch size 1: plainly, in nn.DataParallel, and under DistributedDataParallel
(gloo, 2 processes) with and without SyncBatchNorm. A monitor records the state of every backbone
BatchNorm at each forward pass (so right after each ``.train()``) and after each optimizer step.
The unpatched project shows the failure bn2gn prevents.
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings

import pytest

torch = pytest.importorskip("torch")

from conftest import FIXTURES  # noqa: E402

from bn2gn import runtime  # noqa: E402
from bn2gn.decide.backbone import Backbone  # noqa: E402


def is_backbone_path(path, entries):
    return Backbone.from_spellings(entries).contains(path)


PROJECT = FIXTURES / "trees" / "patch_trainer_project"
MODULES = ("tinydet", "tiny_trainer", "tiny_train")
BACKBONE_BN = {"backbone.base_layer.1", "backbone.level1.1"}  # the two BatchNorm2d of TinyBackbone


class FreezeMonitor:
    """Records, at every forward and after every optimizer step, what the freeze must guarantee."""

    def __init__(self):
        self.model = None
        self.start = {}
        self.forwards = []  # (model.training, {bn path: training}, head GroupNorm training)
        self.steps = []  # dicts of booleans, one per optimizer step

    def wrap(self, create_model):
        def create(*args, **kwargs):
            self.model = create_model(*args, **kwargs)
            self.start = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            self.model.register_forward_pre_hook(self._on_forward)
            return self.model

        return create

    def backbone_bns(self):
        from torch.nn.modules.batchnorm import _BatchNorm

        return {
            name: m
            for name, m in self.model.named_modules()
            if isinstance(m, _BatchNorm) and is_backbone_path(name, ("backbone", "base_layer"))
        }

    def _on_forward(self, module, inputs):
        bns = self.backbone_bns()
        self.forwards.append(
            (module.training, {n: m.training for n, m in bns.items()}, module.proj[1].training)
        )

    def on_step(self, optimizer, args, kwargs):
        bns = self.backbone_bns()
        now = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        same = {k: torch.equal(now[k], self.start[k]) for k in now if k.rsplit(".", 1)[0] in bns}
        self.steps.append(
            {
                "bn_training": any(m.training for m in bns.values()),
                "bn_requires_grad": any(
                    p.requires_grad for m in bns.values() for p in (m.weight, m.bias)
                ),
                "bn_state_unchanged": all(same.values()) and len(same) == 5 * len(bns),
                "head_gn_changed": not torch.equal(
                    now["proj.1.weight"], self.start["proj.1.weight"]
                ),
                "bn_types": sorted({type(m).__name__ for m in bns.values()}),
            }
        )


def _load_project(tmp_path, which, module="tiny_train"):
    """Import a module of a fresh copy of the in/ or out/ project (the fixtures get no __pycache__)."""
    import importlib

    root = tmp_path / which
    if not root.exists():
        shutil.copytree(PROJECT / which, root)
    for name in MODULES:
        sys.modules.pop(name, None)
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(root))
        for name in MODULES:
            sys.modules.pop(name, None)


def _run(tiny_train, args):
    """Run the project's main(); return the monitor and the trainer it built."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    monitor, built = FreezeMonitor(), []
    create_model, trainer_class = tiny_train.create_model, tiny_train.Trainer

    class RecordingTrainer(trainer_class):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            built.append(self)

    tiny_train.create_model, tiny_train.Trainer = monitor.wrap(create_model), RecordingTrainer
    handle = register_optimizer_step_post_hook(monitor.on_step)
    try:
        tiny_train.main(tiny_train.parse_args(args))
    finally:
        handle.remove()
        tiny_train.create_model, tiny_train.Trainer = create_model, trainer_class
    return monitor, built[0]


def _assert_frozen(monitor, epochs=2, iters=3):
    assert set(monitor.backbone_bns()) == BACKBONE_BN
    train_forwards = [f for f in monitor.forwards if f[0]]
    assert (
        len(train_forwards) == epochs * iters
    )  # every forward in train mode, i.e. after each .train()
    for _, bn_training, head_training in train_forwards:
        assert bn_training == {name: False for name in BACKBONE_BN}
        assert head_training is True  # the rest of the model does train
    assert len(monitor.steps) == epochs * iters
    for step in monitor.steps:
        assert step["bn_training"] is False
        assert step["bn_requires_grad"] is False
        assert (
            step["bn_state_unchanged"] is True
        )  # weight, bias, running stats, num_batches_tracked
        assert step["head_gn_changed"] is True


@pytest.mark.parametrize("data_parallel", [False, True])
def test_patched_project_keeps_backbone_frozen(tmp_path, data_parallel, capsys):
    tiny_train = _load_project(tmp_path, "out")
    monitor, trainer = _run(tiny_train, ["--data_parallel"] if data_parallel else [])
    assert isinstance(trainer.model_with_loss, torch.nn.DataParallel) is data_parallel
    _assert_frozen(monitor)
    assert all(s["bn_types"] == ["BatchNorm2d"] for s in monitor.steps)
    assert "Frozen backbone BatchNorm modules: 2" in capsys.readouterr().out


def test_unpatched_project_lets_running_stats_drift(tmp_path):
    tiny_train = _load_project(tmp_path, "in")
    monitor, _ = _run(tiny_train, ["--data_parallel", "--num_epochs", "1", "--num_iters", "1"])
    first = monitor.steps[0]
    assert first["bn_training"] is True and first["bn_requires_grad"] is True
    assert first["bn_state_unchanged"] is False
    now = monitor.model.state_dict()
    for name in BACKBONE_BN:
        assert not torch.equal(now[f"{name}.running_mean"], monitor.start[f"{name}.running_mean"])
        assert now[f"{name}.num_batches_tracked"].item() == 1001


def _ddp_worker(rank, world_size, project, init_file, out_dir, runs):
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    sys.path.insert(0, project)
    try:
        import tiny_train

        report = {}
        for name, args in runs.items():
            monitor, trainer = _run(tiny_train, args)
            wrapper = type(trainer.model_with_loss).__name__
            _assert_frozen(monitor)
            report[name] = [wrapper, sorted({t for s in monitor.steps for t in s["bn_types"]})]
        with open(f"{out_dir}/rank{rank}.json", "w") as handle:
            json.dump(report, handle)
    finally:
        dist.destroy_process_group()


def _spawn_ddp(tmp_path, runs, start_method):
    """Two ranks; ``fork`` on CPU (no second torch import: seconds instead of tens), ``spawn`` for CUDA."""
    import torch.multiprocessing as mp

    project = tmp_path / "out"
    shutil.copytree(PROJECT / "out", project)
    mp.start_processes(
        _ddp_worker,
        args=(2, str(project), str(tmp_path / "rendezvous"), str(tmp_path), runs),
        nprocs=2,
        start_method=start_method,
    )
    return [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]


def test_ddp_gloo_two_processes_and_sync_batchnorm(tmp_path):
    """Both ranks keep the backbone frozen: under DDP, and with a SyncBatchNorm backbone.

    On CPU, torch's DDP refuses to wrap SyncBatchNorm ("SyncBatchNorm layers only work with GPU
    modules"), so the SyncBatchNorm run uses the initialised gloo group without DDP; in train mode
    that SyncBatchNorm would raise on CPU, so it only runs because the freeze keeps it in eval.
    """
    reports = _spawn_ddp(tmp_path, {"ddp": ["--distributed"], "sync_bn": ["--sync_bn"]}, "fork")
    expected = {
        "ddp": ["DistributedDataParallel", ["BatchNorm2d"]],
        "sync_bn": ["ModelWithLoss", ["SyncBatchNorm"]],
    }
    assert reports == [expected, expected]


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="DDP around SyncBatchNorm needs a CUDA device"
)
def test_ddp_sync_batchnorm_on_cuda(tmp_path):
    reports = _spawn_ddp(
        tmp_path, {"ddp_sync_bn": ["--distributed", "--sync_bn", "--device", "cuda"]}, "spawn"
    )
    expected = {"ddp_sync_bn": ["DistributedDataParallel", ["SyncBatchNorm"]]}
    assert reports == [expected, expected]


# The runtime functions themselves (the same code patch-trainer injects).


def _wrapped_model(tmp_path):
    model = _load_project(tmp_path, "in", "tinydet").create_model({"hm": 2})
    return model, _load_project(tmp_path, "in", "tiny_trainer").ModelWithLoss


def test_freeze_and_keep_through_wrappers(tmp_path):
    model, ModelWithLoss = _wrapped_model(tmp_path)
    wrapped = torch.nn.DataParallel(ModelWithLoss(model))
    assert runtime.unwrap_model(wrapped) is model
    assert runtime.freeze_backbone_bn(wrapped) == 2
    for name in BACKBONE_BN:
        bn = model.get_submodule(name)
        assert bn.training is False and bn.track_running_stats is True
        assert bn.weight.requires_grad is False and bn.bias.requires_grad is False
    assert model.proj[1].weight.requires_grad is True
    wrapped.train()
    assert model.get_submodule("backbone.level1.1").training is True
    assert runtime.keep_backbone_bn_eval(wrapped) == 2
    assert [model.get_submodule(n).training for n in sorted(BACKBONE_BN)] == [False, False]
    assert model.proj[1].training is True


def test_freeze_warns_when_nothing_matches(tmp_path):
    model, _ = _wrapped_model(tmp_path)
    with pytest.warns(
        UserWarning, match=r"no BatchNorm found under the backbone attributes \('encoder',\)"
    ):
        assert runtime.freeze_backbone_bn(model, backbone_attrs=("encoder",)) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert runtime.freeze_backbone_bn(model) == 2
    with pytest.raises(TypeError, match="expected a torch.nn.Module, got object"):
        runtime.freeze_backbone_bn(object())


def test_affine_false_and_sync_batchnorm_are_frozen():
    backbone = torch.nn.Sequential(torch.nn.BatchNorm2d(4, affine=False), torch.nn.SyncBatchNorm(4))
    holder = torch.nn.Module()
    holder.backbone = backbone
    holder.database = torch.nn.BatchNorm2d(4)  # 'base' style near-miss names never match
    assert runtime.freeze_backbone_bn(holder, backbone_attrs=("backbone", "data")) == 2
    assert holder.database.training is True and holder.database.weight.requires_grad is True


def test_backbone_rule_equals_config_rule():
    """Hypothesis: the runtime's match is Backbone.contains on named_modules() paths."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    names = st.sampled_from(
        ["backbone", "base_layer", "base", "base3d", "database", "layer1", "0", "bn1", "hm"]
    )
    paths = st.lists(st.lists(names, min_size=1, max_size=4).map(".".join), max_size=6, unique=True)
    attrs = st.lists(
        st.sampled_from(["backbone", "base_layer", "base", "layer1"]), min_size=1, max_size=3
    )

    class FakeModel:
        def __init__(self, paths):
            self.modules = [(p, torch.nn.BatchNorm2d(1)) for p in paths]

        def named_modules(self):
            return iter(self.modules)

    @hypothesis.settings(max_examples=40, deadline=None)
    @hypothesis.given(paths, attrs)
    def check(paths, attrs):
        found = [name for name, _ in runtime.backbone_batchnorms(FakeModel(paths), tuple(attrs))]
        assert found == [p for p in paths if is_backbone_path(p, attrs)]

    check()
