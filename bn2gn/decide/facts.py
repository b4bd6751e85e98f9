"""Per-file facts from the standard-library ``ast``: imports, top-level definitions, BatchNorm sites.

``ast`` is an order of magnitude faster than LibCST, so whole-tree analysis uses it; LibCST only
sees the files that will change.
"""

from __future__ import annotations

import ast
import bisect
import dataclasses
import functools
import re
import warnings
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Set, Tuple

from ..core.ast_tools import CHILD_FIELDS, child_fields, first_line, walk_statements
from .plan import Site

BATCHNORM_OPS = {
    "torch.nn.BatchNorm2d": "BatchNorm2d",
    "torch.nn.modules.batchnorm.BatchNorm2d": "BatchNorm2d",
    "torch.nn.BatchNorm1d": "BatchNorm1d",
    "torch.nn.modules.batchnorm.BatchNorm1d": "BatchNorm1d",
    "torch.nn.BatchNorm3d": "BatchNorm3d",
    "torch.nn.modules.batchnorm.BatchNorm3d": "BatchNorm3d",
    "torch.nn.SyncBatchNorm": "SyncBatchNorm",
}
PARTIAL = {"functools.partial"}
IMPORT_WORD = re.compile(r"\bimport\b")
#: line breaks of ``str.splitlines`` that Python's tokenizer does not count
OTHER_BREAKS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
TYPE_CHECKS = {"isinstance", "issubclass"}
ATTR_SETTERS = {"__setattr__", "add_module", "register_module"}


class Definition:
    """A top-level class, function or assignment: a node of the construction graph.

    Its ``node`` is the file's own when the file keeps its tree; otherwise it is parsed from the
    definition's top-level statement the first time it is asked for, and kept (``ModuleFacts.node_at``).
    What the relevance filter, the class hierarchy and the construction graph read of every
    definition (its span, its base classes, its ``references``) is taken when the file is parsed,
    so only what reads a definition's code itself (roots, backbone inference) parses it again.
    """

    __slots__ = (
        "module",
        "name",
        "kind",
        "_node",
        "top",
        "lineno",
        "col",
        "first",
        "end",
        "bases",
        "base_names",
        "references",
    )

    def __init__(self, module: "ModuleFacts", name: str, kind: str, node: ast.stmt, top: int):
        self.module = module
        self.name = name
        self.kind = kind  # "class" | "function" | "var"
        self._node: Optional[ast.stmt] = node if module.tree_kept else None
        self.top = top  # index of the top-level statement holding it
        self.lineno, self.col = node.lineno, node.col_offset
        self.first = first_line(node)
        self.end = node.end_lineno
        #: a class's bases: the dotted names they qualify to (``qualify``), and their last names
        self.bases: Tuple[Optional[str], ...] = ()
        self.base_names: Tuple[str, ...] = ()
        #: ``reference_facts`` of its code (of a variable's value), for a file that let its tree go
        self.references: Optional[References] = None

    def _node_in(self, tree: ast.Module) -> ast.stmt:
        """Its node in ``tree``, the file's whole parse."""
        todo = [tree.body[self.top]]
        for node in todo:
            if node.lineno == self.lineno and node.col_offset == self.col:
                if not isinstance(node, (ast.If, ast.Try)):
                    return node
            if isinstance(node, (ast.If, ast.Try)):
                todo += node.body + getattr(node, "orelse", []) + getattr(node, "finalbody", [])
        raise LookupError(f"{self.module.display}:{self.lineno}: no definition {self.name}")

    @property
    def node(self) -> ast.stmt:
        if self._node is None:
            self._node = self.module.node_at(self.top, self.lineno, self.col)
        return self._node

    @property
    def qualname(self) -> str:
        return f"{self.module.modname}.{self.name}" if self.module.modname else self.name

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other) -> bool:
        return self is other

    def __repr__(self) -> str:
        return f"<{self.kind} {self.qualname}>"


@dataclasses.dataclass
class RawSite:
    """A site before classification: the node, its scope and the top-level definition holding it."""

    node: ast.expr
    op: str
    form: str
    scope: str
    owner: Optional[str]  # name of the top-level definition containing the site
    statement: ast.stmt
    func_chain: Tuple[ast.AST, ...]  # enclosing FunctionDefs, outermost first
    target: str


class ModuleFacts:
    """What one file says: its imports, its definitions and its BatchNorm sites."""

    def __init__(
        self,
        path: Path,
        display: str,
        modname: str,
        text: str,
        tree: ast.Module,
        keep_tree: bool = True,
    ):
        """``keep_tree=False``: the tree is let go once the facts are taken; the nodes of a
        definition or a top-level statement are parsed again from its lines when asked for
        (``node_at``, ``top_level``). A file whose text holds a line break ``splitlines`` counts but
        Python does not (form feed, ``\\x1c``, ``\\u2028``...) keeps its tree: its ``lines`` do
        not number as ``ast`` does."""
        self.path = path
        self.display = display
        self.modname = modname
        self.lines = text.splitlines(keepends=True)
        self.tree_kept = keep_tree or bool(OTHER_BREAKS.search(text))
        self._tree: Optional[ast.Module] = tree
        self.imports: Dict[str, str] = {}
        self.star_imports: List[str] = []
        self.defs: Dict[str, Definition] = {}
        self.bn_aliases: Dict[str, str] = {}
        self.sites: List[RawSite] = []
        #: the words each definition's code spells (``relevance.spelled_by_definition``), when a
        #: worker process took them with the facts (``parse_pool``); else taken when first asked
        self.code_words: Optional[Dict[str, FrozenSet[bytes]]] = None
        #: each top-level statement: (first line with decorators, line, column, end line, end column)
        self.top_spans: List[Span] = []
        #: the spans of the body statements of each top-level class, by the class's index
        self.class_members: Dict[int, List[Span]] = {}
        self._tops: Dict[int, ast.stmt] = {}
        self._collect_top_level(text)
        if not self.tree_kept:
            taken: Dict[int, References] = {}
            for definition in self.defs.values():
                node = definition._node_in(tree)
                node = node.value if definition.kind == "var" else node
                found = taken.get(id(node))
                if found is None:
                    found = taken[id(node)] = reference_facts(self, node)
                definition.references = found
            self.top_spans = [span_of(node) for node in tree.body]
            self.class_members = {
                index: [span_of(member) for member in node.body]
                for index, node in enumerate(tree.body)
                if isinstance(node, ast.ClassDef)
            }
            self._tree = None

    @property
    def kept_tree(self) -> Optional[ast.Module]:
        """The file's own tree, or None once it was let go (no parse here)."""
        return self._tree

    @property
    def tree(self) -> ast.Module:
        """The file's tree; for a file that let it go, a fresh parse each time (no node of it is
        the one ``Definition.node`` or ``top_level`` gives)."""
        if self._tree is not None:
            return self._tree
        return _parse("".join(self.lines), self.display)

    def top_level(self, index: int, keep: bool = True) -> ast.stmt:
        """The ``index``-th top-level statement: the tree's own, or parsed from its lines once and
        kept (``keep=False``: parsed for the asking, unless kept already)."""
        if self._tree is not None:
            return self._tree.body[index]
        found = self._tops.get(index)
        if found is None:
            found = self._parse_span(self.top_spans[index])
            if found is None:  # it shares a line with the end of a statement before it
                found = self.tree.body[index]
            if keep:
                self._tops[index] = found
        return found

    def class_member(self, index: int, member: int) -> Optional[ast.stmt]:
        """The ``member``-th statement of the body of the ``index``-th top-level statement, a class,
        parsed from its own lines (a graph walk needs one method, not the whole class); None where
        they do not parse alone (a member on the class's header line)."""
        return self._parse_span(self.class_members[index][member], indented=True)

    def _parse_span(self, span: Span, indented: bool = False) -> Optional[ast.stmt]:
        """The statement at ``span``, parsed from its lines with its lines and columns kept (an
        ``indented`` one inside an ``if 1:`` on the line above); None where that fails."""
        first, end = span[0], span[3]
        head = "\n" * (first - 2) + "if 1:\n" if indented else "\n" * (first - 1)
        try:
            body = _parse(head + "".join(self.lines[first - 1 : end]), self.display).body
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None
        if indented:
            body = body[0].body if body and isinstance(body[0], ast.If) else []
        return next(
            (
                n
                for n in body
                if (n.lineno, n.col_offset, n.end_lineno, n.end_col_offset) == span[1:]
            ),
            None,
        )

    def node_at(self, index: int, line: int, col: int, keep: bool = True) -> ast.stmt:
        """The definition statement at ``line``/``col`` in the ``index``-th top-level statement (in
        it, or in the ``if``/``try`` blocks ``_collect_definition`` enters)."""
        todo = [self.top_level(index, keep)]
        for node in todo:
            if (
                node.lineno == line
                and node.col_offset == col
                and not isinstance(node, (ast.If, ast.Try))
            ):
                return node
            if isinstance(node, (ast.If, ast.Try)):
                todo += node.body + getattr(node, "orelse", []) + getattr(node, "finalbody", [])
        raise LookupError(f"{self.display}:{line}: no definition at column {col}")

    # -- names ---------------------------------------------------------------------------------
    def _absolute(self, module: Optional[str], level: int) -> str:
        if not level:
            return module or ""
        package = self.modname.split(".")[:-level] if self.modname else []
        if self.path.name == "__init__.py":
            package = self.modname.split(".")[: len(self.modname.split(".")) - level + 1]
        return ".".join(package + ([module] if module else []))

    def _collect_top_level(self, text: str) -> None:
        top_imports = [n for n in self._tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        # each import statement spells ``import`` once: no other occurrence, no nested import to look
        # for; otherwise only the statements spanning a line that spells it can hold one
        only_top = text.count("import") == len(top_imports)
        lines = None if only_top else import_lines(text)
        if lines is not None and len(lines) == len(top_imports):
            only_top = True
        for node in top_imports if only_top else walk_statements(self._tree, lines):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.imports[alias.asname] = alias.name
                    else:
                        self.imports.setdefault(alias.name.split(".")[0], alias.name.split(".")[0])
            elif isinstance(node, ast.ImportFrom):
                source = self._absolute(node.module, node.level)
                for alias in node.names:
                    if alias.name == "*":
                        self.star_imports.append(source)
                    else:
                        self.imports[alias.asname or alias.name] = (
                            f"{source}.{alias.name}" if source else alias.name
                        )
        classes = []
        for index, node in enumerate(self._tree.body):
            self._collect_definition(node, index, classes)
        for definition, node in classes:  # once every name of the file is known
            definition.bases = tuple(self.qualify(base) for base in node.bases)
            definition.base_names = tuple(_base_name(base) for base in node.bases)

    def _collect_definition(self, node: ast.stmt, top: int, classes: list) -> None:
        if isinstance(node, ast.ClassDef):
            self.defs[node.name] = definition = Definition(self, node.name, "class", node, top)
            classes.append((definition, node))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self.defs[node.name] = Definition(self, node.name, "function", node, top)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for name in _target_names(target):
                    self.defs[name] = Definition(self, name, "var", node, top)
                    op = self.batchnorm_op(node.value)
                    if op and isinstance(target, ast.Name):
                        self.bn_aliases[name] = op
        elif isinstance(node, (ast.If, ast.Try)):
            for child in node.body + getattr(node, "orelse", []) + getattr(node, "finalbody", []):
                self._collect_definition(child, top, classes)

    def qualify(self, expr: ast.AST) -> Optional[str]:
        """The dotted name an expression refers to (``nn.BatchNorm2d`` -> ``torch.nn.BatchNorm2d``)."""
        if isinstance(expr, ast.Name):
            if expr.id in self.bn_aliases:
                return "torch.nn." + self.bn_aliases[expr.id]
            if expr.id in self.imports:
                return self.imports[expr.id]
            if expr.id in self.defs:
                return f"{self.modname}.{expr.id}" if self.modname else expr.id
            if expr.id in ("BatchNorm2d", "BatchNorm1d", "BatchNorm3d", "SyncBatchNorm") and any(
                s in ("torch.nn", "torch.nn.modules", "torch.nn.modules.batchnorm")
                for s in self.star_imports
            ):
                return "torch.nn." + expr.id
            return None
        if isinstance(expr, ast.Attribute):
            base = self.qualify(expr.value)
            return f"{base}.{expr.attr}" if base else None
        return None

    def batchnorm_op(self, expr: ast.AST) -> Optional[str]:
        name = self.qualify(expr)
        return BATCHNORM_OPS.get(name) if name else None

    def char_col(self, line: int, byte_col: int) -> int:
        """ast columns are UTF-8 byte offsets; plans and LibCST use characters."""
        if 0 < line <= len(self.lines):
            return len(self.lines[line - 1].encode("utf-8")[:byte_col].decode("utf-8", "replace"))
        return byte_col

    def make_site(self, raw: RawSite) -> Site:
        node = raw.node
        return Site(
            path=self.display,
            line=node.lineno,
            col=self.char_col(node.lineno, node.col_offset) + 1,
            end_line=node.end_lineno,
            end_col=self.char_col(node.end_lineno, node.end_col_offset) + 1,
            scope=raw.scope,
            op=raw.op,
            form=raw.form,
            target=raw.target,
            _fingerprint=functools.partial(self.fingerprint, raw),
        )

    def fingerprint(self, raw: RawSite) -> str:
        """A short hash of the site's statement, its scope and its rank in the statement (plan files match sites by it).

        ``ast.unparse`` drops comments and layout, so reformatting or edits elsewhere in the file
        (lines shifting) keep the fingerprint; any edit to the statement itself changes it.
        """
        statement = raw.statement
        if statement is None or isinstance(
            statement, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        ):
            statement = raw.node  # a default argument: the whole def is too wide to fingerprint
        import hashlib  # here: a tree with no BatchNorm site never loads OpenSSL

        rank = self._rank(raw)
        text = "\0".join((raw.scope, ast.unparse(statement), ast.unparse(raw.node), str(rank)))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def _rank(self, raw: RawSite) -> int:
        """How many sites of the same statement start before ``raw`` (indexed once: no scan per site)."""
        ranks = self.__dict__.get("_ranks")
        if ranks is None or len(ranks) != len(self.sites):
            ranks = {}
            seen: Dict[int, int] = {}
            for site in sorted(self.sites, key=lambda s: (s.node.lineno, s.node.col_offset)):
                key = id(site.statement)
                ranks[id(site)] = seen.get(key, 0)
                seen[key] = ranks[id(site)] + 1
            self._ranks = ranks
        return ranks.get(id(raw), 0)


#: where a statement lies: (first line with decorators, line, column, end line, end column)
Span = Tuple[int, int, int, int, int]


def span_of(node: ast.stmt) -> Span:
    return (first_line(node), node.lineno, node.col_offset, node.end_lineno, node.end_col_offset)


#: what ``Project.refs_in`` needs of an expression or statement, taken in one walk: the dotted names
#: of its attributes, and of each name it loads (name, dotted name or None, and the dotted name of
#: the attribute read it is the base of, when an unresolved one hides it: ``block.expansion``)
References = Tuple[FrozenSet[str], FrozenSet[Tuple[str, Optional[str], Optional[str]]]]


def reference_facts(facts: "ModuleFacts", node: ast.AST, unresolved: bool = False) -> References:
    """The names ``node`` spells, as ``facts`` qualifies them; ``unresolved``: also the loaded
    names ``qualify`` cannot name (a function's locals may hold them). ``Project.refs_from``
    resolves them. The walk is ``core.ast_tools.walk``'s, written out (every definition of a file
    that lets its tree go is walked once, after the parse): breadth first, so a call
    comes before its callee and an attribute before its base. Nodes are as ``ast.parse`` makes
    them: their classes are compared, not tested with ``isinstance``."""
    attrs: Set[str] = set()
    names: Set[Tuple[str, Optional[str], Optional[str]]] = set()
    called: Set[int] = set()
    hidden_by: Dict[int, Optional[str]] = {}
    qualify = facts.qualify
    known = CHILD_FIELDS
    todo = [node]
    append = todo.append
    for sub in todo:
        kind = sub.__class__
        if kind is _NAME:
            if sub.ctx.__class__ is _LOAD:
                guard = hidden_by.get(id(sub), "")
                if guard is None:
                    continue  # the attribute read on it names nothing: always hidden
                dotted = qualify(sub)
                if dotted or unresolved:
                    names.add((sub.id, dotted or None, guard or None))
            continue  # no child but its ctx
        if kind is _CONSTANT:
            continue
        if kind is _CALL:
            called.add(id(sub.func))
        elif kind is _ATTRIBUTE:
            value = sub.value.__class__
            if value is _NAME or value is _ATTRIBUTE:
                dotted = qualify(sub) or None
                if dotted:
                    attrs.add(dotted)
                if value is _NAME and id(sub) not in called and sub.attr != "__init__":
                    # ``block.expansion``: reading a class attribute passes no class
                    hidden_by[id(sub.value)] = dotted
        fields = known.get(kind)
        if fields is None:
            fields = child_fields(kind)
        for field in fields:
            value = getattr(sub, field, None)
            if value.__class__ is list:
                for item in value:
                    if isinstance(item, _AST):
                        append(item)
            elif isinstance(value, _AST):
                append(value)
    return frozenset(attrs), frozenset(names)


_AST, _NAME, _LOAD, _CONSTANT = ast.AST, ast.Name, ast.Load, ast.Constant
_CALL, _ATTRIBUTE = ast.Call, ast.Attribute


def import_lines(text: str) -> List[int]:
    """The lines that spell the word ``import`` (sorted, one per occurrence). In ASCII text the
    word is found with ``str.find`` and its ends checked by hand: ``\\b`` at every position made
    the regex search cost as much as the walk it saves."""
    if not text.isascii():
        return line_numbers(text, [m.start() for m in IMPORT_WORD.finditer(text)])
    offsets = []
    start = text.find("import")
    while start >= 0:
        end = start + 6
        before = text[start - 1 : start]
        after = text[end : end + 1]
        if not (before.isalnum() or before == "_" or after.isalnum() or after == "_"):
            offsets.append(start)
        start = text.find("import", end)
    return line_numbers(text, offsets)


LINE_BREAK = re.compile(r"\r\n|\r|\n")


def lines_tell(text: str) -> bool:
    """Whether a word test on ``text``'s ``splitlines`` lines says what ``ast`` sees: the text is
    ASCII (``ast`` names identifiers after NFKC) and holds no line break Python does not count."""
    return text.isascii() and not OTHER_BREAKS.search(text)


def line_numbers(text: str, offsets: List[int]) -> List[int]:
    """1-based line numbers (as ``ast`` counts them: ``\\n``, ``\\r\\n`` or ``\\r``) of sorted offsets."""
    if "\r" in text:
        starts = [0] + [m.end() for m in LINE_BREAK.finditer(text)]
        return [bisect.bisect_right(starts, off) for off in offsets]
    out, line, previous = [], 1, 0
    for off in offsets:
        line += text.count("\n", previous, off)
        previous = off
        out.append(line)
    return out


def _target_names(target: ast.AST) -> List[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for elt in target.elts for n in _target_names(elt)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []


def _base_name(base: ast.AST) -> str:
    if isinstance(base, ast.Name):
        return base.id
    if isinstance(base, ast.Attribute):
        return base.attr
    return ""


def _parse(text: str, display: str) -> ast.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(text, filename=display)
