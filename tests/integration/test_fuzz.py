"""Random and mutated sources into scan and rewrite: a valid result or a one-line
error per file, never a traceback, never a partially written file, and the other files still processed.
"""

from __future__ import annotations

import codecs
import tempfile
from pathlib import Path

import pytest
from conftest import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bn2gn.core.file_results import check_python
from bn2gn.core.source_files import decode_source

MODEL = """import torch.nn as nn


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c, eps=1e-3, momentum=0.1)

    def forward(self, x):
        return self.bn(self.conv(x))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
        self.neck = Block(8)
        self.head = nn.Sequential(nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4), nn.ReLU())
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
"""
CLEAN = """import torch.nn as nn


class CleanBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(16)


class CleanNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = CleanBackbone()
        self.head_bn = nn.BatchNorm2d(16)
"""
SETTINGS = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- mutations ------------------------------------------------------------------------------------------
def truncate(data: bytes, at: float) -> bytes:
    return data[: int(len(data) * at)]


def insert_bytes(data: bytes, at: float, junk: bytes) -> bytes:
    cut = int(len(data) * at)
    return data[:cut] + junk + data[cut:]


def mix_newlines(data: bytes, pattern: list) -> bytes:
    lines = data.split(b"\n")
    return (
        b"".join(
            line + (b"\r\n" if pattern[i % len(pattern)] else b"\n")
            for i, line in enumerate(lines[:-1])
        )
        + lines[-1]
    )


def mix_tabs(data: bytes, pattern: list) -> bytes:
    lines = data.split(b"\n")
    out = []
    for i, line in enumerate(lines):
        if pattern[i % len(pattern)] and line.startswith(b"    "):
            line = b"\t" + line[4:]
        out.append(line)
    return b"\n".join(out)


def form_feeds(data: bytes, pattern: list) -> bytes:
    """A form feed at the start of some lines (indented code, blank lines, top-level lines alike)."""
    lines = data.split(b"\n")
    return b"\n".join(
        b"\f" + line if pattern[i % len(pattern)] else line for i, line in enumerate(lines)
    )


def with_bom(data: bytes) -> bytes:
    return codecs.BOM_UTF8 + data


def latin1_cookie(data: bytes) -> bytes:
    named = data.replace(b"import torch.nn as nn", b"import torch.nn as nn\nNAME = 't\xeate'")
    return b"# -*- coding: latin-1 -*-\n" + named


def wrong_cookie(data: bytes) -> bytes:
    """A utf-8 cookie over latin-1 bytes: the cookie and the bytes disagree."""
    return b"# -*- coding: utf-8 -*-\n" + data + b"\nNAME = 't\xeate'\n"


def own_helper(data: bytes, keywords: bool) -> bytes:
    """The file's own get_group_norm, of a shape that may not take the converted calls."""
    params = b"c, num_groups=32, eps=1e-5, affine=True" if keywords else b"c, groups"
    helper = b"\n\ndef get_group_norm(" + params + b"):\n    return nn.GroupNorm(1, c)\n"
    return data.replace(b"import torch.nn as nn\n", b"import torch.nn as nn\n" + helper, 1)


def long_line(data: bytes, width: int) -> bytes:
    return data + b"\nWIDE = [" + b", ".join(b"%d" % i for i in range(width)) + b"]\n"


def deep_nesting(data: bytes, depth: int, kind: int) -> bytes:
    opening, closing = [(b"(", b")"), (b"[", b"]"), (b"{1: ", b"}")][kind]
    return data + b"\nDEEP = " + opening * depth + b"1" + closing * depth + b"\n"


def long_chain(data: bytes, length: int) -> bytes:
    return data + b"\nCHAIN = " + b" + ".join([b"1"] * length) + b"\n"


BASE = MODEL.encode()
MUTANTS = st.one_of(
    st.builds(truncate, st.just(BASE), st.floats(0, 1)),
    st.builds(insert_bytes, st.just(BASE), st.floats(0, 1), st.binary(min_size=1, max_size=12)),
    st.builds(mix_newlines, st.just(BASE), st.lists(st.booleans(), min_size=1, max_size=7)),
    st.builds(mix_tabs, st.just(BASE), st.lists(st.booleans(), min_size=1, max_size=7)),
    st.builds(form_feeds, st.just(BASE), st.lists(st.booleans(), min_size=1, max_size=9)),
    st.builds(lambda d: with_bom(mix_newlines(d, [True])), st.just(BASE)),
    st.builds(with_bom, st.just(BASE)),
    st.builds(latin1_cookie, st.just(BASE)),
    st.builds(wrong_cookie, st.just(BASE)),
    st.builds(own_helper, st.just(BASE), st.booleans()),
    st.builds(long_line, st.just(BASE), st.integers(1000, 20000)),
    st.builds(deep_nesting, st.just(BASE), st.integers(50, 1200), st.integers(0, 2)),
    st.builds(long_chain, st.just(BASE), st.integers(100, 6000)),
    st.binary(max_size=300),
    st.binary(max_size=200).map(lambda junk: BASE + junk),
)


# -- the property -----------------------------------------------------------------------------------------
def assert_clean_failure_lines(result) -> None:
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1), result.output
    for line in result.stderr.splitlines():
        if line.startswith("error:"):
            assert line.count("\n") == 0 and ":" in line[len("error: ") :]


def assert_valid_python(data: bytes, name: str) -> None:
    check_python(decode_source(Path(name), data).text)


def run_scan_and_rewrite(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "mutant.py").write_bytes(data)
        (root / "clean.py").write_text(CLEAN)
        scan = run_cli(["scan", "."], cwd=root)
        assert_clean_failure_lines(scan)
        rewrite = run_cli(["rewrite", "."], cwd=root)
        assert_clean_failure_lines(rewrite)
        after = (root / "mutant.py").read_bytes()
        if after != data:
            assert after.count(b"\f") >= data.count(b"\f"), "a form feed was dropped"
            assert "mutant.py" not in "".join(
                line for line in rewrite.stderr.splitlines() if line.startswith("error:")
            )
            assert_valid_python(after, "mutant.py")
        assert "get_group_norm(16)" in (root / "clean.py").read_text()
        assert sorted(p.name for p in root.iterdir()) == ["clean.py", "mutant.py"], (
            "temporary file left behind"
        )
        again = run_cli(["rewrite", ".", "--check"], cwd=root)
        assert_clean_failure_lines(again)
        assert "would change" not in again.output.replace("0 would change", ""), again.output
        assert (root / "mutant.py").read_bytes() == after


@SETTINGS
@given(MUTANTS)
def test_mutated_sources_never_crash_or_corrupt(data):
    run_scan_and_rewrite(data)


@pytest.mark.parametrize(
    "data",
    [wrong_cookie(BASE), own_helper(BASE, False), own_helper(BASE, True)],
    ids=["wrong-cookie", "incompatible-own-helper", "compatible-own-helper"],
)
def test_each_newer_mutation_once(data):
    run_scan_and_rewrite(data)


@pytest.mark.parametrize("line", range(MODEL.count("\n")))
def test_a_form_feed_on_any_line_is_kept_or_the_file_refused(line):
    run_scan_and_rewrite(form_feeds(BASE, [i == line for i in range(MODEL.count("\n") + 1)]))


@settings(
    max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    st.text(
        alphabet=st.one_of(st.characters(blacklist_categories=("Cs",)), st.sampled_from("\f \n")),
        max_size=200,
    )
)
def test_random_text_with_batchnorm_never_crashes(text):
    run_scan_and_rewrite(("import torch.nn as nn\nX = nn.BatchNorm2d(3)\n" + text).encode("utf-8"))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: with_bom(d),
        lambda d: with_bom(mix_newlines(d, [True])),
        latin1_cookie,
        lambda d: long_line(d, 20000),
    ],
    ids=["bom", "bom-crlf", "latin1-cookie", "long-line"],
)
def test_valid_variants_are_rewritten_keeping_encoding_and_newlines(mutate):
    data = mutate(BASE)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "model.py").write_bytes(data)
        result = run_cli(["rewrite", "."], cwd=root)
        assert result.exit_code == 0, result.output
        after = (root / "model.py").read_bytes()
        assert after != data and after.startswith(codecs.BOM_UTF8) == data.startswith(
            codecs.BOM_UTF8
        )
        assert after.count(b"\r\n") >= data.count(b"\r\n")
        assert b"get_group_norm(4)" in after
        if b"latin-1" in data:
            assert b"t\xeate" in after
        assert_valid_python(after, "model.py")


def test_mixed_crlf_and_lf_is_one_actionable_error_and_untouched():
    data = mix_newlines(BASE, [True, False])
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "model.py").write_bytes(data)
        (root / "clean.py").write_text(CLEAN)
        result = run_cli(["rewrite", "."], cwd=root)
        assert "Traceback" not in result.output
        if result.exit_code == 1:
            # LibCST releases before 1.1 cannot parse mixed endings: one actionable line, file untouched
            assert "error: model.py:2: mixed CRLF and LF line endings" in result.stderr
            assert "dos2unix" in result.stderr
            assert (root / "model.py").read_bytes() == data
        else:
            # newer LibCST parses them: the rewrite must keep every line's own ending
            assert result.exit_code == 0, result.output
            after = (root / "model.py").read_bytes()
            assert b"get_group_norm(4)" in after and after.count(b"\r\n") >= data.count(b"\r\n")
            assert_valid_python(after, "model.py")
        assert "get_group_norm(16)" in (root / "clean.py").read_text()


def test_a_write_that_fails_midway_leaves_the_file_whole(monkeypatch):
    import bn2gn.core.source_files

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "model.py").write_text(MODEL)
        monkeypatch.setattr(bn2gn.core.source_files.os, "replace", broken_replace)
        result = run_cli(["rewrite", "."], cwd=root)
        assert result.exit_code == 1
        assert (
            "model.py:1: cannot write (No space left on device); file left unchanged"
            in result.stderr
        )
        assert (root / "model.py").read_text() == MODEL
        assert [p.name for p in root.iterdir()] == ["model.py"]
