"""Which pickled globals ``--allow-global`` may admit to safe (weights-only) loading.

torch's weights-only unpickler calls an allowed global with arguments from the file (REDUCE),
calls ``__new__``/``__setstate__`` on instances of an allowed class, and sets attributes on them.
A deny-list of functions can never be complete (``pydoc.pipepager``, ``cProfile.run``,
``timeit.timeit``, ``torch.storage._load_from_bytes`` all run code), so the rule is an allow-list
by kind: a class is admitted when nothing on it comes from a module whose code can run commands
or code (its bases, its metaclass, every callable it defines); a function only when it is on
SAFE_FUNCTIONS. Everything else is loaded only by ``--trust-pickle``. See docs/commands/remap-ckpt.md.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Optional

from ..core.errors import EXIT_USAGE, Bn2gnError, Message, Opt

#: Modules (and packages, with everything under them) whose globals can run code, run commands,
#: import or load other code, or create, replace or remove files when called or constructed.
CODE_RUNNING_MODULES = frozenset(
    {
        "__builtin__", "builtins", "_io", "io", "_pickle", "pickle", "pickletools", "copyreg",
        "marshal", "types", "functools", "_functools", "operator", "_operator", "ctypes", "_ctypes",
        "code", "codeop", "runpy", "importlib", "imp", "pkgutil", "zipimport", "site", "sysconfig",
        "sys", "os", "posix", "nt", "_posixsubprocess", "subprocess", "pty", "shutil", "pathlib",
        "tempfile", "glob", "fileinput", "socket", "_socket", "ssl", "select", "selectors",
        "signal", "_signal", "mmap", "fcntl", "resource", "gc", "webbrowser", "pydoc", "pdb",
        "bdb", "profile", "cProfile", "_lsprof", "trace", "timeit", "doctest", "unittest",
        "inspect", "ast", "compileall", "py_compile", "dis", "threading", "_thread",
        "multiprocessing", "concurrent", "asyncio", "logging", "zipfile", "tarfile", "shelve",
        "dbm", "sqlite3", "http", "urllib", "ftplib", "smtplib", "telnetlib", "xmlrpc",
        "socketserver", "venv", "ensurepip", "platform", "codecs", "_codecs",
        "torch.hub", "torch.serialization", "torch.storage", "torch.jit", "torch.package",
        "torch.fx", "torch.utils.cpp_extension", "torch._dynamo", "torch._inductor",
        "torch.multiprocessing", "torch.distributed", "torch.compiler", "torch.export",
        "torch._C._jit", "torch.utils.data", "numpy.f2py", "numpy.testing", "numpy.distutils",
        "setuptools", "distutils", "pip",
    }
)  # fmt: skip

#: Functions admitted by name: numpy rebuilds arrays and scalars from bytes with these, and they
#: run no code (training scripts save numpy values in checkpoints, e.g. a best metric).
SAFE_FUNCTIONS = frozenset(
    {
        "numpy.core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray._reconstruct",
        "numpy._core.multiarray.scalar",
    }
)

#: Standard-library modules that do something when imported (open a browser, print, start a
#: GUI): never imported just to judge a name found in a file.
_LOUD_MODULES = frozenset({"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo"})


def runs_code(module: Optional[str]) -> bool:
    """True when ``module`` is, or is inside, one of CODE_RUNNING_MODULES."""
    if not isinstance(module, str):
        return False
    parts = module.split(".")
    return any(".".join(parts[:n]) in CODE_RUNNING_MODULES for n in range(1, len(parts) + 1))


def can_run_code(name: str) -> bool:
    """True for globals of CODE_RUNNING_MODULES (``exec``: a bare name is a builtin)."""
    return "." not in name or runs_code(name.rsplit(".", 1)[0])


def _refused(name: str, why: str) -> Bn2gnError:
    return Bn2gnError(
        Message(
            Opt("allow_global", name),
            f": refused, {why}; only ",
            Opt("trust_pickle"),
            " loads it, and only for a file you trust",
        ),
        EXIT_USAGE,
    )


def resolve_global(name: str) -> tuple:
    """``argparse.Namespace`` → ``(argparse.Namespace, "argparse.Namespace")`` for torch's
    allow-list, or a Bn2gnError (exit 2) saying why the name cannot be admitted."""
    parts = name.split(".")
    if len(parts) < 2 or not all(part.isidentifier() for part in parts):
        raise Bn2gnError(
            Message(
                Opt("allow_global", name), ": give the full dotted name, e.g. argparse.Namespace"
            ),
            EXIT_USAGE,
        )
    if can_run_code(name):
        module = name.rsplit(".", 1)[0]
        raise _refused(name, f"{module} globals can run arbitrary code")
    obj = _import_dotted(name, parts)
    if obj is _MISSING:
        raise Bn2gnError(
            Message(
                Opt("allow_global", name),
                ": cannot import it; give the full dotted name, e.g. argparse.Namespace",
            ),
            EXIT_USAGE,
        )
    if not isinstance(obj, type) and not callable(obj):
        raise Bn2gnError(
            Message(
                Opt("allow_global", name),
                f": is a {type(obj).__name__}, not a class or function; "
                "name the class the pickle uses, e.g. argparse.Namespace",
            ),
            EXIT_USAGE,
        )
    why = unsafe_reason(name, obj)
    if why:
        raise _refused(name, why)
    return (obj, name)


_MISSING = object()


def _import_dotted(name: str, parts: list) -> Any:
    for split in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for part in parts[split:]:
                obj = getattr(obj, part)
                _refuse_reached_module(name, obj)
        except AttributeError:
            break
        return obj
    return _MISSING


def _refuse_reached_module(name: str, obj: Any) -> None:
    """``argparse._sys.modules`` reaches ``sys`` through an attribute: judge the module really reached."""
    real = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None)
    if runs_code(real):
        raise _refused(name, f"it reaches {real}, whose globals can run arbitrary code")


def unsafe_reason(name: str, obj: Any) -> Optional[str]:
    """Why admitting ``obj`` could let the file run code, or None when it cannot."""
    if not isinstance(obj, type):
        if name in SAFE_FUNCTIONS:
            return None
        kind = "a function" if isinstance(obj, types.FunctionType) else "a callable, not a class"
        return f"it is {kind}: calling it with the file's arguments may run code"
    if issubclass(obj, type):
        return "it is a metaclass: calling it creates classes"
    meta = type(obj)
    if meta is not type and runs_code(meta.__module__):
        return f"its metaclass comes from {meta.__module__}, which can run code"
    for klass in obj.__mro__:
        if klass is object or klass.__module__ == "builtins":
            continue
        if runs_code(klass.__module__):
            return f"it derives from {klass.__module__}.{klass.__qualname__}, which can run code"
        for attr, value in vars(klass).items():
            source = _callable_module(value)
            if runs_code(source):
                return f"its {attr} comes from {source}, which can run code"
    return None


def _callable_module(value: Any) -> Optional[str]:
    """The module a class attribute's code comes from (None for data)."""
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if isinstance(value, property):
        modules = [_callable_module(f) for f in (value.fget, value.fset, value.fdel) if f]
        return next((m for m in modules if runs_code(m)), None)
    if not callable(value) or isinstance(value, type):
        return None
    module = getattr(value, "__module__", None)
    if module is None and hasattr(value, "__objclass__"):  # a slot or method of a C class
        module = value.__objclass__.__module__
    if module is None and hasattr(value, "__self__"):
        owner = value.__self__
        if isinstance(owner, types.ModuleType):
            module = owner.__name__
        else:
            module = owner.__module__ if isinstance(owner, type) else type(owner).__module__
    return module if isinstance(module, str) else type(value).__module__


def admissible(name: str) -> Optional[bool]:
    """Whether ``--allow-global name`` would be accepted; None when that cannot be told without
    importing a module that is not imported yet and is not in the standard library."""
    top = name.split(".")[0]
    if can_run_code(name):
        return False
    if top not in sys.modules and (
        top not in sys.stdlib_module_names or top in _LOUD_MODULES or top.startswith("_")
    ):
        return None
    parts = name.split(".")
    try:
        if _import_dotted(name, parts) is _MISSING:
            return None
        resolve_global(name)
    except Bn2gnError:
        return False
    return True
