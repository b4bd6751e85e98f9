"""Which files take part in the construction graph: the cheap pre-filter in front of the whole-tree analysis.

Issue 2 ("Large trees stay fast") and issue 6 ("Speed"): in a detector repository only a few percent
of the files mention ``BatchNorm``, and parsing every file with ``ast`` and linking all of them costs
more than the rest of a run. A definition can only take part in a decision if it names (builds,
passes, subclasses) something that does, and naming needs the name's text. So, starting from:

- the files that mention ``BatchNorm`` or ``get_group_norm`` (sites, helpers, init loops),
- the files that mention a backbone attribute or a ``--root`` class (a root whose backbone is built
  dynamically makes every other candidate "possibly its backbone"),

the filter parses a file only when its words include the name of a definition already known to take
part ("targets"), and adds the files that define the base classes of parsed classes (so a root that
derives from a project-level base of ``nn.Module`` is still a module). Everything else is counted in
``files scanned`` but never parsed, so its syntax errors are not reported either.

Decisions are the ones the whole-tree analysis makes: a root with a backbone, the definitions on the
way from it to a site, whoever builds them and every dynamically built backbone are all parsed.
What a skipped file could change is limited to models that reach no site: a class that only builds
classes of skipped files is not listed among the roots (``scan -v``), and "not referenced by a root
model" may then stand where the reason would name such a class; the decision is ``keep`` either way.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path
from typing import Callable, Dict, FrozenSet, Iterable, List, Set

from .. import progress
from ..config import Config
from ..errors import SourceError, SourceFailure
from .facts import ModuleFacts

WORD = re.compile(rb"[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*")
TEXT_WORD = re.compile(r"[^\W\d]\w*")
SEED_MARKERS = (b"BatchNorm", b"get_group_norm")


class RelevantModules:
    """Grows the set of parsed files to a fixpoint; ``parse`` raises SourceError for a bad file."""

    def __init__(self, raw: Dict[Path, bytes], parse: Callable[[Path, bytes], ModuleFacts]):
        self.raw = dict(raw)
        self.parse = parse
        self.errors: Dict[Path, SourceFailure] = {}
        self.words: Dict[Path, FrozenSet[str]] = {}
        self.modules: Dict[Path, ModuleFacts] = {}
        self.mentioned_by: Dict[str, Set[str]] = defaultdict(
            set
        )  # name -> definitions whose code uses it
        self.targets: Set[str] = set()
        self.searched: Set[str] = set()
        self.defined: Set[str] = set()
        self.bases: Set[str] = set()

    def words_of(self, path: Path) -> FrozenSet[str]:
        found = self.words.get(path)
        if found is None:
            words = set(WORD.findall(self.raw[path]))
            found = self.words[path] = frozenset(w.decode("utf-8", "replace") for w in words)
        return found

    def add(self, paths: Iterable[Path]) -> bool:
        """Parse ``paths``; a file that cannot be parsed is reported and left out. True if any was added."""
        added = False
        for path in paths:
            if path in self.modules or path not in self.raw:
                continue
            try:
                facts = self.parse(path, self.raw[path])
            except SourceError as exc:
                self.errors[path] = exc.failure
                del self.raw[path]
                continue
            self.modules[path] = facts
            progress.step()
            self._index(facts)
            added = True
        return added

    def _index(self, facts: ModuleFacts) -> None:
        for name, definition in facts.defs.items():
            self.defined.add(name)
            used = mentioned_names(facts, definition.node)
            for word in used:
                self.mentioned_by[word].add(name)
            if used & self.targets:
                self.mark([name])
            if definition.kind == "class":
                self.bases |= {n for n in map(_base_name, definition.node.bases) if n}
        self.mark({raw.owner for raw in facts.sites if raw.owner})

    def mark(self, names: Iterable[str]) -> None:
        """``names`` take part, and so does every parsed definition that mentions one of them."""
        queue = [n for n in names if n not in self.targets]
        self.targets.update(queue)
        while queue:
            for user in self.mentioned_by.get(queue.pop(), ()):
                if user not in self.targets:
                    self.targets.add(user)
                    queue.append(user)

    def unparsed(self) -> List[Path]:
        return [p for p in self.raw if p not in self.modules]

    def grow(self) -> None:
        """Parse until no unparsed file names a target and every parsed class's base is parsed."""
        while True:
            new = self.targets - self.searched
            self.searched |= new
            found = [p for p in self.unparsed() if new & self.words_of(p)] if new else []
            found += self._base_class_files(set(found))
            if not self.add(found):
                return

    def _base_class_files(self, already: Set[Path]) -> List[Path]:
        """Unparsed files that define (``class Name``) a base class no parsed file defines."""
        missing = self.bases - self.defined
        found = []
        for path in self.unparsed():
            names = missing & self.words_of(path)
            if (
                names
                and path not in already
                and re.search(
                    rb"^[ \t]*class[ \t]+(?:" + "|".join(sorted(names)).encode() + rb")\b",
                    self.raw[path],
                    re.M,
                )
            ):
                found.append(path)
        return found


def mentioned_names(facts: ModuleFacts, node: ast.AST) -> Set[str]:
    """Every word in a definition's source (a superset of the names its code uses), imported aliases
    expanded to the name they import; words of the text, because walking every node costs more."""
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", ())])
    text = "".join(facts.lines[first - 1 : node.end_lineno])
    out = set(TEXT_WORD.findall(text))
    out |= {facts.imports[w].rsplit(".", 1)[-1] for w in out if w in facts.imports}
    return out


def _base_name(base: ast.AST) -> str:
    if isinstance(base, ast.Name):
        return base.id
    if isinstance(base, ast.Attribute):
        return base.attr
    return ""


def select_modules(
    raw: Dict[Path, bytes],
    parse: Callable[[Path, bytes], ModuleFacts],
    config: Config,
    errors: List[SourceFailure],
) -> List[ModuleFacts]:
    """The parsed facts of every file that can take part in a decision, in the order of ``raw``."""
    seeds = set(config.backbone_attrs) | set(config.roots)
    seed_bytes = SEED_MARKERS + tuple(s.encode() for s in seeds)
    progress.start("bn2gn: analysing", len(raw))
    relevant = RelevantModules(raw, parse)
    relevant.mark(seeds)
    relevant.add(
        [path for path, data in raw.items() if any(marker in data for marker in seed_bytes)]
    )
    relevant.grow()
    progress.done()
    errors.extend(relevant.errors[p] for p in raw if p in relevant.errors)
    return [relevant.modules[p] for p in raw if p in relevant.modules]
