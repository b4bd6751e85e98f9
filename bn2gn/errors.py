"""Exit codes and the engine's error types; only ``bn2gn.cli`` turns them into exit codes and output.

The engine (and ``bn2gn.runtime``, which users import into training code) must not depend on click,
so these are plain exceptions that carry their exit-code category as data.
"""

import dataclasses
from typing import Optional

EXIT_OK = 0
#: ``--check`` found pending changes, some files failed, or a verification failed.
EXIT_FAILED = 1
#: Usage or configuration error: bad flag, missing path, unreadable config.
EXIT_USAGE = 2
#: An unexpected exception inside bn2gn (a bug): one line, no traceback unless BN2GN_DEBUG=1.
EXIT_INTERNAL = 3


class Bn2gnError(Exception):
    """An error the user can act on; the CLI prints it as one line and exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE):
        super().__init__(message)
        self.message = message
        self.code = code

    def format_message(self) -> str:
        return self.message


class OptionError(Bn2gnError):
    """A bad value of one of the user's options. The engine names the option by its parameter name
    (``model``, ``model_arg``, ``path``, ``stub``, ...); the CLI shows it under the flag that command
    uses for it (``scan`` takes the model as ``--trace``, ``remap-ckpt`` as ``--model``).
    ``detail`` is the text that follows the flag, with its own leading space or colon."""

    def __init__(self, option: str, detail: str, code: int = EXIT_USAGE):
        super().__init__(f"{option}{detail}", code)
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


@dataclasses.dataclass(frozen=True)
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
