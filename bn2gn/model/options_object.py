"""The repository's own options object (``--model-opts lib.opts:opts``), built the way its train
script builds it, and the factory arguments taken from it.

CenterNet-family factories take the options object (``create_model(arch, heads, head_conv,
opt)``). Its parser runs with ``sys.argv`` holding only the ``--model-opts-arg`` words, so one that
ignores the list it is given and reads ``sys.argv`` (CenterTrack's ``opts().init()`` calling
``parse()``) never sees bn2gn's own command line.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import io
import sys
from typing import Any, Dict, Iterable, Iterator, Tuple

from ..core.errors import EXIT_USAGE, Message, Opt, OptionError


class ImportFailure(OptionError):
    """The build stopped on an import: a missing module, or a name a failed import left as None."""

    def __init__(self, detail: Message, summary: str, option: str = "model"):
        super().__init__(option, detail, EXIT_USAGE)
        self.summary = summary


def build_options(spec: Any) -> Any:  # spec: a bn2gn.model.spec.ModelSpec
    """The repository's own options object: ``CLASS().init(argv)`` (or ``.parse``, or ``.METHOD``), defaults
    plus ``--model-opts-arg``. Its prints are kept off bn2gn's output; an argparse error is one line."""
    module_name, _, dotted = spec.options.partition(":")
    flag = spec.options
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - the user's module
        raise OptionError(
            "model_opts",
            f" {flag}: cannot import {module_name} ({exception_summary(exc)})",
            EXIT_USAGE,
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
            with isolated_argv(module_name, spec.options_argv):
                return call(list(spec.options_argv))
    except SystemExit:  # argparse: bad or unknown option; it printed usage and the reason
        lines = [line for line in captured.getvalue().splitlines() if line.strip()]
        reason = lines[-1].split(": error: ", 1)[-1] if lines else "it exited"
        raise OptionError(
            "model_opts", _rejected(flag, reason, spec.options_argv), EXIT_USAGE
        ) from None
    except Exception as exc:  # noqa: BLE001
        if isinstance(exc, ModuleNotFoundError) and exc.name:
            raise ImportFailure(
                Message(
                    f" {flag} raised {exception_summary(exc)}; stand it in with ",
                    Opt("stub", exc.name),
                ),
                exception_summary(exc),
                "model_opts",
            ) from None
        raise OptionError(
            "model_opts",
            Message(
                f" {flag} raised {exception_summary(exc)}; check ", Opt("model_opts_arg"), " values"
            ),
            EXIT_USAGE,
        ) from None


def _rejected(flag: str, reason: str, argv: Tuple[str, ...]) -> Message:
    """The parser's own reason; it blames ``--model-opts-arg`` only when that option was given."""
    if argv:
        return Message(
            f" {flag}: the options parser rejected ", Opt("model_opts_arg"), f" ({reason})"
        )
    return Message(
        f" {flag}: the options parser stopped with its defaults alone ({reason}); give the "
        "arguments it needs with ",
        Opt("model_opts_arg", "ARGS"),
    )


@contextlib.contextmanager
def isolated_argv(program: str, argv: Iterable[str]) -> Iterator[None]:
    """``sys.argv`` is ``[program, *argv]`` meanwhile: a repository parser that ignores the list it
    is given and reads ``sys.argv`` (``opts().init()`` calling ``parse()``) never sees bn2gn's own
    command line."""
    saved = sys.argv
    sys.argv = [program, *argv]
    try:
        yield
    finally:
        sys.argv = saved


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
            "model_opts", f" {flag}: {cls.__name__}() raised {exception_summary(exc)}", EXIT_USAGE
        ) from None


#: Factory parameters that take the options object itself (``create_model(arch, heads, head_conv, opt)``).
OPTIONS_PARAMETERS = ("opt", "opts", "args", "cfg")


#: Factory parameters named differently from the options attribute that holds them
#: (CenterTrack: ``create_model(arch, head, head_conv, opt)`` with the heads in ``opt.heads``).
PARAMETER_ALIASES = {"head": "heads"}


def fill_from_options(target, kwargs: Dict[str, Any], opt: Any) -> Dict[str, Any]:
    """Every factory parameter not given by --model-arg: the options object for ``opt``/``opts``/``args``/
    ``cfg``, else the options attribute of the same name (``arch`` ← ``opt.arch``; ``head`` ← ``opt.heads``),
    else its default."""
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
        alias = PARAMETER_ALIASES.get(parameter.name)
        if parameter.name in OPTIONS_PARAMETERS:
            filled[parameter.name] = opt
        elif hasattr(opt, parameter.name):
            filled[parameter.name] = getattr(opt, parameter.name)
        elif alias and hasattr(opt, alias):
            filled[parameter.name] = getattr(opt, alias)
    return filled


def exception_summary(exc: BaseException) -> str:
    """``Type: first line of the message``, for one-line errors."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
