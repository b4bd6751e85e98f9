"""Which attributes of a root model hold its pretrained backbone, and the evidence.

The backbone is the pretrained part of a model, so the evidence is pretrained weights:

1. an attribute whose value is built by a call with ``pretrained=...``, or by a factory/class whose
   code (followed through the scanned files) downloads or loads weights (``model_zoo.load_url``,
   ``load_state_dict_from_url``, ``torch.load``, a ``load_pretrained_model`` method), or by a
   module-level table every value of which is such a factory;
2. a root that loads a well-known checkpoint into itself (``self.load_state_dict(load_url(...))``):
   the attributes that checkpoint covers (``CHECKPOINTS``);
3. the configured names (``backbone``, ``base_layer``, ``--backbone-attr``, ``[tool.bn2gn]``).

The result is per root: ``{attribute: evidence}``. ``Plan.backbones`` carries it, and
``decision.Backbone.decided`` turns it into the one value the runtime freeze, ``remap-ckpt``,
``--trace`` and ``verify`` apply (``Root.attr`` entries), so every command applies the same decision.
"""

from __future__ import annotations

import ast
import dataclasses
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set, Tuple

from ..core.ast_tools import spells, walk
from .facts import Definition, lines_tell
from .graph import FUNCTIONS, Project

#: calls that fetch pretrained weights (last component of the dotted name, or the whole name)
WEIGHT_CALLS = {
    "load_url",
    "load_state_dict_from_url",
    "load_pretrained_model",
    "load_checkpoint",
    "load_pretrained_weights",
    "load_pretrained",
}
WEIGHT_DOTTED = {"torch.load", "torch.hub.load"}
#: well-known checkpoints of this field: what their URL/factory names contain -> top-level modules
CHECKPOINTS: Tuple[Tuple[str, Tuple[str, ...], Tuple[str, ...]], ...] = (
    (
        "torchvision ResNet",
        ("resnet", "resnext"),
        ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"),
    ),
    (
        "DLA",
        ("dla",),
        ("base_layer", "level0", "level1", "level2", "level3", "level4", "level5", "fc"),
    ),
    ("MobileNetV2", ("mobilenet",), ("features", "classifier")),
)
SELF_NAMES = ("self",)


@dataclasses.dataclass
class SelfLoad:
    """A class that loads weights into its own instances."""

    cls: Definition
    method: str
    line: int
    checkpoint: Optional[str]  # name in CHECKPOINTS, None when not recognised
    covers: Tuple[str, ...]

    def where(self) -> str:
        return f"{self.cls.module.display}:{self.line}"

    def describe(self) -> str:
        what = (
            f"the {self.checkpoint} checkpoint"
            if self.checkpoint
            else "weights bn2gn does not recognise"
        )
        return f"{self.cls.name}.{self.method} loads {what} into the model at {self.where()}"


class Evidence:
    """Cached weight-loading facts for one Project."""

    def __init__(self, project: Project):
        self.project = project
        self._loads: Dict[Definition, Optional[str]] = {}
        self._self: Dict[Definition, Optional[SelfLoad]] = {}
        self._loader_methods: Optional[Dict[str, str]] = None
        self._words: Dict[int, Optional[Tuple[str, ...]]] = {}  # ``_weight_words`` by id(facts)

    # -- functions and classes that load weights -------------------------------------------------
    def loader_methods(self) -> Dict[str, str]:
        """Method name -> where, for every method of a scanned class that fetches weights itself."""
        if self._loader_methods is None:
            found: Dict[str, str] = {}
            for facts in self.project.modules:
                text = "".join(facts.lines)
                if not any(
                    w in text
                    for w in (
                        "load_url",
                        "load_state_dict_from_url",
                        "torch.load",
                        "hub.load",
                        "load_checkpoint",
                        "load_pretrained",
                    )
                ):
                    continue
                for definition in facts.defs.values():
                    if definition.kind != "class":
                        continue
                    for item in definition.node.body:
                        if isinstance(item, FUNCTIONS):
                            line = self._direct_weight_call(definition, item)
                            if line:
                                found.setdefault(item.name, f"{facts.display}:{line}")
            self._loader_methods = found
        return self._loader_methods

    def _direct_weight_call(self, definition: Definition, node: ast.AST) -> int:
        """The line of the first call in ``node`` that fetches weights (``WEIGHT_CALLS``,
        ``WEIGHT_DOTTED``), 0 for none; a definition whose lines spell none of the words such a
        call needs (``_weight_words``) is not walked."""
        facts = definition.module
        words = self._weight_words(facts)
        if words is not None and not spells(facts.lines, node, words):
            return 0
        for sub in walk(node):
            if isinstance(sub, ast.Call):
                dotted = facts.qualify(sub.func) or ""
                last = (
                    sub.func.attr
                    if isinstance(sub.func, ast.Attribute)
                    else (sub.func.id if isinstance(sub.func, ast.Name) else "")
                )
                if last in WEIGHT_CALLS or dotted in WEIGHT_DOTTED:
                    return sub.lineno
        return 0

    def _weight_words(self, facts) -> Optional[Tuple[str, ...]]:
        """What the line of a weight-fetching call spells: ``load`` (every name of
        ``WEIGHT_CALLS`` holds it, and ``torch.load`` / ``torch.hub.load`` end with it) or a name
        the file imports one of ``WEIGHT_DOTTED`` as; None where lines cannot tell (cached per file)."""
        key = id(facts)
        if key not in self._words:
            text = "".join(facts.lines)
            aliases = tuple(sorted(a for a, d in facts.imports.items() if d in WEIGHT_DOTTED))
            self._words[key] = ("load",) + aliases if lines_tell(text) else None
        return self._words[key]

    def loads(self, definition: Definition, depth: int = 0) -> Optional[str]:
        """'loads weights at file:line' when calling ``definition`` loads pretrained weights."""
        if definition in self._loads:
            return self._loads[definition]
        self._loads[definition] = None  # cycles
        result = None
        if definition.kind == "class":
            own = self.self_load(definition)
            result = f"loads weights at {own.where()}" if own else None
        elif definition.kind == "function":
            result = self._function_loads(definition, depth)
        elif definition.kind == "var":
            values = [d for d in self.project.refs(definition) if d.kind in ("class", "function")]
            found = [self.loads(d, depth + 1) for d in values] if values and depth < 4 else []
            if found and all(found):
                names = ", ".join(sorted(d.name for d in values))
                result = f"is a table every value of which ({names}) loads weights; e.g. {sorted(found)[0]}"
        self._loads[definition] = result
        return result

    def _function_loads(self, definition: Definition, depth: int) -> Optional[str]:
        line = self._direct_weight_call(definition, definition.node)
        if line:
            return f"loads weights at {definition.module.display}:{line}"
        methods = self.loader_methods()
        for sub in walk(definition.node):
            if (
                isinstance(sub, ast.Call)
                and isinstance(sub.func, ast.Attribute)
                and sub.func.attr in methods
                and (sub.args or sub.keywords or "init_weights" not in sub.func.attr)
            ):
                # a bare ``m.init_weights()`` is usually a random init; with arguments it names the weights
                return f"loads weights at {methods[sub.func.attr]}"
        if depth >= 4:
            return None
        for other in self.project.refs(definition):
            if other.kind == "function":
                found = self.loads(other, depth + 1)
                if found:
                    return found
        return None

    def self_load(self, cls: Definition) -> Optional[SelfLoad]:
        """How ``cls`` (or a scanned base class) loads weights into ``self``, if it does."""
        if cls in self._self:
            return self._self[cls]
        self._self[cls] = None
        result = None
        for klass in [cls] + base_classes(self.project, cls):
            if not self._mentions_loading(klass):
                continue
            for item in klass.node.body:
                if isinstance(item, FUNCTIONS) and _loads_into_self(item):
                    line = self._direct_weight_call(klass, item) or self._calls_loader(klass, item)
                    if line:
                        name, covers = self.recognise(klass, item)
                        result = SelfLoad(
                            cls=klass, method=item.name, line=line, checkpoint=name, covers=covers
                        )
                        break
            if result:
                break
        self._self[cls] = result
        return result

    def _mentions_loading(self, klass: Definition) -> bool:
        """Cheap text test before walking a class: loading into self needs one of these words."""
        node = klass.node
        text = "".join(klass.module.lines[node.lineno - 1 : node.end_lineno])
        return "load_state_dict" in text or "load_pretrained_model" in text

    def _calls_loader(self, klass: Definition, item: ast.AST) -> int:
        for sub in walk(item):
            if isinstance(sub, ast.Call):
                target = self.project.resolve(klass.module, sub.func)
                if (
                    target is not None
                    and target.kind == "function"
                    and self._direct_weight_call(target, target.node)
                ):
                    return sub.lineno
        return 0

    def recognise(
        self, klass: Definition, method: ast.AST
    ) -> Tuple[Optional[str], Tuple[str, ...]]:
        """The well-known checkpoint a loading method fetches, from the strings it (and what it names) holds."""
        texts = _strings(method)
        seen: Set[Definition] = set()
        frontier = list(self.project.refs_in(klass.module, method))
        for _ in range(2):
            nxt = []
            for definition in frontier:
                if definition in seen or definition.kind == "class":
                    continue
                seen.add(definition)
                texts |= _strings(definition.node)
                nxt.extend(self.project.refs(definition))
            frontier = nxt
        lowered = " ".join(sorted(texts)).lower()
        for name, words, covers in CHECKPOINTS:
            if any(w in lowered for w in words):
                return name, covers
        return None, ()


def _strings(node: ast.AST) -> Set[str]:
    return {
        n.value
        for n in walk(node)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and len(n.value) < 300
    }


def _loads_into_self(method: ast.AST) -> bool:
    for sub in walk(method):
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute):
            owner = sub.func.value
            if (
                sub.func.attr in ("load_state_dict", "load_pretrained_model")
                and isinstance(owner, ast.Name)
                and owner.id in SELF_NAMES
            ):
                return True
    return False


def base_classes(project: Project, cls: Definition) -> List[Definition]:
    """Scanned nn.Module base classes, nearest first (cycles, unknown bases and torch's own
    ``Module`` when torch itself is scanned are ignored)."""
    out: List[Definition] = []
    queue = [cls]
    modules = project.modules_classes
    while queue:
        current = queue.pop(0)
        for dotted in current.bases:
            found = project.resolve_dotted(dotted) if dotted else None
            if found is not None and found in modules and found is not cls and found not in out:
                out.append(found)
                queue.append(found)
    return out


def pretrained_keyword(expressions: Iterable[ast.AST]) -> Optional[ast.Call]:
    """A call with a ``pretrained=`` keyword that is not literally off."""
    for expr in expressions:
        for sub in walk(expr):
            if isinstance(sub, ast.Call):
                for keyword in sub.keywords:
                    if keyword.arg == "pretrained" and not (
                        isinstance(keyword.value, ast.Constant) and not keyword.value.value
                    ):
                        return sub
    return None


def short(node: ast.AST, limit: int = 60) -> str:
    text = ast.unparse(node)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def project_folder(paths) -> Path:
    """Where a train script's models live: the deepest folder holding every given path."""
    folders = [
        str(Path(p).resolve() if Path(p).is_dir() else Path(p).resolve().parent) for p in paths
    ]
    return Path(os.path.commonpath(folders)) if folders else Path.cwd()
