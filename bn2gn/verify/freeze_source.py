"""Where verify's freeze logic comes from: the user's patched files (``--freeze-from``) or bn2gn.runtime.

patch-trainer injects self-contained definitions (``freeze_backbone_bn``, ``keep_backbone_bn_eval``
and their ``_bn2gn_*`` helpers) after a file's imports, so they are taken from the file's syntax
tree and executed on their own, after those of the file's top-level imports that succeed (a
hand-written freeze may use a module-level ``import torch``): a trainer module with relative
imports, or a script whose imports need its whole repository, still yields them. A file that
imports them from elsewhere instead (``--helper-module``) is imported as a module.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib.util
import sys
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

from ..core.errors import EXIT_USAGE, Bn2gnError, Message, Opt

FREEZE, KEEP = "freeze_backbone_bn", "keep_backbone_bn_eval"


@dataclasses.dataclass
class FreezeLogic:
    freeze: Callable
    keep: Optional[Callable]
    sources: Dict[str, str]

    def describe(self) -> str:
        keep = (
            f"{KEEP} from {self.sources[KEEP]}"
            if KEEP in self.sources
            else f"{KEEP}: not found, so nothing re-asserts eval() after model.train()"
        )
        return f"{FREEZE} from {self.sources[FREEZE]}; {keep}"

    def carried(self) -> Dict[str, tuple]:
        """The backbone entries each loaded function applies by default (its ``backbone_attrs``)."""
        out = {}
        for name, function in ((FREEZE, self.freeze), (KEEP, self.keep)):
            entries = _default_entries(function)
            if entries is not None:
                out[name] = entries
        return out


def _default_entries(function) -> Optional[tuple]:
    import inspect

    if function is None:
        return None
    if isinstance(function, functools.partial) and "backbone_attrs" in function.keywords:
        return tuple(function.keywords["backbone_attrs"])
    if getattr(function, "__module__", "") == "bn2gn.runtime":
        return None  # imported (--helper-module): the patched calls pass the entries themselves
    try:
        parameter = inspect.signature(function).parameters.get("backbone_attrs")
    except (TypeError, ValueError):
        return None
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return None
    default = parameter.default
    return tuple(default) if isinstance(default, (tuple, list)) else None


def load_freeze_logic(files: Sequence[Path], backbone_attrs: Sequence[str]) -> FreezeLogic:
    """The first definition of each function among ``files``; bn2gn.runtime when no file is given."""
    if not files:
        from .. import runtime

        attrs = tuple(backbone_attrs)
        return FreezeLogic(
            functools.partial(runtime.freeze_backbone_bn, backbone_attrs=attrs),
            functools.partial(runtime.keep_backbone_bn_eval, backbone_attrs=attrs),
            {FREEZE: "bn2gn.runtime (built in)", KEEP: "bn2gn.runtime (built in)"},
        )
    found: Dict[str, Callable] = {}
    sources: Dict[str, str] = {}
    for path in files:
        for name, function in _functions_in(Path(path)).items():
            if name not in found:
                found[name], sources[name] = function, str(path)
    if FREEZE not in found:
        raise Bn2gnError(
            Message(
                Opt("freeze_from"),
                f": {', '.join(map(str, files))} neither defines nor imports {FREEZE}; "
                "run `bn2gn patch-trainer` on the train script first, or leave out ",
                Opt("freeze_from"),
                " to use bn2gn's own",
            ),
            EXIT_USAGE,
        )
    return FreezeLogic(found[FREEZE], found.get(KEEP), sources)


def _functions_in(path: Path) -> Dict[str, Callable]:
    if not path.is_file():
        raise Bn2gnError(Message(Opt("freeze_from", path), ": no such file"), EXIT_USAGE)
    try:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(path))
    except (OSError, UnicodeDecodeError, SyntaxError) as exc:
        raise Bn2gnError(
            Message(
                Opt("freeze_from", path),
                f": cannot read it as Python ({type(exc).__name__}: {exc})",
            ),
            EXIT_USAGE,
        ) from None
    defined = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and (node.name in (FREEZE, KEEP) or node.name.startswith("_bn2gn_"))
    ]
    if any(node.name in (FREEZE, KEEP) for node in defined):
        namespace: dict = {"__name__": f"bn2gn_freeze_from_{path.stem}"}
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                try:
                    exec(
                        compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec"),
                        namespace,
                    )  # noqa: S102
                except Exception:  # noqa: BLE001 - an import the functions probably do not need
                    continue
        exec(compile(ast.Module(body=defined, type_ignores=[]), str(path), "exec"), namespace)  # noqa: S102
        return {
            name: _reported(namespace[name], path) for name in (FREEZE, KEEP) if name in namespace
        }
    if _imports(tree, FREEZE) or _imports(tree, KEEP):
        module = _import_file(path)
        return {
            name: getattr(module, name)
            for name in (FREEZE, KEEP)
            if callable(getattr(module, name, None))
        }
    return {}


def _reported(function: Callable, path: Path) -> Callable:
    """``function`` with any exception it raises turned into one Bn2gnError line naming the file."""

    @functools.wraps(function)
    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the user's code: summarise, never dump
            raise Bn2gnError(
                Message(
                    Opt("freeze_from", path),
                    f": {function.__name__}() raised {type(exc).__name__}: {exc}",
                ),
                EXIT_USAGE,
            ) from None

    return call


def _imports(tree: ast.Module, name: str) -> bool:
    return any(
        isinstance(node, ast.ImportFrom) and any(a.name == name for a in node.names)
        for node in tree.body
    )


def _import_file(path: Path):
    """Import ``path`` as a module, its folder first on sys.path (as running it would)."""
    spec = importlib.util.spec_from_file_location(f"bn2gn_freeze_from_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's file: summarise, never dump
        raise Bn2gnError(
            Message(Opt("freeze_from", path), f": importing it raised {type(exc).__name__}: {exc}"),
            EXIT_USAGE,
        ) from None
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module
