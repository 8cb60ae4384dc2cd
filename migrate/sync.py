"""``regmig sync``: walk both sides once, copy what differs, then delete extras only after a clean pass.

A pass that writes holds the destination's lease (migrate.lease) and moves its generation token
before anything else (migrate.generation); a ``--state`` record stands in for the listing only
when its token is the destination's, and a new one is written only when every examined object
ended with a result and the pass was clean.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from migrate import generation, guards, state, tree
from migrate.errors import BadInput, RegmigError
from migrate.lease import Lease
from migrate.listing import read_ahead, registry_entries
from migrate.march import march
from migrate.outcome import Outcome, PathList, Result
from migrate.plan import Action, Reason, decide
from migrate.report import Report, Tally
from migrate.storage.base import Entry, Storage
from migrate.transfer import Copier, WorkerPool


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
DELETE_BATCH = 1000
"""Deletes per job: one DeleteObjects request on S3, a loop of exact-key deletes elsewhere."""
SHRINK_LIMIT = 0.5
"""Deletes are refused when the source walk finds fewer files than this share of what the pass that
wrote the state record found: a failed mount shows an old or empty tree, and deleting from it would
empty the destination."""


@dataclass(frozen=True)
class SyncOptions:
    delete: bool = False
    max_delete: int = 1000
    """More deletions than this are refused; -1 lifts the limit."""
    dry_run: bool = False
    include_uploads: bool = False
    allow_object_source_delete: bool = False
    """--delete with an object store as the source deletes from what may be the only good copy."""
    allow_unrelated_source: bool = False
    """--delete from a source that holds few of the destination's blobs (see migrate.guards)."""
    into_populated_directory: bool = False
    """A filesystem destination that already holds a registry (see migrate.guards)."""
    workers: int = 64
    small_limit: int = 1024 * 1024
    """Files below this are read whole into memory; larger ones stream (memory stays bounded)."""
    state_path: str | None = None
    """Read the destination from this record of the last clean pass, and write a new one (see migrate.state)."""
    break_lock: bool = False
    """Take the destination's lease even when another run seems to hold it (see migrate.lease)."""


def preflight(source: Storage, destination: Storage, *, require_registry: bool = True) -> None:
    """Refuse input that cannot be right before anything is read or written."""
    source.check_reachable()
    if source.url == destination.url and source.prefix == destination.prefix:
        raise BadInput("source and destination are the same location")
    if require_registry and not source.has_entries(tree.V2):
        hint = tree.suggest_root(source.rootdirectory)
        suggestion = f"; did you mean {hint}?" if hint else ""
        raise BadInput(f"{source.url} is not a registry root: expected {tree.V2} under it{suggestion}")
    destination.check_destination()


def sync(source: Storage, destination: Storage, options: SyncOptions, report: Report) -> None:
    """Make the destination match the source. Results and failures go to ``report``."""
    preflight(source, destination)
    if (options.delete and not options.dry_run and not source.is_local and not options.allow_object_source_delete
            and destination.has_entries(tree.V2)):
        raise BadInput(f"refusing --delete from an object-store source into a populated destination "
                       f"({source.url} -> {destination.url}): if SOURCE and DESTINATION were swapped this deletes "
                       f"the registry; confirm with --allow-object-source-delete")
    guards.before_writing(source, destination, options, report)
    if options.state_path and source.is_local and \
            os.path.abspath(options.state_path).startswith(os.path.join(source.rootdirectory, "")):
        raise BadInput(f"--state {options.state_path} is inside the source tree: it would be copied; put it elsewhere")
    with contextlib.ExitStack() as held:
        lease = None if options.dry_run else held.enter_context(
            Lease(destination, "sync", break_lock=options.break_lock, note=report.note))
        if options.state_path:
            held.enter_context(state.locked(options.state_path, exclusive=not options.dry_run))
        _held_sync(source, destination, options, report, lease)


def exit_code(options: SyncOptions, report: Report) -> int:
    """1 when anything failed, was passed over or refused, when results do not add up to the pass,
    or when the source changed during a final (``--delete``) pass; else 0."""
    changed_in_window = options.delete and not options.dry_run and report.count(PathList.VANISHED)
    failed = (report.count(PathList.FAILURES) or report.count(PathList.PROBLEMS) or report.delete_refusal
              or report.unaccounted() or changed_in_window)
    return 1 if failed else 0


def _held_sync(source: Storage, destination: Storage, options: SyncOptions, report: Report,
               lease: Lease | None) -> None:
    """The pass itself, with the destination's lease and the state file's lock held."""
    ident = state.identity(destination, options.include_uploads)
    # The new record's file first: a state directory that cannot be written fails before the old record goes.
    writer = state.StateWriter(options.state_path) if options.state_path and not options.dry_run else None
    record: state.Record | None = None
    try:
        record = state.open_state(options.state_path, ident) if options.state_path else None
        current = generation.current(destination)
        if record is not None:
            if not options.dry_run:
                record.consume()  # used or not, it no longer describes a destination this pass writes
            doubt = _doubt(record, current)
            if doubt:
                report.note(f"state file not used: {doubt}; the destination is listed instead")
                record.close()
                record = None
        token = current if options.dry_run else generation.advance(destination, "sync")
        if writer is not None and token is not None:
            writer.begin(ident, token.value)
        destination.calibrate_md5((generation.PATH, token.data) if token else None)
        if not options.dry_run:
            aborted = destination.abort_incomplete_uploads(keep=lambda path: tree.is_excluded(path))
            if aborted:
                report.note(f"aborted {aborted:,} unfinished multipart uploads left by an interrupted run")
        if record is not None:
            report.note(f"destination not listed: read from the state file of the pass at {record.written} "
                        f"(--state); run verify, which lists both sides, before switching the registry over")
        # With a record, small files are compared by their stamps and only those written since are
        # read; against a listing of a destination that holds data, the walk hashes them all.
        hash_all_small = record is None and destination.has_entries(tree.V2)
        source_count = _copy_pass(source, destination, options, report, record, writer, lease,
                                  stamps=_stamps_trusted(source, report),
                                  hash_limit=INLINE_READ if hash_all_small else 0)
    except BaseException:
        if writer:
            writer.discard()
        if record:
            record.close()
        raise
    if options.delete and not options.dry_run and report.count(PathList.VANISHED):
        report.note(f"{report.count(PathList.VANISHED):,} files vanished from the source during a pass with "
                    f"--delete: is the registry read-only? Run the pass again once it is")
    if writer:
        assert token is not None
        _finish_state(writer, report, destination, token, lease, source_count)


def _doubt(record: state.Record, current: generation.Token | None) -> str | None:
    """Why a record cannot stand in for a listing of the destination now, or None when it can."""
    if record.generation is None:
        return f"it was written by an older regmig (format {record.format}), without a generation token"
    if current is None:
        return ("the destination holds no generation token: since the record was written it was emptied or "
                "replaced, or this is another service behind the same name")
    if current.value != record.generation:
        return ("the destination was written since the record was (its generation token moved: a pass "
                "without this record, nameless-tags --fix, or a verify that failed)")
    return None


def _stamps_trusted(source: Storage, report: Report) -> bool:
    """File stamps vouch for content only where a stat answers with the file's current times."""
    kind = source.network_filesystem() if source.is_local else None
    if kind is None:
        return True
    report.note(f"the source is on {kind}: file times are not trusted there (a network or FUSE filesystem's "
                f"attribute cache can answer with old times), so every small file is read and compared")
    return False


def _copy_pass(source: Storage, destination: Storage, options: SyncOptions, report: Report,
               record: state.Record | None, writer: state.StateWriter | None, lease: Lease | None, *,
               stamps: bool, hash_limit: int) -> int:
    """The merge loop and the deletes after it; returns how many entries the source walk found.
    ``hash_limit``: hashing small files in the walk pays when they are compared; into an empty
    destination every one is uploaded (read once, then) or, in a dry run, not read at all."""
    copier = Copier(source, destination, dry_run=options.dry_run, small_limit=options.small_limit)
    walk: Iterable[Entry] = source.walk(on_problem=report.problem, hash_limit=hash_limit)
    source_entries = read_ahead(registry_entries(
        walk if stamps else _unstamped(walk), include_uploads=options.include_uploads, skip_markers=True,
        on_excluded=lambda e: report.add(Result(Outcome.NOT_COPIED, e.path, e.size, tree.classify(e.path).kind.value))))
    destination_entries = read_ahead(record.entries() if record is not None else
                                     registry_entries(destination.walk(), include_uploads=options.include_uploads,
                                                      skip_markers=False))
    remember = writer.add if writer else (lambda entry: None)
    report.phase = "comparing" if options.dry_run else "copying"
    source_count = 0
    extras = Tally()
    with tempfile.TemporaryFile("w+", encoding="utf-8") as delete_spool:
        with WorkerPool(options.workers, report.add_all) as pool:
            by_path = _Batch(pool, copier.upload_batch, lambda item: item[1].size)  # read by the worker
            with_bytes = _Batch(pool, copier.put_batch, lambda item: len(item[1]))  # read here (see INLINE_READ)
            against = _Batch(pool, copier.compare_batch, lambda item: len(item[1]))  # read here, compared there
            for path, src, dst in march(source_entries, destination_entries):
                report.examined_one(path)
                source_count += src is not None
                action, reason = decide(path, src, dst)
                inline = src is not None and source.is_local and src.size <= INLINE_READ and \
                    not tree.is_content_addressed(path)
                if action is Action.UPLOAD:
                    assert src is not None
                    report.planned(src.size)
                    if options.dry_run:  # nothing to do but count: no worker needed
                        report.add(copier.uploaded(reason.value, path, src.size))
                    elif inline:
                        data, md5 = _read_here(copier, path, src, reason, report)
                        if data is not None:
                            remember(Entry(path, len(data), md5, stamp=src.stamp))
                            with_bytes.add((path, data, reason.value))
                    else:
                        # Only content-addressed paths (equal size, equal content) get no MD5 here: any
                        # other path's listed MD5 may be older than the bytes the worker reads.
                        remember(Entry(path, src.size))
                        if src.size < options.small_limit:
                            by_path.add((path, src, reason.value))
                        else:
                            pool.submit(copier.upload, path, src, reason.value, covers=[(path, src.size)])
                elif action is Action.CHECK:
                    assert src is not None and dst is not None
                    if inline:
                        data, md5 = _read_here(copier, path, src, Reason.CONTENT, report)
                        if data is not None:
                            # Either found equal or replaced by these very bytes: the record's MD5 holds.
                            remember(Entry(path, len(data), md5, stamp=src.stamp))
                            if dst.md5 is None:  # the destination lists no MD5: a worker reads and compares
                                against.add((path, data))
                            elif md5 == dst.md5:
                                report.add(Result(Outcome.SKIPPED, path, len(data), Reason.SAME.value))
                            else:
                                with_bytes.add((path, data, Reason.CONTENT.value))
                    else:
                        remember(Entry(path, dst.size))  # the worker's verdict is not known here
                        pool.submit(copier.check, path, dst, covers=[(path, dst.size)])
                elif action is Action.SKIP:
                    assert src is not None and dst is not None
                    compared = src.md5 is not None and src.md5 == dst.md5
                    remember(_vouched(dst, src.stamp if compared or src.stamp == dst.stamp else None))
                    report.add(Result(Outcome.SKIPPED, path, src.size, reason.value))
                elif action is Action.KEEP:
                    assert dst is not None
                    remember(dst)
                    report.add(Result(Outcome.KEPT, path, dst.size, reason.value, listed=PathList.KEPT))
                elif action is Action.DELETE:
                    assert dst is not None
                    extras.count += 1
                    extras.bytes += dst.size
                    if options.delete:
                        delete_spool.write(json.dumps([path, dst.size]) + "\n")
                    else:
                        remember(dst)
                        report.add(Result(Outcome.NOT_DELETED, path, dst.size, "no --delete"))
            for batch in (by_path, with_bytes, against):
                batch.flush()
            report.listing_finished = True
            report.phase = "finishing"  # the walk is done; the workers finish what it handed them
        if options.delete and extras.count:
            _delete_extras(delete_spool, extras, source_count, options, copier, report, record, lease)
    return source_count


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


def _vouched(dst: Entry, stamp: str | None) -> Entry:
    """``dst`` for the state record, carrying the stamp of a source file whose content (read after
    the stamp was taken) was found equal to it; None drops a stamp that no longer vouches."""
    return dst if dst.stamp == stamp else Entry(dst.path, dst.size, dst.md5, dst.etag, stamp=stamp)


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


def _finish_state(writer: state.StateWriter, report: Report, destination: Storage, token: generation.Token,
                  lease: Lease | None, source_count: int) -> None:
    """A record is kept only when every planned change happened and is accounted for, and nothing
    else wrote the destination meanwhile: otherwise it would lie."""
    unclean = [f"{report.count(name):,} {name.value}" for name in (PathList.FAILURES, PathList.PROBLEMS,
                                                                    PathList.VANISHED) if report.count(name)]
    if report.delete_refusal:
        unclean.append("deletions refused")
    if not writer.usable:
        unclean.append("a key holds a tab or newline")
    if report.unaccounted():
        unclean.append(f"{report.unaccounted():,} objects without a result")
    if lease is not None and lease.lost:
        unclean.append(lease.lost)
    if not unclean:
        try:
            now = generation.current(destination)
        except RegmigError as exc:
            unclean.append(f"the generation token could not be read back: {exc}")
        else:
            if now is None or now.value != token.value:
                unclean.append("the destination's generation token moved during the pass (a verify that failed, "
                               "or another writer)")
    if unclean:
        writer.discard()
        report.note(f"no state file written ({', '.join(unclean)}): the next pass lists the destination")
        return
    writer.commit(source_count)
    report.note(f"state file written: {writer.path} ({writer.count:,} entries)")


def _delete_extras(spool: Any, extras: Tally, source_count: int, options: SyncOptions, copier: Copier,
                   report: Report, record: state.Record | None, lease: Lease | None) -> None:
    """Deletes run only after the whole pass, and only when that pass was clean (rclone's rule)."""
    candidates = extras.count
    refusal = None
    if source_count == 0:
        refusal = "the source walk found nothing to copy"
    elif report.count(PathList.PROBLEMS):
        refusal = f"the source walk passed over {report.count(PathList.PROBLEMS):,} entries"
    elif report.count(PathList.FAILURES):
        refusal = f"{report.count(PathList.FAILURES):,} objects failed to copy"
    elif record is not None and record.source_files and source_count < record.source_files * SHRINK_LIMIT:
        refusal = (f"the source walk found {source_count:,} files, but the pass that wrote the state file at "
                   f"{record.written} found {record.source_files:,}: is the source mounted? (a failed or missing "
                   f"mount shows an old or empty tree); if the source is right, run again without --state")
    elif lease is not None and lease.lost:
        refusal = f"{lease.lost}; another run may be writing the destination"
    elif 0 <= options.max_delete < candidates:
        refusal = f"{candidates:,} objects would go, more than --max-delete {options.max_delete:,}"
    if refusal:
        report.refuse_delete(f"not deleting {candidates:,} destination-only objects: {refusal}", extras)
        return
    report.phase = "deleting"
    spool.seek(0)
    batch: list[tuple[str, int]] = []
    with WorkerPool(options.workers, report.add_all) as pool:
        for line in spool:
            path, size = json.loads(line)
            batch.append((path, size))
            if len(batch) == DELETE_BATCH:
                pool.submit(copier.delete_batch, batch, covers=batch)
                batch = []
        if batch:
            pool.submit(copier.delete_batch, batch, covers=batch)
