"""`bn2gn demo`: the whole migration on a copy of the bundled fixture repository, then the report.

Two copies of ``fixtures/centernet_mini`` go into the work directory: ``converted/`` gets the
migration exactly as a user runs it (``[1/4]`` ``bn2gn scan``, ``[2/4]`` ``bn2gn rewrite``,
``[3/4]`` ``bn2gn patch-trainer``, each as a subprocess), ``original/`` stays untouched and
``[4/4]`` builds a "pretrained" BatchNorm checkpoint from it. Then, per architecture ARCH:
``[ARCH 1/3]`` ``bn2gn remap-ckpt`` converts that checkpoint, ``[ARCH 2/3]`` runs the patched
``train.py`` under the test harness at batch size 1 from the remapped checkpoint, and ``[ARCH 3/3]``
runs the original ``train.py`` the same steps from the original checkpoint, for contrast.
Every step and every check goes into one report; any failed check makes the run fail.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from ..core.errors import EXIT_USAGE, Bn2gnError, Message, Opt, message_text
from ..verify.report import FAIL, PASS, WARN, Check, Section, all_ok
from .checks import arch_section
from .fixture import ARCHS, FACTORY, MODEL_ARGS, MODELS, TRAINER_FILES
from .harness import PROGRESS_PREFIX
from .runner import StepResult, run_step


@dataclasses.dataclass(frozen=True)
class DemoOptions:
    fixtures: Path
    workdir: Path
    device: str = "auto"
    steps: int = 8
    archs: Tuple[str, ...] = ARCHS
    input_size: int = 32
    skip_steps: Tuple[str, ...] = ()
    backbone_attrs: Tuple[str, ...] = ()


@dataclasses.dataclass
class DemoResult:
    workdir: Path
    device: str = "not resolved"
    steps: List[StepResult] = dataclasses.field(default_factory=list)
    sections: List[Section] = dataclasses.field(default_factory=list)
    comparison: List[dict] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all_ok(self.sections)


class Demo:
    """Runs the four shared steps and three per architecture, and builds the report; ``echo`` gets one
    line per step (text mode), labelled ``[n/4]`` or ``[ARCH n/3]`` and naming the copy it ran in."""

    def __init__(
        self,
        options: DemoOptions,
        echo: Callable[[str], None] = lambda line: None,
        progress: Optional[Callable[[str], None]] = None,
    ):
        self.options = options
        self.echo = echo
        self.progress = progress
        self.result = DemoResult(options.workdir.resolve())
        root = self.result.workdir
        self.converted, self.original = root / "converted", root / "original"
        self.checkpoints, self.runs, self.logs = root / "checkpoints", root / "runs", root / "logs"
        self.pipeline = Section("migration steps")
        self.result.sections.append(self.pipeline)
        self._log_numbers = itertools.count(1)

    @property
    def attrs(self) -> Tuple[str, ...]:
        return self.backbone.spellings

    @functools.cached_property
    def backbone(self):
        """The backbone the plan of the migrated models keeps (names plus ``Root.attr`` entries): the
        same decision patch-trainer baked into the freeze, checked by the harness. Read after the
        migration steps, when the converted copy exists."""
        from ..api import Session, load_settings

        settings = load_settings([self.converted], backbone_names=self.options.backbone_attrs)
        session = Session([self.converted / "lib" / "models"], settings, tolerate_no_model=True)
        return session.backbone

    def run(self) -> DemoResult:
        # [4/4] only needs the original copy, so it runs while [1/4]-[3/4] convert the other one.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pretrain = pool.submit(self._pretrain)
            migrated = self._migrate()
            step, info = pretrain.result()
        self._announce_pretrain(step, info)
        if migrated and info is not None:
            self.result.device = self._device(info)
            for arch in self.options.archs:
                self.result.sections.append(self._arch(arch, info))
        return self.result

    # --- steps 1-4 ---------------------------------------------------------------------------
    def _migrate(self) -> bool:
        bn2gn_cmd = [sys.executable, "-m", "bn2gn"]
        planned = [
            ("scan", "1/4", [*bn2gn_cmd, "scan", MODELS]),
            ("rewrite", "2/4", [*bn2gn_cmd, "rewrite", MODELS]),
            ("patch-trainer", "3/4", [*bn2gn_cmd, "patch-trainer", *TRAINER_FILES]),
        ]
        for name, label, argv in planned:
            if name in self.options.skip_steps:
                self._add(
                    Check(
                        f"step-{name}",
                        WARN,
                        message_text(
                            f"[{label}] (converted/) bn2gn {name} skipped (",
                            Opt("skip_step", name),
                            "): the migration is deliberately incomplete, the checks below must "
                            "catch it",
                        ),
                    )
                )
                continue
            if not self._run(name, label, argv, self.converted).ok:
                return False
        if "patch-trainer" not in self.options.skip_steps:
            self._check_injected_backbone()
        return True

    def _check_injected_backbone(self) -> None:
        """The freeze patch-trainer injected must carry the plan's backbone (what the harness checks);
        when it does not, say so and how to update it, not that calls are missing."""
        from ..verify.freeze_source import load_freeze_logic
        from ..verify.run import freeze_backbone_checks

        files = [self.converted / name for name in TRAINER_FILES]
        logic = load_freeze_logic([f for f in files if f.is_file()], ())
        for check in freeze_backbone_checks(logic, self.backbone):
            self._add(check)

    def _pretrain(self) -> Tuple[StepResult, Optional[dict]]:
        archs = [a for arch in self.options.archs for a in ("--arch", arch)]
        argv = [
            sys.executable,
            "-m",
            "bn2gn.demo.pretrain",
            *archs,
            "--out-dir",
            self._rel(self.checkpoints, self.original),
            "--input-size",
            str(self.options.input_size),
        ]
        step = self._run("pretrain", "4/4", argv, self.original, capture=True, announce=False)
        return step, _json_or_none(step.stdout) if step.ok else None

    def _announce_pretrain(self, step: StepResult, info: Optional[dict]) -> None:
        written = ", ".join(
            f"{Path(c['path']).name} ({c['trained_batchnorm']} BatchNorm with trained statistics)"
            for c in (info or {}).get("checkpoints", {}).values()
        )
        self._announce(step, "4/4", f"original model, wrote {written}" if info else "")

    def _device(self, info: dict) -> str:
        wanted = self.options.device
        if wanted == "auto":
            return "cuda" if info.get("cuda_available") else "cpu"
        if wanted == "cuda" and not info.get("cuda_available"):
            raise Bn2gnError(
                Message(
                    Opt("device", "cuda"),
                    f": torch {info.get('torch', '?')} reports no CUDA device here "
                    "(torch.cuda.is_available() is False); use ",
                    Opt("device", "auto"),
                    " or cpu",
                ),
                EXIT_USAGE,
            )
        return wanted

    # --- [ARCH 1/3] .. [ARCH 3/3], per architecture ------------------------------------------
    def _arch(self, arch: str, info: dict) -> Section:
        pretrained = Path(info["checkpoints"][arch]["path"])
        pretrained = pretrained if pretrained.is_absolute() else self.original / pretrained
        remapped = self.checkpoints / f"pretrained_{arch}.bn2gn.pth"
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            contrast = pool.submit(
                self.train, arch, "original", pretrained, original=True, record=False
            )
            remap = self._remap(arch, pretrained, remapped)
            patched = self.train(
                arch,
                "patched",
                remapped if remap else pretrained,
                expect_state=remapped,
                expect_backbone=pretrained,
                label=f"{arch} 2/3",
            )
            original = contrast.result()
        self._announce(
            original[0], f"{arch} 3/3", "the same steps on the unpatched copy, for contrast"
        )
        title = (
            f"{arch} on {self.result.device}: {self.options.steps} steps at batch size 1, "
            f"input {self.options.input_size}x{self.options.input_size}"
        )
        return arch_section(title, patched[1], original[1], remap)

    def _remap(self, arch: str, pretrained: Path, remapped: Path) -> Optional[dict]:
        model_args = [a for arg in (f"arch={arch}", *MODEL_ARGS) for a in ("--model-arg", arg)]
        argv = [
            sys.executable,
            "-m",
            "bn2gn",
            "remap-ckpt",
            self._rel(pretrained, self.converted),
            "-o",
            self._rel(remapped, self.converted),
            "--force",
            "--model",
            FACTORY,
            *model_args,
            "--path",
            ".",
            "--format",
            "json",
        ]
        step = self._run(
            f"remap-ckpt ({arch})",
            f"{arch} 1/3",
            argv,
            self.converted,
            capture=True,
            announce=False,
        )
        report = _json_or_none(step.stdout) if step.ok else None
        self._announce(step, f"{arch} 1/3", _remap_summary(report) if report else "")
        return report

    def train(
        self,
        arch: str,
        variant: str,
        checkpoint: Path,
        original: bool = False,
        expect_state: Optional[Path] = None,
        expect_backbone: Optional[Path] = None,
        batch_size: int = 1,
        steps: Optional[int] = None,
        label: Optional[str] = None,
        record: bool = True,
    ) -> Tuple[StepResult, Optional[dict]]:
        """Run train.py of one copy (``original`` or converted) under the harness; return the step and its record.

        ``label`` puts the step in the report; ``record=False`` leaves it out of the step list for the
        caller to announce later (a run in the background finishes in no particular order).
        """
        repo = self.original if original else self.converted
        steps = steps or self.options.steps
        report = self.runs / f"{arch}-{variant}.json"
        harness = [sys.executable, "-m", "bn2gn.demo.harness", "--report", str(report)]
        harness += [a for attr in self.attrs for a in ("--backbone-attr", attr)]
        for flag, path in (
            ("--expect-state", expect_state),
            ("--expect-backbone", expect_backbone),
        ):
            if path is not None:
                harness += [flag, self._rel(path, repo)]
        script = [
            "train.py",
            "--arch",
            arch,
            "--device",
            self.result.device,
            "--batch_size",
            str(batch_size),
            "--num_samples",
            str(batch_size),
            "--num_iters",
            "1",
            "--num_epochs",
            str(steps),
            "--input_h",
            str(self.options.input_size),
            "--input_w",
            str(self.options.input_size),
            "--load_model",
            self._rel(checkpoint, repo),
            "--save_dir",
            f"exp/{arch}-{variant}",
            "--seed",
            "317",
        ]
        on_line = self._progress_for(arch, variant, steps) if label else None
        if report.exists():
            report.unlink()
        step = self._run(
            f"train ({arch}, {variant})",
            label,
            [*harness, "--", *script],
            repo,
            on_line=on_line,
            announce=False,
        )
        step.display = f"python {' '.join(script)}"
        if label is not None:
            self._announce(step, label, "converted copy, under the bn2gn test harness")
        elif record:
            self.result.steps.append(step)
        return step, _json_or_none(report.read_text(encoding="utf-8")) if report.is_file() else None

    # --- helpers -----------------------------------------------------------------------------
    def _run(
        self,
        name: str,
        label: Optional[str],
        argv: List[str],
        cwd: Path,
        capture: bool = False,
        on_line=None,
        announce: bool = True,
    ) -> StepResult:
        log = self.logs / f"{next(self._log_numbers):02d}-{_slug(name)}.log"
        step = run_step(name, argv, cwd, log, capture_stdout=capture, on_line=on_line)
        if self.progress is not None and on_line is not None:
            self.progress("")
        if announce:
            self._announce(step, label)
        return step

    def _announce(self, step: StepResult, label: Optional[str], summary: str = "") -> None:
        """Add the step to the report: label, the copy it ran in, its command, time, and a summary
        (default: its last output line)."""
        step.label = label or ""
        self.result.steps.append(step)
        status = PASS if step.ok else FAIL
        summary = summary or step.tail()
        value = f"[{label or '-'}] ({step.cwd.name}/) {step.command()} ({step.seconds:.1f}s)" + (
            f": {summary}" if summary else ""
        )
        message = "" if step.ok else f"exit status {step.exit_code}; full output in {step.log}"
        self._add(Check(f"step-{_slug(step.name)}", status, value, message, step.as_dict()))

    def _add(self, check: Check) -> None:
        self.pipeline.checks.append(check)
        self.echo(
            f"  {check.status.upper():<4}  {check.value}"
            + (f"\n        -> {check.message}" if check.message else "")
        )

    def _progress_for(self, arch: str, variant: str, steps: int) -> Callable[[str], None]:
        def on_line(line: str) -> None:
            if self.progress is not None and line.startswith(PROGRESS_PREFIX):
                parts = line[len(PROGRESS_PREFIX) :].split()
                self.progress(
                    f"training {arch} ({variant}): step {parts[0]}/{steps} loss {parts[2]}"
                )

        return on_line

    @staticmethod
    def _rel(path: Path, start: Path) -> str:
        return os.path.relpath(path, start)


def conclusion(result: DemoResult, options: DemoOptions) -> str:
    """One sentence: what this run showed (or that it showed nothing, and where to look)."""
    archs = " and ".join(options.archs)
    failed = [c.name for s in result.sections for c in s.checks if not c.passed]
    skipped = ", ".join(options.skip_steps)
    if failed and skipped:
        return (
            f"This run left out {skipped} on purpose and the checks caught it: {len(failed)} check(s) failed "
            f"({', '.join(dict.fromkeys(failed))})."
        )
    if failed:
        return (
            f"This run proved nothing yet: {len(failed)} check(s) failed ({', '.join(dict.fromkeys(failed))}); "
            "the step logs are in the work directory."
        )
    if skipped:
        return f"The checks did not catch the skipped step(s) ({skipped}): please report this."
    return (
        f"This run proved, on {result.device}, that bn2gn migrates the fixture detector ({archs}) the way a user "
        "would: the converted model loads its remapped checkpoint with every tensor in place and trains at "
        "batch size 1 with falling loss, every backbone BatchNorm stays frozen and bit-identical, "
        "and the unpatched copy's "
        "backbone statistics drift under the same steps."
    )


def _remap_summary(report: dict) -> str:
    counts = [sd["counts"] for sd in report.get("state_dicts", [])]
    kept = sum(c["kept"] for c in counts)
    dropped = sum(c["dropped"] for c in counts)
    layers = sum(c["converted_layers"] for c in counts)
    check = report.get("verification") or {}
    verdict = (
        "strict load clean"
        if check.get("clean")
        else "loads"
        if check.get("ok")
        else "verification FAILED"
    )
    return f"{kept} tensors kept, {dropped} dropped from {layers} converted layers; against the model: {verdict}"


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name).strip("-").replace("--", "-")


def _json_or_none(text: str) -> Optional[dict]:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None
