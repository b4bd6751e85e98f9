"""Save the plans two bn2gn checkouts make, and compare them byte for byte.

A speed change must not change a plan. This runs ``bn2gn scan --format json``, ``scan -v``,
``migrate`` (its diff) and ``migrate --check --format json`` (stdout, stderr and exit code) with
the given checkout first on the path, from each folder as its own working directory, for
``fixtures`` and every folder below it and for any tree given with ``--tree``, and writes one file
per run into OUT:

    python benchmarks/compare_plans.py save --source /path/to/old/checkout OUT_OLD
    python benchmarks/compare_plans.py save --source . --tree /path/to/mmdet OUT_NEW
    python benchmarks/compare_plans.py compare OUT_OLD OUT_NEW

``compare`` lists every run whose output differs and exits 1 if any does.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "scan-json": ["scan", "--format", "json", "."],
    "scan-v": ["scan", "-v", "."],
    "migrate-diff": ["migrate", "."],
    "migrate-check-json": ["migrate", "--check", "--format", "json", "."],
}


def folders(extra) -> list:
    fixtures = ROOT / "fixtures"
    found = [fixtures] + sorted(
        p for p in fixtures.rglob("*") if p.is_dir() and "__pycache__" not in p.parts
    )
    return found + [Path(t).resolve() for t in extra]


def save(source: Path, out: Path, extra) -> None:
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(source.resolve()), PYTHONDONTWRITEBYTECODE="1")
    for folder in folders(extra):
        key = hashlib.sha1(str(folder).encode()).hexdigest()[:12]
        for name, args in COMMANDS.items():
            done = subprocess.run(
                [sys.executable, "-m", "bn2gn", *args], cwd=folder, capture_output=True, env=env
            )
            record = b"%s\nexit %d\n--- stdout\n%s\n--- stderr\n%s" % (
                str(folder).encode(),
                done.returncode,
                done.stdout,
                done.stderr,
            )
            (out / f"{key}-{name}.txt").write_bytes(record)


def compare(old: Path, new: Path) -> int:
    names = sorted({p.name for p in old.iterdir()} | {p.name for p in new.iterdir()})
    differ = []
    for name in names:
        a, b = old / name, new / name
        if not (a.exists() and b.exists()) or a.read_bytes() != b.read_bytes():
            first = (a if a.exists() else b).read_bytes().split(b"\n", 1)[0].decode()
            differ.append(f"{name}: {first}")
    print(f"{len(names)} runs, {len(differ)} differ")
    for line in differ:
        print("  " + line)
    return 1 if differ else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    one = sub.add_parser("save")
    one.add_argument("--source", type=Path, default=ROOT, help="the bn2gn checkout to run")
    one.add_argument("--tree", action="append", default=[], help="another folder to scan")
    one.add_argument("out", type=Path)
    two = sub.add_parser("compare")
    two.add_argument("old", type=Path)
    two.add_argument("new", type=Path)
    args = parser.parse_args(argv)
    if args.action == "save":
        save(args.source, args.out, args.tree)
        return 0
    return compare(args.old, args.new)


if __name__ == "__main__":
    sys.exit(main())
