"""The command line: click group, shared options, and the one place errors become exit codes.

Each command lives in its own module below this package and imports the engine lazily, so
``bn2gn scan`` on a tree without BatchNorm never imports LibCST or torch. The group and the shared
options are in ``common.py``, which the command modules import; only this file imports them.
"""

# Command modules register themselves on ``cli``; import order is the order of `bn2gn --help`.
from . import config_cmd, migrate, patch_trainer, remap, scan_rewrite, smoke  # noqa: F401
from .common import cli, flag_of, main

__all__ = ["cli", "flag_of", "main"]
