"""Whether a repository's models already use a frozen BatchNorm: then there is nothing to migrate.

A frozen BatchNorm holds its affine parameters and running statistics as buffers, so nothing
trains them and ``.train()`` does not touch them: torchvision's ``FrozenBatchNorm2d``, or a class
of the repository that registers ``weight``, ``bias``, ``running_mean`` and ``running_var`` with
``register_buffer``. Read with ``ast``; a class only counts when something uses it outside its own
definition.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .repo_files import parse, read_text, relative

TORCHVISION = "FrozenBatchNorm2d"
BUFFERS = frozenset({"weight", "bias", "running_mean", "running_var"})


@dataclasses.dataclass(frozen=True)
class FrozenUse:
    """Where a frozen BatchNorm class is used (``path`` relative to the repository)."""

    name: str
    path: str
    line: int
    defined: str  # "torchvision" or ``path:line`` of the class

    def __str__(self) -> str:
        return f"{self.path}:{self.line} uses {self.name} ({self.defined})"


def frozen_batchnorm_use(
    repo, files: Sequence, texts: Dict[str, str], known: Optional[Dict] = None
) -> Optional[FrozenUse]:
    """The first use of a frozen BatchNorm class in ``files``, or None. ``known``: path -> bytes of
    files read already, for those ``texts`` does not hold."""
    sources = _Sources(texts, known or {})
    classes = {TORCHVISION: "torchvision"}
    for path in files:
        tree = parse(sources.text(path)) if sources.spells(path, "register_buffer") else None
        for node in frozen_classes(tree) if tree is not None else ():
            classes.setdefault(node.name, f"{relative(path, repo)}:{node.lineno}")
    for path in files:
        spelled = any(sources.spells(path, name) for name in classes)
        tree = parse(sources.text(path)) if spelled else None
        for name, line in _uses(tree, classes) if tree is not None else ():
            return FrozenUse(name, relative(path, repo), line, classes[name])
    return None


class _Sources:
    """Each file's text as ``read_text`` gives it (UTF-8, undecodable bytes replaced), decoded only
    for a file whose bytes spell a word looked for: a text holds a word exactly when the bytes hold
    its UTF-8 form, since a replaced byte never becomes part of a word."""

    def __init__(self, texts: Dict[str, str], known: Dict):
        self.texts = texts
        self.known = known
        self.decoded: Dict = {}
        self.data: Dict = {}

    def text(self, path) -> str:
        found = self.decoded.get(path)
        if found is None:
            data = self.bytes_of(path)
            found = self.decoded[path] = (
                data.decode("utf-8", errors="replace")
                if data is not None
                else read_text(str(path), self.texts)
            )
        return found

    def bytes_of(self, path):
        """The file's bytes, or None when its text comes from ``texts`` or it cannot be read."""
        if self.texts:  # what migrate changed is looked up by real path in read_text
            return None
        data = self.known.get(path)
        if data is None:
            data = self.data.get(path)
        if data is None:
            try:
                data = self.data[path] = Path(path).read_bytes()
            except OSError:
                return None
        return data

    def spells(self, path, word: str) -> bool:
        data = self.bytes_of(path)
        return word in self.text(path) if data is None else word.encode("utf-8") in data


def frozen_classes(tree: ast.Module) -> List[ast.ClassDef]:
    """Classes whose methods register all four BatchNorm tensors as buffers."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            registered = {
                call.args[0].value
                for call in ast.walk(node)
                if isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr == "register_buffer"
                and call.args
                and isinstance(call.args[0], ast.Constant)
            }
            if BUFFERS <= registered:
                found.append(node)
    return found


def _uses(tree: ast.Module, classes: Dict[str, str]):
    """(name, line) of each reference to one of ``classes`` that is not its own ``class`` statement
    body or an import (a call, ``norm_layer=FrozenBN``, ``nn.Sequential(FrozenBN(64))``...)."""
    own = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and node.name in classes
        for child in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in own:
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in classes:
            yield node.id, node.lineno
        elif isinstance(node, ast.Attribute) and node.attr in classes:
            yield node.attr, node.lineno
