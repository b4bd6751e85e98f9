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
import io
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Optional, Tuple

from ..core.errors import EXIT_USAGE, Message, Opt, OptionError, message_text
from .offline_weights import OfflineHubError, OfflineWeights, offline_weights
from .options_object import (
    ImportFailure,
    build_options,
    fill_from_options,
    isolated_argv,
)
from .options_object import (
    exception_summary as _summary,
)
from .standins import (
    AUTO,
    NONE,
    THIRD_PARTY,
    StandIns,
    StubRecord,
    is_repository_file,
    real_roots,
    stand_ins,
)


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
    #: a train script to run instead of a factory (``--script PATH -- ARGS``)
    script: Optional[Path] = None
    script_args: Tuple[str, ...] = ()

    def roots(self) -> Tuple[Path, ...]:
        """The repository's own folders: ``--path``, the script's folder and the working directory,
        or the working directory."""
        if self.script is not None:
            return (self.script.resolve().parent, Path.cwd())
        return self.paths or (Path.cwd(),)

    def describe(self) -> str:
        if self.script is not None:
            return " ".join([str(self.script), *(shlex.quote(a) for a in self.script_args)])
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


def parse_script_spec(
    script, script_args: Iterable[str] = (), stubs: Iterable[str] = ()
) -> ModelSpec:
    """``--script PATH -- ARGS``: the train script whose optimizer says which model it trains."""
    path = Path(script)
    if not path.is_file():
        raise OptionError(
            "script",
            f" {path}: no such file; give the train script as you run it, e.g. src/main.py",
            EXIT_USAGE,
        )
    for name in stubs:
        if not _is_dotted_name(name):
            raise OptionError(
                "stub", f" {name!r}: expected a dotted module name, e.g. dcn_v2", EXIT_USAGE
            )
    return ModelSpec(
        module="__main__",
        factory="",
        stubs=tuple(dict.fromkeys(stubs)),
        script=path,
        script_args=tuple(script_args),
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


@dataclasses.dataclass(frozen=True)
class Build:
    """A built model and what it took: stand-ins, and weights asked for while offline."""

    model: Any
    stubs: Tuple[StubRecord, ...] = ()
    #: why every unimportable module was stood in (``--stub auto``, or the import the first try failed on)
    auto: Optional[str] = None
    weights: OfflineWeights = dataclasses.field(default_factory=OfflineWeights)
    source: Optional[str] = None  # how a train script gave its model (``--script``)

    def stub_uses(self) -> Dict[str, Tuple[str, ...]]:
        return {r.name: tuple(sorted(r.attributes)) for r in self.stubs}

    def notes(self) -> list:
        """One line per stand-in and per weights URL, for the text reports."""
        lines = [self.source] if self.source else []
        if self.auto:
            lines.append(
                message_text(
                    Opt("stub", AUTO),
                    f": {self.auto}, so bn2gn stood in every module the repository could not "
                    f"import ({len([r for r in self.stubs if not r.requested])} found)",
                )
            )
        lines += [f"stub {record.describe()}" for record in self.stubs]
        return lines + self.weights.notes()

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "stub_auto": self.auto,
            "stubs": [r.as_dict() for r in self.stubs],
            "weights": self.weights.as_dict(),
        }


def build_model(spec: ModelSpec):
    """Import the module, call the factory on CPU and return the ``nn.Module`` it builds."""
    return build(spec).model


def build(spec: ModelSpec) -> Build:
    """Build the model; when that fails on an import (and ``--stub none`` is not given), build it again
    with every module the repository cannot import stood in (``--stub auto``)."""
    requested = tuple(s for s in spec.stubs if s not in (AUTO, NONE))
    if AUTO in spec.stubs:
        forget_modules(spec.roots())
        return _attempt(spec, requested, message_text(Opt("stub", AUTO), " was given"))
    try:
        return _attempt(spec, requested, None)
    except ImportFailure as failure:
        if NONE in spec.stubs:
            raise
        forget_modules(spec.roots())
        return _attempt(spec, requested, f"the build failed on an import ({failure.summary})")


def _attempt(spec: ModelSpec, requested: Tuple[str, ...], auto: Optional[str]) -> Build:
    forget_shadowing_modules(spec.roots())
    before = set(sys.modules)
    printed = io.StringIO()  # what the repository prints while building stays off bn2gn's output
    with _sys_path(spec.paths), isolated_argv(spec.module, spec.options_argv):
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            with stand_ins(requested, bool(auto), spec.roots()) as stubs:
                with offline_weights() as weights:
                    if spec.script is not None:
                        model, source = _run_script(spec, before, stubs, auto)
                    else:
                        model, source = _call_factory(spec, before, stubs, auto), None
    return Build(model, tuple(stubs.records.values()), auto, weights, source)


def _run_script(spec: ModelSpec, before: set, stubs: StandIns, auto: Optional[str]):
    import torch

    from .script import ScriptStopped, run_script

    roots = real_roots(spec.roots())
    try:
        found = run_script(spec.script, spec.script_args, roots)
    except ScriptStopped as stopped:
        raise OptionError("script", f" {spec.script}: {stopped}", EXIT_USAGE) from None
    except Exception as exc:  # noqa: BLE001 - the user's script; summarise, never dump
        _raise_build_error(exc, spec, before, stubs, auto)
    if not isinstance(found.model, torch.nn.Module):
        raise OptionError(
            "script", f" {spec.script}: the optimized object is not a torch.nn.Module", EXIT_USAGE
        )
    return found.model.cpu(), found.note()


def _call_factory(spec: ModelSpec, before: set, stubs: StandIns, auto: Optional[str]):
    import torch

    target = _import_factory(spec, stubs)
    kwargs = dict(spec.kwargs)
    if spec.options:
        kwargs = fill_from_options(target, kwargs, build_options(spec))
    try:
        with torch.device("cpu"):
            model = target(**kwargs)
    except Exception as exc:  # noqa: BLE001 - the user's factory; summarise, never dump
        _raise_build_error(exc, spec, before, stubs, auto)
    if not isinstance(model, torch.nn.Module):
        raise OptionError(
            "model",
            f" {spec.describe()} returned {type(model).__name__}, not a torch.nn.Module",
            EXIT_USAGE,
        )
    return model.cpu()


def _raise_build_error(exc, spec: ModelSpec, before: set, stubs, auto: Optional[str]):
    if os.environ.get("BN2GN_DEBUG"):  # the user's traceback, on the real stderr
        import traceback

        traceback.print_exception(exc, file=sys.__stderr__)
    option = "script" if spec.script is not None else "model"
    detail = Message(f" {spec.describe()} raised {_summary(exc)}{_where(exc, spec)}")
    identities = [
        f"{r.name}.{name}"
        for r in stubs.records.values()
        for name, kinds in sorted(r.ran_as.items())
        if "identity" in kinds
    ]
    if auto and identities:
        raise OptionError(
            option,
            detail
            + Message(
                f"; stand-ins ran as identities while building ({', '.join(identities)}): if the "
                "build needs what they compute (a compiled extension used while building, not only "
                "as a layer), a stand-in cannot replace it: install that module"
            ),
            EXIT_USAGE,
        ) from None
    misplaced = _misplaced(exc, stubs)
    if misplaced:
        raise OptionError(option, detail + misplaced, EXIT_USAGE) from None
    if isinstance(exc, OfflineHubError):
        raise OptionError(option, Message(f" {spec.describe()}: {exc}"), EXIT_USAGE) from None
    hint = _build_hint(exc, spec, before)
    if not auto and (
        (isinstance(exc, ModuleNotFoundError) and exc.name) or "is None:" in str(hint)
    ):
        raise ImportFailure(detail + hint, _summary(exc), option) from None
    raise OptionError(option, detail + hint, EXIT_USAGE) from None


def _misplaced(exc: BaseException, stubs: StandIns) -> Optional[Message]:
    """A missing module the repository has in a folder that is not on sys.path: which one to add."""
    missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
    if missing not in stubs.misplaced:
        return None
    where = stubs.misplaced[missing]
    folder = Path(where).parents[len(missing.split(".")) - 1]
    return Message(
        f"; the repository has it ({where}) but not on sys.path: add its folder with ",
        Opt("path", str(folder)),
    )


def _where(exc: BaseException, spec: ModelSpec) -> str:
    """`` at FILE:LINE``: the innermost line of a script's own files the exception passed through."""
    if spec.script is None:
        return ""
    import traceback

    roots = real_roots(spec.roots())
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if is_repository_file(f.filename, roots)
    ]
    return f" at {_shown(frames[-1].filename)}:{frames[-1].lineno}" if frames else ""


def forget_modules(paths: Tuple[Path, ...]) -> None:
    """Drop the repository's modules imported so far (by a failed build, or by reading a patched
    script's imports), so the build with stand-ins imports them afresh instead of reusing a module
    whose failed import left ``None`` behind."""
    roots = real_roots(paths or (Path.cwd(),))
    for name, module in list(sys.modules.items()):
        filename = getattr(module, "__file__", None)
        if filename and is_repository_file(filename, roots):
            del sys.modules[name]


def forget_shadowing_modules(paths: Tuple[Path, ...]) -> None:
    """Drop an imported top-level package the repository also has (``lib`` of another checkout, read
    earlier in this process) with its submodules: the build must import the repository's own."""
    roots = real_roots(paths or (Path.cwd(),))
    for root in roots:
        try:
            entries = os.listdir(root)
        except OSError:
            continue
        for entry in entries:
            name = entry[:-3] if entry.endswith(".py") else entry
            module = sys.modules.get(name)
            if not name.isidentifier() or module is None:
                continue
            where = getattr(module, "__file__", None) or next(
                iter(getattr(module, "__path__", None) or ()), None
            )
            real = os.path.realpath(where) if where else ""
            installed = any(part in real for part in THIRD_PARTY) or name in sys.stdlib_module_names
            if real and not installed and not real.startswith(roots):
                for loaded in [n for n in sys.modules if n == name or n.startswith(name + ".")]:
                    del sys.modules[loaded]


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
    if spec.script is not None:
        return Message("; check the script's arguments (after --)")
    return Message("; check ", Opt("model_arg"), " values") + (
        Message(" and ", Opt("model_opts_arg")) if spec.options else ""
    )


def _none_fallbacks(spec: ModelSpec, before: set) -> list:
    """(file, Fallback) for names the user's modules set to None in an ``except ImportError`` and still hold None."""
    from .import_fallbacks import find_fallbacks

    folders = real_roots(spec.roots())
    found = []
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        # the repository's own files, never an installed package
        if not path or not path.endswith(".py") or not is_repository_file(path, folders):
            continue
        name = module.__name__
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


def _import_factory(spec: ModelSpec, stubs: StandIns):
    hint = Message("; add its folder with ", Opt("path", "DIR")) if not spec.paths else Message()
    try:
        module = importlib.import_module(spec.module)
    except Exception as exc:  # noqa: BLE001 - ImportError, or the module's own error at import time
        detail = Message(f": cannot import {spec.module} ({_summary(exc)})", hint)
        misplaced = _misplaced(exc, stubs)
        if misplaced:
            raise OptionError("model", detail + misplaced, EXIT_USAGE) from None
        if (
            isinstance(exc, ModuleNotFoundError)
            and exc.name
            and exc.name.split(".")[0] != spec.module.split(".")[0]
        ):
            detail += Message(
                f"; if {exc.name} is a compiled extension that is not installed, stand it in with ",
                Opt("stub", exc.name),
            )
            raise ImportFailure(detail, _summary(exc)) from None
        raise OptionError("model", detail, EXIT_USAGE) from None
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


@contextlib.contextmanager
def stub_modules(names: Tuple[str, ...]) -> Iterator[StandIns]:
    """Put stand-ins for ``names`` first in the import system; take them (and only them) out afterwards."""
    with stand_ins(names) as finder:
        yield finder


def _is_dotted_name(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))
