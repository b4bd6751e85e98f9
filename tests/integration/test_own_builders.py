"""The repository's own optimizer builders (``optimizer = NAME(model, ...)``): which calls are
planned as optimizer sites, which get a note, which are none; and the pre-filter admits every file
with a planned one. Each snippet and its expected verdict is written by hand."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bn2gn.source.rules.bn2gn201_freeze_before_optimizer import (
    collect_optimizer_names,
    find_optimizer_sites,
    undecided_builders,
)
from bn2gn.source.support.recognise import may_plan
from bn2gn.source.support.trainer_facts import Facts

HEAD = "import torch\nfrom det.solver import make_solver, build_one_cycle_optimizer\n\n\n"


def _plan(body: str):
    text = HEAD + body
    facts = Facts(text, ast.parse(text))
    names = collect_optimizer_names(facts)
    sites = find_optimizer_sites(facts, names)
    notes = [message for _, message in undecided_builders(facts, names, sites)]
    return text, [(s.line, s.name, s.model) for s in sites], notes


@pytest.mark.parametrize(
    "body, sites",
    [
        (
            "def main(model, cfg):\n    optimizer = build_one_cycle_optimizer(model, cfg)\n",
            [(6, "build_one_cycle_optimizer", "model")],
        ),
        (
            "def main(net, cfg):\n    self_optim = make_solver(cfg, net=net)\n",
            [(6, "make_solver", "net")],
        ),
        (
            "def main(self, cfg):\n    self.optimizer = make_solver(self.model.parameters(), cfg)\n",
            [(6, "make_solver", "self.model")],
        ),
        (
            "def main(model, cfg):\n    optimizer_g = (make_solver(\n        model, cfg))\n",
            [(6, "make_solver", "model")],
        ),
    ],
)
def test_own_builders_given_the_model_are_optimizer_sites(body, sites):
    text, found, notes = _plan(body)
    assert found == sites and notes == []
    assert may_plan(text)


@pytest.mark.parametrize(
    "body",
    [
        # a wrapper given the optimizer
        "def main(model, optimizer):\n    optimizer = make_solver(model, optimizer)\n",
        # an OpenMMLab-style config dict
        "def main(model):\n    optim_wrapper = dict(type='OptimWrapper', model=model)\n",
        # not kept under an optimizer's name
        "def main(model, cfg):\n    solver = make_solver(model, cfg)\n",
        # a function of the file: its body is planned instead
        "def make(model):\n    return model\n\n\ndef main(model):\n    optimizer = make(model)\n",
    ],
)
def test_other_assignments_are_no_sites(body):
    _, found, notes = _plan(body)
    assert found == [] and notes == []


def test_a_builder_given_no_model_is_named_in_a_note():
    _, found, notes = _plan(
        "def main(model, cfg):\n    groups = list(model.children())\n"
        "    optimizer = build_one_cycle_optimizer(groups, cfg)\n"
    )
    assert found == []
    assert notes == [
        "optimizer = build_one_cycle_optimizer(...) may build the optimizer, but bn2gn cannot tell "
        "which model it trains, so nothing was inserted before it; if it builds the optimizer, "
        "name it with optimizer_call=build_one_cycle_optimizer (and the model, if bn2gn then asks)"
    ]


def test_patch_trainer_names_the_flag(tmp_path):
    from conftest import run_cli

    (tmp_path / "train.py").write_text(
        HEAD + "def main(model, cfg):\n    model.train()\n"
        "    optimizer = build_one_cycle_optimizer([model.head], cfg)\n"
    )
    result = run_cli(["patch-trainer", "train.py"], cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert (
        "note: train.py:7: optimizer = build_one_cycle_optimizer(...) may build the optimizer"
        in result.output
    )
    assert "--optimizer-call build_one_cycle_optimizer" in result.output
    assert Path(tmp_path / "train.py").read_text().count("freeze_backbone_bn(") == 0
