"""The model a train script builds: ``--script PATH -- ARGS...``.

bn2gn runs the script in-process as ``python PATH ARGS`` would (``sys.argv`` is ``[PATH, *ARGS]``,
the script's folder first on ``sys.path``, the current working directory unchanged) until it builds
its first optimizer or wraps its model in ``DataParallel`` / ``DistributedDataParallel``. There it
takes the ``nn.Module`` whose parameters are being optimized and stops the script: no training,
and no data loading beyond what the script does before that point. No factory and no knowledge
of the options object are needed.

A script that calls ``backward()`` first, never builds an optimizer, or exits, stops with a
:class:`ScriptStopped` naming where; the build turns it into one line (exit 2).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import io
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

from .standins import is_repository_file

#: Local names that hold the model in train scripts, preferred when several modules fit.
MODEL_NAMES = ("model", "net", "network", "detector")


class _Found(BaseException):
    """Raised inside the script to stop it once the model is found (a BaseException, so the
    script's own ``except Exception`` does not swallow it)."""


class _Stop(BaseException):
    """Raised inside the script to stop it where it went wrong (not swallowed by ``except Exception``)."""


class ScriptStopped(Exception):
    """The script stopped before bn2gn found its model; the message says where and why."""


@dataclasses.dataclass
class ScriptModel:
    """What running the script found."""

    model: Any = None
    how: str = ""  # "torch.optim.Adam built at src/main.py:12 in get_optimizer"
    name: str = ""  # the local or attribute name that held the model
    data_first: str = ""  # where the script iterated a DataLoader before its optimizer
    workers: str = ""  # the script starts worker processes: bn2gn ran the first in-process

    def note(self) -> str:
        held = f" `{self.name}`" if self.name else ""
        line = (
            f"model: the {type(self.model).__name__}{held} whose parameters {self.how}; "
            "the script stopped there"
        )
        if self.data_first:
            line += f"; it iterated a DataLoader first ({self.data_first})"
        if self.workers:
            line += f"; {self.workers}"
        return line


def run_script(path: Path, argv: Tuple[str, ...], roots: Tuple[str, ...]) -> ScriptModel:
    """Run ``path`` as ``__main__`` with ``argv`` until its optimizer; return the model it optimizes."""
    import runpy

    import torch

    found = ScriptModel()
    saved_argv, saved_path = sys.argv, list(sys.path)
    saved_environ, saved_cwd = dict(os.environ), os.getcwd()  # CUDA_VISIBLE_DEVICES, os.chdir
    sys.argv = [str(path), *argv]
    sys.path.insert(0, str(path.resolve().parent))
    patches = _patches(torch, found, roots)
    originals = [(owner, name, owner.__dict__[name]) for owner, name, _ in patches]
    for owner, name, replacement in patches:
        setattr(owner, name, replacement)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stderr(printed):
            runpy.run_path(str(path), run_name="__main__")
    except _Found:
        return found
    except _Stop as stop:
        raise ScriptStopped(str(stop)) from None
    except SystemExit as exc:
        lines = [line for line in printed.getvalue().splitlines() if ": error: " in line]
        if exc.code == 2 and lines:  # argparse: its own message
            reason = lines[-1].split(": error: ", 1)[1]
            raise ScriptStopped(f"its parser rejected the arguments: {reason}") from None
        raise ScriptStopped(
            f"the script exited ({_exit_code(exc)}) before it built an optimizer"
        ) from None
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
        sys.argv, sys.path[:] = saved_argv, saved_path
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_environ)
    raise ScriptStopped("the script ran to its end without building an optimizer")


def _exit_code(exc: SystemExit) -> str:
    code = exc.code
    return f"exit code {code}" if isinstance(code, int) or code is None else str(code)


def _patches(torch, found: ScriptModel, roots: Tuple[str, ...]) -> List[Tuple[Any, str, Callable]]:
    dataloader_iter = torch.utils.data.DataLoader.__dict__["__iter__"]

    def on_optimizer(self, params, *args, **kwargs):
        params = list(params)
        wanted = {id(p) for p in _flatten(params)}
        where = _script_frame(roots)
        found.how = f"torch.optim.{type(self).__name__} was built on at {where}"
        found.model, found.name = _optimized_module(wanted, sys._getframe(1))
        if found.model is None:
            raise _Stop(
                f"{found.how}: no nn.Module holds its parameters, so bn2gn cannot tell which "
                "model is trained"
            )
        raise _Found()

    def on_wrap(original_name: str):
        def wrap(self, module, *args, **kwargs):
            found.model, found.name = module, ""
            found.how = f"the script wraps in {original_name} at {_script_frame(roots)}"
            raise _Found()

        return wrap

    def on_backward(self, *args, **kwargs):
        raise _Stop(
            f"the script called backward() at {_script_frame(roots)} before it built an optimizer: "
            "it trains first"
        )

    def on_iter(self):
        if not found.data_first:
            found.data_first = _script_frame(roots)
        return dataloader_iter(self)

    def no_cuda(self, *args, **kwargs):
        return self  # the model stays on CPU: bn2gn moves it where --device says

    def on_to(original):
        def to(self, *args, **kwargs):
            device = kwargs.get("device", args[0] if args else None)
            if str(device).startswith("cuda"):
                return self
            return original(self, *args, **kwargs)

        return to

    def spawn(fn, args=(), nprocs=1, *more, **kwargs):
        found.workers = (
            f"it spawns {nprocs} worker process(es) at {_script_frame(roots)}: bn2gn ran worker 0 "
            "in-process, without a process group"
        )
        return fn(0, *args)

    def no_process_group(*args, **kwargs):
        return None  # one process: a real rendezvous would wait for the other workers

    def no_process(self):
        raise _Stop(
            f"the script starts a process at {_script_frame(roots)} before it built an optimizer; "
            "run it with one process (its single-GPU or debug arguments)"
        )

    import multiprocessing.process

    import torch.distributed
    import torch.multiprocessing

    parallel = torch.nn.parallel
    distributed = [(torch.distributed, "init_process_group", no_process_group)]
    return distributed * torch.distributed.is_available() + [
        (torch.multiprocessing, "spawn", spawn),
        (multiprocessing.process.BaseProcess, "start", no_process),
        (torch.optim.Optimizer, "__init__", on_optimizer),
        (parallel.DataParallel, "__init__", on_wrap("DataParallel")),
        (parallel.DistributedDataParallel, "__init__", on_wrap("DistributedDataParallel")),
        (torch.Tensor, "backward", on_backward),
        (torch.utils.data.DataLoader, "__iter__", on_iter),
        (torch.nn.Module, "cuda", no_cuda),
        (torch.nn.Module, "to", on_to(torch.nn.Module.__dict__["to"])),
    ]


def _flatten(params: list) -> Iterator[Any]:
    for item in params:
        if isinstance(item, dict):
            yield from _flatten(list(item.get("params", [])))
        elif isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str):
            yield item[1]  # named parameters
        else:
            yield item


def _optimized_module(wanted: set, frame) -> Tuple[Any, str]:
    """The module holding the optimizer's parameters: found in the script's frames (locals, the
    attributes of local objects, globals), else anywhere; most parameters covered, then held under a
    model-like name, then the outermost."""
    import torch

    candidates: Dict[int, Tuple[Any, str]] = {}
    while frame is not None:
        for scope in (frame.f_locals, frame.f_globals):
            for name, value in list(scope.items()):
                _collect(candidates, name, value, torch.nn.Module)
                if not isinstance(value, torch.nn.Module) and hasattr(value, "__dict__"):
                    for attr, inner in list(vars(value).items()):
                        _collect(candidates, attr, inner, torch.nn.Module)
        frame = frame.f_back
    if not any(_coverage(m, wanted) for m, _ in candidates.values()):
        for obj in gc.get_objects():
            _collect(candidates, "", obj, torch.nn.Module)
    scored = [(m, n, _coverage(m, wanted)) for m, n in candidates.values()]
    best = max((c for _, _, c in scored), default=0)
    if not best:
        return None, ""
    top = [(m, n) for m, n, c in scored if c == best]
    inner = {id(sub) for m, _ in top for sub in m.modules() if sub is not m}
    named = [(m, n) for m, n in top if n in MODEL_NAMES]
    outermost = [(m, n) for m, n in (named or top) if id(m) not in inner]
    return (outermost or named or top)[0]


def _collect(candidates: dict, name: str, value: Any, module_type: type) -> None:
    if isinstance(value, module_type) and id(value) not in candidates:
        candidates[id(value)] = (value, name)
    elif isinstance(value, module_type) and name in MODEL_NAMES:
        candidates[id(value)] = (value, name)


def _coverage(module, wanted: set) -> int:
    try:
        return sum(1 for p in module.parameters() if id(p) in wanted)
    except Exception:  # noqa: BLE001 - a half-built module
        return 0


def _script_frame(roots: Tuple[str, ...]) -> str:
    """``file:line in function`` of the innermost frame in the repository's files."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = os.path.realpath(frame.f_code.co_filename)
        if is_repository_file(filename, roots):
            shown = _shown(filename)
            scope = frame.f_code.co_name
            return f"{shown}:{frame.f_lineno}" + (f" in {scope}" if scope != "<module>" else "")
        frame = frame.f_back
    return "a library call"


def _shown(path: str) -> str:
    try:
        return str(Path(path).relative_to(Path.cwd().resolve()))
    except ValueError:
        return path
