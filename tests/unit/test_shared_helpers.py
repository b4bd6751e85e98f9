"""The helpers trace, demo/verify and remap-ckpt share: a checkpoint's model state dict with
DataParallel's prefix stripped, and the backbone BatchNorm whose statistics were never trained."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from bn2gn.model.bn_statistics import untrained_backbone_batchnorms  # noqa: E402
from bn2gn.model.checkpoint_load import data_parallel_prefix, model_state_dict  # noqa: E402


def test_data_parallel_prefix_only_when_every_key_has_it():
    assert data_parallel_prefix(["module.a.weight", "module.b.bias"]) == "module."
    assert data_parallel_prefix(["module.module.a", "module.module.b"]) == "module.module."
    assert data_parallel_prefix(["module.a", "b"]) == ""
    assert data_parallel_prefix(["modules.a"]) == ""
    assert data_parallel_prefix([]) == ""


def test_model_state_dict_finds_the_state_dict_and_strips_nested_data_parallel(tmp_path):
    weight, mean = torch.ones(2), torch.zeros(2)
    path = tmp_path / "ckpt.pth"
    torch.save(
        {
            "epoch": 3,
            "state_dict": {"module.module.a.weight": weight, "module.module.b.running_mean": mean},
        },
        path,
    )
    state = model_state_dict(path)
    assert sorted(state) == ["a.weight", "b.running_mean"]
    assert torch.equal(state["a.weight"], weight)


def test_model_state_dict_leaves_a_partial_prefix(tmp_path):
    path = tmp_path / "raw.pth"
    torch.save({"module.a": torch.ones(1), "b": torch.ones(1)}, path)
    assert sorted(model_state_dict(path)) == ["b", "module.a"]


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.BatchNorm2d(2),  # 0: untrained
            nn.BatchNorm2d(2),  # 1: trained below
            nn.BatchNorm2d(2, track_running_stats=False),  # 2: no statistics at all
            nn.LazyBatchNorm2d(),  # 3: no shape yet
        )
        self.backbone[1].running_mean.fill_(0.5)
        self.backbone[1].num_batches_tracked.fill_(7)
        self.head = nn.BatchNorm2d(2)  # untrained, but not backbone


class _Wrapper(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.module = inner


def test_untrained_backbone_batchnorms_of_the_model_and_of_a_wrapper():
    net = _Net()
    assert untrained_backbone_batchnorms(net, ("backbone",)) == ["backbone.0"]
    assert untrained_backbone_batchnorms(_Wrapper(net), ("backbone",)) == ["backbone.0"]
    assert untrained_backbone_batchnorms(net, ("backbone", "head")) == ["backbone.0", "head"]


def test_untrained_backbone_batchnorms_with_a_state_dict_taking_precedence():
    net = _Net()
    trained = {"backbone.0.running_var": torch.full((2,), 2.0)}
    assert untrained_backbone_batchnorms(net, ("backbone",), trained) == []
    untrained = {
        "backbone.1.running_mean": torch.zeros(2),
        "backbone.1.num_batches_tracked": torch.tensor(0),
    }
    assert untrained_backbone_batchnorms(net, ("backbone",), untrained) == [
        "backbone.0",
        "backbone.1",
    ]
