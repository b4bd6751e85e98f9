"""`bn2gn verify`: the demo's runtime checks on the user's own converted model, with no data.

Builds the model (``bn2gn.model.spec``), freezes its backbone BatchNorm with the logic injected into
the user's files (``--freeze-from``) or bn2gn's own (``bn2gn.runtime``), then runs N train-mode
steps at the given input shapes on fixed random input, calling ``.train()`` (and the injected
``keep_backbone_bn_eval``) before each step as a trainer does. The loss is the mean, over every
floating-point tensor in the output however nested, of that tensor's mean. The recorder watches
the run exactly as it watches the demo's train script.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import List, Optional, Tuple

from ..core.errors import EXIT_USAGE, Bn2gnError, Message, Opt
from ..decide.backbone import Backbone
from .checks import record_checks
from .freeze_source import FreezeLogic, load_freeze_logic
from .input_shape import InferredInputs, infer_inputs
from .report import FAIL, INFO, PASS, WARN, Check, Section


@dataclasses.dataclass(frozen=True)
class VerifyOptions:
    spec: object  # bn2gn.model.spec.ModelSpec
    #: one shape per forward argument; empty: inferred from the built model (``input_shape.py``)
    input_shapes: Tuple[Tuple[int, ...], ...]
    backbone: Backbone  # the plan's decision (bn2gn.api.Session.backbone)
    steps: int = 5
    device: str = "auto"
    freeze_from: Tuple[Path, ...] = ()
    checkpoint: Optional[Path] = None
    lr: float = 1e-3
    seed: int = 0
    #: measure the original (pre-migration) model against the converted one at batch size 1
    compare: bool = True
    before: Optional[str] = None  # the pre-migration git revision (default HEAD when uncommitted)


def parse_input_shape(text: str) -> Tuple[int, ...]:
    """``1,3,H,W`` -> (1, 3, H, W); every size a positive integer."""
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if not shape or any(n <= 0 for n in shape):
        raise Bn2gnError(
            Message(
                Opt("input_shape", repr(text)),
                ": expected positive integers separated by commas, e.g. 1,3,512,512",
            ),
            EXIT_USAGE,
        )
    return shape


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise Bn2gnError(
            Message(
                Opt("device", device),
                ": torch.cuda.is_available() is False here; use ",
                Opt("device", "cpu"),
                " or auto",
            ),
            EXIT_USAGE,
        )
    return device


def output_tensors(output) -> List[object]:
    """Every tensor in a model output: tensors, lists, tuples (named ones too) and dicts, however nested."""
    import torch

    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, Mapping):
        return [t for value in output.values() for t in output_tensors(value)]
    if isinstance(output, (list, tuple)):
        return [t for value in output for t in output_tensors(value)]
    return []


def generic_loss(output):
    """The mean of the per-tensor means of every floating-point tensor in ``output``."""
    import torch

    tensors = [
        t for t in output_tensors(output) if t.is_floating_point() and t.requires_grad and t.numel()
    ]
    if not tensors:
        raise Bn2gnError(
            "the model's output holds no floating-point tensor that requires grad, so there is "
            "nothing to train; verify needs a forward that returns tensors, lists, tuples or dicts",
            EXIT_USAGE,
        )
    return torch.stack([t.float().mean() for t in tensors]).mean()


@dataclasses.dataclass(frozen=True)
class Verified:
    """The report of one verify run, and the input shapes it ran (given or inferred)."""

    section: Section
    input_shapes: Tuple[Tuple[int, ...], ...]
    inferred: Optional[InferredInputs] = None


def run_verify(options: VerifyOptions) -> Verified:
    import torch

    from ..model.spec import build
    from .recorder import Recorder

    device = resolve_device(options.device)
    with contextlib.redirect_stdout(io.StringIO()):  # what the patched files' imports print
        logic = load_freeze_logic(options.freeze_from, options.backbone.spellings)
    torch.manual_seed(options.seed)
    built = build(options.spec)
    model = built.model
    if options.checkpoint is not None:
        _load_checkpoint(model, options.checkpoint)
    model.to(device)
    inferred = None
    if not options.input_shapes:
        # before freezing and training: the tries see the model as it was built
        inferred = infer_inputs(model, device, options.spec.describe())
        options = dataclasses.replace(options, input_shapes=inferred.shapes)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        logic.freeze(model)  # what the user's freeze says goes into the report, not to stderr
    initial = copy.deepcopy(model) if options.compare else None
    optimizer = torch.optim.Adam(model.parameters(), lr=options.lr)
    generator = torch.Generator().manual_seed(options.seed)
    inputs = [torch.randn(shape, generator=generator).to(device) for shape in options.input_shapes]
    recorder = Recorder(options.backbone.spellings, expect_state=options.checkpoint)
    recorder.install()
    try:
        for _ in range(options.steps):
            _train_step(model, logic, optimizer, inputs, options, inferred is not None)
    finally:
        recorder.remove()
    record = recorder.finish()
    shapes = " ".join(",".join(map(str, s)) for s in options.input_shapes)
    section = Section(
        f"{options.spec.describe()} on {device}, {options.steps} steps, input {shapes}"
    )
    if inferred is not None:
        section.checks.append(
            Check("input-shape", INFO, inferred.describe(), data=inferred.as_dict())
        )
    section.checks.append(
        Check("freeze-logic", INFO, logic.describe(), data={"sources": logic.sources})
    )
    section.checks += [
        Check("freeze-warning", WARN, f"freeze_backbone_bn said: {warning.message}")
        for warning in said
    ]
    carried = freeze_backbone_checks(logic, options.backbone)
    checks = record_checks(record, expect_checkpoint=options.checkpoint is not None)
    checks = _blame_the_carried_backbone(checks) if carried else checks
    section.checks += carried + offline_statistics(checks, built.weights, options.checkpoint)
    section.checks += build_checks(built)
    if initial is not None:
        section.checks += effect_checks(initial, logic, options, device)
    return Verified(section, options.input_shapes, inferred)


def _blame_the_carried_backbone(checks: List[Check]) -> List[Check]:
    """The freeze calls are there; what they freeze is not the plan's backbone: the frozen-* checks
    point at freeze-backbone instead of advising calls the user already has."""
    return [
        dataclasses.replace(
            check,
            message="the freeze runs but carries other backbone entries: see freeze-backbone",
        )
        if check.name.startswith(("frozen-", "backbone-")) and not check.passed
        else check
        for check in checks
    ]


#: How verify turns an output into a loss and into tensors; the measurements use the same.
LOSS = (generic_loss, output_tensors)


def effect_checks(
    converted, logic: FreezeLogic, options: VerifyOptions, device: str
) -> List[Check]:
    """The bs=1 train/eval gap and the loss range of the converted model, and of the original."""
    import torch

    from .effects import GAP_TOLERANCE, measure, single_sample

    generator = torch.Generator().manual_seed(options.seed)
    inputs = [
        torch.randn(shape, generator=generator).to(device)
        for shape in single_sample(options.input_shapes)
    ]
    keep = logic.keep if logic.keep is not None else (lambda model: None)
    after = measure(converted, inputs, keep, options.steps, options.lr, LOSS)
    before, origin = _original_effects(options, inputs, device)
    shown = f"{before.gap:.3g}" if before else "not measured"
    gap = Check(
        "train-eval-gap",
        PASS if after.gap <= GAP_TOLERANCE else FAIL,
        f"converted {after.gap:.3g}, original {shown}: relative |train - eval| of the outputs at "
        "batch size 1",
        ""
        if after.gap <= GAP_TOLERANCE
        else "the converted model still computes something else in "
        "training mode at batch size 1 (BatchNorm outside the backbone, Dropout): see "
        "batchnorm-outside-backbone",
        {"converted": after.as_dict(), "original": before.as_dict() if before else None},
    )
    losses = f"converted {_range(after)}" + (f"; original {_range(before)}" if before else "")
    spread = Check(
        "loss-spread", INFO, f"loss over {options.steps} steps on the same input: {losses}"
    )
    return [Check("original-model", INFO, origin), gap, spread]


def _range(effects) -> str:
    return f"range {effects.spread:.3g} ({effects.losses[0]:.4g} -> {effects.losses[-1]:.4g})"


def _original_effects(options: VerifyOptions, inputs, device: str):
    """(Effects of the original model or None, where it came from or why it was not measured)."""
    import torch

    from ..model.spec import build, forget_modules
    from .effects import NoOriginal, exported, measure, moved, original_revision, working_directory

    spec = options.spec
    try:
        top, revision, why = original_revision(spec.roots(), options.before)
        with exported(top, revision) as tree:
            original = dataclasses.replace(
                spec,
                paths=tuple(moved(p, top, tree) for p in spec.paths),
                script=moved(spec.script, top, tree) if spec.script is not None else None,
            )
            folder = moved(Path.cwd(), top, tree)
            forget_modules(spec.roots())
            with working_directory(folder if folder.is_dir() else Path.cwd()):
                torch.manual_seed(options.seed)
                try:
                    model = build(original).model.to(device)
                finally:
                    forget_modules(original.roots())
            effects = measure(model, inputs, lambda m: None, options.steps, options.lr, LOSS)
    except NoOriginal as reason:
        return None, f"original not measured: {reason}"
    except Bn2gnError as error:
        return None, f"original not measured: building it from {revision} failed ({error})"
    return effects, f"original built from {why}, same spec"


def offline_statistics(checks: List[Check], weights, checkpoint) -> List[Check]:
    """Without the pretrained weights (offline, not in the hub cache, no ``--checkpoint``) every
    backbone BatchNorm has its initial statistics by construction: one note says so instead of a
    warning per layer; eval mode, requires_grad and unchanged statistics are still checked."""
    if not weights.missing or checkpoint is not None:
        return checks
    untrained = [c.data.get("layer") for c in checks if c.name == "untrained-statistics"]
    kept = [c for c in checks if c.name != "untrained-statistics"]
    kept.append(
        Check(
            "pretrained-statistics",
            INFO,
            f"pretrained statistics not available offline: {len(weights.missing)} weights URL(s) "
            f"not in the torch hub cache ({', '.join(weights.missing)}); {len(untrained)} backbone "
            "BatchNorm layer(s) keep their initial statistics; checked instead: eval mode, "
            "requires_grad, statistics unchanged by the steps",
            data={"missing": list(weights.missing), "untrained": untrained},
        )
    )
    return kept


def build_checks(built) -> List[Check]:
    """What the build stood in and which weights it asked for, as INFO lines (and JSON data)."""
    checks = [
        Check("stub", INFO, record.describe(), data=record.as_dict()) for record in built.stubs
    ]
    if built.source:
        checks.insert(0, Check("model-source", INFO, built.source))
    if built.auto:
        checks.insert(
            0,
            Check(
                "stub-auto",
                INFO,
                f"{built.auto}: every module the repository could not import was stood in "
                f"({sum(not r.requested for r in built.stubs)} found)",
                data={"reason": built.auto},
            ),
        )
    checks += [
        Check("weights", INFO, f"{url}: served from the torch hub cache ({path})")
        for url, path in built.weights.served
    ]
    return checks


def freeze_backbone_checks(logic: FreezeLogic, backbone: Backbone) -> List[Check]:
    """The freeze the user's files define must carry the plan's backbone; when it carries another,
    the frozen-* checks fail for that reason, not for a missing call."""
    checks = []
    for name, entries in logic.carried().items():
        if entries != backbone.spellings:
            where = logic.sources[name]
            checks.append(
                Check(
                    "freeze-backbone",
                    FAIL,
                    f"{name} in {where} carries the backbone entries {entries}; the plan keeps "
                    f"{backbone.spellings} ({backbone.source})",
                    f"update it: bn2gn patch-trainer {where}",
                    {"carried": list(entries), "planned": list(backbone.spellings)},
                )
            )
    return checks


def _train_step(
    model, logic: FreezeLogic, optimizer, inputs, options: VerifyOptions, inferred: bool = False
) -> None:
    model.train()
    if logic.keep is not None:
        logic.keep(model)
    try:
        output = model(*inputs)
    except Exception as exc:  # noqa: BLE001 - the user's model: summarise, never dump
        lines = str(exc).strip().splitlines()
        raised = f"{type(exc).__name__}: {lines[0] if lines else ''}"
        raise Bn2gnError(
            Message(f"{options.spec.describe()}: ", *_forward_failed(options, inferred, raised)),
            EXIT_USAGE,
        ) from None
    loss = generic_loss(output)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def _forward_failed(options: VerifyOptions, inferred: bool, raised: str) -> list:
    """``forward(INPUTS) raised ...; what to do``: the inputs as the user gave them (``--input-shape
    1,3,64,64``), or, inferred, as verify chose them, which is no option the user passed."""
    shown = [",".join(map(str, s)) for s in options.input_shapes]
    if inferred:
        # the same shape ran in eval mode when it was inferred: training mode is what fails
        return [
            f"forward(input {' '.join(shown)} inferred) raised {raised}; that shape runs in eval "
            "mode, not in training mode: give the shape the model trains on with ",
            Opt("input_shape", "N,C,H,W"),
            " (one per forward argument, in order)",
        ]
    given = [
        part for i, s in enumerate(shown) for part in ((" " if i else ""), Opt("input_shape", s))
    ]
    return [
        "forward(",
        *given,
        f") raised {raised}; check ",
        Opt("input_shape"),
        " (one per forward argument, in order)",
    ]


def _load_checkpoint(model, path: Path) -> None:
    """Load ``--checkpoint`` with strict=False; the checkpoint-loaded check reports what did not match."""
    from ..model.checkpoint_load import model_state_dict

    state = model_state_dict(path)
    current = model.state_dict()
    usable = {
        k: v for k, v in state.items() if k in current and tuple(v.shape) == tuple(current[k].shape)
    }
    model.load_state_dict(usable, strict=False)
