"""Parsing a round's files in worker processes, when the relevance filter admits many at once.

Files are independent until their facts are taken, and a file that lets its tree go
(``ModuleFacts(keep_tree=False)``) comes back as facts that pickle: no ``ast`` node travels (torch's
1,827 parsed files pickle to about 50 MB, loaded in 0.3 s). The files that keep their trees (a
BatchNorm site, ``get_group_norm``) are parsed in this process meanwhile: their sites, init loops
and rewrite jobs hold their nodes. Results come back in the order asked, so the analysis sees the
files as a serial parse gives them. The workers start with the first round that has
``PARALLEL_FILES`` files to send, so a small repository never starts one, and end with the
analysis, or with an interrupt (``core.process.worker_pool``).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import pickle
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

from ..core import process
from ..core.errors import SourceError, SourceFailure
from .facts import ModuleFacts

#: a round is parsed in worker processes when at least this many of its files let their trees go
PARALLEL_FILES = 64
#: jobs per worker in one round: small enough that no worker waits long for another at the end
CHUNKS_PER_WORKER = 4

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
    ``workers``: how many (default: the CPUs this process may use); fewer than two parse every
    file here, as one worker would only take turns with it.
    """

    def __init__(
        self,
        parse: Parse,
        keeps_tree: Callable[[bytes], bool],
        in_worker: Optional[Parse] = None,
        workers: Optional[int] = None,
        threshold: Optional[int] = None,
    ):
        self.parse = parse
        self.keeps_tree = keeps_tree
        self.in_worker = in_worker or parse
        self.workers = available_cpus() if workers is None else workers
        self.threshold = PARALLEL_FILES if threshold is None else threshold
        self._stack = contextlib.ExitStack()
        self._pool = None

    def __enter__(self) -> "BatchParser":
        return self

    def __exit__(self, *exc) -> None:
        self._stack.__exit__(*exc)
        self._pool = None

    def __call__(self, files: Sequence[Tuple[Path, bytes]]) -> List[Parsed]:
        sent = [i for i, (_, data) in enumerate(files) if not self.keeps_tree(data)]
        if self.workers < 2 or len(sent) < max(self.threshold, 1):
            return parse_each(self.parse, files)
        pool = self._started()
        size = -(-len(sent) // (self.workers * CHUNKS_PER_WORKER))
        job = functools.partial(
            process.run_in_worker, functools.partial(_parse_chunk, self.in_worker)
        )
        futures = [
            pool.submit(job, [files[i] for i in sent[start : start + size]])
            for start in range(0, len(sent), size)
        ]
        out: List[Optional[Parsed]] = [None] * len(files)
        sending = set(sent)
        here = [i for i in range(len(files)) if i not in sending]
        for index, result in zip(here, parse_each(self.parse, [files[i] for i in here])):
            out[index] = result  # while the workers parse theirs
        results = iter(sent)
        for future in futures:
            for result in pickle.loads(future.result()):
                out[next(results)] = result
        return out  # type: ignore[return-value]

    def _started(self):
        if self._pool is None:
            self._pool = self._stack.enter_context(
                process.worker_pool(self.workers, _quiet_collector)
            )
        return self._pool


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


def _parse_chunk(parse: Parse, files: Sequence[Tuple[Path, bytes]]) -> bytes:
    """The facts of ``files``, pickled here so that what they leave (a definition and its file
    refer to each other) is freed before the next job."""
    data = pickle.dumps(parse_each(parse, files), protocol=pickle.HIGHEST_PROTOCOL)
    gc.collect(0)
    return data
