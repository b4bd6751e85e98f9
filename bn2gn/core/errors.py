"""Exit codes, the engine's error types and its messages; only ``bn2gn.cli`` turns them into output.

The engine (and ``bn2gn.runtime``, which users import into training code) must not depend on click,
so these are plain exceptions that carry their exit-code category as data.

A message that names one of the user's options holds it as data, ``Opt("trust_pickle")``, never as
a flag: the CLI shows it as the flag the running command takes (``--trust-pickle``), a library
caller sees the parameter name (``trust_pickle``, or ``allow_global=NAME`` with a value).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterator, Optional, Union

EXIT_OK = 0
#: ``--check`` found pending changes, some files failed, or a verification failed.
EXIT_FAILED = 1
#: Usage or configuration error: bad flag, missing path, unreadable config.
EXIT_USAGE = 2
#: An unexpected exception inside bn2gn (a bug): one line, no traceback unless BN2GN_DEBUG=1.
EXIT_INTERNAL = 3


@dataclass(frozen=True)
class Opt:
    """One of the user's options, named in a message by its engine parameter name.

    ``value`` is shown after it (``Opt("stub", "cv2")``: ``--stub cv2`` / ``stub=cv2``). ``command``
    names the bn2gn command the option belongs to when the message suggests running another
    command (``Opt("renames_out", "FILE", command="config rewrite")``): such a part is a command
    line for the shell, so it is shown as that command's flag in every style.
    """

    name: str
    value: object = None
    command: Optional[str] = None

    def render(self, flags: Optional[Dict[str, str]]) -> str:
        if flags is None and self.command is None:
            return self.name if self.value is None else f"{self.name}={self.value}"
        flag = flag_of(self.name) if self.command or flags is None else flag_for(self.name, flags)
        return flag if self.value is None else f"{flag} {self.value}"


Part = Union[str, Opt, "Message"]


class Message:
    """Text with options in it as data (``Opt``): ``Message("re-run with ", Opt("trust_pickle"))``.

    ``str()`` renders it in the current style (see ``flag_style``); ``render(flags)`` in a given one.
    ``+`` with a string or another message makes a longer message.
    """

    __slots__ = ("parts",)

    def __init__(self, *parts: Part):
        flat = []
        for part in parts:
            flat.extend(part.parts if isinstance(part, Message) else (part,))
        self.parts = tuple(flat)

    def render(self, flags: Optional[Dict[str, str]] = None) -> str:
        """``flags`` None: options by parameter name; a dict: as flags, ``{option: flag}`` first."""
        return "".join(p if isinstance(p, str) else p.render(flags) for p in self.parts)

    def __str__(self) -> str:
        return self.render(_style)

    def __repr__(self) -> str:
        return f"Message{self.parts!r}"

    def __eq__(self, other) -> bool:
        return isinstance(other, Message) and other.parts == self.parts

    def __hash__(self) -> int:
        return hash(self.parts)

    def __add__(self, other: Part) -> "Message":
        return Message(self, other)

    def __radd__(self, other: Part) -> "Message":
        return Message(other, self)


def message_text(*parts: Part) -> str:
    """A message rendered now, in the current style: for notes and reasons kept as plain strings."""
    return str(Message(*parts))


def flag_of(option: str) -> str:
    """The flag an engine option name is taken as by default: ``model_arg`` -> ``--model-arg``."""
    return "--" + option.replace("_", "-")


def flag_for(option: str, flags: Dict[str, str]) -> str:
    """The flag for ``option`` given a command's own names for some options (``{"model": "--trace"}``)."""
    return flags.get(option) or flag_of(option)


#: None: options are shown by parameter name (a library caller); a dict: as flags (the CLI).
_style: Optional[Dict[str, str]] = None


def current_style() -> Optional[Dict[str, str]]:
    """The style ``str(message)`` uses now; hand it to worker processes with ``set_style``."""
    return _style


def set_style(flags: Optional[Dict[str, str]]) -> None:
    """Render messages with ``flags`` from now on in this process (a worker's initializer)."""
    global _style
    _style = flags


@contextmanager
def flag_style(flags: Dict[str, str]) -> Iterator[None]:
    """While the CLI runs a command, messages name options as flags; ``flags`` may grow meanwhile
    (a command says early which flag it takes an option as)."""
    before = current_style()
    set_style(flags)
    try:
        yield
    finally:
        set_style(before)


#: the packages a command may need beyond bn2gn's own, and the extra that installs each
EXTRAS = {
    "torch": "torch",
    "numpy": "torch",
    "safetensors": "safetensors",
    "mmengine": "openmmlab",
    "mmcv": "openmmlab",
    "mmdet": "openmmlab",
}


def missing_extra(exc: BaseException, command: str) -> Optional[str]:
    """One line naming the extra to install, when ``exc`` says an optional package is missing."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    package = exc.name.split(".")[0]
    if package not in EXTRAS:
        return None
    who = f"bn2gn {command}" if command else "bn2gn"
    return (
        f"{who} needs {package}, which is not installed here: "
        f"python -m pip install 'bn2gn[{EXTRAS[package]}]'"
    )


class Bn2gnError(Exception):
    """An error the user can act on; the CLI prints it as one line and exits with ``code``.

    ``message`` may name options (``Message``); ``text`` keeps them as data for the CLI to render,
    ``message`` and ``str()`` are the text in the current style.
    """

    def __init__(self, message: Union[str, Message], code: int = EXIT_USAGE):
        self.text = message if isinstance(message, Message) else Message(message)
        super().__init__(self.text)
        self.code = code

    @property
    def message(self) -> str:
        return str(self.text)

    def __str__(self) -> str:
        return self.message

    def format_message(self) -> str:
        return self.message


class NothingToAnalyse(Bn2gnError):
    """The given paths hold no Python file to read (a usage error, unless the caller can do
    without a plan: patch-trainer on a folder of train scripts decides by the configured names)."""


class OptionError(Bn2gnError):
    """A bad value of one of the user's options. The engine names the option by its parameter name
    (``model``, ``model_arg``, ``path``, ``stub``, ...); the CLI shows it under the flag that command
    uses for it (``scan`` takes the model as ``--trace``, ``remap-ckpt`` as ``--model``).
    ``detail`` is the text that follows the option, with its own leading space or colon."""

    def __init__(self, option: str, detail: Union[str, Message], code: int = EXIT_USAGE):
        super().__init__(Message(Opt(option), detail), code)
        self.option = option
        self.detail = detail


class SourceError(Exception):
    """A source file bn2gn cannot read or parse; reported as ``file:line: reason``."""

    def __init__(self, path, line: int, reason: str):
        super().__init__(f"{path}:{line}: {reason}")
        self.path = path
        self.line = line
        self.reason = reason

    @property
    def failure(self) -> "SourceFailure":
        return SourceFailure(str(self.path), self.line, str(self))


@dataclass(frozen=True)
class SourceFailure:
    """Why one file was left alone, as data: the file (as the report names it), the line to blame
    (None: the file as a whole) and the one-line message, which names both; nothing reads them back
    out of the message."""

    path: str
    line: Optional[int]
    message: str

    @classmethod
    def at(cls, path, line: int, reason: str) -> "SourceFailure":
        """The ``path:line: reason`` failure."""
        return cls(str(path), line, f"{path}:{line}: {reason}")

    def __str__(self) -> str:
        return self.message
