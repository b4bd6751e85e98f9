"""``--resolver mmengine``: let mmengine itself resolve the config (this executes the config file).

For configs the static resolver refuses. Values carry no line numbers (mmengine does not keep
them); ``custom_imports`` are not imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.errors import EXIT_USAGE, Bn2gnError, Message, SourceError
from .evaluate import MMENGINE_RESOLVER
from .resolve import ResolvedConfig
from .values import CfgDict, Origin


def resolve_with_mmengine(path: Path) -> ResolvedConfig:
    try:
        from mmengine.config import Config
    except ImportError:
        raise Bn2gnError(
            Message(MMENGINE_RESOLVER, " needs mmengine: pip install 'bn2gn[openmmlab]'"),
            EXIT_USAGE,
        ) from None
    path = Path(path)
    if not path.is_file():
        raise SourceError(path, 1, "no such config file")
    try:
        config = Config.fromfile(str(path), import_custom_modules=False)
    except Exception as exc:  # noqa: BLE001 - mmengine raises anything the config raises
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise SourceError(
            path, 1, f"mmengine cannot load it: {type(exc).__name__}: {first}"
        ) from None
    origin = Origin(path, 0)
    return ResolvedConfig(
        path=path,
        data=_tracked(config.to_dict(), origin),
        files=(path,),
        bases={},
        resolver="mmengine",
    )


def _tracked(value: Any, origin: Origin) -> Any:
    if isinstance(value, dict):
        out = CfgDict()
        for key, item in value.items():
            out.set(key, _tracked(item, origin), origin)
        return out
    if isinstance(value, list):
        return [_tracked(v, origin) for v in value]
    if isinstance(value, tuple):
        return tuple(_tracked(v, origin) for v in value)
    return value
