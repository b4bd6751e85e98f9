"""LibCST's parse of a source file, after the standard parser agreed it is Python: the two
shapes LibCST cannot keep (mixed line endings, form feeds in indentation) are refused with the
line and what to do, instead of a change that would lose them."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ...core.errors import SourceError
from ...core.file_results import check_python
from ...core.source_files import SourceText

if TYPE_CHECKING:  # LibCST is imported when a file is parsed (scan never does)
    import libcst as cst


def parse_module(source: SourceText, checked: bool = False) -> cst.Module:
    """Parse with LibCST after the standard parser agreed the text is Python (LibCST is more lenient);
    ``checked``: the caller already ran check_python on this text."""
    if not checked:
        check_python(source.text, str(source.path))
    import libcst as cst

    try:
        module = cst.parse_module(source.text)
    except cst.ParserSyntaxError:
        line = mixed_newline_line(source.text)
        if line:
            raise SourceError(
                source.path,
                line,
                "mixed CRLF and LF line endings, which LibCST cannot parse; "
                "make them consistent (e.g. dos2unix) and run again",
            ) from None
        raise
    line = form_feed_indent_line(source.text)
    if line:
        raise SourceError(
            source.path,
            line,
            "form feed (\\f) in the indentation of a line of code, which "
            "LibCST does not keep; move it to a line of its own or remove it, and run again",
        )
    return module


_FORM_FEED_INDENT = re.compile(r"^[ \t]*\f[ \t\f]*[^\s]", re.MULTILINE)


def form_feed_indent_line(text: str) -> int:
    """The first line whose indentation holds a form feed (LibCST drops it, or indents new code with it),
    0 when none does; a form feed on a line of its own (a page break) is kept and fine."""
    if "\f" not in text:
        return 0
    match = _FORM_FEED_INDENT.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else 0


def mixed_newline_line(text: str) -> int:
    """The first line whose ending differs from the first line's, or 0 when all agree."""
    lines = text.splitlines(keepends=True)
    first = None
    for number, line in enumerate(lines, 1):
        ending = "\r\n" if line.endswith("\r\n") else "\n" if line.endswith("\n") else None
        if ending is not None:
            first = first or ending
            if ending != first:
                return number
    return 0
