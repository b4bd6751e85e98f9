"""Which OpenMMLab versions a config targets: the runner style, the repository's pins, what is installed.

Installed packages are read only when they can be what the config runs on: the pinned version
when the repository pins one, else a version of the right generation for the config's runner
(mmcv 1.x runner: mmdet 2.x, mmdet3d 1.0.x, mmcv 1.x; mmengine runner: mmdet 3.x, mmdet3d >= 1.1,
mmcv 2.x). Nothing is imported: versions come from the distributions' metadata.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

PACKAGES = ("mmdet3d", "mmdet", "mmcv", "mmengine")
_DISTRIBUTIONS = {"mmcv": ("mmcv", "mmcv-full", "mmcv-lite")}
_PIN = re.compile(
    r"\b(mmdet3d|mmdet|mmcv-full|mmcv-lite|mmcv|mmengine)\s*==\s*([0-9][0-9A-Za-z.]*)"
)
#: the first version of each package that runs on mmengine (the newer generation)
_MMENGINE_FROM = {
    "mmdet3d": (1, 1),
    "mmdet": (3, 0),
    "mmcv": (2, 0),
    "mmengine": (0, 0),
}


@dataclasses.dataclass(frozen=True)
class Pin:
    package: str
    version: str
    where: str  # file:line


@dataclasses.dataclass(frozen=True)
class Installed:
    package: str
    version: str
    folder: Path


def release(version: str) -> Tuple[int, ...]:
    """``1.0.0rc5`` -> (1, 0, 0): the numeric release part."""
    parts = []
    for piece in version.split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.group() != piece:
            break
    return tuple(parts)


def pinned_versions(repo: Optional[Path]) -> Dict[str, Pin]:
    """``pkg==X`` in the repository's requirements*.txt, requirements/*.txt and setup.py."""
    if repo is None:
        return {}
    files = sorted(repo.glob("requirements*.txt")) + sorted(repo.glob("requirements/*.txt"))
    files += [repo / "setup.py"] if (repo / "setup.py").is_file() else []
    pins: Dict[str, Pin] = {}
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for number, line in enumerate(lines, 1):
            for name, version in _PIN.findall(line.split("#")[0]):
                package = "mmcv" if name.startswith("mmcv") else name
                pins.setdefault(package, Pin(package, version, f"{path}:{number}"))
    return pins


def installed_packages() -> Dict[str, Installed]:
    found = {}
    for package in PACKAGES:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.submodule_search_locations:
            continue
        version = _version(package)
        if version:
            folder = Path(list(spec.submodule_search_locations)[0])
            found[package] = Installed(package, version, folder)
    return found


def _version(package: str) -> str:
    for dist in _DISTRIBUTIONS.get(package, (package,)):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return ""


def generation_fits(package: str, version: str, mmengine_runner: bool) -> bool:
    newer = release(version) >= _MMENGINE_FROM[package]
    return newer if mmengine_runner else (newer is False and package != "mmengine")


def usable_installed(
    mmengine_runner: bool, pins: Dict[str, Pin], installed: Dict[str, Installed]
) -> Tuple[List[Installed], List[str]]:
    """(installed packages whose source is the config's stack, notes on the ones left out)."""
    usable, notes = [], []
    for package, have in installed.items():
        pin = pins.get(package)
        if pin is not None and release(pin.version) != release(have.version):
            notes.append(
                f"installed {package} {have.version} is not the pinned {pin.version} ({pin.where}): "
                "its source is not read"
            )
        elif pin is None and not generation_fits(package, have.version, mmengine_runner):
            runner = "mmengine" if mmengine_runner else "mmcv 1.x"
            notes.append(
                f"installed {package} {have.version} is not for the config's {runner} runner: "
                "its source is not read"
            )
        else:
            usable.append(have)
    return usable, notes


def target_versions(
    mmengine_runner: bool, pins: Dict[str, Pin], usable: List[Installed]
) -> Dict[str, Tuple[int, ...]]:
    """Package -> release the config runs on: pinned, else installed and fitting, else the runner's
    generation (mmdet 2 / mmdet3d 1.0 for the mmcv 1.x runner, mmdet 3.3 / mmdet3d 1.4 for mmengine)."""
    chosen = {"mmdet3d": (1, 4) if mmengine_runner else (1, 0)}
    chosen["mmdet"] = (3, 3) if mmengine_runner else (2,)
    chosen.update({i.package: release(i.version) for i in usable})
    chosen.update({p.package: release(p.version) for p in pins.values()})
    return {k: v for k, v in chosen.items() if k in ("mmdet3d", "mmdet")}
