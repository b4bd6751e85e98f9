"""`bn2gn demo --compare-norm`: step time and peak memory, converted (GroupNorm heads) vs original (BatchNorm heads).

For each architecture and batch size, both copies' train.py run the same number of steps under the
harness from their checkpoints (remapped / original). The converted run is the whole migration:
GroupNorm heads *and* a frozen backbone BatchNorm; the original trains every BatchNorm. The median
step time leaves out the first step (warm-up); on CPU the median process CPU time per step is shown
too, since wall time on a shared machine follows its load. Memory is peak CUDA allocation on GPU,
process RSS on CPU. Measurements only: a comparison fails only when a run fails.
"""

from __future__ import annotations

from typing import Iterable, Optional

from ..verify.report import FAIL, INFO, Check, Section

VARIANTS = (("groupnorm", False, "GroupNorm heads"), ("batchnorm", True, "BatchNorm heads"))


def compare_norms(demo, batch_sizes: Iterable[int], steps: int) -> Section:
    """Run the comparison with ``demo`` (a finished bn2gn.demo.run.Demo); rows go to ``demo.result.comparison``."""
    result = demo.result
    section = Section(
        f"norm comparison on {result.device}: median step time (after the first of {steps} steps) "
        "and peak memory"
    )
    for arch in demo.options.archs:
        checkpoints = {
            "groupnorm": demo.checkpoints / f"pretrained_{arch}.bn2gn.pth",
            "batchnorm": demo.checkpoints / f"pretrained_{arch}.pth",
        }
        for batch in batch_sizes:
            row = {"arch": arch, "batch_size": batch, "device": result.device}
            for key, original, _ in VARIANTS:
                step, record = demo.train(
                    arch,
                    f"{key}-bs{batch}",
                    checkpoints[key],
                    original=original,
                    batch_size=batch,
                    steps=steps,
                )
                row[key] = _timing(record, step.exit_code, str(step.log))
            result.comparison.append(row)
            section.checks.append(_row_check(row))
    return section


def _timing(record: Optional[dict], exit_code: int, log: str) -> dict:
    steps = (record or {}).get("steps") or []
    times = [s["time_s"] for s in steps[1:] if s.get("time_s") is not None]
    cpu = [s["cpu_s"] for s in steps[1:] if s.get("cpu_s") is not None]
    memory = (record or {}).get("memory") or {}
    return {
        "median_step_s": _median(times),
        "median_step_cpu_s": _median(cpu),
        "steps_timed": len(times),
        "peak_cuda_bytes": memory.get("peak_cuda_bytes"),
        "peak_rss_bytes": memory.get("peak_rss_bytes"),
        "exit_code": exit_code,
        "log": log,
    }


def _median(values):
    return sorted(values)[len(values) // 2] if values else None


def _row_check(row: dict) -> Check:
    name = f"{row['arch']}-batch-{row['batch_size']}"
    gn, bn = row["groupnorm"], row["batchnorm"]
    if gn["median_step_s"] is None or bn["median_step_s"] is None:
        failed = gn if gn["median_step_s"] is None else bn
        return Check(
            name,
            FAIL,
            f"not measured (exit status {failed['exit_code']})",
            f"see {failed['log']}",
            row,
        )
    ratio = gn["median_step_s"] / bn["median_step_s"] if bn["median_step_s"] else float("nan")
    memory_kind = "CUDA" if gn["peak_cuda_bytes"] is not None else "RSS"
    key = "peak_cuda_bytes" if memory_kind == "CUDA" else "peak_rss_bytes"
    value = (
        f"GroupNorm heads {gn['median_step_s'] * 1000:.1f} ms/step vs BatchNorm heads "
        f"{bn['median_step_s'] * 1000:.1f} ms/step (x{ratio:.2f})"
    )
    if row["device"] == "cpu" and gn["median_step_cpu_s"] and bn["median_step_cpu_s"]:
        value += (
            f"; process CPU time {gn['median_step_cpu_s'] * 1000:.1f} vs {bn['median_step_cpu_s'] * 1000:.1f}"
            f" ms/step (x{gn['median_step_cpu_s'] / bn['median_step_cpu_s']:.2f})"
        )
    value += f"; peak {memory_kind} {_mib(gn[key])} vs {_mib(bn[key])}"
    return Check(name, INFO, value, data=row)


def _mib(n: Optional[int]) -> str:
    return "n/a" if n is None else f"{n / 2**20:.0f} MiB"
