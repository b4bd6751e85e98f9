"""LibCST edits of a config file's dicts, addressed by key and line: set, add, remove; layout kept.

The resolver records the ``file:line`` of every key, so an edit names the keyword (``dict(k=v)``)
or literal key (``{'k': v}``) written at that line. Comments on their own lines survive a
removal; a removed entry's trailing comment on its own line goes with it.
"""

from __future__ import annotations

import ast
import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple, Union

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider


@dataclasses.dataclass(frozen=True)
class Target:
    """The element ``key`` written at ``line`` (a top-level assignment when ``top`` is set)."""

    key: str
    line: int
    top: bool = False
    #: the key of the dict entry holding it, to tell apart entries written on one line
    parent: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class SetValue:
    target: Target
    code: str


@dataclasses.dataclass(frozen=True)
class Remove:
    target: Target
    prune: bool = True  # also remove the owner when its dict becomes empty


@dataclasses.dataclass(frozen=True)
class Add:
    """Append ``items`` to the dict that ``container`` holds."""

    container: Target
    items: Tuple[Tuple[str, str], ...]


@dataclasses.dataclass(frozen=True)
class AppendStatement:
    code: str


Edit = Union[SetValue, Remove, Add, AppendStatement]
Element = Union[cst.Arg, cst.DictElement]


class EditError(Exception):
    """An edit whose target is not written as a plain keyword or literal key at that line."""

    def __init__(self, line: int, reason: str):
        super().__init__(f"{line}: {reason}")
        self.line = line
        self.reason = reason


class _Index(cst.CSTVisitor):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self):
        self.elements: Dict[Tuple[str, int], List[Tuple[Element, Optional[str]]]] = {}
        self.tops: Dict[Tuple[str, int], cst.Assign] = {}
        self.owner: Dict[int, Element] = {}  # id(dict-ish node) -> the element holding it
        self.container_of: Dict[int, cst.CSTNode] = {}  # id(element) -> its Call / Dict

    def _line(self, node: cst.CSTNode) -> int:
        return self.get_metadata(PositionProvider, node).start.line

    def visit_Assign(self, node: cst.Assign) -> None:
        if len(node.targets) == 1 and isinstance(node.targets[0].target, cst.Name):
            self.tops[(node.targets[0].target.value, self._line(node))] = node

    def visit_Call(self, node: cst.Call) -> None:
        if isinstance(node.func, cst.Name) and node.func.value == "dict":
            for arg in node.args:
                if arg.keyword is not None:
                    self._add(arg.keyword.value, arg.keyword, arg, node)

    def visit_Dict(self, node: cst.Dict) -> None:
        for element in node.elements:
            if isinstance(element, cst.DictElement) and isinstance(element.key, cst.SimpleString):
                self._add(ast.literal_eval(element.key.value), element.key, element, node)

    def _add(self, key: str, anchor: cst.CSTNode, element: Element, container: cst.CSTNode) -> None:
        owner = self.owner.get(id(container))
        parent = _key_of(owner) if owner is not None else None
        self.elements.setdefault((key, self._line(anchor)), []).append((element, parent))
        self.container_of[id(element)] = container
        self.owner[id(element.value)] = element


class _Apply(cst.CSTTransformer):
    def __init__(
        self, values: Dict[int, str], removed: set, added: Dict[int, Tuple[Tuple[str, str], ...]]
    ):
        self.values, self.removed, self.added = values, removed, added

    def leave_Arg(self, original: cst.Arg, updated: cst.Arg) -> cst.Arg:
        if id(original) in self.values:
            return updated.with_changes(value=cst.parse_expression(self.values[id(original)]))
        return updated

    def leave_DictElement(
        self, original: cst.DictElement, updated: cst.DictElement
    ) -> cst.DictElement:
        if id(original) in self.values:
            return updated.with_changes(value=cst.parse_expression(self.values[id(original)]))
        return updated

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.Call:
        args = _drop(list(original.args), list(updated.args), self.removed, "arg")
        if id(original) in self.added:
            for key, code in self.added[id(original)]:
                new = cst.Arg(
                    keyword=cst.Name(key),
                    value=cst.parse_expression(code),
                    equal=cst.AssignEqual(
                        whitespace_before=cst.SimpleWhitespace(""),
                        whitespace_after=cst.SimpleWhitespace(""),
                    ),
                )
                args = _append(args, new, updated.whitespace_before_args)
        if len(args) != len(updated.args) or id(original) in self.added:
            changes = {"args": args}
            if not args:
                changes["whitespace_before_args"] = cst.SimpleWhitespace("")
            return updated.with_changes(**changes)
        return updated

    def leave_Dict(self, original: cst.Dict, updated: cst.Dict) -> cst.Dict:
        elements = _drop(list(original.elements), list(updated.elements), self.removed, "element")
        if id(original) in self.added:
            for key, code in self.added[id(original)]:
                new = cst.DictElement(
                    key=cst.SimpleString(repr(key)), value=cst.parse_expression(code)
                )
                elements = _append(elements, new, updated.lbrace.whitespace_after)
        if len(elements) != len(updated.elements) or id(original) in self.added:
            return updated.with_changes(elements=elements)
        return updated


def _drop(originals: list, updated: list, removed: set, kind: str) -> list:
    """Remove the marked elements; a removed last element hands its comma (the closing layout) on.

    Own-line comments that followed a removed element move to the element kept before it.
    """
    keep: list = []
    for original, element in zip(originals, updated):
        if id(original) not in removed:
            keep.append(element)
            continue
        lines = _own_lines(element.comma)
        if (
            lines
            and keep
            and isinstance(keep[-1].comma, cst.Comma)
            and isinstance(keep[-1].comma.whitespace_after, cst.ParenthesizedWhitespace)
        ):
            space = keep[-1].comma.whitespace_after
            keep[-1] = keep[-1].with_changes(
                comma=keep[-1].comma.with_changes(
                    whitespace_after=space.with_changes(empty_lines=list(space.empty_lines) + lines)
                )
            )
    if len(keep) == len(updated) or not keep:
        return keep
    last_removed = next(u for o, u in reversed(list(zip(originals, updated))) if id(o) in removed)
    if id(originals[-1]) in removed:
        tail = keep[-1]
        comma = _joined_comma(tail.comma, last_removed.comma)
        changes = {"comma": comma}
        if isinstance(tail, cst.Arg):
            changes["whitespace_after_arg"] = last_removed.whitespace_after_arg
        keep[-1] = tail.with_changes(**changes)
    return keep


def _own_lines(comma) -> list:
    space = comma.whitespace_after if isinstance(comma, cst.Comma) else None
    return list(space.empty_lines) if isinstance(space, cst.ParenthesizedWhitespace) else []


def _plain(comma):
    """A copy of a comma without the comments it carries (for a new element)."""
    space = comma.whitespace_after
    if isinstance(space, cst.ParenthesizedWhitespace):
        space = space.with_changes(
            empty_lines=[], first_line=cst.TrailingWhitespace(newline=space.first_line.newline)
        )
    return comma.with_changes(whitespace_after=space)


def _joined_comma(kept, removed):
    """The kept comma's own-line comments, then the removed element's closing layout."""
    if (
        isinstance(kept, cst.Comma)
        and isinstance(removed, cst.Comma)
        and isinstance(kept.whitespace_after, cst.ParenthesizedWhitespace)
        and isinstance(removed.whitespace_after, cst.ParenthesizedWhitespace)
    ):
        return removed.with_changes(
            whitespace_after=kept.whitespace_after.with_changes(
                indent=removed.whitespace_after.indent, last_line=removed.whitespace_after.last_line
            )
        )
    return removed


def _append(elements: list, new, opening) -> list:
    if not elements:
        return [new]
    last = elements[-1]
    if len(elements) >= 2 and isinstance(elements[-2].comma, cst.Comma):
        between = _plain(elements[-2].comma)
    elif isinstance(opening, cst.ParenthesizedWhitespace):
        between = _plain(cst.Comma(whitespace_after=opening))
    else:
        between = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
    changes = {"comma": between}
    new_changes = {"comma": last.comma}
    if isinstance(last, cst.Arg):
        changes["whitespace_after_arg"] = cst.SimpleWhitespace("")
        new_changes["whitespace_after_arg"] = last.whitespace_after_arg
    return elements[:-1] + [last.with_changes(**changes), new.with_changes(**new_changes)]


def apply_edits(text: str, edits: Sequence[Edit]) -> str:
    """The text with ``edits`` applied; EditError names the first edit that cannot be placed."""
    wrapper = MetadataWrapper(cst.parse_module(text), unsafe_skip_copy=True)
    index = _Index()
    wrapper.visit(index)
    module = wrapper.module
    values: Dict[int, str] = {}
    removed: set = set()
    added: Dict[int, Tuple[Tuple[str, str], ...]] = {}
    statements: List[str] = []
    for edit in edits:
        if isinstance(edit, AppendStatement):
            statements.append(edit.code)
        elif isinstance(edit, SetValue):
            values[id(_element(index, edit.target))] = edit.code
        elif isinstance(edit, Remove):
            _mark_removed(index, _element(index, edit.target), removed, edit.prune)
        else:
            holder = _container_value(index, edit.container)
            added[id(holder)] = added.get(id(holder), ()) + tuple(edit.items)
    new = module.visit(_Apply(values, removed, added))
    for code in statements:
        body = list(cst.parse_module(code).body)
        body[0] = body[0].with_changes(leading_lines=list(new.footer) + list(body[0].leading_lines))
        new = new.with_changes(
            body=list(new.body) + body, footer=[]
        )  # after the file's last comments
    return new.code


def _key_of(element: Element) -> Optional[str]:
    if isinstance(element, cst.Arg):
        return element.keyword.value if element.keyword is not None else None
    return (
        ast.literal_eval(element.key.value) if isinstance(element.key, cst.SimpleString) else None
    )


def _element(index: _Index, target: Target) -> Element:
    found = [
        e
        for e, parent in index.elements.get((target.key, target.line), [])
        if target.parent is None or parent == target.parent
    ]
    if len(found) != 1:
        why = "not written as a keyword or literal key" if not found else "written more than once"
        raise EditError(target.line, f"{target.key!r} is {why} there; edit it by hand")
    return found[0]


def _container_value(index: _Index, target: Target) -> cst.CSTNode:
    if target.top:
        node = index.tops.get((target.key, target.line))
        value = node.value if node is not None else None
    else:
        value = _element(index, target).value
    if not (
        isinstance(value, cst.Dict)
        or (
            isinstance(value, cst.Call)
            and isinstance(value.func, cst.Name)
            and value.func.value == "dict"
        )
    ):
        raise EditError(
            target.line,
            f"{target.key!r} does not hold a dict(...) or {{...}} written out; edit it by hand",
        )
    return value


def _mark_removed(index: _Index, element: Element, removed: set, prune: bool) -> None:
    removed.add(id(element))
    container = index.container_of[id(element)]
    siblings = container.args if isinstance(container, cst.Call) else container.elements
    if prune and all(id(s) in removed for s in siblings):
        owner = index.owner.get(id(container))
        if owner is not None:
            _mark_removed(index, owner, removed, prune)
