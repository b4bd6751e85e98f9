"""qualified --root/--convert/--keep forms, Class.attr overrides, overrides that match nothing,
and scan -v naming each root's backbone attributes with their evidence."""

from __future__ import annotations

import json

from conftest import FIXTURES, run_cli

TRACKER = FIXTURES / "plans" / "tracker"


def _decisions(*args, cwd=TRACKER):
    result = run_cli(["scan", ".", "--format", "json", *args], cwd=cwd)
    return result, (
        {
            (s["path"], s["scope"], s["line"]): s["decision"]
            for s in json.loads(result.stdout)["sites"]
        }
        if result.exit_code == 0
        else None
    )


def test_file_qualified_keep_picks_one_of_two_same_named_classes():
    _, plain = _decisions()
    result, forced = _decisions("--keep", "lib/model/networks/neck.py:BasicBlock")
    assert result.exit_code == 0, result.output
    changed = {k for k in plain if plain[k] != forced[k]}
    assert changed == {("lib/model/networks/neck.py", "BasicBlock.__init__", 9)}
    assert forced[("lib/model/networks/neck.py", "BasicBlock.__init__", 9)] == "keep"


def test_module_qualified_convert_and_attribute_override():
    result, forced = _decisions(
        "--convert", "lib.model.networks.dla.DLA.pre_img_layer", "--keep", "DLA.pre_hm_layer"
    )
    assert result.exit_code == 0, result.output
    assert forced[("lib/model/networks/dla.py", "DLA.__init__", 35)] == "convert"
    assert forced[("lib/model/networks/dla.py", "DLA.__init__", 39)] == "keep"
    # the stem in the same method is not touched by an attribute override
    assert forced[("lib/model/networks/dla.py", "DLA.__init__", 30)] == "keep"


def test_override_matching_nothing_is_a_usage_error():
    result = run_cli(["scan", ".", "--convert", "models/nothing.py:Nope"], cwd=TRACKER)
    assert result.exit_code == 2
    assert "matches no BatchNorm site" in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = run_cli(["scan", ".", "--root", "lib/model/networks/dla.py:NoSuchClass"], cwd=TRACKER)
    assert result.exit_code == 2


def test_qualified_root():
    result = run_cli(["scan", ".", "--root", "lib/model/networks/dla.py:DLASeg", "-v"], cwd=TRACKER)
    assert result.exit_code == 0, result.output
    assert "roots: DLASeg (" in result.output and "PoseResDCN (" not in result.output


def test_verbose_scan_names_each_root_backbone_and_why():
    result = run_cli(["scan", ".", "-v"], cwd=TRACKER)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    base = next(line for line in lines if line.startswith("note: backbone DLASeg.base:"))
    assert "dla34(pretrained=" in base and "dla.py:71" in base
    stem = next(line for line in lines if line.startswith("note: backbone PoseResDCN.bn1:"))
    assert "torchvision ResNet checkpoint" in stem and "resdcn.py:44" in stem
    unsure = next(line for line in lines if "DLA.pre_img_layer" in line and "unsure" in line)
    assert "--keep DLA.pre_img_layer" in unsure and "--convert DLA.pre_img_layer" in unsure


def test_plan_json_carries_the_backbones():
    result = run_cli(["scan", ".", "--format", "json"], cwd=TRACKER)
    data = json.loads(result.stdout)
    assert sorted(data["backbones"]) == ["DLASeg", "PoseResDCN"]
    assert sorted(data["backbones"]["DLASeg"]) == ["base"]
    assert sorted(data["backbones"]["PoseResDCN"]) == ["bn1", "conv1", "layer1", "layer2"]
