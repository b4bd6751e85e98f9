"""Checks of the flags that name Python things (``--model-var``, ``--helper-module``...), shared by
patch-trainer and migrate; click-free, so the pre-commit hook's entry can run them."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import Bn2gnError


def check_flags(paths, optimizer_calls, model_var, insert_before_line, helper_module) -> None:
    if insert_before_line is not None and (len(paths) != 1 or not Path(paths[0]).is_file()):
        raise Bn2gnError("--insert-before-line N applies to one file: name exactly one FILE")
    if model_var is not None and not _dotted(model_var):
        raise Bn2gnError(
            f"--model-var {model_var!r} is not a name or attribute path such as model or self.model"
        )
    if helper_module is not None and not _dotted(helper_module):
        raise Bn2gnError(
            f"--helper-module {helper_module!r} is not a module path such as bn2gn.runtime"
        )
    for name in optimizer_calls:
        if not _dotted(name):
            raise Bn2gnError(
                f"--optimizer-call {name!r} is not a function name such as make_optimizer"
            )


def _dotted(text: str) -> bool:
    return all(part.isidentifier() for part in text.split("."))
