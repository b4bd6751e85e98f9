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
    from bn2gn.modelspec import build_options, fill_from_options, parse_model_spec, stub_modules

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
