"""``X.train()`` on an object that is not an ``nn.Module``: a trainer whose ``train()`` is the
whole training loop (``trainer = Trainer(opt, model, optimizer); trainer.train()``).

Decided from the class definition the repository holds: ``X = Cls(...)`` earlier in the same
function, ``Cls`` found in the file or through its imports (under the script's import roots), and
``Cls`` and every base followed to ``object`` without meeting a class named ``...Module``. A class
bn2gn cannot follow (imported from a package, built by a factory) counts as a module, as
patch-trainer assumes, so nothing changes for it.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import List

from ..core.ast_tools import dotted
from ..source.rules.bn2gn203_eval_after_train import find_train_switches
from ..source.support.trainer_facts import Facts
from .argparse_scan import module_file
from .repo_files import parse, read_text, relative
from .sys_path import enclosing_folders, import_roots


@dataclasses.dataclass(frozen=True)
class NonModuleSwitch:
    """``receiver.train(...)`` at ``line``, where ``receiver`` is a ``cls`` defined at ``defined``."""

    line: int
    receiver: str
    cls: str
    defined: str


def non_module_switches(facts: Facts, script: Path, repo: Path, texts) -> List[NonModuleSwitch]:
    """The file's ``X.train()`` switches on objects of repository classes that are not nn.Modules;
    empty unless every switch of the file is one (a partial patch needs the per-file command)."""
    found = []
    roots = import_roots(script, repo, texts) + enclosing_folders(script, repo)
    for switch in find_train_switches(facts):
        known = _receiver_class(facts, switch, script, repo, roots, texts)
        if known is None:
            return []
        found.append(NonModuleSwitch(switch.line, switch.receiver, *known))
    return found


def _receiver_class(facts: Facts, switch, script: Path, repo: Path, roots, texts):
    """(class name, where it is defined) when the receiver is built from a repository class that is
    certainly not an nn.Module; None when it is one or bn2gn cannot tell."""
    if "." in switch.receiver:
        return None
    scope = facts.innermost_function(switch.call)
    built = [
        a.value
        for a in facts.assigns
        if a.lineno < switch.line
        and isinstance(a.value, ast.Call)
        and any(isinstance(t, ast.Name) and t.id == switch.receiver for t in a.targets)
        and facts.innermost_function(a) is scope
    ]
    if not built or not isinstance(built[-1].func, ast.Name):
        return None
    name = built[-1].func.id
    found = _find_class(name, facts.tree, script, roots, texts)
    if found is None:
        return None
    node, tree, path = found
    if _is_module_class(node, tree, path, roots, texts, depth=0) is not False:
        return None
    return name, f"{relative(path, repo)}:{node.lineno}"


def _find_class(name: str, tree: ast.Module, path: Path, roots, texts):
    """(ClassDef, its module's tree, its file) for ``name`` as ``tree`` binds it, or None."""
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node, tree, path
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        for alias in node.names:
            if (alias.asname or alias.name) != name:
                continue
            bases = (path.parents[node.level - 1],) if node.level else roots
            source = module_file(node.module, bases) if node.module else None
            other = parse(read_text(str(source), texts)) if source is not None else None
            if other is not None:
                return next(
                    (
                        (n, other, source)
                        for n in other.body
                        if isinstance(n, ast.ClassDef) and n.name == alias.name
                    ),
                    None,
                )
    return None


def _is_module_class(node: ast.ClassDef, tree, path: Path, roots, texts, depth: int):
    """True: an nn.Module; False: certainly not (every base followed to ``object``); None: unknown."""
    if depth > 8:
        return None
    answer = False
    for base in node.bases:
        name = dotted(base)
        if name is None:
            return None
        if name.rpartition(".")[2].endswith("Module"):
            return True
        if name == "object":
            continue
        found = _find_class(name, tree, path, roots, texts) if "." not in name else None
        if found is None:
            return None
        verdict = _is_module_class(*found, roots, texts, depth + 1)
        if verdict is not False:
            return verdict
    return answer
