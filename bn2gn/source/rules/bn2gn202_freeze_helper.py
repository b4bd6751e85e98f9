"""BN2GN202: define freeze_backbone_bn / keep_backbone_bn_eval once per patched file.

The definitions are generated from ``bn2gn.runtime``, the same functions ``bn2gn demo``/``verify``
and the tests run, with the configured backbone attributes as the default argument and the
runtime's helpers renamed ``_bn2gn_*`` so they cannot collide with the file's own names. They go
after the imports, black-formatted, in the file's indentation and newlines. With
``--helper-module MOD`` a ``from MOD import ...`` line is added instead.
"""

from __future__ import annotations

import functools
import inspect
from typing import List, Optional, Sequence, Tuple

import libcst as cst

from ... import runtime
from ..support.inject import (
    defined_or_imported_names,
    dominant_indent,
    format_snippet,
    import_end_index,
    insert_after_imports,
    prerendered,
    tuple_literal,
    with_indent,
)
from ..support.names import PUBLIC_HELPERS as PUBLIC

HELPERS = {
    "unwrap_model": "_bn2gn_unwrap_model",
    "backbone_modules": "_bn2gn_backbone_modules",
    "backbone_batchnorms": "_bn2gn_backbone_batchnorms",
}
ORDER = (
    "unwrap_model",
    "backbone_modules",
    "backbone_batchnorms",
    "freeze_backbone_bn",
    "keep_backbone_bn_eval",
)
HEADER = (
    "# Added by bn2gn patch-trainer: keeps the pretrained backbone BatchNorm frozen while training."
)


@functools.lru_cache(maxsize=32)
def runtime_source(names: Tuple[str, ...], backbone_attrs: Tuple[str, ...]) -> str:
    """Black-formatted source of the runtime functions ``names`` and the helpers they call."""
    wanted = set(names) | set(HELPERS)
    code = "\n\n".join(_specialised(name, backbone_attrs) for name in ORDER if name in wanted)
    return prerendered(code) or format_snippet_source(code)


@functools.lru_cache(maxsize=64)
def _specialised(name: str, backbone_attrs: Tuple[str, ...]) -> str:
    tree = cst.parse_module(inspect.getsource(getattr(runtime, name)))
    return tree.visit(_Specialise(backbone_attrs)).code


@functools.lru_cache(maxsize=32)
def runtime_statements(names: Tuple[str, ...], backbone_attrs: Tuple[str, ...]) -> tuple:
    """runtime_source parsed (LibCST nodes are immutable, so every file can share them)."""
    return tuple(cst.parse_module(runtime_source(names, backbone_attrs)).body)


def format_snippet_source(code: str) -> str:
    return cst.Module(body=format_snippet(code)).code


class _Specialise(cst.CSTTransformer):
    """Rename the runtime's helpers and bake the configured backbone attributes into the default."""

    def __init__(self, backbone_attrs: Sequence[str]):
        super().__init__()
        self.default = cst.parse_expression(tuple_literal(backbone_attrs))

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.Name:
        return updated_node.with_changes(value=HELPERS.get(updated_node.value, updated_node.value))

    def leave_Param(self, original_node: cst.Param, updated_node: cst.Param) -> cst.Param:
        if updated_node.name.value == "backbone_attrs":
            return updated_node.with_changes(default=self.default)
        return updated_node


class InjectFreezeHelper:
    """Define (or import) every runtime function the file calls but does not define or import yet."""

    def __init__(self, backbone_attrs: Sequence[str], helper_module: Optional[str] = None):
        self.backbone_attrs = tuple(backbone_attrs)
        self.helper_module = helper_module

    def missing(self, module: cst.Module, also_called: Sequence[str] = ()) -> List[str]:
        """``also_called``: names that planned (not yet inserted) statements will call."""
        have = defined_or_imported_names(module)
        called = set(also_called)

        class _Called(cst.CSTVisitor):
            def visit_Call(self, node: cst.Call) -> None:
                if isinstance(node.func, cst.Name):
                    called.add(node.func.value)

        module.visit(_Called())
        return [name for name in PUBLIC if name in called and name not in have]

    def apply(
        self, module: cst.Module, names: Optional[Sequence[str]] = None
    ) -> Tuple[cst.Module, List[str]]:
        """Return the module with the missing definitions (or the import) added, and their names;
        ``names``: the missing ones when the plan already knows them (``missing_names``)."""
        names = self.missing(module) if names is None else list(names)
        if not names:
            return module, []
        if self.helper_module:
            index = import_end_index(module)
            statement = cst.parse_statement(
                f"from {self.helper_module} import {', '.join(names)}\n"
            )
            body = list(module.body)
            body[index:index] = [statement]
            return module.with_changes(body=body), names
        have = defined_or_imported_names(module)
        statements = runtime_statements(tuple(names), self.backbone_attrs)
        statements = [
            s for s in statements if not (isinstance(s, cst.FunctionDef) and s.name.value in have)
        ]
        statements = with_indent(statements, dominant_indent(module))
        index = import_end_index(module)
        module = insert_after_imports(module, statements)
        first = module.body[index]
        header = cst.EmptyLine(comment=cst.Comment(HEADER))
        module = module.with_changes(
            body=[
                *module.body[:index],
                first.with_changes(leading_lines=[*first.leading_lines, header]),
                *module.body[index + 1 :],
            ]
        )
        return module, names

    def update(self, module: cst.Module) -> cst.Module:
        """Every injected helper's baked default set to the decision, in place: same position, the
        definition re-formatted as a fresh injection would be (black), the file's indentation kept."""
        indent = dominant_indent(module)
        body = []
        for stmt in module.body:
            if (
                isinstance(stmt, cst.FunctionDef)
                and stmt.name.value in INJECTED
                and _baked(stmt) not in (None, self.backbone_attrs)
            ):
                stmt = self._updated(module, stmt, indent)
            body.append(stmt)
        return module.with_changes(body=body)

    def _updated(self, module: cst.Module, stmt: cst.FunctionDef, indent: str) -> cst.FunctionDef:
        default = cst.parse_expression(tuple_literal(self.backbone_attrs))
        changed = stmt.visit(_Default(default))
        code = cst.Module(body=[changed.with_changes(leading_lines=[])]).code
        (formatted,) = with_indent(format_snippet(code), indent)
        return formatted.with_changes(leading_lines=stmt.leading_lines)


#: every definition BN2GN202 injects that carries the backbone entries as a default
INJECTED = frozenset(PUBLIC) | frozenset(HELPERS.values())


def _baked(stmt: cst.FunctionDef) -> Optional[Tuple[str, ...]]:
    for param in stmt.params.params:
        if param.name.value == "backbone_attrs" and isinstance(param.default, cst.Tuple):
            values = tuple(
                e.value.evaluated_value
                for e in param.default.elements
                if isinstance(e.value, cst.SimpleString)
            )
            return values
    return None


class _Default(cst.CSTTransformer):
    def __init__(self, default: cst.BaseExpression):
        super().__init__()
        self.default = default

    def leave_Param(self, original_node: cst.Param, updated_node: cst.Param) -> cst.Param:
        if updated_node.name.value == "backbone_attrs" and updated_node.default is not None:
            return updated_node.with_changes(default=self.default)
        return updated_node
