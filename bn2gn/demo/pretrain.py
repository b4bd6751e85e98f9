"""Demo step 4: a "pretrained" BatchNorm checkpoint built from the ORIGINAL fixture model.

    cd ORIGINAL_FIXTURE && python -m bn2gn.demo.pretrain --arch res_18 --out-dir DIR [--input-size 32]

Real pre-training leaves non-trivial BatchNorm statistics and affine parameters; here a few
forward passes in training mode at batch size 4 over synthetic clips set every BatchNorm that the
forward pass reaches to the exact average of its batch statistics (momentum None), and those
layers get perturbed weight/bias. Layers the forward pass never reaches keep their defaults, so
PoseResNet's unused ``base_layer`` stem stays untrained and the demo's warning fires for it.
Saved CenterNet-style as ``{'epoch', 'state_dict'}``; dla_34's keys carry DataParallel's
``module.`` prefix, as a checkpoint trained on several GPUs would. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

HEADS = {"hm": 1, "wh": 2, "reg": 2}
HEAD_CONV = 48
FRAMES = 3
PASSES = 3
BATCH = 4
PREFIXED_ARCHS = ("dla_34",)


def build_pretrained(arch: str, input_size: int, seed: int):
    """The original model with trained-looking BatchNorm; returns (model, names of layers it trained)."""
    import torch
    from lib.datasets.synthetic import SyntheticClips
    from lib.models.model import create_model
    from torch.nn.modules.batchnorm import _BatchNorm

    torch.manual_seed(seed)
    model = create_model(arch, HEADS, HEAD_CONV, FRAMES)
    norms = {name: m for name, m in model.named_modules() if isinstance(m, _BatchNorm)}
    momenta = {name: m.momentum for name, m in norms.items()}
    for module in norms.values():
        module.momentum = None  # cumulative average: the statistics of exactly these batches
    data = SyntheticClips(
        num_samples=PASSES * BATCH,
        frames=FRAMES,
        input_h=input_size,
        input_w=input_size,
        seed=seed + 1,
    )
    model.train()
    with torch.no_grad():
        for start in range(0, PASSES * BATCH, BATCH):
            model(torch.stack([data[i]["input"] for i in range(start, start + BATCH)]))
    generator = torch.Generator().manual_seed(seed + 2)
    trained = []
    for name, module in norms.items():
        module.momentum = momenta[name]
        if int(module.num_batches_tracked) > 0 and module.affine:
            trained.append(name)
            with torch.no_grad():
                module.weight.mul_(1 + 0.1 * torch.randn(module.weight.shape, generator=generator))
                module.bias.add_(0.05 * torch.randn(module.bias.shape, generator=generator))
    return model.eval(), trained


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bn2gn.demo.pretrain")
    parser.add_argument("--arch", action="append", required=True)
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    import torch

    sys.path.insert(0, ".")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "cuda_available": torch.cuda.is_available(),
        "torch": torch.__version__,
        "checkpoints": {},
    }
    for arch in args.arch:
        model, trained = build_pretrained(arch, args.input_size, args.seed)
        prefix = "module." if arch in PREFIXED_ARCHS else ""
        state = {prefix + k: v for k, v in model.state_dict().items()}
        path = args.out_dir / f"pretrained_{arch}.pth"
        torch.save({"epoch": 70, "state_dict": state}, path)
        result["checkpoints"][arch] = {
            "path": str(path),
            "prefix": prefix,
            "trained_batchnorm": len(trained),
            "tensors": len(state),
        }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
