"""Does a Python file look like an OpenMMLab config? For a one-line note from ``scan``/``rewrite``.

Classic configs are module-level assignments of literals and ``dict(...)`` with a ``model``,
``_base_`` or optimizer/runner entry, and no classes or functions; lazy configs use ``read_base()``.
Standard library only and cheap: the top-level statements are read from the text where it can tell
(``openmmlab_text``), and parsed with ``ast`` otherwise.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Optional, Set, Union

from .openmmlab_text import config_statements, quick_verdict

_CONFIG_NAMES = {
    "model",
    "_base_",
    "optimizer",
    "optim_wrapper",
    "optimizer_config",
    "lr_config",
    "runner",
    "train_cfg",
    "test_cfg",
    "train_dataloader",
    "data",
    "custom_imports",
    "param_scheduler",
    "default_hooks",
    "load_from",
    "work_dir",
    "plugin_dir",
    "checkpoint_config",
    "log_config",
}
_STRONG = {
    "model",
    "_base_",
    "optim_wrapper",
    "optimizer_config",
    "train_dataloader",
    "custom_imports",
}


def looks_like_openmmlab_config(source: Union[str, bytes, ast.Module]) -> bool:
    """True for a classic dict config (``model = dict(...)`` / ``_base_ = ...``) or a read_base() config."""
    if isinstance(source, (str, bytes)):
        text = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
        if "dict(" not in text and "read_base" not in text and "_base_" not in text:
            return False
        quick = quick_verdict(text)  # the text alone, where it can tell (most configs)
        if quick is not None:
            return quick
        read = config_statements(text)
        if read is not None:
            verdict, names = read
            return _named_like_config(names) if verdict is None else verdict
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError, RecursionError):
            return False
    else:
        tree = source
    names = set()
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return False
        if isinstance(stmt, ast.With) and any(
            _is_read_base(item.context_expr) for item in stmt.items
        ):
            return True
        if isinstance(stmt, ast.Assign):
            names.update(t.id for t in stmt.targets if isinstance(t, ast.Name))
    return _named_like_config(names)


def _named_like_config(names: Set[str]) -> bool:
    """The names a module binds at the top level are a config's: ``_base_``, or a strong one and two."""
    if "_base_" in names:
        return True
    return bool(names & _STRONG) and len(names & _CONFIG_NAMES) >= 2


def _is_read_base(expr: ast.expr) -> bool:
    return (
        isinstance(expr, ast.Call)
        and getattr(expr.func, "id", getattr(expr.func, "attr", None)) == "read_base"
    )


def openmmlab_config_note(
    path: Union[str, Path], source: Union[str, bytes, ast.Module]
) -> Optional[str]:
    """The one-line note for ``scan``/``rewrite``, or None when the file is not a config."""
    if not looks_like_openmmlab_config(source):
        return None
    return f"{path}: looks like an OpenMMLab config; bn2gn config audit {path} checks its freezing"
