"""The pure remapping engine on hand-written state dicts: what is dropped, kept, renamed and reset."""

from __future__ import annotations

import collections

import pytest

torch = pytest.importorskip("torch")

from bn2gn.checkpoint.remap import RemapOptions, is_optimizer_state, remap_content, remap_state_dict  # noqa: E402
from bn2gn.core.errors import Bn2gnError  # noqa: E402
from bn2gn.decide.backbone import Backbone  # noqa: E402
from bn2gn.model.checkpoint_load import find_state_dicts, is_state_dict  # noqa: E402
from bn2gn.model.checkpoint_save import first_difference, same_tensor  # noqa: E402


def bn(prefix, channels=4):
    return {
        f"{prefix}.weight": torch.rand(channels),
        f"{prefix}.bias": torch.rand(channels),
        f"{prefix}.running_mean": torch.rand(channels),
        f"{prefix}.running_var": torch.rand(channels),
        f"{prefix}.num_batches_tracked": torch.tensor(12),
    }


def state(*parts):
    out = collections.OrderedDict()
    for part in parts:
        out.update(part)
    return out


def test_converted_layers_lose_running_stats_and_backbone_keeps_everything():
    sd = state(
        {"backbone.conv.weight": torch.rand(4, 3, 3, 3)},
        bn("backbone.bn"),
        bn("base_layer.1"),
        {"hm.0.weight": torch.rand(4, 4, 3, 3)},
        bn("hm.1"),
        bn("dla_up.ida_0.proj_1.actf.0"),
    )
    new, report = remap_state_dict(sd)
    assert list(new) == [
        "backbone.conv.weight",
        "backbone.bn.weight",
        "backbone.bn.bias",
        "backbone.bn.running_mean",
        "backbone.bn.running_var",
        "backbone.bn.num_batches_tracked",
        "base_layer.1.weight",
        "base_layer.1.bias",
        "base_layer.1.running_mean",
        "base_layer.1.running_var",
        "base_layer.1.num_batches_tracked",
        "hm.0.weight",
        "hm.1.weight",
        "hm.1.bias",
        "dla_up.ida_0.proj_1.actf.0.weight",
        "dla_up.ida_0.proj_1.actf.0.bias",
    ]
    assert all(new[k] is sd[k] for k in new), (
        "kept tensors must be the very same objects (bit-identical)"
    )
    assert report.dropped == {
        "hm.1": ["hm.1.running_mean", "hm.1.running_var", "hm.1.num_batches_tracked"],
        "dla_up.ida_0.proj_1.actf.0": [
            "dla_up.ida_0.proj_1.actf.0.running_mean",
            "dla_up.ida_0.proj_1.actf.0.running_var",
            "dla_up.ida_0.proj_1.actf.0.num_batches_tracked",
        ],
    }
    assert report.backbone_batchnorm == ["backbone.bn", "base_layer.1"]
    assert report.dropped_count == 6 and report.total == 22 and len(report.kept) == 16
    assert report.renamed == [] and report.reset == []


def test_backbone_attribute_matches_whole_components_only():
    sd = state(bn("base.0"), bn("base3d.0"), bn("database.bn"), bn("head.base.bn"))
    _, report = remap_state_dict(sd, RemapOptions(backbone=Backbone.named(("base",))))
    assert report.backbone_batchnorm == ["base.0", "head.base.bn"]
    assert list(report.dropped) == ["base3d.0", "database.bn"]


def test_extra_backbone_attrs_keep_poseresnet_inline_stages():
    sd = state(bn("bn1"), bn("layer1.0.bn1"), bn("layer4.1.bn2"), bn("deconv_layers.1"))
    _, report = remap_state_dict(
        sd,
        RemapOptions(
            backbone=Backbone.named(("backbone", "base_layer", "bn1", "layer1", "layer4"))
        ),
    )
    assert report.backbone_batchnorm == ["bn1", "layer1.0.bn1", "layer4.1.bn2"]
    assert list(report.dropped) == ["deconv_layers.1"]


def test_dataparallel_prefix_is_stripped_from_every_key_and_the_metadata():
    sd = state({"module.backbone.conv.weight": torch.rand(2, 2, 1, 1)}, bn("module.hm.1", 2))
    sd._metadata = collections.OrderedDict(
        [
            ("", {"version": 1}),
            ("module", {"version": 1}),
            ("module.backbone", {"version": 1}),
            ("module.hm.1", {"version": 2}),
        ]
    )
    new, report = remap_state_dict(sd)
    assert list(new) == ["backbone.conv.weight", "hm.1.weight", "hm.1.bias"]
    assert report.stripped_prefix == "module."
    assert report.renamed == [
        ("module.backbone.conv.weight", "backbone.conv.weight"),
        ("module.hm.1.weight", "hm.1.weight"),
        ("module.hm.1.bias", "hm.1.bias"),
    ]
    assert dict(new._metadata) == {
        "": {"version": 1},
        "backbone": {"version": 1},
        "hm.1": {"version": 2},
    }


def test_nested_dataparallel_prefix_and_keep_prefix():
    sd = state({"module.module.hm.0.weight": torch.rand(1)})
    new, _ = remap_state_dict(sd)
    assert list(new) == ["hm.0.weight"]
    kept, report = remap_state_dict(sd, RemapOptions(keep_prefix=True))
    assert list(kept) == ["module.module.hm.0.weight"] and report.renamed == []


def test_module_prefix_on_only_some_keys_is_left_alone_with_a_warning():
    sd = state({"module_list.0.weight": torch.rand(1), "module.x.weight": torch.rand(1)})
    new, report = remap_content(sd, ())
    assert list(new) == ["module_list.0.weight", "module.x.weight"]
    assert report.warnings == [
        "1 of 2 keys in the state dict start with 'module.' but not all; left as they are "
        "(a DataParallel prefix would be on every key)"
    ]


def test_reset_affine_writes_ones_and_zeros_of_the_same_dtype():
    sd = state(bn("hm.1", 3), bn("backbone.bn", 3))
    sd["hm.1.weight"] = torch.tensor([0.5, 2.0, -1.0], dtype=torch.float64)
    new, report = remap_state_dict(sd, RemapOptions(reset_affine=True))
    assert (
        new["hm.1.weight"].tolist() == [1.0, 1.0, 1.0] and new["hm.1.weight"].dtype == torch.float64
    )
    assert new["hm.1.bias"].tolist() == [0.0, 0.0, 0.0]
    assert sd["hm.1.weight"].tolist() == [0.5, 2.0, -1.0], "the input state dict must not change"
    assert report.reset == ["hm.1.weight", "hm.1.bias"]
    assert new["backbone.bn.weight"] is sd["backbone.bn.weight"]


def test_content_keeps_other_entries_and_drops_the_optimizer_with_a_warning():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    content = {
        "epoch": 7,
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "lr": 0.1,
    }
    new, report = remap_content(content, ("state_dict",))
    assert list(new) == ["epoch", "state_dict", "lr"]
    assert new["epoch"] == 7 and new["lr"] == 0.1
    assert list(new["state_dict"]) == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert report.kept_entries == ["epoch", "lr"] and report.dropped_entries == ["optimizer"]
    assert "(keep it with keep_optimizer)" in report.warnings[0]  # the engine names the option
    kept, report = remap_content(content, ("state_dict",), RemapOptions(keep_optimizer=True))
    assert kept["optimizer"] is content["optimizer"] and report.warnings == []


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("optimizer", {"state": {}, "param_groups": []}, True),
        ("opt", [{"state": {}, "param_groups": []}], True),
        ("optimizer", "adam", True),
        ("optimizer", None, False),
        ("lr_scheduler", {"last_epoch": 3}, False),
        ("epoch", 3, False),
    ],
)
def test_is_optimizer_state(name, value, expected):
    assert is_optimizer_state(name, value) is expected


def test_find_state_dicts_auto_detects_every_known_key_in_order(tmp_path):
    sd = {"a.weight": torch.rand(1)}
    assert find_state_dicts(sd, tmp_path) == ()
    assert find_state_dicts({"epoch": 1, "state_dict_ema": sd, "model": sd}, tmp_path) == (
        "model",
        "state_dict_ema",
    )
    assert find_state_dicts({"net": sd, "other": sd}, tmp_path, ("other",)) == ("other",)
    with pytest.raises(Bn2gnError, match=r"no state dict found .* \(has: epoch, weights\)"):
        find_state_dicts({"epoch": 1, "weights": [1, 2]}, tmp_path)
    with pytest.raises(Bn2gnError, match="key=nope: no such top-level entry") as refused:
        find_state_dicts({"model": sd}, tmp_path, ("nope",))
    assert refused.value.text.render({}).endswith(
        ": --key nope: no such top-level entry (has: model)"
    )

    with pytest.raises(Bn2gnError, match="holds a list, not a dict"):
        find_state_dicts([sd], tmp_path)


def test_is_state_dict_accepts_extra_state_but_not_other_objects():
    assert is_state_dict({"a.weight": torch.rand(1), "a._extra_state": {"x": 1}})
    assert not is_state_dict({"a.weight": torch.rand(1), "epoch": 3})
    assert not is_state_dict({})
    assert not is_state_dict({1: torch.rand(1)})


def test_same_tensor_compares_bits():
    nan = torch.tensor([float("nan"), 1.0])
    assert same_tensor(nan, nan.clone())
    assert not same_tensor(torch.tensor([0.0]), torch.tensor([-0.0]))
    assert not same_tensor(torch.zeros(2), torch.zeros(2, dtype=torch.float64))
    assert same_tensor(torch.tensor([True, False]), torch.tensor([True, False]))
    big = torch.arange(100000, dtype=torch.float32)
    changed = big.clone()
    changed[50000] = -1.0
    assert not same_tensor(big, changed)
    assert same_tensor(big, changed, sample_bytes=1024), "sampling compares only both ends"
    changed[-1] = -1.0
    assert not same_tensor(big, changed, sample_bytes=1024)


def test_first_difference_names_the_entry():
    a = {"epoch": 3, "state_dict": {"x.weight": torch.ones(2), "y.weight": torch.ones(2)}}
    b = {"epoch": 3, "state_dict": {"x.weight": torch.ones(2), "y.weight": torch.zeros(2)}}
    assert first_difference(a, a) is None
    assert first_difference(a, b) == "state_dict.y.weight"
    assert first_difference(a, {"epoch": 4, "state_dict": a["state_dict"]}) == "epoch"
    assert first_difference(a, {"state_dict": a["state_dict"]}) == "top level"
