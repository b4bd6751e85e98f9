"""--stub and --model-opts on every command that builds the user's model.

Expected values are read off the fixtures: centernet_mini's lib/opts.py sets heads hm/wh/reg and
its PoseResNet puts a BatchNorm at fc[1] of each head only when head_conv > 0.
"""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
from conftest import copy_case, run_cli

torch = pytest.importorskip("torch")

STUBBED_MODEL = """
    import torch.nn as nn
    from dcn_ext_missing_for_bn2gn import DCN


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
            self.dcn = DCN(4, 4, kernel_size=3)
            self.head = nn.Sequential(nn.Conv2d(4, 4, 1), nn.GroupNorm(1, 4))

        def forward(self, x):
            return self.head(self.dcn(self.backbone(x)))


    def build():
        return Net()
"""


@pytest.fixture
def stubbed_repo(tmp_path):
    (tmp_path / "stubbed_net_for_bn2gn.py").write_text(textwrap.dedent(STUBBED_MODEL))
    yield tmp_path
    for name in [
        n
        for n in sys.modules
        if n.startswith(("stubbed_net_for_bn2gn", "dcn_ext_missing_for_bn2gn"))
    ]:
        del sys.modules[name]


def _original_checkpoint(path):
    """The model before conversion: BatchNorm in the head too."""
    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    head = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 1), torch.nn.BatchNorm2d(4))
    state = {
        **{f"backbone.{k}": v for k, v in backbone.state_dict().items()},
        **{f"head.{k}": v for k, v in head.state_dict().items()},
    }
    torch.save({"state_dict": state}, path)


def test_remap_ckpt_stub(stubbed_repo):
    _original_checkpoint(stubbed_repo / "old.pth")
    args = [
        "remap-ckpt",
        stubbed_repo / "old.pth",
        "--model",
        "stubbed_net_for_bn2gn:build",
        "--path",
        stubbed_repo,
        "--strict",
        "--dry-run",
    ]
    missing = run_cli([*args, "--stub", "none"])  # none: no automatic stand-ins
    assert missing.exit_code == 2
    assert "stand it in with --stub dcn_ext_missing_for_bn2gn" in missing.stderr
    result = run_cli([*args, "--stub", "dcn_ext_missing_for_bn2gn", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["verification"]["clean"] is True
    automatic = run_cli(
        [*args, "--format", "json"]
    )  # the import fails, so every module is stood in
    assert automatic.exit_code == 0, automatic.output
    assert json.loads(automatic.stdout)["verification"]["clean"] is True


def test_verify_stub(stubbed_repo):
    args = [
        "verify",
        "--model",
        "stubbed_net_for_bn2gn:build",
        "--path",
        stubbed_repo,
        "--input-shape",
        "1,3,8,8",
        "--device",
        "cpu",
        "--steps",
        "2",
        "-q",
    ]
    missing = run_cli([*args, "--stub", "none"])
    assert missing.exit_code == 2 and "--stub dcn_ext_missing_for_bn2gn" in missing.stderr
    result = run_cli([*args, "--stub", "dcn_ext_missing_for_bn2gn"])
    assert result.exit_code == 0, result.output
    assert run_cli(args).exit_code == 0


def test_stub_and_model_opts_need_model(tmp_path):
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "a.pth")
    for extra in (["--stub", "x"], ["--model-opts", "lib.opts:opts"]):
        result = run_cli(["remap-ckpt", tmp_path / "a.pth", *extra])
        assert result.exit_code == 2 and "need --model MODULE:FACTORY" in result.stderr


def _forget_lib():
    """Tests run in one process: an earlier test may have imported another copy's ``lib`` package."""
    for name in [n for n in sys.modules if n == "lib" or n.startswith("lib.")]:
        del sys.modules[name]


def _trace_centernet(tmp_path, *opts_args):
    repo = copy_case("centernet_mini", tmp_path)
    _forget_lib()
    try:
        return run_cli(
            [
                "scan",
                "lib",
                "--trace",
                "lib.models.model:create_model",
                "--path",
                ".",
                "--model-opts",
                "lib.opts:opts",
                *[a for text in opts_args for a in ("--model-opts-arg", text)],
            ],
            cwd=repo,
        )
    finally:
        _forget_lib()


def test_scan_trace_builds_centernet_from_its_own_options(tmp_path):
    result = _trace_centernet(tmp_path, "--arch res_18")
    assert result.exit_code == 0, result.output
    assert "heads {" not in result.stdout  # opts().init() prints; bn2gn's report does not carry it
    assert (
        "trace: built lib.models.model:create_model(<lib.opts:opts('--arch res_18')>) on CPU"
        in result.stdout
    )
    fc = [
        line
        for line in result.stdout.splitlines()
        if line.startswith("lib/models/resnet_fpn_dcn.py:71:")
    ]
    assert fc and fc[0].endswith(
        "traced: 3 instance(s), none under a backbone attribute: (hm.1, reg.1, wh.1)"
    )


def test_scan_trace_options_overrides_reach_the_factory(tmp_path):
    result = _trace_centernet(tmp_path, "--arch res_18", "--head_conv 0")
    assert result.exit_code == 0, result.output
    fc = [
        line
        for line in result.stdout.splitlines()
        if line.startswith("lib/models/resnet_fpn_dcn.py:71:")
    ]
    assert fc and "traced: 3 instance(s)" not in fc[0] and "(not executed in trace)" in fc[0]


def test_scan_trace_options_error_names_the_flag(tmp_path):
    result = _trace_centernet(tmp_path, "--arch res_18 --no_such_flag")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "bn2gn: error: --model-opts lib.opts:opts: the options parser rejected "
        "--model-opts-arg (unrecognized arguments: --no_such_flag)"
    )
