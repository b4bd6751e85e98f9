"""Which files patch-trainer's recognisers can find anything in, decided on the text and on ``ast``.

LibCST's recognisers (optimizer sites, ``.train()`` switches, existing freezes) cost a parse plus
metadata per file; most files of a real tree that mention ``optim`` (``optimizer`` in a docstring,
``build_optim_wrapper``) hold none of it. ``may_plan`` is a superset test: every file the
recognisers would plan passes it (tests/unit/test_trainer_prefilter.py checks this on generated and
real code); it may let a few through that they then reject.
"""

from __future__ import annotations

import ast
import functools
import re
import warnings
from typing import List, Optional, Sequence, Tuple

from ...core.ast_tools import dotted
from .names import FREEZE, KEEP, OPTIMIZER_BUILDERS, TORCH_OPTIMIZERS, OptimizerNames
from .trainer_facts import argument_values

#: bytes without one of these cannot hold anything the recognisers find (ASCII-compatible encodings)
LOOSE_MARKERS = (b"optim", b"train", FREEZE.encode(), KEEP.encode())
_GAP = r"(?:\s|\\\r?\n|#[^\n]*\n)*"  # what may sit between the tokens of a call: spaces, newlines, comments
#: torch.optim.SGD( / optim.Adam( / T.optim.X( ; import torch.optim as O / from torch import optim as O ;
#: from torch.optim import SGD (only torch.optim's classes count: ``from mmengine.optim import`` binds
#: none). Two patterns, each starting with a literal, so that each search skips ahead fast (one
#: pattern of two alternatives tries both at every character: four times as slow on mmdet)
_OPTIM = re.compile(rf"optim(?:{_GAP}\.{_GAP}[A-Z]\w*{_GAP}\(|\s+as\b)")
_OPTIM_IMPORT = re.compile(rf"torch{_GAP}\.{_GAP}optim\s+import\b")
_TRAIN = re.compile(rf"train{_GAP}\(")
#: ``super().train(`` / ``super(Net, self).train(``: switches a call's result, which no recogniser
#: follows (a module's own ``train`` override calling its parent's)
_SUPER_BEFORE_DOT = re.compile(r"super\s*\(\s*(?:\w+\s*,\s*\w+\s*)?\)\s*$")
#: an optimizer's name: ``optimizer``, ``self.optim``, ``det_optimiser``, ``optimizer_g``, ``optimizers2``
_OPTIMIZER_NAME = re.compile(r"(?:^|_)(?:optim|optimi[sz]er)s?\d*$|^optimi[sz]ers?_\w+$")
#: calls that build no optimizer although kept under such a name (``optim_wrapper = dict(...)`` in
#: OpenMMLab configs, copies)
NOT_BUILDERS = ("dict", "list", "tuple", "set", "type", "getattr", "copy", "deepcopy")
#: ``optimizer = NAME(`` as text, a superset of what ``own_builder_calls`` finds: an optimizer's
#: name, ``=``, maybe parentheses, a call of anything but ``NOT_BUILDERS``
_OWN = re.compile(
    rf"optim(?:i[sz]er)?s?\d*(?:_\w+)?{_GAP}={_GAP}[(\s]*"
    rf"(?!(?:{'|'.join(NOT_BUILDERS)})\b)[A-Za-z_]\w*(?:{_GAP}\.{_GAP}\w+)*{_GAP}\("
)


@functools.lru_cache(maxsize=16)
def _builder_patterns(extra_calls: Tuple[str, ...]) -> tuple:
    names = sorted({n.rpartition(".")[2] for n in (*OPTIMIZER_BUILDERS, *extra_calls)})
    return tuple((name, re.compile(rf"\b{re.escape(name)}{_GAP}\(")) for name in names)


#: what both helpers' names spell (``FREEZE``, ``KEEP``): one search where most files spell neither
_HELPERS_SPELL = "backbone_bn"


def text_may_plan(text: str, extra_calls: Sequence[str] = ()) -> bool:
    """The text pre-filter: what a file must contain for a recogniser to find something in it."""
    if _HELPERS_SPELL in text and (FREEZE in text or KEEP in text):
        return True
    optim = "optim" in text
    if optim and (_OPTIM.search(text) or _OPTIM_IMPORT.search(text)):
        return True
    if "train" in text and any(_after_dot(text, match.start()) for match in _TRAIN.finditer(text)):
        return True
    if optim and _OWN.search(text):
        return True
    return any(
        (optim or "optim" not in name) and name in text and pattern.search(text)
        for name, pattern in _builder_patterns(tuple(extra_calls))
    )


def _after_dot(text: str, index: int) -> bool:
    """``train`` at ``index`` is an attribute (``X.train``, ``X . train``); a line break before it: maybe."""
    index -= 1
    while index >= 0 and text[index] in " \t\\\f":
        index -= 1
    if index >= 0 and text[index] == "." and text[index - 1 : index] in (")", " ", "\t"):
        return not _SUPER_BEFORE_DOT.search(text, max(0, index - 80), index)
    return index >= 0 and text[index] in ".\r\n"


def loose_bytes_match(data: bytes, extra_calls: Sequence[str] = ()) -> bool:
    """A byte-level first cut for whole trees; undecided (True) for encodings that are not ASCII-based."""
    if b"\x00" in data:
        return True  # UTF-16/32: decode before deciding
    return any(m in data for m in LOOSE_MARKERS) or any(
        n.rpartition(".")[2].encode() in data for n in extra_calls
    )


def may_plan(text: str, extra_calls: Sequence[str] = (), tree: Optional[ast.Module] = None) -> bool:
    """False only when no recogniser can find an optimizer construction, a ``.train()`` switch or a
    freeze in ``text`` (text pattern first, then one ``ast`` walk). Unparsable text: True (LibCST reports it)."""
    if not text_may_plan(text, extra_calls):
        return False
    if tree is None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(text)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return True
    return ast_may_plan(tree, extra_calls)


def ast_may_plan(tree: ast.Module, extra_calls: Sequence[str] = (), facts=None) -> bool:
    """The recognisers' tests on ``ast`` nodes, each a little wider than the planner's own; ``facts``:
    the file's ``trainer_facts.Facts`` when the caller has them (no second walk)."""
    if facts is None:
        from .trainer_facts import Facts

        facts = Facts("", tree)
    names = optimizer_names(facts.imports, extra_calls)
    for node in facts.calls:
        func = node.func
        last = (
            func.id
            if isinstance(func, ast.Name)
            else func.attr
            if isinstance(func, ast.Attribute)
            else None
        )
        if last in (FREEZE, KEEP):
            return True
        name = dotted(func)
        if name is None:
            continue
        if names.is_direct(name) or names.is_builder(name):
            return True
        if last == "train" and dotted(func.value) is not None and not _switches_off(node):
            return True
    return bool(own_builder_calls(facts, names))


def optimizer_like(name: str) -> bool:
    """``optimizer``, ``self.optim``, ``optimizer_g``, ``det_optimiser``: a name that holds an optimizer."""
    return bool(_OPTIMIZER_NAME.search(name.rpartition(".")[2]))


def own_builder_calls(facts, names: OptimizerNames) -> List[Tuple[ast.Assign, ast.Call, str]]:
    """``optimizer = NAME(...)`` where no recogniser knows NAME: the repository's own builder
    (``build_one_cycle_optimizer(model, cfg)``), or something bn2gn cannot tell from one. Calls of
    functions defined in the file (their body is planned instead) and calls given an optimizer
    (wrappers: ``amp.initialize(model, optimizer)``) are left out. (assignment, call, NAME) each."""
    local = {f.name for f in facts.functions}
    found = []
    for assign in facts.assigns:
        call = assign.value
        if not isinstance(call, ast.Call) or len(assign.targets) != 1:
            continue
        target, name = dotted(assign.targets[0]), dotted(call.func)
        if not target or not name or not optimizer_like(target):
            continue
        if names.is_direct(name) or names.is_builder(name) or name.rpartition(".")[2] in local:
            continue
        if name.split(".")[0] in NOT_BUILDERS:
            continue
        if any(optimizer_like(dotted(value) or "") for value in argument_values(call)):
            continue
        found.append((assign, call, name))
    return found


def _switches_off(call: ast.Call) -> bool:
    """``X.train(False)`` / ``X.train(mode=False)``: the one form the recogniser always skips."""
    values = [a for a in call.args] + [k.value for k in call.keywords]
    return len(values) == 1 and isinstance(values[0], ast.Constant) and values[0].value is False


def optimizer_names(imports, extra_calls: Sequence[str] = ()) -> OptimizerNames:
    """The names of torch.optim bound by ``imports`` (every Import/ImportFrom of the file, function-local
    ones too; a module: walk it for them)."""
    if isinstance(imports, ast.AST):
        imports = [n for n in ast.walk(imports) if isinstance(n, (ast.Import, ast.ImportFrom))]
    namespaces, classes = set(), set()
    for node in imports:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "torch.optim" and alias.asname:
                    namespaces.add(alias.asname)
                elif alias.name == "torch" and alias.asname:
                    namespaces.add(f"{alias.asname}.optim")
                elif alias.name == "torch" or alias.name.startswith("torch."):
                    namespaces.add("torch.optim")
        elif (
            isinstance(node, ast.ImportFrom)
            and not node.level
            and node.module in ("torch", "torch.optim")
        ):
            for alias in node.names:
                if alias.name == "*":
                    classes |= TORCH_OPTIMIZERS if node.module == "torch.optim" else set()
                elif node.module == "torch" and alias.name == "optim":
                    namespaces.add(alias.asname or "optim")
                elif (
                    node.module == "torch.optim"
                    and alias.name[:1].isupper()
                    and alias.name != "Optimizer"
                ):
                    classes.add(alias.asname or alias.name)
    return OptimizerNames(namespaces, classes, tuple(OPTIMIZER_BUILDERS) + tuple(extra_calls))


def admitted(raw: dict, extra_calls: Sequence[str] = ()) -> dict:
    """path -> decoded source for the files of ``raw`` (path -> bytes) whose text may hold training code
    (``text_may_plan``; the planner parses them and applies the ``ast`` test on its one walk); files
    that cannot be decoded are left to the analysis, which reports them."""
    from ...core.errors import SourceError
    from ...core.source_files import decode_source

    found = {}
    for path, data in raw.items():
        if not loose_bytes_match(data, extra_calls):
            continue
        try:
            source = decode_source(path, data)
        except SourceError:
            continue
        if text_may_plan(source.text, extra_calls):
            found[path] = source
    return found
