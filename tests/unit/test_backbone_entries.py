"""the one backbone rule at run time (Root.attr entries), and remap-ckpt --model deciding the
converted layers from the model itself."""

from __future__ import annotations

import collections

import pytest

from bn2gn.decide.backbone import Backbone

torch = pytest.importorskip("torch")
nn = torch.nn


def is_backbone_path(path, entries):
    """A checkpoint-style path (relative to the root model) against backbone entries."""
    return Backbone.from_spellings(entries).contains(path)


class Base(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
        self.extra = nn.BatchNorm2d(8)


class Seg(nn.Module):
    def __init__(self, head_norm):
        super().__init__()
        self.base = Base()
        self.neck = nn.Sequential(nn.Conv2d(8, 8, 3), head_norm)


class WithLoss(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.net = model  # not a name unwrap_model knows: the class entry still finds the backbone


def test_root_attr_entries_match_instances_of_the_root_class_wherever_they_sit():
    from bn2gn.runtime import backbone_batchnorms, backbone_modules, freeze_backbone_bn

    model = WithLoss(Seg(nn.BatchNorm2d(8)))
    found = [p for p, _ in backbone_batchnorms(model, ("backbone", "Seg.base"))]
    assert found == ["net.base.stem.1", "net.base.extra"]
    assert "net.neck.1" not in {p for p, _ in backbone_modules(model, ("Seg.base",))}
    assert freeze_backbone_bn(model, ("Seg.base",)) == 2
    assert model.net.neck[1].weight.requires_grad and not model.net.base.extra.weight.requires_grad
    # a bare name still matches any whole component, as before
    assert [p for p, _ in backbone_batchnorms(model, ("stem",))] == ["net.base.stem.1"]


def test_is_backbone_path_without_the_model_takes_root_attr_entries_at_the_top():
    attrs = ("backbone", "base_layer", "DLASeg.base")
    assert is_backbone_path("base.level0.1", attrs)
    assert not is_backbone_path("dla_up.base.1", attrs)
    assert is_backbone_path("dla_up.backbone.1", attrs)
    assert not is_backbone_path("database.1", attrs)


def test_remap_with_model_converts_exactly_the_groupnorm_layers_of_the_model():
    from bn2gn.checkpoint.remap import RemapOptions, remap_state_dict, selection_from_model

    old = Seg(nn.BatchNorm2d(8)).state_dict()
    converted = Seg(nn.GroupNorm(4, 8))
    # the names rule alone would call base.* converted (no backbone/base_layer component in 'base')
    new, report = remap_state_dict(
        collections.OrderedDict(old), RemapOptions(plan=selection_from_model(converted))
    )
    assert set(report.dropped) == {"neck.1"}
    assert "base.stem.1.running_mean" in new and "neck.1.running_mean" not in new
    assert new["base.extra.running_var"] is old["base.extra.running_var"]
    converted.load_state_dict(new, strict=True)
