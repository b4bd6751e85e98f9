"""freeze_backbone_bn on a backbone built with a frozen BatchNorm (statistics and affine held as
buffers, as torchvision's FrozenBatchNorm2d): nothing to freeze, and no warning that the backbone
attribute names are wrong; a backbone with no BatchNorm of any kind still gets that warning."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn


class FrozenBN(nn.Module):
    def __init__(self, n):
        super().__init__()
        for name, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0)):
            self.register_buffer(name, torch.full((n,), value))
        self.register_buffer("running_var", torch.ones(n))

    def forward(self, x):
        return x


class Net(nn.Module):
    def __init__(self, norm):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3), norm(8))
        self.head = nn.Sequential(nn.Conv2d(8, 8, 3), nn.GroupNorm(4, 8))


def _freeze(model):
    from bn2gn.runtime import freeze_backbone_bn

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        count = freeze_backbone_bn(model)
    return count, [str(w.message) for w in caught]


def test_frozen_batchnorm_backbone_is_frozen_already():
    count, warned = _freeze(Net(FrozenBN))
    assert (count, warned) == (0, [])


def test_backbone_without_any_batchnorm_still_warns():
    count, warned = _freeze(Net(lambda n: nn.GroupNorm(4, n)))
    assert count == 0
    assert warned == [
        "freeze_backbone_bn: no BatchNorm found under the backbone attributes "
        "('backbone', 'base_layer'); check the names of the attributes that hold the backbone"
    ]


def test_injected_copy_agrees(tmp_path):
    """The definitions patch-trainer injects are generated from bn2gn.runtime: same behaviour."""
    from bn2gn.source.rules.bn2gn202_freeze_helper import runtime_source

    namespace = {}
    exec(runtime_source(("freeze_backbone_bn",), ("backbone", "base_layer")), namespace)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert namespace["freeze_backbone_bn"](Net(FrozenBN)) == 0
    assert caught == []
