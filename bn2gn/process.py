"""What the running process is: a console command that exits when it is done, or a library caller.

A console process never frees what its analysis built, so it can skip the work of freeing it: the
collector's passes over millions of young ``ast`` nodes, and the teardown at exit.
"""

from __future__ import annotations

import os
import sys

_CONSOLE = [False]


def mark_console() -> None:
    """Called by the console entry point only: the process ends with the command."""
    _CONSOLE[0] = True


def is_console() -> bool:
    return _CONSOLE[0]


def quick_exit(code) -> None:
    """Exit with ``code`` as ``sys.exit`` would, after the exit handlers and a flush of the output,
    but without tearing down every object: freeing a torch-sized plan (and the collector's last pass
    over it) took 8 s of an 80 s torch scan."""
    import atexit
    import threading

    if threading.active_count() > 1 or sys.getprofile() or sys.gettrace():
        # a thread still running, or a profiler or debugger that reports when the program ends
        sys.exit(code)
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can be said there
            pass
    os._exit(code)


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: raised where the program is, so every ``finally`` and cleanup
    (temporary files, worker processes) runs as it does for Ctrl-C. A BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise_terminated(signum, frame) -> None:
    raise Terminated(signum)


def end_on_signals() -> None:
    """A console process ends on SIGTERM and SIGHUP the way it ends on SIGINT: cleaned up."""
    import signal

    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) in (signal.SIG_DFL, None):
            signal.signal(number, _raise_terminated)
