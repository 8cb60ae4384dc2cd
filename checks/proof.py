"""``sync --verify``: the final pass proves what it leaves, without a second walk or listing.

A separate ``verify`` after the final pass walks the source and lists the destination again,
doubling the read-only window. The final pass already did both, hashing every link file and
comparing each path, so here its comparison is the proof: a path it found equal is proved by
the listing, as verify proves it (the listed MD5 against the walk's, a blob's size under its
digest); a path it wrote, compared or deleted is looked at again once the deletes are done, one
request each, against the destination as it is then (there, with the size and content written;
gone). Nothing is taken from a state record: the pass lists the destination.

What it cannot see, a verify run after it would: a source file that changes after the walk on
a path the pass found equal. The registry must be read-only, as for any final pass.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from checks.checked import Checked
from migrate import tree
from migrate.compare import content_matches
from migrate.outcome import Outcome, Result
from migrate.plan import Action
from migrate.report import Report
from migrate.shardsync import Candidates, ShardOutcome, ShardTask, Witness, sync_shard, sync_shard_elsewhere
from migrate.storage.base import Entry, Storage
from migrate.sync import SyncOptions
from migrate.transfer import WorkerPool, attempt

CONFIRM_BATCH = 64
"""Paths per confirmation job: one thread hand-off per 64 requests."""
Row = tuple[str, int, "str | None"]
"""A path the pass changed: its size and, where the walk hashed it, the MD5 of the bytes sent."""


@dataclass
class ProofCounts:
    """One shard's paths by what the pass did with them (added up over the shards)."""

    source_files: int = 0
    """Under ``docker/`` (the documented count, without ``_uploads``)."""
    source_outside_registry: int = 0
    destination_listed: int = 0
    """Registry objects the listing showed, markers included."""
    added: int = 0
    """Registry objects the pass wrote where the listing showed none."""
    proved: int = 0
    """Found equal by the listing: nothing written, nothing to look at again."""
    written: int = 0
    compared: int = 0
    """Same size, no MD5 to compare: the pass read and compared (and wrote where they differed)."""
    extras: int = 0
    """Destination-only under ``docker/``: deleted with ``--delete``."""
    markers: int = 0
    """Zero-byte markers among the extras."""
    markers_left: int = 0
    """Zero-byte markers a sync never deletes (the root's own key): ``nameless-tags --fix`` does."""
    outside_registry: int = 0

    def add(self, other: dict[str, int]) -> None:
        for name, value in other.items():
            setattr(self, name, getattr(self, name) + value)


@dataclass
class ShardProof:
    """``shardsync.Witness`` of one shard: its counts, what the registry holds, the paths it changed."""

    counts: ProofCounts = field(default_factory=ProofCounts)
    checked: Checked = field(default_factory=Checked)
    changed: Candidates = field(default_factory=lambda: Candidates("regmig-written-"))

    def see(self, path: str, action: Action, src: Entry | None, dst: Entry | None) -> None:
        counts = self.counts
        if src is not None:
            if tree.is_registry_data(path):
                counts.source_files += 1
                self.checked.see(path)  # after the pass the destination holds exactly the source
            else:
                counts.source_outside_registry += 1
        if dst is not None and tree.is_registry_data(path):
            counts.destination_listed += 1
        if action is Action.SKIP:
            counts.proved += 1
        elif action in (Action.UPLOAD, Action.CHECK):
            assert src is not None
            if action is Action.UPLOAD:
                counts.written += 1
            else:
                counts.compared += 1
            counts.added += dst is None and tree.is_registry_data(path)
            self.changed.add(path, src.size, src.md5)
        elif action is Action.DELETE:
            assert dst is not None
            counts.extras += 1
            counts.markers += tree.is_registry_marker(path, dst.size)
        else:
            assert dst is not None
            counts.outside_registry += 1
            counts.markers_left += tree.is_registry_marker(path, dst.size)

    def result(self) -> dict[str, Any]:
        """Plain data for the pass (pickled back from a worker process)."""
        return {"proof": {"counts": asdict(self.counts), "checked": self.checked.counts}, "changed": self.changed}


def prove_shard_elsewhere(source: Storage, destination: Storage, task: ShardTask, report: Report) -> ShardOutcome:
    """A shard of the pass with its merge witnessed, in a worker process or on a Dask worker."""
    return _witnessed(sync_shard_elsewhere, source, destination, task, report)


def _witnessed(run: Callable[[Storage, Storage, ShardTask, Report, Witness], ShardOutcome], source: Storage,
               destination: Storage, task: ShardTask, report: Report) -> ShardOutcome:
    """``run`` (a shard's sync) with a ``ShardProof`` seeing its merge; its counts and changes in the result."""
    witness = ShardProof()
    outcome = run(source, destination, task, report, witness)
    outcome.result.update(witness.result())
    return outcome


class PassProof:
    """``sync.Proof``: runs each shard witnessed, then looks again at what the pass changed;
    ``summary`` holds the verdict for the report."""

    def __init__(self) -> None:
        self.summary: dict[str, Any] = {"verdict": "not reached", "reasons": [], "confirmed": 0}

    def shard(self, source: Storage, destination: Storage, task: ShardTask, report: Report) -> ShardOutcome:
        """A shard of the pass here, with the locations (their MD5s calibrated) the pass opened."""
        return _witnessed(sync_shard, source, destination, task, report)

    def confirm(self, outcomes: Sequence[ShardOutcome], source: Storage, destination: Storage,
                options: SyncOptions, report: Report, doubts: Callable[[], list[str]]) -> bool:
        """True when proved. Each object found other than the pass left it is a failure of the pass;
        ``doubts`` are asked before and after looking again (a lease lost meanwhile proves nothing)."""
        if not self._trusted(outcomes, doubts()):
            return False
        counts, checked = ProofCounts(), Checked()
        for outcome in outcomes:
            counts.add(outcome.result["proof"]["counts"])
            for name, value in outcome.result["proof"]["checked"].items():
                checked.counts[name] += value
        deleted = options.delete and not options.dry_run
        # The documented count, as the pass leaves the destination: what the listing showed, plus
        # what the pass added, less what it deleted (each looked at again below).
        self.summary.update(counts=asdict(counts), checked=checked.counts,
                            destination_objects=counts.destination_listed + counts.added
                            - (counts.extras if deleted else 0))
        if counts.extras and not deleted:
            self._fail(f"{counts.extras:,} objects under docker/ are only in the destination: run with --delete")
        if counts.markers_left:
            self._fail(f"{counts.markers_left:,} zero-byte markers remain (the root's own key): run regmig "
                       f"nameless-tags {destination.url} --fix")
        changed = counts.written + counts.compared + (counts.extras if deleted else 0)
        report.begin_phase("looking again at what the pass changed", changed)
        tally = _Tally(report)
        with WorkerPool(options.workers, tally.consume) as pool:
            for batch in _batches(outcome.result["changed"].rows() for outcome in outcomes):
                pool.submit(_look_at_written, source, destination, batch, covers=[row[:2] for row in batch])
            if deleted:
                for batch in _batches(((path, size, None) for path, size in outcome.candidates or ())
                                      for outcome in outcomes):
                    pool.submit(_look_at_deleted, destination, batch, covers=[row[:2] for row in batch])
        report.end_phases()
        self.summary["confirmed"] = changed - tally.failed
        if tally.failed:
            self._fail(f"{tally.failed:,} of the {changed:,} objects the pass changed are not as it left them "
                       f"(listed under failures)")
        if not self._trusted(outcomes, doubts()):
            return False
        if not self.summary["reasons"]:
            self.summary["verdict"] = "proved"
        return self.summary["verdict"] == "proved"

    def _trusted(self, outcomes: Sequence[ShardOutcome], doubts: list[str]) -> bool:
        if not doubts and any("proof" not in outcome.result for outcome in outcomes):
            doubts = ["a shard ended without its proof"]
        if doubts:
            self._fail(f"the pass did not end clean ({'; '.join(doubts)}): nothing is proved; run it again")
        return not doubts

    def _fail(self, reason: str) -> bool:
        self.summary["verdict"] = "failed"
        self.summary["reasons"].append(reason)
        return False


class _Tally:
    """The one consumer of the looking-again jobs: anything but ``confirmed`` is a failure of the pass."""

    def __init__(self, report: Report) -> None:
        self._report = report
        self._lock = threading.Lock()  # the pool hands results over on its worker threads
        self.failed = 0

    def consume(self, results: list[Result]) -> None:
        failed = [result for result in results if result.outcome is not Outcome.CONFIRMED]
        with self._lock:
            self.failed += len(failed)
        for result in failed:
            self._report.failure(result.path, result.message)
        self._report.advance(len(results))


def _batches(streams: Iterable[Iterable[Row]]) -> Iterator[list[Row]]:
    """The rows of every shard, ``CONFIRM_BATCH`` at a time."""
    batch: list[Row] = []
    for stream in streams:
        for row in stream:
            batch.append(row)
            if len(batch) == CONFIRM_BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


def _look_at_written(source: Storage, destination: Storage, batch: list[Row]) -> list[Result]:
    """Each path written or compared, as the destination holds it now."""
    results = []
    for path, size, md5 in batch:
        result, failure = attempt(path, size, "proof", lambda: _written(source, destination, path, size, md5))
        results.append(failure or result)
    return results  # type: ignore[return-value]


def _written(source: Storage, destination: Storage, path: str, size: int, md5: str | None) -> Result:
    """There, of the size written, and of the content: by MD5 where both are known, by the size
    under a blob's digest, else by comparing with the source's bytes (``content_matches``: a
    service that lists no content MD5, a filesystem, a file the walk did not hash)."""
    found = destination.stat(path)
    if found is None:
        return Result(Outcome.FAILED, path, size, "proof", "missing from the destination after the pass wrote it")
    if found.size != size:
        return Result(Outcome.FAILED, path, size, "proof",
                      f"{found.size:,} bytes in the destination after the pass wrote {size:,}")
    if md5 is not None and found.md5 is not None:
        same = found.md5 == md5
    else:
        same = tree.is_content_addressed(path) or content_matches(source, destination, path, found)[0]
    if not same:
        return Result(Outcome.FAILED, path, size, "proof", "other content in the destination than the pass wrote")
    return Result(Outcome.CONFIRMED, path, size)


def _look_at_deleted(destination: Storage, batch: list[Row]) -> list[Result]:
    """Each path deleted, gone from the destination now."""
    results = []
    for path, size, _ in batch:
        found, failure = attempt(path, size, "proof", lambda: destination.stat(path) is not None)
        results.append(failure or (Result(Outcome.FAILED, path, size, "proof", "still in the destination after "
                                          "the pass deleted it") if found else Result(Outcome.CONFIRMED, path, size)))
    return results
