"""The command line: the console entry, the click group and its commands, the error guard.

Each command lives in its own module below this package and imports the engine lazily, so
``bn2gn scan`` on a tree without BatchNorm never imports LibCST or torch. The group and the shared
options are in ``common.py``, which the command modules import; the group imports a command's
module only when that command is asked for.
"""

# Command modules register themselves on ``cli`` when it first asks for one of their commands
# (``common.COMMAND_MODULES``), so a run imports only the module of the command it runs. The click
# group itself is imported when it is asked for: the pre-commit hook's command line runs without
# click (``entry``).
from ..core.errors import flag_of
from .entry import main

__all__ = ["cli", "flag_of", "main"]


def __getattr__(name: str):
    if name == "cli":
        from .common import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
