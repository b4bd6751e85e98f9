"""What the running process is: a console command that exits when it is done, or a library caller.

A console process never frees what its analysis built, so it can skip the work of freeing it: the
collector's passes over millions of young ``ast`` nodes, and the teardown at exit.
"""

from __future__ import annotations

import contextlib
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


#: In a worker process: whether it is running a job (a signal then unwinds the job first).
_BUSY = [False]


def _worker_signal(signum, frame) -> None:
    if _BUSY[0]:
        raise Terminated(
            signum
        )  # the job's cleanup (temporary files) runs, then run_in_worker exits
    os._exit(128 + signum)


def _die_with_parent() -> None:
    """Linux: the kernel sends this worker SIGTERM when the process that started it dies, even by
    SIGKILL, so no worker outlives bn2gn."""
    import ctypes
    import signal

    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(128 + signal.SIGTERM)


def worker_init(initializer=None, initargs=()) -> None:
    """Initializer of bn2gn's worker processes: end on SIGTERM/SIGHUP/SIGINT and with the parent."""
    import signal

    for name in ("SIGTERM", "SIGHUP", "SIGINT"):
        number = getattr(signal, name, None)
        if number is not None:
            signal.signal(number, _worker_signal)
    _die_with_parent()
    if initializer is not None:
        initializer(*initargs)


def run_in_worker(func, item):
    """Run one job in a worker; a signal during it unwinds the job, then ends the worker."""
    _BUSY[0] = True
    try:
        return func(item)
    except (Terminated, KeyboardInterrupt) as exc:
        os._exit(exc.exit_code if isinstance(exc, Terminated) else 130)
    finally:
        _BUSY[0] = False


@contextlib.contextmanager
def worker_pool(workers: int, initializer=None, initargs=()):
    """A process pool whose workers end with the command: when the parent is interrupted or
    terminated they are told to stop (each finishing or undoing the file in hand), and they are
    waited for; when the parent is killed the kernel ends them."""
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(workers, initializer=worker_init, initargs=(initializer, initargs))
    try:
        yield pool
    except BaseException:
        stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def stop_workers(pool) -> None:
    """Tell ``pool``'s workers to stop now (each finishing or undoing the job in hand)."""
    for worker in list(getattr(pool, "_processes", {}).values()):  # no public way to reach them
        if worker.is_alive():
            worker.terminate()


class WarmPool:
    """Workers started ahead of their jobs, so that their ``initializer`` (imports) runs while the
    parent still works out what the jobs are. ``map`` as ``pool_map``; a pool whose ``map`` was
    never called is stopped at the end without waiting for its initializer."""

    def __init__(self, pool, size: int):
        self.pool = pool
        self.size = size
        self.used = False

    def map(self, func, items, chunksize: int = 1):
        self.used = True
        return pool_map(self.pool, func, items, chunksize=chunksize)


@contextlib.contextmanager
def warm_pool(workers: int, initializer=None, initargs=()):
    """``worker_pool`` whose workers start now (``WarmPool``)."""
    with worker_pool(workers, initializer, initargs) as pool:
        warm = WarmPool(pool, workers)
        pool.submit(_nothing)  # the first job starts the workers
        try:
            yield warm
        finally:
            if not warm.used:
                stop_workers(pool)


def _nothing() -> None:
    return None


def pool_map(pool, func, items, chunksize: int = 1):
    """``pool.map(func, items)`` with each call run through run_in_worker."""
    import functools

    return pool.map(functools.partial(run_in_worker, func), items, chunksize=chunksize)


@contextlib.contextmanager
def collector_paused():
    """No garbage collection inside: a LibCST parse allocates a hundred thousand objects and no
    cycle, and the collector's passes over them cost a tenth of a rewrite. Cycles made inside are
    collected by the next pass after it."""
    import gc

    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


#: Temporary files being written right now (``sources.atomic_output``); a run that a fatal signal
#: ends removes them before it exits.
LIVE_TEMPORARIES: set = set()
_SIGBUS_HANDLERS: list = []  # the installed callback, kept alive while installed


def _os_level_signal(signum: int, handler):
    """Install a C-level handler (ctypes): SIGBUS cannot be handled by Python's signal module,
    whose handler returns to the faulting instruction, which faults again forever."""
    import ctypes

    libc = ctypes.CDLL(None)
    libc.signal.restype = ctypes.c_void_p
    libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
    return libc.signal(signum, ctypes.cast(handler, ctypes.c_void_p) if handler else None)


@contextlib.contextmanager
def reading_mapped(message: str, code: int):
    """While a memory-mapped input is read: if the file shrinks, the read gets SIGBUS; end the run
    with ``message`` (one line), exit ``code`` and remove the temporary files, instead of dying
    with no message and leaving them."""
    import ctypes
    import signal

    number = getattr(signal, "SIGBUS", None)
    if number is None:
        yield
        return
    data = ("bn2gn: error: " + message + "\n").encode("utf-8", "replace")

    def on_sigbus(signum):
        for path in list(LIVE_TEMPORARIES):
            try:
                os.unlink(path)
            except OSError:
                pass
        os.write(2, data)
        os._exit(code)

    callback = ctypes.CFUNCTYPE(None, ctypes.c_int)(on_sigbus)
    try:
        previous = _os_level_signal(number, callback)
    except (OSError, AttributeError):
        yield
        return
    _SIGBUS_HANDLERS.append(callback)
    try:
        yield
    finally:
        _os_level_signal(number, previous)
        _SIGBUS_HANDLERS.remove(callback)
