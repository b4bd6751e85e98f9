"""`remap-ckpt --plan`: which checkpoint BatchNorm entries belong to converted layers, from a traced plan.

The backbone-prefix rule guesses from names; a traced plan knows the module path of every
instance each site built. A layer is converted exactly when the site that built it is ``convert``
(those are the calls ``rewrite`` turns into get_group_norm); ``keep`` and ``unsure`` sites stay
BatchNorm. A BatchNorm layer in the checkpoint that no site built is reported and left as it is.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import FrozenSet, Iterable, List, Set, Tuple

from ..core.errors import EXIT_USAGE, Bn2gnError, Message, Opt, message_text

ROOT = "<root>"


@dataclasses.dataclass(frozen=True)
class PlanSelection:
    source: str
    converted: FrozenSet[str]
    kept: FrozenSet[str]

    def split(self, layers: Iterable[str]) -> Tuple[Set[str], List[str]]:
        """(converted layers, layers the plan does not account for) among a checkpoint's BatchNorm layers."""
        converted, unaccounted = set(), []
        for layer in layers:
            if layer in self.converted:
                converted.add(layer)
            elif layer not in self.kept:
                unaccounted.append(layer)
        return converted, unaccounted

    def warning(self, unaccounted: List[str], where: str = "the state dict") -> str:
        shown = ", ".join(unaccounted[:5]) + (
            f", ... {len(unaccounted) - 5} more" if len(unaccounted) > 5 else ""
        )
        return message_text(
            f"{len(unaccounted)} BatchNorm layer(s) in {where} are not accounted for by the plan "
            f"{self.source} and were left as they are: {shown}; trace the model that wrote this "
            "checkpoint (bn2gn scan ",
            Opt("trace", command="scan"),
            ") or check the module paths",
        )


def selection_from_plan(plan, source: str) -> PlanSelection:
    """Module paths of converted and of kept sites; refuses a plan without traced module paths."""
    from ..decide.plan import CONVERT

    traced = [site for site in plan.sites if site.module_paths]
    if not traced:
        raise Bn2gnError(
            Message(
                f"{source}: the plan has no module paths; make a traced plan with "
                "bn2gn scan PATH... ",
                Opt("trace", "MODULE:FACTORY", command="scan"),
                " -o plan.json",
            ),
            EXIT_USAGE,
        )
    converted = {p for s in traced if s.decision == CONVERT for p in s.module_paths if p != ROOT}
    kept = {p for s in traced if s.decision != CONVERT for p in s.module_paths if p != ROOT}
    both = sorted(converted & kept)
    if both:
        raise Bn2gnError(
            f"{source}: module path {both[0]} is listed by a convert site and by a keep/unsure site; "
            "fix the plan by hand or trace again",
            EXIT_USAGE,
        )
    return PlanSelection(source=source, converted=frozenset(converted), kept=frozenset(kept))


def load_plan_selection(path: Path) -> PlanSelection:
    from ..decide.plan_file import read_plan_file

    return selection_from_plan(read_plan_file(path), str(path))
