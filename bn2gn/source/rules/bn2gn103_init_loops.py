"""BN2GN103: init loops cover GroupNorm too, guarded with ``is not None``.

``isinstance(m, nn.BatchNorm2d)`` becomes ``isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))`` and
each ``constant_``/``fill_``/``zero_`` of ``m.weight``/``m.bias`` under it is guarded, because a
GroupNorm built with ``affine=False`` has no weight or bias.
"""

from __future__ import annotations

import bisect
from typing import Iterable, List, Optional, Set, Tuple

import libcst as cst

from ...core.file_results import Change
from ...core.rule_codes import Rule
from ...decide.facts import LINE_BREAK
from ..codemod import Context, Outcome
from ..support.inject import ensure_nn_import, torch_nn_name
from ..support.names import INIT_FUNCS

_EMPTY = cst.Module(body=[])


def _text(node: cst.CSTNode) -> str:
    return _EMPTY.code_for_node(node)


class InitLoops(cst.CSTTransformer):
    """Rewrite the isinstance checks inside ``scopes`` (top-level class/function names)."""

    def __init__(self, scopes: Set[str], bn_refs: Set[str], gn_ref: str, text: str):
        super().__init__()
        self.scopes = scopes
        #: the lines that spell ``isinstance``: a check this rule widens spans one of them
        self.isinstance_lines = [
            number
            for number, line in enumerate(LINE_BREAK.split(text), start=1)
            if "isinstance" in line
        ]
        self.bn_refs = bn_refs
        self.gn_ref = gn_ref
        self.depth: List[str] = []
        self.changed: List[Tuple[int, str]] = []

    def descends(self, span) -> bool:
        """Only statements spanning a line that spells ``isinstance`` are looked into, inside the
        outermost definitions named in ``scopes`` or in the blocks outside every definition that
        may hold one (``if``/``try`` at the top)."""
        at = bisect.bisect_left(self.isinstance_lines, span.first)
        if at == len(self.isinstance_lines) or self.isinstance_lines[at] > span.last:
            return False
        return span.top in self.scopes or (span.top is None and span.compound)

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.depth.append(node.name.value)

    def leave_ClassDef(self, original, updated):
        self.depth.pop()
        return updated

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.depth.append(node.name.value)

    def leave_FunctionDef(self, original, updated):
        self.depth.pop()
        return updated

    def leave_If(self, original: cst.If, updated: cst.If) -> cst.If:
        if not self.depth or self.depth[0] not in self.scopes:
            return updated
        subject, new_test = self._widen(updated.test)
        if subject is None:
            return updated
        line = self.start_of(original)[0]
        if new_test is not updated.test:
            self.changed.append(
                (line, f"isinstance(..., {self.gn_ref}) added to the BatchNorm2d check")
            )
        body = updated.body
        if isinstance(body, cst.IndentedBlock):
            new_body, guarded = _guard_statements(body.body, subject, body.indent)
            if guarded:
                self.changed.append((line, f"guarded {', '.join(guarded)} with `is not None`"))
                body = body.with_changes(body=new_body)
        return updated.with_changes(test=new_test, body=body)

    def _widen(self, test: cst.BaseExpression):
        """(subject name, new test) when ``test`` is ``isinstance(x, <BatchNorm2d>)``; (None, test) otherwise."""
        if not (
            isinstance(test, cst.Call)
            and isinstance(test.func, cst.Name)
            and test.func.value == "isinstance"
            and len(test.args) == 2
        ):
            return None, test
        subject = _text(test.args[0].value)
        kinds = test.args[1].value
        if _text(kinds) in self.bn_refs:
            elements = [cst.Element(kinds), cst.Element(cst.parse_expression(self.gn_ref))]
            tuple_node = cst.Tuple(elements=elements)
            arg = test.args[1].with_changes(value=tuple_node)
            return subject, test.with_changes(args=[test.args[0], arg])
        if isinstance(kinds, cst.Tuple):
            texts = [_text(e.value) for e in kinds.elements]
            if any(t in self.bn_refs for t in texts):
                if any(t.endswith("GroupNorm") for t in texts):
                    return subject, test
                elements = list(kinds.elements)
                last = elements[-1]
                elements[-1] = last.with_changes(
                    comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
                )
                elements.append(cst.Element(cst.parse_expression(self.gn_ref)))
                arg = test.args[1].with_changes(value=kinds.with_changes(elements=elements))
                return subject, test.with_changes(args=[test.args[0], arg])
        return None, test


def _guard_statements(
    statements: Iterable[cst.BaseStatement], subject: str, indent: Optional[str] = None
):
    """Guard each weight/bias initialisation; the guard's body is indented like the block being edited
    (``indent``: that block's own unit, None for the module's default)."""
    out: List[cst.BaseStatement] = []
    guarded: List[str] = []
    for stmt in statements:
        if not isinstance(stmt, cst.SimpleStatementLine):
            out.append(stmt)
            continue
        attrs = [_initialised_attr(small, subject) for small in stmt.body]
        if not any(attrs):
            out.append(stmt)
            continue
        for index, (small, attr) in enumerate(zip(stmt.body, attrs)):
            line = cst.SimpleStatementLine(
                body=[small.with_changes(semicolon=cst.MaybeSentinel.DEFAULT)],
                leading_lines=stmt.leading_lines if index == 0 else (),
                trailing_whitespace=stmt.trailing_whitespace,
            )
            if attr is None:
                out.append(line)
                continue
            guard = cst.parse_expression(
                f"hasattr({subject}, '{attr}') and {subject}.{attr} is not None"
            )
            out.append(
                cst.If(
                    test=guard,
                    body=cst.IndentedBlock(
                        body=[line.with_changes(leading_lines=())], indent=indent
                    ),
                    leading_lines=line.leading_lines,
                )
            )
            guarded.append(f"{subject}.{attr}")
    return out, guarded


def _initialised_attr(small: cst.BaseSmallStatement, subject: str) -> Optional[str]:
    """'weight' / 'bias' when the statement initialises ``subject.weight`` / ``subject.bias``."""
    if not (isinstance(small, cst.Expr) and isinstance(small.value, cst.Call)):
        return None
    call = small.value
    func = call.func
    if not (isinstance(func, cst.Attribute) and func.attr.value in INIT_FUNCS):
        return None
    candidates = [func.value] + ([call.args[0].value] if call.args else [])
    for candidate in candidates:
        text = _text(candidate)
        for attr in ("weight", "bias"):
            if text in (f"{subject}.{attr}", f"{subject}.{attr}.data"):
                return attr
    return None


class WidenInitLoops:
    """BN2GN103 in the registry: the job's init scopes, in the shared pass."""

    rules = (Rule.INIT_LOOPS,)

    def applies(self, context: Context) -> bool:
        job = context.job
        return Rule.INIT_LOOPS in context.rules and bool(job.init_scopes) and bool(job.bn_refs)

    def transformer(self, module: cst.Module, context: Context) -> InitLoops:
        gn_ref = (torch_nn_name(module) or "nn") + ".GroupNorm"  # the name the file has now
        job = context.job
        return InitLoops(set(job.init_scopes), set(job.bn_refs), gn_ref, context.source.text)

    def outcome(self, module: cst.Module, transformer: InitLoops, context: Context) -> Outcome:
        if transformer.changed and torch_nn_name(module) is None:
            module, _ = ensure_nn_import(module)
        return Outcome(
            module,
            changes=tuple(
                Change(Rule.INIT_LOOPS, line, note) for line, note in transformer.changed
            ),
        )
