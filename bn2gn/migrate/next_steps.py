"""After the source migration: the ``bn2gn remap-ckpt`` and ``bn2gn verify`` lines to run.

Read with ``ast`` from the train scripts as they are after the migration: the model is the
argument of ``freeze_backbone_bn(X)``, its factory the call last assigned to ``X`` before it
(resolved through the script's imports), the factory's arguments the literal values or the
defaults of the argparse options they read (``opt.arch`` -> ``--arch``'s default). The
checkpoints are the defaults of ``--load_model``-style options and literal ``torch.load('...')``
paths, in the script and the repository modules it imports.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import shlex
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .argparse_scan import (Option, checkpoint_options, collect_options, imported_files, module_file,
                            torch_load_paths)

FREEZE = "freeze_backbone_bn"
SHAPE = "1,C,H,W"
CHECKPOINT = "CHECKPOINT"


@dataclasses.dataclass(frozen=True)
class Command:
    """One command line to run (from the repository), and what the user must know about it."""

    argv: Tuple[str, ...]
    why: str
    notes: Tuple[str, ...] = ()

    @property
    def line(self) -> str:
        return shlex.join(self.argv)

    def as_dict(self) -> dict:
        return {"command": self.line, "argv": list(self.argv), "why": self.why, "notes": list(self.notes)}


@dataclasses.dataclass(frozen=True)
class ModelCall:
    """``MODULE:FACTORY`` and its --model-arg values, read from a train script."""

    spec: str
    args: Tuple[str, ...]
    path: str
    notes: Tuple[str, ...] = ()

    def argv(self) -> Tuple[str, ...]:
        return ("--model", self.spec, *[a for arg in self.args for a in ("--model-arg", arg)], "--path", self.path)


@dataclasses.dataclass
class NextSteps:
    cwd: str
    remap: List[Command] = dataclasses.field(default_factory=list)
    verify: List[Command] = dataclasses.field(default_factory=list)
    notes: List[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict:
        return {"cwd": self.cwd, "remap_ckpt": [c.as_dict() for c in self.remap],
                "verify": [c.as_dict() for c in self.verify], "notes": list(self.notes)}


def find_next_steps(repo: Path, texts: Dict[str, str], scripts: Sequence[str], trainers: Sequence[str],
                    files: Sequence[Path] = ()) -> NextSteps:
    """``texts``: realpath -> text after the migration, for the changed files (others are read from disk).

    With no script or trainer changed (a migrated repository), those of ``files`` that already call
    the helpers are used.
    """
    repo = Path(repo)
    steps = NextSteps(cwd=str(repo))
    scripts = list(scripts) or _files_calling(files, FREEZE, texts)
    trainers = list(trainers) or _files_calling(files, "keep_backbone_bn_eval", texts)
    if not scripts:
        steps.notes.append("no train script calls freeze_backbone_bn: no remap-ckpt / verify line to suggest")
        return steps
    seen = set()
    for script in scripts:
        tree = _parse(_text(script, texts))
        if tree is None:
            continue
        rel = _relative(script, repo)
        model = model_call(tree, Path(script), repo, texts)
        for ckpt, why in checkpoints(tree, Path(script), repo, texts):
            command = remap_command(ckpt, model, f"{why} ({rel})")
            if command.line not in seen:
                seen.add(command.line)
                steps.remap.append(command)
        if model.argv() not in seen:  # one verify per model: a second script freezes the same way
            seen.add(model.argv())
            steps.verify.append(verify_command(model, rel, [_relative(t, repo) for t in trainers], steps.remap))
    return steps


def remap_command(ckpt: Option, model: ModelCall, why: str) -> Command:
    source = ckpt.default or CHECKPOINT
    notes = list(model.notes)
    if not ckpt.default:
        notes.insert(0, f"{CHECKPOINT}: the checkpoint you pass to {ckpt.flag}")
    target = output_name(source)
    notes.append(f"then train with {ckpt.flag} {target}" if ckpt.flag.startswith("-") else
                 f"then load {target} instead of {source}")
    return Command(("bn2gn", "remap-ckpt", source, *model.argv(), "--strict"), why, tuple(notes))


def verify_command(model: ModelCall, script: str, trainers: Sequence[str], remaps: Sequence[Command]) -> Command:
    argv = ["bn2gn", "verify", *model.argv(), "--input-shape", SHAPE, "--freeze-from", script]
    for trainer in dict.fromkeys(t for t in trainers if t != script):
        argv += ["--freeze-from", trainer]
    known = [c.argv[2] for c in remaps if c.argv[2] != CHECKPOINT]
    if known:
        argv += ["--checkpoint", output_name(known[0])]
    notes = (f"--input-shape {SHAPE}: one per positional argument of the model's forward(); "
             "bn2gn cannot read the shapes from the source",) + model.notes
    return Command(tuple(argv), "runtime checks of the converted model with the patched freeze logic", notes)


def output_name(source: str) -> str:
    """remap-ckpt's default output name (``model.pth`` -> ``model.bn2gn.pth``)."""
    path = Path(source)
    return str(path.with_name(f"{path.stem}.bn2gn{path.suffix}")) if source != CHECKPOINT else \
        f"{CHECKPOINT}.bn2gn.pth"


def checkpoints(tree: ast.Module, script: Path, repo: Path, texts) -> List[Tuple[Option, str]]:
    """Checkpoint options of the script and its repository imports, then literal torch.load paths."""
    found = []
    for path, module in [(script, tree)] + _imported(tree, script, repo, texts):
        for option in checkpoint_options(module):
            found.append((option, f"{option.flag} of {_relative(path, repo)}"))
        for literal in torch_load_paths(module):
            found.append((Option(flag=literal, dest="", default=literal), f"torch.load in {_relative(path, repo)}"))
    return found


def model_call(tree: ast.Module, script: Path, repo: Path, texts) -> ModelCall:
    """The factory call that builds what the script freezes, as remap-ckpt/verify --model options."""
    call = _factory_call(tree)
    spec = _resolve(call.func, tree) if call is not None else None
    if call is None or spec is None:
        return ModelCall("MODULE:FACTORY", (), _relative(script.parent, repo) or ".",
                         ("MODULE:FACTORY: the function that builds the model "
                          f"{_relative(script, repo)} trains (not found statically)",))
    defaults = {}
    for _, module in [(script, tree)] + _imported(tree, script, repo, texts):
        defaults.update({o.dest: o.value for o in collect_options(module) if o.has_literal_default})
    root, params = _factory_params(spec, (script.parent, repo), texts)
    args, notes = _model_args(call, params, defaults)
    return ModelCall(spec, tuple(args), _relative(root, repo) or ".", tuple(notes))


def _factory_call(tree: ast.Module) -> Optional[ast.Call]:
    """The call last assigned to X before ``freeze_backbone_bn(X)``, in the same function."""
    for scope in [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
        body = list(_walk_scope(scope))
        freeze = next((n for n in body if isinstance(n, ast.Call) and _name(n.func) == FREEZE and n.args), None)
        if freeze is None or not isinstance(freeze.args[0], ast.Name):
            continue
        target = freeze.args[0].id
        assigned = [n.value for n in body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
                    and n.lineno < freeze.lineno and any(isinstance(t, ast.Name) and t.id == target for t in n.targets)]
        if assigned:
            return assigned[-1]
    return None


def _walk_scope(scope):
    """Nodes of one function (or the module) without descending into nested functions or classes."""
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop(0)
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))


def _name(node) -> str:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


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
                    return f"{node.module}:{'.'.join([alias.name] + parts)}" if not parts else \
                        f"{node.module}.{alias.name}:{'.'.join(parts)}"
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
        return f"{imported}:{dotted[len(imported) + 1:]}"
    return None


def _factory_params(spec: str, roots, texts) -> Tuple[Path, Optional[ast.arguments]]:
    """(the folder the factory's module is found in, for --path; the factory's parameters)."""
    module, _, attr = spec.partition(":")
    path = module_file(module, roots)
    tree = _parse(_text(str(path), texts)) if path is not None else None
    for node in tree.body if tree is not None else ():
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == attr:
            return _root_of(path, module), node.args
    return (_root_of(path, module) if path is not None else roots[0]), None


def _root_of(path: Path, module: str) -> Path:
    """``proj/nets/factory.py`` for ``nets.factory`` -> ``proj``."""
    depth = len(module.split(".")) + (path.name == "__init__.py")
    return path.parents[depth - 1]


def _model_args(call: ast.Call, params: Optional[ast.arguments], defaults: dict) -> Tuple[List[str], List[str]]:
    """``KEY=VALUE`` for each argument whose value is known statically, notes for the others."""
    names = [a.arg for a in (params.posonlyargs + params.args)] if params is not None else []
    optional = set(names[len(names) - len(params.defaults):]) if params is not None and params.defaults else set()
    if params is not None:
        optional |= {a.arg for a, d in zip(params.kwonlyargs, params.kw_defaults) if d is not None}
    pairs, notes = [], []
    for index, arg in enumerate(call.args):
        if isinstance(arg, ast.Starred) or index >= len(names):
            notes.append("the factory's positional arguments could not be matched to its parameters; "
                         "add them as --model-arg KEY=VALUE")
            break
        pairs.append((names[index], arg))
    pairs += [(k.arg, k.value) for k in call.keywords if k.arg]
    args, from_options = [], False
    for name, node in pairs:
        known, value = _static_value(node, defaults)
        from_options |= known and not _is_literal(node)
        if known:
            args.append(f"{name}={_model_arg_text(value)}")
        elif name in optional:
            notes.append(f"{name}: {ast.unparse(node)} is computed at run time; the factory's default is used "
                         f"(add --model-arg {name}=... if yours differs)")
        else:
            args.append(f"{name}=...")
            notes.append(f"{name}=...: {ast.unparse(node)} is computed at run time; fill in its value")
    if from_options:
        notes.append("the values are the defaults of the train script's options; change them to the ones you train with")
    return args, notes


def _is_literal(node) -> bool:
    return _static_value(node, {})[0]


def _static_value(node, defaults: dict):
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.attr in defaults:
        return True, defaults[node.attr]
    return False, None


def _model_arg_text(value) -> str:
    """What --model-arg reads back as ``value``: plain text for strings that are no Python literal."""
    if isinstance(value, str):
        try:
            ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return value if value and not re.search(r"\s", value) else repr(value)
    return repr(value)


def _imported(tree, script: Path, repo: Path, texts) -> List[Tuple[Path, ast.Module]]:
    out = []
    for path in imported_files(tree, script.parent, repo):
        module = _parse(_text(str(path), texts))
        if module is not None:
            out.append((path, module))
    return out


def _files_calling(files: Sequence[Path], name: str, texts) -> List[str]:
    needle = f"{name}("
    return [str(p) for p in files if needle in _text(str(p), texts) and _calls(_parse(_text(str(p), texts)), name)]


def _calls(tree, name: str) -> bool:
    return tree is not None and any(isinstance(n, ast.Call) and _name(n.func) == name for n in ast.walk(tree))


def _text(path: str, texts) -> str:
    key = os.path.realpath(path)
    if key in texts:
        return texts[key]
    try:
        return Path(path).read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _parse(text: str) -> Optional[ast.Module]:
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _relative(path, repo: Path) -> str:
    rel = os.path.relpath(os.path.realpath(path), os.path.realpath(repo))
    return "" if rel == "." else Path(rel).as_posix()
