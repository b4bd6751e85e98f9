"""Stand-ins for modules a model build cannot import, found in one pass and reported as data.

``--stub MODULE`` names them; ``--stub auto`` finds them: while the model is imported and built,
``builtins.__import__`` is wrapped so that an import made by the repository's own files that fails
because a module does not exist (or a compiled extension does not load) stands that module in and
tries again. An import the repository itself guards with ``except ImportError: NAME = None`` is
stood in as a whole (the module the ``try`` names), because the repository's own fallback would
leave ``None`` where the build needs a layer.

Every public name of a stood-in module is an ``nn.Module`` class. Called like a convolution
(``(in_channels, out_channels, kernel_size, ...)`` by position or keyword) it is a 2-D convolution
with those channel counts and the padding that keeps the spatial size, so a deformable-conv model
still runs forward and backward; otherwise it passes its first input through.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from ..core.errors import Opt, message_text

#: ``--stub auto``: find every module that cannot be imported; ``--stub none``: never do so.
AUTO, NONE = "auto", "none"
_RETRIES = 64  # stand-ins one import statement may need before bn2gn gives up on it
_SEARCH_DEPTH = 3  # folders below a root searched for a module the import system did not find
THIRD_PARTY = ("site-packages", "dist-packages")
_BN2GN = os.path.join(
    os.path.dirname(os.path.dirname(os.path.realpath(__file__))), ""
)  # the package


def is_repository_file(filename: str, roots: Tuple[str, ...]) -> bool:
    """A file of the user's repository: below one of ``roots`` (real paths ending in a separator),
    never an installed package, never bn2gn itself (when it is run from its own checkout)."""
    real = os.path.realpath(filename)
    return (
        real.startswith(roots)
        and not any(part in real for part in THIRD_PARTY)
        and not real.startswith(_BN2GN)
    )


def real_roots(folders) -> Tuple[str, ...]:
    return tuple(os.path.join(os.path.realpath(str(f)), "") for f in folders)


@dataclasses.dataclass
class StubRecord:
    """One stood-in module: who imported it, what the build took from it and what those ran as."""

    name: str
    requested: bool  # named by --stub; False: found by the automatic pass
    importer: Optional[str] = None  # the repository file whose import first needed it
    cause: Optional[str] = None  # the missing module behind a stand-in for a guarded import
    attributes: List[str] = dataclasses.field(default_factory=list)
    ran_as: Dict[str, Counter] = dataclasses.field(default_factory=dict)

    @property
    def used_at(self) -> str:
        """``build``: a layer of the model was built from it; ``import``: only importing needed it;
        ``unused``: nothing imported it."""
        if self.ran_as:
            return "build"
        return "import" if self.importer or self.attributes else "unused"

    def describe(self) -> str:
        origin = "--stub" if self.requested else "auto"
        if self.used_at == "unused":
            return f"{self.name} ({origin}): never imported by the build"
        where = f", imported by {self.importer}" if self.importer else ""
        why = f" (it imports {self.cause}, which is missing)" if self.cause else ""
        if self.used_at == "import":
            return (
                f"{self.name} ({origin}): needed at import time{where}{why}; no layer built from it"
            )
        ran = "; ".join(
            f"{name} ran as " + ", ".join(f"{what} x{n}" for what, n in sorted(kinds.items()))
            for name, kinds in sorted(self.ran_as.items())
        )
        return f"{self.name} ({origin}): used at build time{where}{why}: {ran}"

    def as_dict(self) -> dict:
        return {
            "module": self.name,
            "requested": self.requested,
            "used_at": self.used_at,
            "importer": self.importer,
            "cause": self.cause,
            "attributes": sorted(self.attributes),
            "ran_as": {k: dict(v) for k, v in sorted(self.ran_as.items())},
        }


class StubModule(types.ModuleType):
    """A stand-in module: every public attribute is a stand-in ``nn.Module`` class."""

    def __init__(self, name: str, record: StubRecord):
        super().__init__(name, message_text(f"bn2gn stand-in for {name} (", Opt("stub"), ")"))
        self.__path__ = []  # a package, so stubbed submodules import too
        self._bn2gn_record = record

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        record = self._bn2gn_record
        # names from a stubbed submodule are shown relative to the stub: functions.DCNFunction
        shown = f"{self.__name__[len(record.name) + 1 :]}.{attr}".lstrip(".")
        stand_in = stand_in_class(self.__name__, shown, record)
        setattr(self, attr, stand_in)
        if shown not in record.attributes:
            record.attributes.append(shown)
        return stand_in


def conv_arguments(args: tuple, kwargs: dict) -> Optional[dict]:
    """``(in_channels, out_channels, kernel_size, stride, padding, dilation)`` when the call looks
    like a convolution's, else None."""
    names = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation")
    given = dict(zip(names, args))
    given.update({k: v for k, v in kwargs.items() if k in names})
    inp, out, kernel = (given.get(k) for k in names[:3])
    if not all(_positive_int(v) for v in (inp, out)):
        return None
    kernel = tuple(kernel) if isinstance(kernel, (tuple, list)) else (kernel, kernel)
    if len(kernel) != 2 or not all(_positive_int(k) for k in kernel):
        return None
    stride, dilation = given.get("stride", 1), given.get("dilation", 1)
    if not (_positive_int(stride) and _positive_int(dilation)):
        return None
    padding = tuple(dilation * (k - 1) // 2 for k in kernel)
    return {
        "in_channels": inp,
        "out_channels": out,
        "kernel_size": kernel,
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
    }


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def describe_conv(conv: dict) -> str:
    kernel, padding = conv["kernel_size"], conv["padding"]
    k = kernel[0] if kernel[0] == kernel[1] else kernel
    p = padding[0] if padding[0] == padding[1] else padding
    extra = "".join(f", {n}={conv[n]}" for n in ("stride", "dilation") if conv[n] != 1)
    return f"Conv2d({conv['in_channels']}, {conv['out_channels']}, kernel_size={k}, padding={p}{extra})"


def _drop_own_tensors(module, state_dict, prefix, local_metadata):
    for leaf in ("weight", "bias"):
        state_dict.pop(prefix + leaf, None)


def _keep_own_tensors(module, state_dict, prefix, *args):
    for leaf in ("weight", "bias"):
        state_dict.setdefault(prefix + leaf, getattr(module, leaf).detach())


def stand_in_class(module: str, name: str, record: StubRecord):
    """An ``nn.Module`` class for ``module.name``: a convolution when built like one, else an identity."""
    import torch

    def __init__(self, *args, **kwargs):
        torch.nn.Module.__init__(self)
        conv = conv_arguments(args, kwargs)
        self._bn2gn_conv = conv
        if conv is not None:
            shape = (conv["out_channels"], conv["in_channels"], *conv["kernel_size"])
            self.weight = torch.nn.Parameter(torch.empty(shape))
            self.bias = torch.nn.Parameter(torch.zeros(conv["out_channels"]))
            torch.nn.init.kaiming_uniform_(self.weight, a=5**0.5)
            # the stand-in's own tensors are not the real layer's: checkpoints neither hold nor get them
            self._register_state_dict_hook(_drop_own_tensors)
            self._register_load_state_dict_pre_hook(_keep_own_tensors, with_module=True)
        what = describe_conv(conv) if conv is not None else "identity"
        record.ran_as.setdefault(name, Counter())[what] += 1

    def forward(self, x=None, *args, **kwargs):
        conv = self._bn2gn_conv
        if conv is None:
            return x
        return torch.nn.functional.conv2d(
            x, self.weight, self.bias, conv["stride"], conv["padding"], conv["dilation"]
        )

    return type(
        name, (torch.nn.Module,), {"__init__": __init__, "forward": forward, "__module__": module}
    )


class StandIns(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves the stood-in modules, their submodules and parents that do not exist; with ``auto``,
    wraps ``__import__`` to find them (only for imports the repository's own files make)."""

    def __init__(self, requested: Iterable[str], auto: bool, roots: Iterable[Path] = ()):
        self.records: Dict[str, StubRecord] = {n: StubRecord(n, True) for n in requested}
        self.auto = auto
        self.roots = real_roots(roots)
        self.created: List[str] = []
        self._guarded = 0  # depth of guarded imports in progress: their failures go to them
        self._fallbacks: Dict[str, Dict[str, str]] = {}
        #: missing modules the repository has under another folder: name -> that file or folder
        self.misplaced: Dict[str, str] = {}

    # -- the import system's side -----------------------------------------------------------------
    def _covers(self, fullname: str) -> Optional[str]:
        for name in self.records:
            if fullname == name or fullname.startswith(name + "."):
                return name
        return None

    def find_spec(self, fullname, path=None, target=None):
        parent = any(n.startswith(fullname + ".") for n in self.records)
        if self._covers(fullname) or (
            parent and importlib.machinery.PathFinder.find_spec(fullname, path) is None
        ):
            return importlib.util.spec_from_loader(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        self.created.append(spec.name)
        owner = self._covers(spec.name)
        record = self.records[owner] if owner else StubRecord(spec.name, True)
        if record.importer is None:
            record.importer = self._importer()
        return StubModule(spec.name, record)

    def _importer(self) -> Optional[str]:
        """The repository file whose import statement is being served."""
        frame = sys._getframe(1)
        while frame is not None:
            found = self.repository_file(frame.f_code.co_filename)
            if found:
                return _shown(found)
            frame = frame.f_back
        return None

    def exec_module(self, module) -> None:
        return None

    def used_under(self, name: str) -> Tuple[str, ...]:
        """Names taken from stub ``name`` and its submodules."""
        record = self.records.get(name)
        return tuple(sorted(record.attributes)) if record else ()

    # -- finding what is missing --------------------------------------------------------------------
    def repository_file(self, filename: Optional[str]) -> Optional[str]:
        if not filename or not self.roots:
            return None
        return os.path.realpath(filename) if is_repository_file(filename, self.roots) else None

    def wrap(self, original):
        def bn2gn_import(name, globals=None, locals=None, fromlist=(), level=0):
            importer = self.repository_file((globals or {}).get("__file__"))
            if importer is None:
                return original(name, globals, locals, fromlist, level)
            guarded = self._guarded_module(importer, name, globals, fromlist, level)
            for _ in range(_RETRIES):
                self._guarded += bool(guarded)
                try:
                    return original(name, globals, locals, fromlist, level)
                except ImportError as exc:
                    missing = _missing_module(exc)
                    if missing is None or self._guarded > bool(guarded):
                        raise  # not a missing module, or an enclosing guarded import takes it
                    cause = missing if guarded and missing != guarded else None
                    self._stand_in(guarded or missing, importer, cause, exc, bool(guarded))
                finally:
                    self._guarded -= bool(guarded)
            return original(name, globals, locals, fromlist, level)

        return bn2gn_import

    def _stand_in(
        self, name: str, importer: str, cause: Optional[str], exc: ImportError, guarded: bool
    ) -> None:
        if self._covers(name):
            raise exc  # already stood in and still failing: not ours to fix
        found = None if guarded else self.in_repository(name)
        if found is not None:
            self.misplaced[name] = found
            raise exc  # the repository has it: a folder missing from sys.path, not a missing module
        self.records[name] = StubRecord(name, False, _shown(importer), cause)
        for held in [n for n in sys.modules if n == name or n.startswith(name + ".")]:
            del sys.modules[held]

    def in_repository(self, name: str) -> Optional[str]:
        """The repository's own file or folder for module ``name`` (``utils.helpers``:
        ``src/utils/helpers.py``), found below the roots, up to three folders down."""
        relative = Path(*name.split("."))
        for root in dict.fromkeys(self.roots + real_roots([Path.cwd()])):
            base = Path(root)
            for depth in range(_SEARCH_DEPTH + 1):
                pattern = "/".join(["*"] * depth + [str(relative)])
                for candidate in (pattern + ".py", pattern):
                    for found in base.glob(candidate):
                        if (found.is_dir() and any(found.glob("*.py"))) or found.is_file():
                            if is_repository_file(str(found), (root,)):
                                return _shown(str(found))
        return None

    def _guarded_module(self, importer, name, globals, fromlist, level) -> Optional[str]:
        """The module a ``try: from X import N / except ImportError: N = None`` in ``importer`` names."""
        from .import_fallbacks import find_fallbacks

        module_name = (globals or {}).get("__name__", "")
        if importer not in self._fallbacks:
            try:
                text = Path(importer).read_text(encoding="utf-8", errors="replace")
            except OSError:
                text = ""
            is_package = Path(importer).name == "__init__.py"
            self._fallbacks[importer] = {
                f.module: f.name for f in find_fallbacks(text, module_name, is_package)
            }
        fallbacks = self._fallbacks[importer]
        if not fallbacks:
            return None
        package = (globals or {}).get("__package__") or module_name.rpartition(".")[0]
        try:
            absolute = importlib.util.resolve_name("." * level + name, package) if level else name
        except (ImportError, ValueError):
            return None
        if absolute in fallbacks:
            return absolute
        for item in fromlist or ():
            if f"{absolute}.{item}" in fallbacks:
                return f"{absolute}.{item}"
        return None


def _missing_module(exc: ImportError) -> Optional[str]:
    """The module that does not exist, or the compiled extension that does not load."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return exc.name
    path = getattr(exc, "path", None) or ""
    if exc.name and path.endswith((".so", ".pyd")):
        return exc.name
    return None


def _shown(path: str) -> str:
    try:
        return str(Path(path).relative_to(Path.cwd().resolve()))
    except ValueError:
        return path


@contextlib.contextmanager
def stand_ins(
    requested: Iterable[str] = (), auto: bool = False, roots: Iterable[Path] = ()
) -> Iterator[StandIns]:
    """Stand-ins for ``requested`` (and, with ``auto``, whatever the repository cannot import) while
    the block runs; the stand-ins (and only they) are taken out afterwards."""
    finder = StandIns(tuple(requested), auto, roots)
    saved = {n: sys.modules.pop(n) for n in list(sys.modules) if finder._covers(n)}
    original_import = builtins.__import__
    sys.meta_path.insert(0, finder)
    if auto:
        builtins.__import__ = finder.wrap(original_import)
    try:
        yield finder
    finally:
        builtins.__import__ = original_import
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)
        for name in list(sys.modules):
            stub = sys.modules[name]
            if not isinstance(stub, StubModule):
                continue
            del sys.modules[name]
            parent, _, child = name.rpartition(".")
            if parent in sys.modules and getattr(sys.modules[parent], child, None) is stub:
                delattr(sys.modules[parent], child)  # the import system set it on a real package
        sys.modules.update(saved)
