"""The rewrite engine: plan -> per-file LibCST codemods -> FileResults (no I/O decisions here)."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

from ..core import progress
from ..core.ast_tools import first_line, lines_spelling, spells, walk
from ..core.file_results import (
    FileResult,
    failed,
    finish,
    run_transform,
)
from ..core.process import WarmPool, collector_paused, pool_map, warm_pool, worker_pool
from ..core.rule_codes import Rule
from ..core.settings import Config
from ..core.source_files import SourceText
from ..decide.facts import ModuleFacts, lines_tell
from ..decide.plan import CONVERT, UNSURE, Plan, Site
from ..decide.scan import build_plan
from .support.libcst_parse import form_feed_indent_line, mixed_newline_line, parse_module
from .support.names import HELPER
from .support.settled import settled

BN2D = {"torch.nn.BatchNorm2d", "torch.nn.modules.batchnorm.BatchNorm2d"}


@dataclasses.dataclass(frozen=True)
class FileJob:
    """Everything a worker needs to rewrite one file (picklable, for -j)."""

    path: Path
    display: str
    sites: Tuple[Site, ...]
    init_scopes: FrozenSet[str]
    bn_refs: FrozenSet[str]
    rules: FrozenSet[Rule]
    text_hash: str = ""  # of the text the analysis parsed with ast ("" when unknown)
    #: the analysis proved on ``ast`` that the codemods change nothing in that text (support.settled)
    settled: bool = False

    @property
    def converted_calls(self) -> FrozenSet[Tuple[int, int]]:
        """(line, 0-based column) of every call the plan converts in this file (BN2GN101's sites)."""
        return frozenset(
            (s.line, s.col - 1) for s in self.sites if s.decision == CONVERT and s.form == "call"
        )


@dataclasses.dataclass
class RewriteRun:
    """The plan as the rewrite left it (refused sites unsure) and a result per file."""

    plan: Plan
    results: List[FileResult]


def batchnorm_ref_texts(facts: ModuleFacts) -> Set[str]:
    """How this file spells torch.nn.BatchNorm2d (``nn.BatchNorm2d``, ``BN``, an alias...)."""
    refs = set()
    for name, dotted in facts.imports.items():
        if dotted in BN2D:
            refs.add(name)
        elif dotted == "torch.nn":
            refs.add(f"{name}.BatchNorm2d")
        elif dotted == "torch":
            refs.add(f"{name}.nn.BatchNorm2d")
    refs.update(name for name, op in facts.bn_aliases.items() if op == "BatchNorm2d")
    return refs


def init_loop_scopes(facts: ModuleFacts, sites: Sequence[Site]) -> Set[str]:
    """Top-level classes/functions whose init loops must also cover GroupNorm.

    Those holding converted sites or get_group_norm calls, plus same-file functions they call
    (``fill_fc_weights(fc)``, ``self.apply(weights_init)``). A definition is walked only when its
    lines spell what the walk looks for, and inside it only the statements spanning such a line (a
    name lies on a line that spells it).
    """
    scopes = {s.scope.split(".")[0] for s in sites if s.decision == CONVERT}
    text = "".join(facts.lines)
    calls_helper = HELPER in text  # the text first: no walk without it
    if not scopes and not calls_helper:
        return scopes
    tell = lines_tell(text)  # else every definition is walked whole
    helper_lines = lines_spelling(facts.lines, (HELPER,)) if tell and calls_helper else None
    for node in facts.tree.body if calls_helper else ():
        if (
            isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and (not tell or spells(facts.lines, node, (HELPER,)))
            and any(
                isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == HELPER
                for n in walk(node, lines=helper_lines)  # ast.walk's nodes but the ctx leaves
            )
        ):
            scopes.add(node.name)
    functions = {
        n.name for n in facts.tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    for node in facts.tree.body:
        if getattr(node, "name", None) not in scopes:
            continue
        named = (
            lines_spelling(facts.lines, functions, first_line(node), node.end_lineno)
            if tell
            else None
        )
        if named != []:  # some line of it spells a function's name (or lines cannot tell)
            scopes |= {
                n.id
                for n in walk(node, lines=named)
                if isinstance(n, ast.Name) and n.id in functions
            }
    return scopes


def rewrite_source(source: SourceText, job: FileJob) -> FileResult:
    """Apply the selected rewrite rules to one file's text: one LibCST parse, one traversal for
    BN2GN101 and BN2GN103 together, whose starts come from the input's ``ast`` (one compile; one
    more to check the input is Python unless the analysis parsed this very text), and one compile of
    the output."""
    same_text = bool(job.text_hash) and text_hash(source.text) == job.text_hash
    if job.settled and same_text and not _libcst_refuses(source.text):
        return finish(
            source, source.text, ()
        )  # what LibCST would have returned: no import, no parse
    from .registry import Context, rewrite_codemods, run

    with collector_paused():
        module = parse_module(source, checked=same_text)
        done = run(rewrite_codemods(), module, Context(source, job.rules, job))
        return finish(source, done.module.code, done.changes, done.notes, done.refused)


def _libcst_refuses(text: str) -> bool:
    """Text ``parse_module`` refuses although Python parses it (reported as a failure, not skipped)."""
    return bool(form_feed_indent_line(text) or mixed_newline_line(text))


def text_hash(text: str) -> str:
    """Identifies the exact text the analysis parsed, so the worker need not check it again."""
    try:  # hashlib's own blake2b, without the OpenSSL start ``import hashlib`` costs (2 ms)
        from _blake2 import blake2b
    except ImportError:  # pragma: no cover - an interpreter without CPython's module
        from hashlib import blake2b

    return blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def run_job(job: FileJob) -> FileResult:
    return run_transform(job.path, lambda source: rewrite_source(source, job))


def plan_jobs(plan: Plan, project, rules: FrozenSet[Rule]) -> List[FileJob]:
    """One job per file that has something to convert or already uses get_group_norm."""
    jobs = []
    if project is None:
        return jobs
    by_path: Dict[str, List[Site]] = {}
    for site in plan.sites:
        by_path.setdefault(site.path, []).append(site)
    for facts in project.modules:
        sites = tuple(by_path.get(facts.display, ()))
        scopes = init_loop_scopes(facts, sites)
        converts = any(s.decision == CONVERT for s in sites)
        if converts or scopes:
            bn_refs = frozenset(batchnorm_ref_texts(facts))
            text = "".join(facts.lines) if hasattr(facts, "lines") else None
            jobs.append(
                FileJob(
                    path=facts.path,
                    display=facts.display,
                    sites=sites,
                    init_scopes=frozenset(scopes),
                    bn_refs=bn_refs,
                    rules=rules,
                    text_hash=text_hash(text) if text is not None else "",
                    settled=text is not None
                    and not converts
                    and settled(facts.tree, text, frozenset(scopes), bn_refs, rules),
                )
            )
    return jobs


#: below this many source bytes in all jobs together, ``-j N`` rewrites in this process: starting
#: workers costs more than the work (a fixture-sized repository changes a few small files)
IN_PROCESS_BYTES = 100_000


def run_jobs(jobs: List[FileJob], workers: int = 1, pool: Optional[WarmPool] = None):
    """Every job's result, in order. ``pool``: workers started before the plan was made (their
    LibCST is imported already); they take the jobs when they are as many as ``workers`` or the
    jobs are small, else a pool of ``workers`` is started now."""
    progress.start("bn2gn: rewriting", len(jobs))
    big = len(jobs) > 1 and _job_bytes(jobs) > IN_PROCESS_BYTES
    if pool is not None and jobs and (pool.size >= workers or not big):
        return _counted(pool.map(run_job, jobs, chunksize=_chunksize(jobs, pool.size)))
    if workers > 1 and big:
        with worker_pool(workers) as started:
            results = pool_map(started, run_job, jobs, chunksize=_chunksize(jobs, workers))
            return _counted(results)
    return _counted(run_job(job) for job in jobs)


def _chunksize(jobs: List[FileJob], workers: int) -> int:
    return max(1, len(jobs) // (workers * 4))


#: below this many bytes of source the plan takes a fraction of a second, and every worker asked
#: for imports beside it; above, one core is left to the plan
SMALL_TREE_BYTES = 1_000_000


@contextlib.contextmanager
def rewrite_pool(workers: int, source_bytes: int = 0) -> Iterator[Optional[WarmPool]]:
    """Processes that import LibCST and the codemods now, while the caller plans (None for one
    worker): on a small repository that import, not the rewrite, is most of the time. On a tree of
    ``source_bytes`` over ``SMALL_TREE_BYTES`` one core is left to the plan: workers importing on
    the plan's core would slow it by more than they save (mmdet, with nothing to rewrite: 0.75 s
    to 1.0 s with two on two cores)."""
    if workers <= 1:
        yield None
        return
    spare = 1 if source_bytes > SMALL_TREE_BYTES else 0
    size = min(workers, max(1, (os.cpu_count() or 1) - spare))
    with contextlib.ExitStack() as stack:
        try:
            pool = stack.enter_context(warm_pool(size, import_codemods))
        except (OSError, ImportError, NotImplementedError):
            pool = None  # no working sem_open, no process left: the jobs are run here
        yield pool


def import_codemods() -> None:
    """What a rewrite job imports (a worker's initializer)."""
    from .registry import rewrite_codemods
    from .rules.bn2gn102_group_norm_helper import HELPER_SOURCE
    from .support.inject import format_snippet

    with collector_paused():  # the objects of the parent this worker was forked from are many
        rewrite_codemods()
        format_snippet(HELPER_SOURCE.format(nn="nn"))  # the helper as most files spell torch.nn


def _job_bytes(jobs: List[FileJob]) -> int:
    total = 0
    for job in jobs:
        try:
            total += job.path.stat().st_size
        except OSError:
            return IN_PROCESS_BYTES + 1  # the worker reports it; size unknown
    return total


def _counted(results: Iterable[FileResult]) -> List[FileResult]:
    out = []
    for result in results:
        out.append(result)
        progress.step()
    progress.done()
    return out


def rewrite_paths(
    paths: Sequence[Path],
    config: Config,
    rules: FrozenSet[Rule],
    workers: int = 1,
    plan: Optional[Plan] = None,
    project=None,
    pool: Optional[WarmPool] = None,
) -> RewriteRun:
    """Plan (unless given), then rewrite every file that needs it. Files the analysis could not read
    or parse become failed results; sites a codemod refused are unsure in the returned plan.
    ``pool``: ``rewrite_pool``'s workers, started before the plan."""
    if plan is None:
        plan, project = build_plan(paths, config)
    results = run_jobs(plan_jobs(plan, project, rules), workers, pool)
    results += [failed(Path(error.path), error) for error in plan.errors]
    return RewriteRun(plan=_mark_refused(plan, results), results=results)


def _mark_refused(plan: Plan, results: Sequence[FileResult]) -> Plan:
    """Sites the codemod could not map (``*args``) are reported as unsure, not silently kept: a new
    plan with new sites (the given one is left as it was)."""
    refused = {(r.path, r.line) for result in results for r in result.refused}
    if not refused:
        return plan
    sites = [
        dataclasses.replace(
            site,
            decision=UNSURE,
            reason=site.reason + "; the call's arguments cannot be mapped to get_group_norm",
        )
        if (site.path, site.line) in refused
        else site
        for site in plan.sites
    ]
    return dataclasses.replace(plan, sites=sites)
