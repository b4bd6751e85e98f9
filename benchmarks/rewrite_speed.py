"""Speed of scan and rewrite on big trees, measured side by side in one run (issue 6, 'Speed').

Trees: the installed torch package, and a synthetic detector repository generated here (>= 1,000
files, a few percent with BatchNorm sites in backbone and head classes of different files), plus
the same repository without any BatchNorm. For each tree, one after the other:

  floor     a Python process that reads every .py file
  noop      python -m libcst.tool codemod noop.NOOPCommand -j 2 (on a copy: the codemod writes)
  scan      python -m bn2gn scan -q
  rewrite   python -m bn2gn rewrite --diff -j 2

Targets: rewrite --diff <= 0.2 x the no-op codemod on the same tree; scan of the tree without
BatchNorm <= 3 x the floor. Prints seconds, files/s and the ratios; exit 1 when a target is missed.

    python benchmarks/rewrite_speed.py                      # both trees
    python benchmarks/rewrite_speed.py --trees synthetic    # a minute or two
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

REWRITE_TARGET = 0.2
SCAN_FLOOR_TARGET = 3.0
FLOOR = (
    "import os,sys\nn=0\nfor d,_,fs in os.walk(sys.argv[1]):\n for f in fs:\n  if f.endswith('.py'):\n"
    "   p=os.path.join(d,f)\n   if os.path.isfile(p):\n    open(p,'rb').read(); n+=1\nprint(n)\n"
)


# -- the synthetic detector repository ------------------------------------------------------------------
BACKBONE = """import torch.nn as nn


class BasicBlock{i}(nn.Module):
    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, momentum=0.1)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)

    def forward(self, x):
        return self.bn2(self.conv2(self.bn1(self.conv1(x)).relu())).relu()


class Backbone{i}(nn.Module):
    def __init__(self, channels=(16, 32, 64)):
        super().__init__()
        self.base_layer = nn.Sequential(nn.Conv2d(3, channels[0], 7, 1, 3), nn.BatchNorm2d(channels[0]))
        self.levels = nn.ModuleList(self._make_level(a, b) for a, b in zip(channels, channels[1:]))

    def _make_level(self, inplanes, planes):
        return nn.Sequential(BasicBlock{i}(inplanes, planes, 2), BasicBlock{i}(planes, planes))

    def forward(self, x):
        x = self.base_layer(x)
        for level in self.levels:
            x = level(x)
        return x
"""
HEAD = """import torch.nn as nn


class DeformConv{i}(nn.Module):
    def __init__(self, chi, cho):
        super().__init__()
        self.actf = nn.Sequential(nn.BatchNorm2d(cho, momentum=0.1), nn.ReLU(inplace=True))
        self.conv = nn.Conv2d(chi, cho, 3, padding=1)

    def forward(self, x):
        return self.actf(self.conv(x))


class Head{i}(nn.Module):
    def __init__(self, channels, classes):
        super().__init__()
        self.proj = DeformConv{i}(channels, channels)
        self.deconv = self._make_deconv_layer(channels)
        self.hm = nn.Conv2d(channels, classes, 1)

    def _make_deconv_layer(self, planes):
        layers = []
        layers.append(nn.ConvTranspose2d(planes, planes, 4, 2, 1))
        layers.append(nn.BatchNorm2d(planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        return self.hm(self.deconv(self.proj(x)))
"""
DETECTOR = """import torch.nn as nn

from ..backbones.backbone_{i} import Backbone{i}
from ..heads.head_{i} import Head{i}


class Detector{i}(nn.Module):
    def __init__(self, classes=80):
        super().__init__()
        self.backbone = Backbone{i}()
        self.head = Head{i}(64, classes)

    def forward(self, x):
        return self.head(self.backbone(x))
"""
FILLER = '''"""Utility module {i}: boxes, anchors and bookkeeping (synthetic benchmark code)."""
import math
from typing import List, Tuple

import torch


def box_area_{i}(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def iou_{i}(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    lt = torch.max(a[:, None, :2], b[:, :2])
    rb = torch.min(a[:, None, 2:], b[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (box_area_{i}(a)[:, None] + box_area_{i}(b) - inter)


class AnchorGenerator{i}:
    """Anchors for one feature level."""

    def __init__(self, sizes: Tuple[int, ...] = (32, 64, 128), ratios=(0.5, 1.0, 2.0)):
        self.sizes = sizes
        self.ratios = ratios
        self.cache = {{}}

    def base_anchors(self) -> List[Tuple[float, float, float, float]]:
        out = []
        for size in self.sizes:
            for ratio in self.ratios:
                w = size * math.sqrt(ratio)
                h = size / math.sqrt(ratio)
                out.append((-w / 2, -h / 2, w / 2, h / 2))
        return out

    def grid(self, height: int, width: int, stride: int) -> torch.Tensor:
        key = (height, width, stride)
        if key not in self.cache:
            ys, xs = torch.meshgrid(torch.arange(height) * stride, torch.arange(width) * stride, indexing="ij")
            shifts = torch.stack([xs, ys, xs, ys], dim=-1).reshape(-1, 4)
            base = torch.tensor(self.base_anchors())
            self.cache[key] = (shifts[:, None, :] + base[None]).reshape(-1, 4)
        return self.cache[key]


def encode_{i}(boxes, anchors, weights=(10.0, 10.0, 5.0, 5.0)):
    wx, wy, ww, wh = weights
    aw = anchors[:, 2] - anchors[:, 0]
    ah = anchors[:, 3] - anchors[:, 1]
    ax = anchors[:, 0] + 0.5 * aw
    ay = anchors[:, 1] + 0.5 * ah
    bw = boxes[:, 2] - boxes[:, 0]
    bh = boxes[:, 3] - boxes[:, 1]
    bx = boxes[:, 0] + 0.5 * bw
    by = boxes[:, 1] + 0.5 * bh
    return torch.stack([wx * (bx - ax) / aw, wy * (by - ay) / ah, ww * torch.log(bw / aw), wh * torch.log(bh / ah)], 1)


def summarize_{i}(stats: dict) -> str:
    lines = []
    for key in sorted(stats):
        value = stats[key]
        if isinstance(value, float):
            lines.append(f"{{key}}: {{value:.4f}}")
        else:
            lines.append(f"{{key}}: {{value}}")
    return "\\n".join(lines)
'''


def make_synthetic(root: Path, files: int, with_batchnorm: bool) -> int:
    """A detector-like package of ``files`` files; 3 in every 100 hold BatchNorm (backbone, head, detector)."""
    pkg = root / "det"
    for sub in ("", "models", "models/backbones", "models/heads", "models/detectors", "utils"):
        (pkg / sub).mkdir(parents=True, exist_ok=True)
        (pkg / sub / "__init__.py").write_text("")
    count = 6
    models = files // 100 if with_batchnorm else 0
    for i in range(models):
        (pkg / "models" / "backbones" / f"backbone_{i}.py").write_text(BACKBONE.format(i=i))
        (pkg / "models" / "heads" / f"head_{i}.py").write_text(HEAD.format(i=i))
        (pkg / "models" / "detectors" / f"detector_{i}.py").write_text(DETECTOR.format(i=i))
        count += 3
    for i in range(files - count):
        (pkg / "utils" / f"util_{i}.py").write_text(FILLER.format(i=i))
    return files


# -- measuring ----------------------------------------------------------------------------------------------
def timed(command: List[str], cwd: Path, limit: float = None) -> float:
    """Wall-clock seconds of ``command``; ``inf`` when it ran past ``limit`` (it is stopped then)."""
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=limit,
        )
    except subprocess.TimeoutExpired:
        return float("inf")
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(
            f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[-500:]}"
        )
    return elapsed


def best_of(repeat: int, command: List[str], cwd: Path, limit: float = None) -> float:
    return min(timed(command, cwd, limit) for _ in range(repeat))


def noop_codemod(tree: Path, work: Path) -> float:
    """The no-op LibCST codemod on a copy of ``tree`` (it writes what it parses)."""
    copy = work / ("noop_" + tree.name)
    shutil.copytree(tree, copy, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "libcst.tool", "initialize", str(work)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        return timed(
            [
                sys.executable,
                "-m",
                "libcst.tool",
                "codemod",
                "noop.NOOPCommand",
                "-j",
                "2",
                "--no-format",
                "--hide-progress",
                str(copy),
            ],
            work,
        )
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def measure_tree(
    name: str, tree: Path, work: Path, repeat: int, scan_limit: float
) -> Dict[str, float]:
    """``scan`` also plans patch-trainer's insertions (LibCST on every file that mentions an optimizer),
    which has no target here; it is stopped after ``scan_limit`` seconds and shown as '>'."""
    py = sys.executable
    files = sum(1 for _ in tree.rglob("*.py"))
    print(f"\n{name}: {tree} ({files} .py files)", flush=True)
    row = {
        "files": files,
        "floor": best_of(repeat, [py, "-c", FLOOR, str(tree)], work),
        "rewrite": timed([py, "-m", "bn2gn", "rewrite", "--diff", "-j", "2", str(tree)], work),
        "noop": noop_codemod(tree, work),
        "scan": best_of(repeat, [py, "-m", "bn2gn", "scan", "-q", str(tree)], work, scan_limit),
    }
    for step in ("floor", "noop", "scan", "rewrite"):
        if row[step] == float("inf"):
            print(f"  {step:<8} > {scan_limit:.0f} s (stopped)", flush=True)
        else:
            print(f"  {step:<8} {row[step]:8.2f} s  {files / row[step]:9.0f} files/s", flush=True)
    return row


def verdict(label: str, ratio: float, target: float) -> bool:
    ok = ratio <= target
    print(f"  {label:<52} {ratio:6.3f}x  (target <= {target}x)  {'ok' if ok else 'MISSED'}")
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--trees", default="torch,synthetic", help="comma-separated: torch, synthetic"
    )
    parser.add_argument(
        "--files", type=int, default=1200, help="files in the synthetic tree (>= 1000)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="best of N for floor and scan")
    parser.add_argument(
        "--scan-limit", type=float, default=300, help="stop a scan after this many seconds"
    )
    args = parser.parse_args(argv)
    ok = True
    with tempfile.TemporaryDirectory(prefix="bn2gn-bench-") as folder:
        work = Path(folder)
        results = {}
        if "synthetic" in args.trees:
            make_synthetic(work / "synthetic", args.files, with_batchnorm=True)
            make_synthetic(work / "synthetic_no_bn", args.files, with_batchnorm=False)
            results["synthetic"] = measure_tree(
                "synthetic detector tree",
                work / "synthetic" / "det",
                work,
                args.repeat,
                args.scan_limit,
            )
            nobn = work / "synthetic_no_bn" / "det"
            results["no-bn"] = {
                "floor": best_of(args.repeat, [sys.executable, "-c", FLOOR, str(nobn)], work),
                "scan": best_of(
                    args.repeat, [sys.executable, "-m", "bn2gn", "scan", "-q", str(nobn)], work
                ),
            }
            print(
                f"\nsynthetic tree without BatchNorm: floor {results['no-bn']['floor']:.3f} s, "
                f"scan {results['no-bn']['scan']:.3f} s"
            )
        if "torch" in args.trees:
            torch_dir = Path(importlib.util.find_spec("torch").submodule_search_locations[0])
            results["torch"] = measure_tree(
                "installed torch package", torch_dir, work, 1, args.scan_limit
            )
        print("\nratios")
        for name in ("synthetic", "torch"):
            if name in results:
                row = results[name]
                ok &= verdict(
                    f"{name}: rewrite --diff -j 2 / no-op codemod -j 2",
                    row["rewrite"] / row["noop"],
                    REWRITE_TARGET,
                )
                print(
                    f"  {name + ': scan / floor':<52} {row['scan'] / row['floor']:6.3f}x  (no target)"
                )
        if "no-bn" in results:
            ok &= verdict(
                "no-BatchNorm tree: scan / read-every-file floor",
                results["no-bn"]["scan"] / results["no-bn"]["floor"],
                SCAN_FLOOR_TARGET,
            )
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
