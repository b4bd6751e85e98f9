"""Config values that remember where they were written: a dict with a ``file:line`` per key.

The audit must say which file set ``lr_mult`` or ``norm_eval`` after mmengine merged the
``_base_`` chain, so every dict the resolver builds carries one Origin per key.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Origin:
    """Where a value was written; ``line`` 0 when the resolver could not know (``--resolver mmengine``)."""

    file: Path
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else str(self.file)


class CfgDict(dict):
    """A plain dict plus ``origins[key]``; attribute access reads keys, as mmengine's ConfigDict does."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.origins: Dict[Any, Origin] = {}

    def set(self, key: Any, value: Any, origin: Optional[Origin]) -> None:
        self[key] = value
        if origin is not None:
            self.origins[key] = origin
        else:
            self.origins.pop(key, None)

    def origin(self, key: Any) -> Optional[Origin]:
        return self.origins.get(key)

    def __delitem__(self, key) -> None:
        super().__delitem__(key)
        self.origins.pop(key, None)

    def pop(self, key, *default):
        self.origins.pop(key, None)
        return super().pop(key, *default)

    def copy(self) -> "CfgDict":
        new = CfgDict(self)
        new.origins = dict(self.origins)
        return new


def deep_copy(value: Any) -> Any:
    """Copy nested dicts/lists so that merging never changes a base file's values."""
    if isinstance(value, CfgDict):
        new = CfgDict({k: deep_copy(v) for k, v in value.items()})
        new.origins = dict(value.origins)
        return new
    if isinstance(value, dict):
        return {k: deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [deep_copy(v) for v in value]
    if isinstance(value, tuple):
        return tuple(deep_copy(v) for v in value)
    return value


def lookup(root: Any, path: Tuple[Any, ...]) -> Any:
    """``root[path[0]][path[1]]...`` or None when any step is missing or not a dict."""
    value = root
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def origin_at(root: Any, path: Tuple[Any, ...]) -> Optional[Origin]:
    """The Origin recorded for the last key of ``path``."""
    parent = lookup(root, path[:-1]) if path else None
    if isinstance(parent, CfgDict):
        return parent.origin(path[-1])
    return None


def walk_dicts(value: Any, path: Tuple[Any, ...] = ()) -> Iterator[Tuple[Tuple[Any, ...], dict]]:
    """Every dict below ``value`` (itself included) with its key path."""
    if isinstance(value, dict):
        yield path, value
        for key, child in value.items():
            yield from walk_dicts(child, path + (key,))
    elif isinstance(value, (list, tuple)):
        for index, child in enumerate(value):
            yield from walk_dicts(child, path + (index,))


def to_plain(value: Any) -> Any:
    """Plain dicts/lists for JSON output and for handing to mmengine."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value
