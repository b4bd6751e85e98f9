"""After the source migration: the ``bn2gn remap-ckpt`` and ``bn2gn verify`` lines to run.

Read with ``ast`` from the train scripts as they are after the migration: the model is the
argument of ``freeze_backbone_bn(X)``, its factory the call last assigned to ``X`` before it
(resolved through the script's imports), the factory's arguments the literal values or the
defaults of the argparse options they read (``opt.arch`` -> ``--arch``'s default). The
checkpoints are the defaults of ``--load_model``-style options and literal ``torch.load('...')``
paths, in the script and the repository modules it imports.

A command with something bn2gn cannot fill in (``MODULE:FACTORY``, ``CHECKPOINT``, a factory
argument computed at run time) carries what to fill in as ``fill_in``; the report prints it as
comment lines, so no placeholder is ever printed as a command that would run. The verify line
needs no input shapes (verify infers them from the model). When the factory form would need a
value bn2gn cannot read, both lines run the train script instead (``--script``), which computes
it, with the arguments a shell script of the repository gives it; the remap-ckpt line then runs
as printed whenever its checkpoint is known.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import shlex
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .argparse_scan import Option, checkpoint_options, torch_load_paths
from .factory import FREEZE, PLACEHOLDER, ModelCall, call_name, model_call
from .repo_files import imported_modules, parse, read_text, relative
from .sys_path import import_roots

CHECKPOINT = "CHECKPOINT"
UNKNOWN = "=..."  # a factory argument computed at run time, in ModelCall.args


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
        run = script_arguments(repo, rel)
        for ckpt, why in checkpoints(tree, Path(script), repo, texts):
            ckpt = as_the_shell_runs_it(ckpt, run)
            command = remap_command(ckpt, model, f"{why} ({rel})", rel, repo, run)
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


def remap_command(
    ckpt: Option,
    model: ModelCall,
    why: str,
    script: Optional[str] = None,
    repo: Path = Path("."),
    run: Optional[ShellRun] = None,
) -> Command:
    """The factory form (``--model``), or, when that cannot be filled in and the train script is
    known, the ``--script`` form, which runs as printed once the checkpoint is known. Paths are
    given from the repository root; ``run``: the shell line that trains, whose folder the note
    about the remapped checkpoint names it from."""
    source = ckpt.default or CHECKPOINT
    fill_in = () if ckpt.default else (f"{CHECKPOINT}: the checkpoint you pass to {ckpt.flag}",)
    target = output_name(source)
    if run is not None and run.folder != "." and source != CHECKPOINT and not os.path.isabs(target):
        target = os.path.relpath(target, run.folder)  # as the training, run from there, names it
    then = (
        f"then train with {ckpt.flag} {target}"
        if ckpt.flag.startswith("-")
        else f"then load {target} instead of {ckpt.flag}"  # the literal, as the script spells it
    )
    if script is not None and _needs_the_script(model):
        tail, notes = script_run(script, repo, _unknown_arguments(model))
        argv = ("bn2gn", "remap-ckpt", source, "--script", script, "--strict", *tail)
        return Command(argv, why, (*notes, then), fill_in)
    argv = ("bn2gn", "remap-ckpt", source, *model.argv(), "--strict")
    return Command(argv, why, (*model.notes, then), fill_in + model.fill_in)


def as_the_shell_runs_it(ckpt: Option, run: Optional[ShellRun]) -> Option:
    """The checkpoint the repository's shell line trains from: the value it passes for the option
    (given from the root already), else the default; a relative default is a path from the folder
    the line runs in (``cd src && python main.py``), so it is given from the root too."""
    if run is None:
        return ckpt
    given = _option_value(run.args, ckpt.flag) if ckpt.flag.startswith("-") else None
    if given:
        return dataclasses.replace(ckpt, default=given)
    if run.folder == "." or not ckpt.default or os.path.isabs(ckpt.default):
        return ckpt
    moved = Path(os.path.normpath(Path(run.folder) / ckpt.default))
    if moved.parts[:1] == ("..",):
        return ckpt  # outside the repository: left as written
    return dataclasses.replace(ckpt, default=moved.as_posix())


def _option_value(args: Sequence[str], flag: str) -> Optional[str]:
    """The value ``args`` give ``flag`` (``--flag VALUE`` or ``--flag=VALUE``); the last one wins."""
    value = None
    for index, arg in enumerate(args):
        if arg == flag and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith(flag + "="):
            value = arg[len(flag) + 1 :]
    return value


def _needs_the_script(model: ModelCall) -> bool:
    """No factory to name, or one whose arguments are computed at run time (``opt.heads``): the
    train script itself says which model its optimizer trains."""
    return model.spec == PLACEHOLDER or bool(model.fill_in)


def _unknown_arguments(model: ModelCall) -> str:
    """Why the factory form would not run, when it names a factory: its unknown arguments."""
    unknown = [a for a in model.args if a.endswith(UNKNOWN)]  # factory.py's ``NAME=...``
    return (
        f"the factory form needs values bn2gn cannot read ({', '.join(unknown)}): the script "
        "computes them"
        if unknown
        else ""
    )


def verify_command(
    model: ModelCall,
    script: str,
    trainers: Sequence[str],
    remaps: Sequence[Command],
    repo: Path = Path("."),
) -> Command:
    if _needs_the_script(model):
        return script_verify_command(script, trainers, remaps, repo, _unknown_arguments(model))
    argv = ["bn2gn", "verify", *model.argv(), *_checked_with(script, trainers, remaps)]
    return Command(tuple(argv), VERIFY_WHY, model.notes)


VERIFY_WHY = "runtime checks of the converted model with the patched freeze logic"


def _checked_with(script: str, trainers: Sequence[str], remaps: Sequence[Command]) -> List[str]:
    """The patched freeze logic and the remapped checkpoint verify checks with, when known (the
    input shapes verify reads off the model)."""
    argv = ["--freeze-from", script]
    for trainer in dict.fromkeys(t for t in trainers if t != script):
        argv += ["--freeze-from", trainer]
    known = [c.argv[2] for c in remaps if c.argv[2] != CHECKPOINT]
    if known:
        argv += ["--checkpoint", output_name(known[0])]
    return argv


def script_verify_command(
    script: str, trainers: Sequence[str], remaps: Sequence[Command], repo: Path, why: str = ""
) -> Command:
    """``bn2gn verify --script SCRIPT ... -- ARGS`` (see :func:`script_run`)."""
    tail, notes = script_run(script, repo, why)
    argv = ["bn2gn", "verify", "--script", script, *_checked_with(script, trainers, remaps), *tail]
    return Command(tuple(argv), VERIFY_WHY, tuple(notes))


def script_run(script: str, repo: Path, why: str = "") -> Tuple[List[str], List[str]]:
    """What follows a ``--script SCRIPT`` line, remap-ckpt's or verify's: ``-- ARGS``, the
    arguments a shell script of the repository runs SCRIPT with (``experiments/*.sh``), else
    nothing (the script's defaults); and the notes that say where they come from."""
    found = script_arguments(repo, script)
    notes = [
        "the model is the one the script's first optimizer is built on: bn2gn runs the "
        "script up to that point"
    ]
    if why:
        notes.append(why)
    if found is None:
        notes.append("no shell script of the repository runs it: its default arguments are used")
        return [], notes
    notes.append(f"the script's arguments as {found.where} passes them")
    return (["--", *found.args] if found.args else []), notes + found.notes()


#: where repositories keep the shell lines that run their train scripts
SHELL_SCRIPTS = ("experiments/*.sh", "scripts/*.sh", "*.sh")
SHELL_OPERATORS = {"&&", "||", ";", "|", ">", ">>", "<", "&", "2>&1"}


@dataclasses.dataclass(frozen=True)
class ShellRun:
    """A shell line that runs the train script: its arguments, where it is, and the folder it runs
    in (relative to the repository root, as its ``cd`` commands leave it)."""

    args: Tuple[str, ...]
    where: str  # FILE:LINE
    folder: str = "."
    rebased: Tuple[Tuple[str, str], ...] = ()  # (argument as written, as given from the root)

    def notes(self) -> List[str]:
        if self.folder == ".":
            return []
        line = (
            f"{self.where} runs it from {self.folder}/; bn2gn runs it from the folder this line is "
            "run in, with the script's own folder first on sys.path (as python puts it), so its "
            "imports and paths built from __file__ resolve as they do there"
        )
        if self.rebased:
            shown = ", ".join(f"{old} -> {new}" for old, new in self.rebased)
            line += f"; arguments naming files in {self.folder}/ are given from here: {shown}"
        return [line + "; files it opens relative to its working directory do not"]


def script_arguments(repo: Path, script: str) -> Optional[ShellRun]:
    """The first shell line that runs ``script`` with python, following the ``cd`` commands before
    it in its file (``cd src`` on a line of its own, or ``cd src && python main.py``)."""
    repo = Path(repo)
    for pattern in SHELL_SCRIPTS:
        for shell in sorted(repo.glob(pattern)):
            try:
                text = shell.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            folder: Optional[str] = "."  # a shell script of a repository runs from its root
            for number, line in _shell_lines(text):
                try:
                    words = shlex.split(line, comments=True)
                except ValueError:
                    continue
                for command in _commands(words):
                    if command[:1] == ["cd"]:
                        folder = _changed_folder(folder, command[1:])
                        continue
                    args = _runs(command, script, folder)
                    if args is not None:
                        where = f"{relative(shell, repo)}:{number}"
                        rebased = _rebased(repo, folder or ".", args)
                        shown = tuple(dict(rebased).get(a, a) for a in args)
                        return ShellRun(shown, where, folder or ".", tuple(rebased))
    return None


def _commands(words: List[str]) -> List[List[str]]:
    """The simple commands of a shell line, split at ``&&``, ``;``, ``|`` and the like."""
    commands, current = [], []
    for word in words:
        if word in SHELL_OPERATORS:
            commands.append(current)
            current = []
        elif word.endswith(";"):  # ``cd src; python main.py``: shlex keeps the ; on the word
            commands.append(current + [word[:-1]])
            current = []
        else:
            current.append(word)
    return [c for c in commands + [current] if c]


def _changed_folder(folder: Optional[str], args: List[str]) -> Optional[str]:
    """The folder after ``cd ARGS`` from ``folder``; None when it is not a plain relative path."""
    if folder is None or len(args) != 1 or args[0].startswith(("/", "~", "$", "-")):
        return None
    moved = Path(os.path.normpath(Path(folder) / args[0]))
    return None if moved.parts[:1] == ("..",) else moved.as_posix()


def _runs(command: List[str], script: str, folder: Optional[str]) -> Optional[List[str]]:
    """The arguments ``command`` gives ``script`` when it runs it with python, else None. From a
    folder bn2gn cannot follow (``cd $DIR``) the script's file name is enough."""
    if not command or not Path(command[0]).name.startswith("python"):
        return None
    rest = command[1:]
    while rest and rest[0].startswith("-") and rest[0] != "-m":
        rest = rest[1:]  # python's own options: -u, -O, -B
    if not rest:
        return None
    if folder is None:
        matches = Path(rest[0]).name == Path(script).name
    else:
        matches = Path(os.path.normpath(Path(folder) / rest[0])).as_posix() == script
    return list(rest[1:]) if matches else None


def _rebased(repo: Path, folder: str, args: List[str]) -> List[Tuple[str, str]]:
    """(argument, the same file named from the repository root) for each argument that names an
    existing file or folder from ``folder``, when ``folder`` is not the root."""
    if folder == ".":
        return []
    found = []
    for arg in args:
        if arg.startswith("-") or not arg or os.path.isabs(arg):
            continue
        target = os.path.normpath(repo / folder / arg)
        # a path, or a file name with a suffix: never a bare word such as a task name
        named = "/" in arg or (Path(arg).suffix and os.path.isfile(target))
        if named and os.path.exists(target):
            found.append((arg, Path(os.path.relpath(target, repo)).as_posix()))
    return found


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
