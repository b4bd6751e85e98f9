"""BN2GN102: define ``get_group_norm`` once per changed file, after the imports.

The body picks the largest group count <= 32 that divides C, using the file's own name for
torch.nn; it is not injected when the file already defines or imports the name.
"""

from __future__ import annotations

from typing import Optional

import libcst as cst

from ...core.file_results import Change
from ...core.rule_codes import Rule
from ..codemod import Context, Outcome
from ..support.helper_signature import check_user_helper
from ..support.inject import (
    defined_or_imported_names,
    dominant_indent,
    ensure_nn_import,
    format_snippet,
    insert_after_imports,
    with_indent,
)
from .bn2gn101_replace_batchnorm import HELPER

HELPER_SOURCE = '''
def get_group_norm(num_channels, num_groups=32, eps=1e-5, affine=True):
    """GroupNorm with the largest group count <= num_groups that divides num_channels (bn2gn)."""
    num_groups = min(num_groups, num_channels)
    while num_channels % num_groups != 0 and num_groups > 1:
        num_groups -= 1
    return {nn}.GroupNorm(num_groups, num_channels, eps=eps, affine=affine)
'''


def uses_helper(module: cst.Module) -> bool:
    """True when the module calls get_group_norm anywhere."""
    found = []

    class _Find(cst.CSTVisitor):
        def visit_Call(self, node: cst.Call) -> None:
            if isinstance(node.func, cst.Name) and node.func.value == HELPER:
                found.append(node)

    module.visit(_Find())
    return bool(found)


def inject_group_norm_helper(module: cst.Module, used: Optional[bool] = None):
    """Returns (module, injected?): injects only when the helper is called but not defined or imported;
    ``used``: the caller knows it is called (it just converted a site), so no search is needed."""
    if HELPER in defined_or_imported_names(module) or not (used or uses_helper(module)):
        return module, False
    module, nn_name = ensure_nn_import(module)
    statements = with_indent(
        format_snippet(HELPER_SOURCE.format(nn=nn_name)), dominant_indent(module)
    )
    return insert_after_imports(module, statements), True


class GroupNormHelper:
    """BN2GN102 in the registry: after BN2GN101, where get_group_norm is called but not defined."""

    rules = (Rule.INJECT_GROUP_NORM_HELPER,)

    def applies(self, context: Context) -> bool:
        return Rule.INJECT_GROUP_NORM_HELPER in context.rules and (
            _converted(context) or HELPER in context.source.text
        )

    def transform(self, module: cst.Module, context: Context) -> Outcome:
        module, injected = inject_group_norm_helper(
            module, used=True if _converted(context) else None
        )
        if not injected:
            if _converted(context):  # the file's own helper takes the converted calls
                check_user_helper(module.code, context.source.path)
            return Outcome(module)
        change = Change(
            Rule.INJECT_GROUP_NORM_HELPER, 1, "get_group_norm defined after the imports"
        )
        return Outcome(module, changes=(change,))


def _converted(context: Context) -> bool:
    """BN2GN101 converted a call in this file, so get_group_norm is called."""
    return any(change.rule is Rule.REPLACE_BATCHNORM for change in context.changes)
