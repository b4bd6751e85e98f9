"""The backbone decision as a value: what every command freezes, keeps in eval and keeps in checkpoints.

The plan decides, per root model, which attributes hold the pretrained backbone and why
(``Plan.backbones``); the configured names (``backbone``, ``base_layer``, ``--backbone-attr``) are
only one kind of evidence. ``Backbone`` joins both into one immutable value that the seam
(``bn2gn.api``) hands to every engine, so no command can rebuild "what is backbone" from names on
its own. It is deliberately not a tuple: the configured names (``Config.backbone_names``) and the
decision cannot be passed for each other.

An entry is either a bare name, which matches any whole component of a module path, or
``Root.attr``, which matches every module under attribute ``attr`` of an instance of a class named
``Root`` (or a subclass) wherever it sits in the model. ``spellings`` is what ``bn2gn.runtime``
takes and what patch-trainer bakes into the injected helpers.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Iterable, Iterator, Mapping, Optional, Tuple

#: what a name entry's evidence says when the name came from the defaults or the user's settings
CONFIGURED = "configured name"


@dataclasses.dataclass(frozen=True)
class BackboneEntry:
    """One backbone entry: a bare name (``root`` is None) or an inferred ``Root.attr``."""

    attr: str
    root: Optional[str] = None
    evidence: str = CONFIGURED

    @property
    def spelling(self) -> str:
        return f"{self.root}.{self.attr}" if self.root else self.attr


@dataclasses.dataclass(frozen=True)
class Backbone:
    """The plan's backbone: configured names first, then each root's inferred attributes, sorted."""

    entries: Tuple[BackboneEntry, ...] = ()
    #: where the decision came from, for reports ("the plan of lib/models", "configured names")
    source: str = CONFIGURED

    def __post_init__(self) -> None:
        if isinstance(self.entries, (str, bytes)) or not all(
            isinstance(e, BackboneEntry) for e in self.entries
        ):
            raise TypeError("Backbone entries must be BackboneEntry values")

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def named(cls, names: Iterable[str], source: str = CONFIGURED) -> "Backbone":
        """Only names (no plan): the configured names, or entries a plan file or the user spelled."""
        return cls.from_spellings(names, source=source)

    @classmethod
    def decided(
        cls,
        names: Iterable[str],
        backbones: Mapping[str, Mapping[str, str]],
        source: str = "the plan",
    ) -> "Backbone":
        """The configured ``names`` plus every root's inferred attributes with their evidence."""
        if isinstance(names, (str, bytes)):
            raise TypeError("backbone names must be a sequence of names, not a string")
        entries: Dict[str, BackboneEntry] = {}
        for name in names:
            entries.setdefault(name, BackboneEntry(attr=name))
        for root, attrs in sorted(backbones.items()):
            for attr, why in sorted(attrs.items()):
                if attr in entries:
                    continue
                entry = BackboneEntry(attr=attr, root=root, evidence=why)
                entries.setdefault(entry.spelling, entry)
        return cls(tuple(entries.values()), source=source)

    @classmethod
    def from_spellings(cls, spellings: Iterable[str], source: str = CONFIGURED) -> "Backbone":
        """Entries as ``bn2gn.runtime`` spells them (``name`` or ``Root.attr``)."""
        if isinstance(spellings, (str, bytes)):
            raise TypeError("backbone entries must be a sequence of names, not a string")
        entries = []
        for text in dict.fromkeys(spellings):
            root, dot, attr = text.rpartition(".")
            entries.append(
                BackboneEntry(attr=attr, root=root or None) if dot else BackboneEntry(text)
            )
        return cls(tuple(entries), source=source)

    # -- reading -----------------------------------------------------------------------------------
    @property
    def spellings(self) -> Tuple[str, ...]:
        """What ``bn2gn.runtime`` takes and what the injected helpers carry as their default."""
        return tuple(e.spelling for e in self.entries)

    @property
    def names(self) -> Tuple[str, ...]:
        return tuple(e.attr for e in self.entries if e.root is None)

    @property
    def inferred(self) -> Tuple[BackboneEntry, ...]:
        return tuple(e for e in self.entries if e.root is not None)

    def contains(self, module_path: str, owners: Optional[Mapping[str, str]] = None) -> bool:
        """Whether a module path is backbone.

        ``owners`` maps module paths to their class name (or the names of its MRO) as
        ``named_modules()`` of the model gives them, so a ``Root.attr`` entry matches under every
        instance of ``Root``. Without it (a checkpoint's
        keys), a path is taken relative to the root model: its first component is the attribute.
        """
        parts = module_path.split(".") if module_path else []
        if any(part in self.names for part in parts):
            return True
        inferred = self.inferred
        if owners is None:
            return bool(parts) and any(parts[0] == e.attr for e in inferred)
        for index in range(len(parts)):
            owner = owners.get(".".join(parts[:index]))
            classes = (owner,) if isinstance(owner, str) else tuple(owner or ())
            if any(e.root in classes and e.attr == parts[index] for e in inferred):
                return True
        return False

    def modules(self, model) -> Iterator[Tuple[str, object]]:
        """(path, module) for every module of ``model`` (DataParallel/wrappers unwrapped) inside it."""
        from .. import runtime

        yield from runtime.backbone_modules(runtime.unwrap_model(model), self.spellings)

    def batchnorms(self, model) -> Iterator[Tuple[str, object]]:
        """(path, module) for every backbone BatchNorm of ``model``."""
        from .. import runtime

        yield from runtime.backbone_batchnorms(model, self.spellings)

    def describe(self) -> str:
        return ", ".join(self.spellings) or "none"

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "entries": [
                {"entry": e.spelling, "root": e.root, "attr": e.attr, "evidence": e.evidence}
                for e in self.entries
            ],
        }
