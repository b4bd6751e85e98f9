"""bn2gn's snippets are pre-rendered in black's style, so default runs never import black.

Each template bn2gn injects, filled with short, medium and long names, must come out of
``prerendered`` exactly as black formats it (or be left to black: None).
"""

from __future__ import annotations

import itertools

import black
import pytest

from bn2gn.source.rules.bn2gn102_group_norm_helper import HELPER_SOURCE
from bn2gn.source.rules.bn2gn202_freeze_helper import (
    ORDER,
    PUBLIC,
    _specialised,
    format_snippet_source,
)
from bn2gn.source.support.inject import prerendered
from bn2gn.source.support.names import tuple_literal

ATTRS = [
    ("backbone",),
    ("backbone", "base_layer"),
    ("encoder", "module.backbone"),
    ("backbone", "base_layer", "layer1", "layer2", "layer3", "layer4"),
    # a plan's inferred entries: the tuple no longer fits one parameter line
    ("backbone", "base_layer", "PoseResNet.conv1", "PoseResNet.layer1", "PoseResNet.layer2"),
    ("backbone", "base_layer", *(f"DLASeg.level{i}" for i in range(6)), "Tracker.pre_img_layer"),
    tuple(f"stage{i}_with_a_rather_long_name" for i in range(6)),
]


def _black(code: str) -> str:
    return black.format_str(code, mode=black.Mode())


def _runtime_code(names, attrs) -> str:
    wanted = set(names) | {"unwrap_model", "backbone_modules", "backbone_batchnorms"}
    return "\n\n".join(_specialised(name, attrs) for name in ORDER if name in wanted)


@pytest.mark.parametrize("attrs", ATTRS)
@pytest.mark.parametrize("count", [1, 2])
def test_injected_definitions_render_as_black_does(attrs, count):
    for names in itertools.combinations(PUBLIC, count):
        code = _runtime_code(names, attrs)
        rendered = prerendered(code)
        if attrs != ATTRS[-1]:  # names this long are left to black
            assert rendered is not None, attrs
        if rendered is not None:
            assert rendered == _black(code)
            assert rendered == format_snippet_source(code)


@pytest.mark.parametrize(
    "model", ["model", "self.model", "self.detector_with_a_long_name.module", "models['a']"]
)
@pytest.mark.parametrize("attrs", ATTRS)
def test_inserted_calls_render_as_black_does(model, attrs):
    kwargs = f", backbone_attrs={tuple_literal(attrs)}"
    for code in [
        f"frozen_count = freeze_backbone_bn({model})\n"
        'print(f"Frozen backbone BatchNorm modules: {frozen_count}")\n',
        f"frozen_count = freeze_backbone_bn({model}{kwargs})\n"
        'logger.info("Frozen backbone BatchNorm modules: %d", frozen_count)\n',
        'self.log.write(f"Frozen backbone BatchNorm modules: {frozen_count}\\n")\n',
        f"keep_backbone_bn_eval({model})\n",
        f"keep_backbone_bn_eval({model}{kwargs})\n",
    ]:
        rendered = prerendered(code)
        if rendered is not None:
            assert rendered == _black(code), code
        elif "'" not in code:
            assert len(max(code.splitlines(), key=len)) > 88, code


@pytest.mark.parametrize("nn", ["nn", "torch.nn", "T.nn"])
def test_group_norm_helper_renders_as_black_does(nn):
    code = HELPER_SOURCE.format(nn=nn)
    assert prerendered(code) == _black(code)


def test_tuple_literal_is_the_tuple():
    import ast

    for attrs in ATTRS + [(), ('with"quote',)]:
        assert ast.literal_eval(tuple_literal(attrs)) == attrs
