"""bn2gn.modelspec: MODULE:FACTORY, --model-arg literals, --path, and one-line errors."""

from __future__ import annotations

import sys
import textwrap

import pytest

from bn2gn.errors import EXIT_USAGE, Bn2gnError
from bn2gn.modelspec import build_model, parse_model_arg, parse_model_spec


@pytest.mark.parametrize("text, expected", [
    ("head_conv=256", ("head_conv", 256)),
    ("heads={'hm': 1, 'wh': 2}", ("heads", {"hm": 1, "wh": 2})),
    ("arch=dla_34", ("arch", "dla_34")),
    ("arch='dla_34'", ("arch", "dla_34")),
    ("pretrained=False", ("pretrained", False)),
    ("scale=0.5", ("scale", 0.5)),
    ("sizes=(1, 2)", ("sizes", (1, 2))),
    ("name=", ("name", "")),
    ("expr=__import__('os')", ("expr", "__import__('os')")),
    (" frames = 3 ", ("frames", 3)),
])
def test_model_arg_is_a_literal_or_else_a_string(text, expected):
    assert parse_model_arg(text) == expected


@pytest.mark.parametrize("text", ["noequals", "=3", "1x=3", "a.b=3"])
def test_model_arg_needs_an_identifier_key(text):
    with pytest.raises(Bn2gnError, match="expected key=value") as info:
        parse_model_arg(text)
    assert info.value.code == EXIT_USAGE


@pytest.mark.parametrize("spec", ["lib.models.model", ":f", "m:", "m:f:g", "lib/models:f", "m:1f"])
def test_bad_spec(spec):
    with pytest.raises(Bn2gnError, match="expected MODULE:FACTORY"):
        parse_model_spec(spec)


def test_spec_collects_args_and_paths(tmp_path):
    spec = parse_model_spec("lib.models.model:create_model", ["arch=res_18", "head_conv=64", "arch=dla_34"],
                            [tmp_path])
    assert spec.module == "lib.models.model" and spec.factory == "create_model"
    assert spec.kwargs == (("arch", "dla_34"), ("head_conv", 64))
    assert spec.paths == (tmp_path.resolve(),)
    assert spec.describe() == "lib.models.model:create_model(arch='dla_34', head_conv=64)"
    with pytest.raises(Bn2gnError, match="--path .*missing: not a directory"):
        parse_model_spec("m:f", [], [tmp_path / "missing"])


def write_module(folder, name, body):
    (folder / f"{name}.py").write_text(textwrap.dedent(body))


def test_build_model_imports_from_path_and_restores_sys_path(tmp_path):
    torch = pytest.importorskip("torch")
    write_module(tmp_path, "spec_models_a", """
        import torch.nn as nn

        class Net(nn.Module):
            def __init__(self, width=2):
                super().__init__()
                self.conv = nn.Conv2d(1, width, 1)

            @classmethod
            def build(cls, **kwargs):
                return cls(**kwargs)
    """)
    saved = list(sys.path)
    try:
        model = build_model(parse_model_spec("spec_models_a:Net.build", ["width=5"], [tmp_path]))
    finally:
        sys.modules.pop("spec_models_a", None)
    assert isinstance(model, torch.nn.Module) and model.conv.out_channels == 5
    assert model.conv.weight.device.type == "cpu"
    assert sys.path == saved


@pytest.mark.parametrize("body, spec, fragment", [
    ("raise RuntimeError('needs CUDA')\n", "spec_models_b:f",
     "cannot import spec_models_b (RuntimeError: needs CUDA)"),
    ("def f(arch):\n    raise KeyError(arch)\n", "spec_models_c:f",
     "raised KeyError: 'dla_34'; check --model-arg values"),
    ("def f(arch):\n    return arch\n", "spec_models_d:f", "returned str, not a torch.nn.Module"),
    ("f = 3\n", "spec_models_e:f", "spec_models_e:f is not callable"),
    ("", "spec_models_f:g.h", "spec_models_f has no attribute 'g.h'"),
])
def test_build_errors_are_one_line_usage_errors(tmp_path, body, spec, fragment):
    pytest.importorskip("torch")
    name = spec.split(":")[0]
    (tmp_path / f"{name}.py").write_text(body)
    try:
        with pytest.raises(Bn2gnError) as info:
            build_model(parse_model_spec(spec, ["arch=dla_34"], [tmp_path]))
    finally:
        sys.modules.pop(name, None)
    assert fragment in info.value.format_message()
    assert info.value.code == EXIT_USAGE and "\n" not in info.value.format_message()


def test_missing_module_hints_at_path():
    with pytest.raises(Bn2gnError, match="add its folder with --path DIR"):
        build_model(parse_model_spec("no_such_module_for_bn2gn:f"))
