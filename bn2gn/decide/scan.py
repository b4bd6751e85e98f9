"""Build the plan for a set of paths: read every file once, parse with ``ast`` only when needed."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import gc
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

from ..core import process, progress
from ..core.discovery import discover
from ..core.errors import SourceError, SourceFailure
from ..core.settings import Config
from ..core.source_files import decode_source
from .plan import Plan

if TYPE_CHECKING:  # facts (hashlib, ast helpers) is imported only once a file is parsed
    from .facts import ModuleFacts

MARKER = b"BatchNorm"


def display_path(path: Path) -> str:
    """Paths in reports: relative to the working directory when below it, as given otherwise."""
    if os.sep == "/":  # the common case without relpath's work per call (819 configs in mmdet)
        full, cwd = os.path.abspath(path), os.getcwd()
        rel = full[len(cwd) + 1 :]
        if full.startswith(cwd) and full[len(cwd) : len(cwd) + 1] == "/" and cwd != "/":
            if not rel.startswith(".."):  # ``..name`` below: relpath's rule decides, as before
                return rel
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path.as_posix()
    return Path(rel).as_posix() if not rel.startswith("..") else path.as_posix()


def module_name(path: Path) -> str:
    """Dotted module name, walking up through packages (folders with __init__.py)."""
    parts = list(package_parts(path.resolve().parent))
    if path.name != "__init__.py":
        parts.append(path.stem)
    return ".".join(parts)


@functools.lru_cache(maxsize=4096)
def package_parts(folder: Path) -> Tuple[str, ...]:
    """The package names leading to ``folder`` (cached for one plan: every file of a folder shares them)."""
    if not (folder / "__init__.py").is_file() or folder.parent == folder:
        return ()
    return package_parts(folder.parent) + (folder.name,)


def read_all(
    files: Sequence[Path], known: Optional[Dict[Path, bytes]] = None
) -> Tuple[Dict[Path, bytes], List[SourceFailure]]:
    """Every file's bytes (``known``: those discovery already read); unreadable files become errors."""
    raw, errors = {}, []
    known = known or {}
    progress.start("bn2gn: reading", len(files))
    for path in files:
        progress.step()
        try:
            raw[path] = known[path] if path in known else path.read_bytes()
        except IsADirectoryError:
            errors.append(
                SourceFailure.at(display_path(path), 1, "is a directory, not a Python file")
            )
        except OSError as exc:
            errors.append(
                SourceFailure.at(display_path(path), 1, f"cannot read ({exc.strerror or exc})")
            )
    progress.done()
    return raw, errors


def parse_facts(path: Path, data: bytes, keep_tree: bool = True) -> ModuleFacts:
    """Decode and parse one file; raises SourceError with file:line for anything Python cannot read.
    ``keep_tree=False``: the facts let the tree go once taken (``ModuleFacts``)."""
    source = decode_source(path, data)
    display = display_path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source.text, filename=display)
    except SyntaxError as exc:
        raise SourceError(display, exc.lineno or 1, f"cannot parse: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise SourceError(display, 1, f"cannot parse: {type(exc).__name__}") from None
    from .facts import ModuleFacts

    return ModuleFacts(path, display, module_name(path), source.text, tree, keep_tree)


def parse_with_sites(path: Path, data: bytes) -> ModuleFacts:
    """parse_facts, plus the BatchNorm sites of a file that mentions BatchNorm.

    Only such a file and one that spells ``get_group_norm`` keep their tree: their sites, init loops
    and rewrite jobs hold and walk its nodes. Every other file's definitions are parsed again one by
    one when the analysis reaches them (on torch, 11,603 of 30,197 definitions in 790 of the 1,827
    parsed files; keeping every tree cost 1.3 GB)."""
    facts = parse_facts(path, data, keep_tree=keeps_tree(data))
    if MARKER in data:
        from .sites import collect_sites

        collect_sites(facts)
    return facts


def keeps_tree(data: bytes) -> bool:
    """Whether ``parse_with_sites`` keeps the file's tree (its facts then hold ``ast`` nodes)."""
    return MARKER in data or b"get_group_norm" in data


#: patch-trainer's insertion planner, handed in by the seam: (raw bytes by path, settings, the
#: plan's backbone) -> insertions. The analysis lists them without knowing the engine.
InsertionPlanner = Callable[[Dict[Path, bytes], Config, object], List[dict]]


@dataclasses.dataclass(frozen=True)
class TreeRead:
    """What one discovery and one read of every file found: the files in discovery's order, their
    bytes (an unreadable file has none) and the read errors. ``migrate`` plans, patches and looks
    for frozen BatchNorm on this one read."""

    files: List[Path]
    raw: Dict[Path, bytes]
    errors: Tuple[SourceFailure, ...]


def read_tree(paths: Sequence[Path], config: Config) -> TreeRead:
    found = discover([Path(p) for p in paths], config.include, config.exclude)
    raw, errors = read_all(found.files, found.data)
    return TreeRead(found.files, raw, tuple(errors))


def build_plan(
    paths: Sequence[Path],
    config: Config,
    insertions: Optional[InsertionPlanner] = None,
    tree: Optional[TreeRead] = None,
) -> Tuple[Plan, Optional[object]]:
    """The static plan for ``paths``; also returns the Project (None when no file mentions BatchNorm).

    ``insertions`` adds where patch-trainer would insert its calls (for ``bn2gn scan``);
    ``tree``: ``read_tree(paths, config)``, when the caller read it already.
    """
    package_parts.cache_clear()  # packages as they are now, not as an earlier run in this process saw them
    tree = tree if tree is not None else read_tree(paths, config)
    plan = Plan(files=len(tree.files))
    raw, plan.errors = tree.raw, list(tree.errors)
    with collector_paused():
        plan.openmmlab_configs = openmmlab_configs(raw)
    project = None
    if any(MARKER in data for data in raw.values()):
        from .classify import classify
        from .graph import Project
        from .parse_pool import BatchParser
        from .relevance import select_modules, with_code_words

        in_worker = functools.partial(with_code_words, parse_with_sites)
        with collector_paused():
            with BatchParser(parse_with_sites, keeps_tree, in_worker, ahead=raw) as parse_batch:
                modules = select_modules(raw, parse_with_sites, config, plan.errors, parse_batch)
                # the parse workers, idle now, list the insertions for the backbone of a plan
                # whose roots infer none; used only if the decision is that one
                guess = decided_backbone(config, {})
                early = (
                    parse_batch.elsewhere(insertions, raw, config, guess) if insertions else None
                )
                project = Project(
                    modules,
                    bindings_of_every_class=bool(config.roots),  # a --root may name any class
                )
                classify(project, config, plan)
                if early is not None and decided_backbone(config, plan.backbones) == guess:
                    try:
                        plan.insertions, insertions = early.result(), None
                    except Exception:  # listed here, as without workers (the same error, if any)
                        pass
    if insertions is not None:
        # after the decision: an injected helper carrying another backbone is a pending update
        backbone = decided_backbone(config, plan.backbones)
        with collector_paused():
            plan.insertions = insertions(raw, config, backbone)
    return plan, project


def decided_backbone(config: Config, backbones):
    """The plan's backbone (``Backbone.decided``) for the roots' inferred ``backbones``."""
    from .backbone import Backbone

    return Backbone.decided(config.backbone_names, backbones)


#: text a config must contain before it is read: ``_base_``, ``read_base()`` or a top-level ``model = dict(``
CONFIG_TEXT = re.compile(rb"_base_|read_base|^model\s*=\s*dict\(", re.MULTILINE)
_MODEL_LINE = re.compile(rb"^model\s*=\s*dict\(", re.MULTILINE)


def config_text(data: bytes) -> bool:
    """``CONFIG_TEXT.search(data)``, with the byte tests first (a regular expression anchored at line
    starts cannot skip ahead; ``model`` is in almost every file of a detector)."""
    if b"_base_" in data or b"read_base" in data:
        return True
    return (data.startswith(b"model") or b"\nmodel" in data) and bool(_MODEL_LINE.search(data))


def openmmlab_configs(raw: Dict[Path, bytes]) -> List[str]:
    """Display paths of the files that look like OpenMMLab configs (``bn2gn config audit`` is for them)."""
    candidates = [path for path, data in raw.items() if config_text(data)]
    if not candidates:
        return []
    from .openmmlab import looks_like_openmmlab_config

    return [display_path(path) for path in candidates if looks_like_openmmlab_config(raw[path])]


@contextlib.contextmanager
def collector_paused():
    """The analysis holds every parsed tree (millions of acyclic nodes); letting the cyclic garbage
    collector re-scan them while more are built cost more than parsing itself on torch-sized trees.
    Trees parsed and dropped at once (configs, training scripts) are freed by reference counting, and
    the collector's passes over their nodes while they are built doubled the cost of parsing them.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if process.is_console():
            # every node built meanwhile is young: the collector's next passes would walk them all
            # (12 s of a 72 s torch scan); a console process never frees them, so they are frozen
            gc.freeze()
        if enabled:
            gc.enable()
