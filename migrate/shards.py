"""Shards: a registry's key space cut into N contiguous byte-order ranges of about equal work.

A shard is the unit of work of a scaled-out run: its part of the source walk, its part of the
destination listing, its copies and its result. The cut is a pure function of N, computed with
exact fractions, so N array-job processes on N machines that never talk to each other compute
the same ranges, and every path under the root lies in exactly one of them (the first range
starts at "", the last has no end, each starts where the one before ends).

Where the cuts go, without reading the tree:

- **Blobs and repositories share the work half and half** (``BLOB_SHARE``). Blobs hold all the
  bytes but about a third of the objects; repositories hold the links, about two thirds of the
  objects and no bytes to speak of. Half and half is the compromise between a copy's bytes and a
  final pass's (or verify's) object count; a run with more shards than processes evens out the rest.
- **Blobs by their hex prefix.** Digests are uniform, so ``blobs/sha256/<2 hex>/<hex>`` keys are
  cut at equal hex positions, at most four hex digits deep. A cut that falls on a whole
  two-digit prefix is written as that directory (``blobs/sha256/40``), so power-of-two counts
  give cuts that are whole directories, which every backend lists with least effort.
- **Repositories by name, from a fixed table.** Names do not start uniformly ('s', 'c', 'd'
  are ten times as common as 'x' or 'q'; digits are rare). ``_FIRST`` and ``_SECOND`` are the
  frequencies (per 10,000) of the first and second character of the 886,000 project names on
  PyPI, with the Python-specific leading "py" taken off: a large public sample of how software
  projects are named. Deeper characters count as uniform over [0-9a-z]. A cut is at most four
  characters after ``repositories/`` and never holds '_', so it never falls inside one
  repository (every key of a repository continues its name with "/_"). It may fall between the
  projects of one group. What no fixed table can know is a tree whose repositories sit mostly
  under one group: that group's range is then larger than its share.
- Everything else (lockfiles, other digest algorithms, foreign keys) falls into whichever range
  holds it by byte order; none of it is counted as work.
"""

from __future__ import annotations

import bisect
import functools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from migrate import tree
from migrate.errors import BadInput
from migrate.storage.ranges import KeyRange

BLOB_SHARE = Fraction(1, 2)
SHA256_BLOBS = tree.BLOBS + "sha256/"
MAX_SHARDS = 4096
_HEX_DEPTH = 4


def _table(text: str) -> tuple[tuple[str, int], ...]:
    return tuple((item[0], int(item[1:])) for item in text.split())


# First and second characters of PyPI project names, per 10,000 (see the module docstring);
# every character at least 1, so a cut can land anywhere. In byte order.
_FIRST = _table("01 13 24 35 42 51 61 71 81 91 a749 b365 c758 d735 e312 f417 g377 h253 i271 j151 k176 l377 "
                "m686 n326 o512 p614 q107 r398 s944 t696 u122 v180 w219 x80 y77 z81")
_SECOND = _table("-20 .1 /1 05 17 222 319 47 53 62 72 84 92 _1 a1215 b128 c295 d432 e1118 f119 g132 h335 i990 "
                 "j232 k93 l512 m226 n312 o1062 p380 q59 r575 s316 t299 u512 v92 w119 x92 y213 z50")
_DEEPER = tuple((char, 1) for char in "0123456789abcdefghijklmnopqrstuvwxyz")
_NAME_LEVELS = (_FIRST, _SECOND, _DEEPER, _DEEPER)
_INDEX_VARIABLES = ("JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX", "SLURM_ARRAY_TASK_ID")
"""Where an array job's task learns its index: Kubernetes Indexed Jobs, AWS Batch, Slurm."""


@dataclass(frozen=True, slots=True)
class Shard(KeyRange):
    """Shard ``index`` of ``count`` (from 0): the paths ``start <= path < end``."""

    index: int = 0
    count: int = 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str, environ: Mapping[str, str] = os.environ) -> Shard:
        """``I/N`` (I from 0 to N-1), or ``auto/N`` with I from the array job's environment
        (JOB_COMPLETION_INDEX, AWS_BATCH_JOB_ARRAY_INDEX, or SLURM_ARRAY_TASK_ID counted from
        SLURM_ARRAY_TASK_MIN)."""
        index_text, slash, count_text = text.strip().partition("/")
        if not slash or not count_text.isdigit() or not (index_text.isdigit() or index_text == "auto"):
            raise BadInput(f"shard {text!r}: write it as I/N (for example 0/8) or auto/N")
        count = int(count_text)
        index = _index_from(environ) if index_text == "auto" else int(index_text)
        if not 1 <= count <= MAX_SHARDS:
            raise BadInput(f"shard {text!r}: the count must be from 1 to {MAX_SHARDS}")
        if not 0 <= index < count:
            raise BadInput(f"shard {text!r}: the index {index} is not from 0 to {count - 1} (shards count from 0)")
        return partition(count)[index]

    def split(self, parts: int) -> tuple[KeyRange, ...]:
        """This shard's range cut into up to ``parts`` contiguous ranges of about equal work (for
        listing it on several threads): the same cuts as shards ``index*parts`` to
        ``index*parts + parts - 1`` of ``count*parts``, so they start and end where this does."""
        if parts < 1:
            raise ValueError("a shard splits into one part or more")
        cuts = [boundary(Fraction(self.index * parts + j, self.count * parts)) for j in range(1, parts)]
        edges = [self.start, *cuts, self.end]
        ranges = (KeyRange(lo, hi) for lo, hi in zip(edges, edges[1:]))
        return tuple(part for part in ranges if not part.empty)


WHOLE = Shard()
"""The whole tree as one shard: an unsharded run is shard 0/1."""


@functools.lru_cache(maxsize=64)
def partition(count: int) -> tuple[Shard, ...]:
    """The ``count`` shards, in byte order."""
    if not 1 <= count <= MAX_SHARDS:
        raise BadInput(f"the shard count must be from 1 to {MAX_SHARDS}, not {count}")
    cuts = boundaries(count)
    edges = ["", *cuts, None]
    return tuple(Shard(start=edges[i], end=edges[i + 1], index=i, count=count)  # type: ignore[arg-type]
                 for i in range(count))


@functools.lru_cache(maxsize=64)
def boundaries(count: int) -> tuple[str, ...]:
    """Where shards 1 to count-1 of ``count`` start."""
    return tuple(boundary(Fraction(k, count)) for k in range(1, count))


def shard_of(path: str, count: int) -> Shard:
    """The one shard of ``count`` that holds ``path``."""
    return partition(count)[bisect.bisect_right(boundaries(count), path)]


def boundary(t: Fraction) -> str:
    """The path at which a fraction ``t`` (0 < t < 1) of the expected work lies before it."""
    if t < BLOB_SHARE:
        return _blob_boundary(t / BLOB_SHARE)
    return tree.REPOSITORIES + _name_boundary((t - BLOB_SHARE) / (1 - BLOB_SHARE))


def _blob_boundary(position: Fraction) -> str:
    """``blobs/sha256/<2 hex>`` or ``.../<2 hex>/<3 or 4 hex>``: digests are uniform, so a hex
    position is a fraction of the blobs. Trailing zero digits are left off, so the cut stays a
    whole directory wherever it can (a digest's directory is its first two digits)."""
    value = math.floor(position * 16**_HEX_DEPTH)
    digits = f"{value:0{_HEX_DEPTH}x}"
    if value % 256 == 0:
        return SHA256_BLOBS + digits[:2]
    return SHA256_BLOBS + digits[:2] + "/" + (digits[:3] if value % 16 == 0 else digits)


def _name_boundary(position: Fraction) -> str:
    """The repository name at which ``position`` (0 <= position < 1) of the names lie before it,
    under the character model of ``_NAME_LEVELS``: each level picks the character whose share
    holds the position, then looks inside that share."""
    chars = []
    for level in _NAME_LEVELS:
        if position == 0:
            break
        point = position * sum(weight for _, weight in level)
        for char, weight in level:
            if point < weight:
                break
            point -= weight
        chars.append(char)
        position = point / weight
    return "".join(chars)


def _index_from(environ: Mapping[str, str]) -> int:
    for name in _INDEX_VARIABLES:
        value = environ.get(name, "").strip()
        if not value:
            continue
        if not value.isdigit():
            raise BadInput(f"shard auto: {name} is {value!r}, not a number")
        if name == "SLURM_ARRAY_TASK_ID":
            first = environ.get("SLURM_ARRAY_TASK_MIN", "0").strip()
            return int(value) - (int(first) if first.isdigit() else 0)
        return int(value)
    raise BadInput(f"shard auto: none of {', '.join(_INDEX_VARIABLES)} is set (not inside an array job?)")
