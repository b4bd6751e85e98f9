"""`remap-ckpt --renames FILE`: the checkpoint changes a config-level GroupNorm conversion implies.

``bn2gn config rewrite --gn`` writes the rules. mmcv's ``build_norm_layer`` names a layer after
its type (``bn``/``bn1`` become ``gn``/``gn1``), so ``neck.lateral_convs.0.bn.weight`` becomes
``neck.lateral_convs.0.gn.weight``; layers stored by index (``deblocks.0.1``) keep their names.
Either way the converted layers lose their running statistics; every other BatchNorm is kept.
The selection has the shape of ``plan_select.PlanSelection`` (``split``/``warning``) plus ``rename``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Set, Tuple

from ..core.errors import EXIT_USAGE, Bn2gnError, Message, Opt

FORMAT = "bn2gn-renames/1"


@dataclasses.dataclass(frozen=True)
class RenameRule:
    """BatchNorm layers under ``prefix`` became GroupNorm; a layer named ``old``/``oldN`` is now ``new``/``newN``."""

    prefix: str
    old: Optional[str] = None
    new: Optional[str] = None

    def covers(self, layer: str) -> bool:
        return (layer + ".").startswith(self.prefix) if self.prefix else True

    def renamed_layer(self, layer: str) -> str:
        head, _, last = layer.rpartition(".")
        if self.old is None or not self.covers(layer) or not _named(last, self.old):
            return layer
        new_last = self.new + last[len(self.old) :]
        return f"{head}.{new_last}" if head else new_last

    def describe(self) -> str:
        where = f"{self.prefix}*" if self.prefix else "*"
        stats = "running_mean/running_var/num_batches_tracked dropped"
        if self.old is None:
            return f"{where}: BatchNorm layers stored by index keep their names; {stats}"
        return f"{where}.{self.old}[N].* -> {self.new}[N].*; {stats}"

    def as_dict(self) -> dict:
        return {"prefix": self.prefix, "from": self.old, "to": self.new}


def _named(segment: str, base: str) -> bool:
    return segment == base or (segment.startswith(base) and segment[len(base) :].isdigit())


@dataclasses.dataclass(frozen=True)
class RenameSelection:
    source: str
    rules: Tuple[RenameRule, ...]

    def split(self, layers: Iterable[str]) -> Tuple[Set[str], List[str]]:
        """Converted layers are the BatchNorm layers under a rule's prefix; the others stay as they are."""
        return {layer for layer in layers if any(r.covers(layer) for r in self.rules)}, []

    def warning(self, unaccounted: List[str], where: str = "the state dict") -> str:
        return f"{len(unaccounted)} layer(s) in {where} not covered by {self.source}"

    def rename(self, key: str) -> str:
        """The new name of a state-dict key (``...bn.weight`` -> ``...gn.weight`` under a rule's prefix)."""
        layer, dot, leaf = key.rpartition(".")
        if not dot:
            return key
        for rule in self.rules:
            if rule.covers(layer):
                return f"{rule.renamed_layer(layer)}.{leaf}"
        return key


def dump_rules(rules: Sequence[RenameRule], config: str) -> str:
    return (
        json.dumps(
            {"format": FORMAT, "config": config, "rules": [r.as_dict() for r in rules]}, indent=2
        )
        + "\n"
    )


def load_renames(path: Path) -> RenameSelection:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise Bn2gnError(f"{path}: cannot read ({exc.strerror or exc})", EXIT_USAGE) from None
    except ValueError as exc:
        raise Bn2gnError(
            Message(
                f"{path}: not JSON ({exc}); write it with bn2gn config rewrite ",
                Opt("renames_out", command="config rewrite"),
            ),
            EXIT_USAGE,
        ) from None
    if (
        not isinstance(data, dict)
        or data.get("format") != FORMAT
        or not isinstance(data.get("rules"), list)
    ):
        raise Bn2gnError(
            Message(
                f"{path}: not a bn2gn renames file (format {FORMAT}); write it with "
                "bn2gn config rewrite ",
                Opt("gn", "...", command="config rewrite"),
                " ",
                Opt("renames_out", "FILE", command="config rewrite"),
            ),
            EXIT_USAGE,
        )
    rules = []
    for item in data["rules"]:
        if not isinstance(item, dict) or not isinstance(item.get("prefix"), str):
            raise Bn2gnError(f"{path}: each rule needs a string 'prefix'", EXIT_USAGE)
        old, new = item.get("from"), item.get("to")
        if (old is None) != (new is None) or not all(
            isinstance(v, (str, type(None))) for v in (old, new)
        ):
            raise Bn2gnError(
                f"{path}: rule {item!r}: 'from' and 'to' are both names or both null", EXIT_USAGE
            )
        rules.append(RenameRule(item["prefix"], old, new))
    return RenameSelection(source=str(path), rules=tuple(rules))
