"""A file's own get_group_norm is reused only when it can take the converted calls.

BN2GN101 writes ``get_group_norm(C)`` plus ``eps=``/``affine=`` where the BatchNorm had them; a
helper of another shape (defined in the file or imported from a sibling module) would raise
TypeError when the model is built, so the file is refused in one line and left unchanged.
"""

from __future__ import annotations

import pytest
from conftest import run_cli

NET = """

class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(8, eps=1e-3)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
        self.head = Head()
"""


def _model(helper: str) -> str:
    return "import torch.nn as nn\n\n\n" + helper + NET


@pytest.mark.parametrize(
    "helper, fragment",
    [
        (
            "def get_group_norm(channels, groups):\n    return nn.GroupNorm(groups, channels)\n",
            "model.py:4: your get_group_norm(channels, groups) at model.py:4 has no eps= "
            "parameter, which the converted calls pass",
        ),
        (
            "def get_group_norm(c, eps, *, groups):\n    return nn.GroupNorm(groups, c, eps)\n",
            "model.py:4: your get_group_norm(c, eps, *, groups) at model.py:4 requires groups, "
            "which the converted calls do not pass",
        ),
    ],
    ids=["no-eps", "required-keyword"],
)
def test_incompatible_own_helper_refuses_the_file(tmp_path, helper, fragment):
    text = _model(helper)
    (tmp_path / "model.py").write_text(text)
    result = run_cli(["rewrite", "."], cwd=tmp_path)
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr
    assert "rename it so bn2gn injects its own" in errors[0]
    assert (tmp_path / "model.py").read_text() == text


def test_incompatible_imported_helper_refuses_the_file(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "norms.py").write_text(
        "import torch.nn as nn\n\n\ndef get_group_norm(c, groups=32):\n"
        "    return nn.GroupNorm(groups, c)\n"
    )
    text = "import torch.nn as nn\n\nfrom .norms import get_group_norm\n" + NET
    (pkg / "model.py").write_text(text)
    result = run_cli(["rewrite", "pkg"], cwd=tmp_path)
    assert result.exit_code == 1, result.output
    assert (
        "pkg/model.py:3: your get_group_norm(c, groups) at pkg/norms.py:4 has no eps= parameter"
        in result.stderr
    )
    assert (pkg / "model.py").read_text() == text


def test_compatible_own_helper_is_reused(tmp_path):
    helper = "def get_group_norm(c, **kwargs):\n    return nn.GroupNorm(1, c, **kwargs)\n"
    (tmp_path / "model.py").write_text(_model(helper))
    result = run_cli(["rewrite", "."], cwd=tmp_path)
    assert result.exit_code == 0, result.output
    text = (tmp_path / "model.py").read_text()
    assert "self.bn = get_group_norm(8, eps=1e-3)" in text
    assert text.count("def get_group_norm") == 1
