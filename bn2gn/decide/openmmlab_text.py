"""The top-level statements ``looks_like_openmmlab_config`` reads, found in the text without ``ast``.

The OpenMMLab note decides on a file's top-level statements only (definitions, ``with read_base()``,
the names that plain assignments bind). Parsing the 864 config files of mmdet's wheel cost more than
the rest of a scan of a tree with nothing to convert, so this module reads the same statements from
the text: strings and comments are blanked and bracketed groups collapsed by regular expressions (C
speed), which leaves one line per logical line. Whatever it cannot read with certainty (text
outside ASCII, ``(a) = ...``, an ``=`` left in a value, a ``with`` naming ``read_base`` in any other
form) answers ``None`` and the caller parses with ``ast`` as before. Unbalanced brackets and
unterminated strings are syntax errors for ``ast`` and answer ``False`` here too; other syntax
errors are not looked for (a broken config gets the note, and ``bn2gn config audit`` reports it).
``tests/unit/test_mmconfig_detect.py`` compares both readings on every fixture and generated cases.
"""

from __future__ import annotations

import keyword
import re
from typing import List, Optional, Set, Tuple

#: strings (any prefix: the prefix stays as a name, harmless), comments and line continuations, in
#: one left-to-right pass: whichever starts first wins, as in Python's tokenizer
_BLANKED = re.compile(
    r"'''(?:[^'\\]|\\.|'(?!''))*'''"
    r'|"""(?:[^"\\]|\\.|"(?!""))*"""'
    r"|'(?:[^'\\\n]|\\.)*'"
    r'|"(?:[^"\\\n]|\\.)*"'
    r"|#[^\n]*"
    r"|\\\n",
    re.DOTALL,
)
_INNERMOST_CALL = re.compile(r"\([^()\[\]{}]*\)")
_INNERMOST_OTHER = re.compile(r"\[[^()\[\]{}]*\]|\{[^()\[\]{}]*\}")
#: ``=`` that binds (not ``==``, ``!=``, ``<=``, ``>=``, ``:=`` nor an augmented assignment)
_BINDING = re.compile(r"(?<![=!<>:+\-*/%@&|^])=(?!=)")
_NAME = re.compile(r"\s*([A-Za-z_]\w*)\s*")
_READ_BASE_WITH = re.compile(r"with\s+(?:[A-Za-z_]\w*\s*\.\s*)*read_base\s*\x01\s*:")
_COMPOUND = {"if", "elif", "else", "for", "while", "try", "except", "finally"}
#: what strings, parenthesised groups and other bracketed groups become
STRING, GROUP, OTHER = "\x02", "\x01", "\x03"


def _blank(match: re.Match) -> str:
    token = match.group()
    return "" if token[0] == "#" else " " if token[0] == "\\" else STRING


def top_level_lines(text: str) -> Optional[List[str]]:
    """The module's logical lines with strings as ``\\x02`` and bracketed groups as ``\\x01``;
    ``[]`` for text that cannot be Python (an unterminated string, unbalanced brackets); None
    where the text holds what this reading does not handle."""
    if any(c in text for c in "\r\f\v\0"):
        return None
    flat = _BLANKED.sub(_blank, text)
    if "'" in flat or '"' in flat:
        return []
    if not flat.isascii():
        return None  # a name outside ASCII: ``ast`` compares it after NFKC
    if "\\" in flat or any(c in text for c in (STRING, GROUP, OTHER)):
        return None
    count = 1
    while count:
        flat, calls = _INNERMOST_CALL.subn(GROUP, flat)
        flat, count = _INNERMOST_OTHER.subn(OTHER, flat)
        count += calls
    if any(c in flat for c in "()[]{}"):
        return []
    return flat.split("\n")


def config_statements(text: str) -> Optional[Tuple[Optional[bool], Set[str]]]:
    """(the verdict of a definition or ``with read_base()`` met first, or None; the names plain
    assignments bind at the top level up to there), as ``ast`` would find them; None when unsure."""
    lines = top_level_lines(text)
    if lines is None:
        return None
    if not lines:
        return False, set()
    names: Set[str] = set()
    for line in lines:
        if not line or line[0] in " \t":
            continue  # blank, or the body of a compound statement
        if line[0] == "@":
            return False, names  # a decorated function or class
        word = _NAME.match(line)
        first = word.group(1) if word else ""
        if first in ("def", "class") or (first == "async" and line.split()[1:2] == ["def"]):
            return False, names
        if first == "with":
            if "read_base" not in text:
                continue  # (the line cannot tell: its groups are collapsed)
            return (True, names) if _READ_BASE_WITH.match(line) else None
        if first in _COMPOUND or first == "async":
            continue
        for statement in line.split(";"):
            bound = _bound_names(statement)
            if bound is None:
                return None
            names |= bound
    return None, names


def _bound_names(statement: str) -> Optional[Set[str]]:
    """The plain names an assignment statement binds; None when a target is parenthesised or a
    value holds another ``=`` (a lambda's default, an attribute target between names)."""
    pieces = _BINDING.split(statement)
    if len(pieces) == 1:
        return set()
    names = set()
    for piece in pieces[:-1]:
        name = _NAME.fullmatch(piece)
        if name and not keyword.iskeyword(name.group(1)):
            names.add(name.group(1))
        elif piece.strip()[:1] in (GROUP, OTHER) or "lambda" in piece:
            return None
    if _BINDING.search(pieces[-1]) or "lambda" in pieces[-1]:
        return None
    return names


_WORD_ENDS = re.compile(r"(?!\w)")
#: a line that starts a definition when it is not inside brackets or a string: ``^def\b``,
#: ``^class\b``, ``^async\b`` or ``^@`` (a word, then what must follow it; see ``first_line_start``)
_DEFINITION_LINE = (("def", _WORD_ENDS), ("class", _WORD_ENDS), ("async", _WORD_ENDS), ("@", None))
_SURE_DEFINITION = re.compile(r"def\b|class\b|async[ \t]+def\b|@")
#: ``^_base_[ \t]*=(?!=)``
_BASE_LINE = (("_base_", re.compile(r"[ \t]*=(?!=)")),)


def first_line_start(text: str, starts) -> int:
    """Where the first line of ``text`` beginning with one of ``starts`` (a word, and a pattern that
    must match right after it, or None) begins, -1 when none does: a line begins at the start of
    the text or after ``\n``, as ``^`` has it in ``re.MULTILINE``. One ``str.find`` a word: a
    pattern anchored at line starts has no literal to skip ahead by, and tries every character
    (four times as slow on mmdet's 864 configs)."""
    best = -1
    for word, rest in starts:
        at = 0 if text.startswith(word) else -1
        probe = 0
        while best < 0 or at < best:
            if at >= 0 and (rest is None or rest.match(text, at + len(word))):
                best = at
                break
            found = text.find("\n" + word, probe)
            if found < 0:
                break
            at = probe = found + 1
    return best


def quick_verdict(text: str) -> Optional[bool]:
    """The verdict for the common shapes, from the text before one line: a module with a top-level
    definition (and no ``read_base`` anywhere) is no config; one that binds ``_base_`` at the top
    level and has no line starting a definition is one. None for everything else."""
    if "read_base" in text or any(c in text for c in "\r\f\v\0"):
        return None
    definition = first_line_start(text, _DEFINITION_LINE)
    if definition >= 0:
        sure = _SURE_DEFINITION.match(text, definition)
        return False if sure and _starts_statement(text, definition) else None
    base = first_line_start(text, _BASE_LINE)
    if base >= 0 and _starts_statement(text, base) and _brackets_balance(text):
        return True
    return None


def _starts_statement(text: str, start: int) -> bool:
    """Whether the line at ``start`` (column 0) begins a top-level statement: the text before it
    closes every string and bracket and does not continue onto it."""
    before = text[:start]
    if before.endswith("\\\n"):
        return False
    lines = top_level_lines(before)
    return bool(lines)


def _brackets_balance(text: str) -> bool:
    """Counted over the whole text, strings and comments included: a cheap guard against the
    unclosed bracket of a half-edited config (which ``ast`` cannot parse)."""
    return all(text.count(o) == text.count(c) for o, c in ("()", "[]", "{}"))
