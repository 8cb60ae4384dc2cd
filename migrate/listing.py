"""Listing helpers: the registry's exclusions applied to a walk, and read-ahead on a thread."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from migrate import tree
from migrate.storage.base import Entry

T = TypeVar("T")
_BATCH = 512
_DONE = object()


def registry_entries(entries: Iterable[Entry], *, include_uploads: bool, skip_markers: bool,
                     on_excluded: Callable[[Entry], None] | None = None) -> Iterator[Entry]:
    """Drop what a migration never copies or counts: ``_uploads`` contents, tmp debris, and (on a
    source) zero-byte directory markers, so a bucket-to-bucket copy never spreads them."""
    for entry in entries:
        if tree.is_excluded(entry.path, include_uploads):
            if on_excluded:
                on_excluded(entry)
            continue
        if skip_markers and tree.is_marker(entry.path, entry.size):
            continue
        yield entry


def read_ahead(items: Iterable[T], depth: int = 16) -> Iterator[T]:
    """Run ``items`` on its own thread, ``depth`` batches ahead, so both listings overlap the work.

    An exception in the producer is re-raised in the consumer; closing the consumer stops the producer.
    """
    channel: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        batch: list[T] = []
        try:
            for item in items:
                batch.append(item)
                if len(batch) >= _BATCH:
                    if not _offer(channel, batch, stop):
                        return
                    batch = []
            _offer(channel, batch, stop)
            _offer(channel, _DONE, stop)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            _offer(channel, exc, stop)

    thread = threading.Thread(target=produce, name="regmig-listing", daemon=True)
    thread.start()
    try:
        while True:
            got = channel.get()
            if got is _DONE:
                return
            if isinstance(got, BaseException):
                raise got
            yield from got  # type: ignore[misc]
    finally:
        stop.set()


def _offer(channel: queue.Queue[object], item: object, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            channel.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False
