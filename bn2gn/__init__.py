"""bn2gn: migrate CenterNet-family detectors from BatchNorm2d to GroupNorm in non-backbone layers.

The public surface:

- this package: the library seam (``bn2gn.api``) re-exported, e.g. ``bn2gn.Session(paths,
  bn2gn.load_settings(paths)).backbone``; every front end goes through it;
- ``bn2gn.runtime``: the freeze helpers patched training code imports;
- ``bn2gn.libcst_commands``: the codemods for LibCST's runner (``.libcst.codemod.yaml``);
- ``bn2gn.cli:main``: the ``bn2gn`` command.

Everything else is internal. The seam is imported on first use, so ``import bn2gn.runtime`` and
the command line pay nothing for it.
"""

__version__ = "0.1.0"

__all__ = [
    "CHECK",
    "DIFF",
    "WRITE",
    "Backbone",
    "BackboneEntry",
    "Config",
    "FileResult",
    "Session",
    "SourceText",
    "apply",
    "failed",
    "file_key",
    "file_keys",
    "load_settings",
    "patch_one",
    "remap_decision",
    "remap_options",
    "replace_rules",
    "rewrite_one",
    "source_from_bytes",
    "trainer_insertions",
    "unified_diff",
]


def __getattr__(name: str):
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'bn2gn' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
