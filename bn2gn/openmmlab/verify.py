"""``bn2gn config verify``: build each component with the real mmdet stack, train(), one forward/backward.

Needs mmengine 0.10.x + mmcv-lite 2.1.x + mmdet 3.3.x (``pip install "bn2gn[openmmlab]"``);
mmcv-lite has no compiled ops, so ``mmcv._ext`` is stood in while importing. A component the
registry cannot build here (an mmdet3d or plugin class, a compiled op) is "static only", never
"passed". The optimizer view follows the config's stack: mmengine with a paramwise_cfg skips
``requires_grad=False`` parameters at build time; without one, and under mmcv 1.x, it gets all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..core.errors import EXIT_USAGE, Bn2gnError
from .audit import load
from .checks import all_findings
from .findings import ERROR, Finding
from .model import (
    MMENGINE,
    Component,
    components,
    custom_keys,
    detect_stack,
    optimizer_settings,
)
from .plugins import open_catalog
from .values import to_plain

VERIFIED, STATIC_ONLY, FAILED = "verified", "static only", "failed"
#: errors meaning "this environment cannot build it", not "the config is wrong"
_ENVIRONMENT_ERRORS = (KeyError, ImportError, ModuleNotFoundError, NotImplementedError)


@dataclasses.dataclass
class ComponentCheck:
    component: str
    type: Any
    status: str
    detail: str = ""
    predicted: Tuple[str, ...] = ()  # static finding codes that predicted a failure
    batchnorm_training: Optional[int] = None
    batchnorm_total: Optional[int] = None
    trainable: Optional[int] = None
    total: Optional[int] = None
    frozen_received: Optional[int] = None
    gradients: Optional[int] = None
    #: parameter values (numel), all and trainable after train()
    values: Optional[int] = None
    trainable_values: Optional[int] = None
    parameter_names: List[str] = dataclasses.field(default_factory=list, repr=False)

    def as_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("parameter_names")
        data["predicted"] = list(self.predicted)
        return data


@dataclasses.dataclass
class VerifyReport:
    config: Path
    stack: str
    checks: List[ComponentCheck]
    unmatched_keys: List[str]
    unmatched_note: str
    #: the audit's error findings: a config that will crash fails the verdict even where
    #: the component could not be built here
    static_errors: List[Finding] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.static_errors and all(c.status != FAILED for c in self.checks)

    def as_dict(self) -> dict:
        return {
            "config": str(self.config),
            "stack": self.stack,
            "ok": self.ok,
            "components": [c.as_dict() for c in self.checks],
            "unmatched_custom_keys": self.unmatched_keys,
            "unmatched_note": self.unmatched_note,
            "static_errors": [f.as_dict() for f in self.static_errors],
        }


def verify_config(
    path: Path, resolver: str = "static", plugin_dirs: Sequence[Path] = (), input_size: int = 64
) -> VerifyReport:
    cfg = load(path, resolver)
    stack = detect_stack(cfg)
    catalog = open_catalog(Path(path), cfg.data, plugin_dirs, stack == MMENGINE)
    comps = components(cfg, catalog)
    paramwise, _, clip = optimizer_settings(cfg, stack)
    errors = [
        f for f in all_findings(cfg, comps, stack, paramwise, clip, catalog) if f.severity == ERROR
    ]
    predicted: Dict[str, List[str]] = {}
    for finding in errors:
        predicted.setdefault(finding.component, []).append(finding.code.name)
    with _quiet(), _mm_stack() as registry:
        checks = [
            _check(
                registry, comp, stack, paramwise, tuple(predicted.get(comp.path, ())), input_size
            )
            for comp in comps
        ]
    unmatched, unchecked = _match_keys(custom_keys(paramwise), checks)
    missing = [c.component for c in checks if c.total is None]
    note = (
        f"not checked, since {', '.join(missing)} could not be built here: {', '.join(unchecked)}"
        if unchecked
        else ""
    )
    return VerifyReport(
        config=Path(path),
        stack=stack,
        checks=checks,
        unmatched_keys=unmatched,
        unmatched_note=note,
        static_errors=errors,
    )


def _match_keys(keys: Dict[str, dict], checks: List[ComponentCheck]) -> Tuple[List[str], List[str]]:
    """(keys matching no parameter for certain, keys that only an unbuilt component could hold)."""
    built = {c.component[len("model.") :]: c for c in checks if c.total is not None}
    names = [f"{key}.{n}" for key, c in built.items() for n in c.parameter_names]
    unbuilt = [c.component[len("model.") :] for c in checks if c.total is None]
    unmatched, unchecked = [], []
    for key in keys:
        if any(key in n for n in names):
            continue
        head = key.split(".")[0]
        if not unbuilt or head in built:
            unmatched.append(key)
        elif not any(key in f"{u}." for u in unbuilt):
            unchecked.append(key)
    return unmatched, unchecked


@contextlib.contextmanager
def _quiet():
    """No stray warnings or mmengine log lines on the user's terminal."""
    logger = logging.getLogger("mmengine")
    level = logger.level
    logger.setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            logger.setLevel(level)


@contextlib.contextmanager
def _mm_stack():
    from ..model.spec import stub_modules

    with stub_modules(("mmcv._ext",)):
        try:
            from mmdet.registry import MODELS
            from mmdet.utils import register_all_modules
        except ImportError as exc:
            raise Bn2gnError(
                f"bn2gn config verify needs mmengine, mmcv-lite and mmdet ({exc}); "
                "pip install 'bn2gn[openmmlab]'",
                EXIT_USAGE,
            ) from None
        register_all_modules(init_default_scope=True)
        yield MODELS


def _check(
    registry, comp: Component, stack: str, paramwise, predicted: Tuple[str, ...], input_size: int
) -> ComponentCheck:
    check = ComponentCheck(
        component=comp.path, type=comp.type, status=STATIC_ONLY, predicted=predicted
    )
    source = _source_file(comp)
    if not _registered(registry, comp.type) and source is None:
        check.detail = (
            f"{comp.type!r} is not in the mmdet registry here and its source was not found"
        )
        return check
    try:
        module = _build(registry, comp, source)
    except _LoadError as exc:
        check.detail = f"its source cannot be run here: {_summary(exc.__cause__ or exc)}"
        return check
    except _ENVIRONMENT_ERRORS as exc:
        if not predicted:
            check.detail = f"cannot be built here: {_summary(exc)}"
            return check
        return _failed(check, "build", exc)
    except Exception as exc:  # noqa: BLE001 - the class's own error is the finding
        return _failed(check, "build", exc)
    at_build = {id(p) for p in module.parameters() if p.requires_grad}
    compiled = sorted(
        {type(m).__name__ for m in module.modules() if type(m).__module__.startswith("mmcv.ops")}
    )
    try:
        module.train()
    except Exception as exc:  # noqa: BLE001
        return _failed(check, "train()", exc)
    _count(check, module, stack, paramwise, at_build)
    if compiled:
        check.status = VERIFIED
        check.detail = (
            f"built and put in train(); forward not run: {', '.join(compiled)} need compiled mmcv ops "
            "that mmcv-lite lacks"
        )
        return check
    try:
        check.gradients = _forward_backward(module, comp, input_size)
    except Exception as exc:  # noqa: BLE001
        return _failed(check, "forward/backward", exc)
    check.status = VERIFIED
    if check.gradients is None:
        check.detail = "built and put in train(); no forward input known for this class"
    return check


class _LoadError(Exception):
    """The class's file could not be run here (a missing package, a compiled op)."""


def _source_file(comp: Component) -> Optional[Path]:
    """The file the audit read the class from, when it is one (not bn2gn's table)."""
    if comp.cls is None or "everything" in dict(comp.cls.facts):
        return None
    path = Path(comp.cls.source.rpartition(":")[0])
    return path if path.is_file() else None


def _build(registry, comp: Component, source: Optional[Path]):
    """The mmdet registry's class when it has one, else the class run from its source file."""
    config = to_plain(comp.cfg)
    if _registered(registry, comp.type):
        return registry.build(config)
    from .source_build import load_class

    try:
        cls = load_class(source, comp.cls.name)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - whatever the file needs that is not here
        raise _LoadError(str(exc)) from exc
    return cls(**{k: v for k, v in config.items() if k not in ("type", "_scope_")})


def _registered(registry, type_name: Any) -> bool:
    if not isinstance(type_name, str):
        return False
    try:
        return registry.get(type_name) is not None
    except Exception:  # noqa: BLE001 - an unknown scope prefix
        return False


def _failed(check: ComponentCheck, stage: str, exc: BaseException) -> ComponentCheck:
    check.status = FAILED
    check.detail = f"{stage} raised {_summary(exc)}"
    if check.predicted:
        check.detail += f" (predicted by {', '.join(check.predicted)})"
    return check


def _count(check: ComponentCheck, module, stack: str, paramwise, at_build: set) -> None:
    from torch.nn.modules.batchnorm import _BatchNorm

    norms = [m for m in module.modules() if isinstance(m, _BatchNorm)]
    params = list(module.named_parameters())
    check.batchnorm_total = len(norms)
    check.batchnorm_training = sum(1 for m in norms if m.training)
    check.total = len(params)
    check.trainable = sum(1 for _, p in params if p.requires_grad)
    check.values = sum(p.numel() for _, p in params)
    check.trainable_values = sum(p.numel() for _, p in params if p.requires_grad)
    gets_all = stack != MMENGINE or not paramwise
    received = [p for _, p in params if gets_all or id(p) in at_build]
    check.frozen_received = sum(1 for p in received if not p.requires_grad)
    check.parameter_names = [name for name, _ in params]


def _forward_backward(module, comp: Component, size: int) -> Optional[int]:
    """One forward/backward on random input; the number of parameters that got a gradient."""
    import torch

    inputs = _inputs(comp, size)
    if inputs is None:
        return None
    outputs = module(inputs)
    tensors = [
        t
        for t in (outputs if isinstance(outputs, (list, tuple)) else [outputs])
        if torch.is_tensor(t)
    ]
    loss = sum(t.float().mean() for t in tensors)
    if torch.is_tensor(loss) and loss.requires_grad:
        loss.backward()
    return sum(1 for p in module.parameters() if p.grad is not None)


def _inputs(comp: Component, size: int):
    import torch

    torch.manual_seed(0)
    name = comp.cls.name if comp.cls else ""
    if name in ("ResNet", "ResNeXt", "RegNet", "SwinTransformer"):
        return torch.randn(2, int(comp.cfg.get("in_channels", 3)), size, size)
    channels = comp.cfg.get("in_channels")
    if comp.cls is not None and comp.cls.role == "backbone" and isinstance(channels, int):
        return torch.randn(2, channels, size, size)  # a 2-D backbone (SECOND on BEV features)
    if name == "FPN":
        channels = comp.cfg.get("in_channels", [])
        return [
            torch.randn(2, int(c), max(size >> i, 1), max(size >> i, 1))
            for i, c in enumerate(channels)
        ]
    return None


def _millions(count: Optional[int]) -> str:
    if count is None:
        return "?"
    return f"{count / 1e6:.2f}M" if count >= 1_000_000 else f"{count:,}"


def _summary(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


def render_text(report: VerifyReport) -> List[str]:
    lines = [
        f"{report.config}: built with mmengine + mmcv-lite + mmdet on CPU ({report.stack} optimizer rules)"
    ]
    for check in report.checks:
        lines.append(
            f"  {check.component}: {check.type} - {check.status}"
            + (f": {check.detail}" if check.detail else "")
        )
        if check.total is not None:
            lines.append(
                f"    parameters: {check.trainable}/{check.total} trainable; frozen ones the optimizer "
                f"would still receive: {check.frozen_received}"
            )
            lines.append(
                f"    parameter values: {_millions(check.values)} "
                f"({_millions(check.trainable_values)} trainable)"
            )
            lines.append(
                f"    BatchNorm in train mode after train(): {check.batchnorm_training}/{check.batchnorm_total}"
            )
        if check.gradients is not None:
            lines.append(f"    one forward/backward: {check.gradients} parameter(s) got a gradient")
    for key in report.unmatched_keys:
        lines.append(f"  custom key '{key}' matches no parameter")
    if report.unmatched_note:
        lines.append(f"  custom keys {report.unmatched_note}")
    for finding in report.static_errors:
        lines.append(f"  static: {finding.render()}")
    verified = sum(c.status == "verified" for c in report.checks)
    failed = sum(c.status == FAILED for c in report.checks)
    lines.append(
        f"{verified} verified, {failed} failed, {len(report.checks) - verified - failed} static only; "
        f"{len(report.static_errors)} static error(s): {'passed' if report.ok else 'FAILED'}"
    )
    return lines
