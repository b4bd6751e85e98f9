"""What ``bn2gn migrate`` leaves alone although patch-trainer would change it: code that is not the
user's training code.

* a vendored tree: a folder named ``third_party``/``external``/``vendor``/``site-packages``..., or a
  folder below the repository root with its own ``setup.py``/``pyproject.toml``/``setup.cfg`` or its
  own licence file (a copied dataset devkit, a bundled package) — its scripts train someone else's model;
* the ``if __name__ == "__main__":`` block of a library module (one that another file imports, or
  that defines ``nn.Module`` classes or holds BatchNorm sites of the plan and loops nowhere in that
  block): a quick self-test;
* ``X.train()`` on an object of a class the repository defines that is not an ``nn.Module`` (a
  trainer whose ``train()`` is the whole training loop): ``keep_backbone_bn_eval(X)`` would get no
  model. A class bn2gn cannot follow to its roots counts as a module, as patch-trainer assumes.

Each is said in one note (``LeftAlone``); the file's other edits are kept where they can be.
"""

from __future__ import annotations

import ast
import dataclasses
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..core.ast_tools import dotted
from ..source.support.trainer_facts import Facts
from .argparse_scan import module_file
from .repo_files import parse, read_text, relative
from .sys_path import enclosing_folders
from .trainer_objects import non_module_switches

VENDOR_FOLDERS = frozenset(
    {"third_party", "third-party", "thirdparty", "3rdparty", "external", "externals", "vendor"}
    | {"vendored", "site-packages", "dist-packages"}
)
PACKAGE_MARKERS = ("setup.py", "pyproject.toml", "setup.cfg")
LICENCE_MARKERS = ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "COPYING")
SCRIPT, EVAL_AFTER_TRAIN, HELPER = "BN2GN201", "BN2GN203", "BN2GN202"


@dataclasses.dataclass(frozen=True)
class LeftAlone:
    """One thing migrate did not patch, and why (``path`` as the report names it)."""

    path: str
    line: Optional[int]
    reason: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.reason}"

    def as_dict(self) -> dict:
        return {"path": self.path, "line": self.line, "reason": self.reason}


def vendored_tree(path: Path, repo: Path) -> Optional[Tuple[Path, str]]:
    """The outermost folder between ``repo`` (excluded) and ``path`` that is someone else's code."""
    rel = os.path.relpath(os.path.realpath(Path(path).parent), os.path.realpath(repo))
    if rel == "." or rel.startswith(".."):
        return None
    folder = Path(repo)
    for part in Path(rel).parts:
        folder = folder / part
        if part.lower() in VENDOR_FOLDERS:
            return folder, f"a vendored folder ({part}/)"
        marker = next((m for m in PACKAGE_MARKERS if (folder / m).is_file()), None)
        if marker:
            return folder, f"a separate package (its own {marker})"
        licence = next((m for m in LICENCE_MARKERS if (folder / m).is_file()), None)
        if licence:
            return folder, f"a copied project (its own {licence})"
    return None


def main_block_spans(tree: ast.Module) -> List[Tuple[int, int]]:
    """(first, last) line of each module-level ``if __name__ == "__main__":``."""
    return [
        (node.lineno, node.end_lineno)
        for node in tree.body
        if isinstance(node, ast.If) and _is_main_test(node.test)
    ]


def _is_main_test(test: ast.AST) -> bool:
    if not (
        isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)
    ):
        return False
    sides = [test.left, test.comparators[0]]
    return any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides) and any(
        isinstance(s, ast.Constant) and s.value == "__main__" for s in sides
    )


def defines_modules(tree: ast.Module) -> bool:
    """A class deriving from something called ``...Module`` (``nn.Module``, ``torch.nn.Module``)."""
    return any(
        isinstance(node, ast.ClassDef)
        and any((dotted(b) or "").rpartition(".")[2].endswith("Module") for b in node.bases)
        for node in ast.walk(tree)
    )


def imported_by_others(path: Path, repo: Path, files: Sequence[Path], texts) -> Optional[str]:
    """The first other file (relative to ``repo``) that imports the module at ``path``, or None."""
    target = os.path.realpath(path)
    stem = Path(path).stem
    for other in files:
        if os.path.realpath(other) == target:
            continue
        text = read_text(str(other), texts)
        if stem not in text or "import" not in text:
            continue
        tree = parse(text)
        if tree is not None and target in _imported_paths(tree, Path(other), repo):
            return relative(other, repo)
    return None


def _imported_paths(tree: ast.Module, importer: Path, repo: Path) -> set:
    found = set()
    roots = enclosing_folders(importer, repo)
    for node in ast.walk(tree):
        names, bases = [], roots
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                bases = (importer.parents[node.level - 1],)
            names = [module] if module else []
            names += [f"{module}.{a.name}" if module else a.name for a in node.names]
        for name in names:
            hit = module_file(name, bases)
            if hit is not None:
                found.add(os.path.realpath(hit))
    return found


def lines_in(spans: Iterable[Tuple[int, int]], lines: Iterable[int]) -> bool:
    lines = list(lines)
    return bool(lines) and all(any(a <= n <= b for a, b in spans) for n in lines)


def library_reason(
    path: Path, tree: ast.Module, repo: Path, files, texts, model_files: Dict[str, bool]
) -> Optional[str]:
    """Why ``path`` is a library module, or None: another file imports it, or it defines models and
    its ``__main__`` block runs no loop (a one-file train script defining its model loops there)."""
    importer = imported_by_others(path, repo, files, texts)
    if importer:
        return f"the module is imported by {importer}"
    models = model_files.get(os.path.realpath(path)) or defines_modules(tree)
    if models and not _loops_in_main(tree):
        return "the module defines models; the block runs no training loop"
    return None


def _loops_in_main(tree: ast.Module) -> bool:
    return any(
        isinstance(node, (ast.For, ast.AsyncFor, ast.While))
        for block in tree.body
        if isinstance(block, ast.If) and _is_main_test(block.test)
        for node in ast.walk(block)
    )


# -- the pass over patch-trainer's results ---------------------------------------------------


def leave_alone(
    results, repo: Path, files, model_paths, script_only
) -> Tuple[list, List[LeftAlone]]:
    """patch-trainer's ``results`` without the edits to code that is not the user's training code,
    and one note per thing left alone. ``script_only(source)``: the file patched as a train script
    only (``--kind script``), for files whose every ``.train()`` is on a non-module object."""
    found = [r for r in results if r.status != "unchanged" and r.source is not None]
    # only the files with edits are judged: a migrated repository resolves no path for them
    texts = {
        os.path.realpath(r.path): r.source.text
        for r in (results if found else ())
        if r.source is not None
    }
    models = {os.path.realpath(p): True for p in model_paths}
    vendored = {id(r): vendored_tree(r.path, repo) for r in found}
    if all(vendored.values()):
        vendored = {}  # all the training code is in such trees: REPO is a folder above your project
    kept, notes, trees = [], [], {}
    for result in results:
        if result.status == "unchanged" or result.source is None:
            kept.append(result)
        elif vendored.get(id(result)) is not None:
            trees.setdefault(vendored[id(result)], []).append(result.path)
            kept.append(unchanged(result))
        else:
            judged, said = _judge(result, repo, files, texts, models, script_only)
            kept.append(judged)
            notes += said
    for (folder, why), paths in sorted(trees.items(), key=lambda item: str(item[0][0])):
        rel = relative(folder, repo)
        notes.append(
            LeftAlone(
                rel + "/",
                None,
                f"{why}, not your training code: {len(paths)} file(s) with training code there "
                f"left alone (bn2gn patch-trainer {rel} patches them if they are yours)",
            )
        )
    return kept, sorted(notes, key=lambda n: (n.path, n.line or 0))


def _judge(result, repo, files, texts, models, script_only):
    tree = parse(result.source.text)
    if tree is None:
        return result, []
    rel = relative(result.path, repo)
    lines = [c.line for c in result.changes if c.rule.code != HELPER]
    if result.status == "failed" and result.failure.line:
        lines = [result.failure.line]
    if lines_in(main_block_spans(tree), lines):
        why = library_reason(Path(result.path), tree, repo, files, texts, models)
        on_disk = parse(read_text(str(result.path), {}))  # its lines, not the rewritten text's
        spans = main_block_spans(on_disk) if on_disk is not None else []
        if why:
            return unchanged(result), [
                LeftAlone(
                    rel,
                    spans[0][0] if spans else None,
                    f'the `if __name__ == "__main__":` block of a library module ({why}) is a '
                    "quick self-test, not training code; left alone",
                )
            ]
    if result.status == "failed":
        return result, []
    switches = non_module_switches(Facts(result.source.text, tree), Path(result.path), repo, texts)
    said = [
        LeftAlone(
            rel,
            s.line,
            f"{s.receiver}.train(...) left alone: {s.receiver} is a {s.cls} ({s.defined}), which "
            "is not an nn.Module; its train() is the training loop",
        )
        for s in switches
    ]
    return (script_only(result.source), said) if said else (result, [])


def unchanged(result):
    """``result``'s file as patch-trainer found it."""
    return dataclasses.replace(
        result,
        status="unchanged",
        new_text=result.source.text,
        changes=(),
        notes=(),
        failure=None,
        refused=(),
    )
