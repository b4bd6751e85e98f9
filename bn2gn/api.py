"""bn2gn's library seam: settings in, one plan, one backbone decision, every engine's options out.

Every front end — the click commands, ``bn2gn migrate``, the LibCST commands
(``bn2gn.libcst_commands``), ``bn2gn demo`` / ``verify`` — goes through a ``Session``: it loads the
settings once, builds the whole-tree plan once, derives the ``Backbone`` once, and constructs the
engines' options from it. What the plan keeps as backbone is therefore what patch-trainer freezes
and bakes into the injected helpers, what ``remap-ckpt`` keeps in the checkpoint, and what
``verify`` checks at run time; no front end can rebuild "what is backbone" from names on its own.

A front end is "flags -> Session -> engine -> render"::

    session = Session.open([repo], convert=("DLASeg.fc",))
    options = session.trainer_options()          # carries session.backbone
    results, usage = session.patch(files, options)

The module imports neither torch nor LibCST: the engines it hands on to do, lazily.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Sequence, TextIO, Tuple, Union

from .core.errors import Bn2gnError, Message, NothingToAnalyse, Opt, SourceError, SourceFailure
from .core.file_results import CHECK, DIFF, WRITE, FileResult, apply_results, failed, unified_diff
from .core.rule_codes import Rule, select_rules
from .core.settings import DEFAULT_BACKBONE_NAMES, Config, load_config
from .core.source_files import SourceText, decode_source
from .decide.backbone import Backbone, BackboneEntry

__all__ = [
    "CHECK",
    "DIFF",
    "WRITE",
    "Backbone",
    "BackboneEntry",
    "Config",
    "FileResult",
    "Session",
    "SourceText",
    "apply",
    "failed",
    "file_key",
    "file_keys",
    "load_settings",
    "patch_one",
    "remap_decision",
    "remap_options",
    "replace_rules",
    "rewrite_one",
    "source_from_bytes",
    "trainer_insertions",
    "unified_diff",
]


def load_settings(paths: Sequence[Path], config_file: Optional[Path] = None, **values) -> Config:
    """Defaults, the nearest ``[tool.bn2gn]`` above the first path, then ``values`` (the flags)."""
    return load_config([Path(p) for p in paths], config_file=config_file, **values)


class Session:
    """One set of model paths with its settings: the plan and the backbone, each built once.

    ``paths`` are what the analysis reads (a repository, ``lib/models``, the folder holding the
    given train scripts); the files an engine changes are passed to that engine's call.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        settings: Config,
        plan_file: Optional[Path] = None,
        with_insertions: bool = False,
        tolerate_no_model: bool = False,
    ):
        self.paths = [Path(p) for p in paths]
        self.settings = settings
        self.plan_file = Path(plan_file) if plan_file is not None else None
        self.with_insertions = with_insertions
        #: patch-trainer / verify on a folder without model code: the configured names decide
        self.tolerate_no_model = tolerate_no_model
        self._planned: Optional[Tuple[object, object, object]] = None
        self._backbone: Optional[Backbone] = None
        self._tree = None

    @classmethod
    def open(
        cls,
        paths: Sequence[Path],
        config_file: Optional[Path] = None,
        plan_file: Optional[Path] = None,
        **values,
    ) -> "Session":
        """Load the settings (found above the first path) and open a session; ``values``: the flags."""
        settings = load_settings(list(paths), config_file, **values)
        return cls(paths, settings, plan_file=plan_file)

    # -- the plan and the decision -----------------------------------------------------------------
    def planned(self) -> Tuple[object, object, object]:
        """(Plan, Project or None, PlanApplication or None), built on the first call only."""
        if self._planned is None:
            from .decide.scan import build_plan

            if self.plan_file is not None:
                from .decide.plan_file import plan_for_rewrite

                self._planned = plan_for_rewrite(self.plan_file, self.paths, self.settings)
            else:
                planner = trainer_insertions if self.with_insertions else None
                plan, project = build_plan(self.paths, self.settings, planner, tree=self._tree)
                self._planned = (plan, project, None)
        return self._planned

    @property
    def plan(self):
        return self.planned()[0]

    @property
    def backbone(self) -> Backbone:
        """The configured names plus every root's inferred backbone attributes, with evidence."""
        if self._backbone is None and not self.paths:
            # no model source named (verify without --path): only the names can be known
            self._backbone = Backbone.named(self.settings.backbone_names)
        if self._backbone is None:
            where = ", ".join(_display(p) for p in self.paths)
            try:
                plan = self.plan
            except NothingToAnalyse:
                if not self.tolerate_no_model:
                    raise
                self._backbone = Backbone.named(
                    self.settings.backbone_names,
                    source=f"configured names (no model under {where})",
                )
            else:
                self._backbone = Backbone.decided(
                    self.settings.backbone_names, plan.backbones, source=f"the plan of {where}"
                )
        return self._backbone

    # -- engines' options --------------------------------------------------------------------------
    def rewrite_rules(self) -> FrozenSet[Rule]:
        """The BN2GN1xx rules ``bn2gn rewrite`` runs with this session's ``select`` / ``skip``."""
        return frozenset(
            r
            for r in select_rules(self.settings.select, self.settings.skip)
            if r.code.startswith("BN2GN1")
        )

    def trainer_options(
        self,
        exclude_frozen: bool = False,
        optimizer_calls: Sequence[str] = (),
        model_var: Optional[str] = None,
        helper_module: Optional[str] = None,
        kind: Optional[str] = None,
        insert_before_line: Optional[int] = None,
        strict_select: bool = False,
    ):
        """patch-trainer's options, carrying this session's backbone. With ``strict_select`` a
        ``--select`` naming no patch-trainer rule is a usage error; otherwise it selects none."""
        from .core.rule_codes import rule_by_name
        from .source.patch_trainer import AUTO, TRAINER_RULES, TrainerOptions, trainer_rules

        select, skip = self.settings.select, self.settings.skip
        rules = trainer_rules(select, skip, exclude_frozen, strict=strict_select)
        if select and not any(rule_by_name(n) in TRAINER_RULES for n in select):
            rules = frozenset()
        return TrainerOptions(
            rules=rules,
            backbone=self.backbone,
            kind=kind or AUTO,
            optimizer_calls=tuple(optimizer_calls),
            model_var=model_var,
            insert_before_line=insert_before_line,
            helper_module=helper_module,
        )

    # -- engines -----------------------------------------------------------------------------------
    def tree(self):
        """One discovery and read of ``paths`` (``decide.scan.TreeRead``), kept for this session:
        the plan, made after, reads no file again, and a caller that patches or searches the same
        files can take their bytes from it."""
        if self._tree is None:
            from .decide.scan import read_tree

            self._tree = read_tree(self.paths, self.settings)
        return self._tree

    def discover_files(self, paths: Optional[Sequence[Path]] = None) -> List[Path]:
        """The files a directory run would look at: default discovery, skipped folders skipped."""
        from .core.discovery import discover

        targets = [Path(p) for p in (paths or self.paths)]
        return discover(targets, self.settings.include, self.settings.exclude).files

    def rewrite(self, rules: Optional[FrozenSet[Rule]] = None, workers: int = 1):
        """``bn2gn rewrite`` without writing: the RewriteRun of this session's plan."""
        from .source.rewrite import rewrite_paths, rewrite_pool

        rules = self.rewrite_rules() if rules is None else rules
        warm = workers > 1 and self._may_rewrite()
        source_bytes = sum(map(len, self.tree().raw.values())) if warm else 0
        with rewrite_pool(workers if warm else 1, source_bytes) as pool:
            plan, project, _ = self.planned()
            return rewrite_paths(
                self.paths,
                self.settings,
                rules,
                workers=workers,
                plan=plan,
                project=project,
                pool=pool,
            )

    def _may_rewrite(self) -> bool:
        """The plan is still to make and some file spells what the rewrite changes: workers
        started now import LibCST while it is made (``-j N``)."""
        if self._planned is not None or self.plan_file is not None:
            return False
        return any(
            b"BatchNorm2d" in data or b"get_group_norm" in data for data in self.tree().raw.values()
        )

    def rewrite_jobs(self, rules: Optional[FrozenSet[Rule]] = None) -> Dict[str, object]:
        """Per-file rewrite jobs of the plan, keyed by ``file_key``."""
        from .source.rewrite import plan_jobs

        plan, project, _ = self.planned()
        rules = self.rewrite_rules() if rules is None else rules
        return {file_key(job.path): job for job in plan_jobs(plan, project, rules)}

    def patch(
        self,
        files: Sequence[Path],
        options,
        explicit: Sequence[Path] = (),
        workers: int = 1,
        rewritten: Optional[Dict[str, FileResult]] = None,
        known: Optional[Dict[Path, bytes]] = None,
    ) -> Tuple[List[FileResult], List[str]]:
        """patch-trainer over ``files``: (results, usage errors of files named explicitly).

        ``rewritten`` maps ``file_key(path)`` to the rewrite's changed results: those files are
        patched from their rewritten text, exactly what running patch-trainer after rewrite reads.
        ``known``: bytes already read for some of ``files`` (``tree().raw``); the rest are read.
        """
        from .source.patch_trainer import patch_files

        _check_backbone(options)
        results, usage = patch_files(
            list(files),
            options,
            explicit=explicit,
            workers=workers,
            known=known,
            trees=self._plan_trees(known),
        )
        for index, result in enumerate(results):
            before = rewritten.get(file_key(result.path)) if rewritten else None
            if before is not None and result.status != "failed":
                patched, problem = patch_one(
                    source_from_bytes(result.path, before.new_bytes), options
                )
                results[index] = patched
                usage += [problem] if problem else []
        return results, usage

    def _plan_trees(self, known: Optional[Dict[Path, bytes]]) -> Dict[Path, object]:
        """The plan's ``ast`` of each file whose ``known`` bytes are the very bytes the plan read:
        patch-trainer decides on those trees instead of parsing the files again."""
        if not known or self._planned is None or self._planned[1] is None or self._tree is None:
            return {}
        read = self._tree.raw
        return {
            facts.path: facts.kept_tree
            for facts in self._planned[1].modules
            if facts.kept_tree is not None
            and facts.path in known
            and known[facts.path] is read.get(facts.path)
        }


#: what marks a repository root: the source tree a checkpoint inside it was trained from
REPOSITORY_MARKERS = (".git", "pyproject.toml", "setup.py", "setup.cfg", "bn2gn.toml")


def checkpoint_repository(checkpoint: Path) -> Optional[Path]:
    """The nearest folder above ``checkpoint`` that is a repository root (``exp/`` of a CenterNet
    repository sits inside it), or None."""
    for folder in Path(os.path.abspath(checkpoint)).parents:
        if any((folder / marker).exists() for marker in REPOSITORY_MARKERS):
            return folder
    return None


def remap_decision(
    checkpoint: Path,
    settings: Config,
    source: Optional[Path] = None,
    names_given: bool = False,
    model_spec: Optional[str] = None,
    plan_file: Optional[Path] = None,
    renames_file: Optional[Path] = None,
) -> Tuple[Optional[Backbone], Union[str, Message]]:
    """Which rule tells ``remap-ckpt`` what was converted, and the backbone it keeps.

    In order: the built model (``--model``), a traced plan, config renames, the plan of the source
    tree (``--source``, else the repository holding the checkpoint), the backbone names the user
    configured. With none of them bn2gn would be guessing: (None, the reason), and the remapper
    refuses a checkpoint that holds BatchNorm statistics (exit 2).
    """
    names = Backbone.named(settings.backbone_names)
    names_given = names_given or settings.backbone_names != DEFAULT_BACKBONE_NAMES
    if model_spec:
        return names, f"the model {model_spec} (GroupNorm in the model = converted)"
    if plan_file:
        return names, f"the traced plan {plan_file}"
    if renames_file:
        return names, f"the renames in {renames_file}"
    tree = Path(source) if source is not None else checkpoint_repository(checkpoint)
    if tree is not None:
        if not tree.is_dir():
            raise Bn2gnError(
                Message(
                    f"{tree}: ", Opt("source"), " must be the folder holding the model's source"
                )
            )
        session = Session([tree], settings)
        try:
            backbone = session.backbone
        except Bn2gnError as exc:
            if source is not None:
                raise
            if not names_given:
                raise Bn2gnError(
                    Message(
                        f"{checkpoint}: the repository around it ({tree}) has no model bn2gn can "
                        f"plan ({exc.text.render({})}); name the source tree with ",
                        Opt("source", "PATH"),
                        ", or use ",
                        Opt("model"),
                        " / ",
                        Opt("plan"),
                    )
                ) from None
        else:
            if session.plan.sites or session.plan.backbones:
                return backbone, f"the plan of {_display(tree)} (backbone: {backbone.describe()})"
    if names_given:
        return names, f"the backbone names you gave ({names.describe()})"
    return None, undecided(checkpoint)


def undecided(checkpoint: Path) -> Message:
    """``remap_decision`` found nothing to decide by: the remapper refuses a checkpoint holding
    BatchNorm statistics with this reason."""
    return Message(
        f"{checkpoint}: cannot tell which BatchNorm layers were converted: name the converted "
        "model (",
        Opt("model", "MODULE:FACTORY"),
        "), a traced plan (",
        Opt("plan", "PLAN.json"),
        "), the source tree (",
        Opt("source", "PATH"),
        ") or the backbone attributes (",
        Opt("backbone_attr", "NAME"),
        ")",
    )


def remap_options(
    checkpoint: Path,
    settings: Config,
    source: Optional[Path] = None,
    names_given: bool = False,
    model_spec: Optional[str] = None,
    plan_file: Optional[Path] = None,
    renames_file: Optional[Path] = None,
    **flags,
):
    """``remap-ckpt``'s options: the backbone and the rule that decided it (``remap_decision``), plus
    ``flags`` (keep_prefix, keep_optimizer, reset_affine, plan)."""
    from .checkpoint.remap import RemapOptions

    backbone, decided_by = remap_decision(
        checkpoint, settings, source, names_given, model_spec, plan_file, renames_file
    )
    return RemapOptions(backbone=backbone, decided_by=decided_by, **flags)


def _check_backbone(options) -> None:
    if not isinstance(getattr(options, "backbone", None), Backbone):
        raise TypeError("engine options must carry a Backbone built by bn2gn.api.Session")


def _display(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def patch_one(source: SourceText, options) -> Tuple[FileResult, Optional[str]]:
    """patch-trainer on one text as in a directory run: (result, usage error or None)."""
    from .source.patch_trainer import NotTrainingCode, patch_source
    from .source.rules.bn2gn201_freeze_before_optimizer import NeedsUserInput

    _check_backbone(options)
    try:
        return patch_source(source, options), None
    except NotTrainingCode:
        return (
            FileResult(path=source.path, status="unchanged", source=source, new_text=source.text),
            None,
        )
    except NeedsUserInput as exc:
        return failed(source.path, str(exc), source), str(exc)
    except (SourceError, SyntaxError) as exc:
        return failed(source.path, str(exc), source), None


def rewrite_one(source: SourceText, job) -> FileResult:
    """``bn2gn rewrite``'s per-file transform for one planned file."""
    from .source.rewrite import rewrite_source

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


def file_keys(paths) -> List[str]:
    """``file_key`` of each path, each folder resolved once: the real path of a name that is no
    symlink is its folder's real path joined with the name (``os.path.realpath`` would look at
    every component of every path: a repository of a thousand files checked by migrate)."""
    folders: Dict[str, str] = {}
    keys = []
    for path in paths:
        text = os.fspath(path)
        folder, name = os.path.split(text)
        if name in ("", os.curdir, os.pardir) or os.path.islink(text):
            keys.append(os.path.realpath(text))
            continue
        real = folders.get(folder)
        if real is None:
            real = folders[folder] = os.path.realpath(folder or os.curdir)
        keys.append(os.path.join(real, name))
    return keys


def apply(results: List[FileResult], mode: str, out: TextIO) -> int:
    """Write / diff / check. A file that changed since it was read is left alone (reported as failed,
    in place of its result in ``results``), so another program's edit is never overwritten."""
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


def replace_rules(options, rules: FrozenSet[Rule]):
    """The same patch-trainer options running only ``rules`` (one LibCST command per rule)."""
    return dataclasses.replace(options, rules=frozenset(rules))


def trainer_insertions(raw, settings: Config, backbone: Optional[Backbone] = None) -> List[dict]:
    """Where patch-trainer would insert its calls, for ``bn2gn scan``: files without training code
    cost a text search, the others one ``ast`` parse and walk; the engine is imported only when a
    file can hold training code."""
    from .source.support.recognise import admitted

    sources = admitted(raw)
    if not sources:
        return []
    from .source.patch_trainer import plan_insertions

    return plan_insertions(sources, settings, backbone)
