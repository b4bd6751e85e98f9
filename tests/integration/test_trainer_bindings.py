"""BN2GN201 inserts ``freeze_backbone_bn(NAME)`` only where NAME is bound.

An optimizer built inside a lambda or a comprehension trains a model named by the lambda's
parameter or the loop variable, which does not exist before the statement. A lambda assigned to a
name is patched where it is called, with the argument the call passes; otherwise the file is
refused with one line asking for ``--model-var`` (exit 2, file unchanged). A ``--model-var`` that
is not bound at the insertion point is refused the same way.
"""

from __future__ import annotations

import textwrap

import pytest
from conftest import run_cli

LAMBDA_AT_MODULE_LEVEL = """\
import torch

make_opt = lambda m: torch.optim.SGD(m.parameters(), lr=0.1)
"""

COMPREHENSION = """\
import torch


def build(models):
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1) for m in models]
    return optimizers
"""

LAMBDA_CALLED = """\
import torch

make_opt = lambda m: torch.optim.SGD(m.parameters(), lr=0.1)


def build(net):
    opt = make_opt(net)
    return opt
"""


def _patch(tmp_path, text, *args):
    path = tmp_path / "train.py"
    path.write_text(text)
    return path, run_cli(["patch-trainer", path.name, *args], cwd=tmp_path)


@pytest.mark.parametrize(
    "text, fragment",
    [
        (
            LAMBDA_AT_MODULE_LEVEL,
            "train.py:3: m is bound only inside the lambda that builds the optimizer, "
            "not before line 3 (in <module>)",
        ),
        (
            COMPREHENSION,
            "train.py:5: m is bound only inside the comprehension that builds the optimizer, "
            "not before line 5 (in build)",
        ),
    ],
    ids=["lambda", "comprehension"],
)
def test_model_bound_only_inside_the_statement_is_refused(tmp_path, text, fragment):
    path, result = _patch(tmp_path, text)
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr and "--model-var NAME" in result.stderr
    assert "Traceback" not in result.output
    assert path.read_text() == text


def test_model_var_that_is_not_bound_there_is_refused(tmp_path):
    path, result = _patch(tmp_path, LAMBDA_AT_MODULE_LEVEL, "--model-var", "model")
    assert result.exit_code == 2, result.output
    assert "--model-var model: model is not bound before line 3 (in <module>)" in result.stderr
    assert path.read_text() == LAMBDA_AT_MODULE_LEVEL


def test_model_var_bound_in_the_function_is_used(tmp_path):
    text = COMPREHENSION.replace("def build(models):", "def build(models, model):")
    path, result = _patch(tmp_path, text, "--model-var", "model")
    assert result.exit_code == 0, result.output
    assert "    frozen_count = freeze_backbone_bn(model)\n" in path.read_text()


def test_lambda_is_patched_where_it_is_called_with_the_argument_passed(tmp_path):
    torch = pytest.importorskip("torch")
    path, result = _patch(tmp_path, LAMBDA_CALLED)
    assert result.exit_code == 0, result.output
    patched = path.read_text()
    assert (
        textwrap.dedent(
            """\
            def build(net):
                frozen_count = freeze_backbone_bn(net)
                print(f"Frozen backbone BatchNorm modules: {frozen_count}")
                opt = make_opt(net)
            """
        )
        in patched
    )
    namespace: dict = {}
    exec(compile(patched, str(path), "exec"), namespace)  # the patched script runs
    net = torch.nn.Module()
    net.backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    net.head = torch.nn.Conv2d(4, 1, 1)
    namespace["build"](net)
    assert net.backbone[1].weight.requires_grad is False and not net.backbone[1].training
    again = run_cli(["patch-trainer", path.name, "--check"], cwd=tmp_path)
    assert again.exit_code == 0, again.output


ONE_LINE_SUITES = """\
import torch


def build(model, adam):
    if adam: optimizer = torch.optim.Adam(model.parameters())
    else: optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return optimizer
"""


def test_one_line_suites_get_one_freeze_each_and_a_second_run_changes_nothing(tmp_path):
    path, result = _patch(tmp_path, ONE_LINE_SUITES)
    assert result.exit_code == 0, result.output
    first = path.read_text()
    assert first.count("frozen_count = freeze_backbone_bn(model)") == 2
    check = run_cli(["patch-trainer", path.name, "--check"], cwd=tmp_path)
    assert check.exit_code == 0, check.output
    again = run_cli(["patch-trainer", path.name], cwd=tmp_path)
    assert again.exit_code == 0 and path.read_text() == first


@pytest.mark.parametrize(
    "text",
    [
        "import torch\nfrom models import *\n\noptimizer = torch.optim.SGD(model.parameters())\n",
        "import torch\n\nfor model in [torch.nn.Linear(1, 1)]:\n"
        "    optimizer = torch.optim.SGD(model.parameters())\n",
        "import torch\n\n\ndef build(x):\n    with x as model:\n"
        "        return torch.optim.SGD(model.parameters())\n",
    ],
    ids=["star-import", "for-target", "with-target"],
)
def test_names_bound_other_ways_are_patched(tmp_path, text):
    path, result = _patch(tmp_path, text)
    assert result.exit_code == 0, result.output
    assert "frozen_count = freeze_backbone_bn(model)" in path.read_text()
