"""Watch a training run from the outside: global forward pre-hooks, not trust in the patch.

A *step* starts at every outermost forward call made in training mode with gradients on (the
train script's ``model_with_loss(batch)``); it ends at the next ``optimizer.step()``. The model
under test is the first such module that has parameters (unwrapped from DataParallel/ModelWithLoss);
outermost calls of other modules, such as a separate ``criterion(output, target)``, belong to the
step under way. At each
step start the recorder reads, on the unwrapped network, whether every backbone BatchNorm has
``training == False`` and ``requires_grad == False`` on its weight and bias; every backbone
BatchNorm called while the step runs is checked again at the call. The loss is the scalar that
``backward()`` is called on. Before/after copies of the backbone BatchNorm tensors and GroupNorm
parameters are compared when the run ends.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Optional

from ..model.bn_statistics import untrained_backbone_batchnorms
from ..runtime import backbone_batchnorms, unwrap_model
from . import snapshot


class Recorder:
    """Installs the hooks, keeps per-step records and produces one JSON-ready dict (``finish()``)."""

    def __init__(
        self,
        backbone_attrs,
        expect_state=None,
        expect_backbone=None,
        on_step: Optional[Callable[[dict], None]] = None,
    ):
        self.backbone_attrs = tuple(backbone_attrs)
        self.expect_state = expect_state
        self.expect_backbone = expect_backbone
        self.on_step = on_step
        self.steps = []
        self.network = None
        self.start = {}
        self._depth = 0
        self._current = None
        self._backbone_ids = {}
        self._handles = []
        self._backward = None

    def install(self) -> None:
        import torch
        from torch.nn.modules import module as nn_module
        from torch.optim import optimizer

        self._handles = [
            nn_module.register_module_forward_pre_hook(self._pre_forward),
            nn_module.register_module_forward_hook(self._post_forward, always_call=True),
            optimizer.register_optimizer_step_post_hook(self._after_optimizer_step),
        ]
        self._backward = torch.Tensor.backward
        recorder, original = self, self._backward

        def backward(tensor, *args, **kwargs):
            recorder._note_loss(tensor)
            return original(tensor, *args, **kwargs)

        torch.Tensor.backward = backward

    def remove(self) -> None:
        import torch

        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self._backward is not None:
            torch.Tensor.backward = self._backward
            self._backward = None

    # --- hooks -------------------------------------------------------------------------------
    def _pre_forward(self, module, args) -> None:
        import torch

        if self._depth == 0 and module.training and torch.is_grad_enabled():
            self._begin_step(module)
        elif self._current is not None and id(module) in self._backbone_ids and module.training:
            self._current["bn_training"].add(self._backbone_ids[id(module)])
        self._depth += 1

    def _post_forward(self, module, args, output) -> None:
        self._depth = max(0, self._depth - 1)

    def _note_loss(self, tensor) -> None:
        step = self._current
        if step is not None and step["loss"] is None and tensor.numel() == 1:
            step["loss"] = float(tensor.detach().float())

    def _after_optimizer_step(self, optimizer, args, kwargs) -> None:
        self._end_step()

    # --- steps -------------------------------------------------------------------------------
    def _begin_step(self, module) -> None:
        network = unwrap_model(module)
        if self.network is None:
            if next(network.parameters(), None) is None:
                return  # a parameter-free module called on its own (a loss, an augmentation): not the model
            self._first_step(network)
        elif network is not self.network:
            return  # a loss module, an EMA copy, a discriminator: the step under way goes on
        self._end_step()
        self._sync()
        training, needs_grad = [], []
        for path, bn in backbone_batchnorms(network, self.backbone_attrs):
            if bn.training:
                training.append(path)
            if any(p is not None and p.requires_grad for p in (bn.weight, bn.bias)):
                needs_grad.append(path)
        self._current = {
            "step": len(self.steps) + 1,
            "backbone_batchnorm": len(self._backbone_ids),
            "bn_training": set(training),
            "bn_requires_grad": needs_grad,
            "loss": None,
            "time_s": None,
            "cpu_s": None,
            "_t0": time.perf_counter(),
            "_c0": time.process_time(),
        }

    def _end_step(self) -> None:
        step, self._current = self._current, None
        if step is None:
            return
        self._sync()
        step["time_s"] = time.perf_counter() - step.pop("_t0")
        step["cpu_s"] = time.process_time() - step.pop(
            "_c0"
        )  # robust to other processes on a shared CPU
        step["bn_training"] = sorted(step["bn_training"])
        if step["loss"] is not None and not math.isfinite(step["loss"]):
            step["loss"] = repr(step["loss"])  # JSON has no nan/inf; the check reads the string
        self.steps.append(step)
        if self.on_step is not None:
            self.on_step(step)

    def _first_step(self, network) -> None:
        """Everything measured before the first update: census, start tensors, checkpoint comparisons."""
        self.network = network
        attrs = self.backbone_attrs
        self._backbone_ids = {id(m): path for path, m in backbone_batchnorms(network, attrs)}
        first_param = next(network.parameters(), None)
        self.start = {
            "device": str(first_param.device) if first_param is not None else "cpu",
            "census": snapshot.norm_census(network, attrs),
            "untrained_batchnorm": untrained_backbone_batchnorms(network, attrs),
            "backbone": snapshot.backbone_tensors(network, attrs),
            "groupnorm": snapshot.groupnorm_tensors(network),
        }
        if self.expect_state:
            self.start["checkpoint"] = snapshot.compare_with_checkpoint(network, self.expect_state)
        if self.expect_backbone:
            names = list(self.start["backbone"])
            self.start["pretrained"] = snapshot.compare_with_checkpoint(
                network, self.expect_backbone, names
            )
        self._reset_cuda_peak()

    def _sync(self) -> None:
        if self.network is not None and self.start.get("device", "cpu").startswith("cuda"):
            import torch

            torch.cuda.synchronize()

    def _reset_cuda_peak(self) -> None:
        if self.start.get("device", "cpu").startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats()

    # --- result ------------------------------------------------------------------------------
    def finish(self) -> dict:
        """Close the last step and compare the end state with the start; a JSON-ready dict."""
        self._end_step()
        record = {
            "backbone_attrs": list(self.backbone_attrs),
            "steps": self.steps,
            "memory": self._memory(),
        }
        if self.network is None:
            record["error"] = (
                "no training step was observed (no forward call in training mode with gradients on)"
            )
            return record
        start = self.start
        record.update({k: start[k] for k in ("device", "census", "untrained_batchnorm")})
        record.update({k: start[k] for k in ("checkpoint", "pretrained") if k in start})
        end_backbone = snapshot.backbone_tensors(self.network, self.backbone_attrs)
        record["backbone_buffers"] = snapshot.compare_tensors(
            _only(start["backbone"], snapshot.BN_BUFFERS), end_backbone
        )
        record["backbone_affine"] = snapshot.compare_tensors(
            _only(start["backbone"], snapshot.AFFINE), end_backbone
        )
        record["groupnorm_change"] = self._groupnorm_change()
        return record

    def _groupnorm_change(self) -> dict:
        """Per GroupNorm layer: changed, or unchanged; layers whose parameters got no gradient are listed apart."""
        start = self.start["groupnorm"]
        end = snapshot.groupnorm_tensors(self.network)
        diff = snapshot.compare_tensors(start, end)
        grads = {
            f"{path}.{leaf}": getattr(m, leaf).grad is not None
            for path, m in self.network.named_modules()
            for leaf in snapshot.AFFINE
            if f"{path}.{leaf}" in start
        }
        layers = sorted({name.rpartition(".")[0] for name in start})
        changed = sorted({name.rpartition(".")[0] for name in diff["changed"]})
        no_grad = [
            layer
            for layer in layers
            if layer not in changed
            and not any(grads.get(f"{layer}.{leaf}") for leaf in snapshot.AFFINE)
        ]
        unchanged = [layer for layer in layers if layer not in changed and layer not in no_grad]
        return {
            "layers": len(layers),
            "changed": changed,
            "unchanged": unchanged,
            "no_grad": no_grad,
            "max_abs_change": diff["max_abs_change"],
        }

    def _memory(self) -> dict:
        try:
            import resource  # POSIX only

            peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        except ImportError:
            peak_rss = None
        memory = {"peak_rss_bytes": peak_rss, "peak_cuda_bytes": None}
        if self.start.get("device", "cpu").startswith("cuda"):
            import torch

            memory["peak_cuda_bytes"] = int(torch.cuda.max_memory_allocated())
        return memory


def _only(tensors: dict, leaves) -> dict:
    return {name: t for name, t in tensors.items() if name.rpartition(".")[2] in leaves}
