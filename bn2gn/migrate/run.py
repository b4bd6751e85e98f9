"""``bn2gn migrate``: rewrite + patch-trainer over a whole repository, as one plan and one write.

The models are what the whole-tree analysis of ``bn2gn scan REPO`` decides; train scripts and
trainers are the files ``bn2gn patch-trainer REPO`` would change. A file both commands change
gets patch-trainer's edits on top of its rewritten text, so the tree after ``migrate --write`` is
the tree after running the two commands one after the other. Nothing else is ever written.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, TextIO

from .. import api as engine
from ..core.errors import EXIT_FAILED, EXIT_OK, Opt, SourceError, SourceFailure, message_text

if TYPE_CHECKING:  # imported where they are needed: --check prints no next steps, a run with no
    # file to patch judges nothing, and a plan with sites looks for no frozen BatchNorm
    # (``bn2gn-check`` on a migrated repository needs none of them)
    from .frozen_bn import FrozenUse
    from .next_steps import NextSteps
    from .not_training import LeftAlone

SCRIPT_RULES = ("BN2GN201", "BN2GN204")
TRAINER_RULES = ("BN2GN203",)


@dataclasses.dataclass(frozen=True)
class MigrateOptions:
    """What ``bn2gn migrate`` was asked: the repository, its settings, the mode and the flags."""

    repo: Path
    config: object
    mode: str = engine.DIFF
    plan_file: Optional[Path] = None
    exclude_frozen: bool = False
    optimizer_calls: tuple = ()
    helper_module: Optional[str] = None
    strict: bool = False


@dataclasses.dataclass
class MigrateResult:
    """The combined plan and, once applied, what happened to each file."""

    repo: Path
    mode: str
    plan: object  # decide.plan.Plan, with patch-trainer's edits as its insertions
    results: List[engine.FileResult]
    left_alone: List[LeftAlone] = dataclasses.field(default_factory=list)
    frozen_already: Optional[FrozenUse] = None  # set: nothing to migrate, the BatchNorm is frozen
    plan_application: object = None
    files: List[Path] = dataclasses.field(default_factory=list)
    next_steps: Optional[NextSteps] = None
    exit_code: int = EXIT_OK
    backbone: Optional[engine.Backbone] = None  # the decision the injected helpers carry

    def files_with(self, prefixes) -> List[str]:
        return sorted(
            {
                str(r.path)
                for r in self.results
                if r.status == "changed"
                and any(c.rule.code.startswith(prefixes) for c in r.changes)
            }
        )

    @property
    def models(self) -> List[str]:
        """Files holding BatchNorm sites of the plan (changed or not): the model code the analysis saw."""
        return sorted({site.path for site in self.plan.sites})

    @property
    def scripts(self) -> List[str]:
        return self.files_with(SCRIPT_RULES)

    @property
    def trainers(self) -> List[str]:
        return self.files_with(TRAINER_RULES)

    def counts(self) -> Dict[str, int]:
        return {
            "files_scanned": self.plan.files,
            "files_changed": sum(r.status == "changed" for r in self.results),
            "files_failed": sum(r.status == "failed" for r in self.results),
        }


def plan_migration(options: MigrateOptions) -> MigrateResult:
    """Everything rewrite and patch-trainer would do to ``repo``, combined per file; nothing written."""
    repo = options.repo
    session = engine.Session([repo], options.config, plan_file=options.plan_file)
    # one discovery and one read for the plan, patch-trainer and the search (a saved plan is read
    # and checked first, as before: its errors come before the tree's)
    tree = session.tree() if options.plan_file is None else None
    run = session.rewrite()
    applied = session.planned()[2]
    rewritten = {engine.file_key(r.path): r for r in run.results if r.status == "changed"}
    files = tree.files if tree is not None else session.discover_files()
    known = tree.raw if tree is not None else {}
    frozen = None if run.plan.sites else _frozen_use(repo, files, known)
    patched, left = _patch_trainers(
        options, session, run.plan, files, rewritten, frozen is None, known
    )
    results = _combine(run.results, patched, rewritten)
    plan = run.plan
    plan.insertions = [
        dict(path=str(r.path), line=c.line, rule=c.rule.code, message=c.message)
        for r in patched
        if r.status == "changed"
        for c in r.changes
    ]
    return MigrateResult(
        repo=repo,
        mode=options.mode,
        plan=plan,
        results=results,
        left_alone=left,
        frozen_already=frozen,
        plan_application=applied,
        files=files,
        backbone=session.backbone,
    )


def _frozen_use(repo: Path, files, known) -> Optional[FrozenUse]:
    """Where the repository freezes its BatchNorm itself (``frozen_bn``), asked of a plan that
    found no site only."""
    from .frozen_bn import frozen_batchnorm_use

    return frozen_batchnorm_use(repo, files, {}, known)


def _patch_trainers(
    options: MigrateOptions, session, plan, files, rewritten, wanted: bool, known=None
):
    """patch-trainer over the repository on the rewritten texts, without what is not the user's
    training code; ``wanted`` False: nothing to patch (the BatchNorm is frozen already); ``known``:
    the files' bytes as the plan read them."""
    trainer = session.trainer_options(
        options.exclude_frozen, options.optimizer_calls, helper_module=options.helper_module
    )
    if not (wanted and trainer.rules):
        return [], []
    # a file patch-trainer needs a per-file flag for is a failed file: the others are still migrated
    patched, _ = session.patch(files, trainer, rewritten=rewritten, known=known)
    patched = [_needs_flag(r, trainer) if r.status == "failed" else r for r in patched]
    if all(r.status == "unchanged" or r.source is None for r in patched):
        return patched, []  # what leave_alone gives for a run that edits nothing
    from .not_training import leave_alone

    script_only = dataclasses.replace(trainer, kind="script")
    return leave_alone(
        patched,
        options.repo,
        files,
        [site.path for site in plan.sites],
        lambda source: engine.patch_one(source, script_only)[0],
    )


def _needs_flag(result: engine.FileResult, trainer) -> engine.FileResult:
    """A file patch-trainer cannot patch without ``--model-var``: failed at the optimizer's line, with
    the patch-trainer command that settles it (migrate itself takes no per-file flag)."""
    from ..source.patch_trainer import patch_source
    from ..source.rules.bn2gn201_freeze_before_optimizer import NeedsUserInput

    if result.source is None:
        return result
    try:
        patch_source(result.source, trainer)
    except NeedsUserInput as exc:
        if exc.line is None:
            return result
        advice = message_text(
            f"{exc.reason}; file left unchanged: patch it on its own with "
            f"bn2gn patch-trainer {result.path} ",
            Opt("model_var", "NAME", command="patch-trainer"),
            " (migrate then finds it done), or ",
            Opt("exclude"),
            " it",
        )
        return engine.failed(
            result.path, SourceFailure.at(result.path, exc.line, advice), result.source
        )
    except (SourceError, SyntaxError, ValueError):
        pass
    return result


def _combine(rewrites, patches, rewritten) -> List[engine.FileResult]:
    """One result per file: the rewrite's, patch-trainer's, or the rewrite followed by patch-trainer."""
    by_key: Dict[str, engine.FileResult] = {}
    for result, key in zip(rewrites, engine.file_keys(r.path for r in rewrites)):
        by_key.setdefault(key, result)
    for result, key in zip(patches, engine.file_keys(r.path for r in patches)):
        before = by_key.get(key)
        if before is None or before.status == "unchanged":
            by_key[key] = result
        elif before.status == "changed" and result.status == "changed":
            by_key[key] = dataclasses.replace(
                result,
                path=before.path,
                source=before.source,
                changes=before.changes + result.changes,
                notes=before.notes + result.notes,
            )
        elif before.status == "changed" and result.status == "failed":
            by_key[key] = engine.failed(before.path, result.failure, before.source)
        elif before.status == "changed":
            by_key[key] = dataclasses.replace(before, notes=before.notes + result.notes)
    return sorted(by_key.values(), key=lambda r: str(r.path))


def apply_migration(
    result: MigrateResult, options: MigrateOptions, diff_out: TextIO, next_steps: bool = True
) -> MigrateResult:
    """Write / print diffs / check, then work out the remap-ckpt and verify lines (``next_steps``:
    unless the caller shows none, as ``migrate --check`` does); sets the exit code."""
    code = engine.apply(result.results, result.mode, diff_out)
    applied = result.plan_application
    if code == EXIT_OK and applied is not None and applied.skipped:
        code = EXIT_FAILED
    if code == EXIT_OK and options.strict and result.plan.counts()["unsure"]:
        code = EXIT_FAILED
    result.exit_code = code
    if not next_steps:
        return result
    from .next_steps import NextSteps, find_next_steps

    if result.frozen_already is not None:
        result.next_steps = NextSteps(cwd=str(options.repo), notes=[nothing_needed(result)])
        return result
    result.next_steps = find_next_steps(
        options.repo, _final_texts(result), result.scripts, result.trainers, result.files
    )
    return result


def nothing_needed(result: MigrateResult) -> str:
    return (
        f"nothing to migrate: the models hold no BatchNorm2d, and {result.frozen_already}, a "
        "BatchNorm whose statistics and affine are buffers: frozen already; no train script "
        "patched, no checkpoint to remap"
    )


def _final_texts(result: MigrateResult) -> Dict[str, str]:
    """The text each changed file has after the migration (what the next steps are read from)."""
    return {engine.file_key(r.path): r.new_text for r in result.results if r.status == "changed"}
