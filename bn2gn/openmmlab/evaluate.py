"""A whitelisted evaluator for classic OpenMMLab config files: it reads them, it never runs them.

Only what classic configs use is evaluated (literals, names, ``dict()``, arithmetic, ``**``,
f-strings, comprehensions, subscripts, ``len``/``sum``/``range`` and a few more pure builtins,
``del``); anything else is refused with ``file:line`` so the user can choose ``--resolver mmengine``.
"""

from __future__ import annotations

import ast
import operator
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ..core.errors import Opt, SourceError, message_text
from .values import CfgDict, Origin

BASE_KEY = "_base_"
#: What a config the static resolver refuses can be read with instead.
MMENGINE_RESOLVER = Opt("resolver", "mmengine")


class RefusedConstruct(SourceError):
    """A construct the static resolver does not evaluate."""


_BINOPS: Dict[type, Callable] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: Dict[type, Callable] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Not: operator.not_,
}
_COMPARE: Dict[type, Callable] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
#: comprehension iterations and range() lengths per file: a config never needs more
MAX_ITEMS = 1_000_000


def _bounded_range(*args):
    result = range(*args)
    if len(result) > MAX_ITEMS:
        raise ValueError(f"range of {len(result)} items is more than a config needs")
    return result


_PURE_BUILTINS: Dict[str, Callable] = {
    "list": list,
    "tuple": tuple,
    "len": len,
    "sum": sum,
    "range": _bounded_range,
    "min": min,
    "max": max,
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "abs": abs,
    "round": round,
    "sorted": sorted,
    "zip": zip,
    "enumerate": enumerate,
    "set": set,
    "reversed": reversed,
    "any": any,
    "all": all,
}
#: Methods that only read: ``'a_{}'.format(x)``, ``name.upper()``, ``cfg.get('k')`` ...
_PURE_METHODS = {
    str: {
        "format",
        "upper",
        "lower",
        "replace",
        "split",
        "join",
        "strip",
        "startswith",
        "endswith",
    },
    dict: {"get", "keys", "values", "items", "copy", "pop", "update", "setdefault"},
    list: {"index", "count", "copy", "append", "extend", "insert", "pop", "remove"},
}
_MAX_POWER = 10_000


class Evaluator:
    """Evaluates one config file's module body into a CfgDict of its top-level names."""

    def __init__(self, path: Path, base: CfgDict):
        self.path = path
        self.names = CfgDict()
        self.base = base
        self.budget = MAX_ITEMS
        self.work = MAX_WORK

    # --- statements -------------------------------------------------------------------------
    def run(self, tree: ast.Module) -> CfgDict:
        for stmt in tree.body:
            self.statement(stmt)
        return self.names

    def statement(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.Assign):
            if _is_base_assign(stmt):
                return
            value = self.expr(stmt.value, {})
            for target in stmt.targets:
                self.assign(target, value, stmt)
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            self.assign(stmt.target, self.expr(stmt.value, {}), stmt)
        elif isinstance(stmt, ast.AugAssign):
            op = _BINOPS.get(type(stmt.op))
            if op is None:
                self.refuse(stmt, f"the augmented operator {type(stmt.op).__name__}")
            current = self.expr(_as_load(stmt.target), {})
            self.assign(stmt.target, self.safe(op, stmt, current, self.expr(stmt.value, {})), stmt)
        elif isinstance(stmt, ast.Delete):
            for target in stmt.targets:
                self.delete(target)
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            return  # a docstring or a bare literal
        elif (
            isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Attribute)
        ):
            self.expr(stmt.value, {})  # detector.pop('data_preprocessor'): a whitelisted method
        elif isinstance(stmt, ast.Pass):
            return
        else:
            self.refuse(stmt, _describe(stmt))

    def assign(self, target: ast.expr, value: Any, stmt: ast.stmt) -> None:
        origin = Origin(self.path, stmt.lineno)
        if isinstance(target, ast.Name):
            self.names.set(target.id, value, origin)
        elif isinstance(target, (ast.Tuple, ast.List)):
            items = list(value) if isinstance(value, (list, tuple)) else None
            if items is None or len(items) != len(target.elts):
                self.refuse(stmt, "an unpacking assignment whose sizes differ")
            for sub, item in zip(target.elts, items):
                self.assign(sub, item, stmt)
        elif isinstance(target, ast.Subscript):
            container = self.expr(target.value, {})
            key = self.expr(target.slice, {})
            if isinstance(container, CfgDict):
                container.set(key, value, origin)
            elif isinstance(container, (dict, list)):
                self.safe(operator.setitem, stmt, container, key, value)
            else:
                self.refuse(stmt, "an item assignment to something that is not a dict or list")
        elif isinstance(target, ast.Attribute) and isinstance(self.expr(target.value, {}), dict):
            owner = self.expr(target.value, {})  # _base_.optim_wrapper.type = 'AmpOptimWrapper'
            if isinstance(owner, CfgDict):
                owner.set(target.attr, value, origin)
            else:
                owner[target.attr] = value
        else:
            self.refuse(stmt, f"an assignment to {_describe(target)}")

    def delete(self, target: ast.expr) -> None:
        if isinstance(target, ast.Name):
            if target.id not in self.names:
                self.fail(target, f"del {target.id}: name is not defined")
            del self.names[target.id]
        elif isinstance(target, ast.Subscript):
            container = self.expr(target.value, {})
            self.safe(operator.delitem, target, container, self.expr(target.slice, {}))
        elif isinstance(target, ast.Attribute) and isinstance(self.expr(target.value, {}), dict):
            self.safe(
                operator.delitem, target, self.expr(target.value, {}), target.attr
            )  # del _base_.tta_model
        else:
            self.refuse(target, f"del of {_describe(target)}")

    # --- expressions ------------------------------------------------------------------------
    def expr(self, node: ast.expr, scope: Dict[str, Any]) -> Any:
        method = getattr(self, f"expr_{type(node).__name__}", None)
        if method is None:
            self.refuse(node, _describe(node))
        return method(node, scope)

    def expr_Constant(self, node: ast.Constant, scope) -> Any:
        value = node.value
        if isinstance(value, str) and value.startswith("{{") and value.endswith("}}"):
            return self.base_placeholder(node, value[2:-2].strip())
        return value

    def expr_Name(self, node: ast.Name, scope) -> Any:
        if node.id in scope:
            return scope[node.id]
        if node.id in self.names:
            return self.names[node.id]
        if node.id == BASE_KEY:
            return self.base
        if node.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[node.id]
        self.fail(node, f"name {node.id!r} is not defined")

    def expr_List(self, node: ast.List, scope) -> list:
        return self.sequence(node.elts, scope)

    def expr_Tuple(self, node: ast.Tuple, scope) -> tuple:
        return tuple(self.sequence(node.elts, scope))

    def expr_Set(self, node: ast.Set, scope) -> Any:
        inner = node.elts[0] if len(node.elts) == 1 else None
        if isinstance(inner, ast.Set) and len(inner.elts) == 1:
            dotted = _unparse(inner.elts[0])
            if dotted.startswith(BASE_KEY + "."):
                return self.base_placeholder(node, dotted)  # {{_base_.x}} written without quotes
        return set(self.sequence(node.elts, scope))

    def sequence(self, elts: List[ast.expr], scope) -> list:
        out: list = []
        for elt in elts:
            if isinstance(elt, ast.Starred):
                out.extend(self.expr(elt.value, scope))
            else:
                out.append(self.expr(elt, scope))
        return out

    def expr_Dict(self, node: ast.Dict, scope) -> CfgDict:
        out = CfgDict()
        for key, value in zip(node.keys, node.values):
            if key is None:
                self.unpack_into(out, self.expr(value, scope), value)
            else:
                out.set(
                    self.expr(key, scope), self.expr(value, scope), Origin(self.path, key.lineno)
                )
        return out

    def unpack_into(self, out: CfgDict, value: Any, node: ast.AST) -> None:
        if not isinstance(value, dict):
            self.fail(node, "** needs a dict")
        for key, item in value.items():
            origin = value.origin(key) if isinstance(value, CfgDict) else None
            out.set(key, item, origin or Origin(self.path, node.lineno))

    def expr_Call(self, node: ast.Call, scope) -> Any:
        if isinstance(node.func, ast.Name) and node.func.id == "dict" and "dict" not in self.names:
            out = CfgDict()
            for arg in node.args:
                self.unpack_into(out, self.expr(arg, scope), arg)
            for keyword in node.keywords:
                if keyword.arg is None:
                    self.unpack_into(out, self.expr(keyword.value, scope), keyword.value)
                else:
                    out.set(
                        keyword.arg,
                        self.expr(keyword.value, scope),
                        Origin(self.path, keyword.lineno),
                    )
            return out
        func = self.callee(node, scope)
        args = self.sequence(node.args, scope)
        kwargs = {}
        for keyword in node.keywords:
            if keyword.arg is None:
                kwargs.update(self.expr(keyword.value, scope))
            else:
                kwargs[keyword.arg] = self.expr(keyword.value, scope)
        result = self.safe(func, node, *args, **kwargs)
        return list(result) if isinstance(result, (zip, enumerate, reversed)) else result

    def callee(self, node: ast.Call, scope) -> Callable:
        func = node.func
        if isinstance(func, ast.Name) and func.id in _PURE_BUILTINS and func.id not in self.names:
            return _PURE_BUILTINS[func.id]
        if isinstance(func, ast.Attribute):
            owner = self.expr(func.value, scope)
            for kind, methods in _PURE_METHODS.items():
                if isinstance(owner, kind) and func.attr in methods:
                    return getattr(owner, func.attr)
        self.refuse(node, f"a call to {ast.unparse(func)}()")

    def expr_Attribute(self, node: ast.Attribute, scope) -> Any:
        owner = self.expr(node.value, scope)
        if isinstance(owner, dict):
            if node.attr not in owner:
                self.fail(node, f"{ast.unparse(node)}: key {node.attr!r} is not defined")
            return owner[node.attr]
        self.refuse(node, f"the attribute access {ast.unparse(node)}")

    def expr_Subscript(self, node: ast.Subscript, scope) -> Any:
        return self.safe(
            operator.getitem, node, self.expr(node.value, scope), self.expr(node.slice, scope)
        )

    def expr_Slice(self, node: ast.Slice, scope) -> slice:
        part = lambda n: None if n is None else self.expr(n, scope)  # noqa: E731
        return slice(part(node.lower), part(node.upper), part(node.step))

    def expr_BinOp(self, node: ast.BinOp, scope) -> Any:
        op = _BINOPS.get(type(node.op))
        if op is None:
            self.refuse(node, f"the operator {type(node.op).__name__}")
        left, right = self.expr(node.left, scope), self.expr(node.right, scope)
        if op is operator.pow and isinstance(right, (int, float)) and abs(right) > _MAX_POWER:
            self.refuse(node, "a power this large")
        if op is operator.mul and _too_long(left, right):
            self.refuse(node, "a repetition this large")
        return self.safe(op, node, left, right)

    def expr_UnaryOp(self, node: ast.UnaryOp, scope) -> Any:
        op = _UNARY.get(type(node.op))
        if op is None:
            self.refuse(node, f"the operator {type(node.op).__name__}")
        return self.safe(op, node, self.expr(node.operand, scope))

    def expr_BoolOp(self, node: ast.BoolOp, scope) -> Any:
        value = None
        for operand in node.values:
            value = self.expr(operand, scope)
            if isinstance(node.op, ast.And) and not value:
                return value
            if isinstance(node.op, ast.Or) and value:
                return value
        return value

    def expr_Compare(self, node: ast.Compare, scope) -> bool:
        left = self.expr(node.left, scope)
        for op, comparator in zip(node.ops, node.comparators):
            right = self.expr(comparator, scope)
            if not self.safe(_COMPARE[type(op)], node, left, right):
                return False
            left = right
        return True

    def expr_IfExp(self, node: ast.IfExp, scope) -> Any:
        return self.expr(node.body if self.expr(node.test, scope) else node.orelse, scope)

    def expr_JoinedStr(self, node: ast.JoinedStr, scope) -> str:
        return "".join(str(self.expr(v, scope)) for v in node.values)

    def expr_FormattedValue(self, node: ast.FormattedValue, scope) -> str:
        value = self.expr(node.value, scope)
        value = {115: str, 114: repr, 97: ascii}.get(node.conversion, lambda v: v)(value)
        spec = self.expr(node.format_spec, scope) if node.format_spec is not None else ""
        return self.safe(format, node, value, spec)

    def expr_ListComp(self, node: ast.ListComp, scope) -> list:
        return [self.expr(node.elt, inner) for inner in self.comprehension(node.generators, scope)]

    def expr_SetComp(self, node: ast.SetComp, scope) -> set:
        return {self.expr(node.elt, inner) for inner in self.comprehension(node.generators, scope)}

    def expr_GeneratorExp(self, node: ast.GeneratorExp, scope) -> list:
        return [self.expr(node.elt, inner) for inner in self.comprehension(node.generators, scope)]

    def expr_DictComp(self, node: ast.DictComp, scope) -> CfgDict:
        out = CfgDict()
        for inner in self.comprehension(node.generators, scope):
            out.set(
                self.expr(node.key, inner),
                self.expr(node.value, inner),
                Origin(self.path, node.lineno),
            )
        return out

    def comprehension(self, generators: List[ast.comprehension], scope: Dict[str, Any]):
        first, rest = generators[0], generators[1:]
        if first.is_async:
            self.refuse(first.iter, "an async comprehension")
        for item in self.expr(first.iter, scope):
            self.budget -= 1
            if self.budget < 0:
                self.refuse(first.iter, f"comprehensions of more than {MAX_ITEMS} items")
            inner = dict(scope)
            self.bind(first.target, item, inner)
            if all(self.expr(cond, inner) for cond in first.ifs):
                if rest:
                    yield from self.comprehension(rest, inner)
                else:
                    yield inner

    def bind(self, target: ast.expr, item: Any, scope: Dict[str, Any]) -> None:
        if isinstance(target, ast.Name):
            scope[target.id] = item
        elif isinstance(target, (ast.Tuple, ast.List)):
            items = list(item)
            if len(items) != len(target.elts):
                self.fail(target, "cannot unpack: sizes differ")
            for sub, value in zip(target.elts, items):
                self.bind(sub, value, scope)
        else:
            self.refuse(target, f"a comprehension target {_describe(target)}")

    # --- helpers ----------------------------------------------------------------------------
    def base_placeholder(self, node: ast.AST, dotted: str) -> Any:
        """mmengine's ``'{{_base_.model.depth}}'``: the whole string stands for a base value."""
        parts = dotted.split(".")
        if parts[0] != BASE_KEY:
            return "{{" + dotted + "}}"
        value: Any = self.base
        for part in parts[1:]:
            if not isinstance(value, dict) or part not in value:
                self.fail(node, f"{{{{{dotted}}}}}: not defined in the _base_ files")
            value = value[part]
        return value

    def safe(self, func: Callable, node: ast.AST, *args, **kwargs) -> Any:
        if _result_too_large(func, *args):
            self.refuse(node, f"{_unparse(node)}, whose result would be this large")
        try:
            result = func(*args, **kwargs)
            self.work -= len(result) if isinstance(result, (str, bytes, list, tuple)) else 1
            if self.work < 0:
                self.refuse(
                    node, f"more than {MAX_WORK:,} units of work (characters and items built)"
                )
            return result
        except (
            TypeError,
            ValueError,
            KeyError,
            IndexError,
            ZeroDivisionError,
            AttributeError,
            OverflowError,
            MemoryError,
        ) as exc:
            self.fail(node, f"cannot evaluate {_unparse(node)}: {type(exc).__name__}: {exc}")

    def fail(self, node: ast.AST, reason: str) -> None:
        raise SourceError(self.path, getattr(node, "lineno", 1), reason)

    def refuse(self, node: ast.AST, what: str) -> None:
        raise RefusedConstruct(
            self.path,
            getattr(node, "lineno", 1),
            message_text(
                f"the static resolver does not evaluate {what}; use ",
                MMENGINE_RESOLVER,
                " (runs the config with mmengine) or write the value out",
            ),
        )


def _is_base_assign(stmt: ast.Assign) -> bool:
    return (
        len(stmt.targets) == 1
        and isinstance(stmt.targets[0], ast.Name)
        and stmt.targets[0].id == BASE_KEY
    )


def _as_load(target: ast.expr) -> ast.expr:
    return ast.fix_missing_locations(
        ast.copy_location(ast.parse(ast.unparse(target), mode="eval").body, target)
    )


def _too_long(left: Any, right: Any) -> bool:
    for seq, count in ((left, right), (right, left)):
        if (
            isinstance(seq, (str, list, tuple))
            and isinstance(count, int)
            and len(seq) * count > 1_000_000
        ):
            return True
    return False


#: Characters and items the static resolver builds in one file at most, over all operations.
MAX_WORK = 50_000_000
#: Results the static resolver builds at most: a config holds names and numbers, not megabytes.
MAX_RESULT_CHARS = 1_000_000
MAX_RESULT_BITS = 1_000_000


def _result_too_large(func: Callable, *args: Any) -> bool:
    """Estimated before the work is done, for the operations whose result can grow beyond any
    memory from a short text (``x ** 9999`` twice, ``s.replace('', s)`` chained, ``'%0999999999d'``,
    ``sum([[0] * 10**6] * 10**6, [])``)."""
    if func is operator.pow and len(args) == 2 and all(isinstance(a, int) for a in args):
        return args[1] > 0 and max(abs(args[0]).bit_length(), 1) * args[1] > MAX_RESULT_BITS
    if func in (operator.add, operator.mul) and len(args) == 2:
        sizes = [len(a) if isinstance(a, (str, bytes, list, tuple)) else 0 for a in args]
        return sum(sizes) > MAX_RESULT_CHARS
    if func is operator.mod and args and isinstance(args[0], str):
        return _widest_field(args[0]) > MAX_RESULT_CHARS
    if func is sum and args:
        try:
            return (
                sum(len(x) for x in args[0] if isinstance(x, (str, list, tuple))) > MAX_RESULT_CHARS
            )
        except TypeError:
            return False
    owner = getattr(func, "__self__", None)
    if isinstance(owner, str) and getattr(func, "__name__", "") == "replace" and len(args) >= 2:
        old, new = args[0], args[1]
        if isinstance(old, str) and isinstance(new, str):
            count = len(owner) + 1 if not old else len(owner) // len(old)
            return len(owner) + count * max(len(new) - len(old), 0) > MAX_RESULT_CHARS
    if isinstance(owner, str) and getattr(func, "__name__", "") == "format":
        return _widest_field(owner) > MAX_RESULT_CHARS
    if func is format and len(args) == 2 and isinstance(args[1], str):
        return _widest_field(args[1], spec=True) > MAX_RESULT_CHARS
    return False


_PERCENT_FIELD = re.compile(r"%(?:\([^)]*\))?[-#0+ ]*(\d*)(?:\.(\d*))?")
_BRACE_SPEC = re.compile(r"\{[^{}:]*:([^{}]*)\}")


def _widest_field(template: str, spec: bool = False) -> int:
    """The largest width or precision in a format template's fields (``%0100000000d``,
    ``{:>99999999}``; ``spec``: the template is one field's spec, as format() takes it)."""
    if spec:
        parts = [template]
    else:
        parts = [m.group(0) for m in _PERCENT_FIELD.finditer(template)]
        parts += _BRACE_SPEC.findall(template)
    numbers = [int(n) for part in parts for n in re.findall(r"\d{1,12}", part)]
    return max(numbers, default=0)


def _describe(node: ast.AST) -> str:
    names = {
        "FunctionDef": "a function definition",
        "AsyncFunctionDef": "a function definition",
        "ClassDef": "a class definition",
        "Import": "an import",
        "ImportFrom": "an import",
        "If": "an if statement",
        "For": "a for loop",
        "While": "a while loop",
        "With": "a with block",
        "Try": "a try block",
        "Lambda": "a lambda",
        "Global": "a global statement",
        "Assert": "an assert",
        "NamedExpr": "an assignment expression (:=)",
        "Await": "await",
        "Yield": "yield",
        "Raise": "a raise statement",
        "Match": "a match statement",
        "Expr": "an expression statement",
    }
    return names.get(type(node).__name__, f"a {type(node).__name__} node")


def _unparse(node: ast.AST) -> str:
    try:
        text = ast.unparse(node)
    except Exception:  # noqa: BLE001 - only for the message
        return type(node).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def evaluate_module(path: Path, tree: ast.Module, base: Optional[CfgDict] = None) -> CfgDict:
    """The top-level names of ``tree`` after evaluating it with ``_base_`` bound to ``base``."""
    return Evaluator(path, base if base is not None else CfgDict()).run(tree)
