"""``regmig sync``: walk both sides once, copy what differs, then delete extras only after a clean pass."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from migrate import guards, state, tree
from migrate.errors import BadInput
from migrate.listing import read_ahead, registry_entries
from migrate.march import march
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
state record, their stamps spare even that read). One that must be uploaded is sent with the bytes
the walk hashed (read on the listing thread when the walk did not hash): the MD5 kept for the state
record is then that of the very bytes sent, and the worker queue holds at most a few MiB of them."""
DELETE_BATCH = 1000
"""Deletes per job: one DeleteObjects request on S3, a loop of exact-key deletes elsewhere."""


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
    if not options.dry_run:
        aborted = destination.abort_incomplete_uploads(keep=lambda path: tree.is_excluded(path))
        if aborted:
            report.note(f"aborted {aborted} unfinished multipart uploads left by an interrupted run")
    ident = state.identity(destination, options.include_uploads)
    # The new record's file first: a state directory that cannot be written fails before the old record goes.
    writer = state.StateWriter(options.state_path, ident) if options.state_path and not options.dry_run else None
    try:
        recorded = state.open_state(options.state_path, ident, consume=not options.dry_run) \
            if options.state_path else None
        if recorded is not None:
            report.note(f"destination not listed: read from the state file of the pass at {recorded[0]} "
                        f"(--state); run verify, which lists both sides, before switching the registry over")
        # With a record, small files are compared by their stamps and only those written since are
        # read; against a listing of a destination that holds data, the walk hashes them all.
        hash_all_small = recorded is None and destination.has_entries(tree.V2)
        _copy_pass(source, destination, options, report, recorded[1] if recorded else None, writer,
                   hash_limit=INLINE_READ if hash_all_small else 0)
    except BaseException:
        if writer:
            writer.discard()
        raise
    if writer:
        _finish_state(writer, report)


def _copy_pass(source: Storage, destination: Storage, options: SyncOptions, report: Report,
               recorded: Iterator[Entry] | None, writer: state.StateWriter | None, *, hash_limit: int) -> None:
    """``hash_limit``: hashing small files in the walk pays when they are compared; into an empty
    destination every one is uploaded (read once, then) or, in a dry run, not read at all."""
    copier = Copier(source, destination, report, dry_run=options.dry_run, small_limit=options.small_limit)
    source_entries = read_ahead(registry_entries(
        source.walk(on_problem=report.problem, hash_limit=hash_limit), include_uploads=options.include_uploads,
        skip_markers=True,
        on_excluded=lambda e: report.record("not copied", tree.classify(e.path).kind.value, e.path, e.size)))
    destination_entries = read_ahead(recorded if recorded is not None else
                                     registry_entries(destination.walk(), include_uploads=options.include_uploads,
                                                      skip_markers=False))
    remember = writer.add if writer else (lambda entry: None)
    source_count = 0
    extras = Tally()
    with tempfile.TemporaryFile("w+", encoding="utf-8") as delete_spool:
        with WorkerPool(options.workers) as pool:
            by_path = _Batch(pool, copier.upload_batch)  # read by the worker
            with_bytes = _Batch(pool, copier.put_batch)  # read here (see INLINE_READ)
            for path, src, dst in march(source_entries, destination_entries):
                report.examined_one()
                source_count += src is not None
                action, reason = decide(path, src, dst)
                if action is Action.UPLOAD:
                    assert src is not None
                    report.planned(src.size)
                    if options.dry_run:  # nothing to do but count: no worker needed
                        copier.record_upload(reason.value, path, src.size)
                    elif source.is_local and src.size <= INLINE_READ and not tree.is_content_addressed(path):
                        data = src.data if src.data is not None else copier.read_inline(path)
                        if data is not None:
                            md5 = src.md5 if src.data is not None else hashlib.md5(data).hexdigest()
                            remember(Entry(path, len(data), md5, stamp=src.stamp))
                            with_bytes.add((path, data, reason.value))
                    else:
                        # Only content-addressed paths (equal size, equal content) get no MD5 here: any
                        # other path's listed MD5 may be older than the bytes the worker reads.
                        remember(Entry(path, src.size))
                        if src.size < options.small_limit:
                            by_path.add((path, src, reason.value))
                        else:
                            pool.submit(copier.upload, path, src, reason.value)
                elif action is Action.CHECK:
                    assert src is not None and dst is not None
                    if source.is_local and dst.md5 is not None:
                        changed = copier.check_inline(path, dst)
                        if changed is None:  # the same (a file that vanished or failed leaves no record)
                            remember(_vouched(dst, src.stamp))
                        else:
                            remember(Entry(path, len(changed), hashlib.md5(changed).hexdigest(), stamp=src.stamp))
                            with_bytes.add((path, changed, Reason.CONTENT.value))
                    else:
                        remember(Entry(path, dst.size))  # the worker's verdict is not known here
                        pool.submit(copier.check, path, dst)
                elif action is Action.SKIP:
                    assert src is not None and dst is not None
                    compared = src.md5 is not None and src.md5 == dst.md5
                    remember(_vouched(dst, src.stamp if compared or src.stamp == dst.stamp else None))
                    report.record("skipped", reason.value, path, src.size)
                elif action is Action.KEEP:
                    assert dst is not None
                    remember(dst)
                    report.record("kept", reason.value, path, dst.size, list_as="kept")
                elif action is Action.DELETE:
                    assert dst is not None
                    extras.count += 1
                    extras.bytes += dst.size
                    if options.delete:
                        delete_spool.write(json.dumps([path, dst.size]) + "\n")
                    else:
                        remember(dst)
                        report.record("not deleted", "no --delete", path, dst.size)
            by_path.flush()
            with_bytes.flush()
            report.listing_finished = True
        if options.delete and extras.count:
            _delete_extras(delete_spool, extras, source_count, options, copier, report)


def _vouched(dst: Entry, stamp: str | None) -> Entry:
    """``dst`` for the state record, carrying the stamp of a source file whose content (read after
    the stamp was taken) was found equal to it; None drops a stamp that no longer vouches."""
    return dst if dst.stamp == stamp else Entry(dst.path, dst.size, dst.md5, dst.etag, stamp=stamp)


class _Batch:
    """Small jobs go to the workers ``UPLOAD_BATCH`` at a time: one thread hand-off per batch."""

    def __init__(self, pool: WorkerPool, job: Callable[[list[Any]], None]) -> None:
        self._pool = pool
        self._job = job
        self._items: list[Any] = []

    def add(self, item: Any) -> None:
        self._items.append(item)
        if len(self._items) == UPLOAD_BATCH:
            self.flush()

    def flush(self) -> None:
        if self._items:
            self._pool.submit(self._job, self._items)
            self._items = []


def _finish_state(writer: state.StateWriter, report: Report) -> None:
    """A record is kept only when every planned change happened: otherwise it would lie."""
    unclean = [f"{report.count(name)} {name}" for name in ("failures", "problems", "vanished") if report.count(name)]
    if report.delete_refusal:
        unclean.append("deletions refused")
    if not writer.usable:
        unclean.append("a key holds a tab or newline")
    if unclean:
        writer.discard()
        report.note(f"no state file written ({', '.join(unclean)}): the next pass lists the destination")
        return
    writer.commit()
    report.note(f"state file written: {writer.path} ({writer.count:,} entries)")


def _delete_extras(spool: Any, extras: Tally, source_count: int, options: SyncOptions, copier: Copier,
                   report: Report) -> None:
    """Deletes run only after the whole pass, and only when that pass was clean (rclone's rule)."""
    candidates = extras.count
    refusal = None
    if source_count == 0:
        refusal = "the source walk found nothing to copy"
    elif report.count("problems"):
        refusal = f"the source walk passed over {report.count('problems')} entries"
    elif report.count("failures"):
        refusal = f"{report.count('failures')} objects failed to copy"
    elif 0 <= options.max_delete < candidates:
        refusal = f"{candidates} objects would go, more than --max-delete {options.max_delete}"
    if refusal:
        report.refuse_delete(f"not deleting {candidates} destination-only objects: {refusal}", extras)
        return
    spool.seek(0)
    batch: list[tuple[str, int]] = []
    with WorkerPool(options.workers) as pool:
        for line in spool:
            path, size = json.loads(line)
            batch.append((path, size))
            if len(batch) == DELETE_BATCH:
                pool.submit(copier.delete_batch, batch)
                batch = []
        if batch:
            pool.submit(copier.delete_batch, batch)
