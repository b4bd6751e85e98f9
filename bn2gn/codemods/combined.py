"""Run several per-file transformers in one LibCST traversal that shares one metadata resolution.

Each part stays a transformer of its own (one behaviour per module); this only chains their
``visit_*``/``leave_*`` calls node by node, in the order given. Parts must need no metadata
beyond ``PositionProvider`` (positions of the original nodes).
"""

from __future__ import annotations

from typing import Sequence

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider


class Combined(cst.CSTTransformer):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, parts: Sequence[cst.CSTTransformer]):
        super().__init__()
        self.parts = list(parts)

    def on_visit(self, node: cst.CSTNode) -> bool:
        if isinstance(node, cst.Module):
            for part in self.parts:
                part.metadata = self.metadata  # the resolution this pass was given
        for part in self.parts:
            part.on_visit(node)
        return True

    def on_leave(self, original_node, updated_node):
        for part in self.parts:
            updated_node = part.on_leave(original_node, updated_node)
            if not isinstance(updated_node, cst.CSTNode):
                break  # a part removed the node
        return updated_node


def transform(module: cst.Module, parts: Sequence[cst.CSTTransformer]) -> cst.Module:
    """``module`` after every part, in one pass; no copy of the tree, positions resolved once."""
    if not parts:
        return module
    return MetadataWrapper(module, unsafe_skip_copy=True).visit(Combined(parts))
