"""Building a real repository's model with no hand-written code: fixtures/repos/tracknet.

The fixture models the shapes that stopped builds on public CenterNet-family repositories (its
README lists them). Every expected value below is read off the fixture by hand: the dataset has 3
categories and the task ``tracking`` adds a tracking head, so the heads are
``{'hm': 3, 'reg': 2, 'wh': 2, 'tracking': 2}``; ``--head_conv -1`` means 16 for a dla arch; the
neck's two DCN layers map 32 -> 16 and 16 -> 16 channels with a 3x3 kernel.
"""

from __future__ import annotations

import shutil
import socket
import sys

import pytest
from conftest import FIXTURES, run_cli

torch = pytest.importorskip("torch")

TRACKNET = FIXTURES / "repos" / "tracknet"
HEADS = {"hm": 3, "reg": 2, "wh": 2, "tracking": 2}
OWN_MODULES = ("opts", "model", "dataset", "_init_paths", "main", "trackdevkit_missing_sdk", "_ext")


def _forget_repository():
    for name in [n for n in sys.modules if n.split(".")[0] in OWN_MODULES]:
        del sys.modules[name]


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A copy of tracknet, the network unreachable, and sys.argv the way bn2gn's own run has it."""
    target = tmp_path / "tracknet"
    shutil.copytree(TRACKNET, target)

    def unreachable(self, address):
        raise OSError(f"network unreachable in tests ({address})")

    monkeypatch.setattr(socket.socket, "connect", unreachable)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(sys, "argv", ["bn2gn", "verify", "--model", "model.model:create_model"])
    _forget_repository()
    yield target
    _forget_repository()


# -- --model-opts: the repository's parser sees only --model-opts-arg --------------------------------
def test_options_init_that_reads_sys_argv_sees_only_model_opts_arg(repo, monkeypatch):
    from bn2gn.model.spec import build_options, fill_from_options, parse_model_spec, stub_modules

    monkeypatch.syspath_prepend(str(repo / "src" / "lib"))
    spec = parse_model_spec(
        "model.model:create_model",
        options="opts:opts",
        options_args=["tracking --arch dla_tiny"],
    )
    with stub_modules(("trackdevkit_missing_sdk",)):
        opt = build_options(spec)
        from model.model import create_model

        filled = fill_from_options(create_model, {}, opt)
    assert sys.argv == ["bn2gn", "verify", "--model", "model.model:create_model"]
    assert (opt.task, opt.arch, opt.head_conv) == ("tracking", "dla_tiny", 16)
    assert filled == {"arch": "dla_tiny", "head": HEADS, "head_conv": 16, "opt": opt}


def test_options_parser_missing_a_required_argument_does_not_blame_an_option_never_given(repo):
    result = run_cli(
        [
            "verify",
            "--model",
            "model.model:create_model",
            "--path",
            "src/lib",
            "--model-opts",
            "opts:opts",
            "--input-shape",
            "1,3,64,64",
        ],
        cwd=repo,
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "bn2gn: error: --model-opts opts:opts: the options parser stopped with its defaults alone "
        "(the following arguments are required: task); give the arguments it needs with "
        "--model-opts-arg ARGS"
    )


# -- every missing module in one pass ------------------------------------------------------------
TRACE_ARGS = ["scan", "lib", "--trace", "model.model:create_model", "--path", "lib"]
OPTS_ARGS = ["--model-opts", "opts:opts", "--model-opts-arg", "tracking"]


def test_scan_trace_stands_in_every_missing_module_in_one_run(repo):
    result = run_cli([*TRACE_ARGS, *OPTS_ARGS], cwd=repo / "src")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert (
        "trace: --stub auto: the build failed on an import (ModuleNotFoundError: No module named "
        "'trackdevkit_missing_sdk'), so bn2gn stood in every module the repository could not "
        "import (2 found)"
    ) in lines
    assert (
        "trace: stub trackdevkit_missing_sdk (auto): needed at import time, imported by "
        "lib/dataset/datasets/tracks.py; no layer built from it"
    ) in lines
    assert "import DCN failed" not in result.output  # the repository's prints stay off the report
    assert "trackdevkit_missing_sdk" not in sys.modules and "model.DCNv2.dcn_v2" not in sys.modules


def test_stub_none_keeps_the_first_failure_and_stub_auto_needs_no_failure(repo):
    failed = run_cli([*TRACE_ARGS, *OPTS_ARGS, "--stub", "none"], cwd=repo / "src")
    assert failed.exit_code == 2
    assert "No module named 'trackdevkit_missing_sdk'" in failed.stderr
    assert "--stub trackdevkit_missing_sdk" in failed.stderr
    _forget_repository()
    forced = run_cli([*TRACE_ARGS, *OPTS_ARGS, "--stub", "auto"], cwd=repo / "src")
    assert forced.exit_code == 0, forced.output
    assert "trace: --stub auto: --stub auto was given, so bn2gn stood in" in forced.stdout


SWALLOWING_REPO = {
    # an installed package that swallows an import of its own and holds None afterwards
    "venv/lib/python3.11/site-packages/scipy_like/__init__.py": """
        try:
            from . import _cython_helpers
        except ImportError:
            _cython_helpers = None
    """,
    "repo/netlib/__init__.py": "",
    "repo/netlib/net.py": """
        import scipy_like  # noqa: F401
        import torch.nn as nn

        try:
            from .dcn.dcn_op import DCN
        except ImportError:
            DCN = None


        def build():
            return nn.Sequential(DCN(3, 4, 3))
    """,
}


def test_swallowed_import_hint_names_the_repository_file_never_site_packages(tmp_path, monkeypatch):
    import textwrap

    from bn2gn.core.errors import Bn2gnError
    from bn2gn.model.spec import build, parse_model_spec

    for relative, body in SWALLOWING_REPO.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path / "venv/lib/python3.11/site-packages"))
    monkeypatch.chdir(tmp_path / "repo")
    spec = parse_model_spec("netlib.net:build", paths=[tmp_path / "repo"], stubs=["none"])
    try:
        with pytest.raises(Bn2gnError) as info:
            build(spec)
        assert info.value.text.render({}).endswith(
            "DCN is None: netlib/net.py:6 sets it to None when importing netlib.dcn.dcn_op fails; "
            "stand that module in with --stub netlib.dcn.dcn_op"
        )
        automatic = build(parse_model_spec("netlib.net:build", paths=[tmp_path / "repo"]))
        assert [(r.name, r.used_at) for r in automatic.stubs] == [("netlib.dcn.dcn_op", "build")]
        assert automatic.model(torch.zeros(1, 3, 5, 5)).shape == (1, 4, 5, 5)
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] in ("netlib", "scipy_like")]:
            del sys.modules[name]


# -- stand-ins that keep shapes ------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, kwargs, expected",
    [
        (
            (32, 16),
            {"kernel_size": (3, 3), "stride": 1, "padding": 1},
            (32, 16, (3, 3), 1, (1, 1), 1),
        ),
        ((8, 4, 5), {}, (8, 4, (5, 5), 1, (2, 2), 1)),
        (
            (),
            {"in_channels": 8, "out_channels": 8, "kernel_size": 3, "dilation": 2},
            (8, 8, (3, 3), 1, (2, 2), 2),
        ),
        ((16, 32, 3, 2), {}, (16, 32, (3, 3), 2, (1, 1), 1)),
        ((16, 32, (1, 3)), {}, (16, 32, (1, 3), 1, (0, 1), 1)),
    ],
)
def test_a_stand_in_called_like_a_convolution_is_one(args, kwargs, expected):
    from bn2gn.model.standins import conv_arguments

    conv = conv_arguments(args, kwargs)
    names = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation")
    assert tuple(conv[n] for n in names) == expected


@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((), {}),
        ((16,), {}),
        (("dla34", 16, 3), {}),
        ((16, 16), {}),
        ((16, 16, 3), {"stride": 0}),
        ((True, 4, 3), {}),
    ],
)
def test_other_stand_ins_stay_identities(args, kwargs):
    from bn2gn.model.standins import conv_arguments

    assert conv_arguments(args, kwargs) is None


def test_stand_in_convolution_runs_forward_and_backward_keeping_the_size():
    from bn2gn.model.standins import StubRecord, stand_in_class

    record = StubRecord("dcn_ops", True)
    DCN = stand_in_class("dcn_ops", "DCN", record)
    layer = DCN(4, 6, kernel_size=(3, 3), stride=1, padding=1, dilation=1, deformable_groups=1)
    out = layer(torch.ones(2, 4, 7, 9))
    out.sum().backward()
    assert out.shape == (2, 6, 7, 9) and layer.weight.grad is not None
    assert DCN(4, 4, 3, 2)(torch.ones(1, 4, 8, 8)).shape == (1, 4, 4, 4)
    assert (
        "weight" not in layer.state_dict()
    )  # not the real layer's tensors: no checkpoint has them
    layer.load_state_dict({})  # and none needs them
    assert dict(record.ran_as["DCN"]) == {
        "Conv2d(4, 6, kernel_size=3, padding=1)": 1,
        "Conv2d(4, 4, kernel_size=3, padding=1, stride=2)": 1,
    }


# -- the whole flow: migrate --write, then verify, offline -----------------------------------------
VERIFY_ARGS = [
    "verify",
    "--model",
    "model.model:create_model",
    "--path",
    "lib",
    *OPTS_ARGS,
    "--input-shape",
    "1,3,64,64",
    "--freeze-from",
    "main.py",
    "--steps",
    "3",
]


def _migrated(repo):
    result = run_cli(["migrate", "src", "--write"], cwd=repo)
    assert result.exit_code == 0, result.output
    _forget_repository()
    return repo / "src"


def test_verify_migrated_repository_offline_with_shape_keeping_stand_ins(repo):
    import json

    result = run_cli([*VERIFY_ARGS, "--format", "json"], cwd=_migrated(repo))
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    checks = {c["name"]: c for c in document["sections"][0]["checks"] if c["name"] != "stub"}
    assert document["ok"] and not [c for c in checks.values() if c["status"] == "fail"]
    stubs = {
        c["data"]["module"]: c["data"]
        for c in document["sections"][0]["checks"]
        if c["name"] == "stub"
    }
    assert stubs["model.DCNv2.dcn_v2"]["used_at"] == "build"
    assert stubs["model.DCNv2.dcn_v2"]["cause"] == "_ext"
    assert stubs["model.DCNv2.dcn_v2"]["ran_as"] == {
        "DCN": {
            "Conv2d(32, 16, kernel_size=3, padding=1)": 1,
            "Conv2d(16, 16, kernel_size=3, padding=1)": 1,
        }
    }
    assert stubs["trackdevkit_missing_sdk"]["used_at"] == "import"
    assert checks["groupnorm"]["value"] == "6 GroupNorm: C=16->16 groups x6"
    assert checks["batchnorm-outside-backbone"]["value"] == "0 outside the backbone"


# -- offline weights -------------------------------------------------------------------------------
WEIGHTS_URL = "https://weights.example.org/imagenet/dla_tiny-5b1f4c0e.pth"


def test_verify_says_pretrained_statistics_are_not_available_offline(repo):
    result = run_cli(VERIFY_ARGS, cwd=_migrated(repo))
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert (
        "INFO  pretrained-statistics       pretrained statistics not available offline: 1 weights "
        f"URL(s) not in the torch hub cache ({WEIGHTS_URL}); 5 backbone BatchNorm layer(s) keep "
        "their initial statistics; checked instead: eval mode, requires_grad, statistics "
        "unchanged by the steps"
    ) in lines
    assert not [line for line in lines if "untrained-statistics" in line]


def test_weights_in_the_torch_hub_cache_are_served(repo, tmp_path):
    """The cached file sets every backbone running_var to 4: the model holds exactly that."""
    from bn2gn.model.spec import build, parse_model_spec

    src = _migrated(repo)
    spec = parse_model_spec(
        "model.model:create_model",
        paths=[src / "lib"],
        options="opts:opts",
        options_args=["tracking"],
    )
    cache = tmp_path / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    first = build(spec).model.backbone.state_dict()
    cached = {
        k: torch.full_like(v, 4.0) if k.endswith("running_var") else v for k, v in first.items()
    }
    torch.save(cached, cache / "dla_tiny-5b1f4c0e.pth")
    _forget_repository()
    built = build(spec)
    assert built.weights.served == [(WEIGHTS_URL, str(cache / "dla_tiny-5b1f4c0e.pth"))]
    assert built.weights.missing == []
    assert float(built.model.backbone.level1.bn1.running_var[0]) == 4.0


def test_every_download_route_is_offline_with_one_note_per_url(tmp_path, monkeypatch):
    import urllib.request

    import torch.hub
    import torch.utils.model_zoo

    from bn2gn.model.offline_weights import OfflineHubError, offline_weights

    def unreachable(self, address):
        raise OSError("network unreachable in tests")

    monkeypatch.setattr(socket.socket, "connect", unreachable)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    layer = torch.nn.Conv2d(1, 1, 1)
    before = layer.weight.detach().clone()
    with offline_weights() as record:
        assert torch.utils.model_zoo.load_url("https://x.example.org/a.pth") == {}
        assert torch.hub.load_state_dict_from_url("https://x.example.org/a.pth") == {}
        layer.load_state_dict(torch.hub.load_state_dict_from_url("https://x.example.org/b.pt"))
        raw = urllib.request.urlopen("https://x.example.org/c.pth.tar").read()
        path, _ = urllib.request.urlretrieve("https://x.example.org/d.pth", str(tmp_path / "d.pth"))
        with pytest.raises(OfflineHubError, match="needs the network"):
            torch.hub.load("someone/detector", "dla34", pretrained=True)
    assert torch.equal(layer.weight, before)
    assert len(raw) > 0 and torch.load(path) == {}
    assert record.missing == [
        "https://x.example.org/a.pth",
        "https://x.example.org/b.pt",
        "https://x.example.org/c.pth.tar",
        "https://x.example.org/d.pth",
    ]
    assert torch.hub.load_state_dict_from_url.__module__ == "torch.hub"  # restored afterwards


def test_hub_load_of_a_repository_not_in_the_cache_is_one_line(tmp_path, monkeypatch):
    import textwrap

    (tmp_path / "hubnet.py").write_text(
        textwrap.dedent(
            """
            import torch


            def build():
                return torch.hub.load("someone/detector", "dla34", pretrained=True)
            """
        )
    )
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    try:
        result = run_cli(
            ["verify", "--model", "hubnet:build", "--path", tmp_path, "--input-shape", "1,3,8,8"],
            cwd=tmp_path,
        )
    finally:
        sys.modules.pop("hubnet", None)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "bn2gn: error: --model hubnet:build(): torch.hub.load('someone/detector') needs the network: "
        f"the repository is not in the torch hub cache {tmp_path / 'home' / 'hub'}"
    )


def test_scan_trace_notes_offline_statistics_instead_of_warning(repo):
    result = run_cli([*TRACE_ARGS, *OPTS_ARGS], cwd=repo / "src")
    assert result.exit_code == 0, result.output
    assert (
        "note: pretrained statistics not available offline: 5 backbone BatchNorm layer(s) keep "
        f"their initial statistics because {WEIGHTS_URL} is not in the torch hub cache; give the "
        "pretrained weights with --checkpoint FILE"
    ) in result.stdout.splitlines()
    assert "untrained statistics after the factory" not in result.output


# -- the trace keeps static evidence -----------------------------------------------------------------
TRACKER_FACTORY = """
from types import SimpleNamespace

from lib.model.model import create_model


def build():
    opt = SimpleNamespace(pre_img=True, pre_hm=False, load_model="given")  # no download
    return create_model("dla_34", {"hm": 1}, {"hm": [8]}, opt)
"""


def test_trace_never_settles_a_new_backbone_layer_the_checkpoint_does_not_cover(tmp_path):
    """plans/tracker: DLA.pre_img_layer sits under the backbone attribute ``base``, which the trace
    sees; that the DLA checkpoint does not cover it is static evidence the trace cannot answer."""
    target = tmp_path / "tracker"
    shutil.copytree(FIXTURES / "plans" / "tracker", target)
    (target / "tracker_factory.py").write_text(TRACKER_FACTORY)
    try:
        result = run_cli(
            ["scan", "lib", "--trace", "tracker_factory:build", "--path", "."], cwd=target
        )
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] in ("lib", "tracker_factory")]:
            del sys.modules[name]
    assert result.exit_code == 0, result.output
    line = next(
        line
        for line in result.stdout.splitlines()
        if line.startswith("lib/model/networks/dla.py:35:17:")
    )
    assert line.split()[1] == "unsure"
    assert "new layer DLA.pre_img_layer inside backbone class DLA" in line
    assert (
        "traced: all 1 instance(s) under backbone attributes: (base.pre_img_layer.1), which says "
        "where the layer sits, not whether pretrained weights cover it"
    ) in line
    kept = next(
        line
        for line in result.stdout.splitlines()
        if line.startswith("lib/model/networks/dla.py:30:13:")
    )
    assert kept.split()[1] == "keep"  # the covered stem still follows its traced path


# -- the model from the train script ---------------------------------------------------------------
def test_verify_takes_the_model_the_train_script_optimizes(repo):
    import re

    src = _migrated(repo)
    result = run_cli(
        [
            "verify",
            "--script",
            "main.py",
            "--input-shape",
            "1,3,64,64",
            "--freeze-from",
            "main.py",
            "--steps",
            "3",
            "--",
            "tracking",
            "--head_conv",
            "8",
        ],
        cwd=src,
    )
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert (
        lines[1] == "verification: main.py tracking --head_conv 8 on cpu, 3 steps, input 1,3,64,64"
    )
    source = next(line for line in lines if line.startswith("INFO  model-source"))
    assert re.fullmatch(
        r"INFO  model-source +model: the DLASeg `model` whose parameters torch\.optim\.Adam was "
        r"built on at main\.py:\d+ in get_optimizer; the script stopped there",
        source,
    )
    assert (
        "PASS  groupnorm                   6 GroupNorm: C=8->8 groups x4, C=16->16 groups x2"
        in lines
    )
    assert sys.argv == ["bn2gn", "verify", "--model", "model.model:create_model"]
    assert not (src / "exp").exists()  # nothing ran past the optimizer


TINY = """
import sys

import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.head = nn.Sequential(nn.Conv2d(4, 2, 1), nn.GroupNorm(1, 2))

    def forward(self, x):
        return self.head(self.backbone(x))


model = Net()
"""

SCRIPTS = {
    "trains_first.py": TINY + "model(torch.ones(1, 3, 4, 4)).sum().backward()\n",
    "never.py": TINY + "print('parameters', sum(p.numel() for p in model.parameters()))\n",
    "exits.py": TINY + "sys.exit(3)\n",
    "raises.py": TINY + "raise ValueError('no such dataset: coco')\n",
}
STOPPED = {
    "trains_first.py": "--script trains_first.py: the script called backward() at "
    "trains_first.py:19 before it built an optimizer: it trains first",
    "never.py": "--script never.py: the script ran to its end without building an optimizer",
    "exits.py": "--script exits.py: the script exited (exit code 3) before it built an optimizer",
    "raises.py": "--script raises.py raised ValueError: no such dataset: coco at raises.py:19; "
    "check the script's arguments (after --)",
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_a_script_that_stops_before_its_optimizer_is_one_line(tmp_path, name):
    (tmp_path / name).write_text(SCRIPTS[name])
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run_cli(["verify", "--script", name, "--input-shape", "1,3,4,4"], cwd=tmp_path)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"bn2gn: error: {STOPPED[name]}"
    assert "Traceback" not in result.output and "parameters" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_script_that_wraps_in_data_parallel_after_loading_data_gives_that_model(tmp_path):
    (tmp_path / "wraps.py").write_text(
        TINY
        + "for batch in torch.utils.data.DataLoader([torch.ones(3, 4, 4)] * 2):\n"
        + "    pass\n"
        + "model = torch.nn.DataParallel(model)\n"
    )
    result = run_cli(
        ["verify", "--script", "wraps.py", "--input-shape", "1,3,4,4", "--steps", "2"],
        cwd=tmp_path,
    )
    assert result.exit_code == 0, result.output
    assert (
        "model: the Net whose parameters the script wraps in DataParallel at wraps.py:21; the "
        "script stopped there; it iterated a DataLoader first (wraps.py:19)"
    ) in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--input-shape", "1,3,4,4"],
            "verify needs the model: --model MODULE:FACTORY, or --script",
        ),
        (
            ["--script", "x.py", "--model", "a:b", "--input-shape", "1,3,4,4"],
            "--script takes the model from the train script: leave out --model",
        ),
        (
            ["--model", "a:b", "--input-shape", "1,3,4,4", "--", "--lr", "1"],
            "unexpected arguments '--lr 1': arguments after -- belong to --script PATH",
        ),
    ],
)
def test_script_usage_errors(tmp_path, args, message):
    (tmp_path / "x.py").write_text(TINY)
    result = run_cli(["verify", *args], cwd=tmp_path)
    assert result.exit_code == 2 and message in result.stderr


# -- what the migration is for: the bs=1 train/eval gap, before and after ----------------------------
def _git(folder, *args):
    import subprocess

    subprocess.run(
        ["git", "-c", "user.email=t@example.org", "-c", "user.name=t", *args],
        cwd=folder,
        check=True,
        capture_output=True,
    )


def test_verify_measures_the_train_eval_gap_of_the_original_and_the_converted_model(tmp_path):
    """fixtures/repos/evalgap: the head normalises the probe [1, 3]. Eval mode (running mean 0,
    var 1) gives [1, 3]; train mode (mean 2, var 1) gives [-1, 1]: the gap is |(-2, -2)| / |(1, 3)|
    = sqrt(8 / 10) = 0.894427. GroupNorm gives [-1, 1] in both modes: 0. The loss is the mean
    output, i.e. the head's bias: Adam moves it by lr = 1e-3 per step, so 5 steps read
    0, -0.001, -0.002, -0.003, -0.004 for both models."""
    import json

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "evalgap"
    shutil.copytree(FIXTURES / "repos" / "evalgap", repo)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "original")
    assert run_cli(["migrate", "--write"], cwd=repo).exit_code == 0
    args = ["verify", "--model", "model:build", "--path", ".", "--input-shape", "1,1,2,2"]
    try:
        result = run_cli([*args, "--format", "json"], cwd=repo)
        text = run_cli(args, cwd=repo)
    finally:
        sys.modules.pop("model", None)
    assert result.exit_code == 0, result.output
    checks = {c["name"]: c for c in json.loads(result.stdout)["sections"][0]["checks"]}
    assert checks["original-model"]["value"] == (
        "original built from git HEAD (the migration is not committed yet), same spec"
    )
    data = checks["train-eval-gap"]["data"]
    assert data["original"]["train_eval_gap"] == pytest.approx(0.894427, abs=1e-6)
    assert data["converted"]["train_eval_gap"] == 0
    for side in ("original", "converted"):
        assert data[side]["losses"] == pytest.approx([0, -0.001, -0.002, -0.003, -0.004], abs=1e-6)
    assert (
        "PASS  train-eval-gap              converted 0, original 0.894: relative |train - eval| of "
        "the outputs at batch size 1"
    ) in text.stdout


def test_verify_says_when_there_is_no_original_to_measure(tmp_path):
    repo = tmp_path / "evalgap"
    shutil.copytree(FIXTURES / "repos" / "evalgap", repo)
    try:
        result = run_cli(
            ["verify", "--model", "model:build", "--path", ".", "--input-shape", "1,1,2,2"],
            cwd=repo,
        )
    finally:
        sys.modules.pop("model", None)
    assert result.exit_code == 1  # not converted: BatchNorm in the head fails its check
    assert (
        "original not measured: no git repository here, so the pre-migration source is unknown; "
        "commit the original first to measure it"
    ) in result.stdout
    assert (
        "FAIL  train-eval-gap              converted 0.894, original not measured" in result.stdout
    )


def test_a_build_run_from_bn2gn_own_checkout_never_forgets_or_stands_in_bn2gn(monkeypatch):
    """Run from bn2gn's own folder, the working directory is a root: bn2gn's modules are still
    not the user's repository (forgetting them would load a second copy of every class)."""
    import bn2gn.core.errors
    from bn2gn.model.spec import forget_modules
    from bn2gn.model.standins import is_repository_file, real_roots

    package = FIXTURES.parent
    monkeypatch.chdir(package)
    forget_modules((package,))
    assert sys.modules["bn2gn.core.errors"] is bn2gn.core.errors
    assert not is_repository_file(bn2gn.core.errors.__file__, real_roots([package]))
    assert is_repository_file(str(package / "fixtures" / "x.py"), real_roots([package]))


def test_a_compiled_extension_the_build_itself_calls_cannot_be_stood_in(tmp_path):
    (tmp_path / "fastnet.py").write_text(
        "import torch.nn as nn\n"
        "import fastops_missing_for_bn2gn as fastops\n\n\n"
        "def build():\n"
        "    return nn.Conv2d(3, fastops.channels_for('dla34'), 1)\n"
    )
    try:
        result = run_cli(
            ["verify", "--model", "fastnet:build", "--path", ".", "--input-shape", "1,3,4,4"],
            cwd=tmp_path,
        )
    finally:
        for name in ("fastnet", "fastops_missing_for_bn2gn"):
            sys.modules.pop(name, None)
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert message.startswith("bn2gn: error: --model fastnet:build() raised TypeError: ")
    assert message.endswith(
        "; stand-ins ran as identities while building (fastops_missing_for_bn2gn.channels_for): "
        "if the build needs what they compute (a compiled extension used while building, not only "
        "as a layer), a stand-in cannot replace it: install that module"
    )
    assert "\n" not in message and "Traceback" not in result.output


def test_a_repository_module_missing_from_sys_path_is_never_stood_in(tmp_path):
    """src/lib/net.py imports utils.helpers, which lives in src/utils: the folder src is missing
    from --path. Standing utils in would build a different model; the line says what to add."""
    (tmp_path / "src" / "lib").mkdir(parents=True)
    (tmp_path / "src" / "utils").mkdir()
    (tmp_path / "src" / "utils" / "__init__.py").write_text("")
    (tmp_path / "src" / "utils" / "helpers.py").write_text("import torch.nn as nn\nact = nn.ReLU\n")
    (tmp_path / "src" / "lib" / "net.py").write_text(
        "import torch.nn as nn\nfrom utils.helpers import act\n\n\n"
        "def build():\n    return nn.Sequential(nn.Conv2d(3, 4, 1), act())\n"
    )
    try:
        result = run_cli(
            ["verify", "--model", "net:build", "--path", "src/lib", "--input-shape", "1,3,4,4"],
            cwd=tmp_path,
        )
    finally:
        for name in ("net", "utils", "utils.helpers"):
            sys.modules.pop(name, None)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "bn2gn: error: --model: cannot import net (ModuleNotFoundError: No module named 'utils'); "
        "the repository has it (src/utils) but not on sys.path: add its folder with --path src"
    )


def test_a_script_moving_its_model_to_cuda_and_setting_the_environment_leaves_bn2gn_as_it_was(
    tmp_path, monkeypatch
):
    import os

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    (tmp_path / "exp").mkdir()
    (tmp_path / "cudaish.py").write_text(
        TINY
        + "import os\n"
        + "os.environ['CUDA_VISIBLE_DEVICES'] = '3'\n"
        + "os.chdir('exp')\n"
        + "model = model.cuda()\n"
        + "model = model.to(torch.device('cuda', 0))\n"
        + "optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
    )
    result = run_cli(
        ["verify", "--script", "cudaish.py", "--input-shape", "1,3,4,4", "--steps", "2"],
        cwd=tmp_path,
    )
    assert result.exit_code == 0, result.output
    assert (
        "model: the Net `model` whose parameters torch.optim.SGD was built on at cudaish.py:24"
        in (result.stdout)
    )
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_a_distributed_script_runs_its_first_worker_in_process(tmp_path):
    (tmp_path / "ddp.py").write_text(
        TINY.replace("model = Net()\n", "")
        + "import torch.distributed as dist\n"
        + "import torch.multiprocessing as mp\n\n\n"
        + "def worker(rank, world):\n"
        + "    dist.init_process_group('gloo', init_method='tcp://127.0.0.1:9', rank=rank, "
        + "world_size=world)\n"
        + "    model = torch.nn.parallel.DistributedDataParallel(Net())\n\n\n"
        + "if __name__ == '__main__':\n"
        + "    mp.spawn(worker, args=(2,), nprocs=2)\n"
    )
    result = run_cli(
        ["verify", "--script", "ddp.py", "--input-shape", "1,3,4,4", "--steps", "2"],
        cwd=tmp_path,
    )
    assert result.exit_code == 0, result.output
    assert (
        "model: the Net whose parameters the script wraps in DistributedDataParallel at ddp.py:24 "
        "in worker; the script stopped there; it spawns 2 worker process(es) at ddp.py:28: bn2gn "
        "ran worker 0 in-process, without a process group"
    ) in result.stdout


def test_a_script_starting_a_process_first_is_one_line(tmp_path):
    (tmp_path / "proc.py").write_text(
        TINY + "import multiprocessing\n" + "multiprocessing.Process(target=print).start()\n"
    )
    result = run_cli(["verify", "--script", "proc.py", "--input-shape", "1,3,4,4"], cwd=tmp_path)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "bn2gn: error: --script proc.py: the script starts a process at proc.py:20 before it "
        "built an optimizer; run it with one process (its single-GPU or debug arguments)"
    )
