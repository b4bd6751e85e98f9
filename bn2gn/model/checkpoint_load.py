"""Open a checkpoint safely and find the state dict(s) inside it; pickled code runs only with
``--trust-pickle``.

torch files are read with ``weights_only=True`` (no code in the pickle can run) and, for the
zip format, ``mmap=True`` so tensors stay file-backed; ``.safetensors`` files are mapped by the
safetensors library. Anything that cannot be read becomes one Bn2gnError line, exit 2.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterable, Optional, Tuple

from ..core.errors import EXIT_USAGE, Bn2gnError, Message, Opt
from .safe_globals import admissible, can_run_code, resolve_global

#: Where CenterNet-family and common training scripts keep the model weights, in lookup order.
STATE_DICT_KEYS = ("state_dict", "model", "net", "module", "state_dict_ema")
TORCH_ZIP, TORCH_LEGACY, SAFETENSORS = "torch", "torch-legacy", "safetensors"
_ZIP_MAGIC = b"PK\x03\x04"


@dataclasses.dataclass(frozen=True)
class LoadOptions:
    """How far the user trusts the file: named extra globals, or everything (``--trust-pickle``)."""

    trust_pickle: bool = False
    allow_globals: Tuple[str, ...] = ()


@dataclasses.dataclass
class Checkpoint:
    """A loaded checkpoint: the top-level object, for safetensors the header metadata, and what
    torch warned about while reading it (folded into bn2gn's report, never printed raw)."""

    path: Path
    format: str
    content: Any
    metadata: Optional[dict] = None
    warnings: Tuple[str, ...] = ()


def checkpoint_format(path: Path) -> str:
    """``safetensors`` by suffix, otherwise torch (zip or legacy, told apart by the magic bytes)."""
    if Path(path).suffix == ".safetensors":
        return SAFETENSORS
    with open(path, "rb") as handle:
        return TORCH_ZIP if handle.read(4) == _ZIP_MAGIC else TORCH_LEGACY


def load_checkpoint(
    path: Path, options: LoadOptions = LoadOptions(), fmt: Optional[str] = None
) -> Checkpoint:
    """Read ``path``; ``fmt`` overrides detection by suffix (for bn2gn's own temporary files)."""
    path = Path(path)
    _check_readable(path)
    if fmt != SAFETENSORS:
        fmt = checkpoint_format(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if fmt == SAFETENSORS:
            tensors, metadata = _load_safetensors(path)
            checkpoint = Checkpoint(path, fmt, tensors, metadata)
        else:
            checkpoint = Checkpoint(path, fmt, load_torch(path, options, mmap=fmt == TORCH_ZIP))
    checkpoint.warnings = fold_warnings(caught)
    refuse_odd_shapes(checkpoint.content, path)
    return checkpoint


#: Containers nested deeper than this are refused: state dicts are two or three levels deep, and
#: remapping, saving and comparing walk the content recursively.
MAX_NESTING = 100


def refuse_odd_shapes(content: Any, path: Path) -> None:
    """A container that holds itself, or one nested deeper than MAX_NESTING, is the file's
    problem (exit 2), found without recursion so that no RecursionError reaches the user."""
    open_ids: set = set()
    stack = [(content, 0, "", False)]
    while stack:
        obj, depth, where, leaving = stack.pop()
        if leaving:
            open_ids.discard(id(obj))
            continue
        if isinstance(obj, Mapping):
            children = [(v, f"{where}[{k!r}]") for k, v in obj.items()]
        elif isinstance(obj, (list, tuple, set, frozenset)):
            children = [(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        else:
            continue
        if id(obj) in open_ids:
            raise Bn2gnError(
                f"{path}: entry {where or '(top level)'} contains itself (a cyclic container), "
                "which a checkpoint bn2gn can remap does not hold; remove that entry and save it "
                "again",
                EXIT_USAGE,
            )
        if depth > MAX_NESTING:
            raise Bn2gnError(
                f"{path}: entry {where[:80]}... is nested more than {MAX_NESTING} containers deep; not a "
                "checkpoint bn2gn can remap: remove that entry and save it again",
                EXIT_USAGE,
            )
        open_ids.add(id(obj))
        stack.append((obj, depth, where, True))
        stack.extend((child, depth + 1, name, False) for child, name in children)


#: torch warnings about torch's own internals, not about the user's file: dropped.
_NOISE = ("TypedStorage is deprecated", "Detected pickle protocol")


def fold_warnings(caught) -> Tuple[str, ...]:
    """The first sentence of each distinct warning that says something about the file."""
    folded = []
    for item in caught:
        text = str(item.message).strip()
        if not text or any(noise in text for noise in _NOISE):
            continue
        if "quantize" in text or "quantized" in text:
            text = (
                "holds quantized tensors (torch.quint8/qint8/qint32), which torch deprecates: a future torch "
                "may not load this checkpoint"
            )
        else:
            text = "torch: " + text.splitlines()[0].split(". ")[0].rstrip(".")
        if text not in folded:
            folded.append(text)
    return tuple(folded)


def load_torch(path: Path, options: LoadOptions, mmap: bool) -> Any:
    """``torch.load`` on CPU, weights-only unless the user trusts the pickle."""
    import torch

    if options.trust_pickle:
        return _guarded_load(
            path, lambda: torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
        )
    allowed = [resolve_global(name) for name in options.allow_globals]
    with torch.serialization.safe_globals(allowed):
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except pickle.UnpicklingError as exc:
            if "Weights only load failed" in str(exc):
                raise _refusal(path, str(exc), mmap) from None
            raise _unreadable(path, exc) from None
        except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
            raise _unreadable(path, exc) from None


def _guarded_load(path: Path, load) -> Any:
    try:
        return load()
    except Exception as exc:  # noqa: BLE001
        raise _unreadable(path, exc) from None


def _refusal(path: Path, message: str, zipped: bool) -> Bn2gnError:
    names = re.findall(r"GLOBAL ([\w.]+)", message)
    first = names[0] if names else None
    if zipped:
        import torch

        try:
            unsafe = sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(path)))
        except Exception:  # noqa: BLE001 - the list is a courtesy; the refusal stands
            unsafe = []
        # torch's message may shorten the name (protocol 2 writes builtins as `exec`); prefer the dotted one
        dotted = [
            n for n in unsafe if first is not None and (n == first or n.endswith("." + first))
        ]
        if dotted or (first is None and unsafe):
            first = (dotted or unsafe)[0]
        others = [n for n in unsafe if n != first]
    if first is None:
        if (
            "Unsupported operand 149" in message
        ):  # FRAME: protocol 4+, which only plain pickle.dump writes
            return Bn2gnError(
                Message(
                    f"{path}: refused: a plain pickle (protocol 4 or higher, not written by "
                    "torch.save), which safe (weights-only) loading cannot read; if you trust this "
                    "file, re-run with ",
                    Opt("trust_pickle"),
                ),
                EXIT_USAGE,
            )
        broken = None if zipped else _not_a_pickle(path)
        if broken:  # random bytes or a damaged file: unsafe loading would not help
            return Bn2gnError(
                f"{path}: not a checkpoint bn2gn can read ({broken}); check the file or copy it "
                "again",
                EXIT_USAGE,
            )
        return Bn2gnError(
            Message(
                f"{path}: refused: safe (weights-only) loading failed "
                f"({_unpickler_reason(message)}); if you trust this file, re-run with ",
                Opt("trust_pickle"),
            ),
            EXIT_USAGE,
        )
    also = f" (also: {', '.join(others)})" if zipped and others else ""
    if can_run_code(first):
        return Bn2gnError(
            Message(
                f"{path}: refused to unpickle global {first}{also}, which can run arbitrary code: "
                "the file may be malicious; only if you trust its origin, re-run with ",
                Opt("trust_pickle"),
            ),
            EXIT_USAGE,
        )
    verdict = admissible(first)
    if verdict is False:
        return Bn2gnError(
            Message(
                f"{path}: refused to unpickle global {first}{also}: calling it may run code; only ",
                Opt("trust_pickle"),
                " loads it, and only for a file you trust",
            ),
            EXIT_USAGE,
        )
    advice = "allow it with " if verdict else "if it is a class you trust, allow it with "
    return Bn2gnError(
        Message(
            f"{path}: refused to unpickle global {first}{also}: safe loading allows tensors and "
            f"plain containers only; {advice}",
            Opt("allow_global", first),
            " (functions are refused: calling one may run code; only ",
            Opt("trust_pickle"),
            " loads those)",
        ),
        EXIT_USAGE,
    )


def _not_a_pickle(path: Path) -> Optional[str]:
    """Why the file's first pickle is not one (an unknown opcode, cut short), read with pickletools,
    which only parses; None when it parses."""
    import pickletools

    try:
        with open(path, "rb") as handle:
            for count, (opcode, _, _) in enumerate(pickletools.genops(handle)):
                if opcode.name == "STOP" or count > 1_000_000:
                    return None
    except (ValueError, EOFError, OSError, UnicodeDecodeError) as exc:
        return (
            f"no valid pickle: {str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__}"
        )
    return "no valid pickle: it ends before the pickle does"


def _nonblank_lines(message: str):
    return [line.strip() for line in message.strip().splitlines() if line.strip()]


def _unpickler_reason(message: str) -> str:
    """The line after torch's "WeightsUnpickler error:", not its closing pointer to the documentation."""
    lines = _nonblank_lines(message)
    for index, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            rest = line.split("WeightsUnpickler error:", 1)[1].strip()
            if rest:
                return rest[:160]
            if index + 1 < len(lines):
                return lines[index + 1][:160]
    return lines[-1][:160] if lines else "no reason given"


def _unreadable(path: Path, exc: BaseException) -> Bn2gnError:
    lines = str(exc).strip().splitlines()
    detail = f"{type(exc).__name__}: {lines[0][:160]}" if lines else type(exc).__name__
    return Bn2gnError(
        f"{path}: not a readable PyTorch checkpoint, or truncated/corrupt ({detail}); "
        "check the file or copy it again",
        EXIT_USAGE,
    )


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise Bn2gnError(f"{path}: no such file", EXIT_USAGE)
    if path.is_dir():
        raise Bn2gnError(
            f"{path}: is a directory; give the checkpoint file (e.g. {path}/model_last.pth)",
            EXIT_USAGE,
        )
    kind = _not_regular(path)
    if kind:  # opening a named pipe would wait for a writer forever
        raise Bn2gnError(
            f"{path}: is a {kind}, not a regular file; give the checkpoint file itself",
            EXIT_USAGE,
        )
    try:
        with open(path, "rb") as handle:
            empty = not handle.read(1)
    except OSError as exc:
        raise Bn2gnError(f"{path}: cannot read ({exc.strerror or exc})", EXIT_USAGE) from None
    if empty:
        raise Bn2gnError(
            f"{path}: empty file (0 bytes), not a checkpoint; the save was probably interrupted",
            EXIT_USAGE,
        )


def _not_regular(path: Path) -> Optional[str]:
    import os
    import stat

    from ..core.source_files import file_kind

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) else file_kind(mode)


def _load_safetensors(path: Path) -> Tuple[dict, dict]:
    safe_open = safetensors_module(path, "read").safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        lines = str(exc).strip().splitlines()
        detail = f"{type(exc).__name__}: {lines[0][:160]}" if lines else type(exc).__name__
        raise Bn2gnError(
            f"{path}: not a readable safetensors file, or truncated/corrupt ({detail})", EXIT_USAGE
        ) from None
    return tensors, metadata


def safetensors_module(path: Path, verb: str):
    """The optional safetensors package, or one line saying which package to install."""
    try:
        import safetensors.torch
    except ImportError:
        raise Bn2gnError(
            f"{path}: bn2gn needs the optional safetensors package to {verb} .safetensors files; "
            "install it (python -m pip install 'bn2gn[safetensors]') and run again",
            EXIT_USAGE,
        ) from None
    return safetensors


def refuse_meta_tensors(content: Any, path: Path, where: str = "") -> None:
    """A meta tensor has a shape and no values: remapping it would write a checkpoint without weights."""
    import torch

    if isinstance(content, torch.Tensor):
        if content.is_meta:
            raise Bn2gnError(
                f"{path}: {where or 'the top level'} is a meta tensor (a shape, no values): the file "
                "was saved from a model that was never materialised; save it again from the trained "
                "model",
                EXIT_USAGE,
            )
    elif isinstance(content, Mapping):
        for key, value in content.items():
            refuse_meta_tensors(value, path, f"{where}.{key}" if where else str(key))
    elif isinstance(content, (list, tuple)):
        for index, value in enumerate(content):
            refuse_meta_tensors(value, path, f"{where or 'top level'}[{index}]")


def is_state_dict(obj: Any) -> bool:
    """A non-empty mapping of names to tensors (``*._extra_state`` entries may hold anything)."""
    import torch

    if not isinstance(obj, Mapping) or not obj:
        return False
    tensors = 0
    for key, value in obj.items():
        if not isinstance(key, str):
            return False
        if isinstance(value, torch.Tensor):
            tensors += 1
        elif not key.endswith("_extra_state"):
            return False
    return tensors > 0


def find_state_dicts(content: Any, path: Path, keys: Tuple[str, ...] = ()) -> Tuple[str, ...]:
    """Which top-level entries hold state dicts: ``()`` when ``content`` is itself one.

    Auto-detection returns every key of STATE_DICT_KEYS that holds a state dict, so a model's
    EMA copy is remapped alongside it; ``keys`` (``--key``) chooses explicitly.
    """
    if not isinstance(content, Mapping):
        raise Bn2gnError(
            f"{path}: holds a {type(content).__name__}, not a dict of tensors; "
            "not a checkpoint bn2gn can remap",
            EXIT_USAGE,
        )
    if keys:
        for key in keys:
            if key not in content:
                raise Bn2gnError(
                    Message(
                        f"{path}: ",
                        Opt("key", key),
                        f": no such top-level entry (has: {_entry_names(content)})",
                    ),
                    EXIT_USAGE,
                )
            if not is_state_dict(content[key]):
                raise Bn2gnError(
                    Message(
                        f"{path}: ",
                        Opt("key", key),
                        f": holds a {type(content[key]).__name__}, not a state dict of tensors",
                    ),
                    EXIT_USAGE,
                )
        return tuple(keys)
    if is_state_dict(content):
        return ()
    found = tuple(k for k in STATE_DICT_KEYS if is_state_dict(content.get(k)))
    if not found:
        raise Bn2gnError(
            Message(
                f"{path}: no state dict found at the top level or under "
                f"{', '.join(STATE_DICT_KEYS)} (has: {_entry_names(content)}); choose one with ",
                Opt("key"),
            ),
            EXIT_USAGE,
        )
    return found


#: DataParallel and DistributedDataParallel save every key of the wrapped model under this prefix.
DATA_PARALLEL_PREFIX = "module."


def data_parallel_prefix(keys: Iterable[str]) -> str:
    """``module.`` (repeated for nested DataParallel) when every key carries it, else nothing."""
    keys = list(keys)
    prefix = ""
    while keys and all(k.startswith(prefix + DATA_PARALLEL_PREFIX) for k in keys):
        prefix += DATA_PARALLEL_PREFIX
    return prefix


def model_state_dict(path: Path, options: LoadOptions = LoadOptions()) -> dict:
    """The model's state dict in a checkpoint (the first one found), DataParallel's prefix stripped:
    what ``scan --trace --checkpoint``, ``demo`` and ``verify`` compare a built model with."""
    checkpoint = load_checkpoint(path, options)
    keys = find_state_dicts(checkpoint.content, checkpoint.path)
    state = checkpoint.content[keys[0]] if keys else checkpoint.content
    prefix = data_parallel_prefix(state)
    return {key[len(prefix) :]: value for key, value in state.items()}


def _entry_names(content: Mapping) -> str:
    names = [str(k) for k in content]
    return ", ".join(names[:8]) + (", ..." if len(names) > 8 else "") if names else "nothing"
