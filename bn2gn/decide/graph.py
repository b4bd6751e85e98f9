"""The construction graph across all scanned files: what each definition references, who builds whom.

A definition 'builds' another when it names it, or when the other is passed to its constructor
(``ResNet(BasicBlock, ...)``, ``PoseResNet(*spec[18])``); that is how building blocks held in
module-level tables or passed as arguments are told apart from root models.
"""

from __future__ import annotations

import ast
import bisect
import re
from collections import defaultdict, deque
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from ..core.ast_tools import CHILD_FIELDS, FUNCTIONS, child_fields, spans_a_line, walk
from .facts import Definition, ModuleFacts, References, Span, line_numbers, reference_facts


class Project:
    """All scanned modules, with name resolution between them."""

    def __init__(self, modules: List[ModuleFacts], bindings_of_every_class: bool = False):
        self.modules = modules
        #: param_bindings are read for nn.Module classes only, unless a ``--root`` may name another class
        self.bindings_of_every_class = bindings_of_every_class
        self.by_qualname: Dict[str, Definition] = {}
        self.by_name: Dict[str, List[Definition]] = defaultdict(list)
        for facts in modules:
            for definition in facts.defs.values():
                self.by_qualname[definition.qualname] = definition
                self.by_name[definition.name].append(definition)
        self._refs: Dict[Definition, Set[Definition]] = {}
        self._locals: Dict[Tuple[int, int, int], LocalValues] = {}
        #: definition -> module classes that build it; at most two are kept, enough to tell whether a
        #: class is built by another one (a root is not), without a reach per class (quadratic on big trees)
        self.built_by: Dict[Definition, Set[Definition]] = defaultdict(set)
        self._build_starts: List[Tuple[Definition, Iterable[Definition]]] = []
        #: class -> __init__ parameter name -> definitions passed for it by callers
        self.param_bindings: Dict[Definition, Dict[str, Set[Definition]]] = defaultdict(
            lambda: defaultdict(set)
        )
        self.modules_classes = self.module_classes()
        self._collect_constructor_arguments()
        self._collect_class_building()
        self._propagate_builders()

    # -- resolution ------------------------------------------------------------------------------
    def resolve_dotted(self, dotted: str) -> Optional[Definition]:
        found = self.by_qualname.get(dotted)
        if found is not None:
            return found
        name = dotted.rsplit(".", 1)[-1]
        for candidate in self.by_name.get(name, ()):
            qual = candidate.qualname
            if dotted.endswith("." + qual) or qual.endswith("." + dotted):
                return candidate
        return None

    def resolve(self, facts: ModuleFacts, expr: ast.AST) -> Optional[Definition]:
        dotted = facts.qualify(expr)
        return self.resolve_dotted(dotted) if dotted else None

    def refs_in(
        self, facts: ModuleFacts, node: ast.AST, local: Optional[Dict[str, Set[Definition]]] = None
    ) -> Set[Definition]:
        """Definitions an expression or statement names; local variable names expand to what they hold."""
        return self.refs_from(reference_facts(facts, node, local is not None), local)

    def refs_from(
        self, references: References, local: Optional[Dict[str, Set[Definition]]] = None
    ) -> Set[Definition]:
        """``refs_in`` on the names ``reference_facts`` took: an attribute names what it
        resolves to; a loaded name is hidden when the attribute read on it resolves to nothing,
        expands to what it holds when it is a local, and names what it resolves to otherwise."""
        attrs, names = references
        resolve = self.resolve_dotted
        out = {found for found in map(resolve, attrs) if found is not None}
        for name, dotted, guard in names:
            if guard is not None and resolve(guard) is None:
                continue
            if local is not None and name in local:
                out |= local[name]
                continue
            found = resolve(dotted) if dotted else None
            if found is not None:
                out.add(found)
        return out

    def refs(self, definition: Definition) -> Set[Definition]:
        cached = self._refs.get(definition)
        if cached is None:
            references = definition.references
            if references is None:
                node = definition.node
                references = reference_facts(
                    definition.module, node.value if definition.kind == "var" else node
                )
            cached = self.refs_from(references) - {definition}
            self._refs[definition] = cached
        return cached

    def reach(self, start: Iterable[Definition], avoid=None) -> Dict[Definition, Definition]:
        """Everything reachable from ``start`` (never entering ``avoid``, a definition or several);
        maps each to where it was first reached."""
        return dict(self.reach_order(start, avoid))

    def reach_order(
        self, start: Iterable[Definition], avoid=None
    ) -> List[Tuple[Definition, Definition]]:
        """``reach``'s pairs, breadth first in the order found. Definitions are told apart by
        ``id`` here: with a ``Definition.__hash__`` (a Python call) per edge, the walks of torch's
        367 candidate roots made 3.8 million of the classification's 5.7 million such calls."""
        avoided = (
            ()
            if avoid is None
            else (tuple(avoid) if isinstance(avoid, (list, tuple, set)) else (avoid,))
        )
        seen = set(map(id, avoided))
        found: List[Tuple[Definition, Definition]] = []
        for item in start:
            if id(item) not in seen:
                seen.add(id(item))
                found.append((item, item))
        cached = self._refs
        for current, first in found:  # grows while it is read: the queue of the walk
            refs = cached.get(current)
            if refs is None:
                refs = self.refs(current)
            for nxt in refs:
                key = id(nxt)
                if key not in seen:
                    seen.add(key)
                    found.append((nxt, first))
        return found

    # -- locals ----------------------------------------------------------------------------------
    def local_values(self, facts: ModuleFacts, func: ast.AST) -> "LocalValues":
        """For each local name of a function: the definitions its values can hold (flow-insensitive)."""
        key = (id(facts), func.lineno, func.col_offset)  # the same for a function parsed again
        found = self._locals.get(key)
        if found is None:
            found = self._locals[key] = LocalValues(self, facts, func)
            if not facts.tree_kept:
                found.settle()  # the function was parsed again for the walk: let its nodes go
        return found

    # -- who builds whom -------------------------------------------------------------------------
    def _collect_constructor_arguments(self) -> None:
        """Record every call of a scanned nn.Module class (of any scanned class with
        ``bindings_of_every_class``) with arguments, once per enclosing function (with that function's
        locals) and once more at module level; what they are given is read for those classes only.
        One walk per file, entering only the statements whose text can hold such a call."""
        every = self.bindings_of_every_class
        wanted = (
            {d for defs in self.by_name.values() for d in defs if d.kind == "class"}
            if every
            else self.modules_classes
        )
        class_names = {d.name for d in wanted}
        for facts in self.modules:
            lines = call_lines(facts, class_names)
            if lines is not None and not lines:
                continue
            for call, funcs, module_level in module_calls(facts, lines):
                if not call.args and not call.keywords:
                    continue
                callee = self.resolve(facts, call.func)
                if callee is None or callee.kind != "class" or callee not in wanted:
                    continue
                for func in funcs:
                    self._record_call(facts, call, self.local_values(facts, func), callee)
                if module_level:
                    self._record_call(facts, call, None, callee)

    def _record_call(self, facts: ModuleFacts, call: ast.Call, local, callee: Definition) -> None:
        params = init_params(callee)
        for index, arg in enumerate(call.args):
            passed = self.refs_in(facts, arg, local)
            if not passed:
                continue
            self._built_with(callee, passed)
            if isinstance(arg, ast.Starred):
                for name in params[index:]:
                    self.param_bindings[callee][name] |= passed
            elif index < len(params):
                self.param_bindings[callee][params[index]] |= passed
        for keyword in call.keywords:
            passed = self.refs_in(facts, keyword.value, local)
            if passed:
                self._built_with(callee, passed)
                if keyword.arg:
                    self.param_bindings[callee][keyword.arg] |= passed

    def _built_with(self, builder: Definition, passed: Set[Definition]) -> None:
        """Only an nn.Module class 'builds' what it is given: a trainer holding a model does not."""
        if builder not in self.modules_classes:
            return
        self._build_starts.append((builder, passed))

    def _collect_class_building(self) -> None:
        for facts in self.modules:
            for definition in facts.defs.values():
                if definition in self.modules_classes:
                    self._build_starts.append((definition, self.refs(definition)))

    def _propagate_builders(self) -> None:
        """Everything reachable from a builder's start set is built by it (never by itself).

        One pass over the graph in which each definition accepts at most two builder labels: if two
        or more builders reach it, it holds two, so one differs from the definition itself.
        """
        queue = deque()
        labels_of: Dict[Definition, Set[Definition]] = {}

        def offer(definition: Definition, builder: Definition) -> None:
            labels = labels_of.setdefault(definition, set())
            if len(labels) < 2 and builder not in labels:
                labels.add(builder)
                queue.append((definition, builder))

        for builder, start in self._build_starts:
            for definition in start:
                offer(definition, builder)
        while queue:
            definition, builder = queue.popleft()
            for nxt in self.refs(definition):
                offer(nxt, builder)
        for definition, labels in labels_of.items():
            others = labels - {definition}
            if others:
                self.built_by[definition] |= others
        self._build_starts = []

    def module_classes(self) -> Set[Definition]:
        """Classes deriving (directly or through scanned classes) from something in torch.nn."""
        found: Set[Definition] = set()
        changed = True
        classes = [d for f in self.modules for d in f.defs.values() if d.kind == "class"]
        while changed:
            changed = False
            for definition in classes:
                if definition in found:
                    continue
                for dotted in definition.bases:
                    dotted = dotted or ""
                    target = self.resolve_dotted(dotted) if dotted else None
                    if dotted.startswith("torch.nn.") or (target is not None and target in found):
                        found.add(definition)
                        changed = True
                        break
        return found


class LocalValues:
    """``Project.local_values`` of one function: a read-only mapping from each local name to the
    definitions its values can hold, its own values' and those of every local they name, at any
    depth (what iterating "a name holds what the locals it is given hold" until nothing changes
    gives). The function is walked when a name is first asked about (the arguments of many
    calls spell none), and a name's set is worked out when it is asked for: a call records what a
    few locals hold, and most of a function's locals are never asked about. A function of a file
    that let its tree go is worked out whole at once (``settle``), so that no node of it is kept."""

    def __init__(self, project: "Project", facts: ModuleFacts, func: ast.AST):
        self._project, self._facts, self._func = project, facts, func
        self._found: Optional[Dict[str, Sequence[ast.AST]]] = None
        self._direct: Dict[str, Set[Definition]] = {}
        self._uses: Dict[str, Set[str]] = {}
        self._held: Dict[str, Set[Definition]] = {}

    @property
    def _sources(self) -> Dict[str, Sequence[ast.AST]]:
        """Each local name's values, in the order the walk meets them."""
        if self._found is None:
            found: Dict[str, List[ast.AST]] = defaultdict(list)
            for node in walk(self._func):
                if isinstance(node, BINDERS):
                    for name, value in local_assignments(node):
                        found[name].append(value)
            self._found = found
        return self._found

    def settle(self) -> None:
        """Work out every name now and keep only the answers: no node of the function."""
        names = list(self._sources)
        for name in names:
            if name not in self._held:
                self._work_out(name)
        self._func = None
        self._found = dict.fromkeys(names, ())
        self._direct, self._uses = {}, {}

    def __contains__(self, name: object) -> bool:
        return name in self._sources

    def __len__(self) -> int:
        return len(self._sources)

    def __iter__(self):
        return iter(self._sources)

    def __getitem__(self, name: str) -> Set[Definition]:
        held = self._held.get(name)
        if held is None:
            if name not in self._sources:
                raise KeyError(name)
            self._work_out(name)
            held = self._held[name]
        return held

    def get(self, name: str, default=None):
        return self[name] if name in self._sources else default

    def items(self):
        return [(name, self[name]) for name in self._sources]

    def _work_out(self, name: str) -> None:
        """What ``name`` and every local it reaches (through the names their values spell) hold,
        each its own values' and those of the locals it reaches: iterated until nothing changes
        over the names not worked out before, those reached last first (a chain ``h2 = f(h1)``,
        ``h1 = g(h0)`` takes one round)."""
        held = self._held
        seen, order = {name}, [name]
        for current in order:  # grows while it is read
            for other in self._used_by(current):
                if other not in seen and other not in held:
                    seen.add(other)
                    order.append(other)
        order.reverse()
        found = {current: set(self._direct_of(current)) for current in order}
        changed = True
        while changed:
            changed = False
            for current in order:
                mine = found[current]
                for other in self._used_by(current):
                    extra = (found[other] if other in found else held[other]) - mine
                    if extra:
                        mine |= extra
                        changed = True
        held.update(found)

    def _direct_of(self, name: str) -> Set[Definition]:
        found = self._direct.get(name)
        if found is None:
            refs_in, facts = self._project.refs_in, self._facts
            found = self._direct[name] = set().union(
                *(refs_in(facts, v) for v in self._sources[name])
            )
        return found

    def _used_by(self, name: str) -> Set[str]:
        found = self._uses.get(name)
        if found is None:
            sources = self._sources
            found = self._uses[name] = {
                n.id
                for v in sources[name]
                for n in walk(v)
                if isinstance(n, ast.Name) and n.id in sources
            }
        return found


def init_params(cls: Definition) -> List[str]:
    """Positional parameter names of a class's ``__init__`` after ``self`` (empty when it has none)."""
    for stmt in cls.node.body:
        if isinstance(stmt, FUNCTIONS) and stmt.name == "__init__":
            args = stmt.args.posonlyargs + stmt.args.args
            return [a.arg for a in args[1:]]
    return []


#: the nodes ``local_assignments`` finds a value in
BINDERS = (
    ast.Assign,
    ast.AnnAssign,
    ast.AugAssign,
    ast.For,
    ast.AsyncFor,
    ast.comprehension,
    ast.withitem,
    ast.NamedExpr,
    ast.arguments,
    ast.Call,
)


def local_assignments(node: ast.AST):
    """(name, value) pairs for a statement that puts a value into a local name."""
    if isinstance(node, ast.Assign):
        for target in node.targets:
            yield from _bind(target, node.value)
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None:
        yield from _bind(node.target, node.value)
    elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
        yield from _bind(node.target, node.iter)
    elif isinstance(node, ast.withitem) and node.optional_vars is not None:
        yield from _bind(node.optional_vars, node.context_expr)
    elif isinstance(node, ast.NamedExpr):
        yield from _bind(node.target, node.value)
    elif isinstance(node, ast.arguments):
        positional = node.posonlyargs + node.args
        for arg, default in zip(positional[len(positional) - len(node.defaults) :], node.defaults):
            yield arg.arg, default
        for arg, default in zip(node.kwonlyargs, node.kw_defaults):
            if default is not None:
                yield arg.arg, default
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        owner = node.func.value
        if node.func.attr in ("append", "extend", "insert", "add_module", "update") and isinstance(
            owner, ast.Name
        ):
            for arg in list(node.args) + [k.value for k in node.keywords]:
                yield owner.id, arg


def _bind(target: ast.AST, value: ast.AST):
    if isinstance(target, ast.Name):
        yield target.id, value
    elif isinstance(target, (ast.Tuple, ast.List)):
        for elt in target.elts:
            yield from _bind(elt, value)
    elif isinstance(target, ast.Starred):
        yield from _bind(target.value, value)
    elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
        yield target.value.id, value


def calls_with_scopes(tree: ast.AST, lines: Optional[List[int]] = None, module_level=True):
    """(call, enclosing functions outermost first, at module level) for every call in ``tree``;
    with ``lines`` (sorted line numbers), statements spanning none of them are not entered.

    Module level means outside any function, class body or lambda (``module_level=False``: ``tree``
    lies in a class body).
    """
    stack = [(tree, (), module_level)]
    push = stack.append
    node_type = ast.AST
    known = CHILD_FIELDS
    while stack:
        node, funcs, module_level = stack.pop()
        if lines is not None and isinstance(node, ast.stmt) and not spans_a_line(node, lines):
            continue
        if isinstance(node, ast.Call):
            yield node, funcs, module_level
        if isinstance(node, FUNCTIONS):
            funcs, module_level = funcs + (node,), False
        elif isinstance(node, (ast.ClassDef, ast.Lambda)):
            module_level = False
        fields = known.get(node.__class__)
        if fields is None:
            fields = child_fields(node.__class__)
        for field in fields:  # the children, as ast.iter_child_nodes gives them, but no ctx
            value = getattr(node, field, None)
            if value.__class__ is list:
                for item in value:
                    if isinstance(item, node_type):
                        push((item, funcs, module_level))
            elif isinstance(value, node_type):
                push((value, funcs, module_level))


def module_calls(facts: ModuleFacts, lines: Optional[List[int]]):
    """``calls_with_scopes`` of the file, in the same order, for every call inside a function or at
    module level (the calls ``Project`` records); a file that let its tree go gives the calls of the
    top-level statements spanning ``lines``, each parsed for the walk and let go (``local_values``
    knows a function by its file and position, not by its node): of a class, only its members
    spanning ``lines`` are parsed (``class_members``)."""
    if facts.tree_kept:
        yield from calls_with_scopes(facts.tree, lines)
        return
    spans = facts.top_spans
    for index in range(len(spans) - 1, -1, -1):  # the walk pops the module's last statement first
        if lines is not None and not spans_lines(spans[index], lines):
            continue
        members = class_members(facts, index, lines)
        if members is None:
            yield from calls_with_scopes(facts.top_level(index, keep=False), lines)
            continue
        for member in members:
            yield from calls_with_scopes(member, lines, module_level=False)


def class_members(facts: ModuleFacts, index: int, lines: Optional[List[int]]):
    """The members spanning ``lines`` of the ``index``-th top-level statement, a class, last first
    (as the walk pops them), each parsed alone; None when it is no class or a member does not parse
    alone. A call in the class's decorators, bases or keywords is in no function and not at module
    level: ``Project`` records none, so they are not walked."""
    spans = facts.class_members.get(index)
    if spans is None or lines is None:
        return None
    found = []
    for member in range(len(spans) - 1, -1, -1):
        if spans_lines(spans[member], lines):
            node = facts.class_member(index, member)
            if node is None:
                return None
            found.append(node)
    return found


def spans_lines(span: Span, lines: List[int]) -> bool:
    """Whether the statement at ``span`` spans one of ``lines`` (sorted)."""
    at = bisect.bisect_left(lines, span[0])
    return at < len(lines) and lines[at] <= span[3]


#: read backwards (on the reversed text) from each ``(``: spaces and closing parentheses, the word
#: before them, and ``class`` before that word (a definition, not a call)
BACK_CALL = re.compile(r"\(([\s)]*)(\w*)([ \t]+ssalc(?!\w))?")


def call_lines(facts: ModuleFacts, class_names: Set[str]) -> Optional[List[int]]:
    """The sorted lines of the ``(`` of every call in ``facts`` that can name one of ``class_names``
    (None: every line may).

    ``resolve`` ends with the definition's own name, which a call spells itself before its ``(``
    (``Name(``, ``mod.Name(``) or through an import alias or a module-level BatchNorm alias; the
    ``(`` lies inside the call's innermost statement, so a statement spanning none of these lines
    holds no call of a scanned class. A ``(`` reached only across a line break counts whatever the
    word when a continuation or a comment may stand between (``_name_hidden``). In a non-ASCII file a word is
    compared as ``ast`` names it (NFKC: ``Ｌｉｎｅａｒ`` is ``Linear``), and a ``(`` whose word
    follows a non-ASCII character that is no word character (a combining mark, which an identifier
    may hold) counts whatever the word. (Such files were walked whole: 172 files of torch, 11,718
    top-level statements parsed again for nothing.)
    """
    text = "".join(facts.lines)
    if not text.isascii():
        return _call_lines_unicode(text, facts, class_names)
    names = set(class_names)
    names |= {a for a, dotted in facts.imports.items() if dotted.rsplit(".", 1)[-1] in class_names}
    names |= {a for a, op in facts.bn_aliases.items() if op in class_names}
    last = len(text) - 1
    hits = [
        last - m.start()
        for m in BACK_CALL.finditer(text[::-1])
        if not m.group(3) and (m.group(2)[::-1] in names or _name_hidden(text, m, last))
    ]
    return line_numbers(text, sorted(hits))


def _call_lines_unicode(text: str, facts: ModuleFacts, class_names: Set[str]) -> List[int]:
    import unicodedata  # here: an ASCII tree (the pre-commit hook's usual one) never loads it

    names = set(class_names)
    names |= {a for a, dotted in facts.imports.items() if dotted.rsplit(".", 1)[-1] in class_names}
    names |= {a for a, op in facts.bn_aliases.items() if op in class_names}
    backwards = text[::-1]
    last = len(text) - 1
    hits = []
    for m in BACK_CALL.finditer(backwards):
        if m.group(3):
            continue
        word = m.group(2)[::-1]
        before = backwards[m.end() : m.end() + 1]
        if (
            word in names
            or _name_hidden(text, m, last)
            or (not word.isascii() and unicodedata.normalize("NFKC", word) in names)
            or not before.isascii()
        ):
            hits.append(last - m.start())
    return line_numbers(text, sorted(hits))


def _name_hidden(text: str, match: "re.Match[str]", last: int) -> bool:
    """Whether the ``(`` of a ``BACK_CALL`` match (on the reversed ``text``) may follow a name the
    match cannot see: across a line break, after a backslash continuation or below a line that has a
    ``#`` (the word found may be a comment's). Otherwise the word before the line break is the
    call's own, or there is none: the ``(`` opens a tuple or a generator, or calls what no name
    spells (a subscript, a call, a literal). Such ``(`` start most lines of torch's tables and
    tests: counting them all had 2,428 top-level statements parsed again, 1,317 without them."""
    gap = match.group(1)
    if "\n" not in gap and "\r" not in gap:
        return False
    at = last - match.end(1)  # the character before the gap, in ``text``
    if at < 0:
        return False
    start = max(text.rfind("\n", 0, at), text.rfind("\r", 0, at)) + 1
    return text[at] == "\\" or "#" in text[start : at + 1]
