"""Engine messages name options as data (``bn2gn.core.errors.Opt``); only the CLI turns them into flags."""

import ast
import re
from pathlib import Path

from bn2gn.core.errors import Bn2gnError, Message, Opt, OptionError, flag_style, message_text

PACKAGE = Path(__file__).resolve().parents[2] / "bn2gn"
FLAG = re.compile(r"(?<![\w-])--[a-z]")
#: A string that is one flag and nothing else is a command-line token: an argument of a command
#: bn2gn runs or prints for the user to run (``("bn2gn", "verify", "--strict")``) or the name an
#: argparse parser of a helper program defines. Any other string naming a flag is a message.
TOKEN = re.compile(r"-{1,2}[a-z][a-z0-9_-]*")


def _docstrings(tree: ast.AST) -> set:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def flag_literals(path: Path) -> list:
    """``(line, text)`` of every string constant, f-string pieces included, that names a CLI flag,
    docstrings (documentation) and lone command-line tokens left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = _docstrings(tree)
    return sorted(
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docs
        and FLAG.search(node.value)
        and not TOKEN.fullmatch(node.value)
    )


def test_no_string_outside_the_cli_names_a_flag():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {value!r}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "cli" not in path.relative_to(PACKAGE).parts[:1]
        for line, value in flag_literals(path)
    ]
    assert not found, "engine strings name CLI flags (use bn2gn.core.errors.Opt):\n" + "\n".join(
        found
    )


def test_the_scan_sees_flags_in_messages_and_fstrings_but_not_docstrings(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        '"""Module doc naming --flag."""\n'
        "def f(name):\n"
        '    """Doc naming --other."""\n'
        '    argv = ["bn2gn", "verify", "--strict", "-o"]\n'
        '    raise ValueError(f"--allow-global {name}: refused")\n'
        'NOTE = "re-run with --trust-pickle"\n'
        'DASHES = "a -- b, x--y"\n',
        encoding="utf-8",
    )
    assert flag_literals(source) == [(5, "--allow-global "), (6, "re-run with --trust-pickle")]


def test_a_library_caller_sees_parameter_names():
    error = Bn2gnError(Message("x.pth: pickled code; re-run with ", Opt("trust_pickle")))
    assert str(error) == error.message == "x.pth: pickled code; re-run with trust_pickle"
    assert message_text(Opt("allow_global", "argparse.Namespace"), ": refused") == (
        "allow_global=argparse.Namespace: refused"
    )


def test_the_cli_style_shows_flags_and_a_commands_own_names():
    message = Message(Opt("model"), ": bad; check ", Opt("model_arg", "KEY=VALUE"))
    assert message.render({"model": "--trace"}) == "--trace: bad; check --model-arg KEY=VALUE"
    with flag_style({"model": "--trace"}):
        assert str(OptionError("model", ": bad")) == "--trace: bad"
        assert message_text("use ", Opt("stub", "cv2")) == "use --stub cv2"
    assert str(OptionError("model", ": bad")) == "model: bad"


def test_an_option_of_another_command_is_always_its_flag():
    hint = Message(
        "run bn2gn config rewrite ", Opt("renames_out", "FILE", command="config rewrite")
    )
    assert (
        hint.render()
        == hint.render({"renames_out": "-r"})
        == ("run bn2gn config rewrite --renames-out FILE")
    )


def test_messages_compose_with_strings():
    message = "a " + Message(Opt("key")) + " b"
    assert message == Message("a ", Opt("key"), " b")
    assert message.render({}) == "a --key b"
