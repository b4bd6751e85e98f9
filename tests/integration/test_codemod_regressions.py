"""Regressions found on real repositories, each through the real CLI.

Expected texts are written by hand from the inputs below.
"""

from __future__ import annotations

import ast

from conftest import run_cli

NET = """

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Conv2d(3, 8, 3)
        self.head = Head(8)
"""


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def _second_run_is_a_no_op(command, path):
    before = path.read_bytes()
    again = run_cli([command, "--check", path.name], cwd=path.parent)
    assert again.exit_code == 0, again.output
    assert path.read_bytes() == before


# -- item 3: form feeds -------------------------------------------------------------------------------------
FF_IN_INDENT = (
    "import torch.nn as nn\n\n\nclass Head(nn.Module):\n    def __init__(self, c):\n"
    "        super().__init__()\n\f        self.bn = nn.BatchNorm2d(c)\n" + NET
)


def test_form_feed_in_indentation_is_refused_and_the_file_kept(tmp_path):
    path = _write(tmp_path, "model.py", FF_IN_INDENT)
    result = run_cli(["rewrite", "model.py"], cwd=tmp_path)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: model.py:7: form feed (\\f) in the indentation of a line of code, which LibCST "
        "does not keep; move it to a line of its own or remove it, and run again"
    ]
    assert path.read_bytes() == FF_IN_INDENT.encode()


def test_form_feed_in_a_train_script_is_refused_by_patch_trainer(tmp_path):
    text = "import torch\n\n\ndef main(model):\n\f    optimizer = torch.optim.Adam(model.parameters())\n"
    path = _write(tmp_path, "train.py", text)
    result = run_cli(["patch-trainer", "train.py"], cwd=tmp_path)
    assert result.exit_code == 1, result.output
    assert "error: train.py:5: form feed (\\f) in the indentation" in result.stderr
    assert path.read_bytes() == text.encode()


def test_form_feed_page_break_survives_a_conversion(tmp_path):
    text = (
        "import torch.nn as nn\n\f\n\nclass Head(nn.Module):\n    def __init__(self, c):\n"
        "        super().__init__()\n        self.bn = nn.BatchNorm2d(c)\n\f\n" + NET
    )
    path = _write(tmp_path, "model.py", text)
    result = run_cli(["rewrite", "model.py"], cwd=tmp_path)
    assert result.exit_code == 0, result.output
    after = path.read_bytes().decode()
    assert after.count("\f") == 2
    assert "        self.bn = get_group_norm(c)\n\f\n" in after
    _second_run_is_a_no_op("rewrite", path)


# -- item 9: optimizers built in branches -------------------------------------------------------------------
BRANCHES = """import torch


def main(opt, model):
    if opt.optim == "adam":
        optimizer = torch.optim.Adam(model.parameters(), opt.lr)
    elif opt.optim == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), opt.lr, momentum=0.9)
    else:
        raise ValueError(opt.optim)
    return optimizer
"""
FREEZE = (
    "frozen_count = freeze_backbone_bn(model)\n"
    '{0}print(f"Frozen backbone BatchNorm modules: {{frozen_count}}")\n'
)


def test_every_branch_that_builds_an_optimizer_gets_the_freeze(tmp_path):
    path = _write(tmp_path, "train.py", BRANCHES)
    result = run_cli(["patch-trainer", "--format", "json", "train.py"], cwd=tmp_path)
    assert result.exit_code == 0, result.output
    after = path.read_text()
    freeze = FREEZE.format(" " * 8)
    assert (
        '    if opt.optim == "adam":\n        '
        + freeze
        + "        optimizer = torch.optim.Adam(model.parameters(), opt.lr)\n"
        '    elif opt.optim == "sgd":\n        '
        + freeze
        + "        optimizer = torch.optim.SGD(model.parameters(), opt.lr, momentum=0.9)\n"
    ) in after
    _second_run_is_a_no_op("patch-trainer", path)


def test_one_freeze_before_the_branches_covers_them_all(tmp_path):
    text = BRANCHES.replace(
        '    if opt.optim == "adam":', '    freeze_backbone_bn(model)\n    if opt.optim == "adam":'
    )
    path = _write(tmp_path, "train.py", text)
    result = run_cli(["patch-trainer", "--kind", "script", "train.py"], cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert (
        path.read_text().count("freeze_backbone_bn(model)") == 1
    )  # only the helper definition is added


def test_a_freeze_in_one_branch_does_not_cover_the_code_after_it(tmp_path):
    text = """import torch


def main(opt, model):
    if opt.freeze:
        freeze_backbone_bn(model)
    optimizer = torch.optim.SGD(model.parameters(), 0.1)
    return optimizer
"""
    path = _write(tmp_path, "train.py", text)
    result = run_cli(["patch-trainer", "--kind", "script", "train.py"], cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert (
        "        freeze_backbone_bn(model)\n    "
        + FREEZE.format("    ")
        + "    optimizer = torch.optim.SGD("
    ) in path.read_text()
    _second_run_is_a_no_op("patch-trainer", path)


# -- item 10: a 2-space block at the top of 4-space code ----------------------------------------------------
TWO_SPACE_TOP = """import torch
try:
  from .DCNv2 import DCN
except ImportError:
  DCN = None


def main(model):
    optimizer = torch.optim.Adam(model.parameters())
    for epoch in range(2):
        model.train()
"""


def _indents(text):
    return {len(line) - len(line.lstrip(" ")) for line in text.splitlines() if line.strip()}


def test_injected_helpers_follow_the_code_not_the_first_block(tmp_path):
    path = _write(tmp_path, "train.py", TWO_SPACE_TOP)
    result = run_cli(["patch-trainer", "train.py"], cwd=tmp_path)
    assert result.exit_code == 0, result.output
    after = path.read_text()
    assert 'def _bn2gn_unwrap_model(model):\n    """' in after
    assert (
        "\n    seen = set()\n    while id(model) not in seen:\n        seen.add(id(model))\n"
        in after
    )
    assert (
        "  from .DCNv2 import DCN\nexcept ImportError:\n  DCN = None\n" in after
    )  # the user's block as it was
    helper = after[after.index("def freeze_backbone_bn") : after.index("def keep_backbone_bn_eval")]
    assert 2 not in _indents(helper) and 6 not in _indents(helper)
    ast.parse(after)
    _second_run_is_a_no_op("patch-trainer", path)


def test_group_norm_helper_and_init_guards_follow_the_code(tmp_path):
    text = (
        """import torch.nn as nn
try:
  from .DCNv2 import DCN
except ImportError:
  DCN = None


class Head(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bn = nn.BatchNorm2d(c)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
"""
        + NET
    )
    path = _write(tmp_path, "model.py", text)
    result = run_cli(["rewrite", "model.py"], cwd=tmp_path)
    assert result.exit_code == 0, result.output
    after = path.read_text()
    assert (
        'def get_group_norm(num_channels, num_groups=32, eps=1e-5, affine=True):\n    """GroupNorm'
        in after
    )
    assert "\n    num_groups = min(num_groups, num_channels)\n" in after
    assert (
        "            if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):\n"
        "                if hasattr(m, 'weight') and m.weight is not None:\n"
        "                    m.weight.data.fill_(1)\n"
    ) in after
    _second_run_is_a_no_op("rewrite", path)


def test_a_two_space_file_stays_two_space(tmp_path):
    text = (
        "import torch\n\n\ndef main(model):\n  optimizer = torch.optim.Adam(model.parameters())\n"
    )
    path = _write(tmp_path, "train.py", text)
    assert run_cli(["patch-trainer", "train.py"], cwd=tmp_path).exit_code == 0
    after = path.read_text()
    assert 'def _bn2gn_unwrap_model(model):\n  """' in after
    assert "\n  frozen_count = freeze_backbone_bn(model)\n" in after


# -- item 11: multi-line BatchNorm2d calls ------------------------------------------------------------------
def test_multi_line_call_keeps_its_closing_parenthesis_layout(tmp_path):
    text = (
        """import torch.nn as nn

BN_MOMENTUM = 0.1


class Head(nn.Module):
    def __init__(self, in_ch):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_ch, in_ch, 3),
            nn.BatchNorm2d(
                in_ch,
                momentum=BN_MOMENTUM
            ),
        )
        self.trailing = nn.BatchNorm2d(
            in_ch,
            momentum=BN_MOMENTUM,
        )
        self.eps = nn.BatchNorm2d(
            in_ch,
            1e-3,
            BN_MOMENTUM
        )
"""
        + NET
    )
    path = _write(tmp_path, "model.py", text)
    result = run_cli(["rewrite", "model.py"], cwd=tmp_path)
    assert result.exit_code == 0, result.output
    after = path.read_text()
    assert (
        "            nn.Conv2d(in_ch, in_ch, 3),\n"
        "            get_group_norm(\n"
        "                in_ch\n"
        "            ),\n"
        "        )\n"
    ) in after
    assert "        self.trailing = get_group_norm(\n            in_ch,\n        )\n" in after
    assert (
        "        self.eps = get_group_norm(\n            in_ch,\n            eps=1e-3\n        )\n"
        in after
    )
    _second_run_is_a_no_op("rewrite", path)


# -- big files are reported, not a hang ---------------------------------------------------------------
def test_a_file_over_the_size_limit_is_reported_and_left_alone(tmp_path, monkeypatch):
    text = (
        "import torch.nn as nn\n\n\nclass Head(nn.Module):\n    def __init__(self, c):\n"
        "        super().__init__()\n        self.bn = nn.BatchNorm2d(c)\n" + NET
    )
    path = _write(tmp_path, "model.py", text)
    monkeypatch.setenv("BN2GN_MAX_FILE_BYTES", "100")
    result = run_cli(["rewrite", "model.py"], cwd=tmp_path)
    assert result.exit_code == 1
    assert (
        f"error: model.py:1: {len(text.encode()):,} bytes, more than bn2gn transforms with LibCST (100; "
        "set BN2GN_MAX_FILE_BYTES to raise it); file left unchanged"
    ) in result.stderr
    assert path.read_text() == text
    monkeypatch.setenv("BN2GN_MAX_FILE_BYTES", str(len(text)))
    assert run_cli(["rewrite", "model.py"], cwd=tmp_path).exit_code == 0
    assert "get_group_norm(c)" in path.read_text()


def test_format_code_output_goes_through_the_parse_check(tmp_path, monkeypatch):
    import black

    text = (
        "import torch.nn as nn\n\n\nclass Head(nn.Module):\n    def __init__(self, c):\n"
        "        super().__init__()\n        self.bn = nn.BatchNorm2d(c,momentum=0.1)\n" + NET
    )
    path = _write(tmp_path, "model.py", text)
    real = black.format_str
    monkeypatch.setattr(
        black,
        "format_str",
        lambda code, mode: (  # break only the whole-file formatting
            code + "def broken(:\n" if code.startswith("import torch.nn") else real(code, mode=mode)
        ),
    )
    result = run_cli(["rewrite", "--format-code", "model.py"], cwd=tmp_path)
    assert result.exit_code == 0, result.output
    after = path.read_text()
    assert "def broken" not in after and "self.bn = get_group_norm(c)" in after
    assert "black's output did not pass the parse check; not formatted" in result.output
