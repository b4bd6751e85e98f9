"""Run one demo step as a subprocess, the way a user would type it, with its output kept in a log file.

Steps run with the same interpreter (``sys.executable``) and with bn2gn's own folder first on
PYTHONPATH, so ``python -m bn2gn`` and the harness resolve to this very checkout.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional

import bn2gn

PACKAGE_PARENT = Path(bn2gn.__file__).resolve().parents[1]


@dataclasses.dataclass
class StepResult:
    name: str
    argv: List[str]
    cwd: Path
    log: Path
    exit_code: int
    seconds: float
    stdout: str = ""
    display: str = ""
    #: where the step sits in the demo: ``1/4`` (shared) or ``res_18 2/3`` (per architecture)
    label: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def command(self) -> str:
        """The command as a user would type it (``python`` for the interpreter), or the display form set."""
        if self.display:
            return self.display
        return shell_line(self.argv)

    def tail(self, lines: int = 1) -> str:
        """The last non-empty lines of the step's output: its summary line, or its error."""
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        kept = [line for line in text.splitlines() if line.strip() and not line.startswith("$ ")]
        return "\n".join(kept[-lines:])

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "label": self.label,
            "command": shell_line(self.argv),
            "cwd": str(self.cwd),
            "log": str(self.log),
            "exit_code": self.exit_code,
            "seconds": round(self.seconds, 3),
        }


def shell_line(argv: List[str]) -> str:
    """``argv`` as a user would type it: ``python`` for this interpreter, readable quoting."""
    words = []
    for arg in argv:
        arg = "python" if arg == sys.executable else arg
        quoted = shlex.quote(arg)
        if quoted != arg and "'" in arg and not any(c in arg for c in '"$`\\!'):
            quoted = f'"{arg}"'
        words.append(quoted)
    return " ".join(words)


def step_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PACKAGE_PARENT), env.get("PYTHONPATH", "")) if p
    )
    env["PYTHONUNBUFFERED"] = "1"
    # Runs go side by side (patched and contrast) on small models: one intra-op thread each avoids
    # oversubscribing the cores, which costs far more than it gains. An explicit setting wins.
    env.setdefault("OMP_NUM_THREADS", "1")
    env.pop("BN2GN_DEBUG", None)
    return env


def run_step(
    name: str,
    argv: List[str],
    cwd: Path,
    log: Path,
    capture_stdout: bool = False,
    on_line: Optional[Callable[[str], None]] = None,
) -> StepResult:
    """Run ``argv`` in ``cwd``; everything it prints goes to ``log`` (stdout is also returned when captured).

    ``on_line`` sees each output line as it arrives (for progress displays).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle:
        handle.write(f"$ (cd {cwd} && {' '.join(shlex.quote(a) for a in argv)})\n")
        handle.flush()
        if capture_stdout:
            done = subprocess.run(
                argv,
                cwd=cwd,
                env=step_env(),
                stdout=subprocess.PIPE,
                stderr=handle,
                text=True,
                errors="replace",
                check=False,
            )
            handle.write(done.stdout)
            return StepResult(
                name, argv, cwd, log, done.returncode, time.perf_counter() - started, done.stdout
            )
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=step_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
        )
        for line in process.stdout:
            handle.write(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))
        code = process.wait()
    return StepResult(name, argv, cwd, log, code, time.perf_counter() - started)
