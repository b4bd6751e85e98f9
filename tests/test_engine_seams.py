"""The engine knows nothing of the CLI: click stays in bn2gn/cli, and bn2gn.runtime (imported into
users' training code) pulls in nothing beyond the standard library and torch."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "bn2gn"

LIST_MODULES = "import sys; {imp}; print('\\n'.join(sorted(sys.modules)))"


def _modules_after(statement: str) -> set:
    out = subprocess.run(
        [sys.executable, "-c", LIST_MODULES.format(imp=statement)],
        check=True,
        capture_output=True,
        text=True,
        cwd=PACKAGE.parent,
    ).stdout
    return set(out.split())


def _top_level_imports(path: Path) -> set:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_runtime_imports_only_stdlib_and_torch():
    added = _modules_after("import bn2gn.runtime") - _modules_after("pass")
    foreign = sorted(
        m
        for m in added
        if m.split(".")[0] not in sys.stdlib_module_names
        and m.split(".")[0] not in ("bn2gn", "torch")
    )
    assert foreign == []


def test_click_is_imported_only_by_the_cli_package():
    engine_files = [p for p in PACKAGE.rglob("*.py") if "cli" not in p.relative_to(PACKAGE).parts]
    assert engine_files, "no engine modules found"
    offenders = sorted(
        str(p.relative_to(PACKAGE)) for p in engine_files if "click" in _top_level_imports(p)
    )
    assert offenders == []


def test_an_engine_error_is_a_plain_exception():
    from bn2gn.errors import EXIT_USAGE, Bn2gnError

    error = Bn2gnError("x.pth: not a checkpoint", EXIT_USAGE)
    assert type(error).__mro__[1] is Exception
    assert (error.message, error.code) == ("x.pth: not a checkpoint", EXIT_USAGE)


def test_the_cli_names_an_engine_option_by_the_flag_of_the_command(tmp_path):
    """modelspec says "model"; scan takes the factory as --trace, remap-ckpt as --model."""
    from conftest import run_cli

    (tmp_path / "m.py").write_text("import torch.nn as nn\n", encoding="utf-8")
    traced = run_cli(["scan", "m.py", "--trace", "not-a-spec"], cwd=tmp_path)
    assert traced.exit_code == 2
    assert "bn2gn: error: --trace 'not-a-spec': expected MODULE:FACTORY" in traced.output
    remapped = run_cli(
        ["remap-ckpt", "x.pth", "-o", "y.pth", "--model", "not-a-spec"], cwd=tmp_path
    )
    assert remapped.exit_code == 2
    assert "--model 'not-a-spec': expected MODULE:FACTORY" in remapped.output
    bad_arg = run_cli(["scan", "m.py", "--trace", "m:f", "--model-arg", "1=2"], cwd=tmp_path)
    assert "--model-arg '1=2': expected key=value" in bad_arg.output
