"""Options every command that builds the user's model shares beside --model/--model-arg/--path."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import click

STUB_HELP = (
    "Stand in nn.Module stubs for a module that cannot be imported, e.g. a compiled dcn_v2 "
    "extension (repeatable). auto: every module the repository cannot import (the default when "
    "a build fails on an import); none: never stand anything in."
)
OPTS_HELP = (
    "The repository's options class, e.g. lib.opts:opts: built with its defaults (CLASS().init(argv) "
    "or .parse(argv); CLASS.METHOD to choose) and passed to factory parameters named opt/opts/args/cfg; "
    "other factory parameters not given by --model-arg are taken from its attributes of the same name."
)
OPTS_ARG_HELP = (
    "Command-line words for --model-opts, e.g. '--arch res_18 --head_conv 64' (repeatable)."
)


def model_arg_options(func: Callable) -> Callable:
    """--model-arg and --path, as remap-ckpt and verify take them beside --model."""
    func = click.option(
        "--path",
        "paths",
        multiple=True,
        type=click.Path(path_type=Path),
        metavar="DIR",
        help="Folder put first on sys.path to import --model (repeatable).",
    )(func)
    return click.option(
        "--model-arg",
        "model_args",
        multiple=True,
        metavar="KEY=VALUE",
        help="Keyword argument for the factory; VALUE is a Python literal or else a string (repeatable).",
    )(func)


def script_option(func: Callable) -> Callable:
    """--script PATH (its arguments after --), as verify and remap-ckpt take it instead of --model."""
    return click.option(
        "--script",
        type=click.Path(path_type=Path),
        metavar="PATH",
        help="Instead of --model: run this train script (arguments after --) as python would, "
        "and take the model its first optimizer is built on; the script stops there.",
    )(func)


def model_build_options(func: Callable, prefix: str = "") -> Callable:
    """--stub, --model-opts, --model-opts-arg; ``prefix`` starts each help text (scan: "With --trace: ")."""

    def text(help_text: str) -> str:
        return prefix + help_text[0].lower() + help_text[1:] if prefix else help_text

    func = click.option(
        "--model-opts-arg",
        "model_opts_args",
        multiple=True,
        metavar="ARGS",
        help=text(OPTS_ARG_HELP),
    )(func)
    func = click.option("--model-opts", "model_opts", metavar="MODULE:CLASS", help=text(OPTS_HELP))(
        func
    )
    func = click.option("--stub", "stubs", multiple=True, metavar="MODULE", help=text(STUB_HELP))(
        func
    )
    return func
