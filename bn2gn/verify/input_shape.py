"""verify's inputs when no shape is given: read off the built model, then tried.

One tensor per required positional parameter of ``model.forward``; the channel count is
``in_channels`` of the first convolution in module registration order; the spatial size is the
smallest of :data:`SIZES` at which an eval-mode, no-grad forward runs. A model that stacks frames
on the channel axis and folds them into the batch before its first convolution (``x.reshape(b *
frames, 3, h, w)``) runs at no size with those channels: then 2, 3 and 4 times as many are tried
(:data:`STACKS`), and the report says so. Eval mode leaves BatchNorm statistics alone, and every
module's own ``training`` flag is restored afterwards, so the tries change nothing the
verification measures later.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import warnings
from typing import Optional, Tuple

from ..core.errors import EXIT_USAGE, Bn2gnError, Message, Opt, message_text

SIZES = (64, 128, 256, 512)
#: Multiples of the first convolution's channels tried, in order (frames stacked on the channels).
STACKS = (1, 2, 3, 4)
#: Characters of the last forward error kept in the one-line message.
BRIEF = 160


@dataclasses.dataclass(frozen=True)
class InferredInputs:
    """The shapes verify runs with, and how they were found."""

    shapes: Tuple[Tuple[int, ...], ...]
    tensors: int  # required positional parameters of forward()
    conv: str  # module path of the first convolution
    channels: int  # its in_channels
    size: int
    stack: int = 1  # the input has this many times the first convolution's channels

    def describe(self) -> str:
        shown = " ".join(",".join(map(str, s)) for s in self.shapes)
        plural = "" if self.tensors == 1 else "s"
        sizes = ",".join(map(str, SIZES))
        channels = f"the first convolution {self.conv} takes {self.channels} channels"
        if self.stack > 1:
            channels += (
                f", which ran at none of the sizes {sizes}, and {self.channels * self.stack} "
                f"({self.stack} x {self.channels}, frames stacked on the channel axis) run"
            )
        return message_text(
            f"input {shown} inferred: forward() takes {self.tensors} tensor{plural}, {channels}, "
            f"{self.size} is the smallest size of {sizes} that runs; give ",
            Opt("input_shape"),
            " to choose",
        )

    def as_dict(self) -> dict:
        return {
            "shapes": [list(s) for s in self.shapes],
            "forward_tensors": self.tensors,
            "first_convolution": self.conv,
            "channels": self.channels,
            "size": self.size,
            "stack": self.stack,
        }


def forward_tensors(model) -> int:
    """Required positional parameters of ``model.forward`` (no default, not ``*args``), at least 1."""
    try:
        parameters = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return 1
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [
        p for p in parameters if p.kind in positional and p.default is inspect.Parameter.empty
    ]
    return max(1, len(required))


def first_convolution(model) -> Optional[Tuple[str, int, int]]:
    """(module path, in_channels, spatial rank) of the first module with an integer
    ``in_channels``; the rank is the length of its ``kernel_size`` (Conv1d 1, Conv2d 2, Conv3d 3).
    """
    for path, module in model.named_modules():
        channels = getattr(module, "in_channels", None)
        if isinstance(channels, int) and not isinstance(channels, bool) and channels > 0:
            kernel = getattr(module, "kernel_size", None)
            rank = len(kernel) if isinstance(kernel, (tuple, list)) and kernel else 2
            return path or type(module).__name__, channels, rank
    return None


def infer_inputs(model, device: str, describe: str) -> InferredInputs:
    """The inputs verify runs ``model`` with; one-line Bn2gnError (exit 2) when none can be found."""
    import torch

    conv = first_convolution(model)
    if conv is None:
        raise Bn2gnError(
            Message(
                f"{describe}: no convolution in the model to read the input channels from; give ",
                Opt("input_shape", "1,C,H,W"),
                " (one per forward argument, in order)",
            ),
            EXIT_USAGE,
        )
    path, channels, rank = conv
    tensors = forward_tensors(model)
    first_error = ""
    for stack in STACKS:
        for size in SIZES:
            shape = (1, channels * stack, *([size] * rank))
            inputs = [torch.zeros(shape, device=device) for _ in range(tensors)]
            error = _try_forward(model, inputs)
            if error is None:
                return InferredInputs((shape,) * tensors, tensors, path, channels, size, stack)
        first_error = first_error or error
    raise Bn2gnError(
        Message(
            f"{describe}: forward() on {tensors} input(s) of {channels} channels (the first "
            f"convolution {path}) ran at none of the sizes {','.join(map(str, SIZES))}, nor with "
            f"2 to 4 times as many channels (at {SIZES[-1]}: {first_error}); give ",
            Opt("input_shape", "1,C,H,W"),
            " (one per forward argument, in order)",
        ),
        EXIT_USAGE,
    )


def _try_forward(model, inputs) -> Optional[str]:
    """None when an eval-mode, no-grad forward on ``inputs`` runs, else its error in brief."""
    import torch

    modes = [(module, module.training) for module in model.modules()]
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(io.StringIO()):
                model.eval()
                model(*inputs)
        return None
    except Exception as exc:  # noqa: BLE001 - the user's model: summarise, never dump
        lines = str(exc).strip().splitlines()
        first = lines[0] if lines else ""
        brief = first if len(first) <= BRIEF else first[: BRIEF - 3] + "..."
        return f"{type(exc).__name__}: {brief}" if brief else type(exc).__name__
    finally:
        for module, training in modes:
            module.training = training
