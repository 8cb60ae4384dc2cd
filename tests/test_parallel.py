"""The parallel walk: the same entries in the same order as one walk, an error in any range
raised at once, ranges ahead of the consumer spilled to disk rather than memory, and nothing
left running or open once the consumer stops. (Every backend: tests/test_storage_contract.py.)"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import tracemalloc
from collections.abc import Generator
from pathlib import Path

import pytest

from migrate import parallel, tree
from migrate.errors import StorageError
from migrate.parallel import parallel_walk
from migrate.shards import WHOLE, partition
from migrate.storage import FilesystemStorage
from migrate.storage.base import Entry, LinkSink, ProblemSink
from migrate.storage.memory import MemoryStorage
from migrate.storage.ranges import KeyRange


def registry(objects: int) -> MemoryStorage:
    storage = MemoryStorage()
    for i in range(objects // 2):
        digest = hashlib.sha256(str(i).encode()).hexdigest()
        storage.objects[f"{tree.BLOBS}sha256/{digest[:2]}/{digest}/data"] = b""
        storage.objects[f"{tree.REPOSITORIES}{digest[:4]}/_layers/sha256/{digest}/link"] = b""
    return storage


def range_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("regmig-range-")]


def spilled_files(spool: Path) -> list[str]:
    """Open files in ``spool`` (unnamed temporary files show as the directory and an inode)."""
    names = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            names.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return [name for name in names if name.startswith(str(spool))]


def wait_until(condition, seconds: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("threads", [1, 2, 4, 8])
@pytest.mark.parametrize("parts", [1, 3, 16])
def test_the_same_entries_in_the_same_order_as_one_walk(threads: int, parts: int) -> None:
    storage = registry(6000)
    assert list(parallel_walk(storage, WHOLE.split(parts), threads)) == list(storage.walk())
    shard = partition(4)[1]
    assert list(parallel_walk(storage, shard.split(parts), threads)) == list(storage.walk(within=shard))
    prefix = tree.REPOSITORIES
    assert list(parallel_walk(storage, WHOLE.split(parts), threads, prefix)) == list(storage.walk(prefix))


def test_a_source_tree_on_threads_keeps_order_hashes_and_stamps(tmp_path: Path) -> None:
    for i in range(300):
        digest = hashlib.sha256(str(i).encode()).hexdigest()
        target = tmp_path / f"{tree.REPOSITORIES}r{i % 7}/_layers/sha256/{digest}/link"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f"sha256:{digest}".encode())
    storage = FilesystemStorage(str(tmp_path))
    one = list(storage.walk(hash_limit=4096))
    assert list(parallel_walk(storage, WHOLE.split(8), 4, hash_limit=4096)) == one
    assert all(entry.md5 and entry.data for entry in one)


class FailingStorage(MemoryStorage):
    """Fails the listing of any range that starts at ``fail_at``."""

    fail_at = ""

    def _walk(self, prefix: str, span: KeyRange | None, on_problem: ProblemSink | None,
              hash_limit: int, on_link: LinkSink | None) -> Generator[Entry, None, None]:
        if span is not None and span.start == self.fail_at:
            raise StorageError("listing failed: connection reset")
        yield from super()._walk(prefix, span, on_problem, hash_limit, on_link)


def test_an_error_in_a_range_ahead_is_raised_at_once() -> None:
    storage = FailingStorage()
    storage.objects = registry(200_000).objects
    ranges = WHOLE.split(4)
    storage.fail_at = ranges[-1].start
    read = 0
    with pytest.raises(StorageError, match="connection reset"):
        for _ in parallel_walk(storage, ranges, 4):
            read += 1
    assert read < 50_000  # long before the consumer reached the failed range (the first holds 50,000)
    wait_until(lambda: not range_threads())


def test_ranges_ahead_spill_to_disk_not_memory(tmp_path: Path) -> None:
    storage = registry(200_000)
    ranges = WHOLE.split(8)
    tracemalloc.start()
    try:
        walk = parallel_walk(storage, ranges, 4, spool_dir=str(tmp_path))
        first = next(walk)
        # The thread of the first range waits on its full queue; the others list every range ahead.
        wait_until(lambda: len(range_threads()) == 1, seconds=60)
        held, _ = tracemalloc.get_traced_memory()
        assert spilled_files(tmp_path)
        rest = list(walk)
    finally:
        tracemalloc.stop()
    assert [first, *rest] == list(storage.walk())
    # 175,000 entries ahead of the consumer, about 250 bytes each in memory: all on disk instead.
    assert held < 12 * 2**20, held
    assert parallel.LIVE_DEPTH * parallel.BATCH < 25_000


def test_closing_the_walk_stops_its_threads_and_removes_the_spill(tmp_path: Path) -> None:
    storage = registry(100_000)
    walk = parallel_walk(storage, WHOLE.split(8), 4, spool_dir=str(tmp_path))
    next(walk)
    wait_until(lambda: bool(spilled_files(tmp_path)))
    walk.close()
    wait_until(lambda: not range_threads())
    assert not spilled_files(tmp_path)


def test_ranges_must_be_contiguous() -> None:
    with pytest.raises(ValueError, match="contiguous"):
        list(parallel_walk(MemoryStorage(), [KeyRange("", "b"), KeyRange("c", None)], 2))


class TimedStorage(MemoryStorage):
    """Each entry costs ``wait`` seconds asleep (a network filesystem, or other threads holding the
    interpreter) or ``work`` seconds on the CPU (a warm page cache); records which threads listed.
    ``mount``: the network filesystem it is on (None: a local disk)."""

    wait = 0.0
    work = 0.0
    mount: str | None = "nfs4"

    def __init__(self) -> None:
        super().__init__()
        self.listed_on: set[str] = set()

    def network_filesystem(self) -> str | None:
        return self.mount

    def _walk(self, prefix: str, span: KeyRange | None, on_problem: ProblemSink | None,
              hash_limit: int, on_link: LinkSink | None) -> Generator[Entry, None, None]:
        self.listed_on.add(threading.current_thread().name)
        for entry in super()._walk(prefix, span, on_problem, hash_limit, on_link):
            time.sleep(self.wait)
            deadline = time.thread_time() + self.work
            while time.thread_time() < deadline:
                pass
            yield entry


def timed(wait: float = 0.0, work: float = 0.0) -> TimedStorage:
    storage = TimedStorage()
    storage.objects = registry(3000).objects
    storage.wait, storage.work = wait, work
    return storage


def on_threads(storage: TimedStorage) -> bool:
    return any(name.startswith("regmig-range-") for name in storage.listed_on)


@pytest.mark.parametrize("probe", ["inside", "exactly", "beyond"])  # where the probe ends: in the first range or at its end
def test_a_source_walk_that_waits_goes_on_threads_in_order(probe: str, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = timed(wait=0.0005)
    ranges = WHOLE.split(8)
    first = len(list(storage.walk(within=ranges[0])))
    monkeypatch.setattr(parallel, "PROBE", {"inside": 10, "exactly": first, "beyond": first + 1}[probe])
    storage.listed_on.clear()
    assert list(parallel.source_walk(storage, ranges, 4)) == list(MemoryStorage.walk(storage))
    assert on_threads(storage)


def test_a_source_walk_on_the_cpu_stays_on_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "PROBE", 200)
    storage = timed(work=0.00005)
    assert list(parallel.source_walk(storage, WHOLE.split(8), 4)) == list(MemoryStorage.walk(storage))
    assert not on_threads(storage)


def test_a_warm_local_walk_that_waits_for_the_interpreter_stays_on_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """verify walks the source while four threads parse the bucket's listing: the probe's thread
    then spends most of its time waiting for the interpreter, not for the disk. On a local disk
    that read nothing, that is no reason for threads (which would only contend the more)."""
    monkeypatch.setattr(parallel, "PROBE", 200)
    monkeypatch.setattr(parallel, "_disk_reads", lambda: 1_000)
    storage = timed(wait=0.0005)
    storage.mount = None
    assert list(parallel.source_walk(storage, WHOLE.split(8), 4)) == list(MemoryStorage.walk(storage))
    assert not on_threads(storage)


def test_a_source_walk_that_reads_the_disk_goes_on_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cold page cache on a local disk keeps the CPU busy too (kernel time): the block device's
    count of bytes read tells it."""
    monkeypatch.setattr(parallel, "PROBE", 200)
    reads = iter([1_000, 1_000 + 200 * parallel.DISK_BYTES_PER_ENTRY])
    monkeypatch.setattr(parallel, "_disk_reads", lambda: next(reads))
    storage = timed(work=0.00005)
    assert list(parallel.source_walk(storage, WHOLE.split(8), 4)) == list(MemoryStorage.walk(storage))
    assert on_threads(storage)


def test_this_thread_counts_its_disk_reads(tmp_path: Path) -> None:
    before = parallel._disk_reads()
    assert before is not None and before >= 0  # Linux: /proc/thread-self/io


def test_a_spill_that_cannot_be_written_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot keep a listing ahead of its turn in .*missing"):
        list(parallel_walk(registry(50_000), WHOLE.split(8), 4, spool_dir=str(tmp_path / "missing")))
    wait_until(lambda: not range_threads())
