"""patch-trainer's pre-filter (text, then ``ast``) never drops a file its LibCST recognisers would plan.

"Would plan" means the full recognisers, run without the pre-filter, find training code (an
optimizer construction, a ``.train()`` switch or a freeze): they do not answer NotTrainingCode.
Checked on generated train scripts in every spelling the recognisers accept (aliases, comments,
line breaks and continuations between the tokens) and on every .py file of the fixtures; the
slow corpus test does the same over the installed torch package.
"""

from __future__ import annotations

from pathlib import Path

from conftest import FIXTURES, recognised
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from libcst import ParserSyntaxError

from bn2gn.core.errors import SourceError
from bn2gn.source.patch_trainer import TrainerOptions
from bn2gn.source.support.recognise import may_plan, text_may_plan

# (import line, the expression that names an optimizer class under it)
IMPORTS = [
    ("import torch", "torch{g}.{g}optim{g}.{g}SGD"),
    ("import torch as T", "T{g}.{g}optim{g}.{g}Adam"),
    ("import torch.optim as O", "O{g}.{g}AdamW"),
    ("import os, torch.optim as O", "O{g}.{g}RMSprop"),
    ("from torch import optim", "optim{g}.{g}SGD"),
    ("from torch import optim as O", "O{g}.{g}SGD"),
    ("from torch import (nn,  # layers\n    optim as O)", "O{g}.{g}Adam"),
    ("from torch import nn, \\\n    optim as O", "O{g}.{g}Adam"),
    ("from torch.optim import SGD", "SGD"),
    ("from torch.optim import SGD as S", "S"),
    ("from torch.optim import *", "Adagrad"),
    ("import torch.optim", "torch{g}.{g}optim{g}.{g}LBFGS"),
]
GAPS = ["", " ", "\n", "  # note\n", " \\\n"]
TRAIN_CALLS = [
    "({r}){g}.{g}train{g}({g})",  # a parenthesised receiver is still a name for ast
    "{r}{g}.{g}train{g}({g})",
    "{r}{g}.{g}train{g}(True)",
    "{r}{g}.{g}train{g}(mode{g}={g}flag)",
    "{r}{g}.{g}train{g}(0)",
    "{r}{g}.{g}train{g}(False)",
    "{r}.train(epoch)",
]
BUILDERS = [
    "build_optimizer{g}(cfg, model)",
    "runner{g}.{g}get_optimizer{g}(model)",
    "create_optimizer(model)",
    "make_opt{g}(model)",
    "pkg.make_opt(net)",
]


@st.composite
def train_script(draw):
    """A small train script: an import, then an optimizer / .train() / builder / freeze in some scope."""
    gap = lambda: draw(st.sampled_from(GAPS))  # noqa: E731
    kind = draw(st.sampled_from(["direct", "train", "builder", "freeze", "none"]))
    imported, name = draw(st.sampled_from(IMPORTS))
    receiver = draw(st.sampled_from(["model", "self.model", "net"]))
    if kind == "direct":
        call = name.format(g=gap()) + gap() + f"({receiver}.parameters(), lr=0.1)"
    elif kind == "train":
        call = draw(st.sampled_from(TRAIN_CALLS)).format(r=receiver, g=gap())
    elif kind == "builder":
        call = draw(st.sampled_from(BUILDERS)).format(g=gap())
    elif kind == "freeze":
        call = draw(
            st.sampled_from(["freeze_backbone_bn(model)", "utils.keep_backbone_bn_eval(model)"])
        )
    else:
        call = draw(
            st.sampled_from(
                [
                    "optimizer_state(model)",
                    "model.pretrain()",
                    "print('optim. SGD(')",
                    "super().train(flag)",
                    "super(Trainer, self){g}.{g}train(flag)",
                ]
            )
        ).format(g=gap())
    statement = f"result = ({call})"
    scope = draw(st.sampled_from(["module", "function", "method", "nested", "lambda"]))
    body = {
        "module": f"{statement}\n",
        "function": f"def main(model, cfg, flag, runner, epoch):\n    {statement}\n",
        "method": f"class Trainer:\n    def run(self, cfg, flag, epoch):\n        {statement}\n",
        "nested": f"def main(model, cfg):\n    def inner(flag, net, runner, epoch):\n        {statement}\n"
        f"    return inner\n",
        "lambda": f"make = lambda model, cfg, flag, net, runner, epoch: ({call})\n",
    }[scope]
    local = draw(st.booleans()) and scope == "function" and "*" not in imported
    if local:  # the import inside the function
        body = body.replace("):\n", "):\n    " + imported.replace("\n", "\n    ") + "\n", 1)
        return body, kind
    return f"{imported}\n\n\n{body}", kind


@settings(
    max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(train_script(), st.sampled_from([(), ("make_opt",), ("pkg.make_opt",)]))
def test_prefilter_admits_every_generated_script_the_recognisers_plan(script, extra):
    text, kind = script
    compile(text, "<generated>", "exec")  # the generator writes valid Python
    options = TrainerOptions(optimizer_calls=extra)
    if recognised(Path("gen.py"), text, options):
        assert text_may_plan(text, extra), text
        assert may_plan(text, extra), text
    elif kind == "direct":
        raise AssertionError(f"the recognisers missed a direct optimizer construction:\n{text}")


def test_prefilter_rejects_text_without_training_code():
    for text in [
        "x = optimizer_config\n",
        "def train_step(batch):\n    return batch\n",
        "model.pretrain()\n",
        "# torch.optim.SGD(model.parameters())\nimport torch\n",
        "s = 'model.train()'\n",
    ]:
        assert not may_plan(text), text


def test_text_rules_out_parent_train_calls_and_other_optim_packages():
    """A module's ``train`` override calling its parent's, and ``mmengine.optim``, need no parse."""
    for text in [
        "class Net:\n    def train(self, mode=True):\n        super().train(mode)\n",
        "class Net:\n    def train(self, mode=True):\n        super(Net, self) . train(mode)\n",
        "from mmengine.optim import OptimWrapper\n",
    ]:
        assert not text_may_plan(text), text
        assert not may_plan(text), text


def test_prefilter_keeps_calls_on_names_and_torch_optim_imports():
    for text in [
        "(model).train()\n",
        "super_model.train()\n",
        "from torch . optim import SGD\nopt = SGD(params)\n",
        "from torch.optim import (\n    Adam,\n)\nopt = Adam(params)\n",
    ]:
        assert text_may_plan(text), text
        assert may_plan(text), text


def test_each_text_test_admits_on_its_own():
    """The cheap searches in front of the patterns (the helpers' shared ``backbone_bn``, ``optim``)
    keep nothing out that a pattern admits."""
    from bn2gn.source.support import recognise
    from bn2gn.source.support.names import FREEZE, KEEP

    assert recognise._HELPERS_SPELL in FREEZE and recognise._HELPERS_SPELL in KEEP
    for text, extra in [
        ("freeze_backbone_bn(model)\n", ()),
        ("keep_backbone_bn_eval(model)\n", ()),
        ("from torch.optim import SGD\n", ()),
        ("import torch.optim as O\n", ()),
        ("o = build_optimizer(cfg)\n", ()),
        ("o = make(p)\n", ("make",)),  # a builder named by the user, no "optim" anywhere
        ("o = pkg.make_opt(p)\n", ("pkg.make_opt",)),
    ]:
        assert text_may_plan(text, extra), text
    assert not text_may_plan("o = build_optimizer\nmake(p)\n")


def test_prefilter_admits_every_fixture_the_recognisers_plan():
    planned = 0
    for path in sorted(FIXTURES.rglob("*.py")):
        text = path.read_bytes().decode("utf-8", "replace")
        for options in (
            TrainerOptions(),
            TrainerOptions(optimizer_calls=("make_optimizer", "build_optim")),
        ):
            try:
                found = recognised(path, text, options)
            except (
                SyntaxError,
                ValueError,
                SourceError,
                ParserSyntaxError,
            ):  # the unparsable fixtures
                continue
            if found:
                planned += 1
                assert may_plan(text, options.optimizer_calls), path
    assert planned >= 20  # the patch_trainer fixtures and the CenterNet repository's train scripts
