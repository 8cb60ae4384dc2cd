"""A local tree's walk in a process of its own, streamed back in byte order.

The walk makes system calls for every directory and file (a registry tree has more directories
than files), and each call hands the interpreter lock over to whichever thread waits for it: the
comparison, the listing's threads. Measured on a 100,000-object ``sync --verify`` on RGW: nine
futex calls per object, a third of the pass's CPU in the kernel. In a process of its own the
walk has its own lock and can run on another core; the pass receives its entries as batches of
plain tuples through a pipe, whose kernel buffer bounds what is in flight, and its problems and
followed links in the same stream.
"""

from __future__ import annotations

import enum
import multiprocessing
import pickle
import signal
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from migrate.errors import StorageError
from migrate.parallel import pack, parallel_walk
from migrate.storage.base import Entry, Link, LinkSink, ProblemSink, Storage, report_problem
from migrate.storage.ranges import KeyRange

BATCH = 1000
"""Entries per message: one pickling and one pipe hand-off per thousand."""


class _Message(enum.Enum):
    ENTRIES = "entries"
    PROBLEM = "problem"
    LINK = "link"
    FAILED = "failed"
    DONE = "done"


def can_walk_elsewhere() -> bool:
    """Only the program's own process starts one: a shard already running in a worker process
    (``--processes``, Dask) has its parallelism, and a daemonic process may have no children."""
    return multiprocessing.parent_process() is None and not multiprocessing.current_process().daemon


def walk_elsewhere(storage: Storage, ranges: Sequence[KeyRange], threads: int, prefix: str = "",
                   on_problem: ProblemSink | None = None, hash_limit: int = 0,
                   spool_dir: str | None = None, on_link: LinkSink | None = None) -> Iterator[Entry]:
    """``parallel_walk`` of ``ranges`` in a child process (``migrate.parallel.RangesWalk``): the
    same entries in the same order, its problems and links handed to ``on_problem`` and
    ``on_link`` here; an error there is raised here, and so is a child that ends without
    finishing (killed, out of memory). Closing the iterator stops the child.

    A child of a fork server, not a fork of this process: the pass holds threads (the listing's,
    its lease's renewal), which a fork would copy mid-step."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, type(storage).__module__])
    reader, writer = context.Pipe(duplex=False)
    child = context.Process(target=_walk, name="regmig-walk", daemon=True,
                            args=(storage, list(ranges), threads, prefix, hash_limit, spool_dir, writer))
    child.start()
    writer.close()
    try:
        while True:
            try:
                message, payload = reader.recv()
            except EOFError:
                child.join()
                raise StorageError(f"the walk of {storage.url} stopped before its end: its process ended "
                                   f"(exit code {child.exitcode})") from None
            if message is _Message.ENTRIES:
                for fields in payload:
                    yield Entry(*fields)
            elif message is _Message.PROBLEM:
                report_problem(on_problem, *payload)
            elif message is _Message.LINK:
                if on_link is not None:
                    on_link(payload)
            elif message is _Message.FAILED:
                raise payload
            else:
                return
    finally:
        reader.close()
        if child.is_alive():
            child.terminate()
        child.join()


def _walk(storage: Storage, ranges: list[KeyRange], threads: int, prefix: str, hash_limit: int,
          spool_dir: str | None, out: Any) -> None:
    """In the child: the walk, sent a batch at a time; problems and links as they come (from any
    of its threads). Ctrl-C is the pass's to handle: it closes the pipe and stops this process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = _Channel(out)
    batch: list[tuple[Any, ...]] = []
    try:
        for entry in parallel_walk(storage, ranges, threads, prefix, channel.problem, hash_limit, spool_dir,
                                   channel.link):
            batch.append(pack(entry))
            if len(batch) == BATCH:
                channel.send(_Message.ENTRIES, batch)
                batch = []
        if batch:
            channel.send(_Message.ENTRIES, batch)
        channel.send(_Message.DONE, None)
    except _Closed:
        pass  # the pass stopped reading: nobody to tell
    except BaseException as exc:
        channel.fail(exc)
    finally:
        out.close()


class _Closed(Exception):
    """The pass closed its end of the pipe."""


class _Channel:
    """The child's end of the pipe, shared by the walk's threads (problems come from any of them)."""

    def __init__(self, out: Any) -> None:
        self._out = out
        self._lock = threading.Lock()

    def send(self, message: _Message, payload: Any) -> None:
        with self._lock:
            try:
                self._out.send((message, payload))
            except (BrokenPipeError, ConnectionResetError, EOFError) as exc:
                raise _Closed from exc

    def problem(self, path: str, message: str) -> None:
        self.send(_Message.PROBLEM, (path, message))

    def link(self, followed: Link) -> None:
        self.send(_Message.LINK, followed)

    def fail(self, exc: BaseException) -> None:
        """The walk's error, to be raised in the pass; as a StorageError naming it when it cannot travel."""
        try:
            pickle.dumps(exc)
        except Exception:
            exc = StorageError(f"the walk failed: {type(exc).__name__}: {exc}")
        try:
            self.send(_Message.FAILED, exc)
        except _Closed:
            pass  # the pass stopped reading: nobody to tell
