"""The engine knows nothing of the CLI: click stays in bn2gn/cli, and bn2gn.runtime (imported into
users' training code) pulls in nothing beyond the standard library and torch."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "bn2gn"

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
    from bn2gn.core.errors import EXIT_USAGE, Bn2gnError

    error = Bn2gnError("x.pth: not a checkpoint", EXIT_USAGE)
    assert type(error).__mro__[1] is Exception
    assert (error.message, error.code) == ("x.pth: not a checkpoint", EXIT_USAGE)


def test_the_cli_names_an_engine_option_by_the_flag_of_the_command(tmp_path):
    """model.spec says "model"; scan takes the factory as --trace, remap-ckpt as --model."""
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


# -- layout: imports between bn2gn's modules and packages form a DAG -------------------------------
def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imported(name: str, path: Path) -> set:
    """bn2gn modules ``name`` imports anywhere in the file: at the top, in functions (lazily), under
    TYPE_CHECKING. ``from pkg import mod`` counts as an import of the submodule, not of ``pkg``."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            submodules = {f"{module}.{a.name}" for a in node.names} & MODULES.keys()
            found |= submodules
            if len(submodules) < len(node.names):
                found.add(module)
    return {m for m in found if m in MODULES and m != name}


def _import_graph() -> dict:
    return {name: _imported(name, path) for name, path in MODULES.items()}


def _node(module: str) -> str:
    """A folder (``decide``, ``source``, ...) or a top-level module (``runtime``, ``api``, ``bn2gn``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _package_graph(graph: dict) -> dict:
    packages: dict = {}
    for module, imported in graph.items():
        for other in imported:
            if _node(other) != _node(module):
                packages.setdefault(_node(module), set()).add(_node(other))
    return packages


def _cycles(graph: dict) -> list:
    """Every strongly connected component with more than one node (Tarjan), each sorted."""
    index: dict = {}
    low: dict = {}
    stack: list = []
    found = []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_the_cycle_finder_finds_a_cycle_through_three_packages():
    graph = {"decide": {"openmmlab"}, "openmmlab": {"checkpoint"}, "checkpoint": {"decide"}}
    assert _cycles(graph) == [["checkpoint", "decide", "openmmlab"]]
    assert _cycles({"verify": {"decide"}, "decide": {"core"}}) == []


def test_the_import_graph_sees_lazy_and_relative_imports():
    graph = _import_graph()
    # cli/scan_rewrite.py imports the trace inside the command function, two levels up
    assert "bn2gn.decide.trace" in graph["bn2gn.cli.scan_rewrite"]
    # `from . import snapshot` in verify/recorder.py: the submodule, not the package itself
    assert "bn2gn.verify.snapshot" in graph["bn2gn.verify.recorder"]
    assert "bn2gn.verify" not in graph["bn2gn.verify.recorder"]
    assert "bn2gn.cli.common" in graph["bn2gn.cli"]
    assert "bn2gn.cli" not in graph["bn2gn.cli.smoke"]


def test_no_import_cycle_between_modules():
    assert _cycles(_import_graph()) == []


#: bn2gn's folders bottom to top; an import may only point down (or stay in its own folder).
#: ``runtime`` is imported into users' training code and imports nothing of bn2gn, so anything may
#: use it; the package itself (``bn2gn``) re-exports the seam and sits just above it.
LAYERS = [
    {"core", "runtime"},
    {"model"},
    {"decide"},
    {"source"},
    {"checkpoint"},
    {"verify"},
    {"openmmlab"},
    {"api"},
    {"bn2gn"},
    {"migrate", "demo"},
    {"cli", "libcst_commands"},
    {"__main__"},
]
RANK = {node: rank for rank, nodes in enumerate(LAYERS) for node in nodes}


def _upward_imports(graph: dict) -> list:
    """(importer, imported) pairs between folders that do not point down the layers."""
    return sorted(
        (module, other)
        for module, imported in graph.items()
        for other in imported
        if _node(other) != _node(module) and RANK[_node(module)] <= RANK[_node(other)]
    )


def test_every_folder_and_top_level_module_has_a_layer():
    assert {_node(m) for m in MODULES} == set(RANK)


def test_imports_point_down_the_layers():
    assert _upward_imports(_import_graph()) == []


def test_an_import_up_the_layers_is_found():
    graph = {
        "bn2gn.decide.scan": {"bn2gn.source.patch_trainer", "bn2gn.core.errors"},
        "bn2gn.migrate.run": {"bn2gn.demo.run"},
        "bn2gn.source.rewrite": {"bn2gn.decide.scan", "bn2gn.runtime"},
    }
    assert _upward_imports(graph) == [
        ("bn2gn.decide.scan", "bn2gn.source.patch_trainer"),
        ("bn2gn.migrate.run", "bn2gn.demo.run"),
    ]


def test_package_dependencies_form_a_dag():
    assert _cycles(_package_graph(_import_graph())) == []


def test_the_static_layers_never_import_torch():
    offenders = sorted(
        str(p.relative_to(PACKAGE))
        for folder in ("core", "decide", "source")
        for p in (PACKAGE / folder).rglob("*.py")
        if "torch" in _top_level_imports(p)
    )
    # the trace builds the user's model: torch is what it is for, and only --trace imports it
    assert offenders == ["decide/trace.py"]


#: what builds settings, plans or engine options: only the seam (bn2gn.api) may call these, so no
#: front end can rebuild "what is backbone" on its own
SEAM_ONLY = {
    "load_config",
    "build_plan",
    "plan_for_rewrite",
    "TrainerOptions",
    "RemapOptions",
    "patch_files",
    "rewrite_paths",
    "plan_jobs",
    "Backbone",
}
FRONT_ENDS = [
    *sorted((PACKAGE / "cli").glob("*.py")),
    *sorted((PACKAGE / "migrate").glob("*.py")),
    PACKAGE / "libcst_commands.py",
    *sorted((PACKAGE / "demo").glob("*.py")),
]


def _imported_names(path: Path) -> set:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            names.update(alias.name for alias in node.names)
    return names


def test_front_ends_reach_settings_plans_and_engine_options_only_through_the_seam():
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(_imported_names(path) & SEAM_ONLY)
        for path in FRONT_ENDS
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    users = [p for p in FRONT_ENDS if "api" in {a for a in _imported_names(p)} or _uses_api(p)]
    assert {str(p.relative_to(PACKAGE)) for p in users} >= {
        "cli/scan_rewrite.py",
        "cli/patch_trainer.py",
        "cli/remap.py",
        "cli/smoke.py",
        "cli/migrate_call.py",  # migrate's body: the click command and the hook's entry call it
        "migrate/run.py",
        "libcst_commands.py",
        "demo/run.py",
    }


def _uses_api(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1] == "api":
            return True
        if isinstance(node, ast.ImportFrom) and any(a.name == "api" for a in node.names):
            return True
    return False


def test_the_package_re_exports_the_seam_and_imports_it_only_on_use():
    import bn2gn
    from bn2gn import api

    assert bn2gn.__all__ == api.__all__
    assert all(getattr(bn2gn, name) is getattr(api, name) for name in api.__all__)
    assert "bn2gn.api" not in _modules_after("import bn2gn.runtime")
    assert "bn2gn.api" in _modules_after("from bn2gn import Session")


def test_the_core_layer_imports_no_torch_libcst_or_click_even_lazily():
    heavy = {"torch", "libcst", "click"}
    offenders = {
        str(p.relative_to(PACKAGE)): sorted(_top_level_imports(p) & heavy)  # lazy imports too
        for p in sorted((PACKAGE / "core").glob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}
