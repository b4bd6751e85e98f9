"""After the source migration: the ``bn2gn remap-ckpt`` and ``bn2gn verify`` lines to run.

Read with ``ast`` from the train scripts as they are after the migration: the model is the
argument of ``freeze_backbone_bn(X)``, its factory the call last assigned to ``X`` before it
(resolved through the script's imports), the factory's arguments the literal values or the
defaults of the argparse options they read (``opt.arch`` -> ``--arch``'s default). The
checkpoints are the defaults of ``--load_model``-style options and literal ``torch.load('...')``
paths, in the script and the repository modules it imports.

A command with something bn2gn cannot fill in (``MODULE:FACTORY``, ``CHECKPOINT``, the input
shapes) carries what to fill in as ``fill_in``; the report prints it as comment lines, so no
placeholder is ever printed as a command that would run.
"""

from __future__ import annotations

import ast
import dataclasses
import shlex
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..core.errors import Opt, message_text
from .argparse_scan import Option, checkpoint_options, torch_load_paths
from .factory import FREEZE, PLACEHOLDER, ModelCall, call_name, model_call
from .repo_files import imported_modules, parse, read_text, relative
from .sys_path import import_roots

SHAPE = "1,C,H,W"
CHECKPOINT = "CHECKPOINT"


@dataclasses.dataclass(frozen=True)
class Command:
    """One command line to run (from the repository), and what the user must know about it."""

    argv: Tuple[str, ...]
    why: str
    notes: Tuple[str, ...] = ()
    fill_in: Tuple[str, ...] = ()  # placeholders in ``argv`` and what to put there

    @property
    def line(self) -> str:
        return shlex.join(self.argv)

    @property
    def runnable(self) -> bool:
        return not self.fill_in

    def as_dict(self) -> dict:
        return {
            "command": self.line,
            "argv": list(self.argv),
            "why": self.why,
            "notes": list(self.notes),
            "fill_in": list(self.fill_in),
            "runnable": self.runnable,
        }


@dataclasses.dataclass
class NextSteps:
    cwd: str
    remap: List[Command] = dataclasses.field(default_factory=list)
    verify: List[Command] = dataclasses.field(default_factory=list)
    notes: List[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "cwd": self.cwd,
            "remap_ckpt": [c.as_dict() for c in self.remap],
            "verify": [c.as_dict() for c in self.verify],
            "notes": list(self.notes),
        }


def find_next_steps(
    repo: Path,
    texts: Dict[str, str],
    scripts: Sequence[str],
    trainers: Sequence[str],
    files: Sequence[Path] = (),
) -> NextSteps:
    """``texts``: realpath -> text after the migration, for the changed files (others are read from disk).

    With no script or trainer changed (a migrated repository), those of ``files`` that already call
    the helpers are used.
    """
    repo = Path(repo)
    steps = NextSteps(cwd=str(repo))
    scripts = list(scripts) or _files_calling(files, FREEZE, texts)
    trainers = list(trainers) or _files_calling(files, "keep_backbone_bn_eval", texts)
    if not scripts:
        steps.notes.append(
            "no train script calls freeze_backbone_bn: no remap-ckpt / verify line to suggest"
        )
        return steps
    seen, unresolved = set(), []
    for script in scripts:
        tree = parse(read_text(script, texts))
        if tree is None:
            continue
        rel = relative(script, repo)
        model = model_call(tree, Path(script), repo, texts)
        for ckpt, why in checkpoints(tree, Path(script), repo, texts):
            command = remap_command(ckpt, model, f"{why} ({rel})")
            if command.line not in seen:
                seen.add(command.line)
                steps.remap.append(command)
        if model.argv() not in seen:  # one verify per model: a second script freezes the same way
            seen.add(model.argv())
            steps.verify.append(
                verify_command(model, rel, [relative(t, repo) for t in trainers], steps.remap, repo)
            )
            if model.spec == PLACEHOLDER:
                unresolved.append(steps.verify[-1])
    if len(unresolved) < len(steps.verify):
        # a builder module freezing the model it is given (``build_optimizer(model, cfg)``): the
        # scripts that call it with the model they build have the line
        steps.verify = [c for c in steps.verify if c not in unresolved]
    return steps


def remap_command(ckpt: Option, model: ModelCall, why: str) -> Command:
    source = ckpt.default or CHECKPOINT
    notes = list(model.notes)
    fill_in = () if ckpt.default else (f"{CHECKPOINT}: the checkpoint you pass to {ckpt.flag}",)
    target = output_name(source)
    notes.append(
        f"then train with {ckpt.flag} {target}"
        if ckpt.flag.startswith("-")
        else f"then load {target} instead of {source}"
    )
    argv = ("bn2gn", "remap-ckpt", source, *model.argv(), "--strict")
    return Command(argv, why, tuple(notes), fill_in + model.fill_in)


def verify_command(
    model: ModelCall,
    script: str,
    trainers: Sequence[str],
    remaps: Sequence[Command],
    repo: Path = Path("."),
) -> Command:
    if model.spec == PLACEHOLDER:
        # no factory to name: the train script itself says which model its optimizer trains
        return script_verify_command(script, trainers, remaps, repo)
    argv = ["bn2gn", "verify", *model.argv(), *_checked_with(script, trainers, remaps)]
    return Command(tuple(argv), VERIFY_WHY, model.notes, (shapes_fill_in(),) + model.fill_in)


VERIFY_WHY = "runtime checks of the converted model with the patched freeze logic"


def shapes_fill_in() -> str:
    """What to put for the input shapes (rendered when the command is made, in the current style)."""
    return message_text(
        Opt("input_shape", SHAPE, command="verify"),
        ": one per positional argument of the model's forward(), e.g. 1,3,512,512; "
        "bn2gn cannot read the shapes from the source",
    )


def _checked_with(script: str, trainers: Sequence[str], remaps: Sequence[Command]) -> List[str]:
    """verify's input shapes, the patched freeze logic and the remapped checkpoint, when known."""
    argv = ["--input-shape", SHAPE, "--freeze-from", script]
    for trainer in dict.fromkeys(t for t in trainers if t != script):
        argv += ["--freeze-from", trainer]
    known = [c.argv[2] for c in remaps if c.argv[2] != CHECKPOINT]
    if known:
        argv += ["--checkpoint", output_name(known[0])]
    return argv


def script_verify_command(
    script: str, trainers: Sequence[str], remaps: Sequence[Command], repo: Path
) -> Command:
    """``bn2gn verify --script SCRIPT ... -- ARGS``: the arguments a shell script of the repository
    runs SCRIPT with (``experiments/*.sh``), else none (the script's defaults)."""
    argv = ["bn2gn", "verify", "--script", script, *_checked_with(script, trainers, remaps)]
    found = script_arguments(repo, script)
    notes = [
        "the model is the one the script's first optimizer is built on: bn2gn runs the "
        "script up to that point"
    ]
    if found is not None:
        args, where = found
        argv += ["--", *args] if args else []
        notes.append(f"the script's arguments as {where} passes them")
    else:
        notes.append("no shell script of the repository runs it: its default arguments are used")
    return Command(tuple(argv), VERIFY_WHY, tuple(notes), (shapes_fill_in(),))


#: where repositories keep the shell lines that run their train scripts
SHELL_SCRIPTS = ("experiments/*.sh", "scripts/*.sh", "*.sh")
SHELL_OPERATORS = {"&&", "||", ";", "|", ">", ">>", "<", "&", "2>&1"}


def script_arguments(repo: Path, script: str) -> Optional[Tuple[List[str], str]]:
    """(arguments, 'FILE:LINE') of the first shell line that runs ``script`` with python."""
    name = Path(script).name
    for pattern in SHELL_SCRIPTS:
        for shell in sorted(Path(repo).glob(pattern)):
            try:
                text = shell.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            for number, line in _shell_lines(text):
                try:
                    words = shlex.split(line, comments=True)
                except ValueError:
                    continue
                for index, word in enumerate(words[:-1]):
                    if Path(word).name.startswith("python") and Path(words[index + 1]).name == name:
                        args = []
                        for arg in words[index + 2 :]:
                            if arg in SHELL_OPERATORS:
                                break
                            args.append(arg)
                        return args, f"{relative(shell, repo)}:{number}"
    return None


def _shell_lines(text: str):
    """(first line number, logical line) with backslash continuations joined."""
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


def output_name(source: str) -> str:
    """remap-ckpt's default output name (``model.pth`` -> ``model.bn2gn.pth``)."""
    path = Path(source)
    return (
        str(path.with_name(f"{path.stem}.bn2gn{path.suffix}"))
        if source != CHECKPOINT
        else f"{CHECKPOINT}.bn2gn.pth"
    )


def checkpoints(tree: ast.Module, script: Path, repo: Path, texts) -> List[Tuple[Option, str]]:
    """Checkpoint options of the script and its repository imports, then literal torch.load paths."""
    found = []
    roots = import_roots(script, repo, texts)
    for path, module in [(script, tree)] + imported_modules(tree, roots, texts):
        for option in checkpoint_options(module):
            found.append((option, f"{option.flag} of {relative(path, repo)}"))
        for literal in torch_load_paths(module):
            found.append(
                (
                    Option(flag=literal, dest="", default=literal),
                    f"torch.load in {relative(path, repo)}",
                )
            )
    return found


def _files_calling(files: Sequence[Path], name: str, texts) -> List[str]:
    needle = f"{name}("
    return [
        str(p)
        for p in files
        if needle in read_text(str(p), texts) and _calls(parse(read_text(str(p), texts)), name)
    ]


def _calls(tree, name: str) -> bool:
    return tree is not None and any(
        isinstance(n, ast.Call) and call_name(n.func) == name for n in ast.walk(tree)
    )
