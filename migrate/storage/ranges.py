"""Contiguous ranges of registry paths in byte order: what a shard's walk covers.

Python compares ``str`` by code point, which for valid Unicode is exactly the byte order of the
UTF-8 encoding that object stores list keys in, so ranges compare paths as strings. A range is
half-open, ``start <= path < end``; ``end`` None is past every path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

_MAX_CHAR = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


@dataclass(frozen=True, slots=True)
class KeyRange:
    """The paths ``start <= path < end`` (``end`` None: no upper bound)."""

    start: str = ""
    end: str | None = None

    def __post_init__(self) -> None:
        if self.end is not None and self.end < self.start:
            raise ValueError(f"a key range ends before it starts: {self.start!r} > {self.end!r}")

    def contains(self, path: str) -> bool:
        return self.start <= path and (self.end is None or path < self.end)

    @property
    def empty(self) -> bool:
        return self.end is not None and self.end <= self.start

    def under(self, prefix: str) -> KeyRange:
        """The part of this range whose paths start with ``prefix`` (possibly empty), as a range."""
        start = max(self.start, prefix)
        end = min_end(self.end, after_prefix(prefix))
        return KeyRange(start, end if end is None or end >= start else start)

    def straddles(self, prefix: str) -> bool:
        """Whether some but maybe not all paths starting with ``prefix`` lie in the range: one of
        its bounds lies among them. A directory for which this is false is wholly in or wholly out."""
        return (len(self.start) > len(prefix) and self.start.startswith(prefix)) or \
            (self.end is not None and self.end.startswith(prefix))


def after_prefix(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix`` (None for the empty prefix,
    or one made only of the highest code point)."""
    stripped = prefix.rstrip(chr(_MAX_CHAR))
    if not stripped:
        return None
    following = ord(stripped[-1]) + 1
    if following in _SURROGATES:
        following = _SURROGATES.stop
    return stripped[:-1] + chr(following)


def just_below(key: str) -> str:
    """A string below ``key`` with no string a real key could be between them, for services that
    list keys strictly after a given one (S3's StartAfter): keys extending the result would have to
    continue with U+10FFFF, and a caller drops anything below ``key`` anyway."""
    if not key:
        raise ValueError("nothing is below the empty string")
    last = ord(key[-1])
    if last == 0:
        return key[:-1]
    below = last - 1
    if below in _SURROGATES:
        below = _SURROGATES.start - 1
    return key[:-1] + chr(below) + chr(_MAX_CHAR)


def min_end(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def common_prefix(a: str, b: str) -> str:
    size = 0
    for x, y in zip(a, b):
        if x != y:
            break
        size += 1
    return a[:size]


def prefix_cover(base: str, span: KeyRange, children: Callable[[str], Iterable[str]]) -> Iterator[str]:
    """Disjoint key prefixes, in byte order, whose listings together hold every key of ``span``
    that starts with ``base``, for a service that can list a prefix but not start mid-way (Azure).

    ``children(level)`` is one delimiter ('/') listing: the names directly under ``level`` (blob
    names, and sub-prefixes ending in '/'), in byte order. The cover follows the names that exist
    rather than an alphabet, so it is exact for any key: a name that holds the range's start is
    descended; after it, each run of names becomes the shortest prefix that leaves out the name
    before it. So no key before the start is ever listed, and a caller reading the listings in
    order stops at the range's end (see ``base.trimmed``): names after it cost at most one page.
    """
    span = span.under(base)
    if span.empty:
        return
    level = base
    if span.end is not None:
        shared = common_prefix(span.start, span.end)
        level = shared if len(shared) > len(base) else base
    yield from _cover(level, span, children)


def _cover(level: str, span: KeyRange, children: Callable[[str], Iterable[str]]) -> Iterator[str]:
    start, end = span.start, span.end
    if start <= level:
        yield level  # every key under the level is at or after the start: one listing, cut at the end
        return
    covering: str | None = None
    previous: str | None = None
    for name in children(level):
        if end is not None and name >= end:
            return
        if covering is not None and name.startswith(covering):
            pass  # listed with the prefix already given
        elif name < start:
            if name.endswith("/") and name != level and start.startswith(name):
                yield from _cover(name, span, children)  # the start lies inside this sub-prefix
        else:
            # The shortest prefix of this name that the name before it lacks: it holds no key
            # before the start, since every key under it is under this name or a later one.
            cut = len(common_prefix(name, previous)) + 1 if previous is not None else len(level) + 1
            covering = name[:cut]
            yield covering
        previous = name
