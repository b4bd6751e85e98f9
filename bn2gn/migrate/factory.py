"""The model a train script trains, as ``--model MODULE:FACTORY --model-arg ... --path DIR``, read with ``ast``.

The model is the argument ``X`` of ``freeze_backbone_bn(X)``; its factory the call last assigned
to ``X`` before it in the same function (when ``X`` is a parameter of that function, in the
function that calls it with ``X``), resolved through the script's imports; each argument a
literal, or ``opt.NAME`` with NAME an argparse option that has a literal default. ``--path`` is
the folder the factory's module is found under, among the script's folder, what its own
``sys.path`` set-up adds (``import _init_paths``) and the repository root.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path
from typing import List, Optional, Tuple

from ..core.ast_tools import FUNCTIONS
from ..core.errors import Opt, message_text
from .argparse_scan import collect_options, module_file
from .repo_files import imported_modules, parse, read_text, relative
from .sys_path import import_roots

FREEZE = "freeze_backbone_bn"
PLACEHOLDER = "MODULE:FACTORY"
#: The commands the notes about the model's options go with (they print beside those commands).
COMMANDS = "remap-ckpt, verify"


@dataclasses.dataclass(frozen=True)
class ModelCall:
    """``MODULE:FACTORY`` and its --model-arg values, read from a train script."""

    spec: str
    args: Tuple[str, ...]
    path: str
    notes: Tuple[str, ...] = ()
    fill_in: Tuple[str, ...] = ()  # what bn2gn could not fill in, in the words of a comment line

    def argv(self) -> Tuple[str, ...]:
        return (
            "--model",
            self.spec,
            *[a for arg in self.args for a in ("--model-arg", arg)],
            "--path",
            self.path,
        )


def model_call(tree: ast.Module, script: Path, repo: Path, texts) -> ModelCall:
    """The factory call that builds what the script freezes, as remap-ckpt/verify --model options."""
    call = _factory_call(tree)
    spec = _resolve(call.func, tree) if call is not None else None
    if call is None or spec is None:
        return ModelCall(
            PLACEHOLDER,
            (),
            relative(script.parent, repo) or ".",
            fill_in=(
                message_text(
                    f"{PLACEHOLDER}: the function that builds the model {relative(script, repo)} "
                    "trains (not found statically), and ",
                    Opt("path", command=COMMANDS),
                    ": the folder it is imported from",
                ),
            ),
        )
    roots = import_roots(script, repo, texts)
    defaults = {}
    for _, module in [(script, tree)] + imported_modules(tree, roots, texts):
        defaults.update({o.dest: o.value for o in collect_options(module) if o.has_literal_default})
    root, params = _factory_params(spec, roots, texts)
    args, notes, fill_in = _model_args(call, params, defaults)
    return ModelCall(spec, tuple(args), relative(root, repo) or ".", tuple(notes), tuple(fill_in))


def _factory_call(tree: ast.Module) -> Optional[ast.Call]:
    """The call last assigned to X before ``freeze_backbone_bn(X)``, in the same function; when X is
    a parameter of that function, the call assigned to what a caller in the file passes for it."""
    scopes = [tree] + [n for n in ast.walk(tree) if isinstance(n, FUNCTIONS)]
    for scope in scopes:
        body = list(_walk_scope(scope))
        freeze = next(
            (n for n in body if isinstance(n, ast.Call) and call_name(n.func) == FREEZE and n.args),
            None,
        )
        if freeze is None or not isinstance(freeze.args[0], ast.Name):
            continue
        found = _assigned_before(body, freeze.args[0].id, freeze.lineno)
        if found is None and isinstance(scope, FUNCTIONS):
            found = _passed_in(scope, freeze.args[0].id, scopes)
        if found is not None:
            return found
    return None


def _assigned_before(body, target: str, line: int) -> Optional[ast.Call]:
    assigned = [
        n.value
        for n in body
        if isinstance(n, ast.Assign)
        and isinstance(n.value, ast.Call)
        and n.lineno < line
        and any(isinstance(t, ast.Name) and t.id == target for t in n.targets)
    ]
    return assigned[-1] if assigned else None


def _passed_in(function, parameter: str, scopes) -> Optional[ast.Call]:
    """``setup(model, opt)`` called as ``setup(net, opt)`` after ``net = create_model(...)``."""
    params = [a.arg for a in function.args.posonlyargs + function.args.args]
    for scope in scopes:
        body = list(_walk_scope(scope))
        for call in body:
            if not (isinstance(call, ast.Call) and call_name(call.func) == function.name):
                continue
            passed = next((k.value for k in call.keywords if k.arg == parameter), None)
            if passed is None and parameter in params and params.index(parameter) < len(call.args):
                passed = call.args[params.index(parameter)]
            if isinstance(passed, ast.Name):
                found = _assigned_before(body, passed.id, call.lineno)
                if found is not None:
                    return found
    return None


def _walk_scope(scope):
    """Nodes of one function (or the module) without descending into nested functions or classes."""
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop(0)
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))


def call_name(node) -> str:
    return (
        node.id
        if isinstance(node, ast.Name)
        else node.attr
        if isinstance(node, ast.Attribute)
        else ""
    )


def _resolve(func, tree: ast.Module) -> Optional[str]:
    """``create_model`` imported ``from lib.models.model import create_model`` -> ``lib.models.model:create_model``."""
    parts = []
    while isinstance(func, ast.Attribute):
        parts.insert(0, func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        return None
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                if (alias.asname or alias.name) == func.id:
                    return (
                        f"{node.module}:{'.'.join([alias.name] + parts)}"
                        if not parts
                        else f"{node.module}.{alias.name}:{'.'.join(parts)}"
                    )
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname == func.id and parts:
                    return f"{alias.name}:{'.'.join(parts)}"
                if alias.asname is None and alias.name.split(".")[0] == func.id and parts:
                    return _split_module(func.id, parts, alias.name)
    return None


def _split_module(first: str, parts: List[str], imported: str) -> Optional[str]:
    """``import lib.models.model`` then ``lib.models.model.create_model``: the module is the import."""
    dotted = ".".join([first] + parts)
    if dotted.startswith(imported + ".") and dotted != imported:
        return f"{imported}:{dotted[len(imported) + 1 :]}"
    return None


def _factory_params(spec: str, roots, texts) -> Tuple[Path, Optional[ast.arguments]]:
    """(the folder the factory's module is found in, for --path; the factory's parameters)."""
    module, _, attr = spec.partition(":")
    path = module_file(module, roots)
    tree = parse(read_text(str(path), texts)) if path is not None else None
    for node in tree.body if tree is not None else ():
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == attr:
            return _root_of(path, module), node.args
    return (_root_of(path, module) if path is not None else roots[0]), None


def _root_of(path: Path, module: str) -> Path:
    """``proj/nets/factory.py`` for ``nets.factory`` -> ``proj``."""
    depth = len(module.split(".")) + (path.name == "__init__.py")
    return path.parents[depth - 1]


def _model_args(
    call: ast.Call, params: Optional[ast.arguments], defaults: dict
) -> Tuple[List[str], List[str], List[str]]:
    """``KEY=VALUE`` for each argument whose value is known statically, notes for the others, and
    what the user must fill in (a required parameter computed at run time)."""
    names = [a.arg for a in (params.posonlyargs + params.args)] if params is not None else []
    optional = (
        set(names[len(names) - len(params.defaults) :])
        if params is not None and params.defaults
        else set()
    )
    if params is not None:
        optional |= {a.arg for a, d in zip(params.kwonlyargs, params.kw_defaults) if d is not None}
    pairs, notes = [], []
    for index, arg in enumerate(call.args):
        if isinstance(arg, ast.Starred) or index >= len(names):
            notes.append(
                message_text(
                    "the factory's positional arguments could not be matched to its parameters; "
                    "add them as ",
                    Opt("model_arg", "KEY=VALUE", command=COMMANDS),
                )
            )
            break
        pairs.append((names[index], arg))
    pairs += [(k.arg, k.value) for k in call.keywords if k.arg]
    args, fill_in, from_options = [], [], False
    for name, node in pairs:
        known, value = _static_value(node, defaults)
        from_options |= known and not _is_literal(node)
        if known:
            args.append(f"{name}={_model_argread_text(value)}")
        elif name in optional:
            notes.append(
                message_text(
                    f"{name}: {ast.unparse(node)} is computed at run time; the factory's default "
                    "is used (add ",
                    Opt("model_arg", f"{name}=...", command=COMMANDS),
                    " if yours differs)",
                )
            )
        else:
            args.append(f"{name}=...")
            fill_in.append(f"{name}=...: {ast.unparse(node)} is computed at run time; its value")
    if from_options:
        notes.append(
            "the values are the defaults of the train script's options; change them to the ones you train with"
        )
    return args, notes, fill_in


def _is_literal(node) -> bool:
    return _static_value(node, {})[0]


def _static_value(node, defaults: dict):
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.attr in defaults
    ):
        return True, defaults[node.attr]
    return False, None


def _model_argread_text(value) -> str:
    """What --model-arg reads back as ``value``: plain text for strings that are no Python literal."""
    if isinstance(value, str):
        try:
            ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return value if value and not re.search(r"\s", value) else repr(value)
    return repr(value)
