"""Reading the repository's files as they are after the migration (changed files come from memory)."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import List, Optional, Tuple

from .argparse_scan import imported_files


def read_text(path: str, texts) -> str:
    """``texts`` (realpath -> text) holds what migrate changed; other files are read from disk."""
    key = os.path.realpath(path) if texts else None  # (nothing changed: no path to resolve)
    if key in texts:
        return texts[key]
    try:
        return Path(path).read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return ""


def parse(text: str) -> Optional[ast.Module]:
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def relative(path, repo: Path) -> str:
    rel = os.path.relpath(os.path.realpath(path), os.path.realpath(repo))
    return "" if rel == "." else Path(rel).as_posix()


def imported_modules(tree, roots, texts) -> List[Tuple[Path, ast.Module]]:
    """The parsed repository modules a script imports (where its argparse options usually live);
    ``roots``: the folders its imports are found in (``sys_path.import_roots``)."""
    out = []
    for path in imported_files(tree, roots):
        module = parse(read_text(str(path), texts))
        if module is not None:
            out.append((path, module))
    return out
