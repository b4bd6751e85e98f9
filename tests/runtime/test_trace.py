"""`bn2gn scan --trace`: the real model decides the sites static analysis cannot.

Every expected decision and module path below is written by hand from reading the fixtures in
fixtures/trace/ (see its README), not produced by bn2gn.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import FIXTURES, run_cli

torch = pytest.importorskip("torch")

TRACE = FIXTURES / "trace"

# (package, file, line) -> (static decision, traced decision, module paths of its instances)
EXPECTED = {
    ("mixed_block", "blocks.py", 13): (
        "unsure",
        "keep",
        ["backbone.stem.norm", "backbone.stage.norm"],
    ),
    ("mixed_block", "blocks.py", 14): (
        "unsure",
        "keep",
        ["backbone.stem.skip.1", "backbone.stage.skip.1"],
    ),
    ("mixed_block", "blocks.py", 16): ("unsure", "convert", ["head.0.norm"]),
    ("globals_backbone", "model.py", 8): ("keep", "keep", ["backbone.stem.1"]),
    ("globals_backbone", "model.py", 18): ("keep", "keep", []),  # TinyB: never built
    ("globals_backbone", "model.py", 28): ("keep", "convert", ["head.bn"]),
    ("layer_specs", "model.py", 6): ("unsure", "keep", ["backbone.1", "backbone.4"]),
    ("layer_specs", "model.py", 11): ("unsure", "convert", ["head.1"]),
    ("runtime_shared", "model.py", 6): ("unsure", "unsure", ["backbone.stem.1", "neck.1"]),
    ("runtime_shared", "model.py", 13): ("keep", "keep", ["backbone.bn"]),
    ("runtime_shared", "model.py", 24): ("convert", "convert", ["head.1"]),
    ("needs_stub", "model.py", 9): ("convert", "convert", ["up.actf.0"]),
    ("needs_stub", "model.py", 19): ("keep", "keep", ["backbone.1"]),
}
PACKAGES = sorted({pkg for pkg, _, _ in EXPECTED})
STUBS = {"needs_stub": ["--stub", "dcn_v2"]}


@pytest.fixture
def tree(tmp_path):
    shutil.copytree(TRACE, tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def scan_json(tree: Path, package: str, *extra) -> dict:
    args = ["scan", f"src/{package}", "--format", "json", *extra]
    result = run_cli(args, cwd=tree)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def trace_json(tree: Path, package: str, *extra) -> dict:
    return scan_json(
        tree,
        package,
        "--trace",
        f"{package}.model:build",
        "--path",
        "src",
        *STUBS.get(package, []),
        *extra,
    )


def decisions(plan: dict, package: str) -> dict:
    return {(package, Path(s["path"]).name, s["line"]): s for s in plan["sites"]}


@pytest.mark.parametrize("package", PACKAGES)
def test_trace_resolves_what_static_analysis_cannot(tree, package):
    static = decisions(scan_json(tree, package), package)
    traced = decisions(trace_json(tree, package), package)
    expected = {k: v for k, v in EXPECTED.items() if k[0] == package}
    assert set(static) == set(traced) == set(expected)
    for key, (static_decision, traced_decision, paths) in expected.items():
        assert static[key]["decision"] == static_decision, key
        assert traced[key]["decision"] == traced_decision, (key, traced[key]["reason"])
        assert sorted(traced[key].get("module_paths", [])) == sorted(paths), key


def test_site_shared_at_run_time_is_unsure_with_both_path_lists(tree):
    site = decisions(trace_json(tree, "runtime_shared"), "runtime_shared")[
        ("runtime_shared", "model.py", 6)
    ]
    assert site["decision"] == "unsure"
    assert "backbone (backbone.stem.1)" in site["reason"]
    assert "non-backbone (neck.1)" in site["reason"]


def test_site_never_executed_keeps_static_decision_and_says_so(tree):
    static = decisions(scan_json(tree, "globals_backbone"), "globals_backbone")[
        ("globals_backbone", "model.py", 18)
    ]
    traced = decisions(trace_json(tree, "globals_backbone"), "globals_backbone")[
        ("globals_backbone", "model.py", 18)
    ]
    assert traced["decision"] == static["decision"] == "keep"
    assert traced["reason"] == static["reason"] + " (not executed in trace)"
    assert "module_paths" not in traced


def test_text_report_prints_differences_with_both_reasons(tree):
    result = run_cli(
        ["scan", "src/layer_specs", "--trace", "layer_specs.model:build", "--path", "src"], cwd=tree
    )
    assert result.exit_code == 0, result.output
    assert "trace: 2 decision(s) differ from the static plan:" in result.stdout
    line = next(
        text
        for text in result.stdout.splitlines()
        if "src/layer_specs/model.py:11:13" in text and "->" in text
    )
    assert (
        "static unsure (shared: deconv_bn is reached from SpecNet.backbone and from SpecNet.head"
        in line
    )
    assert "--keep or --convert deconv_bn settles it" in line
    assert (
        "-> traced convert (traced: 1 instance(s), none under a backbone attribute: (head.1))"
        in line
    )


def test_calls_on_one_line_are_told_apart_and_untracked_calls_reported(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "oneline.py").write_text(
        textwrap.dedent("""\
        import functools
        import torch.nn as nn


        class OneLine(nn.Module):
            def __init__(self):
                super().__init__()
                self.backbone, self.head = nn.BatchNorm2d(4), nn.BatchNorm2d(4)
                norm = functools.partial(nn.BatchNorm2d, eps=1e-3)
                self.neck = norm(4)


        def build():
            return OneLine()
        """)
    )
    plan = scan_json(tmp_path, "oneline.py", "--trace", "oneline:build", "--path", "src")
    by_col = {(s["line"], s["col"]): s for s in plan["sites"]}
    assert by_col[(8, 36)]["decision"] == "keep" and by_col[(8, 36)]["module_paths"] == ["backbone"]
    assert by_col[(8, 55)]["decision"] == "convert" and by_col[(8, 55)]["module_paths"] == ["head"]
    assert by_col[(9, 16)]["decision"] == "unsure"  # the partial: never rewritten blindly
    assert "see 'untracked'" in by_col[(9, 16)]["reason"]
    assert plan["trace"]["untracked"] == [
        {"location": "src/oneline.py:10:21", "op": "BatchNorm2d", "module_paths": ["neck"]}
    ]


def test_stubbed_build_of_a_model_importing_a_missing_extension(tree):
    result = run_cli(
        ["scan", "src/needs_stub", "--trace", "needs_stub.model:build", "--path", "src"]
        + ["--stub", "none"],
        cwd=tree,
    )
    assert result.exit_code == 2
    assert "No module named 'dcn_v2'" in result.output and "--stub dcn_v2" in result.output
    assert "Traceback" not in result.output
    result = run_cli(
        [
            "scan",
            "src/needs_stub",
            "--trace",
            "needs_stub.model:build",
            "--path",
            "src",
            "--stub",
            "dcn_v2",
            "--stub",
            "unused_ext",
        ],
        cwd=tree,
    )
    assert result.exit_code == 0, result.output
    assert (
        "trace: stub dcn_v2 (--stub): used at build time, imported by src/needs_stub/model.py: "
        "DCN ran as Conv2d(16, 16, kernel_size=3, padding=1) x1"
    ) in result.stdout
    assert "trace: stub unused_ext (--stub): never imported by the build" in result.stdout
    assert "dcn_v2" not in sys.modules and "needs_stub.model" not in sys.modules


def test_untrained_backbone_statistics_warned_after_factory_and_after_checkpoint(tree):
    result = run_cli(
        ["scan", "src/runtime_shared", "--trace", "runtime_shared.model:build", "--path", "src"],
        cwd=tree,
    )
    assert (
        "2 backbone BatchNorm layer(s) still have untrained statistics after the factory ran"
        in result.stderr
    )
    assert "(backbone.stem.1, backbone.bn)" in result.stderr
    sys.path.insert(0, str(tree / "src"))
    try:
        from runtime_shared.model import build

        state = build().state_dict()
    finally:
        sys.path.remove(str(tree / "src"))
        for name in [n for n in sys.modules if n.startswith("runtime_shared")]:
            del sys.modules[name]
    state["backbone.stem.1.running_mean"] += 0.5
    state["backbone.stem.1.num_batches_tracked"] += 10
    del (
        state["backbone.bn.running_mean"],
        state["backbone.bn.running_var"],
        state["backbone.bn.num_batches_tracked"],
    )
    torch.save(
        {"epoch": 3, "state_dict": {"module." + k: v for k, v in state.items()}}, tree / "ckpt.pth"
    )
    result = run_cli(
        [
            "scan",
            "src/runtime_shared",
            "--trace",
            "runtime_shared.model:build",
            "--path",
            "src",
            "--checkpoint",
            "ckpt.pth",
        ],
        cwd=tree,
    )
    assert result.exit_code == 0, result.output
    assert (
        "1 backbone BatchNorm layer(s) still have untrained statistics after loading ckpt.pth "
        "(1 of them have no entry in the checkpoint): (backbone.bn)"
    ) in result.stderr
    assert (
        "note: 2 backbone BatchNorm layer(s) were untrained after the factory; 1 get trained statistics"
        in result.stdout
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--stub", "dcn_v2"], "need --trace MODULE:FACTORY"),
        (["--trace", "layer_specs.model"], "--trace 'layer_specs.model': expected MODULE:FACTORY"),
        (
            ["--trace", "layer_specs.model:nope", "--path", "src"],
            "--trace: layer_specs.model has no attribute 'nope'",
        ),
        (
            ["--trace", "layer_specs.model:build", "--path", "src", "--model-arg", "depth=3"],
            "TypeError",
        ),
    ],
)
def test_bad_trace_input_is_one_line_and_exit_2(tree, args, message):
    result = run_cli(["scan", "src/layer_specs", *args], cwd=tree)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_traced_plan_applied_with_rewrite_leaves_no_batchnorm_outside_the_backbone(tree):
    packages = ["mixed_block", "globals_backbone", "layer_specs"]
    for package in packages:
        result = run_cli(
            [
                "scan",
                f"src/{package}",
                "--trace",
                f"{package}.model:build",
                "--path",
                "src",
                "-o",
                f"{package}.plan.json",
            ],
            cwd=tree,
        )
        assert result.exit_code == 0, result.output
        result = run_cli(["rewrite", "--plan", f"{package}.plan.json", f"src/{package}"], cwd=tree)
        assert result.exit_code == 0, result.output
        assert "0 skipped (source changed since the plan was made)" in result.output
    probe = textwrap.dedent("""
        import importlib, json, sys, torch
        out = {}
        for package in sys.argv[1:]:
            model = importlib.import_module(package + ".model").build()
            model.train()
            model(torch.randn(1, 3, 8, 8)).mean().backward()
            out[package] = {
                "bn": sorted(n for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)),
                "gn": sorted(n for n, m in model.named_modules() if isinstance(m, torch.nn.GroupNorm))}
        print(json.dumps(out))
    """)
    done = subprocess.run(
        [sys.executable, "-c", probe, *packages],
        cwd=tree / "src",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found == {
        "mixed_block": {
            "bn": [
                "backbone.stage.norm",
                "backbone.stage.skip.1",
                "backbone.stem.norm",
                "backbone.stem.skip.1",
            ],
            "gn": ["head.0.norm"],
        },
        "globals_backbone": {"bn": ["backbone.stem.1"], "gn": ["head.bn"]},
        "layer_specs": {"bn": ["backbone.1", "backbone.4"], "gn": ["head.1"]},
    }


def test_stubs_cover_submodules_and_missing_parents_and_leave_nothing_behind():
    import json as real_package

    from bn2gn.model.spec import stub_modules

    with stub_modules(("dcn_v2", "DCNv2.dcn_v2", "json.fake_ext")) as stubs:
        from json.fake_ext import Op

        from dcn_v2 import DCN
        from dcn_v2.functions import DCNFunction
        from DCNv2.dcn_v2 import DCN as NestedDCN

        layer, identity = DCN(16, 16, kernel_size=(3, 3), deformable_groups=1), Op()
        x = torch.ones(1, 16, 2, 2)
        assert isinstance(layer, torch.nn.Module) and identity(x) is x
        assert layer(x).shape == (1, 16, 2, 2)  # called like a convolution: one, keeping the size
        assert issubclass(NestedDCN, torch.nn.Module) and DCNFunction and Op
        assert stubs.used_under("dcn_v2") == ("DCN", "functions.DCNFunction")
        assert stubs.used_under("DCNv2.dcn_v2") == ("DCN",)
    assert not [
        m for m in sys.modules if m.split(".")[0] in ("dcn_v2", "DCNv2") or m == "json.fake_ext"
    ]
    assert not hasattr(real_package, "fake_ext")
