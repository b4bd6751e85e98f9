"""The patch-trainer engine: recognise train scripts and trainers, plan, patch.

A file is a *train script* when it builds an optimizer (BN2GN201, BN2GN204 apply) and a *trainer*
when it switches a model to training with ``.train()`` (BN2GN203); BN2GN202 then defines what the
inserted calls need. Everything is planned on the file's ``ast`` (one walk, ``trainer_facts``) and
applied in one LibCST pass, so the report, ``bn2gn scan`` and the rewrite share one detection path,
and ``scan`` never imports LibCST.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..core.discovery import discover
from ..core.errors import Message, Opt, SourceError, current_style, message_text, set_style
from ..core.file_results import (
    Change,
    FileResult,
    check_python,
    failed,
    finish,
    run_transform,
)
from ..core.process import pool_map, worker_pool
from ..core.rule_codes import Rule, select_rules
from ..core.settings import DEFAULT_BACKBONE_NAMES, Config
from ..core.source_files import SourceText
from ..decide.backbone import Backbone
from .rules.bn2gn201_freeze_before_optimizer import (
    FREEZE,
    FreezeBeforeOptimizer,
    NeedsUserInput,
    collect_optimizer_names,
    find_optimizer_sites,
    site_at_line,
    undecided_builders,
)
from .rules.bn2gn203_eval_after_train import KEEP, KeepEvalAfterTrain, find_train_switches
from .rules.bn2gn204_exclude_frozen import ExcludeFrozenParameters
from .support.libcst_parse import parse_module
from .support.names import tuple_literal
from .support.recognise import admitted, ast_may_plan, text_may_plan
from .support.trainer_facts import (
    Facts,
    baked_attrs,
    call_named,
    injected_helpers_line,
    line_after_imports,
    missing_helpers,
)

AUTO, SCRIPT, TRAINER = "auto", "script", "trainer"
TRAINER_RULES = frozenset(r for r in Rule if r.code.startswith("BN2GN2"))
DEFAULT_RULES = frozenset(r for r in TRAINER_RULES if r.default)


class NotTrainingCode(NeedsUserInput):
    """The file has nothing patch-trainer recognises (no optimizer, no ``.train()``)."""


@dataclasses.dataclass(frozen=True)
class TrainerOptions:
    """What patch-trainer inserts, for which backbone, into which kind of file."""

    rules: frozenset = DEFAULT_RULES
    #: the plan's decision (``bn2gn.api.Session.backbone``); the default is only for unit tests
    backbone: Backbone = Backbone.named(DEFAULT_BACKBONE_NAMES)
    kind: str = AUTO
    optimizer_calls: tuple = ()
    model_var: Optional[str] = None
    insert_before_line: Optional[int] = None
    helper_module: Optional[str] = None

    def __post_init__(self) -> None:
        if not isinstance(self.backbone, Backbone):
            raise TypeError("TrainerOptions.backbone must be a Backbone (see bn2gn.api.Session)")

    @property
    def call_kwargs(self) -> str:
        """Injected definitions carry the entries as their default; an imported helper needs them passed."""
        if self.helper_module and self.backbone.spellings != DEFAULT_BACKBONE_NAMES:
            return f", backbone_attrs={tuple_literal(self.backbone.spellings)}"
        return ""


@dataclasses.dataclass
class Entry:
    """One planned edit, for the report and for ``bn2gn scan``."""

    rule: Rule
    line: int
    scope: str
    message: str

    def change(self) -> Change:
        return Change(self.rule, self.line, f"{self.message} [in {self.scope}]")

    def as_dict(self, path) -> dict:
        return {
            "path": str(path),
            "line": self.line,
            "scope": self.scope,
            "rule": self.rule.code,
            "message": self.message,
        }


def patch_source(
    source: SourceText, options: TrainerOptions, tree: Optional[ast.Module] = None
) -> FileResult:
    """Patch one file's text; raises NeedsUserInput when bn2gn needs a flag to go on. ``tree``: the
    ``ast`` of exactly this text, parsed already (the plan's), which is then not parsed again."""
    result, _ = _patch(source, options, tree=tree)
    return result


def _patch(
    source: SourceText,
    options: TrainerOptions,
    prefilter: bool = True,
    check: bool = True,
    tree: Optional[ast.Module] = None,
) -> Tuple[FileResult, List[Entry]]:
    """``prefilter``: decide on text and ``ast`` first (False only to test the pre-filter itself);
    ``check``: build and parse-check the new text (``bn2gn scan`` needs only the entries)."""
    if options.insert_before_line is None and prefilter:
        if not text_may_plan(source.text, options.optimizer_calls):
            raise NotTrainingCode(_nothing_found(source.path, options))
    if tree is None:
        tree = check_python(source.text, str(source.path))
    facts = Facts(source.text, tree)
    if options.insert_before_line is None and prefilter:
        if not ast_may_plan(facts.tree, options.optimizer_calls, facts):
            raise NotTrainingCode(_nothing_found(source.path, options))
    plan = plan_module(facts, options, source.path)
    if not check:
        return FileResult(path=source.path, status="unchanged", source=source), plan.entries
    return _apply(source, options, plan), plan.entries


@dataclasses.dataclass
class FilePlan:
    """What patch-trainer will do to one file, decided on its ``ast``."""

    insertions: list  # freeze_before_optimizer.Insertion
    rewrites: dict  # (line, column) where ``parameters`` ends -> call rewrite
    entries: List[Entry]  # sorted by line, then rule
    notes: List[str]
    helpers: List[str]  # the BN2GN202 definitions the file will miss
    helper_line: int
    stale: Optional[Tuple[str, ...]] = None  # entries baked into earlier injected helpers
    update_helpers: bool = False  # bn2gn's own injected helpers are brought to the decision

    @property
    def silent(self) -> bool:
        """Nothing to insert, rewrite, define or update, and no stale helper to note: no
        patch-trainer codemod applies (``trainer_steps``), whatever the rules."""
        return not (
            self.insertions
            or self.rewrites
            or self.helpers
            or self.update_helpers
            or self.stale is not None
        )


def _apply(source: SourceText, options: TrainerOptions, plan: FilePlan) -> FileResult:
    """Run the patch-trainer codemods (``registry.patch_trainer_codemods``) on the plan: one LibCST
    parse and one position resolution, and no LibCST at all when only notes are left to give. A
    silent plan (a file patched already) imports no codemod: it keeps the planners' notes only."""
    if plan.silent:
        return finish(source, source.text, [], list(plan.notes))
    from .registry import Context, patch_trainer_codemods, run
    from .support.trainer_steps import TrainerPlan

    context = Context(source, options.rules, TrainerPlan(options, plan))
    codemods = [c for c in patch_trainer_codemods() if c.applies(context)]
    edits = any(c.rules for c in codemods)
    module = parse_module(source, checked=True) if edits else None
    done = run(codemods, module, context)
    text = done.module.code if edits else source.text
    changes = sorted(done.changes, key=lambda c: (c.line, c.rule.code))
    return finish(source, text, changes, list(plan.notes) + list(done.notes))


def plan_module(facts: Facts, options: TrainerOptions, path) -> FilePlan:
    """Everything patch-trainer decides for one file, from its ``ast`` facts; raises NeedsUserInput."""
    names = collect_optimizer_names(facts, options.optimizer_calls)
    frozen_already = any(call_named(c, FREEZE) for c in facts.calls)
    sites, switches, notes = [], [], []
    if options.insert_before_line is not None and frozen_already:
        notes.append(
            message_text(f"{path}: already calls {FREEZE}; ", Opt("insert_before_line"), " ignored")
        )
    elif options.insert_before_line is not None:
        site = site_at_line(facts, options.insert_before_line)
        if site is None:
            raise NeedsUserInput(
                message_text(
                    f"{path}:{options.insert_before_line}: no statement starts on this line; ",
                    Opt("insert_before_line"),
                    " needs the first line of the optimizer statement",
                )
            )
        sites = [site]
    elif options.kind != TRAINER:
        sites = find_optimizer_sites(facts, names)
        notes += [f"{path}:{n}: {text}" for n, text in undecided_builders(facts, names, sites)]
    if options.kind != SCRIPT:
        switches = find_train_switches(facts)
    script = sites or (frozen_already and options.kind != TRAINER)
    if not script and (options.kind == SCRIPT or not switches):
        raise NotTrainingCode(_nothing_found(path, options))
    insertions, rewrites, entries = [], {}, []
    if Rule.FREEZE_BEFORE_OPTIMIZER in options.rules:
        insertions += FreezeBeforeOptimizer(options.model_var, options.call_kwargs).plan(
            facts, sites, path
        )
    if Rule.EXCLUDE_FROZEN_FROM_OPTIMIZER in options.rules:
        rewrites, changes, problems = ExcludeFrozenParameters().plan(facts, sites)
        entries += [Entry(*change) for change in changes]
        notes += [f"{path}:{problem}" for problem in problems]
    if Rule.EVAL_AFTER_TRAIN in options.rules:
        planned, problems = KeepEvalAfterTrain(options.call_kwargs).plan(facts, switches)
        insertions += planned
        notes += [f"{path}:{problem}" for problem in problems]
    entries += [Entry(i.rule, i.line, i.scope, i.message) for i in insertions]
    called = {FREEZE for i in insertions if i.rule is Rule.FREEZE_BEFORE_OPTIMIZER} | {
        KEEP for i in insertions if i.rule is Rule.EVAL_AFTER_TRAIN
    }
    helpers = missing_helpers(facts, called)
    helper_line = line_after_imports(facts) if helpers else 0
    if helpers and Rule.INJECT_FREEZE_HELPER in options.rules:
        how = (
            f"import from {options.helper_module}"
            if options.helper_module
            else "define after the imports"
        )
        entries.append(
            Entry(
                Rule.INJECT_FREEZE_HELPER, helper_line, "<module>", f"{how}: {', '.join(helpers)}"
            )
        )
    stale = None if options.helper_module else baked_attrs(facts, options.backbone.spellings)
    update_line = injected_helpers_line(facts) if stale is not None else 0
    update = bool(update_line) and Rule.INJECT_FREEZE_HELPER in options.rules
    if update:
        entries.append(
            Entry(
                Rule.INJECT_FREEZE_HELPER,
                update_line,
                "<module>",
                f"update the injected helpers' backbone to {tuple_literal(options.backbone.spellings)} "
                f"(they carry {tuple_literal(stale)})",
            )
        )
    entries.sort(key=lambda e: (e.line, e.rule.code))
    return FilePlan(insertions, rewrites, entries, notes, helpers, helper_line, stale, update)


def _nothing_found(path, options: TrainerOptions) -> str:
    searched = (
        "torch.optim.<Name>(...) under any import of torch.optim, build_optimizer/get_optimizer/"
        "create_optimizer(...)"
    )
    if options.optimizer_calls:
        searched += ", " + ", ".join(f"{name}(...)" for name in options.optimizer_calls)
    if options.kind == TRAINER:
        return message_text(
            f"{path}: no X.train() / X.train(True) / X.train(mode=...) call found; "
            "this file is no trainer (use ",
            Opt("kind", "script"),
            " if it builds the optimizer)",
        )
    hint = message_text(
        "point bn2gn at it with ",
        Opt("optimizer_call", "NAME"),
        " or ",
        Opt("insert_before_line", "N"),
    )
    if options.kind == SCRIPT:
        return f"{path}: no optimizer construction found (searched for {searched}); {hint}"
    return (
        f"{path}: neither an optimizer construction nor a model.train() call found (searched for {searched}, "
        f"X.train()); {hint}, or leave the file out"
    )


def patch_files(
    files: Sequence[Path],
    options: TrainerOptions,
    explicit: Sequence[Path] = (),
    workers: int = 1,
    known: Optional[Dict[Path, bytes]] = None,
    trees: Optional[Dict[Path, ast.Module]] = None,
) -> Tuple[List[FileResult], List[str]]:
    """Patch each file (in ``workers`` processes); return the results and the usage errors (exit 2)
    of files named explicitly. A file reached through a directory that holds no training code is
    simply unchanged. ``known``: the bytes of files read already (the others are read here);
    ``trees``: the ``ast`` of some of those bytes, parsed already (used in this process only: a
    tree pickles slower than it parses).
    """
    named = {Path(p).resolve() for p in explicit}
    known = known or {}
    trees = trees if trees and workers <= 1 else {}
    jobs = [
        (path, options, bool(named) and path.resolve() in named, known.get(path), trees.get(path))
        for path in files
    ]
    if workers > 1 and len(jobs) > 1:
        with worker_pool(workers, set_style, (current_style(),)) as pool:
            chunk = max(1, len(jobs) // (workers * 4))
            done = list(pool_map(pool, _patch_job, jobs, chunksize=chunk))
    else:
        done = [_patch_job(job) for job in jobs]
    return [result for result, _ in done], [message for _, message in done if message]


def _patch_job(job) -> Tuple[FileResult, Optional[str]]:
    """One file: (result, usage error or None); top-level so that worker processes can run it."""
    path, options, named, data, tree = job
    usage = []

    def transform(source: SourceText) -> FileResult:
        try:
            return patch_source(source, options, tree)
        except NotTrainingCode as exc:
            if not named:
                return FileResult(
                    path=source.path, status="unchanged", source=source, new_text=source.text
                )
            usage.append(str(exc))
            return failed(source.path, str(exc), source)
        except NeedsUserInput as exc:
            usage.append(str(exc))
            return failed(source.path, str(exc), source)

    result = run_transform(path, transform, data)
    return result, (usage[0] if usage else None)


def trainer_rules(
    select: Sequence[str] = (),
    skip: Sequence[str] = (),
    exclude_frozen: bool = False,
    strict: bool = True,
) -> frozenset:
    """The BN2GN2xx rules a run uses; codes of other commands in a shared config are ignored."""
    from ..core.rule_codes import rule_by_name

    chosen = [n for n in select if rule_by_name(n) in TRAINER_RULES]
    if select and not chosen and strict:
        from ..core.errors import Bn2gnError

        raise Bn2gnError(
            Message(
                Opt("select"),
                " names no patch-trainer rule: use BN2GN201-BN2GN204 (see ",
                Opt("list_rules"),
                ")",
            )
        )
    rules = select_rules(chosen, skip) & TRAINER_RULES
    if exclude_frozen and Rule.EXCLUDE_FROZEN_FROM_OPTIMIZER not in {rule_by_name(n) for n in skip}:
        rules |= {Rule.EXCLUDE_FROZEN_FROM_OPTIMIZER}
    return rules


def plan_trainer_insertions(paths: Sequence[Path], config: Optional[Config] = None) -> List[dict]:
    """Where patch-trainer would insert what, for ``bn2gn scan``: dicts with path, line, scope, rule, message.

    Files that are not training code, or cannot be read or parsed, contribute nothing.
    """
    config = config or Config()
    raw = {}
    for path in discover(list(paths), config.include, config.exclude).files:
        try:
            raw[path] = path.read_bytes()
        except OSError:
            continue
    return plan_insertions_for(admitted(raw), config)


def plan_insertions_for(
    sources: Dict[Path, SourceText], config: Config, backbone: Optional[Backbone] = None
) -> List[dict]:
    """The insertions for decoded files that passed the pre-filter (``recognise.admitted``);
    ``backbone``: the plan's decision (stale injected helpers are updates to it)."""
    options = TrainerOptions(
        rules=trainer_rules(config.select, config.skip, strict=False),
        backbone=backbone or Backbone.named(config.backbone_names),
    )
    found = []
    for path, source in sources.items():
        try:
            _, entries = _patch(source, options, check=False)
        except (NeedsUserInput, SourceError, SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        found.extend(entry.as_dict(path) for entry in entries)
    return found


def plan_insertions(
    sources: Dict[Path, SourceText], config: Config, backbone: Optional[Backbone] = None
) -> List[dict]:
    """plan_insertions_for with display paths, for ``bn2gn scan``."""
    from ..decide.scan import display_path

    insertions = plan_insertions_for(sources, config, backbone)
    for item in insertions:
        item["path"] = display_path(Path(item["path"]))
    return insertions
