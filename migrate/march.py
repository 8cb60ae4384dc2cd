"""Merge-join of two byte-ordered listings: the one walk that sync, verify and plan all share."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from migrate.errors import ListingOutOfOrder
from migrate.storage.base import Entry

Pair = tuple[str, Entry | None, Entry | None]


def _ordered(entries: Iterable[Entry], side: str) -> Iterator[Entry]:
    """Pass entries through, failing loudly on anything not strictly increasing."""
    previous: str | None = None
    for entry in entries:
        if previous is not None and entry.path <= previous:
            raise ListingOutOfOrder(f"{side} listing is not in byte order: {entry.path!r} after {previous!r}")
        previous = entry.path
        yield entry


def march(source: Iterable[Entry], destination: Iterable[Entry]) -> Iterator[Pair]:
    """Yield ``(path, source_entry, destination_entry)`` for every path on either side, in order.

    Holds one entry per side at a time, so memory stays flat whatever the tree size.
    """
    src_iter = _ordered(source, "source")
    dst_iter = _ordered(destination, "destination")
    src = next(src_iter, None)
    dst = next(dst_iter, None)
    while src is not None or dst is not None:
        if dst is None or (src is not None and src.path < dst.path):
            assert src is not None
            yield src.path, src, None
            src = next(src_iter, None)
        elif src is None or dst.path < src.path:
            yield dst.path, None, dst
            dst = next(dst_iter, None)
        else:
            yield src.path, src, dst
            src = next(src_iter, None)
            dst = next(dst_iter, None)
