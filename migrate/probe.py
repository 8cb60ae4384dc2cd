"""Measures what a destination can take: a few small writes and one chunk-sized write, then
removes them. Used by ``plan`` (to estimate the read-only window) and ``doctor`` (writable?)."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass

from migrate.storage.base import Storage

PROBE_DIR = "regmig-probe"
"""Outside docker/, so a probe can never be mistaken for registry data (and sync never deletes it)."""


@dataclass(frozen=True)
class ProbeResult:
    small_write_seconds: float
    """Wall time of one 71-byte write (a link), averaged."""
    bytes_per_second: float
    """Throughput of one chunk-sized write."""


def probe_writes(storage: Storage, small_writes: int = 8, large_size: int = 4 * 1024 * 1024) -> ProbeResult:
    base = f"{PROBE_DIR}/{uuid.uuid4()}"
    written: list[str] = []
    try:
        start = time.monotonic()
        for i in range(small_writes):
            path = f"{base}/link-{i}"
            storage.put(path, b"sha256:" + os.urandom(32).hex().encode(), 71)
            written.append(path)
        small = (time.monotonic() - start) / small_writes
        data = os.urandom(large_size)
        start = time.monotonic()
        storage.put(f"{base}/chunk", data, len(data))
        written.append(f"{base}/chunk")
        throughput = len(data) / max(time.monotonic() - start, 1e-6)
    finally:
        for path in written:
            storage.delete(path)
    return ProbeResult(small, throughput)
