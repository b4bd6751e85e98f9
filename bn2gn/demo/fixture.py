"""What the demo knows about the bundled fixture repository, and the work directory it copies it into."""

from __future__ import annotations

import shutil
from pathlib import Path

import bn2gn

from ..core.errors import EXIT_USAGE, Bn2gnError, Message, Opt

FIXTURE = "centernet_mini"
ARCHS = ("res_18", "dla_34")
MODELS = "lib/models"
TRAINER_FILES = ("train.py", "train_satmtb.py", "lib/Trainer/base_trainer.py")
OWN_DIRS = ("converted", "original", "checkpoints", "runs", "logs")
FACTORY = "lib.models.model:create_model"
#: The factory arguments train.py uses (lib/opts.py defaults), for remap-ckpt --model.
MODEL_ARGS = ("heads={'hm': 1, 'wh': 2, 'reg': 2}", "head_conv=48", "frames=3")


def default_fixtures() -> Path:
    return Path(bn2gn.__file__).resolve().parents[1] / "fixtures" / FIXTURE


def prepare_workdir(fixtures: Path, workdir: Path, force: bool) -> None:
    """Check the fixture repository, refuse a non-empty work directory unless ``force``, copy the fixture twice."""
    if not (fixtures / "train.py").is_file() or not (fixtures / MODELS).is_dir():
        raise Bn2gnError(
            Message(
                f"fixture repository not found at {fixtures} (need train.py and {MODELS}/); pass ",
                Opt("fixtures", "DIR"),
                " pointing at bn2gn's fixtures/centernet_mini",
            ),
            EXIT_USAGE,
        )
    if workdir.exists() and not workdir.is_dir():
        raise Bn2gnError(
            Message(Opt("workdir", workdir), ": exists and is not a directory"), EXIT_USAGE
        )
    if workdir.is_dir() and any(workdir.iterdir()):
        if not force:
            raise Bn2gnError(
                Message(
                    Opt("workdir", workdir),
                    " is not empty; choose an empty or new folder, or add ",
                    Opt("force"),
                    f" (replaces the demo's own folders there: {', '.join(OWN_DIRS)})",
                ),
                EXIT_USAGE,
            )
        for name in OWN_DIRS:
            if (workdir / name).is_dir():
                shutil.rmtree(workdir / name)
    workdir.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "exp")
    for name in ("converted", "original"):
        shutil.copytree(fixtures, workdir / name, ignore=ignore)
