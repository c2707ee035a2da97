"""Check items on every core, results in input order, with a bounded number in flight.

On Linux the workers are forked: they start at once, share the parent's imports, and a caller's
script needs no `if __name__ == "__main__":` guard. Forking a process that runs native threads
(TensorFlow's, once a tfds source has imported it) is safe here because the workers only run
Pillow, NumPy and hashlib, never TensorFlow; glibc, NumPy's OpenBLAS and CPython reset their
own locks at fork. Elsewhere (macOS, Windows) they are spawned, which re-imports the caller's
main module in each worker.

At most a few chunks are in flight, so memory stays flat however long the stream is (a source
that carries its bytes only holds those of the window). Given a `spill_dir`, the process that
checks an image also appends the bytes to keep to its own file there and returns only where
they are (`Stored`), so image bytes never travel back through a pipe. A worker that dies (a decoder crash on
hostile input) costs only its item: the chunks in flight are re-checked one item at a time in
a separate process, and the culprit is quarantined.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from itertools import chain, islice
from typing import Any, BinaryIO, TypeVar

from components.ingest.validate import Checked, check_chunk, rejected

T = TypeVar("T")
# Below this many items a pool costs more than it saves: check them in this process.
PARALLEL_MIN_ITEMS = 256
CHUNK_SIZE = 32
CHUNKS_IN_FLIGHT_PER_WORKER = 2

Read = Callable[[], Any]


@dataclass(frozen=True)
class Stored:
    """Where the checking process wrote a kept image's bytes (its Checked.data is then b"")."""

    path: str
    offset: int
    length: int


Result = tuple[Checked, Stored | None]


class WorkerStartError(RuntimeError):
    """The worker processes could not start; the message says what to do."""


def default_workers() -> int:
    """The cores this process may run on (a container's CPU set, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def start_method() -> str:
    return "fork" if sys.platform.startswith("linux") else "spawn"


def check_in_order(
    entries: Iterable[tuple[T, Read]],
    channels: int,
    min_side: int,
    workers: int | None = None,
    spill_dir: str | None = None,
) -> Iterator[tuple[T, Checked, Stored | None]]:
    """Yield `(payload, checked, stored)` for each `(payload, read)`, in input order.

    Without `spill_dir`, `checked.data` holds the bytes to keep and `stored` is None.
    """
    workers = workers or default_workers()
    stream = iter(entries)
    head = list(islice(stream, PARALLEL_MIN_ITEMS))
    if workers <= 1 or len(head) < PARALLEL_MIN_ITEMS:
        try:
            for chunk in _chunks(chain(head, stream), CHUNK_SIZE):
                results = check_and_store(
                    [read for _, read in chunk], channels, min_side, spill_dir
                )
                for (payload, _), (checked, stored) in zip(chunk, results, strict=True):
                    yield payload, checked, stored
        finally:
            _close_spill()
        return
    context = multiprocessing.get_context(start_method())
    pool = _start_pool(workers, context)
    pending: deque[tuple[list[T], list[Read], Future[list[Result]], ProcessPoolExecutor]] = deque()
    task = (channels, min_side, spill_dir)
    try:
        for chunk in _chunks(chain(head, stream), CHUNK_SIZE):
            payloads = [payload for payload, _ in chunk]
            reads = [read for _, read in chunk]
            try:
                future = pool.submit(check_and_store, reads, *task)
            except BrokenProcessPool:
                pool = _restart(pool, workers, context)
                future = pool.submit(check_and_store, reads, *task)
            pending.append((payloads, reads, future, pool))
            while len(pending) >= workers * CHUNKS_IN_FLIGHT_PER_WORKER:
                payloads, reads, future, owner = pending.popleft()
                try:
                    results = future.result()
                except BrokenProcessPool:
                    results = _isolated(reads, task, context)
                    if owner is pool:
                        pool = _restart(pool, workers, context)
                for payload, (checked, stored) in zip(payloads, results, strict=True):
                    yield payload, checked, stored
        while pending:
            payloads, reads, future, _ = pending.popleft()
            try:
                results = future.result()
            except BrokenProcessPool:
                results = _isolated(reads, task, context)
            for payload, (checked, stored) in zip(payloads, results, strict=True):
                yield payload, checked, stored
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def check_and_store(
    reads: list[Read], channels: int, min_side: int, spill_dir: str | None
) -> list[Result]:
    """Check a chunk (the unit of work of a worker); append kept bytes to this process's file."""
    results: list[Result] = []
    for checked in check_chunk(reads, channels, min_side):
        if spill_dir is None or checked.data is None:
            results.append((checked, None))
        else:
            results.append((replace(checked, data=b""), _store(spill_dir, checked.data)))
    if _spill is not None:
        _spill[2].flush()  # the parent reads the bytes once every chunk is done
    return results


# This process's spill file: (spill_dir, path, file). One per process, so appends need no lock.
_spill: tuple[str, str, BinaryIO] | None = None


def _store(spill_dir: str, data: bytes) -> Stored:
    global _spill
    if _spill is None or _spill[0] != spill_dir:
        _close_spill()
        path = os.path.join(spill_dir, f"images-{os.getpid()}.bin")
        _spill = (spill_dir, path, open(path, "ab"))  # noqa: SIM115 - kept open across chunks
    _, path, file = _spill
    offset = file.tell()
    file.write(data)
    return Stored(path, offset, len(data))


def _close_spill() -> None:
    global _spill
    if _spill is not None:
        _spill[2].close()
        _spill = None


def _start_pool(workers: int, context: Any) -> ProcessPoolExecutor:
    """A pool whose workers are up (a fork pool starts all of them at the first task)."""
    # A forked worker must not inherit (and append to) the parent's spill file.
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_forget_spill)
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns about forking a threaded process; see the module docstring.
            warnings.filterwarnings(
                "ignore", "This process .* is multi-threaded", DeprecationWarning
            )
            pool.submit(os.getpid).result()
    except BrokenProcessPool:
        pool.shutdown(wait=True, cancel_futures=True)
        raise WorkerStartError(
            f"the image-decoding worker processes ({context.get_start_method()}) died on start; "
            "a script that calls ingest() must guard its top level with "
            '`if __name__ == "__main__":` (spawned workers import the main module), '
            "or pass workers=1 to decode in this process"
        ) from None
    return pool


def _restart(pool: ProcessPoolExecutor, workers: int, context: Any) -> ProcessPoolExecutor:
    pool.shutdown(wait=True, cancel_futures=True)
    return _start_pool(workers, context)


def _isolated(reads: list[Read], task: tuple[Any, ...], context: Any) -> list[Result]:
    """Check items one at a time in a single worker, so that a crash names its item."""
    results: list[Result] = []
    solo: ProcessPoolExecutor | None = None
    for read in reads:
        if solo is None:
            solo = _start_pool(1, context)
        try:
            results.extend(solo.submit(check_and_store, [read], *task).result())
        except BrokenProcessPool:
            results.append(
                (rejected("corrupt", "the decoder crashed (its worker process died)"), None)
            )
            solo.shutdown(wait=True)
            solo = None
    if solo is not None:
        solo.shutdown(wait=True)
    return results


def _forget_spill() -> None:
    global _spill
    _spill = None


def _chunks(stream: Iterator[T], size: int) -> Iterator[list[T]]:
    while chunk := list(islice(stream, size)):
        yield chunk
