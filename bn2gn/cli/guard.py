"""What an exception in a command becomes: one line on stderr and an exit code.

Both front ends use it: the click group (``common._Group``) and the pre-commit hook's entry
(``entry``), which runs ``migrate --check`` without building the click command line. Neither
imports click here.
"""

from __future__ import annotations

import os
import sys
from typing import Dict, Optional, Tuple

from ..core.errors import EXIT_INTERNAL, EXIT_USAGE, Bn2gnError, missing_extra
from ..core.process import Terminated


def failure(exc: BaseException, command: str, flags: Dict[str, str]) -> Optional[Tuple[str, int]]:
    """The line to print and the exit code for ``exc`` raised by ``command``; None: let it rise
    (``SystemExit``, or any exception while ``BN2GN_DEBUG`` asks for its traceback)."""
    if isinstance(exc, Bn2gnError):
        return error_line(exc.text.render(flags)), exc.code
    if isinstance(exc, KeyboardInterrupt):
        return "bn2gn: interrupted", 130
    if isinstance(exc, Terminated):
        return f"bn2gn: terminated by signal {exc.signum}; nothing half-written", exc.exit_code
    if not isinstance(exc, Exception) or os.environ.get("BN2GN_DEBUG"):
        return None
    missing = missing_extra(exc, command)
    if missing:
        return error_line(missing), EXIT_USAGE
    first = str(exc).splitlines()[0] if str(exc) else ""
    return (
        error_line(
            f"internal error: {type(exc).__name__}: {first} "
            "(set BN2GN_DEBUG=1 for a traceback and please report it)"
        ),
        EXIT_INTERNAL,
    )


def error_line(message: str) -> str:
    return f"bn2gn: error: {message}"


def echo(message: str, file=None, err: bool = False) -> None:
    """One line to ``file`` (default stdout, or stderr with ``err``), flushed, as ``click.echo``
    writes a string."""
    stream = file if file is not None else sys.stderr if err else sys.stdout
    if stream is None:  # no console (pythonw): nothing can be said
        return
    stream.write(f"{message}\n")
    stream.flush()
