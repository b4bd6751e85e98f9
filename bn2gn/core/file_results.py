"""One path for write, --diff and --check: a transform yields a FileResult, apply_results acts on it.

A transform never raises for a bad file: the failure is a result, so one file never stops a run.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import sys
import warnings
from pathlib import Path
from typing import Callable, Iterable, List, Optional, TextIO, Tuple, Union

from .errors import EXIT_FAILED, EXIT_OK, SourceError, SourceFailure
from .rule_codes import Rule
from .source_files import SourceText, WriteRefused, decode_source, read_source, write_atomic

WRITE, DIFF, CHECK = "write", "diff", "check"
#: a 1 MB generated model took over 400 s and 1.2 GB (docs/development/performance.md): bigger files
#: are reported, never a hang
MAX_BYTES_VARIABLE = "BN2GN_MAX_FILE_BYTES"
DEFAULT_MAX_BYTES = 500_000


def max_transform_bytes() -> int:
    """The size above which a file is reported and left alone (``BN2GN_MAX_FILE_BYTES``, default 500 kB)."""
    value = os.environ.get(MAX_BYTES_VARIABLE, "")
    return int(value) if value.isdigit() else DEFAULT_MAX_BYTES


@dataclasses.dataclass(frozen=True)
class Change:
    """One edit a rule made, for the report (``file:line`` and what happened)."""

    rule: Rule
    line: int
    message: str

    def as_dict(self) -> dict:
        return {"rule": self.rule.code, "line": self.line, "message": self.message}


@dataclasses.dataclass(frozen=True)
class Refusal:
    """A site a rule found and left alone (``path`` as the plan names the file): the plan marks it unsure."""

    rule: Rule
    path: str
    line: int
    reason: str


@dataclasses.dataclass(frozen=True)
class FileResult:
    """What a transform made of one file; never changed afterwards (a later step makes a new one).

    ``checked``: ``new_text`` passed the parse check (only ``finish`` sets it); ``apply_results``
    checks any other changed result before writing it.
    """

    path: Path
    status: str  # "unchanged" | "changed" | "failed"
    source: Optional[SourceText] = None
    new_text: Optional[str] = None
    changes: Tuple[Change, ...] = ()
    failure: Optional[SourceFailure] = None
    notes: Tuple[str, ...] = ()
    refused: Tuple[Refusal, ...] = ()
    checked: bool = False

    def __post_init__(self):
        for name in (
            "changes",
            "notes",
            "refused",
        ):  # callers may pass lists; the result keeps tuples
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def error(self) -> Optional[str]:
        """The failure's one-line message (None unless failed)."""
        return None if self.failure is None else str(self.failure)

    @property
    def new_bytes(self) -> bytes:
        return self.source.encode(self.new_text)

    def as_dict(self) -> dict:
        data = {
            "path": str(self.path),
            "status": self.status,
            "changes": [c.as_dict() for c in self.changes],
        }
        if self.error:
            data["error"] = self.error
        if self.notes:
            data["notes"] = list(self.notes)
        return data


def failed(
    path: Path, error: Union[SourceFailure, str], source: Optional[SourceText] = None
) -> FileResult:
    """The failed result for ``path``; a plain message (which names the file itself) blames no line."""
    if not isinstance(error, SourceFailure):
        error = SourceFailure(str(path), None, error)
    return FileResult(path=Path(path), status="failed", source=source, failure=error)


def parse_failure(path: Path, exc: BaseException) -> SourceFailure:
    """``file:line: reason`` for a SyntaxError, a LibCST ParserSyntaxError or a SourceError."""
    if isinstance(exc, SourceError):
        return exc.failure
    line = getattr(exc, "lineno", None) or getattr(exc, "raw_line", None) or 1
    reason = getattr(exc, "msg", None) or getattr(exc, "message", None) or str(exc).splitlines()[0]
    return SourceFailure.at(path, line, f"cannot parse: {reason}")


def check_python(text: str, filename: str = "<bn2gn>") -> ast.Module:
    """The ``ast`` of ``text``; raises SyntaxError unless it is valid Python for this interpreter."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compile(text, filename, "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)


def finish(
    source: SourceText,
    new_text: str,
    changes: Iterable[Change],
    notes: Iterable[str] = (),
    refused: Iterable[Refusal] = (),
) -> FileResult:
    """Turn a transform's output into a result; output that does not parse is a failure, not a write."""
    if new_text == source.text:
        return FileResult(
            path=source.path,
            status="unchanged",
            source=source,
            new_text=new_text,
            notes=notes,
            refused=refused,
            checked=True,
        )
    try:  # Python's own parser is the judge; LibCST parsing it again would add a second full parse
        check_python(new_text)
        source.encode(new_text)
    except (SyntaxError, ValueError, UnicodeEncodeError) as exc:
        return failed(
            source.path,
            SourceFailure.at(
                source.path,
                1,
                f"bn2gn produced output that does not parse ({exc}); "
                "file left unchanged, please report this",
            ),
            source,
        )
    return FileResult(
        path=source.path,
        status="changed",
        source=source,
        new_text=new_text,
        changes=changes,
        notes=notes,
        refused=refused,
        checked=True,
    )


def _libcst_parse_error() -> type:
    """LibCST's parse error, when LibCST is loaded (if it is not, nothing can have raised it)."""
    cst = sys.modules.get("libcst")
    return cst.ParserSyntaxError if cst is not None else SyntaxError


def run_transform(
    path: Path, transform: Callable[[SourceText], FileResult], data: Optional[bytes] = None
) -> FileResult:
    """Read ``path`` (``data``: its bytes, read already) and run ``transform``; unreadable or
    unparsable input becomes a failed result."""
    try:
        source = read_source(path) if data is None else decode_source(path, data)
        limit = max_transform_bytes()
        if len(source.raw) > limit:
            return failed(
                path,
                SourceFailure.at(
                    path,
                    1,
                    f"{len(source.raw):,} bytes, more than bn2gn transforms with LibCST "
                    f"({limit:,}; set {MAX_BYTES_VARIABLE} to raise it); file left unchanged",
                ),
                source,
            )
        return transform(source)
    except SourceError as exc:
        return failed(path, exc.failure)
    except (SyntaxError, _libcst_parse_error()) as exc:
        return failed(path, parse_failure(path, exc))
    except RecursionError:
        return failed(
            path,
            SourceFailure.at(
                path, 1, "too deeply nested for bn2gn to analyse; file left unchanged"
            ),
        )


def unified_diff(result: FileResult) -> str:
    if result.status != "changed":
        return ""
    import difflib

    name = result.path.as_posix()
    lines = difflib.unified_diff(
        result.source.text.splitlines(keepends=True),
        result.new_text.splitlines(keepends=True),
        fromfile=f"a/{name}",
        tofile=f"b/{name}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _read_only(path: Path) -> bool:
    """No write bit at all: reported, never replaced behind the mode's back (docs/concepts/robustness.md)."""
    try:
        return not os.stat(path).st_mode & 0o222
    except OSError:
        return False


def apply_results(results: List[FileResult], mode: str, out: TextIO) -> int:
    """Write (mode write), print diffs (mode diff) or do nothing (mode check); return the exit code.

    A file that cannot be written is replaced in ``results`` by its failed result.
    """
    for index, result in enumerate(results):
        if result.status != "changed":
            continue
        if not result.checked:  # built by hand, not by finish: the parse check still applies
            result = results[index] = finish(
                result.source, result.new_text, result.changes, result.notes, result.refused
            )
            if result.status != "changed":
                continue
        if mode == WRITE:
            failure = _write(result)
            if failure is not None:
                results[index] = failed(result.path, failure, result.source)
        elif mode == DIFF:
            out.write(unified_diff(result))
    if any(r.status == "failed" for r in results):
        return EXIT_FAILED
    if mode == CHECK and any(r.status == "changed" for r in results):
        return EXIT_FAILED
    return EXIT_OK


def _write(result: FileResult) -> Optional[SourceFailure]:
    """Write one checked result; why it could not be written, or None."""
    if _read_only(result.path):
        return SourceFailure.at(
            result.path,
            1,
            "file is read-only; make it writable (chmod u+w) for bn2gn to change it; "
            "file left unchanged",
        )
    try:
        write_atomic(result.path, result.new_bytes, expected=result.source.raw)
    except WriteRefused as exc:  # changed since read, hard-linked, not a regular file
        return SourceFailure(str(exc.path), None, str(exc))
    except OSError as exc:
        return SourceFailure.at(
            result.path, 1, f"cannot write ({exc.strerror or exc}); file left unchanged"
        )
    return None
