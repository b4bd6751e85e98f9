"""Test harness: run a training script as ``__main__`` with the recorder's hooks installed.

    python -m bn2gn.demo.harness --report OUT.json [--backbone-attr NAME]... \\
        [--expect-state CKPT] [--expect-backbone CKPT] -- train.py [ARGS...]

The script runs unmodified, as ``python train.py ARGS`` would run it (its folder first on
sys.path, ``sys.argv`` set), so what is checked is the user's patched code, not bn2gn's idea of
it. One ``bn2gn-harness: step N loss X`` line per step goes to stderr for progress displays; the
record (see ``Recorder.finish``) is written to ``--report`` even when the script fails.
Exit status: the script's own, 1 if it raised, 3 if the report could not be written.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import sys
import traceback
from pathlib import Path
from typing import List, Optional

PROGRESS_PREFIX = "bn2gn-harness: step"


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bn2gn.demo.harness", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--report", required=True, type=Path, help="where to write the JSON record")
    parser.add_argument(
        "--backbone-attr",
        dest="backbone_attrs",
        action="append",
        default=[],
        help="backbone attribute (repeatable; defaults: backbone, base_layer)",
    )
    parser.add_argument(
        "--expect-state", help="checkpoint the whole model must equal at the first step"
    )
    parser.add_argument(
        "--expect-backbone", help="checkpoint the backbone BatchNorm must equal at the first step"
    )
    parser.add_argument("script", help="the training script")
    parser.add_argument("script_args", nargs=argparse.REMAINDER, help="its arguments")
    args = parser.parse_args(argv)
    if args.script_args[:1] == ["--"]:
        args.script_args = args.script_args[1:]
    return args


def print_progress(step: dict) -> None:
    loss = step["loss"]
    shown = f"{loss:.6f}" if isinstance(loss, float) else str(loss)
    print(
        f"{PROGRESS_PREFIX} {step['step']} loss {shown} time {step['time_s']:.3f}s",
        file=sys.stderr,
        flush=True,
    )


def run_script(script: Path, script_args: List[str]) -> tuple:
    """Run ``script`` as __main__; return (exit status, one-line error or None)."""
    saved_argv, saved_path = list(sys.argv), list(sys.path)
    sys.argv = [str(script), *script_args]
    sys.path.insert(0, str(script.resolve().parent))
    try:
        runpy.run_path(str(script), run_name="__main__")
        return 0, None
    except SystemExit as exc:
        code = exc.code
        if code is None or isinstance(code, int):
            return int(code or 0), None if not code else f"exited with status {code}"
        return 1, str(code)
    except BaseException as exc:  # noqa: BLE001 - the user's script: report it, never hide it
        traceback.print_exc()
        lines = str(exc).strip().splitlines()
        return 1, f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path


def main(argv: Optional[List[str]] = None) -> int:
    from ..core.settings import DEFAULT_BACKBONE_NAMES
    from ..verify.recorder import Recorder

    args = parse_args(sys.argv[1:] if argv is None else argv)
    attrs = tuple(dict.fromkeys(DEFAULT_BACKBONE_NAMES + tuple(args.backbone_attrs)))
    recorder = Recorder(
        attrs,
        expect_state=args.expect_state,
        expect_backbone=args.expect_backbone,
        on_step=print_progress,
    )
    recorder.install()
    try:
        code, error = run_script(Path(args.script), args.script_args)
    finally:
        recorder.remove()
    record = recorder.finish()
    record["script"] = {
        "path": args.script,
        "args": args.script_args,
        "exit_code": code,
        "error": error,
    }
    try:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.report.with_name(args.report.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
        os.replace(tmp, args.report)
    except OSError as exc:
        print(f"bn2gn-harness: cannot write {args.report}: {exc}", file=sys.stderr)
        return 3
    return code


if __name__ == "__main__":
    sys.exit(main())
