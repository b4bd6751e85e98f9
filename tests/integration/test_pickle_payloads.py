"""A corpus of pickled payloads: none runs, with or without the flags bn2gn's refusal advises.

Each payload, if it ran, would create, change or remove something in a ``mark`` folder (a file
``RAN``, the victim file, the fixture scripts). For each one the test runs ``remap-ckpt`` plain,
then follows every ``--allow-global`` the refusal suggests (as a user would), then names the
payload's own outer callable with ``--allow-global``: every run must exit 2 with one line and
leave ``mark`` exactly as it was.
"""

from __future__ import annotations

import bdb
import code
import codecs
import compileall
import cProfile
import ctypes
import dbm
import functools
import importlib
import io
import logging
import logging.config
import operator
import os
import pathlib
import pickle
import pkgutil
import posix
import profile
import py_compile
import pydoc
import re
import runpy
import shelve
import shutil
import site
import subprocess
import tarfile
import tempfile
import textwrap
import threading
import time
import timeit
import trace
import urllib.request
import venv
import zipfile

import pytest
from conftest import run_cli

torch = pytest.importorskip("torch")
fx_graph_module = importlib.import_module("torch.fx.graph_module")
torch_hub = importlib.import_module("torch.hub")
torch_storage = importlib.import_module("torch.storage")


class Call:
    """Unpickles as ``func(*args)``; callable so that a call's result can itself be called."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __call__(self, *args):
        raise AssertionError("only ever pickled")

    def __reduce__(self):
        return (self.func, self.args)


def _pickled(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def payloads(mark: pathlib.Path) -> dict:
    ran, victim, script = str(mark / "RAN"), str(mark / "victim.txt"), str(mark / "script.py")
    cmd, argv = f"touch {ran}", ["touch", ran]
    src = f"open({ran!r}, 'w').write('ran')"
    os_module = Call(importlib.import_module, "os")
    return {
        "exec": Call(exec, src),
        "eval": Call(eval, src),
        "os.system": Call(os.system, cmd),
        "posix.system": Call(posix.system, cmd),
        "os.popen": Call(os.popen, cmd),
        "os.spawnlp": Call(os.spawnlp, os.P_WAIT, "touch", *argv),
        "os.spawnvp": Call(os.spawnvp, os.P_WAIT, "touch", argv),
        "subprocess.call": Call(subprocess.call, argv),
        "subprocess.check_call": Call(subprocess.check_call, argv),
        "subprocess.check_output": Call(subprocess.check_output, argv),
        "subprocess.run": Call(subprocess.run, argv),
        "subprocess.Popen": Call(subprocess.Popen, argv),
        "subprocess.getoutput": Call(subprocess.getoutput, cmd),
        "subprocess.getstatusoutput": Call(subprocess.getstatusoutput, cmd),
        "pydoc.pipepager": Call(pydoc.pipepager, "x", cmd),
        "pydoc.tempfilepager": Call(pydoc.tempfilepager, "x", cmd),
        "cProfile.run": Call(cProfile.run, src),
        "cProfile.runctx": Call(cProfile.runctx, src, {}, {}),
        "profile.run": Call(profile.run, src),
        "profile.runctx": Call(profile.runctx, src, {}, {}),
        "timeit.timeit": Call(timeit.timeit, src, "pass", time.perf_counter, 1),
        "timeit.repeat": Call(timeit.repeat, src, "pass", time.perf_counter, 1, 1),
        "timeit.Timer.timeit": Call(operator.methodcaller("timeit", 1), Call(timeit.Timer, src)),
        "torch.storage._load_from_bytes": Call(
            torch_storage._load_from_bytes, _pickled(Call(exec, src))
        ),
        "torch.load": Call(torch.load, io.BytesIO(_pickled(Call(exec, src)))),
        "pickle.loads": Call(pickle.loads, pickle.dumps(Call(exec, src))),
        "_pickle.loads": Call(pickle.loads, pickle.dumps(Call(os.system, cmd), protocol=2)),
        "runpy.run_path": Call(runpy.run_path, script),
        "site.addsitedir": Call(site.addsitedir, str(mark / "site")),
        "torch.hub._load_local": Call(torch_hub._load_local, str(mark / "hub"), "model"),
        "torch.fx.reduce_graph_module": Call(
            fx_graph_module.reduce_graph_module,
            {"_code": "\ndef forward(self):\n    return None\n"},
            src + "\n",
        ),
        "logging.config.dictConfig": Call(
            logging.config.dictConfig,
            {"version": 1, "handlers": {"h": {"()": "subprocess.call", "args": argv}}},
        ),
        "logging.FileHandler": Call(logging.FileHandler, ran),
        "zipfile.ZipFile": Call(zipfile.ZipFile, ran, "w"),
        "tarfile.open": Call(tarfile.open, ran, "w"),
        "shelve.open": Call(shelve.open, ran),
        "dbm.open": Call(dbm.open, ran, "c"),
        "open": Call(open, ran, "w"),
        "io.open": Call(io.open, ran, "w"),
        "codecs.open": Call(codecs.open, ran, "w"),
        "os.open": Call(os.open, ran, os.O_CREAT | os.O_WRONLY),
        "os.mkdir": Call(os.mkdir, ran),
        "os.makedirs": Call(os.makedirs, ran),
        "shutil.copy": Call(shutil.copy, script, ran),
        "shutil.copyfile": Call(shutil.copyfile, script, ran),
        "shutil.move": Call(shutil.move, victim, ran),
        "shutil.rmtree": Call(shutil.rmtree, str(mark / "hub")),
        "shutil.make_archive": Call(shutil.make_archive, ran, "zip", str(mark / "hub")),
        "os.rename": Call(os.rename, victim, ran),
        "os.remove": Call(os.remove, victim),
        "os.unlink": Call(os.unlink, victim),
        "os.truncate": Call(os.truncate, victim, 0),
        "os.chmod": Call(os.chmod, victim, 0),
        "os.symlink": Call(os.symlink, victim, ran),
        "os.link": Call(os.link, victim, ran),
        "tempfile.mkstemp": Call(tempfile.mkstemp, "", "x", str(mark)),
        "tempfile.mkdtemp": Call(tempfile.mkdtemp, "", "x", str(mark)),
        "tempfile.NamedTemporaryFile": Call(
            tempfile.NamedTemporaryFile, "w", -1, None, None, "", "x", str(mark), False
        ),
        "pathlib.Path.touch": Call(pathlib.Path.touch, Call(pathlib.PosixPath, ran)),
        "pathlib.Path.write_text": Call(pathlib.Path.write_text, Call(pathlib.PosixPath, ran), "x"),
        "functools.partial": Call(Call(functools.partial, os.system, cmd)),
        "operator.methodcaller": Call(operator.methodcaller("system", cmd), os_module),
        "getattr": Call(Call(getattr, os_module, "system"), cmd),
        "__import__": Call(Call(getattr, Call(__import__, "os"), "system"), cmd),
        "pkgutil.resolve_name": Call(Call(pkgutil.resolve_name, "os:system"), cmd),
        "pydoc.locate": Call(Call(pydoc.locate, "os.system"), cmd),
        "trace.Trace.run": Call(operator.methodcaller("run", src), Call(trace.Trace)),
        "bdb.Bdb.run": Call(operator.methodcaller("run", src), Call(bdb.Bdb)),
        "code.InteractiveInterpreter": Call(
            operator.methodcaller("runsource", src), Call(code.InteractiveInterpreter)
        ),
        "threading.Thread": Call(
            operator.methodcaller("run"), Call(threading.Thread, None, os.system, None, (cmd,))
        ),
        "ctypes.CDLL": Call(operator.methodcaller("system", cmd.encode()), Call(ctypes.CDLL, None)),
        "venv.create": Call(venv.create, str(mark / "env")),
        "compileall.compile_file": Call(compileall.compile_file, script),
        "py_compile.compile": Call(py_compile.compile, script),
        "urllib.request.urlretrieve": Call(
            urllib.request.urlretrieve, pathlib.Path(script).as_uri(), ran
        ),
        "importlib.import_module": Call(Call(getattr, os_module, "system"), cmd),
    }


def _make_mark(mark: pathlib.Path) -> None:
    ran = str(mark / "RAN")
    (mark / "hub").mkdir(parents=True)
    (mark / "site").mkdir()
    (mark / "victim.txt").write_text("keep me\n")
    (mark / "script.py").write_text(f"open({ran!r}, 'w').write('ran')\n")
    (mark / "hub" / "hubconf.py").write_text(f"open({ran!r}, 'w').write('ran')\n")
    (mark / "site" / "evil.pth").write_text(f"import os; os.system('touch {ran}')\n")


def _state(mark: pathlib.Path) -> dict:
    return {
        p.relative_to(mark).as_posix(): (p.stat().st_mode, p.read_bytes() if p.is_file() else b"")
        for p in sorted(mark.rglob("*"))
    }


#: Only payloads that make test-time names for themselves are built once per test.
NAMES = sorted(payloads(pathlib.Path("/nonexistent")))


@pytest.mark.parametrize("name", NAMES)
def test_no_payload_runs_even_when_the_advice_is_followed(tmp_path, name):
    mark = tmp_path / "mark"
    _make_mark(mark)
    payload = payloads(mark)[name]
    source = tmp_path / "evil.pth"
    torch.save({"state_dict": torch.nn.BatchNorm2d(4).state_dict(), "x": payload}, source)
    before = _state(mark)
    allowed: list = []
    for _ in range(6):  # follow each piece of advice, as a user would
        result = run_cli(["remap-ckpt", source, "-q", *allowed])
        assert result.exit_code == 2, (allowed, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.output, result.output
        assert _state(mark) == before, f"{name} ran with {allowed}"
        advised = re.findall(r"--allow-global (\S+)", lines[0].split(" (functions are")[0])
        if not advised or advised[0] in allowed:
            break
        allowed += ["--allow-global", advised[0]]
    assert not (tmp_path / "evil.bn2gn.pth").exists()


@pytest.mark.parametrize(
    "name",
    [
        "pydoc.pipepager",
        "cProfile.run",
        "timeit.timeit",
        "torch.storage._load_from_bytes",
        "pdb.run",
        "profile.run",
        "trace.Trace",
        "torch.load",
        "torch.hub.load",
        "logging.FileHandler",
        "zipfile.ZipFile",
        "torch.fx.graph_module.reduce_graph_module",
        "runpy.run_path",
        "pkgutil.resolve_name",
        "tempfile.mkstemp",
    ],
)
def test_allow_global_refuses_what_can_run_code_in_one_line(tmp_path, name):
    source = tmp_path / "a.pth"
    torch.save({"state_dict": torch.nn.BatchNorm2d(4).state_dict()}, source)
    result = run_cli(["remap-ckpt", source, "--allow-global", name])
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert "\n" not in line and f"--allow-global {name}: refused" in line, line
    assert "only --trust-pickle loads it" in line
    assert not (tmp_path / "a.bn2gn.pth").exists()


def test_refusal_of_a_function_says_only_trust_pickle_loads_it(tmp_path):
    source = tmp_path / "evil.pth"
    payload = Call(textwrap.dedent, "x")  # harmless, but a function: bn2gn cannot tell
    torch.save({"state_dict": torch.nn.BatchNorm2d(4).state_dict(), "x": payload}, source)
    result = run_cli(["remap-ckpt", source])
    line = result.stderr.strip()
    assert result.exit_code == 2 and "global textwrap.dedent" in line
    assert "calling it may run code; only --trust-pickle loads it" in line
    assert "--allow-global" not in line


@pytest.mark.parametrize(
    "name",
    [
        "exec",
        "os.system",
        "pydoc.pipepager",
        "cProfile.run",
        "timeit.timeit",
        "torch.storage._load_from_bytes",
        "functools.partial",
        "os.remove",
        "os.truncate",
        "torch.hub._load_local",
    ],
)
def test_the_payloads_do_run_when_the_file_is_trusted(tmp_path, name):
    """The corpus is real: loading it with --trust-pickle (documented to run code) changes ``mark``."""
    mark = tmp_path / "mark"
    _make_mark(mark)
    source = tmp_path / "evil.pth"
    torch.save(
        {"state_dict": torch.nn.BatchNorm2d(4).state_dict(), "x": payloads(mark)[name]}, source
    )
    before = _state(mark)
    run_cli(["remap-ckpt", source, "-q", "--trust-pickle"])
    assert _state(mark) != before
