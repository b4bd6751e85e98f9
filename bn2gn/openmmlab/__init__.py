"""OpenMMLab configs: resolve them statically, audit their freezing, rewrite the user's own file."""

from .evaluate import RefusedConstruct
from .resolve import LazyConfig, ResolvedConfig, resolve_config
from .values import CfgDict, Origin

__all__ = [
    "CfgDict",
    "LazyConfig",
    "Origin",
    "RefusedConstruct",
    "ResolvedConfig",
    "resolve_config",
]
