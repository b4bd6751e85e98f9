"""verify without --input-shape: the inputs read off the model (fixtures/verify/shape_models.py).

Every expected shape is read off the fixture by hand: PairNet's forward takes image and previous
(scale has a default, *extra/**options are not required) and its first convolution,
backbone.conv1, takes 5 channels; Fixed128Net's stride-32 convolution feeds a Linear over a 4x4
map, so only 128 runs; FramesNet folds 3 stacked RGB frames into the batch before a 3-channel stem.
"""

from __future__ import annotations

import json

import pytest
from conftest import FIXTURES, run_cli

torch = pytest.importorskip("torch")

TOYS = FIXTURES / "verify"


def _verify(model, *args):
    result = run_cli(
        ["verify", "--path", TOYS, "--device", "cpu", "--model", f"shape_models:{model}", *args]
    )
    return result


def _json(model, *args):
    result = _verify(model, "--steps", "2", "--format", "json", *args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    return document, {c["name"]: c for c in document["sections"][0]["checks"]}


def test_a_forward_of_two_tensors_gets_two_inputs():
    document, checks = _json("pair_net")
    assert document["input_shapes"] == [[1, 5, 64, 64], [1, 5, 64, 64]]
    assert document["input_shapes_inferred"] is True
    assert checks["input-shape"]["status"] == "info"
    assert checks["input-shape"]["value"] == (
        "input 1,5,64,64 1,5,64,64 inferred: forward() takes 2 tensors, the first convolution "
        "backbone.conv1 takes 5 channels, 64 is the smallest size of 64,128,256,512 that runs; "
        "give --input-shape to choose"
    )
    assert document["sections"][0]["title"].endswith("input 1,5,64,64 1,5,64,64")
    assert document["ok"]


def test_a_model_that_fails_at_64_runs_at_128_and_measures_there_too():
    document, checks = _json("fixed_128_net")
    assert document["input_shapes"] == [[1, 3, 128, 128]]
    assert checks["input-shape"]["data"] == {
        "shapes": [[1, 3, 128, 128]],
        "forward_tensors": 1,
        "first_convolution": "backbone.0",
        "channels": 3,
        "size": 128,
        "stack": 1,
    }
    # the train/eval gap and the loss spread ran on the same (bs=1) input: at 64 they could not
    assert checks["train-eval-gap"]["passed"] and "converted 0" in checks["train-eval-gap"]["value"]
    assert document["ok"]


def test_given_shapes_are_used_as_given():
    document, checks = _json("pair_net", "--input-shape", "1,5,8,8", "--input-shape", "1,5,8,8")
    assert document["input_shapes"] == [[1, 5, 8, 8], [1, 5, 8, 8]]
    assert document["input_shapes_inferred"] is False
    assert "input-shape" not in checks


def test_no_convolution_is_one_line_exit_2():
    result = _verify("no_conv_net")
    assert result.exit_code == 2
    assert result.stderr == (
        "bn2gn: error: shape_models:no_conv_net(): no convolution in the model to read the input "
        "channels from; give --input-shape 1,C,H,W (one per forward argument, in order)\n"
    )


def test_no_size_that_runs_is_one_line_naming_the_error():
    result = _verify("never_runs")
    assert result.exit_code == 2
    assert result.stderr == (
        "bn2gn: error: shape_models:never_runs(): forward() on 1 input(s) of 3 channels (the "
        "first convolution backbone.0) ran at none of the sizes 64,128,256,512, nor with 2 to 4 "
        "times as many channels (at 512: ValueError: this model needs its targets); give "
        "--input-shape 1,C,H,W (one per forward argument, in order)\n"
    )


def test_a_training_step_failing_on_an_inferred_input_does_not_name_it_as_given():
    # PooledNet's BatchNorm1d sees one value per channel at batch size 1: eval mode runs (so 64 is
    # inferred), training mode does not
    result = _verify("pooled_net")
    assert result.exit_code == 2
    assert result.stderr == (
        "bn2gn: error: shape_models:pooled_net(): forward(input 1,3,64,64 inferred) raised "
        "ValueError: Expected more than 1 value per channel when training, got input size "
        "torch.Size([1, 4]); that shape runs in eval mode, not in training mode: give the shape "
        "the model trains on with --input-shape N,C,H,W (one per forward argument, in order)\n"
    )


def test_a_training_step_failing_on_a_given_input_names_the_option():
    result = _verify("pooled_net", "--input-shape", "1,3,8,8")
    assert result.exit_code == 2
    assert result.stderr == (
        "bn2gn: error: shape_models:pooled_net(): forward(--input-shape 1,3,8,8) raised "
        "ValueError: Expected more than 1 value per channel when training, got input size "
        "torch.Size([1, 4]); check --input-shape (one per forward argument, in order)\n"
    )


def test_frames_stacked_on_the_channels_are_found():
    document, checks = _json("frames_net")
    assert document["input_shapes"] == [[1, 9, 64, 64]]
    assert checks["input-shape"]["value"] == (
        "input 1,9,64,64 inferred: forward() takes 1 tensor, the first convolution "
        "backbone.conv1 takes 3 channels, which ran at none of the sizes 64,128,256,512, and 9 "
        "(3 x 3, frames stacked on the channel axis) run, 64 is the smallest size of "
        "64,128,256,512 that runs; give --input-shape to choose"
    )


@pytest.mark.parametrize(
    "model, shape", [("signal_net", [1, 2, 64]), ("volume_net", [1, 1, 64, 64, 64])]
)
def test_the_convolution_gives_the_rank(model, shape):
    document, _ = _json(model)
    assert document["input_shapes"] == [shape]


def _shape_models():
    import importlib.util

    spec = importlib.util.spec_from_file_location("shape_models_t", TOYS / "shape_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tries_leave_statistics_and_each_modules_training_flag_alone():
    from bn2gn.verify.input_shape import infer_inputs

    models = _shape_models()
    model = models.fixed_128_net()  # 64 fails, 128 runs: two forwards
    model.backbone[1].eval()  # a mix of modes, as a freeze leaves them
    modes = {name: m.training for name, m in model.named_modules()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inferred = infer_inputs(model, "cpu", "m")
    assert inferred.shapes == ((1, 3, 128, 128),)
    assert {name: m.training for name, m in model.named_modules()} == modes
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # num_batches_tracked too
