"""Progress for runs over many files: ``files done / total`` on stderr, only on a terminal.

The command line switches it on (``enable``); the engine only calls ``step``/``done`` and never
prints by itself. Off with ``-q``, when stderr is not a TTY, and for runs of fewer than
MIN_FILES files, so reports, pipes and tests never see it.
"""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

#: below this many files a run is too short to need a progress line
MIN_FILES = 20
#: seconds between two redraws
INTERVAL = 0.1


class Progress:
    """One ``label: done/total files`` line, redrawn in place and erased when the phase ends."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.label = ""
        self.total = 0
        self.count = 0
        self.last = 0.0

    def start(self, label: str, total: int) -> None:
        self.label, self.total, self.count, self.last = label, total, 0, 0.0

    def step(self, count: int = 1) -> None:
        self.count += count
        now = time.monotonic()
        if self.total >= MIN_FILES and (now - self.last >= INTERVAL or self.count >= self.total):
            self.last = now
            self.stream.write(
                f"\r{self.label}: {min(self.count, self.total)}/{self.total} files\x1b[K"
            )
            self.stream.flush()

    def done(self) -> None:
        if self.total >= MIN_FILES and self.last:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
        self.total = self.count = 0
        self.last = 0.0


_current: Optional[Progress] = None


def enable(quiet: bool, stream: Optional[TextIO] = None) -> None:
    """Show progress on ``stream`` (stderr) unless ``quiet`` or it is not a terminal."""
    global _current
    stream = stream or sys.stderr
    isatty = getattr(stream, "isatty", None)
    _current = Progress(stream) if not quiet and isatty is not None and isatty() else None


def disable() -> None:
    global _current
    _current = None


def start(label: str, total: int) -> None:
    if _current is not None:
        _current.start(label, total)


def step(count: int = 1) -> None:
    if _current is not None:
        _current.step(count)


def done() -> None:
    if _current is not None:
        _current.done()
