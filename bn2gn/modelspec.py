"""Build the user's model from ``MODULE:FACTORY``, ``--model-arg key=value`` and ``--path DIR``.

Shared by the commands that check something against the real model (``remap-ckpt --model``,
``verify``, ``scan --trace``). Every failure becomes one Bn2gnError line (exit 2) that says
which part of the spec is wrong; the user's own exception is summarised, never dumped.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import io
import shlex
import sys
import types
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Optional, Tuple

from .errors import EXIT_USAGE, Message, Opt, OptionError, message_text


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What to import and call: ``module:factory(**kwargs)`` with ``paths`` put first on sys.path."""

    module: str
    factory: str
    kwargs: Tuple[Tuple[str, Any], ...] = ()
    paths: Tuple[Path, ...] = ()
    #: modules replaced by stand-ins while the model is imported and built (``--stub MODULE``)
    stubs: Tuple[str, ...] = ()
    #: the repository's own options object (``--model-opts lib.opts:opts``) and its command line
    options: Optional[str] = None
    options_argv: Tuple[str, ...] = ()

    def describe(self) -> str:
        args = [f"{k}={v!r}" for k, v in self.kwargs]
        if self.options:
            argv = " ".join(self.options_argv)
            args.append(f"<{self.options}({argv!r})>")
        return f"{self.module}:{self.factory}({', '.join(args)})"


def parse_model_spec(
    spec: str,
    model_args: Iterable[str] = (),
    paths: Iterable = (),
    stubs: Iterable[str] = (),
    options: Optional[str] = None,
    options_args: Iterable[str] = (),
) -> ModelSpec:
    """Parse ``MODULE:FACTORY`` (FACTORY may be dotted, e.g. ``Net.build``) and its arguments.

    ``options`` (``MODULE:CLASS[.METHOD]``) names the repository's options object; ``options_args``
    are its command-line words (each string is split like a shell would).
    """
    module, sep, factory = spec.partition(":")
    if not sep or not _is_dotted_name(module) or not _is_dotted_name(factory):
        raise OptionError(
            "model",
            f" {spec!r}: expected MODULE:FACTORY, e.g. lib.models.model:create_model",
            EXIT_USAGE,
        )
    argv = _options_argv(options, options_args)
    kwargs: Dict[str, Any] = {}
    for text in model_args:
        key, value = parse_model_arg(text)
        kwargs[key] = value
    folders = []
    for folder in paths:
        folder = Path(folder)
        if not folder.is_dir():
            raise OptionError("path", f" {folder}: not a directory", EXIT_USAGE)
        folders.append(folder.resolve())
    for name in stubs:
        if not _is_dotted_name(name):
            raise OptionError(
                "stub", f" {name!r}: expected a dotted module name, e.g. dcn_v2", EXIT_USAGE
            )
    return ModelSpec(
        module,
        factory,
        tuple(kwargs.items()),
        tuple(folders),
        tuple(dict.fromkeys(stubs)),
        options,
        argv,
    )


def _options_argv(options: Optional[str], options_args: Iterable[str]) -> Tuple[str, ...]:
    options_args = tuple(options_args)
    if options is None:
        if options_args:
            raise OptionError(
                "model_opts_arg",
                Message(
                    " needs ",
                    Opt("model_opts", "MODULE:CLASS"),
                    " (the repository's options class, e.g. lib.opts:opts)",
                ),
                EXIT_USAGE,
            )
        return ()
    module, sep, name = options.partition(":")
    if not sep or not _is_dotted_name(module) or not _is_dotted_name(name):
        raise OptionError(
            "model_opts",
            f" {options!r}: expected MODULE:CLASS[.METHOD], e.g. lib.opts:opts",
            EXIT_USAGE,
        )
    argv = []
    for text in options_args:
        try:
            argv += shlex.split(text)
        except ValueError as exc:
            raise OptionError("model_opts_arg", f" {text!r}: {exc}", EXIT_USAGE) from None
    return tuple(argv)


def parse_model_arg(text: str) -> Tuple[str, Any]:
    """``key=value``: the value is a Python literal when it parses as one, a string otherwise.

    ``heads={'hm': 1}`` gives a dict, ``head_conv=256`` an int, ``arch=dla_34`` the string.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise OptionError(
            "model_arg",
            f" {text!r}: expected key=value with a Python identifier as key",
            EXIT_USAGE,
        )
    try:
        value = ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = raw
    return key, value


def build_model(spec: ModelSpec):
    """Import the module, call the factory on CPU and return the ``nn.Module`` it builds."""
    return build_model_with_stubs(spec)[0]


def build_model_with_stubs(spec: ModelSpec):
    """``build_model``, also returning ``{stub module: names the build took from it}`` for ``--stub``."""
    import torch

    before = set(sys.modules)
    with _sys_path(spec.paths), stub_modules(spec.stubs) as stubs:
        target = _import_factory(spec)
        kwargs = dict(spec.kwargs)
        if spec.options:
            kwargs = fill_from_options(target, kwargs, build_options(spec))
        try:
            with torch.device("cpu"):
                model = target(**kwargs)
        except Exception as exc:  # noqa: BLE001 - the user's factory; summarise, never dump
            raise OptionError(
                "model",
                Message(
                    f" {spec.describe()} raised {_summary(exc)}", _build_hint(exc, spec, before)
                ),
                EXIT_USAGE,
            ) from None
    if not isinstance(model, torch.nn.Module):
        raise OptionError(
            "model",
            f" {spec.describe()} returned {type(model).__name__}, not a torch.nn.Module",
            EXIT_USAGE,
        )
    return model.cpu(), {name: stubs.used_under(name) for name in spec.stubs}


def _build_hint(exc: BaseException, spec: ModelSpec, before: set) -> Message:
    """Where to look next: a missing module to stub, a name a failed import left as None, or the arguments."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return Message(
            f"; if {exc.name} is not needed to build the model's layers, stand it in with ",
            Opt("stub", exc.name),
        )
    if "'NoneType' object" in str(exc):
        found = _none_fallbacks(spec, before)
        if found:
            where, fallback = found[0]
            return Message(
                f"; {fallback.name} is None: {where}:{fallback.line} sets it to None when importing "
                f"{fallback.module} fails; stand that module in with ",
                Opt("stub", fallback.module),
            )
    return Message("; check ", Opt("model_arg"), " values") + (
        Message(" and ", Opt("model_opts_arg")) if spec.options else ""
    )


def _none_fallbacks(spec: ModelSpec, before: set) -> list:
    """(file, Fallback) for names the user's modules set to None in an ``except ImportError`` and still hold None."""
    from .import_fallbacks import find_fallbacks

    folders = [str(f) for f in spec.paths] or [str(Path.cwd())]
    found = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if (
            not path
            or not path.endswith(".py")
            or (name in before and not path.startswith(tuple(folders)))
        ):
            continue
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        is_package = Path(path).name == "__init__.py"
        for fallback in find_fallbacks(text, name, is_package):
            if fallback.name in vars(module) and getattr(module, fallback.name) is None:
                found.append((_shown(path), fallback))
    return found


def _shown(path: str) -> str:
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def build_options(spec: ModelSpec) -> Any:
    """The repository's own options object: ``CLASS().init(argv)`` (or ``.parse``, or ``.METHOD``), defaults
    plus ``--model-opts-arg``. Its prints are kept off bn2gn's output; an argparse error is one line."""
    module_name, _, dotted = spec.options.partition(":")
    flag = spec.options
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - the user's module
        raise OptionError(
            "model_opts", f" {flag}: cannot import {module_name} ({_summary(exc)})", EXIT_USAGE
        ) from None
    owner, parts = module, dotted.split(".")
    for part in parts[:-1]:
        owner = getattr(owner, part, None)
    last = getattr(owner, parts[-1], None)
    if last is None:
        raise OptionError(
            "model_opts", f" {flag}: {module_name} has no attribute {dotted!r}", EXIT_USAGE
        )
    call = _options_call(flag, owner, parts[-1], last)
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            return call(list(spec.options_argv))
    except SystemExit:  # argparse: bad or unknown option; it printed usage and the reason
        lines = [line for line in captured.getvalue().splitlines() if line.strip()]
        reason = lines[-1].split(": error: ", 1)[-1] if lines else "it exited"
        raise OptionError(
            "model_opts",
            Message(
                f" {flag}: the options parser rejected ", Opt("model_opts_arg"), f" ({reason})"
            ),
            EXIT_USAGE,
        ) from None
    except Exception as exc:  # noqa: BLE001
        raise OptionError(
            "model_opts",
            Message(f" {flag} raised {_summary(exc)}; check ", Opt("model_opts_arg"), " values"),
            EXIT_USAGE,
        ) from None


def _options_call(flag: str, owner: Any, name: str, last: Any):
    """CLASS → its instance's ``init`` (CenterNet: parse + heads) or ``parse``; CLASS.METHOD → that method."""
    if isinstance(last, type):
        instance = _instantiate(flag, last)
        for method in ("init", "parse"):
            if callable(getattr(instance, method, None)):
                return getattr(instance, method)
        raise OptionError(
            "model_opts",
            Message(
                f" {flag}: {last.__name__} has no init() or parse(); name the method, e.g. ",
                Opt("model_opts", f"MODULE:{last.__name__}.parse"),
            ),
            EXIT_USAGE,
        )
    if isinstance(owner, type) and not isinstance(
        inspect.getattr_static(owner, name), (staticmethod, classmethod)
    ):
        return getattr(_instantiate(flag, owner), name)
    if not callable(last):
        raise OptionError("model_opts", f" {flag}: is not callable", EXIT_USAGE)
    return last


def _instantiate(flag: str, cls: type) -> Any:
    try:
        return cls()
    except Exception as exc:  # noqa: BLE001
        raise OptionError(
            "model_opts", f" {flag}: {cls.__name__}() raised {_summary(exc)}", EXIT_USAGE
        ) from None


#: Factory parameters that take the options object itself (``create_model(arch, heads, head_conv, opt)``).
OPTIONS_PARAMETERS = ("opt", "opts", "args", "cfg")


def fill_from_options(target, kwargs: Dict[str, Any], opt: Any) -> Dict[str, Any]:
    """Every factory parameter not given by --model-arg: the options object for ``opt``/``opts``/``args``/
    ``cfg``, else the options attribute of the same name (``arch`` ← ``opt.arch``), else its default."""
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return kwargs
    filled = dict(kwargs)
    for parameter in parameters:
        if parameter.name in filled or parameter.kind in (
            parameter.VAR_POSITIONAL,
            parameter.VAR_KEYWORD,
            parameter.POSITIONAL_ONLY,
        ):
            continue
        if parameter.name in OPTIONS_PARAMETERS:
            filled[parameter.name] = opt
        elif hasattr(opt, parameter.name):
            filled[parameter.name] = getattr(opt, parameter.name)
    return filled


def _import_factory(spec: ModelSpec):
    hint = Message("; add its folder with ", Opt("path", "DIR")) if not spec.paths else Message()
    try:
        module = importlib.import_module(spec.module)
    except Exception as exc:  # noqa: BLE001 - ImportError, or the module's own error at import time
        if (
            isinstance(exc, ModuleNotFoundError)
            and exc.name
            and exc.name.split(".")[0] != spec.module.split(".")[0]
        ):
            hint += Message(
                f"; if {exc.name} is a compiled extension that is not installed, stand it in with ",
                Opt("stub", exc.name),
            )
        raise OptionError(
            "model", Message(f": cannot import {spec.module} ({_summary(exc)})", hint), EXIT_USAGE
        ) from None
    target: Any = module
    for part in spec.factory.split("."):
        if not hasattr(target, part):
            raise OptionError(
                "model", f": {spec.module} has no attribute {spec.factory!r}", EXIT_USAGE
            )
        target = getattr(target, part)
    if not callable(target):
        raise OptionError("model", f": {spec.module}:{spec.factory} is not callable", EXIT_USAGE)
    return target


@contextlib.contextmanager
def _sys_path(folders: Tuple[Path, ...]) -> Iterator[None]:
    """Put ``folders`` first on sys.path while the model is imported and built, then restore it."""
    saved = list(sys.path)
    sys.path[:0] = [str(f) for f in folders]
    try:
        yield
    finally:
        sys.path[:] = saved


class StubModule(types.ModuleType):
    """A stand-in for a module that cannot be imported: every public attribute is an ``nn.Module``
    class that takes any arguments and passes its first input through, so construction proceeds."""

    def __init__(self, name: str, used: Dict[str, set]):
        super().__init__(name, message_text(f"bn2gn stand-in for {name} (", Opt("stub"), ")"))
        self.__path__ = []  # a package, so stubbed submodules import too
        self._bn2gn_used = used.setdefault(name, set())

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        stand_in = _stand_in_class(self.__name__, attr)
        setattr(self, attr, stand_in)
        self._bn2gn_used.add(attr)
        return stand_in


def _stand_in_class(module: str, name: str):
    import torch

    def __init__(self, *args, **kwargs):
        torch.nn.Module.__init__(self)

    def forward(self, x=None, *args, **kwargs):
        return x

    return type(
        name, (torch.nn.Module,), {"__init__": __init__, "forward": forward, "__module__": module}
    )


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves the stubbed modules, their submodules, and parents that do not exist."""

    def __init__(self, names: Tuple[str, ...]):
        self.names = names
        self.used: Dict[str, set] = {}
        self.created: list = []

    def find_spec(self, fullname, path=None, target=None):
        covered = any(fullname == n or fullname.startswith(n + ".") for n in self.names)
        parent = any(n.startswith(fullname + ".") for n in self.names)
        if covered or (parent and importlib.machinery.PathFinder.find_spec(fullname, path) is None):
            return importlib.util.spec_from_loader(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        self.created.append(spec.name)
        return StubModule(spec.name, self.used)

    def used_under(self, name: str) -> Tuple[str, ...]:
        """Names taken from stub ``name`` and its submodules (``DCN``, ``functions.DCNFunc``)."""
        found = []
        for module, attrs in self.used.items():
            if module == name or module.startswith(name + "."):
                prefix = module[len(name) + 1 :]
                found += [f"{prefix}.{a}" if prefix else a for a in attrs]
        return tuple(sorted(found))

    def exec_module(self, module) -> None:
        return None


@contextlib.contextmanager
def stub_modules(names: Tuple[str, ...]) -> Iterator[_StubFinder]:
    """Put stand-ins for ``names`` first in the import system; take them (and only them) out afterwards."""
    finder = _StubFinder(tuple(names))
    saved = {
        n: sys.modules.pop(n)
        for n in list(sys.modules)
        if any(n == s or n.startswith(s + ".") for s in finder.names)
    }
    if names:
        sys.meta_path.insert(0, finder)
    try:
        yield finder
    finally:
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)
        for name in finder.created:
            stub = sys.modules.get(name)
            if isinstance(stub, StubModule):
                del sys.modules[name]
            parent, _, child = name.rpartition(".")
            if parent in sys.modules and getattr(sys.modules[parent], child, None) is stub:
                delattr(sys.modules[parent], child)  # the import system set it on a real package
        sys.modules.update(saved)


def _is_dotted_name(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def _summary(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
