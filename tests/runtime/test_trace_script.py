"""scan --trace SCRIPT: the model the train script's optimizer trains, traced like a factory's.

The expectations are the factory form's own decisions on the same model: every backbone form of
fixtures/backbones builds its model with ``create_model()`` in ``train.py``, so both forms must
trace the same instances to the same module paths and decide every site alike.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys

import pytest
from conftest import FIXTURES, run_cli

pytest.importorskip("torch")

FORMS = ["named_backbone", "dla_base", "inline_resnet", "factory_table", "tracker_input_layer"]
OWN_MODULES = ("models", "train", "opts", "model", "dataset", "_init_paths", "main", "_ext")


@pytest.fixture(autouse=True)
def _fresh_modules(monkeypatch):
    def unreachable(self, address):
        raise OSError(f"network unreachable in tests ({address})")

    monkeypatch.setattr(socket.socket, "connect", unreachable)

    def forget():
        for name in [n for n in sys.modules if n.split(".")[0] in OWN_MODULES]:
            del sys.modules[name]

    forget()
    yield
    forget()


def _sites(result):
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    sites = [(s["path"], s["line"], s["decision"], s["module_paths"]) for s in document["sites"]]
    return sites, document["trace"]


def _without_model(trace):
    return {k: v for k, v in trace.items() if k not in ("model", "build")}


@pytest.mark.parametrize("form", FORMS)
def test_script_and_factory_trace_the_same_decisions(form, tmp_path):
    repo = shutil.copytree(FIXTURES / "backbones" / form, tmp_path / form)
    by_factory, factory_trace = _sites(
        run_cli(
            ["scan", ".", "--trace", "models:create_model", "--path", ".", "--format", "json"],
            cwd=repo,
        )
    )
    for name in [n for n in sys.modules if n.split(".")[0] in OWN_MODULES]:
        del sys.modules[name]
    by_script, script_trace = _sites(
        run_cli(["scan", ".", "--trace", "train.py", "--format", "json"], cwd=repo)
    )
    assert by_script == by_factory
    assert all(paths for _, _, _, paths in by_script)  # every site was executed, not guessed
    assert script_trace["model"] == "train.py"
    assert _without_model(script_trace) == _without_model(factory_trace)


def test_trace_args_reach_the_script_as_its_command_line(tmp_path, monkeypatch):
    """tracknet's main.py parses `tracking --head_conv 8` (split from two --trace-arg values);
    the task adds the tracking head, whose BatchNorm the trace then finds (tracking.1)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    repo = shutil.copytree(FIXTURES / "repos" / "tracknet", tmp_path / "tracknet")
    args = ["scan", "lib", "--trace", "main.py", "--trace-arg", "tracking", "--trace-arg"]
    sites, trace = _sites(run_cli([*args, "--head_conv 8", "--format", "json"], cwd=repo / "src"))
    assert trace["model"] == "main.py tracking --head_conv 8"
    heads = next(s for s in sites if s[0] == "lib/model/networks/dla.py" and s[1] == 70)
    assert heads[2:] == ("convert", ["hm.1", "reg.1", "wh.1", "tracking.1"])


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--trace", "train.py", "--model-arg", "depth=3"],
            "--trace train.py runs the train script, which builds the model itself: leave out "
            "--model-arg, --path, --model-opts and --model-opts-arg (give its arguments with "
            "--trace-arg)",
        ),
        (
            ["--trace", "models:create_model", "--path", ".", "--trace-arg", "x"],
            "--trace-arg gives a train script its arguments; --trace models:create_model is a "
            "factory: give its arguments with --model-arg",
        ),
        (
            ["--trace-arg", "x"],
            "--model-arg, --path, --stub, --model-opts, --checkpoint, --trust-pickle, "
            "--allow-global and --trace-arg need --trace MODULE:FACTORY (or --trace SCRIPT)",
        ),
        (
            ["--trace", "nothere.py"],
            "--trace nothere.py: no such file; give the train script as you run it, e.g. "
            "src/main.py",
        ),
        (
            ["--trace", "train.py", "--trace-arg", "'open"],
            '--trace-arg "\'open": No closing quotation',
        ),
    ],
)
def test_bad_script_trace_input_is_one_line_and_exit_2(args, message, tmp_path):
    repo = shutil.copytree(FIXTURES / "backbones" / "named_backbone", tmp_path / "repo")
    result = run_cli(["scan", ".", *args], cwd=repo)
    assert result.exit_code == 2, result.output
    assert result.stderr == f"bn2gn: error: {message}\n"


def test_the_modules_the_script_imported_are_forgotten(tmp_path, monkeypatch):
    """tracknet's opts and dataset modules are not among the scanned files (lib/model): the trace
    still drops them, so the next build imports them afresh."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    repo = shutil.copytree(FIXTURES / "repos" / "tracknet", tmp_path / "tracknet")
    args = ["scan", "lib/model", "--trace", "main.py", "--trace-arg", "tracking"]
    result = run_cli([*args, "--format", "json"], cwd=repo / "src")
    assert result.exit_code == 0, result.output
    left = [n for n in sys.modules if n.split(".")[0] in OWN_MODULES]
    assert left == []
