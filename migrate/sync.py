"""``regmig sync``: walk both sides once, copy what differs, then delete extras only after a clean pass."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from typing import Any

from migrate import tree
from migrate.errors import BadInput
from migrate.listing import read_ahead, registry_entries
from migrate.march import march
from migrate.plan import Action, decide
from migrate.report import Report, Tally
from migrate.storage.base import Entry, Storage
from migrate.transfer import Copier, WorkerPool


UPLOAD_BATCH = 8
"""Small uploads per worker job: one thread hand-off per eight objects instead of one each, without
lowering the number of requests in flight (each worker still has one at a time)."""
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
    workers: int = 64
    small_limit: int = 1024 * 1024
    """Files below this are read whole into memory; larger ones stream (memory stays bounded)."""


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
    if not options.dry_run:
        aborted = destination.abort_incomplete_uploads(keep=lambda path: tree.is_excluded(path))
        if aborted:
            report.note(f"aborted {aborted} unfinished multipart uploads left by an interrupted run")
    copier = Copier(source, destination, report, dry_run=options.dry_run, small_limit=options.small_limit)
    source_entries = read_ahead(registry_entries(
        source.walk(on_problem=report.problem), include_uploads=options.include_uploads, skip_markers=True,
        on_excluded=lambda e: report.record("not copied", tree.classify(e.path).kind.value, e.path, e.size)))
    destination_entries = read_ahead(
        registry_entries(destination.walk(), include_uploads=options.include_uploads, skip_markers=False)
    )
    source_count = 0
    extras = Tally()
    uploads: list[tuple[str, Entry, str]] = []
    with tempfile.TemporaryFile("w+", encoding="utf-8") as delete_spool:
        with WorkerPool(options.workers) as pool:
            for path, src, dst in march(source_entries, destination_entries):
                report.examined_one()
                source_count += src is not None
                action, reason = decide(path, src, dst)
                if action is Action.UPLOAD:
                    assert src is not None
                    report.planned(src.size)
                    if options.dry_run:  # nothing to do but count: no worker needed
                        report.record("would upload", reason.value, path, src.size)
                    elif src.size < options.small_limit:
                        uploads.append((path, src, reason.value))
                        if len(uploads) == UPLOAD_BATCH:
                            pool.submit(copier.upload_batch, uploads)
                            uploads = []
                    else:
                        pool.submit(copier.upload, path, src, reason.value)
                elif action is Action.CHECK:
                    assert src is not None and dst is not None
                    if source.is_local and dst.md5 is not None:
                        changed = copier.check_inline(path, dst)
                        if changed is not None:
                            pool.submit(copier.put_changed, path, changed)
                    else:
                        pool.submit(copier.check, path, dst)
                elif action is Action.SKIP:
                    report.record("skipped", reason.value, path, src.size if src else 0)
                elif action is Action.KEEP:
                    report.record("kept", reason.value, path, dst.size if dst else 0, list_as="kept")
                elif action is Action.DELETE:
                    assert dst is not None
                    extras.count += 1
                    extras.bytes += dst.size
                    if options.delete:
                        delete_spool.write(json.dumps([path, dst.size]) + "\n")
                    else:
                        report.record("not deleted", "no --delete", path, dst.size)
            if uploads:
                pool.submit(copier.upload_batch, uploads)
            report.listing_finished = True
        if options.delete and extras.count:
            _delete_extras(delete_spool, extras, source_count, options, copier, report)


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
