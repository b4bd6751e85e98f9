"""``config verify`` for classes no installed registry knows: run their source file with stand-ins.

A plugin or repository class (CPFPN, a SECOND from a checkout, a head subclass) is plain PyTorch
plus ``mmcv.cnn`` / ``mmengine`` most of the time. Its file is executed on its own (never the
package ``__init__``), relative imports load the sibling files the same way, and what this
environment lacks is stood in: registries (``HEADS``, ``MODELS``...) whose ``register_module``
returns the class unchanged, ``mmcv.runner.BaseModule`` as mmengine's, fp16 decorators as no-ops.
Anything else missing raises ImportError: the component stays "static only". This runs the
project's code, as building the model does.
"""

from __future__ import annotations

import builtins
import importlib
import types
from pathlib import Path
from typing import Any, Callable, Dict, Optional

REGISTRIES = {
    "MODELS",
    "HEADS",
    "NECKS",
    "BACKBONES",
    "DETECTORS",
    "LOSSES",
    "MIDDLE_ENCODERS",
    "VOXEL_ENCODERS",
    "FUSION_LAYERS",
    "HOOKS",
    "TRANSFORMER",
    "ATTENTION",
}


class StandInRegistry:
    """A registry that registers nothing: the decorated class is used directly."""

    def __init__(self, name: str):
        self.name = name

    def register_module(self, name=None, force=False, module=None):
        if module is not None:
            return module
        if isinstance(name, type):  # @X.register_module without parentheses (old mmcv)
            return name
        return lambda cls: cls

    def build(self, *args, **kwargs):
        raise NotImplementedError(
            f"{self.name}.build: nested components need the project's registry"
        )


def _no_op_decorator(*args, **kwargs):
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda func: func


def _stand_in(name: str) -> Any:
    if name in REGISTRIES:
        return StandInRegistry(name)
    if name == "BaseModule":
        from mmengine.model import BaseModule

        return BaseModule
    if name in ("auto_fp16", "force_fp32"):
        return _no_op_decorator
    if name.startswith("build_"):
        return _unbuildable(name)
    raise ImportError(f"cannot import name {name!r} here")


def _unbuildable(name: str) -> Callable:
    def build(*args, **kwargs):
        raise NotImplementedError(f"{name}: nested components need the project's registry")

    return build


class _Loader:
    """Executes source files as modules, with an ``__import__`` that stands in what is missing."""

    def __init__(self):
        self.modules: Dict[Path, types.ModuleType] = {}

    def load(self, path: Path) -> types.ModuleType:
        path = path.resolve()
        if path not in self.modules:
            module = types.ModuleType(f"bn2gn_source_build.{path.stem}")
            module.__file__ = str(path)
            self.modules[path] = module
            scope = vars(module)
            scope["__builtins__"] = dict(vars(builtins), __import__=self._importer(path))
            exec(compile(path.read_bytes(), str(path), "exec"), scope)  # noqa: S102 - verify builds
        return self.modules[path]

    def _importer(self, here: Path) -> Callable:
        def _import(name, globals=None, locals=None, fromlist=(), level=0):
            if level:
                return self._relative(here, name, fromlist, level)
            try:
                module = importlib.import_module(name)
            except ImportError:
                if not fromlist:
                    raise
                module = None
            if not fromlist:
                return importlib.import_module(name.split(".")[0])
            return _with_stand_ins(name, module, fromlist)

        return _import

    def _relative(self, here: Path, name: str, fromlist, level: int) -> types.ModuleType:
        base = here.parent
        for _ in range(level - 1):
            base = base.parent
        target = base.joinpath(*name.split(".")) if name else base
        for candidate in (target.with_suffix(".py"), target / "__init__.py"):
            if candidate.is_file():
                if candidate.name == "__init__.py":
                    return _package(target, fromlist, self)
                return self.load(candidate)
        raise ImportError(f"no module {name!r} next to {here}")


def _package(folder: Path, fromlist, loader: _Loader) -> types.ModuleType:
    """``from . import x`` / ``from .pkg import Y``: sibling modules only, never the __init__."""
    package = types.ModuleType(f"bn2gn_source_build.{folder.name}")
    for name in fromlist or ():
        module_file = folder / f"{name}.py"
        if module_file.is_file():
            setattr(package, name, loader.load(module_file))
            continue
        raise ImportError(f"{name!r} would come from {folder}/__init__.py, which is not run")
    return package


def _with_stand_ins(name: str, module: Optional[types.ModuleType], fromlist) -> Any:
    missing = [n for n in fromlist if n != "*" and (module is None or not hasattr(module, n))]
    if not missing:
        return module
    proxy = types.ModuleType(name)
    if module is not None:
        proxy.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
    for attr in missing:
        setattr(proxy, attr, _stand_in(attr))
    return proxy


def load_class(path: Path, name: str) -> type:
    """The class ``name`` defined in ``path``, its file executed with stand-ins (ImportError if not)."""
    module = _Loader().load(Path(path))
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        raise ImportError(f"{path} defines no class {name}")
    return cls
