"""Which files take part in the construction graph: the cheap pre-filter in front of the whole-tree analysis.

In a detector repository only a few percent of the files mention ``BatchNorm``, and parsing every
file with ``ast`` and linking all of them costs more than the rest of a run. A definition takes part
in a decision only if it is a site's owner, a possible root model, or names (builds, passes,
subclasses) a definition that does. The filter starts from:

- the files that mention ``BatchNorm`` or ``get_group_norm`` (sites, helpers, init loops); the
  definitions holding a site;
- the files that spell a backbone attribute the way a class assigns one (``.backbone``,
  ``'backbone'`` for ``setattr``/``add_module``); the classes among their definitions that do;
- the files that mention a ``--root`` class, and those classes.

Those definitions are "targets". A file is parsed only when it can name a target the way name
resolution (``graph.Project.resolve_dotted``) links it: its text holds the target's name and imports
the target's module (``from .resnet import ResNet``, ``from . import resnet``), spells the module
before the name (``models.resnet.ResNet``), sits below the package whose ``__init__`` defines the
target (``from . import ResNet``), or imports the bare name (``import ResNet``). A parsed definition
whose code, not its strings or comments, spells a target's name in such a file becomes a target too.
Files that define the base classes of parsed classes are parsed as well (so a root deriving from a
project-level base of ``nn.Module`` is still a module). Words that cannot link (a config's
``type='ResNet'`` or ``model = dict(backbone=...)``, ``__all__ = ['ResNet']``, a tool's ``main``)
admit nothing: in mmdet that keeps the config files and tools out (the analysis parses 138 of the
1,444 files).

Everything else is counted in ``files scanned`` but never parsed, so its syntax errors are not
reported either. A skipped file holds nothing that reaches a site or holds a backbone: what it can
change is limited to models that reach no site. Such a model (a block with no backbone whose
building blocks live in skipped files) is not listed among the roots, and a site in its own code
reads "not used by any model" instead of "root model ... has no backbone attribute"; both keep.
``tests/test_relevance.py`` checks on every fixture folder that the plan is the one made with every
file parsed.
"""

from __future__ import annotations

import ast
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Callable, Dict, FrozenSet, Iterable, List, Optional, Set, Tuple

from .. import progress
from ..config import Config
from ..errors import SourceError, SourceFailure
from .facts import Definition, ModuleFacts

WORD = re.compile(rb"[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*")
TEXT_WORD = re.compile(r"[^\W\d]\w*")
SEED_MARKERS = (b"BatchNorm", b"get_group_norm")
IMPORT_KEYWORD = re.compile(rb"\bimport\b")
RELATIVE_FROM = re.compile(rb"\s*from\s+\.+\s*import\b")
PLAIN_IMPORT = re.compile(rb"\s*import\b")
#: ``a.b``, ``a . b``: overlapping, so ``a.b.c`` gives (a, b) and (b, c)
DOTTED_PAIR = re.compile(
    rb"(?<![\w\x80-\xff])([A-Za-z_\x80-\xff][\w\x80-\xff]*)\s*\.\s*(?=([A-Za-z_\x80-\xff][\w\x80-\xff]*))"
)
#: comments and string literals that are not f-strings (whose braces hold code)
NOT_CODE = re.compile(
    r"""\#[^\n]*|(?<![\w])(?P<prefix>[rRbBuUfF]{0,2})"""
    r"""(?:'''[\s\S]*?'''|\"\"\"[\s\S]*?\"\"\"|'(?:[^'\\\n]|\\[\s\S])*'|"(?:[^"\\\n]|\\[\s\S])*")"""
)


def attribute_spelling(attrs: Iterable[str]) -> str:
    """``self.backbone``, ``self . backbone``, ``'backbone'`` (setattr, add_module): how a class
    assigns an attribute of that name (``roots._statement_sinks``); a keyword ``backbone=`` does not."""
    names = "|".join(re.escape(a) for a in sorted(attrs))
    return r"(?:\.(?:\s|\\)*|['\"])(?:" + names + r")\b"


class FileText:
    """What a file's text says about the names it can link (computed once, when first asked)."""

    def __init__(self, path: Path, data: bytes):
        self.path = str(path)
        self.data = data
        self._words: Optional[FrozenSet[bytes]] = None
        self._imports: Optional[Tuple[FrozenSet[bytes], FrozenSet[bytes]]] = None
        self._pairs: Optional[Set[Tuple[bytes, bytes]]] = None

    @property
    def words(self) -> FrozenSet[bytes]:
        if self._words is None:
            self._words = frozenset(WORD.findall(self.data))
        return self._words

    @property
    def import_words(self) -> FrozenSet[bytes]:
        """The words of every import statement (the line of an ``import`` keyword, the lines continued
        into it with a backslash, and a parenthesised list of names after it)."""
        if self._imports is None:
            self._imports = _import_words(self.data)
        return self._imports[0]

    @property
    def bare_imports(self) -> FrozenSet[bytes]:
        """Names an import gives with no module before them (``import a``, ``from . import a``):
        resolution links such a name to any definition of that name."""
        if self._imports is None:
            self._imports = _import_words(self.data)
        return self._imports[1]

    def spells_dotted(self, module: bytes, name: bytes) -> bool:
        """``module.name`` somewhere in the text (an attribute chain such as ``models.resnet.ResNet``)."""
        if self._pairs is None:
            self._pairs = set(DOTTED_PAIR.findall(self.data))
        return (module, name) in self._pairs


def _import_words(data: bytes) -> Tuple[FrozenSet[bytes], FrozenSet[bytes]]:
    words: Set[bytes] = set()
    bare: Set[bytes] = set()
    for match in IMPORT_KEYWORD.finditer(data):
        start = data.rfind(b"\n", 0, match.start()) + 1
        while start > 1 and data[start - 2 : start - 1] == b"\\":
            start = data.rfind(b"\n", 0, start - 1) + 1
        end = data.find(b"\n", match.end())
        end = len(data) if end < 0 else end
        opened = data.find(b"(", match.end(), end)
        if opened >= 0 and data.find(b")", opened, end) < 0:
            closed = data.find(b")", opened)
            end = len(data) if closed < 0 else closed
        span = data[start:end]
        found = WORD.findall(span)
        words.update(found)
        if RELATIVE_FROM.match(span):
            bare.update(found)
        elif PLAIN_IMPORT.match(span):
            bare.update(
                re.findall(rb"(?:import|,)\s*\(?\s*([A-Za-z_\x80-\xff][\w\x80-\xff]*)", span)
            )
    return frozenset(words), frozenset(bare)


class RelevantModules:
    """Grows the set of parsed files to a fixpoint; ``parse`` raises SourceError for a bad file."""

    def __init__(
        self,
        raw: Dict[Path, bytes],
        parse: Callable[[Path, bytes], ModuleFacts],
        attrs: Iterable[str] = (),
        roots: Iterable[str] = (),
    ):
        self.raw = dict(raw)
        self.parse = parse
        self.errors: Dict[Path, SourceFailure] = {}
        self.text: Dict[Path, FileText] = {}
        self.modules: Dict[Path, ModuleFacts] = {}
        #: word -> parsed definitions whose source holds it (``names`` then checks it is code, not a string)
        self.mentioned_by: Dict[str, List[Definition]] = defaultdict(list)
        self.targets: Set[Definition] = set()
        self.target_names: Dict[str, List[Definition]] = defaultdict(list)
        self.searched: Set[Definition] = set()
        self.linkable: Dict[tuple, bool] = {}
        self.spelled: Dict[Definition, Set[str]] = {}
        self.defined: Set[str] = set()
        self.bases: Set[str] = set()
        attrs = tuple(attrs)
        self.holds_attr = re.compile(attribute_spelling(attrs)) if attrs else None
        self.file_holds_attr = re.compile(attribute_spelling(attrs).encode()) if attrs else None
        self.attr_bytes = tuple(a.encode() for a in attrs)
        self.roots = set(roots)
        self.seed_markers = SEED_MARKERS + tuple(r.encode() for r in self.roots)

    def text_of(self, path: Path) -> FileText:
        found = self.text.get(path)
        if found is None:
            found = self.text[path] = FileText(path, self.raw[path])
        return found

    def words_of(self, path: Path) -> FrozenSet[bytes]:
        """The file's words, as bytes: files are searched before they are decoded."""
        return self.text_of(path).words

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
            used = mentioned_words(facts, definition.node)
            for word in used:
                self.mentioned_by[word].append(definition)
            if self._is_seed(definition) or any(
                self.names(definition, target)
                for word in used & self.target_names.keys()
                for target in self.target_names[word]
            ):
                self.mark([definition])
            if definition.kind == "class":
                self.bases |= {n for n in map(_base_name, definition.node.bases) if n}
        self.mark([facts.defs[raw.owner] for raw in facts.sites if raw.owner in facts.defs])

    def is_seed_file(self, data: bytes) -> bool:
        """A file with a site, a helper, a ``--root`` name, or a class that may assign a backbone attribute."""
        if any(marker in data for marker in self.seed_markers):
            return True
        return (
            self.file_holds_attr is not None
            and b"class" in data
            and any(attr in data for attr in self.attr_bytes)
            and bool(self.file_holds_attr.search(data))
        )

    def _is_seed(self, definition: Definition) -> bool:
        """A class that may be a root: a ``--root``, or one that assigns a backbone attribute."""
        if definition.kind != "class":
            return False
        if definition.name in self.roots:
            return True
        return self.holds_attr is not None and bool(
            self.holds_attr.search(source_text(definition.module, definition.node))
        )

    def names(self, user: Definition, target: Definition) -> bool:
        """Whether ``user``'s code (not its strings or comments) spells ``target``'s name, in a file
        that can link to it."""
        if not self.can_name(user.module.path, target):
            return False
        spelled = self.spelled.get(user)
        if spelled is None:
            spelled = self.spelled[user] = spelled_names(user.module, user.node)
        return target.name in spelled

    def can_name(self, path: Path, target: Definition) -> bool:
        """Whether the file at ``path`` can link to ``target``, given that it spells the name. Name
        resolution (``graph.Project.resolve_dotted``) links a dotted name that ends with the target's
        module and name, so the file must import that module (``from .resnet import ResNet``,
        ``from . import resnet``), spell it before the name (``models.resnet.ResNet``), sit below the
        package whose ``__init__`` defines the target (``from . import ResNet``), or import the bare
        name (``import ResNet``)."""
        home = target.module
        if path == home.path:
            return True
        text = self.text_of(path)
        key = (id(text), id(target))
        found = self.linkable.get(key)
        if found is None:
            found = self.linkable[key] = self._can_link(text, target)
        return found

    def _can_link(self, text: FileText, target: Definition) -> bool:
        home = target.module
        module = home.modname.rsplit(".", 1)[-1].encode()
        name = target.name.encode()
        package = str(home.path.parent) + os.sep if home.path.name == "__init__.py" else None
        return (
            module in text.import_words
            or (package is not None and text.path.startswith(package))
            or name in text.bare_imports
            or (module in text.words and text.spells_dotted(module, name))
        )

    def mark(self, definitions: Iterable[Definition]) -> None:
        """``definitions`` take part, and so does every parsed definition that can name one of them."""
        queue = [d for d in definitions if d not in self.targets]
        self.targets.update(queue)
        while queue:
            target = queue.pop()
            self.target_names[target.name].append(target)
            for user in self.mentioned_by.get(target.name, ()):
                if user not in self.targets and self.names(user, target):
                    self.targets.add(user)
                    queue.append(user)

    def unparsed(self) -> List[Path]:
        return [p for p in self.raw if p not in self.modules]

    def grow(self) -> None:
        """Parse until no unparsed file can name a target and every parsed class's base is parsed."""
        while True:
            new = self.targets - self.searched
            self.searched |= new
            found = []
            if new:
                by_name: Dict[bytes, List[Definition]] = defaultdict(list)
                for target in new:
                    by_name[target.name.encode()].append(target)
                for path in self.unparsed():
                    words = self.words_of(path)
                    if any(
                        self.can_name(path, t)
                        for name in (by_name.keys() & words)
                        for t in by_name[name]
                    ):
                        found.append(path)
            found += self._base_class_files(set(found))
            if not self.add(found):
                return

    def _base_class_files(self, already: Set[Path]) -> List[Path]:
        """Unparsed files that define (``class Name``) a base class no parsed file defines."""
        missing = {name.encode() for name in self.bases - self.defined}
        found = []
        for path in self.unparsed():
            names = missing & self.words_of(path)
            if (
                names
                and path not in already
                and re.search(
                    rb"^[ \t]*class[ \t]+(?:" + b"|".join(sorted(names)) + rb")\b",
                    self.raw[path],
                    re.M,
                )
            ):
                found.append(path)
        return found


def source_text(facts: ModuleFacts, node: ast.AST) -> str:
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", ())])
    return "".join(facts.lines[first - 1 : node.end_lineno])


def _blank(match: "re.Match[str]") -> str:
    if "f" in (match.group("prefix") or "").lower():
        return match.group()
    return " "


def _expanded(facts: ModuleFacts, words: Set[str]) -> Set[str]:
    return words | {facts.imports[w].rsplit(".", 1)[-1] for w in words if w in facts.imports}


def mentioned_words(facts: ModuleFacts, node: ast.AST) -> Set[str]:
    """Every word of a definition's source, imported aliases expanded to the name they import: a cheap
    superset of :func:`spelled_names`, which is computed only for a word that names a target."""
    return _expanded(facts, set(TEXT_WORD.findall(source_text(facts, node))))


def spelled_names(facts: ModuleFacts, node: ast.AST) -> Set[str]:
    """The words of a definition's code with comments and string literals blanked (f-strings kept:
    their braces hold code), imported aliases expanded: a superset of the ``Name`` ids,
    ``Attribute`` attrs and imported names resolution links; ``__all__ = ['ResNet']`` and
    ``type='ResNet'`` spell nothing."""
    code = NOT_CODE.sub(_blank, source_text(facts, node))
    return _expanded(facts, set(TEXT_WORD.findall(code)))


def _base_name(base: ast.AST) -> str:
    if isinstance(base, ast.Name):
        return base.id
    if isinstance(base, ast.Attribute):
        return base.attr
    return ""


def root_names(roots: Iterable[str]) -> Set[str]:
    """The class names of ``--root`` values (``Class``, ``module.Class``, ``path/file.py:Class``)."""
    return {r.rsplit(":", 1)[-1].rsplit(".", 1)[-1] for r in roots}


def select_modules(
    raw: Dict[Path, bytes],
    parse: Callable[[Path, bytes], ModuleFacts],
    config: Config,
    errors: List[SourceFailure],
) -> List[ModuleFacts]:
    """The parsed facts of every file that can take part in a decision, in the order of ``raw``."""
    progress.start("bn2gn: analysing", len(raw))
    relevant = RelevantModules(raw, parse, config.backbone_attrs, root_names(config.roots))
    relevant.add([path for path, data in raw.items() if relevant.is_seed_file(data)])
    relevant.grow()
    progress.done()
    errors.extend(relevant.errors[p] for p in raw if p in relevant.errors)
    return [relevant.modules[p] for p in raw if p in relevant.modules]
