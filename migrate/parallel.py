"""A walk on several threads: contiguous key ranges listed at once, handed back as one stream in
byte order, with memory bounded whatever the lead of the ranges ahead.

Listing is a chain of requests, each waiting for the one before (a continuation token), so one
listing of ten million keys takes ten thousand round trips in a row. Ranges listed side by side
overlap those waits. Because the ranges are contiguous and in order, merging them back is a
concatenation: the range the consumer reads streams through a bounded queue; a range ahead of
it spills its entries to a temporary file, read back when the consumer gets there. Memory holds
a queue's worth of entries; the disk holds at most what the ranges ahead have listed.
"""

from __future__ import annotations

import pickle
import queue
import tempfile
import threading
from collections.abc import Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import fields
from operator import attrgetter
from typing import IO

from migrate.listing import _offer
from migrate.storage.base import Entry, ProblemSink, Storage
from migrate.storage.ranges import KeyRange

BATCH = 1000
LIVE_DEPTH = 16
"""Batches queued for the range the consumer is reading: its producer waits beyond that."""
_POLL_S = 0.1


def parallel_walk(storage: Storage, ranges: Sequence[KeyRange], threads: int, prefix: str = "",
                  on_problem: ProblemSink | None = None, hash_limit: int = 0,
                  spool_dir: str | None = None) -> Iterator[Entry]:
    """Every entry of ``storage.walk(prefix, ...)`` within ``ranges`` (contiguous, in byte order:
    a shard's ``split``), listed by up to ``threads`` threads taking the ranges in order, yielded
    in byte order.

    An error in any range stops every thread and is raised in the consumer at its next entry,
    not when it reaches that range. ``on_problem`` is called from the listing threads. Closing
    the iterator stops the threads and removes the spilled files (in ``spool_dir``, default the
    system's temporary directory).
    """
    if any(a.end != b.start for a, b in zip(ranges, ranges[1:])):
        raise ValueError("parallel_walk needs contiguous ranges in byte order")
    if threads <= 1 or len(ranges) <= 1:
        for span in ranges:
            yield from storage.walk(prefix, on_problem, hash_limit, within=span)
        return
    stop = threading.Event()
    failure: list[BaseException] = []
    lanes = [_Lane(spool_dir) for _ in ranges]
    pending = iter(range(len(ranges)))
    taking = threading.Lock()

    def work() -> None:
        while not stop.is_set():
            with taking:
                index = next(pending, None)
            if index is None:
                return
            try:
                if not _list(storage.walk(prefix, on_problem, hash_limit, within=ranges[index]), lanes[index], stop):
                    return
            except BaseException as exc:  # raised in the consumer
                failure.append(exc)
                stop.set()
                return

    for number in range(min(threads, len(ranges))):
        threading.Thread(target=work, name=f"regmig-range-{number}", daemon=True).start()
    try:
        for lane in lanes:
            for batch in lane.read(failure):
                yield from batch
                if failure:
                    raise failure[0]
    finally:
        stop.set()
        for lane in lanes:
            lane.discard()


def _list(entries: Generator[Entry, None, None], lane: _Lane, stop: threading.Event) -> bool:
    """One range into its lane, in batches; False when stopped before the end."""
    with closing(entries):
        batch: list[Entry] = []
        for entry in entries:
            batch.append(entry)
            if len(batch) >= BATCH:
                if not lane.put(batch, stop):
                    return False
                batch = []
        return (not batch or lane.put(batch, stop)) and lane.put(None, stop)


class _Lane:
    """One range's batches between its thread and the consumer: spilled to a temporary file until
    the consumer starts on the range, then through a bounded queue. The switch happens under a
    lock, so the file is complete and ahead of the queue when the consumer reads it."""

    def __init__(self, spool_dir: str | None) -> None:
        self._lock = threading.Lock()
        self._reading = False
        self._closed = False
        self._spool_dir = spool_dir
        self._spill: IO[bytes] | None = None
        self._spilled = 0
        self._queue: queue.Queue[list[Entry] | None] = queue.Queue(maxsize=LIVE_DEPTH)

    def put(self, batch: list[Entry] | None, stop: threading.Event) -> bool:
        """A batch, or None for the range's end."""
        with self._lock:
            if self._closed:
                return False
            if not self._reading:
                if self._spill is None:
                    self._spill = tempfile.TemporaryFile(prefix="regmig-range-", dir=self._spool_dir)
                packed = None if batch is None else [_PACK(entry) for entry in batch]
                pickle.dump(packed, self._spill, pickle.HIGHEST_PROTOCOL)
                self._spilled += 1
                return True
        return _offer(self._queue, batch, stop)  # type: ignore[arg-type]

    def read(self, failure: list[BaseException]) -> Iterator[list[Entry]]:
        with self._lock:
            self._reading = True
            spill, count = self._spill, self._spilled
        if spill is not None:
            spill.seek(0)
            for _ in range(count):
                packed = pickle.load(spill)
                if packed is None:
                    return
                yield [Entry(*fields) for fields in packed]
        while True:
            try:
                batch = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                if failure:
                    raise failure[0] from None
                continue
            if batch is None:
                return
            yield batch

    def discard(self) -> None:
        with self._lock:
            self._closed = True
            if self._spill is not None:
                self._spill.close()


_PACK = attrgetter(*(field.name for field in fields(Entry)))
"""An entry as the tuple of its fields in order: pickled several times faster than the object."""
