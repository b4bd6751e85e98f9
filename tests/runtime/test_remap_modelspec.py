"""bn2gn.model.spec: MODULE:FACTORY, --model-arg literals, --path, and one-line errors."""

from __future__ import annotations

import sys
import textwrap

import pytest

from bn2gn.core.errors import EXIT_USAGE, Bn2gnError, OptionError
from bn2gn.model.spec import build_model, parse_model_arg, parse_model_spec


@pytest.mark.parametrize(
    "text, expected",
    [
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
    ],
)
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
    spec = parse_model_spec(
        "lib.models.model:create_model", ["arch=res_18", "head_conv=64", "arch=dla_34"], [tmp_path]
    )
    assert spec.module == "lib.models.model" and spec.factory == "create_model"
    assert spec.kwargs == (("arch", "dla_34"), ("head_conv", 64))
    assert spec.paths == (tmp_path.resolve(),)
    assert spec.describe() == "lib.models.model:create_model(arch='dla_34', head_conv=64)"
    with pytest.raises(OptionError, match="missing: not a directory") as info:
        parse_model_spec("m:f", [], [tmp_path / "missing"])
    assert info.value.option == "path"  # the engine names the option; the CLI shows it as --path


def write_module(folder, name, body):
    (folder / f"{name}.py").write_text(textwrap.dedent(body))


def test_build_model_imports_from_path_and_restores_sys_path(tmp_path):
    torch = pytest.importorskip("torch")
    write_module(
        tmp_path,
        "spec_models_a",
        """
        import torch.nn as nn

        class Net(nn.Module):
            def __init__(self, width=2):
                super().__init__()
                self.conv = nn.Conv2d(1, width, 1)

            @classmethod
            def build(cls, **kwargs):
                return cls(**kwargs)
    """,
    )
    saved = list(sys.path)
    try:
        model = build_model(parse_model_spec("spec_models_a:Net.build", ["width=5"], [tmp_path]))
    finally:
        sys.modules.pop("spec_models_a", None)
    assert isinstance(model, torch.nn.Module) and model.conv.out_channels == 5
    assert model.conv.weight.device.type == "cpu"
    assert sys.path == saved


@pytest.mark.parametrize(
    "body, spec, fragment",
    [
        (
            "raise RuntimeError('needs CUDA')\n",
            "spec_models_b:f",
            "cannot import spec_models_b (RuntimeError: needs CUDA)",
        ),
        (
            "def f(arch):\n    raise KeyError(arch)\n",
            "spec_models_c:f",
            "raised KeyError: 'dla_34'; check --model-arg values",
        ),
        (
            "def f(arch):\n    return arch\n",
            "spec_models_d:f",
            "returned str, not a torch.nn.Module",
        ),
        ("f = 3\n", "spec_models_e:f", "spec_models_e:f is not callable"),
        ("", "spec_models_f:g.h", "spec_models_f has no attribute 'g.h'"),
    ],
)
def test_build_errors_are_one_line_usage_errors(tmp_path, body, spec, fragment):
    pytest.importorskip("torch")
    name = spec.split(":")[0]
    (tmp_path / f"{name}.py").write_text(body)
    try:
        with pytest.raises(Bn2gnError) as info:
            build_model(parse_model_spec(spec, ["arch=dla_34"], [tmp_path]))
    finally:
        sys.modules.pop(name, None)
    assert fragment in as_shown(info.value)
    assert info.value.code == EXIT_USAGE and "\n" not in as_shown(info.value)


def test_missing_module_hints_at_path():
    with pytest.raises(Bn2gnError, match="add its folder with path=DIR"):
        build_model(parse_model_spec("no_such_module_for_bn2gn:f"))


# -- hints that name the module to stub (item 13) --------------------------------------------
def _build_error(tmp_path, files, spec, *args, **kwargs):
    for relative, body in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body))
    top = {relative.split("/")[0].removesuffix(".py") for relative in files}
    kwargs.setdefault("stubs", ("none",))  # the hints, not the automatic stand-ins
    try:
        with pytest.raises(Bn2gnError) as info:
            build_model(parse_model_spec(spec, *args, paths=[tmp_path], **kwargs))
    finally:
        for name in list(sys.modules):
            if name.split(".")[0] in top:
                del sys.modules[name]
    message = as_shown(info.value)
    assert info.value.code == EXIT_USAGE and "\n" not in message
    return message


def test_module_not_found_inside_the_factory_hints_at_stub(tmp_path):
    pytest.importorskip("torch")
    message = _build_error(
        tmp_path,
        {
            "late_import_pkg.py": """
        def build():
            import torchvision_missing_for_bn2gn.ops
            return None
    """
        },
        "late_import_pkg:build",
    )
    assert message == (
        "--model late_import_pkg:build() raised ModuleNotFoundError: No module named "
        "'torchvision_missing_for_bn2gn'; if torchvision_missing_for_bn2gn is not needed to build "
        "the model's layers, stand it in with --stub torchvision_missing_for_bn2gn"
    )


def test_name_left_none_by_a_swallowed_import_names_the_module_to_stub(tmp_path):
    torch = pytest.importorskip("torch")
    files = {
        "dcnrepo/__init__.py": "",
        "dcnrepo/networks/__init__.py": "",
        "dcnrepo/networks/pose_dla_dcn.py": """
            import torch.nn as nn
            try:
                from .DCNv2.dcn_v2 import DCN
            except:
                DCN = None


            class Net(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = DCN(4, 4, kernel_size=3)


            def get_pose_net():
                return Net()
        """,
    }
    message = _build_error(tmp_path, files, "dcnrepo.networks.pose_dla_dcn:get_pose_net")
    assert message.endswith(
        "raised TypeError: 'NoneType' object is not callable; DCN is None: "
        f"{tmp_path}/dcnrepo/networks/pose_dla_dcn.py:4 sets it to None when importing "
        "dcnrepo.networks.DCNv2.dcn_v2 fails; stand that module in with --stub "
        "dcnrepo.networks.DCNv2.dcn_v2"
    ), message
    try:  # and the named stub does build it
        model = build_model(
            parse_model_spec(
                "dcnrepo.networks.pose_dla_dcn:get_pose_net",
                paths=[tmp_path],
                stubs=["dcnrepo.networks.DCNv2.dcn_v2"],
            )
        )
    finally:
        for name in [n for n in sys.modules if n.startswith("dcnrepo")]:
            del sys.modules[name]
    assert isinstance(model.conv, torch.nn.Module) and type(model.conv).__name__ == "DCN"


# -- the repository's options object (item 14) ------------------------------------------------
OPTS_REPO = {
    "optsrepo/__init__.py": "",
    "optsrepo/opts.py": """
        import argparse


        class opts(object):
            def __init__(self):
                self.parser = argparse.ArgumentParser()
                self.parser.add_argument('--arch', default='res_18')
                self.parser.add_argument('--head_conv', type=int, default=64)
                self.parser.add_argument('--num_classes', type=int, default=1)

            def parse(self, args=''):
                opt = self.parser.parse_args() if args == '' else self.parser.parse_args(args)
                opt.heads = {'hm': opt.num_classes, 'wh': 2}
                return opt

            def init(self, args=''):
                opt = self.parse(args)
                print('heads', opt.heads)  # CenterNet prints; bn2gn's output must not carry it
                return opt
    """,
    "optsrepo/model.py": """
        import torch.nn as nn


        class Net(nn.Module):
            def __init__(self, arch, heads, head_conv, opt):
                super().__init__()
                self.arch, self.opt = arch, opt
                self.heads = nn.ModuleDict({k: nn.Conv2d(4, v, 1) for k, v in heads.items()})
                self.head_conv = nn.Conv2d(4, head_conv, 1)


        def create_model(arch, heads, head_conv, opt):
            return Net(arch, heads, head_conv, opt)
    """,
}


def _opts_build(tmp_path, capsys, *opts_args, model_args=(), options="optsrepo.opts:opts"):
    for relative, body in OPTS_REPO.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body))
    try:
        return build_model(
            parse_model_spec(
                "optsrepo.model:create_model",
                model_args,
                [tmp_path],
                options=options,
                options_args=opts_args,
            )
        )
    finally:
        for name in [n for n in sys.modules if n.startswith("optsrepo")]:
            del sys.modules[name]
        assert capsys.readouterr().out == ""


def test_options_object_fills_the_factory_from_its_defaults(tmp_path, capsys):
    pytest.importorskip("torch")
    model = _opts_build(tmp_path, capsys)
    assert model.arch == "res_18" and model.head_conv.out_channels == 64
    assert sorted(model.heads) == ["hm", "wh"] and model.heads["hm"].out_channels == 1
    assert model.opt.num_classes == 1  # the object itself reaches the parameter named opt


def test_options_args_override_and_model_args_win(tmp_path, capsys):
    pytest.importorskip("torch")
    model = _opts_build(
        tmp_path,
        capsys,
        "--arch dla_34 --num_classes 3",
        "--head_conv 32",
        model_args=["head_conv=16"],
    )
    assert model.arch == "dla_34" and model.heads["hm"].out_channels == 3  # derived in parse()
    assert model.head_conv.out_channels == 16 and model.opt.head_conv == 32


def test_options_method_can_be_named(tmp_path, capsys):
    pytest.importorskip("torch")
    model = _opts_build(tmp_path, capsys, "--arch res_50", options="optsrepo.opts:opts.parse")
    assert model.arch == "res_50"


def as_shown(error: Bn2gnError) -> str:
    """The message as the CLI prints it: options under their default flags."""
    return error.text.render({})


@pytest.mark.parametrize(
    "opts_args, options, fragment",
    [
        (
            ("--bogus 1",),
            "optsrepo.opts:opts",
            "--model-opts optsrepo.opts:opts: the options parser rejected --model-opts-arg (unrecognized arguments: "
            "--bogus 1)",
        ),
        (
            ("--head_conv wide",),
            "optsrepo.opts:opts",
            "argument --head_conv: invalid int value: 'wide'",
        ),
        (
            (),
            "optsrepo.opts:nothing",
            "--model-opts optsrepo.opts:nothing: optsrepo.opts has no attribute 'nothing'",
        ),
        (
            (),
            "optsrepo.nomodule:opts",
            "--model-opts optsrepo.nomodule:opts: cannot import optsrepo.nomodule",
        ),
    ],
)
def test_options_errors_are_one_line(tmp_path, capsys, opts_args, options, fragment):
    pytest.importorskip("torch")
    with pytest.raises(Bn2gnError) as info:
        _opts_build(tmp_path, capsys, *opts_args, options=options)
    assert fragment in as_shown(info.value) and info.value.code == EXIT_USAGE
    assert "\n" not in as_shown(info.value)


@pytest.mark.parametrize(
    "options, args, fragment",
    [
        ("no_colon", (), "--model-opts 'no_colon': expected MODULE:CLASS[.METHOD]"),
        (None, ("--arch x",), "--model-opts-arg needs --model-opts MODULE:CLASS"),
        ("a:b", ("'unclosed",), '--model-opts-arg "\'unclosed": No closing quotation'),
    ],
)
def test_options_spec_errors(options, args, fragment):
    with pytest.raises(Bn2gnError) as info:
        parse_model_spec("m:f", options=options, options_args=args)
    assert fragment in as_shown(info.value)


def test_remap_report_lists_what_the_model_build_stood_in(tmp_path):
    """The model is built with every unimportable module stood in; the report says which, and what
    the stand-in ran as (a convolution keeping the channel counts)."""
    import torch
    from torch import nn

    (tmp_path / "net.py").write_text(
        "import torch.nn as nn\n"
        "from dcn_ops_missing import DCN\n\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8))\n"
        "        self.up = DCN(8, 4, 3, padding=1)\n"
        "        self.head = nn.Sequential(nn.Conv2d(4, 4, 1), nn.GroupNorm(2, 4))\n\n\n"
        "def create_model():\n"
        "    return Net()\n"
    )
    old = nn.Module()
    old.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8))
    old.head = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))
    torch.save({"state_dict": old.state_dict()}, tmp_path / "old.pth")
    from conftest import run_cli

    try:
        result = run_cli(
            [
                "remap-ckpt",
                "old.pth",
                "-o",
                "new.pth",
                "--model",
                "net:create_model",
                "--path",
                ".",
            ],
            cwd=tmp_path,
        )
    finally:
        sys.modules.pop("net", None)
    assert result.exit_code == 0, result.output
    assert (
        "model build: stub dcn_ops_missing (auto): used at build time, imported by net.py: "
        "DCN ran as Conv2d(8, 4, kernel_size=3, padding=1) x1"
    ) in result.output
