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
``tests/unit/test_relevance.py`` checks on every fixture folder that the plan is the one made with every
file parsed.
"""

from __future__ import annotations

import functools
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Callable, Dict, FrozenSet, Iterable, List, Optional, Sequence, Set, Tuple

from ..core import progress
from ..core.errors import SourceError, SourceFailure
from ..core.settings import Config
from ..core.source_files import decode_source
from .facts import Definition, ModuleFacts
from .parse_pool import Parsed, parse_each

#: parses a round's files (path and bytes) at once; a failure in place of a file it cannot read
ParseBatch = Callable[[Sequence[Tuple[Path, bytes]]], List[Parsed]]

WORD = re.compile(rb"[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*")
SEED_MARKERS = (b"BatchNorm", b"get_group_norm")
#: what ``\b`` takes for a word byte in a bytes pattern (ASCII letters, digits, ``_``)
ASCII_WORD_BYTES = frozenset(b"_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
RELATIVE_FROM = re.compile(rb"\s*from\s+\.+\s*import\b")
PLAIN_IMPORT = re.compile(rb"\s*import\b")
#: the ASCII word after ``class`` at the start of a line (``FileText.defines_class``)
CLASS_LINE = re.compile(rb"^[ \t]*class[ \t]+([A-Za-z0-9_]+)", re.MULTILINE)
#: comments and string literals, from their ``#`` or opening quote (``_blank`` reads the prefix)
NOT_CODE = re.compile(
    rb"""\#[^\r\n]*|'''[\s\S]*?'''|\"\"\"[\s\S]*?\"\"\"|'(?:[^'\\\r\n]|\\[\s\S])*'|"(?:[^"\\\r\n]|\\[\s\S])*\""""
)


def attribute_spelling(attrs: Iterable[str]) -> str:
    """``self.backbone``, ``self . backbone``, ``'backbone'`` (setattr, add_module): how a class
    assigns an attribute of that name (``roots._statement_sinks``); a keyword ``backbone=`` does not.
    """
    names = "|".join(re.escape(a) for a in sorted(attrs))
    return r"(?:\.(?:\s|\\)*|['\"])(?:" + names + r")\b"


class FileText:
    """What a file's text says about the names it can link (computed once, when first asked)."""

    def __init__(self, path: Path, data: bytes):
        self.path = str(path)
        self.data = data
        self._words: Optional[FrozenSet[bytes]] = None
        self._raw_words: Optional[FrozenSet[bytes]] = None
        self._imports: Optional[Tuple[FrozenSet[bytes], FrozenSet[bytes]]] = None
        self._before: Dict[bytes, FrozenSet[bytes]] = {}
        self._classes: Optional[FrozenSet[bytes]] = None

    @property
    def words(self) -> FrozenSet[bytes]:
        """Every word, UTF-8 as definition names are encoded for the search (``nfkc_source``)."""
        if self._words is None:
            self._words = frozenset(WORD.findall(nfkc_source(self.path, self.data)))
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

    @property
    def raw_words(self) -> FrozenSet[bytes]:
        """Every word of the bytes as read (``words``, unless NFKC or a coding cookie changed them)."""
        if self._raw_words is None:
            ascii = self.data.isascii()
            self._raw_words = self.words if ascii else frozenset(WORD.findall(self.data))
        return self._raw_words

    def defines_class(self, names: Set[bytes]) -> bool:
        """Whether a line starts (after spaces or tabs) with ``class`` and one of ``names``, whole:
        each file's class names are read once (``\\b`` ends an ASCII name); a name that is not
        ASCII is searched for as it was."""
        if self._classes is None:
            self._classes = frozenset(CLASS_LINE.findall(self.data))
        if not names.isdisjoint(self._classes):
            return True
        other = sorted(name for name in names if not name.isascii())
        return bool(other) and bool(
            re.search(rb"^[ \t]*class[ \t]+(?:" + b"|".join(other) + rb")\b", self.data, re.M)
        )

    def spells_before(self, name: bytes, modules: Set[bytes]) -> bool:
        """Whether one of ``modules`` is spelled just before ``.name``. A word before a dot is a
        word of the file: a file that spells none of them is answered without a search."""
        return not modules.isdisjoint(self.raw_words) and not modules.isdisjoint(
            self.words_before(name)
        )

    def words_before(self, name: bytes) -> FrozenSet[bytes]:
        """The words spelled just before ``.name`` (``resnet`` and ``models`` in
        ``models.resnet.ResNet``, for ``ResNet`` and ``resnet``): read back from each whole
        ``name`` over spaces, a dot and spaces to the word's start. Searching every dotted pair
        of a file cost more than all the other text work of a round."""
        found = self._before.get(name)
        if found is not None:
            return found
        data, words, size = self.data, set(), len(name)
        at = data.find(name)
        while at >= 0:
            if data[at + size : at + size + 1] not in WORD_ENDS:
                at = data.find(name, at + 1)
                continue
            end = at
            while end and data[end - 1] in SPACE_BYTES:
                end -= 1
            if end and data[end - 1] == DOT:
                end -= 1
                while end and data[end - 1] in SPACE_BYTES:
                    end -= 1
                start = end
                while start and data[start - 1] in WORD_BYTES:
                    start -= 1
                if start < end and data[start] not in DIGIT_BYTES:
                    words.add(data[start:end])
            at = data.find(name, at + size)
        found = self._before[name] = frozenset(words)
        return found


#: the bytes ``WORD`` and ``\s`` match (a word may not start with a digit)
WORD_BYTES = frozenset(
    b"_0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
) | frozenset(range(0x80, 0x100))
DIGIT_BYTES = frozenset(b"0123456789")
SPACE_BYTES = frozenset(b" \t\n\r\f\v")
#: what may follow a whole word: the end of the text or a byte that is no word byte
WORD_ENDS = frozenset(bytes([b]) for b in range(256) if b not in WORD_BYTES) | {b""}
DOT = ord(".")


def nfkc_source(path: str, data: bytes, text: Optional[str] = None) -> bytes:
    """The source as UTF-8 with identifiers spelled as ``ast`` names them (NFKC): a non-ASCII file
    may use another encoding (a coding cookie) or a compatibility form of a letter. ASCII is as read.
    """
    if data.isascii():
        return data
    if text is None:
        try:
            text = decode_source(path, data).text
        except SourceError:
            return data  # it will not parse either; its words as read are as good as any
    import unicodedata  # here: an ASCII tree (the pre-commit hook's usual one) never loads it

    return unicodedata.normalize("NFKC", text).encode("utf-8", "surrogatepass")


def import_keywords(data: bytes) -> List[int]:
    """Where ``data`` spells the word ``import`` (what ``rb"\\bimport\\b"`` finds), found with
    ``bytes.find`` and its ends checked by hand: the regex tried ``\\b`` at every byte, three
    quarters of the time of reading every file's imports."""
    found = []
    at = data.find(b"import")
    while at >= 0:
        end = at + 6
        if (at == 0 or data[at - 1] not in ASCII_WORD_BYTES) and (
            end == len(data) or data[end] not in ASCII_WORD_BYTES
        ):
            found.append(at)
        at = data.find(b"import", end)
    return found


def _import_words(data: bytes) -> Tuple[FrozenSet[bytes], FrozenSet[bytes]]:
    words: Set[bytes] = set()
    bare: Set[bytes] = set()
    for keyword in import_keywords(data):
        start = data.rfind(b"\n", 0, keyword) + 1
        while start > 1 and data[start - 2 : start - 1] == b"\\":
            start = data.rfind(b"\n", 0, start - 1) + 1
        end = data.find(b"\n", keyword + 6)
        end = len(data) if end < 0 else end
        opened = data.find(b"(", keyword + 6, end)
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


class NameLinks:
    """Where the targets of one name live, gathered so that a file spelling the name is checked
    against all of them at once (torch has 237 top-level ``log`` definitions).

    Name resolution (``graph.Project.resolve_dotted``) links a dotted name that ends with a target's
    module and name, so a file links a target only if it is the target's file, imports its module
    (``from .resnet import ResNet``, ``from . import resnet``), sits below the package whose
    ``__init__`` defines it (``from . import ResNet``), imports the bare name (``import ResNet``), or
    spells the module before the name (``models.resnet.ResNet``).
    """

    __slots__ = ("name", "modules", "paths", "packages")

    def __init__(self, name: bytes):
        self.name = name
        self.modules: Set[bytes] = set()
        self.paths: Set[str] = set()
        self.packages: Set[str] = set()

    def add(self, module: bytes, path: str, package: Optional[str]) -> None:
        self.modules.add(module)
        self.paths.add(path)
        if package is not None:
            self.packages.add(package)

    def link_from(self, text: "FileText") -> bool:
        """Whether the file of ``text``, which spells the name, links one of these targets."""
        return (
            text.path in self.paths
            or self.name in text.bare_imports
            or not self.modules.isdisjoint(text.import_words)
            or any(text.path.startswith(package) for package in self.packages)
            or text.spells_before(self.name, self.modules)
        )


class ParsedFile:
    """A parsed file, its text, and the words each of its definitions' code spells (computed for the
    whole file at once, the first time a definition of it may name a target)."""

    def __init__(self, facts: ModuleFacts, text: FileText):
        self.facts = facts
        self.text = text
        self._spelled: Optional[Dict[str, FrozenSet[bytes]]] = None

    def spelled(self, definition: Definition) -> FrozenSet[bytes]:
        if self._spelled is None:
            self._spelled = self.facts.code_words or code_words(self.facts, self.text.data)
        return self._spelled[definition.name]


class RelevantModules:
    """Grows the set of parsed files to a fixpoint; ``parse`` raises SourceError for a bad file.

    The growth goes in rounds. Each round takes the definitions that became targets in the last one
    and the files parsed in the last one: a parsed file's definitions are checked against every
    target once, when the file is new, and against each later round's new targets; an unparsed file
    is parsed once it can name a new target. Each check is a set intersection of a file's words with
    the round's names, so no index of every word of every definition is built.
    """

    def __init__(
        self,
        raw: Dict[Path, bytes],
        parse: Callable[[Path, bytes], ModuleFacts],
        attrs: Iterable[str] = (),
        roots: Iterable[str] = (),
        parse_batch: Optional[ParseBatch] = None,
    ):
        self.raw = dict(raw)
        self.parse_batch = parse_batch or functools.partial(parse_each, parse)
        self.errors: Dict[Path, SourceFailure] = {}
        self.text: Dict[Path, FileText] = {}
        self.modules: Dict[Path, ModuleFacts] = {}
        self.parsed: List[ParsedFile] = []
        self.targets: Set[Definition] = set()
        #: target name (UTF-8) -> where the targets of that name live
        self.target_names: Dict[bytes, NameLinks] = {}
        self.homes: Dict[int, Tuple[bytes, str, Optional[str]]] = {}
        #: unparsed file -> base-class names already looked for in it
        self.bases_sought: Dict[Path, Set[bytes]] = defaultdict(set)
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

    def add(self, paths: Iterable[Path]) -> List[ParsedFile]:
        """Parse ``paths``; a file that cannot be parsed is reported and left out. Returns the new files."""
        added = []
        todo = [p for p in dict.fromkeys(paths) if p not in self.modules and p in self.raw]
        for path, facts in zip(todo, self.parse_batch([(p, self.raw[p]) for p in todo])):
            if isinstance(facts, SourceFailure):
                self.errors[path] = facts
                del self.raw[path]
                continue
            self.modules[path] = facts
            progress.step()
            for name, definition in facts.defs.items():
                self.defined.add(name)
                if definition.kind == "class":
                    self.bases |= {n for n in definition.base_names if n}
            added.append(ParsedFile(facts, self.text_of(path)))
        self.parsed += added
        return added

    def is_seed_file(self, data: bytes) -> bool:
        """A file with a site, a helper, a ``--root`` name, or a class that may assign a backbone attribute."""
        if any(marker in data for marker in self.seed_markers):
            return True
        return self._may_hold_attr(data)

    def _may_hold_attr(self, data: bytes) -> bool:
        return (
            self.file_holds_attr is not None
            and b"class" in data
            and any(attr in data for attr in self.attr_bytes)
            and bool(self.file_holds_attr.search(data))
        )

    def seeds_of(self, parsed: ParsedFile) -> List[Definition]:
        """A new file's own targets: the definitions holding a site, and the classes that may be roots
        (a ``--root``, or one that assigns a backbone attribute)."""
        facts = parsed.facts
        found = [facts.defs[raw.owner] for raw in facts.sites if raw.owner in facts.defs]
        holds_attr = self._may_hold_attr(parsed.text.data)
        for definition in facts.defs.values():
            if definition.kind != "class":
                continue
            if definition.name in self.roots or (
                holds_attr and self.holds_attr.search(source_text(definition))
            ):
                found.append(definition)
        return found

    def _linked_names(self, parsed: ParsedFile, names: Dict[bytes, "NameLinks"]) -> Set[bytes]:
        """The names among ``names`` that the file spells and can link to a target of that name."""
        text = parsed.text
        return {name for name in spelled_among(text.words, names) if names[name].link_from(text)}

    def _users(self, parsed: ParsedFile, names: Dict[bytes, "NameLinks"]) -> List[Definition]:
        """The file's definitions, not yet targets, whose code names one of ``names``' targets."""
        linked = self._linked_names(parsed, names)
        if not linked:
            return []
        return [
            definition
            for definition in parsed.facts.defs.values()
            if definition not in self.targets and not linked.isdisjoint(parsed.spelled(definition))
        ]

    def _mark(self, definitions: Iterable[Definition], new: Dict[bytes, "NameLinks"]) -> None:
        """Make ``definitions`` targets, adding the new ones to ``new`` as well."""
        for definition in definitions:
            if definition not in self.targets:
                self.targets.add(definition)
                name = definition.name.encode()
                home = self._home(definition.module)
                for names in (self.target_names, new):
                    links = names.get(name)
                    if links is None:
                        links = names[name] = NameLinks(name)
                    links.add(*home)

    def _home(self, home: ModuleFacts) -> Tuple[bytes, str, Optional[str]]:
        """A target module's last name, path, and package folder (an ``__init__``'s, else None)."""
        found = self.homes.get(id(home))
        if found is None:
            path = str(home.path)
            package = str(home.path.parent) + os.sep if home.path.name == "__init__.py" else None
            found = self.homes[id(home)] = (home.modname.rsplit(".", 1)[-1].encode(), path, package)
        return found

    def unparsed(self) -> List[Path]:
        return [p for p in self.raw if p not in self.modules]

    def grow(self, first: List[ParsedFile]) -> None:
        """Parse until no unparsed file can name a target and every parsed class's base is parsed."""
        fresh = first
        new: Dict[bytes, NameLinks] = {}
        self._mark((d for parsed in fresh for d in self.seeds_of(parsed)), new)
        while new or fresh:
            older = self.parsed[: len(self.parsed) - len(fresh)]
            found: List[Definition] = []
            for parsed in fresh:
                found += self._users(parsed, self.target_names)
            if new:
                for parsed in older:
                    found += self._users(parsed, new)
            files = self._files_naming(new) if new else []
            files += self._base_class_files(set(files))
            new = {}
            self._mark(found, new)
            fresh = self.add(files)
            self._mark((d for parsed in fresh for d in self.seeds_of(parsed)), new)

    def _files_naming(self, new: Dict[bytes, "NameLinks"]) -> List[Path]:
        """Unparsed files that spell a new target's name and can link to it."""
        found = []
        for path in self.unparsed():
            text = self.text_of(path)
            if any(new[name].link_from(text) for name in spelled_among(text.words, new)):
                found.append(path)
        return found

    def _base_class_files(self, already: Set[Path]) -> List[Path]:
        """Unparsed files that define (``class Name``) a base class no parsed file defines."""
        missing = {name.encode() for name in self.bases - self.defined}
        if not missing:
            return []
        found = []
        for path in self.unparsed():
            if path in already:
                continue
            sought = self.bases_sought[path]
            names = missing.intersection(self.words_of(path)) - sought
            sought |= names  # a file's text does not change: a name looked for once is not again
            if names and self.text_of(path).defines_class(names):
                found.append(path)
        return found


def spelled_among(words: FrozenSet[bytes], names: Dict[bytes, list]) -> Set[bytes]:
    """``words & names``, iterating the smaller of the two (a round's few new names against a
    file's thousands of words, or a new file's words against every target name)."""
    if len(names) < len(words):
        return words.intersection(names)
    return names.keys() & words


def source_text(definition: Definition) -> str:
    return "".join(definition.module.lines[definition.first - 1 : definition.end])


def _blank(match: "re.Match[bytes]") -> bytes:
    """A comment or a string literal becomes a space and its line breaks (so lines keep their
    numbers); an f-string is kept, as its braces hold code."""
    token = match.group()
    if token[:1] != b"#" and _is_f_string(match.string, match.start()):
        return token
    breaks = token.count(b"\n") + token.count(b"\r") - token.count(b"\r\n")
    return b" " + b"\n" * breaks


PREFIX_LETTERS = frozenset(b"rRbBuUfF")


def _is_f_string(data: bytes, quote: int) -> bool:
    """Whether the literal opening at ``quote`` has an ``f`` among the (at most two) prefix letters
    before it. NOT_CODE starts at the quote, not at the prefix: the regex engine then skips straight
    to the next quote or ``#`` (2.7 times faster on torch); the prefix letters stay as words, which
    only ever admits more."""
    start = quote
    while start > 0 and quote - start < 2 and data[start - 1] in PREFIX_LETTERS:
        start -= 1
    if start > 0 and (
        data[start - 1] >= 0x80 or data[start - 1 : start].isalnum() or data[start - 1] == 95
    ):
        return False  # the letters end a longer word: no prefix
    return b"f" in data[start:quote].lower()


def code_only(data: bytes) -> bytes:
    """``data`` with comments and string literals other than f-strings blanked, line numbers kept."""
    return NOT_CODE.sub(_blank, data)


def spelled_by_definition(facts: ModuleFacts, data: bytes) -> Dict[str, FrozenSet[bytes]]:
    """For each definition of a file: the words of its code, comments and string literals blanked
    (f-strings kept: their braces hold code), imported aliases expanded. A superset of the ``Name``
    ids, ``Attribute`` attrs and imported names resolution links; ``__all__ = ['ResNet']`` and
    ``type='ResNet'`` spell nothing. The file is blanked once and split into the lines ``ast`` counts
    (``\\n``, ``\\r\\n``, ``\\r``)."""
    lines = code_only(data).splitlines()
    aliases = {
        alias.encode(): dotted.rsplit(".", 1)[-1].encode()
        for alias, dotted in facts.imports.items()
    }
    out = {}
    for name, definition in facts.defs.items():
        words = set(WORD.findall(b"\n".join(lines[definition.first - 1 : definition.end])))
        words |= {aliases[w] for w in words & aliases.keys()}
        out[name] = frozenset(words)
    return out


def code_words(facts: ModuleFacts, data: bytes) -> Dict[str, FrozenSet[bytes]]:
    """``spelled_by_definition`` of the file read as ``data``."""
    return spelled_by_definition(facts, nfkc_source(str(facts.path), data, "".join(facts.lines)))


def with_code_words(parse: Callable[[Path, bytes], ModuleFacts], path: Path, data: bytes):
    """``parse``, with the facts' ``code_words`` taken: a worker process takes them while it
    parses (most parsed files are asked for them), and a word spelled by several definitions
    is one object, which pickles once."""
    facts = parse(path, data)
    one: Dict[bytes, bytes] = {}
    facts.code_words = {
        name: frozenset(one.setdefault(word, word) for word in words)
        for name, words in code_words(facts, data).items()
    }
    return facts


def root_names(roots: Iterable[str]) -> Set[str]:
    """The class names of ``--root`` values (``Class``, ``module.Class``, ``path/file.py:Class``)."""
    return {r.rsplit(":", 1)[-1].rsplit(".", 1)[-1] for r in roots}


def select_modules(
    raw: Dict[Path, bytes],
    parse: Callable[[Path, bytes], ModuleFacts],
    config: Config,
    errors: List[SourceFailure],
    parse_batch: Optional[ParseBatch] = None,
) -> List[ModuleFacts]:
    """The parsed facts of every file that can take part in a decision, in the order of ``raw``.
    ``parse_batch``: parses a round's files at once (``parse_pool.BatchParser``), in their order."""
    progress.start("bn2gn: analysing", len(raw))
    relevant = RelevantModules(
        raw, parse, config.backbone_names, root_names(config.roots), parse_batch
    )
    relevant.grow(relevant.add([path for path, data in raw.items() if relevant.is_seed_file(data)]))
    progress.done()
    errors.extend(relevant.errors[p] for p in raw if p in relevant.errors)
    return [relevant.modules[p] for p in raw if p in relevant.modules]
