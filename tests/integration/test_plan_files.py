"""Plan files: fingerprints, `rewrite --plan` with reviewed/edited plans, `remap-ckpt --plan`.

Expected decisions, locations and checkpoint entries are written by hand from the sources below.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import shutil
import textwrap
from pathlib import Path

import pytest
from conftest import FIXTURES, run_cli

HEAD_NET = textwrap.dedent("""\
    import torch.nn as nn


    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)


    class Net(nn.Module):
        def __init__(self, c=8):
            super().__init__()
            self.backbone = Backbone()
            self.neck = nn.Sequential(nn.Conv2d(8, c, 1), nn.BatchNorm2d(c))
            self.head = nn.Sequential(nn.Conv2d(c, c, 1), nn.BatchNorm2d(c), nn.ReLU())
    """)
# HEAD_NET sites, by hand: line 8 Backbone.bn keep; line 15 neck convert; line 16 head convert


def write(tmp_path: Path, text: str = HEAD_NET) -> Path:
    path = tmp_path / "net.py"
    path.write_text(text)
    return path


def plan_of(tmp_path: Path, *args) -> dict:
    result = run_cli(["scan", "net.py", "--format", "json", "-o", "plan.json", *args], cwd=tmp_path)
    assert result.exit_code == 0, result.output
    return json.loads((tmp_path / "plan.json").read_text())


# -- fingerprints ----------------------------------------------------------------------------------
def _hashes_counted(monkeypatch) -> list:
    """Each fingerprint computed from now on (``ModuleFacts.fingerprint``)."""
    from bn2gn.decide.facts import ModuleFacts

    counted = []
    real = ModuleFacts.fingerprint

    def counting(self, raw):
        counted.append(raw.node.lineno)
        return real(self, raw)

    monkeypatch.setattr(ModuleFacts, "fingerprint", counting)
    return counted


def test_fingerprints_are_hashed_only_when_read(tmp_path, monkeypatch):
    import pickle

    from bn2gn.core.settings import Config
    from bn2gn.decide.plan import site_from_dict
    from bn2gn.decide.scan import build_plan

    write(tmp_path)
    counted = _hashes_counted(monkeypatch)
    plan, _ = build_plan([tmp_path / "net.py"], Config())
    assert [(s.line, s.decision) for s in plan.sites] == [
        (8, "keep"),
        (15, "convert"),
        (16, "convert"),
    ]
    assert counted == []  # a check or a text scan reads no fingerprint
    data = plan.as_dict()["sites"]
    assert counted == [8, 15, 16]
    assert list(data[0]) == [
        "path", "line", "col", "end_line", "end_col", "scope", "op", "form", "target",
        "decision", "reason", "fingerprint",
    ]  # fmt: skip
    assert [len(site["fingerprint"]) for site in data] == [16, 16, 16]
    assert plan.sites[1].fingerprint == data[1]["fingerprint"]
    assert counted == [8, 15, 16]  # taken once
    assert site_from_dict(data[2]).fingerprint == data[2]["fingerprint"]
    fresh, _ = build_plan([tmp_path / "net.py"], Config())
    sent = pickle.loads(pickle.dumps(fresh.sites[0]))  # what a -j worker gets: the hash, no facts
    assert sent._fingerprint == data[0]["fingerprint"]
    assert len(pickle.dumps(fresh.sites[0])) < 2000


def test_fingerprints_survive_line_shifts_and_layout_but_not_edits(tmp_path):
    write(tmp_path)
    before = [s["fingerprint"] for s in plan_of(tmp_path)["sites"]]
    assert len(before) == 3 and len(set(before)) == 3
    assert all(len(f) == 16 and int(f, 16) >= 0 for f in before)
    shifted = "# a new header comment\n\n\n" + HEAD_NET.replace(
        "nn.Sequential(nn.Conv2d(8, c, 1), nn.BatchNorm2d(c))",
        "nn.Sequential(  # reflowed\n            nn.Conv2d(8, c, 1),\n            nn.BatchNorm2d( c ),\n        )",
    )
    write(tmp_path, shifted)
    assert [s["fingerprint"] for s in plan_of(tmp_path)["sites"]] == before
    write(
        tmp_path,
        HEAD_NET.replace("nn.BatchNorm2d(c), nn.ReLU()", "nn.BatchNorm2d(2 * c), nn.ReLU()"),
    )
    after = [s["fingerprint"] for s in plan_of(tmp_path)["sites"]]
    assert after[:2] == before[:2] and after[2] != before[2]


def test_same_statement_in_two_scopes_or_twice_in_one_statement_differs(tmp_path):
    write(
        tmp_path,
        textwrap.dedent("""\
        import torch.nn as nn


        def a(c):
            return nn.Sequential(nn.BatchNorm2d(c), nn.BatchNorm2d(c))


        def b(c):
            return nn.Sequential(nn.BatchNorm2d(c), nn.BatchNorm2d(c))
        """),
    )
    prints = [s["fingerprint"] for s in plan_of(tmp_path)["sites"]]
    assert len(prints) == 4 and len(set(prints)) == 4


def test_plan_file_round_trips(tmp_path):
    from bn2gn.decide.plan import plan_from_dict

    write(tmp_path)
    data = plan_of(tmp_path)
    assert [s["decision"] for s in data["sites"]] == ["keep", "convert", "convert"]
    assert plan_from_dict(data).as_dict()["sites"] == data["sites"]


# -- rewrite --plan --------------------------------------------------------------------------------
def test_rewrite_applies_hand_edited_decisions(tmp_path):
    write(tmp_path)
    data = plan_of(tmp_path)
    data["sites"][1]["decision"] = "keep"  # the reviewer keeps the neck BatchNorm
    (tmp_path / "plan.json").write_text(json.dumps(data))
    result = run_cli(["rewrite", "--plan", "plan.json", "net.py"], cwd=tmp_path)
    assert result.exit_code == 0, result.output
    text = (tmp_path / "net.py").read_text()
    assert "self.neck = nn.Sequential(nn.Conv2d(8, c, 1), nn.BatchNorm2d(c))" in text
    assert "self.head = nn.Sequential(nn.Conv2d(c, c, 1), get_group_norm(c), nn.ReLU())" in text
    assert "self.bn = nn.BatchNorm2d(8)" in text
    assert "plan plan.json: 3 site(s) applied, 0 skipped" in result.output


def test_sites_edited_after_the_plan_was_made_are_skipped(tmp_path):
    write(tmp_path)
    plan_of(tmp_path)
    edited = "# moved everything down two lines\n\n" + HEAD_NET.replace(
        "nn.Sequential(nn.Conv2d(8, c, 1), nn.BatchNorm2d(c))",
        "nn.Sequential(nn.Conv2d(8, c, 1), nn.BatchNorm2d(c + 0))",
    )
    edited += "        self.extra = nn.BatchNorm2d(c)\n"
    write(tmp_path, edited)
    result = run_cli(["rewrite", "--plan", "plan.json", "net.py"], cwd=tmp_path)
    assert result.exit_code == 1, result.output
    text = (tmp_path / "net.py").read_text()
    assert "nn.BatchNorm2d(c + 0)" in text  # changed since the plan: left alone
    assert (
        "get_group_norm(c), nn.ReLU()" in text
    )  # unchanged statement on a shifted line: converted
    assert "self.extra = nn.BatchNorm2d(c)" in text  # not in the plan: left alone
    assert (
        "unsure: net.py:17:55: Net.__init__: skipped: the source changed since plan.json was made"
        in result.output
    )
    assert "unsure: net.py:19:22: Net.__init__: skipped: not in plan.json" in result.output
    assert (
        "plan plan.json: 2 site(s) applied, 1 skipped (source changed since the plan was made), "
        "1 skipped (not in the plan)" in result.output
    )


def test_plan_cannot_force_a_partial_to_convert(tmp_path):
    write(
        tmp_path,
        HEAD_NET.replace(
            "import torch.nn as nn\n", "import functools\nimport torch.nn as nn\n"
        ).replace(
            "nn.BatchNorm2d(c), nn.ReLU()",
            "functools.partial(nn.BatchNorm2d, eps=1e-3)(c), nn.ReLU()",
        ),
    )
    data = plan_of(tmp_path)
    partial = next(s for s in data["sites"] if s["form"] == "partial")
    assert partial["decision"] == "unsure"
    partial["decision"] = "convert"
    (tmp_path / "plan.json").write_text(json.dumps(data))
    result = run_cli(["rewrite", "--plan", "plan.json", "net.py", "--diff"], cwd=tmp_path)
    assert "plan.json says convert, but this is BatchNorm2d partial" in result.output
    assert "functools.partial(nn.BatchNorm2d" in (tmp_path / "net.py").read_text()


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "plan.json: no such plan file"),
        ("{not json", "plan.json:1: not valid JSON"),
        ('{"files": 1}', "plan.json: not a bn2gn plan (no 'sites' list)"),
        ('{"sites": [{"path": "net.py", "line": 8}]}', "plan.json: site #1 lacks col, decision"),
        (
            '{"sites": [{"path": "net.py", "line": 8, "col": 19, "decision": "maybe"}]}',
            "plan.json: site net.py:8:19 has decision 'maybe'; use one of convert, keep, unsure",
        ),
    ],
)
def test_bad_plan_file_is_one_line_and_exit_2(tmp_path, content, message):
    write(tmp_path)
    if content is not None:
        (tmp_path / "plan.json").write_text(content)
    result = run_cli(["rewrite", "--plan", "plan.json", "net.py"], cwd=tmp_path)
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert (tmp_path / "net.py").read_text() == HEAD_NET


# -- remap-ckpt --plan -----------------------------------------------------------------------------
def test_plan_selection_uses_module_paths_not_prefixes():
    from bn2gn.checkpoint.plan_select import selection_from_plan
    from bn2gn.decide.plan import plan_from_dict

    plan = plan_from_dict(
        {
            "sites": [
                {
                    "path": "m.py",
                    "line": 1,
                    "col": 1,
                    "end_line": 1,
                    "end_col": 9,
                    "scope": "f",
                    "op": "BatchNorm2d",
                    "form": "call",
                    "target": "x",
                    "decision": "convert",
                    "module_paths": ["backbone.adapter.1", "head.1"],
                },
                {
                    "path": "m.py",
                    "line": 2,
                    "col": 1,
                    "end_line": 2,
                    "end_col": 9,
                    "scope": "f",
                    "op": "BatchNorm2d",
                    "form": "call",
                    "target": "x",
                    "decision": "unsure",
                    "module_paths": ["backbone.stem.1", "neck.1"],
                },
            ]
        }
    )
    selection = selection_from_plan(plan, "plan.json")
    converted, unaccounted = selection.split(
        ["backbone.adapter.1", "head.1", "backbone.stem.1", "neck.1", "extra.bn"]
    )
    assert converted == {"backbone.adapter.1", "head.1"}
    assert unaccounted == ["extra.bn"]


def test_static_plan_is_refused_for_remap(tmp_path):
    write(tmp_path)
    plan_of(tmp_path)
    from bn2gn.checkpoint.plan_select import load_plan_selection
    from bn2gn.core.errors import Bn2gnError

    with pytest.raises(Bn2gnError, match="the plan has no module paths; make a traced plan"):
        load_plan_selection(tmp_path / "plan.json")


_counter = itertools.count()


def load_model_file(path: Path):
    """Import a model file under a name never used before, so no stale module is reused."""
    spec = importlib.util.spec_from_file_location(f"bn2gn_test_model_{next(_counter)}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_remap_with_traced_plan_where_converted_layers_break_the_prefix_rule(tmp_path):
    torch = pytest.importorskip("torch")
    shutil.copytree(
        FIXTURES / "trace" / "runtime_shared",
        tmp_path / "src" / "runtime_shared",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    model_file = tmp_path / "src" / "runtime_shared" / "model.py"
    original = load_model_file(model_file).build()
    original.train()
    original(torch.randn(2, 3, 8, 8))  # trained statistics, so "kept bit for bit" means something
    old_state = original.state_dict()
    torch.save({"epoch": 7, "state_dict": old_state}, tmp_path / "old.pth")

    result = run_cli(
        [
            "scan",
            "src/runtime_shared",
            "--trace",
            "runtime_shared.model:build",
            "--path",
            "src",
            "--format",
            "json",
            "-o",
            "plan.json",
        ],
        cwd=tmp_path,
    )
    assert result.exit_code == 0, result.output
    plan = json.loads((tmp_path / "plan.json").read_text())
    shared = next(s for s in plan["sites"] if s["line"] == 6)
    assert shared["decision"] == "unsure"
    shared["decision"] = (
        "convert"  # the reviewer converts conv_bn everywhere, backbone stem included
    )
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    result = run_cli(["rewrite", "--plan", "plan.json", "src/runtime_shared"], cwd=tmp_path)
    assert result.exit_code == 0, result.output

    result = run_cli(
        ["remap-ckpt", "old.pth", "--plan", "plan.json", "-o", "new.pth"], cwd=tmp_path
    )
    assert result.exit_code == 0, result.output
    new_state = torch.load(tmp_path / "new.pth", weights_only=True)["state_dict"]
    converted = ["backbone.stem.1", "neck.1", "head.1"]  # by hand: the sites at lines 6 and 24
    for layer in converted:
        assert f"{layer}.running_mean" not in new_state and f"{layer}.weight" in new_state
    for key in (
        "backbone.bn.running_mean",
        "backbone.bn.running_var",
        "backbone.bn.num_batches_tracked",
    ):
        assert torch.equal(new_state[key], old_state[key])
    rewritten = load_model_file(model_file).build()
    assert isinstance(rewritten.backbone.stem[1], torch.nn.GroupNorm)
    rewritten.load_state_dict(new_state, strict=True)

    # the prefix rule keeps backbone.stem.1's running statistics, which the rewritten model no longer has
    result = run_cli(
        ["remap-ckpt", "old.pth", "-o", "by_prefix.pth", "--backbone-attr", "backbone"],
        cwd=tmp_path,
    )
    assert result.exit_code == 0, result.output
    by_prefix = torch.load(tmp_path / "by_prefix.pth", weights_only=True)["state_dict"]
    assert "backbone.stem.1.running_mean" in by_prefix
    with pytest.raises(RuntimeError, match="backbone.stem.1.running_mean"):
        rewritten.load_state_dict(by_prefix, strict=True)


def test_remap_reports_batchnorm_entries_the_plan_does_not_account_for(tmp_path):
    torch = pytest.importorskip("torch")
    shutil.copytree(
        FIXTURES / "trace" / "runtime_shared",
        tmp_path / "src" / "runtime_shared",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    state = load_model_file(tmp_path / "src" / "runtime_shared" / "model.py").build().state_dict()
    state.update(
        {
            "aux.bn.weight": torch.ones(4),
            "aux.bn.bias": torch.zeros(4),
            "aux.bn.running_mean": torch.zeros(4),
            "aux.bn.running_var": torch.ones(4),
        }
    )
    torch.save({"state_dict": state}, tmp_path / "old.pth")
    result = run_cli(
        [
            "scan",
            "src/runtime_shared",
            "--trace",
            "runtime_shared.model:build",
            "--path",
            "src",
            "-o",
            "plan.json",
        ],
        cwd=tmp_path,
    )
    assert result.exit_code == 0, result.output
    result = run_cli(["remap-ckpt", "old.pth", "--plan", "plan.json", "--dry-run"], cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert (
        "1 BatchNorm layer(s) in state dict 'state_dict' are not accounted for by the plan plan.json"
        in result.output
    )
    assert "aux.bn" in result.output
