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
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import fields
from operator import attrgetter
from typing import IO, Any, Protocol

from migrate.errors import StorageError
from migrate.listing import _offer
from migrate.storage.base import Entry, LinkSink, ProblemSink, Storage
from migrate.storage.links import Followed
from migrate.storage.ranges import KeyRange

BATCH = 1000
LIVE_DEPTH = 16
"""Batches queued for the range the consumer is reading: its producer waits beyond that."""
_POLL_S = 0.1
PROBE = 2000
"""Entries of a source walk timed on one thread before it decides on more."""
WAITING = 0.25
"""A walk whose thread spent under this share of its time on the CPU waits (a cold walk of a local
disk spends about 0.4 there, kernel time included; a warm one about 0.95)."""
DISK_BYTES_PER_ENTRY = 64
"""Reads from the block device per entry that make a walk cold (cold: 4 to 28 KiB; warm: none)."""


def source_walk(storage: Storage, ranges: Sequence[KeyRange], threads: int, prefix: str = "",
                on_problem: ProblemSink | None = None, hash_limit: int = 0,
                spool_dir: str | None = None, on_link: LinkSink | None = None,
                walk_rest: RangesWalk | None = None) -> Iterator[Entry]:
    """A local tree's walk of ``ranges``, on ``threads`` threads only where that pays.

    Measured (bench/listing_bench.py, 200,000 files): a walk that waits on the disk (a cold page
    cache) runs 1.8 times as fast on 4 threads, 2.8 times when it also reads the link files; one
    that finds the cache warm is CPU-bound in the interpreter, and threads there only contend for
    it (up to 1.5 times slower). So the first ``PROBE`` entries are walked on this thread, and the
    rest goes to threads only if the probe waited: it made the disk read (Linux counts a thread's
    reads from the block device), or, on a network filesystem (whose reads no block device
    counts) or where the count is not kept, its thread spent under ``WAITING`` of the time on the
    CPU. On a local disk that count alone decides: a probe that read nothing from it did not wait
    on it, and a low share of CPU there is other threads holding the interpreter (verify lists
    the bucket on four while it walks).

    ``walk_rest`` walks what is left after a probe that did not reach the end of its range (a
    tree too large for the cost of starting it to show: ``migrate.walk_process.walk_elsewhere``
    runs it in a process of its own); a smaller tree's rest is ``parallel_walk``'s here.

    Symbolic links the ranges followed are checked against each other at the end, as in
    ``parallel_walk``; those that pass go to ``on_link``.
    """
    if not ranges:
        return
    followed = Followed()
    wall = cpu = 0.0
    seen, last = 0, None
    disk_before = _disk_reads()
    with closing(storage.walk(prefix, on_problem, hash_limit, within=ranges[0], on_link=followed.add)) as probe:
        while seen < PROBE:
            began, began_cpu = time.perf_counter(), time.thread_time()
            entry = next(probe, None)
            wall, cpu = wall + time.perf_counter() - began, cpu + time.thread_time() - began_cpu
            if entry is None:
                last = None  # the first range is over
                break
            seen, last = seen + 1, entry.path
            yield entry
    disk_after = _disk_reads()
    read = disk_after - disk_before if disk_before is not None and disk_after is not None else 0
    counted = disk_before is not None and disk_after is not None and storage.network_filesystem() is None
    waited = read >= DISK_BYTES_PER_ENTRY * max(seen, 1) or (not counted and cpu < WAITING * wall)
    # What the probe left of the first range starts just after its last path (no string lies between).
    rest = [*([KeyRange(last + "\x00", ranges[0].end)] if last is not None else []), *ranges[1:]]
    walk = walk_rest if walk_rest is not None and seen == PROBE else parallel_walk
    yield from walk(storage, rest, threads if waited else 1, prefix, on_problem, hash_limit, spool_dir, followed.add)
    followed.settle(on_problem, on_link)


class RangesWalk(Protocol):
    """``parallel_walk``'s signature: a walk of contiguous ranges, in byte order."""

    def __call__(self, storage: Storage, ranges: Sequence[KeyRange], threads: int, prefix: str = "",
                 on_problem: ProblemSink | None = None, hash_limit: int = 0,
                 spool_dir: str | None = None, on_link: LinkSink | None = None) -> Iterator[Entry]: ...


def _disk_reads() -> int | None:
    """Bytes this thread has had read from a block device (Linux), None where that is not known."""
    try:
        with open("/proc/thread-self/io") as io:
            for line in io:
                if line.startswith("read_bytes:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def parallel_walk(storage: Storage, ranges: Sequence[KeyRange], threads: int, prefix: str = "",
                  on_problem: ProblemSink | None = None, hash_limit: int = 0,
                  spool_dir: str | None = None, on_link: LinkSink | None = None) -> Iterator[Entry]:
    """Every entry of ``storage.walk(prefix, ...)`` within ``ranges`` (contiguous, in byte order:
    a shard's ``split``), listed by up to ``threads`` threads taking the ranges in order, yielded
    in byte order.

    An error in any range stops every thread and is raised in the consumer at its next entry,
    not when it reaches that range. ``on_problem`` is called from the listing threads. Closing
    the iterator stops the threads and removes the spilled files (in ``spool_dir``, default the
    system's temporary directory).

    Each range's walk sees only its own symbolic links (--follow-symlinks): once every range has
    ended, a link that overlaps another range's, as a whole walk would have refused it, goes to
    ``on_problem`` (migrate.storage.links), and the others to ``on_link``.
    """
    if any(a.end != b.start for a, b in zip(ranges, ranges[1:])):
        raise ValueError("parallel_walk needs contiguous ranges in byte order")
    followed = Followed()
    if threads <= 1 or len(ranges) <= 1:
        for span in ranges:
            yield from storage.walk(prefix, on_problem, hash_limit, within=span, on_link=followed.add)
        followed.settle(on_problem, on_link)
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
                walk = storage.walk(prefix, on_problem, hash_limit, within=ranges[index], on_link=followed.add)
                if not _list(walk, lanes[index], stop):
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
    followed.settle(on_problem, on_link)


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
                packed = None if batch is None else [pack(entry) for entry in batch]
                try:
                    if self._spill is None:
                        self._spill = tempfile.TemporaryFile(prefix="regmig-range-", dir=self._spool_dir)
                    pickle.dump(packed, self._spill, pickle.HIGHEST_PROTOCOL)
                except OSError as exc:
                    where = self._spool_dir or tempfile.gettempdir()
                    raise StorageError(f"cannot keep a listing ahead of its turn in {where}: {exc.strerror}") from exc
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


pack: Callable[[Entry], tuple[Any, ...]] = attrgetter(*(field.name for field in fields(Entry)))
"""An entry as the tuple of its fields in order (``Entry(*fields)`` again): pickled several times
faster than the object."""
