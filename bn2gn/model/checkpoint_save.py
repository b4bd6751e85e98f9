"""Write the remapped checkpoint and re-open it before anything is renamed into place.

The caller passes a temporary path from ``sources.atomic_output``; a file that fails the
re-open check raises, so the temporary file is removed and no output appears.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, List, Optional, Tuple

from ..core.errors import EXIT_FAILED, EXIT_USAGE, Bn2gnError, Message, Opt
from .checkpoint_load import SAFETENSORS, TORCH_ZIP, LoadOptions, checkpoint_format, load_checkpoint


def output_format(path: Path) -> str:
    return SAFETENSORS if Path(path).suffix == ".safetensors" else TORCH_ZIP


def build_payload(content: Any, state_keys: Tuple[str, ...], fmt: str) -> Tuple[Any, List[str]]:
    """What gets written: the whole checkpoint for torch, one flat tensor dict for safetensors."""
    import torch

    if fmt != SAFETENSORS:
        return content, []
    if len(state_keys) > 1:
        raise Bn2gnError(
            Message(
                f"a .safetensors output holds one state dict, this checkpoint has "
                f"{len(state_keys)} ({', '.join(state_keys)}); choose one with ",
                Opt("key"),
            ),
            EXIT_USAGE,
        )
    state = content[state_keys[0]] if state_keys else content
    warnings = []
    if state_keys:
        others = [str(k) for k in content if k != state_keys[0]]
        if others:
            warnings.append(
                f"a .safetensors file holds tensors only: not written: {', '.join(others)}"
            )
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    for key, tensor in tensors.items():
        if tensor.is_quantized or tensor.layout != torch.strided:
            kind = (
                f"quantized ({tensor.dtype})"
                if tensor.is_quantized
                else f"sparse ({tensor.layout})"
            )
            raise Bn2gnError(
                f"entry {key}: a .safetensors file cannot hold a {kind} tensor; write a .pth "
                "output instead",
                EXIT_USAGE,
            )
    skipped = [k for k in state if k not in tensors]
    if skipped:
        warnings.append(
            f"a .safetensors file holds tensors only: not written: {', '.join(skipped)}"
        )
    return tensors, warnings


def save_checkpoint(payload: Any, path: Path, fmt: str, metadata: Optional[dict] = None) -> None:
    if fmt == SAFETENSORS:
        from safetensors.torch import save_file

        try:
            save_file(
                {k: v.contiguous() for k, v in payload.items()},
                str(path),
                metadata=metadata or None,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            full = disk_full(path)
            if full:
                raise full from None
            if isinstance(exc, OSError):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise Bn2gnError(
                f"cannot write safetensors ({first}); write a .pth output instead", EXIT_USAGE
            ) from None
        return
    import torch

    try:
        torch.save(payload, path)
        return
    except RuntimeError as exc:  # torch's zip writer reports OS failures (disk full...) this way
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # raised outside the handler: torch's traceback, which holds its open writer (and so the
    # half-written file's space), is freed first
    raise disk_full(path) or OSError(f"torch.save failed: {first}")


#: A file system with less free space than this after a failed write is taken to be full.
FULL_BELOW_BYTES = 1 << 20


def free_bytes(folder: Path) -> int:
    info = os.statvfs(folder)
    return info.f_bavail * info.f_frsize


def disk_full(path: Path) -> Optional[OSError]:
    """ENOSPC naming the file system, when the write failed because it is full: torch and
    safetensors report that as "basic_ios::clear: iostream error" or "file write failed"."""
    folder = Path(os.path.realpath(Path(path).parent))
    try:
        if free_bytes(folder) >= FULL_BELOW_BYTES:
            return None
    except OSError:
        return None
    mount = folder
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    return OSError(errno.ENOSPC, f"no space left on device {mount}")


#: Bytes compared at each end of every tensor by the re-open check (a full compare doubles the run time).
CHECK_SAMPLE_BYTES = 64 * 1024


def check_written(path: Path, fmt: str, payload: Any, options: LoadOptions) -> None:
    """Re-open ``path`` the way a user would and compare it with what was meant to be written.

    Every entry, dtype and shape is compared, and the first and last CHECK_SAMPLE_BYTES of
    every tensor byte for byte: that catches a file that does not load, a missing or extra
    entry and a tensor read back from the wrong place, without reading the whole file again.
    """
    try:
        if fmt != SAFETENSORS and checkpoint_format(path) != TORCH_ZIP:
            raise Bn2gnError("not a torch zip file", EXIT_FAILED)
        reopened = load_checkpoint(path, options, fmt=fmt).content
    except Bn2gnError as exc:
        raise Bn2gnError(
            f"the written file could not be re-opened ({exc.format_message()}); "
            "nothing was written",
            EXIT_FAILED,
        ) from None
    difference = first_difference(payload, reopened, sample_bytes=CHECK_SAMPLE_BYTES)
    if difference:
        raise Bn2gnError(
            f"the written file differs from the remapped checkpoint at {difference}; "
            "nothing was written",
            EXIT_FAILED,
        )


def first_difference(
    expected: Any, actual: Any, where: str = "", sample_bytes: Optional[int] = None
) -> Optional[str]:
    """The path of the first entry that differs (tensors compared by their bytes), or None."""
    import torch

    here = where or "top level"
    if isinstance(expected, torch.Tensor):
        same = isinstance(actual, torch.Tensor) and same_tensor(expected, actual, sample_bytes)
        return None if same else here
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping) or set(expected) != set(actual):
            return here  # order is not compared: safetensors stores entries sorted
        for key in expected:
            found = first_difference(
                expected[key], actual[key], f"{where}.{key}" if where else str(key), sample_bytes
            )
            if found:
                return found
        return None
    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)) or len(expected) != len(actual):
            return here
        for index, (exp, act) in enumerate(zip(expected, actual)):
            found = first_difference(exp, act, f"{here}[{index}]", sample_bytes)
            if found:
                return found
        return None
    try:
        return None if bool(expected == actual) else here
    except Exception:  # noqa: BLE001 - objects without a usable ==: same type is the best we can check
        return None if type(expected) is type(actual) else here


def same_tensor(a, b, sample_bytes: Optional[int] = None) -> bool:
    """Same dtype, shape and bytes (NaNs compare equal, -0.0 differs from 0.0).

    With ``sample_bytes``, only that many bytes at each end of a larger tensor are compared.
    """
    import torch

    if a.dtype != b.dtype or a.shape != b.shape or a.layout != b.layout:
        return False
    if a.layout != torch.strided:
        return all(
            same_tensor(x, y, sample_bytes) for x, y in zip(_sparse_parts(a), _sparse_parts(b))
        )
    if a.is_quantized:
        return torch.equal(a, b)
    flat_a, flat_b = _as_bits(a.contiguous().reshape(-1)), _as_bits(b.contiguous().reshape(-1))
    count = (sample_bytes or 0) // max(flat_a.element_size(), 1)
    if count and flat_a.numel() > 2 * count:
        return torch.equal(flat_a[:count], flat_b[:count]) and torch.equal(
            flat_a[-count:], flat_b[-count:]
        )
    return torch.equal(flat_a, flat_b)


def _sparse_parts(tensor):
    """The dense tensors a sparse tensor is made of (torch.equal has no sparse kernel)."""
    import torch

    if tensor.layout == torch.sparse_coo:
        tensor = tensor.coalesce()
        return tensor.indices(), tensor.values()
    if tensor.layout in (torch.sparse_csr, torch.sparse_bsr):
        return tensor.crow_indices(), tensor.col_indices(), tensor.values()
    if tensor.layout in (torch.sparse_csc, torch.sparse_bsc):
        return tensor.ccol_indices(), tensor.row_indices(), tensor.values()
    raise Bn2gnError(
        f"cannot compare a {tensor.layout} tensor; please report this layout", EXIT_USAGE
    )


def _as_bits(flat):
    """The same memory as an integer tensor of the same element size, so == compares bits."""
    import torch

    ints = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
    wanted = ints.get(flat.element_size(), torch.uint8)
    return flat if flat.dtype == wanted else flat.view(wanted)
