"""scan and rewrite through the real CLI: output, modes, exit codes, bad input."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
from conftest import ROOT, copy_case, run_cli, snapshot


def test_scan_lists_sites_with_location_scope_target_decision(tmp_path):
    root = copy_case("shared_block", tmp_path)
    result = run_cli(["scan", "."], cwd=root)
    assert result.exit_code == 0, result.output
    assert "blocks.py:10:19: unsure  ConvBNReLU.__init__  self.bn" in result.output
    assert result.output.rstrip().endswith("3 files, 5 sites: 2 convert, 2 keep, 1 unsure")


def test_scan_json_and_plan_file(tmp_path):
    root = copy_case("shared_block", tmp_path)
    result = run_cli(["scan", ".", "--format", "json", "-o", "plan.json"], cwd=root)
    data = json.loads(result.stdout)
    assert data["summary"] == {"convert": 2, "keep": 2, "unsure": 1}
    assert json.loads((root / "plan.json").read_text())["summary"] == data["summary"]
    site = next(s for s in data["sites"] if s["scope"] == "ConvBNReLU.__init__")
    assert (site["path"], site["line"], site["col"], site["decision"]) == (
        "blocks.py",
        10,
        19,
        "unsure",
    )


def test_scan_strict_fails_on_unsure(tmp_path):
    root = copy_case("shared_block", tmp_path)
    assert run_cli(["scan", ".", "--strict"], cwd=root).exit_code == 1
    assert run_cli(["scan", "model.py", "--strict"], cwd=root).exit_code == 0


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["scan", "missing_dir"], "missing_dir: no such file or directory"),
        (["scan"], "no PATH given"),
        (["rewrite", ".", "--diff", "--check"], "cannot be combined"),
        (["rewrite", ".", "--select", "BN2GN999"], "unknown rule"),
        (["scan", ".", "--root", "NoSuchClass"], "no such class"),
        (["scan", ".", "--backbone-attr", "bad-name"], "not a Python identifier"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, args, fragment):
    root = copy_case("shared_block", tmp_path)
    before = snapshot(root)
    result = run_cli(args, cwd=root)
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1
    assert snapshot(root) == before


def test_diff_writes_nothing_and_check_reports_pending(tmp_path):
    root = copy_case("two_space", tmp_path)
    before = snapshot(root)
    diff = run_cli(["rewrite", ".", "--diff"], cwd=root)
    assert diff.exit_code == 0
    assert "-        nn.BatchNorm2d(head_conv, momentum=BN_MOMENTUM)," in diff.stdout
    assert "+        get_group_norm(head_conv)," in diff.stdout
    assert snapshot(root) == before
    assert run_cli(["rewrite", ".", "--check"], cwd=root).exit_code == 1
    assert snapshot(root) == before
    assert run_cli(["rewrite", "."], cwd=root).exit_code == 0
    assert run_cli(["rewrite", ".", "--check"], cwd=root).exit_code == 0


def test_diff_output_applies_to_the_same_result_as_a_write(tmp_path):
    root = copy_case("init_loops", tmp_path)
    patch = run_cli(["rewrite", ".", "--diff"], cwd=root).stdout
    other = copy_case("init_loops", tmp_path / "b")
    subprocess.run(["git", "apply", "-p1", "-"], input=patch.encode(), cwd=root, check=True)
    run_cli(["rewrite", "."], cwd=other)
    assert snapshot(root) == snapshot(other)


def test_unparsable_files_are_reported_untouched_and_others_processed(tmp_path):
    root = copy_case("syntax_error", tmp_path)
    before = snapshot(root)
    result = run_cli(["rewrite", "."], cwd=root)
    assert result.exit_code == 1
    assert "py2_print.py:8: cannot parse" in result.stderr
    assert "not_utf8.py:8: not valid utf-8" in result.stderr
    after = snapshot(root)
    assert (
        after["py2_print.py"] == before["py2_print.py"]
        and after["not_utf8.py"] == before["not_utf8.py"]
    )
    assert b"get_group_norm(" in after["model.py"]


def test_rule_selection(tmp_path):
    root = copy_case("init_loops", tmp_path)
    assert "BN2GN103" in run_cli(["rewrite", "--list-rules"], cwd=root).output
    run_cli(["rewrite", ".", "--skip", "BN2GN103"], cwd=root)
    text = (root / "model.py").read_text()
    assert (
        "get_group_norm(" in text and "def get_group_norm" in text and "nn.GroupNorm))" not in text
    )
    run_cli(["rewrite", ".", "--select", "init-loops"], cwd=root)
    assert "(nn.BatchNorm2d, nn.GroupNorm)" in (root / "model.py").read_text()


def test_backbone_attr_option_and_overrides(tmp_path):
    root = copy_case("no_backbone", tmp_path)
    plain = json.loads(run_cli(["scan", ".", "--format", "json"], cwd=root).stdout)
    assert plain["summary"]["convert"] == 0 and "no backbone attribute" in " ".join(plain["notes"])
    named = json.loads(
        run_cli(["scan", ".", "--format", "json", "--backbone-attr", "features"], cwd=root).stdout
    )
    decisions = {s["scope"]: s["decision"] for s in named["sites"]}
    assert decisions == {"PlainHead.__init__": "convert", "PlainNet.__init__": "keep"}
    forced = json.loads(
        run_cli(
            ["scan", ".", "--format", "json", "--backbone-attr", "features", "--keep", "PlainHead"],
            cwd=root,
        ).stdout
    )
    assert {s["decision"] for s in forced["sites"]} == {"keep"}
    assert (
        "forced by --keep PlainHead" in forced["sites"][0]["reason"] + forced["sites"][1]["reason"]
    )


def test_unchanged_files_are_not_touched_and_mode_survives(tmp_path):
    root = copy_case("unreached", tmp_path)
    os.chmod(root / "model.py", 0o755)
    legacy = (root / "legacy.py").stat()
    assert run_cli(["rewrite", "."], cwd=root).exit_code == 0
    again = (root / "legacy.py").stat()
    assert (again.st_ino, again.st_mtime_ns) == (legacy.st_ino, legacy.st_mtime_ns)
    assert stat.S_IMODE((root / "model.py").stat().st_mode) == 0o755
    assert b"get_group_norm(" in (root / "model.py").read_bytes()


def test_json_summary(tmp_path):
    root = copy_case("shared_block", tmp_path)
    data = json.loads(run_cli(["rewrite", ".", "--format", "json"], cwd=root).stdout)
    assert (data["files_scanned"], data["files_changed"], data["files_failed"]) == (3, 2, 0)
    assert (data["sites_converted"], data["sites_kept"], data["sites_unsure"]) == (2, 2, 1)


def test_strict_rewrite_exits_1_with_unsure_but_still_writes_convert_sites(tmp_path):
    root = copy_case("shared_block", tmp_path)
    assert run_cli(["rewrite", ".", "--strict"], cwd=root).exit_code == 1
    assert b"get_group_norm(" in (root / "blocks.py").read_bytes()


def test_python_m_and_light_imports(tmp_path):
    root = copy_case("no_batchnorm", tmp_path)
    # the console process ends in bn2gn.core.process.quick_exit, which runs the exit handlers first
    code = (
        "import atexit, sys, runpy; sys.argv=['bn2gn','scan','.'];\n"
        "atexit.register(lambda: print('HEAVY', sorted(m for m in ('torch', 'libcst', 'black')"
        " if m in sys.modules)))\n"
        "runpy.run_module('bn2gn', run_name='__main__')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert "0 sites" in out.stdout and "HEAVY []" in out.stdout, out.stdout + out.stderr


def test_internal_error_is_one_line_exit_3(tmp_path, monkeypatch):
    import bn2gn.decide.scan as scan_module

    def boom(*args, **kwargs):
        raise RuntimeError("simulated bug\nsecond line")

    monkeypatch.setattr(scan_module, "build_plan", boom)
    root = copy_case("two_space", tmp_path)
    result = run_cli(["scan", "."], cwd=root)
    assert result.exit_code == 3
    assert result.stderr.strip() == (
        "bn2gn: error: internal error: RuntimeError: simulated bug "
        "(set BN2GN_DEBUG=1 for a traceback and please report it)"
    )


def test_diff_with_json_puts_the_diff_inside_the_json(tmp_path):
    root = copy_case("two_space", tmp_path)
    result = run_cli(["rewrite", ".", "--diff", "--format", "json"], cwd=root)
    data = json.loads(result.stdout)
    (changed,) = data["results"]
    assert "+        get_group_norm(head_conv)," in changed["diff"]


def test_parallel_rewrite_gives_the_same_bytes(tmp_path):
    serial = copy_case("import_styles", tmp_path / "serial")
    parallel = copy_case("import_styles", tmp_path / "parallel")
    assert run_cli(["rewrite", "."], cwd=serial).exit_code == 0
    assert run_cli(["rewrite", ".", "-j", "2"], cwd=parallel).exit_code == 0
    assert (
        snapshot(serial)
        == snapshot(parallel)
        != snapshot(copy_case("import_styles", tmp_path / "orig"))
    )
