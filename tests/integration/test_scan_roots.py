"""Root finding across a whole repository: trainers and wrappers do not hide the real root model."""

from __future__ import annotations

import json
import textwrap

from conftest import CENTERNET, run_cli


def _decisions(cwd, *targets):
    data = json.loads(run_cli(["scan", *targets, "--format", "json"], cwd=cwd).stdout)
    return {(s["path"], s["line"]): s["decision"] for s in data["sites"]}, data


def test_whole_repository_scan_agrees_with_models_scan():
    models, _ = _decisions(CENTERNET, "lib/models")
    whole, data = _decisions(CENTERNET, ".")
    assert whole == models
    assert {i["rule"] for i in data["insertions"]} == {"BN2GN201", "BN2GN202", "BN2GN203"}
    assert {i["path"] for i in data["insertions"]} == {
        "train.py",
        "train_satmtb.py",
        "lib/Trainer/base_trainer.py",
    }


def test_model_wrapped_at_construction_is_still_the_root(tmp_path):
    (tmp_path / "net.py").write_text(
        textwrap.dedent("""
        import torch.nn as nn

        class Backbone(nn.Module):
            def __init__(self):
                super().__init__()
                self.bn = nn.BatchNorm2d(8)

        class Head(nn.Module):
            def __init__(self):
                super().__init__()
                self.bn = nn.BatchNorm2d(8)

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.backbone = Backbone()
                self.head = Head()

        class ModelWithLoss(nn.Module):
            def __init__(self, model, loss):
                super().__init__()
                self.model = model
                self.loss = loss

        class Trainer(object):
            def __init__(self, model):
                self.model = model

        def build():
            wrapped = ModelWithLoss(Net(), nn.MSELoss())
            return Trainer(wrapped)
    """)
    )
    found, data = _decisions(tmp_path, ".")
    assert found == {("net.py", 7): "keep", ("net.py", 12): "convert"}
    assert any(r.startswith("Net ") for r in data["roots"])
