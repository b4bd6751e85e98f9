"""One codemod per module, one interface for all of them, and the order the engines run them in.

A codemod names the rules it implements (``rules``; codes, names and descriptions live in
``bn2gn.core.rule_codes``), says whether it has anything to do in a file (``applies``) and does it
(``transform``). ``run`` applies a list in order; each codemod sees the changes made before it in
``Context.changes``. Codemods that share one LibCST traversal are grouped by ``combined.OnePass``.
The interface is in ``source.codemod``; the ordered lists are here.

Nothing here imports LibCST: the pre-filter imports ``source.support.names`` before anything heavy.
"""

from __future__ import annotations

import functools
from typing import Tuple

from .codemod import Codemod, Context, Outcome, run

__all__ = ["Codemod", "Context", "Outcome", "run", "rewrite_codemods", "patch_trainer_codemods"]


@functools.lru_cache(maxsize=None)
def rewrite_codemods() -> "Tuple[Codemod, ...]":
    """``bn2gn rewrite``'s codemods (BN2GN1xx), in the order they run."""
    from .rules.bn2gn101_replace_batchnorm import ReplaceBatchNormCodemod
    from .rules.bn2gn102_group_norm_helper import GroupNormHelper
    from .rules.bn2gn103_init_loops import WidenInitLoops
    from .support.combined import OnePass

    return (
        # BN2GN101 and BN2GN103 in one traversal with one way to find starts. Both read the file as
        # it was read: BN2GN101's sites are positions in the original text, and BN2GN103 names
        # GroupNorm after the file's own torch.nn name, looked up before anything adds an import.
        # After the pass BN2GN101 reports first, then BN2GN103 adds ``import torch.nn as nn`` if the
        # file has no name for torch.nn yet. It runs first: its starts are read off the file's text,
        # which the tree must still be.
        OnePass(ReplaceBatchNormCodemod(), WidenInitLoops()),
        # BN2GN102 after BN2GN101: get_group_norm is defined where the calls BN2GN101 just made (or
        # the file's own calls) need it; it reuses the torch.nn import BN2GN103 may have added.
        GroupNormHelper(),
    )


@functools.lru_cache(maxsize=None)
def patch_trainer_codemods() -> "Tuple[Codemod, ...]":
    """``bn2gn patch-trainer``'s codemods (BN2GN2xx), in the order they run."""
    from .support.trainer_steps import FreezeHelper, HelperChecks, PlannedEdits

    return (
        # BN2GN201, BN2GN203 and BN2GN204: planned together on the original tree (their anchors are
        # its nodes, compared by identity), so they are applied first, in one pass.
        PlannedEdits(),
        # BN2GN202 after them: it defines (or imports) what the file calls, the inserted calls included.
        FreezeHelper(),
        # No rule, last, on the final tree: notes on a helper the file calls but lacks (BN2GN202
        # skipped) or whose baked-in backbone attributes differ from the configuration.
        HelperChecks(),
    )
