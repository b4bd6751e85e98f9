"""Benchmark `bn2gn remap-ckpt` against a plain ``torch.load`` + ``torch.save`` round trip.

    python benchmarks/remap_ckpt.py                 # ~1 GiB checkpoint, 3 alternating runs each
    python benchmarks/remap_ckpt.py --size-mb 64    # quick

What is built: a synthetic CenterNet-style checkpoint ``{'epoch', 'state_dict'}`` saved from a
DataParallel model (every key starts with ``module.``): a DLA-like backbone (3x3 convs, each
followed by BatchNorm) plus neck and head convs with BatchNorm, sized to ``--size-mb``. Building
happens in its own subprocess.

How it is measured (issue 4 targets: wall <= 1.2x the plain round trip, anonymous peak memory
above the ``import torch`` floor <= 0.1x the checkpoint size):

* Every measured run is a fresh ``python`` subprocess, so neither side inherits the other's
  heap. The plain side runs ``torch.load(map_location='cpu', weights_only=True)`` then
  ``torch.save`` to a new file; the bn2gn side runs ``bn2gn remap-ckpt SRC -o DST -q``
  in-process through the click entry point (fsync, re-open check and all).
* Memory: the parent polls ``/proc/<child>/status`` every millisecond and keeps the peak of
  ``RssAnon`` -- resident anonymous memory (heap, copies of tensors), which excludes
  file-backed pages such as an mmap'ed checkpoint and the page cache. The child reports its
  own ``RssAnon`` right after its imports (``import torch``; for bn2gn also bn2gn's modules):
  that is the floor. Reported figure: (peak - floor) / checkpoint size.
* Wall: ``time.perf_counter`` inside the child, from after the imports to the end of the
  work, so interpreter and torch start-up (the same for both) are not counted.
* Before every run the checkpoint is read once (page cache warm for both sides) and
  ``os.sync()`` flushes the previous run's output, so one run's writeback does not land in the
  next run's timing. Runs alternate plain / bn2gn; the table shows medians.

Exit status: 0 when both targets are met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BUILD = r"""
import collections, sys, torch
target = int(float(sys.argv[2]) * 2**20)
torch.manual_seed(0)
sd = collections.OrderedDict()
def conv_bn(prefix, cin, cout, k=3):
    sd[prefix + ".conv.weight"] = torch.randn(cout, cin, k, k)
    for name, value in (("weight", torch.ones(cout)), ("bias", torch.zeros(cout)),
                        ("running_mean", torch.randn(cout)), ("running_var", torch.rand(cout) + 0.5)):
        sd[prefix + ".bn." + name] = value
    sd[prefix + ".bn.num_batches_tracked"] = torch.tensor(1000)
conv_bn("module.backbone.base_layer", 3, 16, 7)
c, used, i = 256, 0, 0
while used < target * 0.70:
    conv_bn(f"module.backbone.level{2 + i // 8}.tree{i % 8}", c, c); used += c * c * 36; i += 1
i = 0
while used < target * 0.95:
    conv_bn(f"module.dla_up.ida_{i // 4}.proj_{i % 4}.actf", c, c); used += c * c * 36; i += 1
for head in ("hm", "wh", "reg"):
    conv_bn(f"module.{head}.0", c, 128)
    sd[f"module.{head}.2.weight"] = torch.randn(2, 128, 1, 1)
    sd[f"module.{head}.2.bias"] = torch.zeros(2)
i = 0
while used < target:
    conv_bn(f"module.proj_hm.{i}", c, c); used += c * c * 36; i += 1
torch.save({"epoch": 70, "state_dict": sd}, sys.argv[1])
print(len(sd))
"""

PRELUDE = r"""
import re, sys, time
def rss_anon_kb():
    with open('/proc/self/status') as f:
        return int(re.search(r'RssAnon:\s+(\d+)', f.read()).group(1))
"""

PLAIN = (
    PRELUDE
    + r"""
import torch
print('floor', rss_anon_kb(), flush=True)
t0 = time.perf_counter()
checkpoint = torch.load(sys.argv[1], map_location='cpu', weights_only=True)
torch.save(checkpoint, sys.argv[2])
print('wall', time.perf_counter() - t0, flush=True)
"""
)

BN2GN = (
    PRELUDE
    + r"""
import torch
import bn2gn.checkpoint, bn2gn.checkpoint.report, bn2gn.cli
print('floor', rss_anon_kb(), flush=True)
t0 = time.perf_counter()
bn2gn.cli.cli.main(['remap-ckpt', sys.argv[1], '-o', sys.argv[2], '-q'], prog_name='bn2gn', standalone_mode=False)
print('wall', time.perf_counter() - t0, flush=True)
"""
)


def measure(script: str, src: Path, dst: Path) -> dict:
    """Run ``script`` in a fresh interpreter; poll its RssAnon from outside; return wall, floor, peak (KiB)."""
    if dst.exists():
        dst.unlink()
    _warm_page_cache(src)
    os.sync()
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(src), str(dst)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    status = f"/proc/{child.pid}/status"
    peak = 0
    while child.poll() is None:
        try:
            with open(status) as handle:
                for line in handle:
                    if line.startswith("RssAnon:"):
                        peak = max(peak, int(line.split()[1]))
                        break
        except (FileNotFoundError, ProcessLookupError, ValueError):
            break
        time.sleep(0.001)
    out, err = child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"benchmark child failed ({child.returncode}):\n{err}")
    values = dict(line.split() for line in out.splitlines() if line.split()[0] in ("floor", "wall"))
    dst.unlink()
    return {"wall": float(values["wall"]), "floor": int(values["floor"]), "peak": peak}


def _warm_page_cache(path: Path) -> None:
    with open(path, "rb") as handle:
        while handle.read(1 << 24):
            pass


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size-mb", type=float, default=1024, help="checkpoint size in MiB (default 1024)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side (default 3)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where to build the checkpoint (default: a temp dir)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="bn2gn-bench-") as folder:
        src = Path(folder) / "model_last.pth"
        built = subprocess.run(
            [sys.executable, "-c", BUILD, str(src), str(args.size_mb)],
            capture_output=True,
            text=True,
            check=True,
        )
        size = src.stat().st_size
        print(
            f"checkpoint: {size / 2**20:.1f} MiB, {built.stdout.strip()} tensors "
            f"(CenterNet style, module. prefix); {args.repeat} runs each, medians"
        )
        runs = {"plain": [], "bn2gn": []}
        for _ in range(args.repeat):
            runs["plain"].append(measure(PLAIN, src, Path(folder) / "plain.pth"))
            runs["bn2gn"].append(measure(BN2GN, src, Path(folder) / "remapped.pth"))
    return report(runs, size)


def report(runs: dict, size: int) -> int:
    rows = {}
    print(f"{'':28}{'wall s':>10}{'anon peak MiB':>16}{'anon / size':>13}")
    for name, label in (("plain", "torch.load + torch.save"), ("bn2gn", "bn2gn remap-ckpt")):
        wall = statistics.median(r["wall"] for r in runs[name])
        anon = statistics.median((r["peak"] - r["floor"]) * 1024 for r in runs[name])
        rows[name] = (wall, anon)
        walls = ", ".join(f"{r['wall']:.2f}" for r in runs[name])
        print(f"{label:<28}{wall:>10.2f}{anon / 2**20:>16.1f}{anon / size:>13.3f}   runs: {walls}")
    wall_ratio = rows["bn2gn"][0] / rows["plain"][0]
    mem_ratio = rows["bn2gn"][1] / size
    print(
        f"wall ratio bn2gn/plain: {wall_ratio:.2f}x (target <= 1.2x); "
        f"bn2gn anonymous memory / checkpoint size: {mem_ratio:.3f} (target <= 0.1)"
    )
    return 0 if wall_ratio <= 1.2 and mem_ratio <= 0.1 else 1


if __name__ == "__main__":
    sys.exit(main())
