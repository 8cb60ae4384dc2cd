"""``regmig sync``: one pass is its shards, each walking both sides of its key range and copying
what differs; deletes follow only after every shard ended clean.

A pass that writes holds the destination's lease (migrate.lease) and moves its generation token
before anything else (migrate.generation), once for all its shards; then its shards run
(migrate.shardsync: one, ``shards.WHOLE``, or many, here or in other processes or on a cluster:
migrate.runners), each with its own ``--state`` record, which stands in for its listing only when
its token is the destination's. Their outcomes are merged into the pass's one report; then
``conclude`` applies the delete guards to the whole pass and puts the shards' new records in
place, only when every examined object ended with a result and the pass was clean. ``gather``
(migrate.results) concludes a pass whose shards ran as separate jobs the same way.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from migrate import generation, guards, state, tree
from migrate.errors import BadInput, RegmigError
from migrate.lease import Lease
from migrate.outcome import PathList
from migrate.report import Report, Tally
from migrate.runners import Here, Job, Runner
from migrate.shards import WHOLE, Shard
from migrate.shardsync import ShardOutcome, ShardTask, sync_shard
from migrate.storage.base import Storage
from migrate.storage.links import Followed
from migrate.transfer import Copier, WorkerPool

DELETE_BATCH = 1000
"""Deletes per job: one DeleteObjects request on S3, a loop of exact-key deletes elsewhere."""
SHRINK_LIMIT = 0.5
"""Deletes are refused when a shard's source walk finds fewer files than this share of what the
pass that wrote its state record found: a failed mount shows an old or empty tree, and deleting
from it would empty the destination."""


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
    list_destination: bool = False
    """List the destination even with a ``state_path`` record (the record is still written)."""


class Proof(Protocol):
    """A check that rides along a pass (``checks.proof``): it runs each shard, seeing every path of
    its merge, and once the deletes are done confirms what the pass changed, before the records go
    in place (a proof that fails keeps them out)."""

    def shard(self, source: Storage, destination: Storage, task: ShardTask, report: Report) -> ShardOutcome: ...

    def confirm(self, outcomes: Sequence[ShardOutcome], source: Storage, destination: Storage,
                options: SyncOptions, report: Report, doubts: Callable[[], list[str]]) -> bool:
        """True when proved; ``doubts``: why the pass cannot vouch for what it did (then nothing is)."""


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


def check_inputs(source: Storage, destination: Storage, options: SyncOptions, report: Report) -> None:
    """Every refusal decided before a pass (or a shard of one) writes anything."""
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


def sync(source: Storage, destination: Storage, options: SyncOptions, report: Report, *,
         shards: Sequence[Shard] = (WHOLE,), runner: Runner | None = None, proof: Proof | None = None) -> None:
    """Make the destination match the source, as ``shards`` (a partition of the key space) run by
    ``runner`` (default: here, one after another). Results and failures go to ``report``; ``proof``
    (which needs the destination listed) rides along."""
    if proof is not None:
        options = replace(options, list_destination=True)
    check_inputs(source, destination, options, report)
    with contextlib.ExitStack() as held:
        lease = None if options.dry_run else held.enter_context(
            Lease(destination, "sync", break_lock=options.break_lock, note=report.note))
        if options.state_path:
            for shard in shards:
                path = state.shard_path(options.state_path, shard)
                held.enter_context(state.locked(path, exclusive=not options.dry_run))
                state.check(path, state.identity(destination, options.include_uploads, shard),
                            writing=not options.dry_run)
        runner = runner or Here()
        token, template = begin(source, destination, options, report)
        tasks = [template.for_shard(shard, runner.concurrency) for shard in shards]
        job = proof.shard if proof is not None else sync_shard
        outcomes = run_shards(runner, tasks, report, lambda task, shard_report: job(source, destination, task,
                                                                                     shard_report))
        conclude(outcomes, source, destination, options, report, lease, token, proof)


@dataclass(frozen=True)
class TaskTemplate:
    """What every shard of a pass shares; ``for_shard`` makes one shard's task of it."""

    options: SyncOptions
    token: generation.Token | None
    previous: str | None
    listed_holds_data: bool
    stamps: bool
    keep_candidates: bool = False

    def for_shard(self, shard: Shard, concurrency: int = 1) -> ShardTask:
        """``concurrency``: shards running at once, which share the pass's ``workers``."""
        options = self.options
        return ShardTask(shard=shard, delete=options.delete, dry_run=options.dry_run,
                         include_uploads=options.include_uploads, workers=-(-options.workers // concurrency),
                         small_limit=options.small_limit, state_path=options.state_path,
                         token=self.token.value if self.token else None,
                         token_data=self.token.data if self.token else None, previous=self.previous,
                         listed_holds_data=self.listed_holds_data, stamps=self.stamps,
                         keep_candidates=self.keep_candidates, list_destination=options.list_destination)


def begin(source: Storage, destination: Storage, options: SyncOptions, report: Report,
          moved: tuple[generation.Token | None, str | None] | None = None,
          only: Shard = WHOLE) -> tuple[generation.Token | None, TaskTemplate]:
    """The pass's start, once for all its shards: the generation token moved (or ``moved``: the token
    of a run of separate shard jobs, and the one it replaced), listed MD5s calibrated, unfinished
    uploads aborted (``only`` in this shard's range: the other shards' may be under way)."""
    token: generation.Token | None
    if moved is None:
        current = generation.current(destination)
        token = current if options.dry_run else generation.advance(destination, "sync")
        previous = current.value if current else None
    else:
        token, previous = moved
    destination.calibrate_md5((generation.PATH, token.data) if token else None)
    if not options.dry_run:
        aborted = destination.abort_incomplete_uploads(
            keep=lambda path: tree.is_excluded(path) or not only.contains(path))
        if aborted:
            report.note(f"aborted {aborted:,} unfinished multipart uploads left by an interrupted run")
    return token, TaskTemplate(options, token, previous, destination.has_entries(tree.V2),
                               _stamps_trusted(source, report))


class ShardFailed(RegmigError):
    """The one shard of a pass stopped in another process; its error, with the exit code it had there."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def run_shards(runner: Runner, tasks: Sequence[Any], report: Report, here: Job) -> list[ShardOutcome]:
    """The shards run; a shard that stopped part-way is a failure of the pass (so nothing is deleted),
    or, when the pass is that one shard, its error."""
    outcomes = runner.run(tasks, report, here)
    report.listing_finished = True
    for outcome in outcomes:
        if outcome.error is not None:
            if len(tasks) == 1:
                raise ShardFailed(outcome.error, outcome.error_exit)
            report.failure(f"shard {outcome.shard}", outcome.error)
    check_links(outcomes, report)
    return outcomes


def check_links(outcomes: Sequence[ShardOutcome], report: Report) -> None:
    """The symbolic links every shard's source walk followed, checked against each other's: a link
    to where another shard's link led is a problem of the pass, as a whole walk reports it (and so
    blocks the deletes and fails the pass as any walk problem does)."""
    Followed(link for outcome in outcomes for link in outcome.links).settle(report.problem)


def exit_code(options: SyncOptions, report: Report) -> int:
    """1 when anything failed, was passed over or refused, when results do not add up to the pass,
    or when the source changed during a final (``--delete``) pass; else 0."""
    changed_in_window = options.delete and not options.dry_run and report.count(PathList.VANISHED)
    failed = (report.count(PathList.FAILURES) or report.count(PathList.PROBLEMS) or report.delete_refusal
              or report.unaccounted() or changed_in_window)
    return 1 if failed else 0


def _stamps_trusted(source: Storage, report: Report) -> bool:
    """File stamps vouch for content only where a stat answers with the file's current times."""
    kind = source.network_filesystem() if source.is_local else None
    if kind is None:
        return True
    report.note(f"the source is on {kind}: file times are not trusted there (a network or FUSE filesystem's "
                f"attribute cache can answer with old times), so every small file is read and compared")
    return False


def conclude(outcomes: Sequence[ShardOutcome], source: Storage, destination: Storage, options: SyncOptions,
             report: Report, lease: Lease | None, token: generation.Token | None, proof: Proof | None = None) -> None:
    """After every shard: the deletes, if the whole pass allows them, then the proof's confirmation,
    then the shards' records."""
    if options.delete and not options.dry_run and report.count(PathList.VANISHED):
        report.note(f"{report.count(PathList.VANISHED):,} files vanished from the source during a pass with "
                    f"--delete: is the registry read-only? Run the pass again once it is")
    parts = [(outcome.part, outcome.source_count) for outcome in outcomes if outcome.part is not None]
    unproved = None
    try:
        if options.delete and any(outcome.extras.count for outcome in outcomes):
            copier = Copier(source, destination, dry_run=options.dry_run, small_limit=options.small_limit)
            _delete_extras(outcomes, options, copier, report, lease)
        if proof is not None:
            def doubts() -> list[str]:
                refused = [report.delete_refusal] if report.delete_refusal else []
                return unclean_reasons(report, destination, token, lease) + refused

            if not proof.confirm(outcomes, source, destination, options, report, doubts):
                unproved = "the proof failed"
    except BaseException:
        for part, _ in parts:
            part.discard()
        raise
    if parts:
        assert token is not None
        _finish_state(parts, report, destination, token, lease, unproved)


def _finish_state(parts: list[tuple[state.Part, int]], report: Report, destination: Storage,
                  token: generation.Token, lease: Lease | None, unproved: str | None = None) -> None:
    """The records are put in place only when every planned change happened and is accounted for,
    nothing else wrote the destination meanwhile, and a proof that rode along passed: otherwise
    they would lie."""
    unclean = unclean_reasons(report, destination, token, lease) + ([unproved] if unproved else [])
    if report.delete_refusal:
        unclean.append("deletions refused")
    if unclean:
        for part, _ in parts:
            part.discard()
        report.note(f"no state file written ({', '.join(unclean)}): the next pass lists the destination")
        return
    for part, source_count in parts:
        part.commit(source_count)
    entries = sum(part.count for part, _ in parts)
    where = parts[0][0].path if len(parts) == 1 else f"{len(parts)} files, {parts[0][0].path} ..."
    report.note(f"state file written: {where} ({entries:,} entries)")


def report_unclean(report: Report) -> list[str]:
    """What in a report keeps a pass from vouching for what it did."""
    unclean = [f"{report.count(name):,} {name.value}" for name in (PathList.FAILURES, PathList.PROBLEMS,
                                                                    PathList.VANISHED) if report.count(name)]
    if report.unaccounted():
        unclean.append(f"{report.unaccounted():,} objects without a result")
    return unclean


def unclean_reasons(report: Report, destination: Storage, token: generation.Token | None,
                    lease: Lease | None) -> list[str]:
    """Why a pass (or a shard of one) cannot vouch for what it did: failures, entries passed over,
    files that vanished, results that do not add up, a lost lease, or a generation token that moved
    (something else wrote the destination meanwhile). Empty when it is clean."""
    unclean = report_unclean(report)
    if lease is not None and lease.lost:
        unclean.append(lease.lost)
    if not unclean and token is not None:
        try:
            now = generation.current(destination)
        except RegmigError as exc:
            unclean.append(f"the generation token could not be read back: {exc}")
        else:
            if now is None or now.value != token.value:
                unclean.append("the destination's generation token moved during the pass (a verify that failed, "
                               "or another writer)")
    return unclean


def _delete_extras(outcomes: Sequence[ShardOutcome], options: SyncOptions, copier: Copier, report: Report,
                   lease: Lease | None) -> None:
    """Deletes run only after the whole pass, and only when every shard of it was clean (rclone's rule)."""
    extras = Tally(sum(o.extras.count for o in outcomes), sum(o.extras.bytes for o in outcomes))
    source_count = sum(outcome.source_count for outcome in outcomes)
    refusal = None
    if source_count == 0:
        refusal = "the source walk found nothing to copy"
    elif report.count(PathList.PROBLEMS):
        refusal = f"the source walk passed over {report.count(PathList.PROBLEMS):,} entries"
    elif stopped := [str(outcome.shard) for outcome in outcomes if outcome.error]:
        refusal = f"shard {', '.join(stopped)} stopped before its end"
    elif report.count(PathList.FAILURES):
        refusal = f"{report.count(PathList.FAILURES):,} objects failed to copy"
    elif shrunk := _shrunk(outcomes):
        refusal = shrunk
    elif lease is not None and lease.lost:
        refusal = f"{lease.lost}; another run may be writing the destination"
    elif 0 <= options.max_delete < extras.count:
        refusal = f"{extras.count:,} objects would go, more than --max-delete {options.max_delete:,}"
    if refusal:
        report.refuse_delete(f"not deleting {extras.count:,} destination-only objects: {refusal}", extras)
        return
    report.phase = "deleting"
    batch: list[tuple[str, int]] = []
    with WorkerPool(options.workers, report.add_all) as pool:
        for outcome in outcomes:
            for path, size in outcome.candidates or ():
                batch.append((path, size))
                if len(batch) == DELETE_BATCH:
                    pool.submit(copier.delete_batch, batch, covers=batch)
                    batch = []
        if batch:
            pool.submit(copier.delete_batch, batch, covers=batch)


def _shrunk(outcomes: Sequence[ShardOutcome]) -> str | None:
    """The shrink guard, shard by shard: a shard whose source walk found under ``SHRINK_LIMIT`` of
    what the pass that wrote its record found refuses every delete."""
    for outcome in outcomes:
        before = outcome.record_source_files
        if before and outcome.source_count < before * SHRINK_LIMIT:
            where = "" if outcome.shard.count == 1 else f" (shard {outcome.shard})"
            return (f"the source walk found {outcome.source_count:,} files{where}, but the pass that wrote the state "
                    f"file at {outcome.record_written} found {before:,}: is the source mounted? (a failed or missing "
                    f"mount shows an old or empty tree); if the source is right, run again without --state")
    return None
