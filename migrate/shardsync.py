"""One shard of a sync: its part of the source walk and of the destination listing (or its own
state record), merged, copied, and handed back as a ``ShardOutcome``: the pass (migrate.sync)
runs one shard (``shards.WHOLE``) or many, here or elsewhere, and decides the deletes and the
records only once every shard has ended.

Everything a shard needs is in its ``ShardTask`` (plain data, picklable), so a worker process or
a Dask worker runs it with locations it opens itself; the generation token was moved by the pass,
never by a shard.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from migrate import generation, state, tree
from migrate.cuts import listing_ranges
from migrate.listing import read_ahead, registry_entries
from migrate.march import march
from migrate.outcome import Outcome, PathList, Result
from migrate.parallel import parallel_walk, source_walk
from migrate.plan import Action, Reason, decide
from migrate.report import Report, Tally
from migrate.shards import Shard
from migrate.storage.base import Entry, Link, LinkSink, Storage
from migrate.transfer import Copier, WorkerPool
from migrate.walk_process import can_walk_elsewhere, walk_elsewhere

UPLOAD_BATCH = 8
"""Small uploads per worker job: one thread hand-off per eight objects instead of one each, without
lowering the number of requests in flight (each worker still has one at a time)."""
INLINE_READ = 4096
"""Local files up to this size (link files) are hashed by the walk when the destination is listed
and holds data, so a pass compares them with the destination's MD5 without another read (with a
state record, their stamps spare even that read). One that must be uploaded or compared is sent
with the bytes the walk hashed (read on the listing thread when the walk did not hash): the MD5
kept for the state record is then that of the very bytes sent, and the worker queue holds at most
a few MiB of them."""
LEFT_TO_GATHER = "left to gather"
"""The reason a ``--shard`` run gives its delete candidates: ``regmig gather`` deletes them (or not)."""
SKIPS_AT_ONCE = 1000
"""Skipped objects counted before the report hears of them: the progress display lags by no more."""
LISTING_THREADS = 4
"""Threads listing a shard's part of an object-store destination (or source), each range split
four times so the threads even out (bench/scale_bench.py, listing rows)."""
SOURCE_THREADS = 4
"""Threads a local source walk may use where it waits on the disk (migrate.parallel.source_walk)."""


@dataclass(frozen=True)
class ShardTask:
    """What one shard's run needs, as plain data."""

    shard: Shard
    delete: bool
    dry_run: bool
    include_uploads: bool
    workers: int
    small_limit: int
    state_path: str | None
    """The pass's ``--state``; the shard's own record is ``state.shard_path`` of it."""
    token: str | None
    """The generation token the pass wrote (None in a dry run of a destination that has none)."""
    token_data: bytes | None
    """Its bytes as stored: a known content for ``Storage.calibrate_md5``."""
    previous: str | None
    """The destination's token before the pass: a record carrying another one is not used."""
    listed_holds_data: bool
    """The destination held registry data when the pass began (then a listed pass hashes small files)."""
    stamps: bool
    """File stamps are trusted (not a network filesystem)."""
    keep_candidates: bool = False
    """Record destination-only objects as delete candidates even without ``delete`` (a ``--shard`` run,
    whose candidates wait for ``gather``)."""
    list_destination: bool = False
    """List the destination even where a state record could stand in for it: a proof that rides
    along the pass (``sync --verify``) needs what the destination holds now, not what a record says."""


class Witness(Protocol):
    """Sees every path of a shard's merge with the action decided for it: what a check that rides
    along the pass (``checks.proof``) needs, without a walk or a listing of its own."""

    def see(self, path: str, action: Action, src: Entry | None, dst: Entry | None) -> None: ...


@dataclass
class ShardOutcome:
    """What a shard hands back to its pass."""

    shard: Shard
    source_count: int = 0
    extras: Tally = field(default_factory=Tally)
    candidates: Candidates | None = None
    record_used: bool = False
    record_source_files: int | None = None
    """What the source walk found when this shard's record was written (the shrink guard)."""
    record_written: str | None = None
    part: state.Part | None = None
    """This shard's new record, not yet in place."""
    error: str | None = None
    """Why the shard stopped before its end (its walk failed, its record was damaged...)."""
    error_exit: int = 1
    """The exit code that error has (2: bad input)."""
    report_state: dict[str, Any] | None = None
    """Its report, when it ran in another process (``Report.state``)."""
    result: dict[str, Any] = field(default_factory=dict)
    """What the command adds (verify's counts)."""
    links: list[Link] = field(default_factory=list)
    """The symbolic links its source walk followed (--follow-symlinks), for the pass to check
    against the other shards' (``sync.check_links``): a shard sees only its own."""


class Candidates:
    """Destination-only paths spooled while a shard runs, deleted only after the whole pass: a
    compressed temporary file, and plain bytes when it travels to another process or machine.
    (Also the spool of paths a pass wrote, with the MD5 they should have, for a proof to confirm.)"""

    def __init__(self, prefix: str = "regmig-deletes-") -> None:
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix=prefix)
        self._out: gzip.GzipFile | None = gzip.GzipFile(fileobj=self._file, mode="wb", compresslevel=1)
        self.count = 0

    def add(self, path: str, size: int, md5: str | None = None) -> None:
        assert self._out is not None
        self._out.write((json.dumps([path, size] if md5 is None else [path, size, md5]) + "\n").encode())
        self.count += 1

    def data(self) -> bytes:
        self._seal()
        self._file.seek(0)
        return self._file.read()

    def __iter__(self) -> Iterator[tuple[str, int]]:
        for path, size, _ in self.rows():
            yield path, size

    def rows(self) -> Iterator[tuple[str, int, str | None]]:
        """Every path with its size and, where one was given, its MD5."""
        self._seal()
        self._file.seek(0)
        with gzip.GzipFile(fileobj=self._file, mode="rb") as lines:
            for line in lines:
                row = json.loads(line)
                yield row[0], row[1], row[2] if len(row) > 2 else None

    def _seal(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    @classmethod
    def from_data(cls, data: bytes, count: int) -> Candidates:
        spool = cls()
        spool._seal()
        spool._file.seek(0)
        spool._file.truncate()
        spool._file.write(data)
        spool.count = count
        return spool

    def __getstate__(self) -> dict[str, Any]:
        return {"data": self.data(), "count": self.count}

    def __setstate__(self, saved: dict[str, Any]) -> None:
        self.__dict__.update(Candidates.from_data(saved["data"], saved["count"]).__dict__)


def sync_shard(source: Storage, destination: Storage, task: ShardTask, report: Report,
               witness: Witness | None = None) -> ShardOutcome:
    """The shard's merge loop: uploads and checks handed to the workers, destination-only paths
    spooled as candidates (or kept with their reason), this shard's record read or written;
    ``witness`` sees every path with its action."""
    shard = task.shard
    outcome = ShardOutcome(shard)
    note = report.note if shard.count == 1 else (lambda message: report.note(f"shard {shard}: {message}"))
    record_path = state.shard_path(task.state_path, shard) if task.state_path else None
    ident = state.identity(destination, task.include_uploads, shard)
    # The new record's file first: a state directory that cannot be written fails before the old record goes.
    writer = state.StateWriter(record_path) if record_path and not task.dry_run else None
    record: state.Record | None = None
    try:
        record = state.open_state(record_path, ident) if record_path else None
        if record is not None:
            if not task.dry_run:
                record.consume()  # used or not, it no longer describes a destination this pass writes
            doubt = _doubt(record, task.previous)
            if doubt is None and task.list_destination:
                # Listed instead (a proof needs the destination as it is now); what the record's pass
                # found in the source still guards the deletes.
                outcome.record_source_files, outcome.record_written = record.source_count(), record.written
                record = None
            elif doubt:
                note(f"state file not used: {doubt}; the destination is listed instead")
                record.close()
                record = None
        if writer is not None and task.token is not None:
            writer.begin(ident, task.token)
        if record is not None:
            outcome.record_used = True
            outcome.record_written = record.written
            note(f"destination not listed: read from the state file of the pass at {record.written} "
                 f"(--state); run verify, which lists both sides, before switching the registry over")
        # With a record, small files are compared by their stamps and only those written since are
        # read; against a listing of a destination that holds data, the walk hashes them all.
        hash_limit = INLINE_READ if record is None and task.listed_holds_data else 0
        _merge(source, destination, task, report, record, writer, outcome, hash_limit, witness)
    except BaseException:
        if writer:
            writer.discard()
        if record:
            record.close()
        raise
    if record is not None:
        outcome.record_source_files = record.source_files
    if writer is not None:
        outcome.part = writer.seal() if writer.usable else _unusable(writer, note)
    return outcome


def sync_shard_elsewhere(source: Storage, destination: Storage, task: ShardTask, report: Report,
                         witness: Witness | None = None) -> ShardOutcome:
    """``sync_shard`` with locations just opened in another process: their listed MD5s calibrated
    first against the token the pass wrote, as the pass did with its own."""
    destination.calibrate_md5((generation.PATH, task.token_data) if task.token_data else None)
    return sync_shard(source, destination, task, report, witness)


def _unusable(writer: state.StateWriter, note: Callable[[str], None]) -> None:
    writer.discard()
    note("no state file written (a key holds a tab or newline): the next pass lists the destination")


def _doubt(record: state.Record, previous: str | None) -> str | None:
    """Why a record cannot stand in for a listing of the destination now, or None when it can."""
    if record.generation is None:
        return f"it was written by an older regmig (format {record.format}), without a generation token"
    if previous is None:
        return ("the destination holds no generation token: since the record was written it was emptied or "
                "replaced, or this is another service behind the same name")
    if previous != record.generation:
        return ("the destination was written since the record was (its generation token moved: a pass "
                "without this record, nameless-tags --fix, or a verify that failed)")
    return None


def shard_walk(storage: Storage, shard: Shard, on_problem: Callable[[str, str], None] | None = None,
               hash_limit: int = 0, on_link: LinkSink | None = None) -> Iterator[Entry]:
    """The shard's part of one side, in byte order: a local tree walked on threads where that pays
    (``source_walk``), past its first entries in a process of its own when this is the program's
    process (``walk_process``); an object store listed on ``LISTING_THREADS`` threads, cut at the
    repository names it holds (``cuts.listing_ranges``, looked up when the walk is first read).
    A local tree keeps the model's cuts: cut at names found, a range would start inside a
    repository's directory, which the walk opens by its full path, passing through a symbolic
    link it must report, or admit once (--follow-symlinks), instead."""
    if storage.is_local:
        yield from source_walk(storage, shard.split(SOURCE_THREADS), SOURCE_THREADS, on_problem=on_problem,
                               hash_limit=hash_limit, on_link=on_link,
                               walk_rest=walk_elsewhere if can_walk_elsewhere() else None)
    else:
        yield from parallel_walk(storage, listing_ranges(storage, shard, LISTING_THREADS * LISTING_THREADS,
                                                         LISTING_THREADS),
                                 LISTING_THREADS, on_problem=on_problem, hash_limit=hash_limit, on_link=on_link)


def _merge(source: Storage, destination: Storage, task: ShardTask, report: Report, record: state.Record | None,
           writer: state.StateWriter | None, outcome: ShardOutcome, hash_limit: int,
           witness: Witness | None) -> None:
    """``hash_limit``: hashing small files in the walk pays when they are compared; into an empty
    destination every one is uploaded (read once, then) or, in a dry run, not read at all."""
    copier = Copier(source, destination, dry_run=task.dry_run, small_limit=task.small_limit)
    walk = shard_walk(source, task.shard, report.problem, hash_limit, outcome.links.append)
    walked: Iterable[Entry] = walk if task.stamps else _unstamped(walk)
    source_entries = read_ahead(registry_entries(
        walked, include_uploads=task.include_uploads, skip_markers=True,
        on_excluded=lambda e: report.add(Result(Outcome.NOT_COPIED, e.path, e.size, tree.classify(e.path).kind.value))))
    destination_entries = read_ahead(record.entries() if record is not None else
                                     registry_entries(shard_walk(destination, task.shard),
                                                      include_uploads=task.include_uploads,
                                                      skip_markers=False))
    remember: Callable[[str, int, str | None, str | None], None] = writer.add if writer else _forget
    spool = task.delete or task.keep_candidates
    candidates = outcome.candidates = Candidates() if spool else None
    report.phase = "comparing" if task.dry_run else "copying"
    extras = outcome.extras
    with WorkerPool(task.workers, report.add_all) as pool, _Skips(report) as skips:
        by_path = _Batch(pool, copier.upload_batch, lambda item: item[1].size)  # read by the worker
        with_bytes = _Batch(pool, copier.put_batch, lambda item: len(item[1]))  # read here (see INLINE_READ)
        against = _Batch(pool, copier.compare_batch, lambda item: len(item[1]))  # read here, compared there
        for path, src, dst in march(source_entries, destination_entries):
            report.examined_one(path)
            outcome.source_count += src is not None
            action, reason = decide(path, src, dst)
            if witness is not None:
                witness.see(path, action, src, dst)
            if action is Action.SKIP:  # first: almost every object of a pass after the first
                assert src is not None and dst is not None
                # The record keeps the source's stamp where it vouches for the content: found equal
                # to it (read after the stamp was taken), or the stamp the record already held.
                compared = src.md5 is not None and src.md5 == dst.md5
                remember(path, dst.size, dst.md5, src.stamp if compared or src.stamp == dst.stamp else None)
                skips.add(path, src.size, reason.value)
            elif action is Action.UPLOAD:
                assert src is not None
                report.planned(src.size)
                if task.dry_run:  # nothing to do but count: no worker needed
                    report.add(copier.uploaded(reason.value, path, src.size))
                elif _inline(source, path, src):
                    data, md5 = _read_here(copier, path, src, reason, report)
                    if data is not None:
                        remember(path, len(data), md5, src.stamp)
                        with_bytes.add((path, data, reason.value))
                else:
                    # Only content-addressed paths (equal size, equal content) get no MD5 here: any
                    # other path's listed MD5 may be older than the bytes the worker reads.
                    remember(path, src.size, None, None)
                    if src.size < task.small_limit:
                        by_path.add((path, src, reason.value))
                    else:
                        pool.submit(copier.upload, path, src, reason.value, covers=[(path, src.size)])
            elif action is Action.CHECK:
                assert src is not None and dst is not None
                if _inline(source, path, src):
                    data, md5 = _read_here(copier, path, src, Reason.CONTENT, report)
                    if data is not None:
                        # Either found equal or replaced by these very bytes: the record's MD5 holds.
                        remember(path, len(data), md5, src.stamp)
                        if dst.md5 is None:  # the destination lists no MD5: a worker reads and compares
                            against.add((path, data))
                        elif md5 == dst.md5:
                            report.add(Result(Outcome.SKIPPED, path, len(data), Reason.SAME.value))
                        else:
                            with_bytes.add((path, data, Reason.CONTENT.value))
                else:
                    remember(path, dst.size, None, None)  # the worker's verdict is not known here
                    pool.submit(copier.check, path, dst, covers=[(path, dst.size)])
            elif action is Action.KEEP:
                assert dst is not None
                remember(path, dst.size, dst.md5, dst.stamp)
                report.add(Result(Outcome.KEPT, path, dst.size, reason.value, listed=PathList.KEPT))
            elif action is Action.DELETE:
                assert dst is not None
                extras.count += 1
                extras.bytes += dst.size
                if candidates is not None:
                    candidates.add(path, dst.size)
                    if not task.delete:  # a shard of an array job: gather decides, and counts the result then
                        report.add(Result(Outcome.NOT_DELETED, path, dst.size, LEFT_TO_GATHER))
                else:
                    remember(path, dst.size, dst.md5, dst.stamp)
                    report.add(Result(Outcome.NOT_DELETED, path, dst.size, "no --delete"))
        for batch in (by_path, with_bytes, against):
            batch.flush()
        if task.shard.count == 1:
            report.listing_finished = True  # the totals are exact from here
        report.phase = "finishing"  # the walk is done; the workers finish what it handed them


def _read_here(copier: Copier, path: str, src: Entry, reason: Reason, report: Report) -> tuple[bytes | None, str]:
    """A small local file's bytes (from the walk, or read now) and their MD5; None when it could not be read."""
    if src.data is not None and src.md5 is not None:
        return src.data, src.md5
    data, failure = copier.read_inline(path, src.size, reason.value)
    if data is None:
        assert failure is not None
        report.add(failure)
        return None, ""
    return data, hashlib.md5(data).hexdigest()


def _unstamped(entries: Iterable[Entry]) -> Iterator[Entry]:
    for entry in entries:
        yield dataclasses.replace(entry, stamp=None) if entry.stamp else entry


def _inline(source: Storage, path: str, src: Entry) -> bool:
    """A small local file other than a content-addressed link: read here, not by a worker."""
    return source.is_local and src.size <= INLINE_READ and not tree.is_content_addressed(path)


def _forget(path: str, size: int, md5: str | None, stamp: str | None) -> None:
    """No record is written (a dry run, or none asked for)."""


class _Skips:
    """Skipped objects counted here and given to the report ``SKIPS_AT_ONCE`` at a time (a result
    object and a locked count for each showed in a final pass's profile), and all that are held
    when the comparison ends, however it ends; one by one where the report counts each."""

    def __init__(self, report: Report) -> None:
        self._report = report
        self._each = report.counts_each_skip()
        self._tallies: dict[str, list[int]] = {}
        self._held = 0

    def __enter__(self) -> _Skips:
        return self

    def __exit__(self, *_: object) -> None:
        self.flush()

    def add(self, path: str, size: int, reason: str) -> None:
        if self._each:
            self._report.add(Result(Outcome.SKIPPED, path, size, reason))
            return
        tally = self._tallies.get(reason)
        if tally is None:
            tally = self._tallies[reason] = [0, 0]
        tally[0] += 1
        tally[1] += size
        self._held += 1
        if self._held == SKIPS_AT_ONCE:
            self.flush()

    def flush(self) -> None:
        for reason, (count, size) in self._tallies.items():
            self._report.add_skipped(reason, count, size)
        self._tallies.clear()
        self._held = 0


class _Batch:
    """Small jobs go to the workers ``UPLOAD_BATCH`` at a time: one thread hand-off per batch.
    ``size_of`` gives an item's size, so the pool knows every object the job answers for."""

    def __init__(self, pool: WorkerPool, job: Callable[[list[Any]], list[Result]],
                 size_of: Callable[[Any], int]) -> None:
        self._pool = pool
        self._job = job
        self._size_of = size_of
        self._items: list[Any] = []

    def add(self, item: Any) -> None:
        self._items.append(item)
        if len(self._items) == UPLOAD_BATCH:
            self.flush()

    def flush(self) -> None:
        if self._items:
            self._pool.submit(self._job, self._items,
                              covers=[(item[0], self._size_of(item)) for item in self._items])
            self._items = []
