"""The stable rule codes: one registry, used by --select, --skip, --list-rules and the README."""

from __future__ import annotations

import enum
from typing import Iterable, Optional

from .errors import Bn2gnError, Message, Opt


class Rule(enum.Enum):
    """Each rule: (code, short name, one-line description, on by default)."""

    REPLACE_BATCHNORM = (
        "BN2GN101",
        "replace-batchnorm",
        "BatchNorm2d in non-backbone layers becomes get_group_norm(C)",
        True,
    )
    INJECT_GROUP_NORM_HELPER = (
        "BN2GN102",
        "inject-group-norm-helper",
        "define get_group_norm once per changed file, after the imports",
        True,
    )
    INIT_LOOPS = (
        "BN2GN103",
        "init-loops",
        "isinstance(m, nn.BatchNorm2d) init loops also cover nn.GroupNorm, guarded with `is not None`",
        True,
    )
    FREEZE_BEFORE_OPTIMIZER = (
        "BN2GN201",
        "freeze-before-optimizer",
        "call freeze_backbone_bn(model) right before the optimizer is built",
        True,
    )
    INJECT_FREEZE_HELPER = (
        "BN2GN202",
        "inject-freeze-helper",
        "define freeze_backbone_bn / keep_backbone_bn_eval once per patched file",
        True,
    )
    EVAL_AFTER_TRAIN = (
        "BN2GN203",
        "eval-after-train",
        "re-assert eval() on backbone BatchNorm after every model.train()",
        True,
    )
    EXCLUDE_FROZEN_FROM_OPTIMIZER = (
        "BN2GN204",
        "exclude-frozen-from-optimizer",
        "pass only parameters that require grad to the optimizer",
        False,
    )

    def __init__(self, code: str, slug: str, description: str, default: bool):
        self.code = code
        self.slug = slug
        self.description = description
        self.default = default

    @property
    def command(self) -> str:
        """The command whose codemod registry runs the rule (``bn2gn.source.registry``)."""
        return "rewrite" if self.code.startswith("BN2GN1") else "patch-trainer"


def rule_by_name(name: str) -> Rule:
    """Accept a code (BN2GN101) or a short name (replace-batchnorm)."""
    wanted = name.strip()
    for rule in Rule:
        if wanted.upper() == rule.code or wanted.lower() == rule.slug:
            return rule
    codes = ", ".join(r.code for r in Rule)
    raise Bn2gnError(
        Message(
            f"unknown rule {name!r}: use one of {codes} (see bn2gn ",
            Opt("list_rules", command="scan"),
            ")",
        )
    )


def select_rules(
    select: Optional[Iterable[str]], skip: Optional[Iterable[str]], opt_in: Iterable[Rule] = ()
) -> frozenset:
    """The enabled rules: --select (or the defaults plus explicit opt-ins) minus --skip."""
    if select:
        chosen = {rule_by_name(n) for n in select}
    else:
        chosen = {r for r in Rule if r.default} | set(opt_in)
    for name in skip or ():
        chosen.discard(rule_by_name(name))
    return frozenset(chosen)
