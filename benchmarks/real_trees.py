"""bn2gn's speed and memory on real trees, measured side by side in one run (issue 11).

Trees (``--trees``, comma-separated; each found or prepared here, or given with ``--tree NAME=PATH``):

  torch       the installed torch package
  mmdet       the mmdet 3.3.0 wheel: ``pip download --no-deps mmdet==3.3.0`` into ``--cache``
              (default ~/.cache/bn2gn-bench), unpacked, ``.mim`` renamed ``mim``
  mmdet-nobn  a copy of it with every ``BatchNorm`` renamed (no BatchNorm site at all)
  mmdet-migrated  mmdet-nobn after ``bn2gn migrate --write``: nothing left to do
  centernet   the bundled fixture repository fixtures/centernet_mini
  centernet-migrated  that repository after ``bn2gn migrate --write`` (the pre-commit hook's case)
  synthetic   the generated detector tree of benchmarks/rewrite_speed.py (1,200 files)
  plain       the same generated tree with neither BatchNorm nor training code

For each tree, ``--rounds`` rounds each run every step once, in turn (floor, noop, scan, rewrite,
patch-trainer), so a slow spell on the shared machine hits all steps alike; the table shows the
median per step, the ratio to the no-op codemod and to the read floor, the peak RSS of the
process tree's biggest process (``wait4``), and, from one extra untimed ``-j 1`` run of each bn2gn
command, how many files it parsed with ``ast`` and how many times it called ``libcst.parse_module``.

  floor     a Python process that reads every .py file
  noop      python -m libcst.tool codemod noop.NOOPCommand -j 2 (on a copy: the codemod writes)
  scan      python -m bn2gn scan -q
  rewrite   python -m bn2gn rewrite --diff -j 2
  patch     python -m bn2gn patch-trainer --diff -j 2 (the tree as FILE: files without training code
            are left alone)
  pass      python -c pass (centernet, plain, mmdet-nobn, the migrated trees)
  cstfloor  Python's start, ``import libcst``, parse and regenerate every file that mentions
            BatchNorm2d: the least a LibCST rewrite costs (centernet)
  check     python -m bn2gn migrate --check -q: the pre-commit hook (centernet, plain, migrated trees)

The migrated trees run floor, pass, scan and check only.

A step that runs past ``--limit`` seconds is stopped and shown as ``>limit``. Exit 1 when a target
of issue 11 is missed. Examples:

    python benchmarks/real_trees.py                                   # every tree (~15 min on 2 cores)
    python benchmarks/real_trees.py --trees centernet,plain --rounds 5
    python benchmarks/real_trees.py --trees mmdet --tree mmdet=/path/to/unpacked/mmdet
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from rewrite_speed import FLOOR, make_synthetic  # noqa: E402

ROOT = HERE.parent
STEPS = ("floor", "noop", "scan", "rewrite", "patch")
#: steps some trees add: ``pass`` (Python's start), ``cstfloor`` (LibCST's own cost of the rewrite),
#: ``check`` (``migrate --check``, the pre-commit hook)
EXTRA_STEPS = {
    "centernet": ("pass", "cstfloor", "check"),
    "plain": ("pass", "check"),
    "mmdet-nobn": ("pass",),
}
#: migrated trees: what CI and pre-commit see once a repository is done, so only the checks run
MIGRATED_STEPS = ("floor", "pass", "scan", "check")
ALL_TREES = (
    "centernet",
    "centernet-migrated",
    "plain",
    "synthetic",
    "mmdet",
    "mmdet-nobn",
    "mmdet-migrated",
    "torch",
)
REAL = ("centernet", "mmdet", "mmdet-nobn", "torch")
MMDET = "mmdet==3.3.0"
#: the LibCST floor of a rewrite: start, import LibCST, parse and regenerate every file that
#: mentions BatchNorm2d (what any LibCST codemod of those files costs at least)
CST_FLOOR = """import os,sys
import libcst
for d,_,fs in os.walk(sys.argv[1]):
 for f in fs:
  if f.endswith('.py'):
   t=open(os.path.join(d,f),encoding='utf-8').read()
   if 'BatchNorm2d' in t: libcst.parse_module(t).code
"""


def steps_of(name: str) -> tuple:
    if name.endswith("-migrated"):
        return MIGRATED_STEPS
    return STEPS + EXTRA_STEPS.get(name, ())


# -- locating and preparing trees ---------------------------------------------------------------------------
def torch_tree() -> Path:
    import importlib.util

    return Path(importlib.util.find_spec("torch").submodule_search_locations[0])


def mmdet_tree(cache: Path) -> Path:
    """The unpacked mmdet wheel in ``cache`` (downloaded with pip the first time)."""
    tree = cache / "mmdet-3.3.0" / "mmdet"
    if tree.is_dir():
        return tree
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("mmdet-3.3.0-*.whl"))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", MMDET, "-d", str(cache)],
            check=True,
        )
        wheels = sorted(cache.glob("mmdet-3.3.0-*.whl"))
    unpacked = cache / "mmdet-3.3.0.tmp"
    shutil.rmtree(unpacked, ignore_errors=True)
    with zipfile.ZipFile(wheels[0]) as wheel:
        wheel.extractall(unpacked)
    mim = unpacked / "mmdet" / ".mim"
    if mim.exists():
        mim.rename(mim.with_name("mim"))  # a hidden folder would be skipped by discovery
    (cache / "mmdet-3.3.0").mkdir(exist_ok=True)
    (unpacked / "mmdet").rename(tree)
    shutil.rmtree(unpacked, ignore_errors=True)
    return tree


def renamed_copy(tree: Path, dest: Path, word: str = "BatchNorm", new: str = "BatchNrm") -> Path:
    """``tree`` with every ``word`` in its .py files replaced: the same code with no BatchNorm site."""
    shutil.copytree(tree, dest, ignore=shutil.ignore_patterns("__pycache__"))
    for path in dest.rglob("*.py"):
        data = path.read_bytes()
        if word.encode() in data:
            path.write_bytes(data.replace(word.encode(), new.encode()))
    return dest


def migrated_copy(tree: Path, dest: Path) -> Path:
    """``tree`` after ``bn2gn migrate --write``: an already migrated repository."""
    shutil.copytree(tree, dest, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "bn2gn", "migrate", "--write", "-q", str(dest)],
        cwd=dest,
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return dest


def prepare(name: str, work: Path, cache: Path, given: Dict[str, Path]) -> Path:
    if name in given:
        return given[name]
    if name.endswith("-migrated"):
        base = name[: -len("-migrated")]
        base = "mmdet-nobn" if base == "mmdet" else base
        source = prepare(base, work, cache, given)
        return migrated_copy(source, work / name / source.name)
    if name == "torch":
        return torch_tree()
    if name == "mmdet":
        return mmdet_tree(cache)
    if name == "mmdet-nobn":
        if (work / "mmdet_nobn" / "mmdet").is_dir():  # made already for mmdet-migrated
            return work / "mmdet_nobn" / "mmdet"
        return renamed_copy(given.get("mmdet") or mmdet_tree(cache), work / "mmdet_nobn" / "mmdet")
    if name == "centernet":
        return ROOT / "fixtures" / "centernet_mini"
    if name in ("synthetic", "plain"):
        make_synthetic(work / name, 1200, with_batchnorm=name == "synthetic")
        return work / name / "det"
    raise SystemExit(f"unknown tree {name!r}: use {', '.join(ALL_TREES)}")


# -- running one step ---------------------------------------------------------------------------------------
def run(command: List[str], cwd: Path, limit: float, env: Optional[dict] = None) -> tuple:
    """(wall seconds or inf, peak RSS MiB of the biggest process in the tree) of one command."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=env,
    )
    deadline = start + limit
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            os.wait4(proc.pid, 0)
            return float("inf"), float("nan")
        time.sleep(0.005)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    # bn2gn exits 1 when it finds work; a traceback (a console script that cannot import bn2gn
    # exits 1 too) is no measurement.
    if proc.returncode not in (0, 1) or "Traceback (most recent call last)" in err:
        raise SystemExit(
            f"{' '.join(map(str, command))} failed ({proc.returncode}): {err.strip()[-800:]}"
        )
    return elapsed, usage.ru_maxrss / 1024


PATCH_JOBS = [2]  # --patch-jobs: 1 leaves -j out (bn2gn before issue 11 had no patch-trainer -j)


def bn2gn_args(step: str, tree: Path, jobs: int = 2) -> List[str]:
    patch_jobs = ["-j", str(min(jobs, PATCH_JOBS[0]))] if PATCH_JOBS[0] > 1 and jobs > 1 else []
    return {
        "scan": ["scan", "-q", str(tree)],
        "rewrite": ["rewrite", "--diff", "-j", str(jobs), str(tree)],
        "patch": ["patch-trainer", "--diff", *patch_jobs, str(tree)],
        "check": ["migrate", "--check", "-q", str(tree)],
    }[step]


def command(step: str, tree: Path, noop_copy: Path) -> List[str]:
    py = sys.executable
    if step == "floor":
        return [py, "-c", FLOOR, str(tree)]
    if step == "pass":
        return [py, "-c", "pass"]
    if step == "cstfloor":
        return [py, "-c", CST_FLOOR, str(tree)]
    if step == "noop":
        return [
            py,
            "-m",
            "libcst.tool",
            "codemod",
            "noop.NOOPCommand",
            "-j",
            "2",
            "--no-format",
            "--hide-progress",
            str(noop_copy),
        ]
    return [py, "-m", "bn2gn", *bn2gn_args(step, tree)]


def parse_counts(step: str, tree: Path, work: Path, limit: float) -> dict:
    out = work / "counts.json"
    out.unlink(missing_ok=True)
    env = dict(os.environ, BN2GN_COUNT_OUT=str(out))
    seconds, _ = run(
        [sys.executable, str(HERE / "_count_parses.py"), *bn2gn_args(step, tree, jobs=1)],
        work,
        limit,
        env,
    )
    if seconds == float("inf") or not out.exists():
        return {"ast": None, "cst": None}
    return json.loads(out.read_text())


def measure(
    name: str, tree: Path, work: Path, rounds: int, limit: float, skip: frozenset = frozenset()
) -> dict:
    files = sum(1 for _ in tree.rglob("*.py"))
    print(f"\n{name}: {tree} ({files} .py files)", flush=True)
    steps = tuple(s for s in steps_of(name) if s not in skip)
    noop_copy = work / f"noop_{name}"
    if "noop" in steps:
        shutil.copytree(tree, noop_copy, ignore=shutil.ignore_patterns("__pycache__"))
    times: Dict[str, list] = {s: [] for s in steps}
    rss: Dict[str, list] = {s: [] for s in steps}
    stopped = set()
    for _ in range(rounds):
        for step in steps:
            if step in stopped:
                continue
            seconds, peak = run(command(step, tree, noop_copy), work, limit)
            times[step].append(seconds)
            rss[step].append(peak)
            if seconds == float("inf"):
                stopped.add(step)
    shutil.rmtree(noop_copy, ignore_errors=True)
    row = {"files": files, "rounds": rounds, "steps": steps}
    for step in steps:
        row[step] = float("inf") if step in stopped else statistics.median(times[step])
        row[f"{step}_rss"] = max((r for r in rss[step] if r == r), default=float("nan"))
    for step in ("scan", "rewrite", "patch", "check"):
        if step in steps:
            row[f"{step}_parses"] = (
                None if step in stopped else parse_counts(step, tree, work, limit)
            )
    print_table(name, row, limit)
    return row


def seconds_text(value: float, limit: float) -> str:
    return f">{limit:.0f}" if value == float("inf") else f"{value:.2f}"


def print_table(name: str, row: dict, limit: float) -> None:
    print(
        f"  {'step':<9}{'median s':>10}{'x noop':>9}{'x floor':>9}{'peak MiB':>10}{'ast files':>11}"
        f"{'LibCST parses':>15}"
    )
    for step in row["steps"]:
        value = row[step]
        parses = row.get(f"{step}_parses") or {}
        noop = row.get("noop", 0)
        noop = value / noop if noop not in (0, float("inf")) else float("nan")
        floor = value / row["floor"] if row["floor"] else float("nan")
        ratio = lambda r, value=value: "-" if value == float("inf") else f"{r:.3f}"  # noqa: E731
        print(
            f"  {step:<9}{seconds_text(value, limit):>10}{ratio(noop):>9}{ratio(floor):>9}"
            f"{row[step + '_rss']:>10.0f}{_count(parses.get('ast')):>11}{_count(parses.get('cst')):>15}",
            flush=True,
        )


def _count(value) -> str:
    return "-" if value is None else str(value)


# -- targets ------------------------------------------------------------------------------------------------
def targets(results: Dict[str, dict]) -> List[tuple]:
    """(label, value, target) for every target of issue 11 that the measured trees allow."""
    checks = []
    for name in REAL:
        if name in results and "noop" in results[name]:
            checks.append(
                (f"{name}: scan / noop", results[name]["scan"] / results[name]["noop"], 0.1)
            )
    for name in results:
        if "noop" not in results[name] or "rewrite" not in results[name]:
            continue
        checks.append(
            (
                f"{name}: rewrite --diff -j 2 / noop",
                results[name]["rewrite"] / results[name]["noop"],
                0.2,
            )
        )
    for name in ("mmdet", "torch"):
        if name in results and "noop" in results[name] and "patch" in results[name]:
            checks.append(
                (
                    f"{name}: patch-trainer --diff / noop",
                    results[name]["patch"] / results[name]["noop"],
                    0.2,
                )
            )
    if "mmdet" in results and "noop" in results["mmdet"] and "rewrite" in results["mmdet"]:
        checks.append(
            (
                "mmdet: peak RSS rewrite / noop",
                results["mmdet"]["rewrite_rss"] / results["mmdet"]["noop_rss"],
                1.5,
            )
        )
    checks += nothing_to_do_targets(results)
    if "torch" in results:
        checks.append(("torch: scan seconds", results["torch"]["scan"], 15.0))
        checks.append(("torch: scan peak MiB", results["torch"]["scan_rss"], 1024.0))
        if "rewrite" in results["torch"]:
            checks.append(("torch: rewrite --diff seconds", results["torch"]["rewrite"], 60.0))
    return checks


def nothing_to_do_targets(results: Dict[str, dict]) -> List[tuple]:
    """Trees with nothing to do cost little more than reading them; the pre-commit hook on a migrated
    repository little more than starting Python and reading it; a rewrite little more than LibCST."""
    checks = []
    for name in ("plain", "mmdet-nobn"):
        row = results.get(name)
        for step in ("scan", "check"):
            if row and step in row["steps"]:
                label = f"{name}: {'migrate --check' if step == 'check' else step} / floor"
                checks.append((label, row[step] / row["floor"], 3.0))
    row = results.get("centernet-migrated")
    if row:
        floor = row["pass"] + row["floor"]
        label = f"centernet-migrated: migrate --check / (pass + floor {floor:.2f} s)"
        checks.append((label, row["check"] / floor, 1.5))
    row = results.get("centernet")
    if row and "cstfloor" in row and "rewrite" in row:
        label = f"centernet: rewrite --diff -j 2 / LibCST floor {row['cstfloor']:.2f} s"
        checks.append((label, row["rewrite"] / row["cstfloor"], 1.2))
    return checks


def _compile_bn2gn() -> None:
    """Byte-compile bn2gn's own modules first: LibCST, the no-op's code, was byte-compiled when it was
    installed, and a checkout run under PYTHONDONTWRITEBYTECODE would otherwise compile bn2gn's ~80
    modules from source in every timed run (0.1-0.3 s), which no installed bn2gn does."""
    location = Path(_bn2gn_location())
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(location)],
        check=False,
        stdout=subprocess.DEVNULL,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--trees", default=",".join(ALL_TREES), help=f"comma-separated: {', '.join(ALL_TREES)}"
    )
    parser.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="use this folder for tree NAME instead of locating or preparing it",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path.home() / ".cache" / "bn2gn-bench",
        help="where the mmdet wheel is downloaded and unpacked",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds per tree (median is shown)"
    )
    parser.add_argument(
        "--limit", type=float, default=300, help="stop a step after this many seconds"
    )
    parser.add_argument(
        "--patch-jobs", type=int, default=2, help="patch-trainer -j (1: run it without -j)"
    )
    parser.add_argument(
        "--skip",
        default="",
        metavar="STEPS",
        help="comma-separated steps not to run (noop,rewrite,patch: the ratios to the floor only)",
    )
    args = parser.parse_args(argv)
    PATCH_JOBS[0] = args.patch_jobs
    skip = frozenset(s.strip() for s in args.skip.split(",") if s.strip())
    given = {}
    for item in args.tree:
        name, _, path = item.partition("=")
        given[name] = Path(path).resolve()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M %Z')}; "
        f"bn2gn from {_bn2gn_location()}"
    )
    _compile_bn2gn()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bn2gn-trees-") as folder:
        work = Path(folder)
        subprocess.run(
            [sys.executable, "-m", "libcst.tool", "initialize", str(work)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name in [t.strip() for t in args.trees.split(",") if t.strip()]:
            results[name] = measure(
                name, prepare(name, work, args.cache, given), work, args.rounds, args.limit, skip
            )
    print("\ntargets")
    ok = True
    for label, value, target in targets(results):
        if value != value or (
            value == 0 and "/ noop" in label
        ):  # nan, or measured against a stopped no-op
            ok = False
            print(
                f"  {label:<62} {'?':>8}  (target <= {target})  UNDECIDED (a step was stopped at --limit)"
            )
            continue
        met = value <= target
        ok &= met
        print(f"  {label:<62} {value:8.3f}  (target <= {target})  {'ok' if met else 'MISSED'}")
    return 0 if ok else 1


def _bn2gn_location() -> str:
    done = subprocess.run(
        [sys.executable, "-c", "import bn2gn,os;print(os.path.dirname(bn2gn.__file__))"],
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
