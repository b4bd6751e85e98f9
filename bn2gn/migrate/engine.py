"""The one seam between ``bn2gn migrate`` / the LibCST commands and the engine.

Everything migrate and ``bn2gn.libcst_commands`` need from the rewrite and patch-trainer engines
goes through the functions below, and they call only the entry points the individual commands
(``bn2gn rewrite``, ``bn2gn patch-trainer``) call themselves. Keeping them in one module means
that when the engine's entry points move, only this file has to follow.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Sequence, TextIO, Tuple

from ..config import Config, load_config
from ..errors import SourceError, SourceFailure
from ..pipeline import CHECK, DIFF, WRITE, FileResult, apply_results, failed, unified_diff
from ..rules import Rule, select_rules
from ..sources import SourceText, decode_source

__all__ = [
    "CHECK",
    "DIFF",
    "WRITE",
    "FileResult",
    "Config",
    "load",
    "discover_files",
    "rewrite_rules",
    "trainer_options",
    "with_rules",
    "rewrite_tree",
    "SourceText",
    "patch_trainers",
    "rewrite_jobs",
    "rewrite_one",
    "patch_one",
    "source_from_bytes",
    "apply",
    "unified_diff",
    "file_key",
    "failed",
]


def load(paths: Sequence[Path], config_file: Optional[Path] = None, **values) -> Config:
    """The configuration the individual commands would use for these paths (nearest [tool.bn2gn])."""
    return load_config([Path(p) for p in paths], config_file=config_file, **values)


def discover_files(paths: Sequence[Path], config: Config) -> List[Path]:
    """The files ``bn2gn patch-trainer PATH`` would look at: default discovery, skipped folders skipped."""
    from ..discovery import discover

    return discover([Path(p) for p in paths], config.include, config.exclude).files


def rewrite_rules(config: Config) -> FrozenSet[Rule]:
    """The BN2GN1xx rules ``bn2gn rewrite`` would run with this configuration's --select/--skip."""
    return frozenset(
        r for r in select_rules(config.select, config.skip) if r.code.startswith("BN2GN1")
    )


def trainer_options(
    config: Config,
    exclude_frozen: bool = False,
    optimizer_calls: Sequence[str] = (),
    model_var: Optional[str] = None,
    helper_module: Optional[str] = None,
):
    """patch-trainer's options for a directory run; a ``--select`` naming only rewrite rules selects none."""
    from ..patch_trainer import TRAINER_RULES, TrainerOptions, trainer_rules
    from ..rules import rule_by_name

    rules = trainer_rules(config.select, config.skip, exclude_frozen, strict=False)
    if config.select and not any(rule_by_name(n) in TRAINER_RULES for n in config.select):
        rules = frozenset()
    return TrainerOptions(
        rules=rules,
        backbone_attrs=tuple(config.backbone_attrs),
        optimizer_calls=tuple(optimizer_calls),
        model_var=model_var,
        helper_module=helper_module,
    )


def with_rules(options, rules: FrozenSet[Rule]):
    """The same patch-trainer options running only ``rules`` (one LibCST command per rule)."""
    import dataclasses

    return dataclasses.replace(options, rules=frozenset(rules))


def rewrite_tree(
    paths: Sequence[Path], config: Config, rules: FrozenSet[Rule], plan_file: Optional[Path] = None
):
    """``bn2gn rewrite PATHS [--plan FILE]`` without writing: (RewriteRun, PlanApplication or None)."""
    from ..rewrite import rewrite_paths

    plan = project = applied = None
    if plan_file is not None:
        from ..analysis.plan_file import plan_for_rewrite

        plan, project, applied = plan_for_rewrite(plan_file, list(paths), config)
    return rewrite_paths(list(paths), config, rules, plan=plan, project=project), applied


def patch_trainers(
    files: Sequence[Path], options, rewritten: Dict[str, FileResult]
) -> Tuple[List[FileResult], List[str]]:
    """``bn2gn patch-trainer DIR`` without writing, on the text each file has after the rewrite.

    ``rewritten`` maps ``file_key(path)`` to the rewrite's changed results: those files are patched
    from their rewritten text, exactly what running patch-trainer after rewrite would read.
    """
    from ..patch_trainer import patch_files

    results, usage = patch_files(list(files), options)
    for index, result in enumerate(results):
        before = rewritten.get(file_key(result.path))
        if before is not None and result.status != "failed":
            patched, problem = patch_one(source_from_bytes(result.path, before.new_bytes), options)
            results[index] = patched
            usage += [problem] if problem else []
    return results, usage


def patch_one(source: SourceText, options) -> Tuple[FileResult, Optional[str]]:
    """patch-trainer on one text as in a directory run: (result, usage error or None)."""
    from ..codemods.freeze_before_optimizer import NeedsUserInput
    from ..patch_trainer import NotTrainingCode, patch_source

    try:
        return patch_source(source, options), None
    except NotTrainingCode:
        return FileResult(
            path=source.path, status="unchanged", source=source, new_text=source.text
        ), None
    except NeedsUserInput as exc:
        return failed(source.path, str(exc), source), str(exc)
    except (SourceError, SyntaxError) as exc:
        return failed(source.path, str(exc), source), None


def rewrite_jobs(
    paths: Sequence[Path], config: Config, rules: FrozenSet[Rule], plan_file: Optional[Path] = None
) -> Tuple[Dict[str, object], List[str]]:
    """Per-file rewrite jobs of the whole-tree plan, keyed by ``file_key``; plus the plan's errors."""
    from ..analysis.scan import build_plan
    from ..rewrite import plan_jobs

    if plan_file is not None:
        from ..analysis.plan_file import plan_for_rewrite

        plan, project, _ = plan_for_rewrite(plan_file, list(paths), config)
    else:
        plan, project = build_plan(list(paths), config)
    return {file_key(job.path): job for job in plan_jobs(plan, project, rules)}, list(plan.errors)


def rewrite_one(source: SourceText, job) -> FileResult:
    """``bn2gn rewrite``'s per-file transform for one planned file."""
    from ..rewrite import rewrite_source

    try:
        return rewrite_source(source, job)
    except (SourceError, SyntaxError) as exc:
        return failed(source.path, str(exc), source)


def source_from_bytes(path: Path, data: bytes) -> SourceText:
    """Decode bytes as bn2gn reads a file (BOM, PEP 263 cookie); raises SourceError."""
    return decode_source(Path(path), data)


def file_key(path) -> str:
    """One key per real file, whatever name (relative, absolute, display) it was reached by."""
    return os.path.realpath(path)


def apply(results: List[FileResult], mode: str, out: TextIO) -> int:
    """The individual commands' write / diff / check, plus: a file that changed since it was read is
    left alone (reported as failed, in place of its result in ``results``), so another program's
    edit is never overwritten."""
    if mode == WRITE:
        for index, result in enumerate(results):
            if result.status == "changed" and _changed_on_disk(result):
                results[index] = failed(
                    result.path,
                    SourceFailure.at(
                        result.path,
                        1,
                        "changed on disk while bn2gn was working; file left unchanged, run again",
                    ),
                    result.source,
                )
    return apply_results(results, mode, out)


def _changed_on_disk(result: FileResult) -> bool:
    try:
        return Path(result.path).read_bytes() != result.source.raw
    except OSError:
        return False
