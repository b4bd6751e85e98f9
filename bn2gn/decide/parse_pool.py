"""Parsing a round's files in worker processes, when the relevance filter admits many at once.

Files are independent until their facts are taken, and a file that lets its tree go
(``ModuleFacts(keep_tree=False)``) comes back as facts that pickle: no ``ast`` node travels (torch's
1,827 parsed files pickle to about 50 MB, loaded in 0.3 s). The files that keep their trees (a
BatchNorm site, ``get_group_norm``) are parsed in this process meanwhile: their sites, init loops
and rewrite jobs hold their nodes. Results come back in the order asked, so the analysis sees the
files as a serial parse gives them. The workers start with the first round that has
``PARALLEL_FILES`` files to send, or that has ``HERE_BYTES`` to parse in this process in a tree
with ``AHEAD_ROUNDS`` times ``PARALLEL_FILES`` files they may parse ahead meanwhile (torch's first
round: its 62 BatchNorm files, 2.8 MB); so a small repository never starts one. They end with the
analysis, or with an interrupt (``core.process.worker_pool``).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import gc
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple, Union

from ..core import process
from ..core.errors import SourceError, SourceFailure
from .facts import ModuleFacts

if TYPE_CHECKING:
    from concurrent.futures import Future

#: a round is parsed in worker processes when at least this many of its files let their trees go
PARALLEL_FILES = 64
#: ... or when the files it parses here (their trees kept) hold this many bytes, and this many
#: times PARALLEL_FILES files of the tree may be parsed ahead
HERE_BYTES = 1 << 20
AHEAD_ROUNDS = 8
#: files in one job of a round's files, and in one job of the files parsed ahead
CHUNK_FILES = 8
AHEAD_FILES = 8

Parse = Callable[[Path, bytes], ModuleFacts]
Parsed = Union[ModuleFacts, SourceFailure]


def parse_each(parse: Parse, files: Sequence[Tuple[Path, bytes]]) -> List[Parsed]:
    """``parse`` of each file in this process; a file it cannot read gives its failure."""
    out: List[Parsed] = []
    for path, data in files:
        try:
            out.append(parse(path, data))
        except SourceError as exc:
            out.append(exc.failure)
    return out


class BatchParser:
    """Parses a round's files in order, in worker processes when there are enough of them.

    ``keeps_tree(data)``: whether the file's facts keep its tree (parsed in this process, as
    nodes do not pickle cheaply). ``in_worker``: what a worker runs instead of ``parse`` (the same
    facts, with what else a worker may take for this process: ``relevance.with_code_words``).
    ``ahead``: the files a later round may ask for, in the order to parse them ahead: once the
    workers have started, each one takes the files a round asks for first and then the next of
    these, so that they parse while this process reads the text of the last round. ``workers``:
    how many (default: the CPUs this process may use); fewer than two parse every file here, as
    one worker would only take turns with it.
    """

    def __init__(
        self,
        parse: Parse,
        keeps_tree: Callable[[bytes], bool],
        in_worker: Optional[Parse] = None,
        workers: Optional[int] = None,
        threshold: Optional[int] = None,
        ahead: Optional[Dict[Path, bytes]] = None,
    ):
        self.parse = parse
        self.keeps_tree = keeps_tree
        self.in_worker = in_worker or parse
        self.workers = available_cpus() if workers is None else workers
        self.threshold = PARALLEL_FILES if threshold is None else threshold
        self._stack = contextlib.ExitStack()
        self._pool = None
        self._lock = threading.RLock()
        self._sent = threading.Condition(self._lock)  # a job was sent, or sending stopped
        self._broken: Optional[BaseException] = None
        self._data: Dict[Path, bytes] = dict(ahead or {})
        self._ahead = collections.deque(p for p, data in self._data.items() if not keeps_tree(data))
        self._asked: collections.deque = collections.deque()
        self._future_of: Dict[Path, "Future"] = {}
        self._running = 0
        self._elsewhere: List["Future"] = []
        self._closed = False

    def __enter__(self) -> "BatchParser":
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._closed = True  # no job is sent once the pool shuts down
            jobs = set(self._future_of.values()) | set(self._elsewhere)
        if self._pool is not None and any(not job.done() for job in jobs):
            # files parsed ahead that no round asked for, or insertions for another backbone:
            # nothing waits for them (a worker writes nothing)
            process.stop_workers(self._pool)
        self._stack.__exit__(*exc)
        self._pool = None

    def __call__(self, files: Sequence[Tuple[Path, bytes]]) -> List[Parsed]:
        sent = [i for i, (_, data) in enumerate(files) if not self.keeps_tree(data)]
        if self.workers < 2 or (self._pool is None and not self._worth_starting(files, sent)):
            return parse_each(self.parse, files)
        if not self._started():
            return parse_each(self.parse, files)
        with self._lock:
            for i in sent:
                path = files[i][0]
                if path not in self._future_of:
                    self._data[path] = files[i][1]
                    self._asked.append(path)
            self._send()
        out: List[Optional[Parsed]] = [None] * len(files)
        sending = set(sent)
        here = [i for i in range(len(files)) if i not in sending]
        for index, result in zip(here, parse_each(self.parse, [files[i] for i in here])):
            out[index] = result  # while the workers parse theirs
        import pickle  # loaded already when anything was sent (``_started``)

        for i in sent:
            try:
                out[i] = pickle.loads(self._job_of(files[i][0]).result()[files[i][0]])
            except RuntimeError:  # a worker died (killed, out of memory): parsed here instead
                out[i] = parse_each(self.parse, [files[i]])[0]
        return out  # type: ignore[return-value]

    def _job_of(self, path: Path) -> "Future":
        """The job parsing ``path``, once it is sent (a job is sent as another one ends)."""
        with self._sent:
            while path not in self._future_of:
                if self._broken is not None:
                    raise self._broken
                self._sent.wait()
            return self._future_of[path]

    def elsewhere(self, func: Callable, *args) -> "Optional[Future]":
        """``func(*args)`` in a worker, once no round asks for more files (nothing more is parsed
        ahead); None when no worker was started."""
        with self._lock:
            self._ahead.clear()
            if self._pool is None or self._closed:
                return None
            try:
                future = self._pool.submit(process.run_in_worker, _apply, (func, args))
            except RuntimeError:  # a worker died
                return None
            self._elsewhere.append(future)
            return future

    def _worth_starting(self, files: Sequence[Tuple[Path, bytes]], sent: List[int]) -> bool:
        """Whether a round of ``files`` that would send those at ``sent`` starts the workers."""
        least = max(self.threshold, 1)
        if len(sent) >= least:
            return True
        if len(self._ahead) < AHEAD_ROUNDS * least:
            return False
        sending = set(sent)
        here = sum(len(data) for i, (_, data) in enumerate(files) if i not in sending)
        return here >= HERE_BYTES

    def _started(self) -> bool:
        """Whether the workers run (started now if need be); a system that cannot start them (no
        working ``sem_open``, no processes left) has every file parsed here."""
        if self._pool is None:
            # pickle is loaded here, not with this module (a plan that starts no worker, every small
            # repository's, needs none), and before the fork: a forked worker must import nothing,
            # since another thread of this process may hold the import lock as it forks
            import pickle  # noqa: F401

            try:
                self._pool = self._stack.enter_context(
                    process.worker_pool(self.workers, _quiet_collector)
                )
            except (OSError, ImportError, NotImplementedError):
                self.workers = 1
                return False
        return True

    def _send(self) -> None:
        """Keep every worker busy with one job and one waiting: the files asked for first, then
        the next files ahead (called again as each job ends, from the pool's own thread)."""
        with self._lock:
            while not self._closed and self._running < 2 * self.workers:
                chunk = self._next_chunk()
                if not chunk:
                    return
                job = functools.partial(
                    process.run_in_worker, functools.partial(_parse_chunk, self.in_worker)
                )
                try:
                    future = self._pool.submit(job, [(p, self._data[p]) for p in chunk])
                except RuntimeError as exc:  # a worker died, or an interrupt shuts the pool down
                    self._broken = exc
                    self._sent.notify_all()
                    return
                self._running += 1
                for path in chunk:
                    self._future_of[path] = future
                self._sent.notify_all()
                future.add_done_callback(self._ended)

    def _next_chunk(self) -> List[Path]:
        size = CHUNK_FILES if self._asked else AHEAD_FILES
        chunk: List[Path] = []
        for queue in (self._asked, self._ahead):
            while queue and len(chunk) < size:
                path = queue.popleft()
                if path not in self._future_of and path not in chunk:
                    chunk.append(path)
            if chunk:
                return chunk
        return chunk

    def _ended(self, future) -> None:
        with self._lock:
            self._running -= 1
            if future.cancelled() or future.exception() is not None:
                self._broken = self._broken or RuntimeError("a parse worker failed")
                self._sent.notify_all()
            elif not self._closed:
                self._send()


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _quiet_collector() -> None:
    """A worker's collector does not run while it parses (``scan.collector_paused``'s reason), and
    never looks at what the worker inherited: only at what one job left (``_parse_chunk``)."""
    gc.disable()
    gc.freeze()


def _apply(job: Tuple[Callable, tuple]):
    func, args = job
    return func(*args)


def _parse_chunk(parse: Parse, files: Sequence[Tuple[Path, bytes]]) -> Dict[Path, bytes]:
    """The facts of each of ``files``, pickled one by one (a file parsed ahead is loaded only
    when a round asks for it) and here, so that what they leave (a definition and its file refer
    to each other) is freed before the next job."""
    import pickle  # a forked worker has it already (``_started``), a spawned one imports it

    out = {
        path: pickle.dumps(parsed, protocol=pickle.HIGHEST_PROTOCOL)
        for (path, _), parsed in zip(files, parse_each(parse, files))
    }
    gc.collect(0)
    return out
