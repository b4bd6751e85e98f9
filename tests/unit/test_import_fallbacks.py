"""bn2gn/model/import_fallbacks.py: names set to None when an import fails. Expected values by hand."""

from __future__ import annotations

import textwrap

from bn2gn.model.import_fallbacks import Fallback, find_fallbacks


def found(text, module="lib.models.networks.pose_dla_dcn", is_package=False):
    return find_fallbacks(textwrap.dedent(text), module, is_package)


def test_relative_import_with_bare_except():
    assert found("""
        import torch
        try:
            from .DCNv2.dcn_v2 import DCN
        except:
            DCN = None
    """) == [Fallback("DCN", "lib.models.networks.DCNv2.dcn_v2", 4)]


def test_absolute_imports_aliases_and_tuple_handlers():
    assert found("""
        try:
            import dcn_v2 as ext
            from mmcv.ops import DeformConv2d as DCN, ModulatedDeformConv2d
        except (ImportError, OSError):
            ext, DCN = None, None
            ModulatedDeformConv2d = object
    """) == [Fallback("ext", "dcn_v2", 3), Fallback("DCN", "mmcv.ops", 4)]


def test_from_dot_import_module_and_levels_in_a_package():
    assert found(
        """
        try:
            from . import dcn_v2
            from ..ops.deform import DeformConv
        except ModuleNotFoundError:
            dcn_v2 = DeformConv = None
    """,
        module="lib.models",
        is_package=True,
    ) == [Fallback("dcn_v2", "lib.models.dcn_v2", 3), Fallback("DeformConv", "lib.ops.deform", 4)]


def test_handlers_that_do_not_catch_import_errors_or_do_not_set_none_are_ignored():
    assert (
        found("""
        try:
            from .DCNv2.dcn_v2 import DCN
        except KeyError:
            DCN = None
        try:
            from .DCNv2.dcn_v2 import DCN2
        except ImportError:
            DCN2 = object
        try:
            x = 1
        except ImportError:
            y = None
    """)
        == []
    )


def test_unparsable_text_finds_nothing():
    assert found("try:\n  from x import y\nexcept:\n  y = None\n)") == []
