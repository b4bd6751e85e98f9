"""What the migration is for, measured on the user's model: the original against the converted one.

At batch size 1, BatchNorm in training mode normalises with the statistics of one sample, so a
head that trains that way computes something else in eval mode. ``train_eval_gap`` measures it:
the relative difference ``|train - eval| / |eval|`` over every floating-point output tensor, with
the backbone BatchNorm held in eval mode the way the converted model's trainer holds it. The
converted model's gap must be about 0 (GroupNorm does not depend on the mode); the original's is
what the migration removes. ``loss_spread`` trains a copy for N steps on the same input and
reports how much the loss moves.

The original model is the pre-migration source: ``--before REV``, by default ``HEAD`` when the
migration is not committed yet, exported with ``git archive`` into a temporary folder and built
with the same spec there.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

#: Largest train/eval gap of the converted model still counted as none (float rounding).
GAP_TOLERANCE = 1e-4


@dataclasses.dataclass(frozen=True)
class Effects:
    """Measurements of one model at batch size 1."""

    gap: float
    losses: Tuple[float, ...]

    @property
    def spread(self) -> float:
        return max(self.losses) - min(self.losses) if self.losses else 0.0

    def as_dict(self) -> dict:
        return {"train_eval_gap": self.gap, "losses": list(self.losses), "loss_range": self.spread}


def flat_outputs(output, output_tensors: Callable):
    import torch

    tensors = [
        t.detach().float().reshape(-1) for t in output_tensors(output) if t.is_floating_point()
    ]
    return torch.cat(tensors) if tensors else torch.zeros(0)


def train_eval_gap(model, inputs, prepare: Callable, output_tensors: Callable) -> float:
    """``|train - eval| / |eval|`` of the outputs on ``inputs``; ``prepare(model)`` runs after
    ``.train()`` (the converted model's keep-eval). The model's state is restored afterwards."""
    import torch

    state = copy.deepcopy(model.state_dict())
    mode = model.training
    try:
        with torch.no_grad():
            model.eval()
            evaluated = flat_outputs(model(*inputs), output_tensors)
            model.train()
            prepare(model)
            trained = flat_outputs(model(*inputs), output_tensors)
    finally:
        model.load_state_dict(state)
        model.train(mode)
    scale = float(evaluated.norm())
    return float((trained - evaluated).norm()) / scale if scale else float((trained).norm())


def loss_run(
    model, inputs, prepare: Callable, steps: int, lr: float, generic_loss: Callable
) -> Tuple[float, ...]:
    """Losses of ``steps`` Adam steps of a copy of ``model`` on the same ``inputs``."""
    import torch

    trained = copy.deepcopy(model)
    optimizer = torch.optim.Adam([p for p in trained.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        trained.train()
        prepare(trained)
        loss = generic_loss(trained(*inputs))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return tuple(losses)


def measure(model, inputs, prepare: Callable, steps: int, lr: float, loss: Tuple) -> Effects:
    """``loss``: (the loss of an output, the tensors of an output), as verify computes them."""
    generic_loss, output_tensors = loss
    return Effects(
        train_eval_gap(model, inputs, prepare, output_tensors),
        loss_run(model, inputs, prepare, steps, lr, generic_loss),
    )


# -- the original model from git --------------------------------------------------------------------
class NoOriginal(Exception):
    """Why the original model cannot be built: the message is shown as information."""


def _git(root: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode:
        raise NoOriginal(
            result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "git failed"
        )
    return result.stdout


def original_revision(roots: Tuple[Path, ...], before: Optional[str]) -> Tuple[Path, str, str]:
    """(repository root, revision, why that revision) for the pre-migration source."""
    if shutil.which("git") is None:
        raise NoOriginal("git is not installed, so the pre-migration source cannot be read")
    first = roots[0] if roots[0].is_dir() else roots[0].parent
    try:
        top = Path(_git(first, "rev-parse", "--show-toplevel").strip())
    except NoOriginal:
        raise NoOriginal(
            "no git repository here, so the pre-migration source is unknown; commit the original "
            "first to measure it"
        ) from None
    if before:
        _git(top, "rev-parse", "--verify", f"{before}^{{commit}}")
        return top, before, f"git {before} (given)"
    try:
        _git(top, "rev-parse", "--verify", "HEAD")
    except NoOriginal:
        raise NoOriginal("the git repository has no commit yet, so there is no original") from None
    changed = _git(top, "status", "--porcelain", "--", *[str(r) for r in roots]).strip()
    if not changed:
        raise NoOriginal(
            "nothing differs from git HEAD (the migration is committed, or not done): name the "
            "pre-migration commit to measure it against"
        )
    return top, "HEAD", "git HEAD (the migration is not committed yet)"


@contextlib.contextmanager
def exported(top: Path, revision: str) -> Iterator[Path]:
    """The tracked files of ``revision`` in a temporary folder, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="bn2gn-original-"))
    try:
        archive = folder / "tree.tar"
        with open(archive, "wb") as handle:
            result = subprocess.run(
                ["git", "-C", str(top), "archive", "--format", "tar", revision],
                stdout=handle,
                stderr=subprocess.PIPE,
                timeout=300,
                check=False,
            )
        if result.returncode:
            raise NoOriginal(f"git archive {revision} failed")
        tree = folder / "tree"
        with tarfile.open(archive) as tar:
            tar.extractall(tree, filter="data")
        archive.unlink()
        yield tree
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def moved(path: Path, top: Path, tree: Path) -> Path:
    """``path`` inside the repository at ``top``, at the same place inside ``tree``."""
    try:
        return tree / Path(os.path.realpath(path)).relative_to(os.path.realpath(top))
    except ValueError:
        return path


@contextlib.contextmanager
def working_directory(folder: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old)


def single_sample(shapes) -> List[Tuple[int, ...]]:
    return [(1, *shape[1:]) for shape in shapes]
