"""The totals of a pass before its walk ends, from the share of the blob digest space walked.

A walk is in key order, and blobs come first (``docker/registry/v2/blobs/sha256/ab/abcd.../data``):
their keys are SHA-256 digests, uniform over the hex space, so once the walk has reached digest
``d`` it has seen about ``d / 16^64`` of the blobs, whatever the registry's size. That gives the
number of blobs and their bytes within seconds of the start of a copy that takes hours, so the
progress display can show an ETA in its first minute. Repositories follow blobs; their link files
are not uniform, so until the walk reaches them they are taken to hold one link per blob (the
floor: garbage collection removes blobs no link names), and after that they are counted as
walked. Every total is marked as an estimate until the walk ends.

Pure logic, fed one path at a time under the report's lock (no I/O, constant memory).
"""

from __future__ import annotations

from dataclasses import dataclass

from migrate import tree

_SHA256 = tree.BLOBS + "sha256/"
_HEX_AT = len(_SHA256) + 3  # past "ab/"
_HEX_DIGITS = 8
_SPACE = 16**_HEX_DIGITS
MIN_BLOBS = 20
"""Blobs walked before their total is estimated: the share of the digest space seen by then is
known to within about a fifth."""


@dataclass(frozen=True, slots=True)
class Totals:
    objects: int
    bytes: int
    """Bytes the pass plans to write (uploads), of which ``Report.done_bytes`` are done."""
    exact: bool


class WalkEstimate:
    """Where the walk is, and what it has seen in each part of the tree."""

    def __init__(self) -> None:
        self.blobs = 0
        self.blob_bytes = 0
        self.other = 0
        self.other_bytes = 0
        self.share = 0.0
        """Share of the sha256 digest space walked so far."""
        self.past_blobs = False
        self._in_blobs = False

    def see(self, path: str) -> None:
        """One examined path, in walk order."""
        if path.startswith(tree.BLOBS):
            self._in_blobs = True
            self.blobs += 1
            if path.startswith(_SHA256):
                try:
                    position = int(path[_HEX_AT:_HEX_AT + _HEX_DIGITS], 16) + 1
                except ValueError:
                    return
                self.share = max(self.share, position / _SPACE)
            return
        if self._in_blobs or path > tree.BLOBS:
            self.past_blobs = True
        self._in_blobs = False
        self.other += 1

    def planned(self, size: int) -> None:
        """Bytes to write for the path seen last."""
        if self._in_blobs:
            self.blob_bytes += size
        else:
            self.other_bytes += size

    def totals(self, examined: int, planned_bytes: int, finished: bool) -> Totals | None:
        """The pass's totals: exact once the walk has ended, else estimated, or None while too
        little of the digest space has been walked to tell."""
        if finished:
            return Totals(examined, planned_bytes, True)
        if self.past_blobs:
            blobs, blob_bytes = self.blobs, self.blob_bytes
        elif self.blobs >= MIN_BLOBS and self.share > 0:
            blobs, blob_bytes = round(self.blobs / self.share), round(self.blob_bytes / self.share)
        else:
            return None
        repositories_floor = blobs  # one link per blob until the walk gets there
        objects = blobs + max(self.other, repositories_floor)
        return Totals(max(objects, examined), max(blob_bytes + self.other_bytes, planned_bytes), False)
