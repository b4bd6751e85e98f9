"""Settings: defaults, the ``[tool.bn2gn]`` table of the nearest pyproject.toml / bn2gn.toml, CLI overrides.

The settings hold what the user typed. ``backbone_names`` are the configured backbone attribute
names, one kind of evidence the analysis weighs; the decision every command applies is the plan's
``decide.backbone.Backbone``, which the seam (``bn2gn.api``) builds from both.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Optional, Sequence

from .errors import Bn2gnError


def _toml():
    """The TOML reader, imported only when a configuration file is read (most runs have none)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib


DEFAULT_BACKBONE_NAMES = ("backbone", "base_layer")
#: settings fields whose name differs from their [tool.bn2gn] key
FIELDS = {"backbone-attrs": "backbone_names"}
CONFIG_KEYS = ("backbone-attrs", "roots", "convert", "keep", "select", "skip", "include", "exclude")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything the analysis and the codemods need to agree on."""

    #: configured backbone attribute names (defaults + ``--backbone-attr`` + ``[tool.bn2gn]``);
    #: evidence for the analysis, never the decision itself
    backbone_names: tuple = DEFAULT_BACKBONE_NAMES
    roots: tuple = ()
    convert: tuple = ()
    keep: tuple = ()
    select: tuple = ()
    skip: tuple = ()
    include: tuple = ()
    exclude: tuple = ()
    source: Optional[Path] = None


def find_config_file(start: Path) -> Optional[Path]:
    """The nearest bn2gn.toml, or pyproject.toml holding a [tool.bn2gn] table, at or above ``start``."""
    here = start.resolve()
    if here.is_file() or not here.exists():
        here = here.parent
    for folder in (here, *here.parents):
        for name in ("bn2gn.toml", "pyproject.toml"):
            candidate = folder / name
            if candidate.is_file() and (name == "bn2gn.toml" or _has_bn2gn_table(candidate)):
                return candidate
    return None


def _has_bn2gn_table(path: Path) -> bool:
    """``[tool.bn2gn]``, but also ``[tool]`` with ``bn2gn = ...`` or ``bn2gn.key = ...`` below it."""
    try:
        raw = path.read_bytes()
    except OSError:
        return False
    if b"bn2gn" not in raw:
        return False
    tomllib = _toml()
    try:
        tool = tomllib.loads(raw.decode("utf-8")).get("tool")
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return b"[tool.bn2gn" in raw  # read_config_table reports the broken file
    return isinstance(tool, dict) and "bn2gn" in tool


def read_config_table(path: Path) -> dict:
    """The [tool.bn2gn] table (or, in bn2gn.toml, the top level when it has no such table)."""
    tomllib = _toml()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise Bn2gnError(
            f"{path}: cannot read configuration ({exc}); fix or remove the file"
        ) from None
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise Bn2gnError(
            f"{path}: 'tool' must be a table, not {_toml_type(tool)}; fix or remove the file"
        )
    table = tool.get("bn2gn")
    if table is None and path.name == "bn2gn.toml":
        table = {k: v for k, v in data.items() if k != "tool"}
    if table is not None and not isinstance(table, dict):
        raise Bn2gnError(
            f"{path}: [tool] bn2gn must be a table ([tool.bn2gn] with keys such as backbone-attrs), "
            f"not {_toml_type(table)}"
        )
    normalised = {}
    for key, value in (table or {}).items():
        norm = key.replace("_", "-")
        if norm not in CONFIG_KEYS:
            raise Bn2gnError(
                f"{path}: unknown [tool.bn2gn] key {key!r}; known keys: {', '.join(CONFIG_KEYS)}"
            )
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            example = f"[{value!r}]".replace("'", '"') if isinstance(value, str) else '["name"]'
            raise Bn2gnError(
                f"{path}: [tool.bn2gn] {key} must be a list of strings, not {_toml_type(value)} "
                f"(e.g. {key} = {example})"
            )
        normalised[norm] = tuple(value)
    return normalised


def _toml_type(value) -> str:
    names = {
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        dict: "a table",
        list: "a list with non-string items",
    }
    return names.get(type(value), f"a {type(value).__name__}")


def load_config(targets: Sequence[Path], config_file: Optional[Path] = None, **cli) -> Config:
    """Merge defaults, the config file found above the first target, and CLI values (CLI wins per key).

    ``backbone_names`` always include the defaults; CLI/config names (``backbone_names=``, the
    ``backbone-attrs`` key) are added to them.
    """
    unknown = set(cli) - {FIELDS.get(k, k.replace("-", "_")) for k in CONFIG_KEYS}
    if unknown:
        raise TypeError(f"load_config got unknown settings {sorted(unknown)}")
    path = config_file or (find_config_file(Path(targets[0])) if targets else None)
    table = read_config_table(path) if path else {}
    values = {}
    for key in CONFIG_KEYS:
        field = FIELDS.get(key, key.replace("-", "_"))
        if isinstance(cli.get(field), (str, bytes)):
            raise TypeError(f"{field} must be a sequence of names, not a string")
        cli_value = tuple(cli.get(field) or ())
        values[field] = cli_value or table.get(key, ())
    extra = values.pop("backbone_names")
    names = tuple(dict.fromkeys(DEFAULT_BACKBONE_NAMES + tuple(extra)))
    for name in names:
        if not name.isidentifier():
            raise Bn2gnError(f"backbone attribute {name!r} is not a Python identifier")
    return Config(backbone_names=names, source=path, **values)
