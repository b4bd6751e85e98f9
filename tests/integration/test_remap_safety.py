"""Safe loading and bad input: malicious pickles never run, every bad file is one line with exit 2.

Every test checks that nothing new appeared next to the input and that the input is unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import socket
import stat
import subprocess
import sys
import warnings

import pytest
from conftest import ROOT, run_cli

torch = pytest.importorskip("torch")

#: these checkpoints come from models whose backbone attribute is `backbone`; no source tree
#: is around them, so the user names it (without it bn2gn refuses to guess)
BY_NAME = ("--backbone-attr", "backbone")


class RunsCode:
    """Unpickling this calls exec(), which would create ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def small_state():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    return model.state_dict()


def folder_state(folder):
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()
    }


def assert_one_line_error(result, code, *fragments):
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bn2gn: error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    "how, named", [("torch.save", "global builtins.exec"), ("pickle.dump", "global exec")]
)
def test_pickle_that_runs_code_is_refused_and_never_runs(tmp_path, how, named):
    marker = tmp_path / "marker"
    source = tmp_path / "evil.pth"
    content = {"state_dict": small_state(), "extra": RunsCode(marker)}
    if how == "torch.save":
        torch.save(content, source)
    else:
        with open(source, "wb") as handle:
            pickle.dump(RunsCode(marker), handle, protocol=2)
    before = folder_state(tmp_path)
    result = run_cli(["remap-ckpt", *BY_NAME, source])
    assert_one_line_error(result, 2, str(source), "refused to unpickle", named, "--trust-pickle")
    assert not marker.exists(), "the pickled code ran"
    assert folder_state(tmp_path) == before


def test_allow_global_refuses_globals_that_run_code(tmp_path):
    marker = tmp_path / "marker"
    torch.save({"state_dict": small_state(), "extra": RunsCode(marker)}, tmp_path / "evil.pth")
    before = folder_state(tmp_path)
    result = run_cli(
        ["remap-ckpt", *BY_NAME, tmp_path / "evil.pth", "--allow-global", "builtins.exec"]
    )
    assert_one_line_error(result, 2, "--allow-global builtins.exec: refused", "--trust-pickle")
    assert not marker.exists() and folder_state(tmp_path) == before


def test_trust_pickle_runs_the_code_as_documented(tmp_path):
    """--trust-pickle is torch.load(weights_only=False): the file's code runs (docs/commands/remap-ckpt.md says so)."""
    marker = tmp_path / "marker"
    torch.save({"state_dict": small_state(), "extra": RunsCode(marker)}, tmp_path / "evil.pth")
    before = hashlib.sha256((tmp_path / "evil.pth").read_bytes()).hexdigest()
    result = run_cli(["remap-ckpt", *BY_NAME, tmp_path / "evil.pth", "--trust-pickle", "-q"])
    assert result.exit_code == 0, result.output
    assert marker.read_text() == "code ran"
    out = torch.load(tmp_path / "evil.bn2gn.pth", weights_only=True)
    assert out["extra"] is None and list(out["state_dict"]) == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
    ]
    assert hashlib.sha256((tmp_path / "evil.pth").read_bytes()).hexdigest() == before


def test_harmless_global_can_be_allowed_by_name(tmp_path):
    source = tmp_path / "model_best.pth"
    torch.save(
        {
            "epoch": 2,
            "opt": argparse.Namespace(arch="dla_34", lr=1.25e-4),
            "state_dict": small_state(),
        },
        source,
    )
    before = folder_state(tmp_path)
    refused = run_cli(["remap-ckpt", *BY_NAME, source])
    assert_one_line_error(
        refused,
        2,
        "refused to unpickle global argparse.Namespace",
        "--allow-global argparse.Namespace",
        "--trust-pickle",
    )
    assert folder_state(tmp_path) == before
    allowed = run_cli(
        ["remap-ckpt", *BY_NAME, source, "--allow-global", "argparse.Namespace", "-q"]
    )
    assert allowed.exit_code == 0, allowed.output
    with torch.serialization.safe_globals([argparse.Namespace]):
        out = torch.load(tmp_path / "model_best.bn2gn.pth", weights_only=True)
    assert out["opt"] == argparse.Namespace(arch="dla_34", lr=1.25e-4)
    assert out["epoch"] == 2 and list(out["state_dict"]) == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
    ]
    assert folder_state(tmp_path)["model_best.pth"] == before["model_best.pth"]


def test_unknown_allow_global_is_a_usage_error(tmp_path):
    torch.save({"state_dict": small_state()}, tmp_path / "a.pth")
    before = folder_state(tmp_path)
    result = run_cli(
        ["remap-ckpt", *BY_NAME, tmp_path / "a.pth", "--allow-global", "no_such_module_xyz.Thing"]
    )
    assert_one_line_error(result, 2, "--allow-global no_such_module_xyz.Thing: cannot import it")
    assert folder_state(tmp_path) == before


def _truncated(path):
    torch.save({"epoch": 1, "state_dict": small_state()}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _text(path):
    path.write_text("epoch: 3\nlr: 0.001\n")


def _list(path):
    torch.save([torch.zeros(2)], path)


def _no_tensors(path):
    torch.save({"epoch": 3, "lr": 0.1}, path)


def _bad_safetensors(path):
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")


@pytest.mark.parametrize(
    "name, make, fragments",
    [
        ("trunc.pth", _truncated, ["truncated/corrupt", "check the file"]),
        ("empty.pth", lambda p: p.write_bytes(b""), ["empty file (0 bytes)"]),
        ("notes.pth", _text, ["not a readable PyTorch checkpoint"]),
        ("list.pth", _list, ["holds a list, not a dict of tensors"]),
        ("meta.pth", _no_tensors, ["no state dict found", "(has: epoch, lr)", "--key"]),
        ("w.safetensors", _bad_safetensors, ["not a readable safetensors file"]),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, name, make, fragments):
    source = tmp_path / name
    make(source)
    before = folder_state(tmp_path)
    result = run_cli(["remap-ckpt", *BY_NAME, source])
    assert_one_line_error(result, 2, str(source), *fragments)
    assert folder_state(tmp_path) == before


def test_directory_and_missing_file(tmp_path):
    (tmp_path / "exp").mkdir()
    assert_one_line_error(
        run_cli(["remap-ckpt", *BY_NAME, tmp_path / "exp", "-o", tmp_path / "x.pth"]),
        2,
        "is a directory",
    )
    assert_one_line_error(
        run_cli(["remap-ckpt", *BY_NAME, tmp_path / "nope.pth"]), 2, "nope.pth: no such file"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]


def test_output_in_a_missing_directory(tmp_path):
    torch.save({"state_dict": small_state()}, tmp_path / "a.pth")
    before = folder_state(tmp_path)
    result = run_cli(
        ["remap-ckpt", *BY_NAME, tmp_path / "a.pth", "-o", tmp_path / "missing" / "b.pth"]
    )
    assert_one_line_error(result, 2, "output folder", "does not exist")
    assert folder_state(tmp_path) == before and not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--in-place", "-o", "x.pth"], "--in-place and -o cannot be combined"),
        (["--strict"], "need --model MODULE:FACTORY"),
        (["--model", "no_colon"], "expected MODULE:FACTORY"),
        (["--model", "m:f", "--model-arg", "novalue"], "expected key=value"),
        (
            ["--model", "no_such_module_xyz:build"],
            "cannot import no_such_module_xyz (ModuleNotFoundError",
        ),
        (
            ["--model", "collections:no_such_factory"],
            "collections has no attribute 'no_such_factory'",
        ),
        (["--model", "collections:OrderedDict"], "returned OrderedDict, not a torch.nn.Module"),
        (["--key", "weights"], "--key weights: no such top-level entry"),
        (["--allow-global", "Namespace"], "--allow-global Namespace: give the full dotted name"),
    ],
)
def test_usage_errors_are_one_line(tmp_path, monkeypatch, args, fragment):
    monkeypatch.chdir(tmp_path)
    torch.save({"state_dict": small_state()}, tmp_path / "a.pth")
    before = folder_state(tmp_path)
    assert_one_line_error(run_cli(["remap-ckpt", *BY_NAME, tmp_path / "a.pth", *args]), 2, fragment)
    assert folder_state(tmp_path) == before


def test_a_failing_write_leaves_no_output_and_no_temporary_file(tmp_path, monkeypatch):
    torch.save({"state_dict": small_state()}, tmp_path / "a.pth")
    before = folder_state(tmp_path)

    def disk_full(obj, path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"PK\x03\x04 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    result = run_cli(["remap-ckpt", *BY_NAME, tmp_path / "a.pth"])
    assert_one_line_error(
        result, 2, "a.bn2gn.pth: cannot write (No space left on device); nothing was written"
    )
    assert folder_state(tmp_path) == before


@pytest.mark.parametrize(
    "damage, fragment",
    [
        (
            lambda real, obj, path: open(path, "wb").write(b"PK\x03\x04" + b"\0" * 64),
            "could not be re-opened",
        ),
        (
            lambda real, obj, path: real({**obj, "epoch": 99}, path),
            "differs from the remapped checkpoint at epoch",
        ),
        (
            lambda real, obj, path: real(
                {"epoch": 1, "state_dict": {k: v + 1 for k, v in obj["state_dict"].items()}}, path
            ),
            "differs from the remapped checkpoint at state_dict.0.weight",
        ),
    ],
)
def test_re_open_check_catches_a_bad_write(tmp_path, monkeypatch, damage, fragment):
    torch.save({"epoch": 1, "state_dict": small_state()}, tmp_path / "a.pth")
    before = folder_state(tmp_path)
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, path, *a, **k: damage(real_save, obj, path))
    result = run_cli(["remap-ckpt", *BY_NAME, tmp_path / "a.pth"])
    assert_one_line_error(result, 1, fragment, "nothing was written")
    assert folder_state(tmp_path) == before


# -- in-place on links, outputs that are not regular files --------------------------------------
def _checkpoint(tmp_path, name="a.pth"):
    path = tmp_path / name
    torch.save({"state_dict": small_state()}, path)
    return path


def test_in_place_on_a_symlink_is_refused_and_the_target_kept(tmp_path):
    (tmp_path / "runs").mkdir()
    target = _checkpoint(tmp_path / "runs", "model_last.pth")
    link = tmp_path / "ckpt.pth"
    link.symlink_to(target)
    original = target.read_bytes()
    result = run_cli(["remap-ckpt", *BY_NAME, link, "--in-place"])
    assert_one_line_error(
        result, 2, f"{link}: is a symlink (to {target}); --in-place does not write through links"
    )
    assert target.read_bytes() == original and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pth", "runs"]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["model_last.pth"]
    on_target = run_cli(
        ["remap-ckpt", *BY_NAME, target, "--in-place"]
    )  # what the message says to do works
    assert on_target.exit_code == 0, on_target.output
    assert (tmp_path / "runs" / "model_last.pth.bak").read_bytes() == original and link.is_symlink()


def test_in_place_on_a_hard_linked_file_is_refused(tmp_path):
    source = _checkpoint(tmp_path)
    os.link(source, tmp_path / "other.pth")
    before = folder_state(tmp_path)
    result = run_cli(["remap-ckpt", *BY_NAME, source, "--in-place"])
    assert_one_line_error(
        result, 2, f"{source}: has 2 hard links; --in-place would give this name a new file"
    )
    assert folder_state(tmp_path) == before
    assert os.stat(source).st_ino == os.stat(tmp_path / "other.pth").st_ino


@pytest.mark.parametrize("kind", ["fifo", "device", "socket"])
def test_output_that_is_not_a_regular_file_is_refused_even_with_force(tmp_path, kind):
    source = _checkpoint(tmp_path)
    output = tmp_path / "out.pth"
    if kind == "fifo":
        os.mkfifo(output)
        what = "named pipe"
    elif (
        kind == "device"
    ):  # a node of its own (the /dev/null numbers): a regression never reaches /dev
        try:
            os.mknod(output, stat.S_IFCHR | 0o600, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("creating a device node needs root; CI runs as root")
        what = "character device"
    else:
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(output))
        what = "socket"
    before = os.stat(output)
    for extra in ([], ["--force"], ["--force", "--dry-run"]):
        result = run_cli(["remap-ckpt", *BY_NAME, source, "-o", output, *extra])
        assert_one_line_error(
            result,
            2,
            f"{output}: exists and is a {what}, not a regular file; refused (also with --force)",
        )
    after = os.stat(output)
    assert (after.st_ino, after.st_mode, after.st_rdev) == (
        before.st_ino,
        before.st_mode,
        before.st_rdev,
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pth", "out.pth"]


@pytest.mark.parametrize("dangling", [False, True])
def test_symlink_output_is_refused(tmp_path, dangling):
    source = _checkpoint(tmp_path)
    target = tmp_path / "elsewhere.pth"
    if not dangling:
        target.write_bytes(b"keep me")
    link = tmp_path / "out.pth"
    link.symlink_to(target)
    result = run_cli(["remap-ckpt", *BY_NAME, source, "-o", link, "--force"])
    assert_one_line_error(
        result,
        2,
        f"{link}: is a symlink (to {target}); bn2gn does not write checkpoints through links",
    )
    assert link.is_symlink() and (
        target.read_bytes() == b"keep me" if not dangling else not target.exists()
    )


def test_in_place_backup_that_is_a_fifo_is_refused(tmp_path):
    source = _checkpoint(tmp_path)
    os.mkfifo(tmp_path / "a.pth.bak")
    result = run_cli(["remap-ckpt", *BY_NAME, source, "--in-place", "--force"])
    assert_one_line_error(result, 2, "a.pth.bak: exists and is a named pipe, not a regular file")
    assert stat.S_ISFIFO(os.stat(tmp_path / "a.pth.bak").st_mode)


def test_force_keeps_the_owner_of_the_replaced_output(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another user; CI runs as root")
    source = _checkpoint(tmp_path)
    output = tmp_path / "out.pth"
    output.write_bytes(b"old")
    os.chown(output, 1234, 1234)
    assert run_cli(["remap-ckpt", *BY_NAME, source, "-o", output, "--force"]).exit_code == 0
    assert (output.stat().st_uid, output.stat().st_gid) == (
        1234,
        1234,
    ) and output.read_bytes() != b"old"


# -- inputs that used to end in "internal error" (exit 3), torch warnings on stderr -----------
def _with(entry):
    def make(path):
        torch.save({"state_dict": {**small_state(), "extra": entry()}}, path)

    return make


def _quantized():
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # torch deprecates creating them; checkpoints still hold them
        return torch.quantize_per_tensor(torch.arange(4.0), 0.5, 0, torch.quint8)


@pytest.mark.parametrize(
    "args, fragments",
    [
        (
            ["--allow-global", "argparse._sys.modules"],
            ["--allow-global argparse._sys.modules: refused, it reaches sys"],
        ),
        (
            ["--allow-global", "torch.os.system"],
            ["--allow-global torch.os.system: refused, it reaches os"],
        ),
        (["--allow-global", "argparse.ONE_OR_MORE"], ["is a str, not a class or function"]),
    ],
)
def test_allow_global_that_reaches_a_code_running_module_is_refused(tmp_path, args, fragments):
    source = _checkpoint(tmp_path)
    before = folder_state(tmp_path)
    assert_one_line_error(run_cli(["remap-ckpt", *BY_NAME, source, *args]), 2, *fragments)
    assert folder_state(tmp_path) == before


def test_meta_tensor_is_refused(tmp_path):
    source = tmp_path / "meta.pth"
    _with(lambda: torch.empty(3, device="meta"))(source)
    before = folder_state(tmp_path)
    assert_one_line_error(
        run_cli(["remap-ckpt", *BY_NAME, source]),
        2,
        f"{source}: state_dict.extra is a meta tensor (a shape, no values)",
    )
    assert folder_state(tmp_path) == before


def test_sparse_tensor_is_kept_bit_for_bit(tmp_path):
    source = tmp_path / "sparse.pth"
    sparse = torch.sparse_coo_tensor([[0, 2], [1, 0]], [3.0, -4.0], (3, 3), check_invariants=True)
    _with(lambda: sparse)(source)
    result = run_cli(["remap-ckpt", *BY_NAME, source, "-q"])
    assert result.exit_code == 0 and result.stderr == "", result.output
    written = torch.load(tmp_path / "sparse.bn2gn.pth", weights_only=True)["state_dict"]["extra"]
    assert written.layout == torch.sparse_coo
    assert written.coalesce().indices().tolist() == [[0, 2], [1, 0]]
    assert written.coalesce().values().tolist() == [3.0, -4.0]


@pytest.mark.parametrize(
    "make, kind",
    [
        (_quantized, "quantized (torch.quint8)"),
        (lambda: torch.eye(2).to_sparse(), "sparse (torch.sparse_coo)"),
    ],
)
def test_tensor_safetensors_cannot_hold_is_one_line(tmp_path, make, kind):
    source = tmp_path / "a.pth"
    _with(make)(source)
    before = folder_state(tmp_path)
    result = run_cli(["remap-ckpt", *BY_NAME, source, "-o", tmp_path / "out.safetensors"])
    assert_one_line_error(
        result,
        2,
        f"entry extra: a .safetensors file cannot hold a {kind} tensor; "
        "write a .pth output instead",
    )
    assert folder_state(tmp_path) == before


def run_process(*args):
    """A fresh process, as the user runs it: torch warns once per process, so in-process runs hide it."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "bn2gn", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_quantized_tensor_runs_with_one_bn2gn_warning_and_no_torch_lines(tmp_path):
    source = tmp_path / "q.pth"
    _with(_quantized)(source)
    result = run_process("remap-ckpt", *BY_NAME, source, "-q")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"bn2gn: warning: {source}: holds quantized tensors (torch.quint8/qint8/qint32), which torch deprecates: "
        "a future torch may not load this checkpoint"
    ]
    assert torch.equal(
        torch.load(tmp_path / "q.bn2gn.pth", weights_only=True)["state_dict"]["extra"], _quantized()
    )


def test_protocol_4_pickle_is_refused_in_one_line_without_torch_warnings(tmp_path):
    source = tmp_path / "p4.pth"
    with open(source, "wb") as handle:
        pickle.dump({"state_dict": small_state()}, handle, protocol=4)
    before = folder_state(tmp_path)
    result = run_process("remap-ckpt", *BY_NAME, source)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"bn2gn: error: {source}: refused: a plain pickle (protocol 4 or higher, not written by torch.save), "
        "which safe (weights-only) loading cannot read; if you trust this file, re-run with --trust-pickle"
    ]
    assert folder_state(tmp_path) == before


def test_sparse_checkpoint_prints_no_torch_warning(tmp_path):
    source = tmp_path / "sparse.pth"
    _with(lambda: torch.eye(3).to_sparse())(source)
    result = run_process("remap-ckpt", *BY_NAME, source, "-q")
    assert result.returncode == 0 and result.stderr == "", result.stderr
