"""``sync --verify``: the final pass proves what it leaves, without a second walk or listing.

A separate ``verify`` after the final pass walks the source and lists the destination again,
doubling the read-only window. The final pass already did both, hashing every link file and
comparing each path, so here its comparison is the proof: a path it found equal is proved by
the listing, as verify proves it (the listed MD5 against the walk's, a blob's size under its
digest); a path it wrote or deleted is confirmed once the deletes are done, one request each,
against the destination as it is then (there with the size and MD5 written; gone). Nothing is
taken from a state record: the pass lists the destination.

The verdict is verify's: every source file is in the destination, nothing the registry owns is
there that the source lacks, and the counts agree. A pass that did not end clean proves nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from checks.verify import Checked
from migrate import tree
from migrate.outcome import Outcome, Result
from migrate.plan import Action
from migrate.report import Report
from migrate.shardsync import Candidates, ShardOutcome, ShardTask, sync_shard, sync_shard_elsewhere
from migrate.storage.base import Entry, Storage
from migrate.sync import SyncOptions
from migrate.transfer import WorkerPool

CONFIRM_BATCH = 64
"""Paths per confirmation job: one thread hand-off per 64 requests."""
COUNTS = ("source_files", "source_outside_registry", "destination_listed", "added", "proved", "written", "extras",
          "markers", "outside_registry")


@dataclass
class ShardProof:
    """What one shard's merge showed: counts, what the registry holds, and the paths it wrote."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    checked: Checked = field(default_factory=Checked)
    written: Candidates = field(default_factory=Candidates)

    def see(self, path: str, action: Action, src: Entry | None, dst: Entry | None) -> None:
        counts = self.counts
        if src is not None:
            if tree.is_registry_data(path):
                counts["source_files"] += 1
                self.checked.see(path)  # after the pass the destination holds exactly the source
            else:
                counts["source_outside_registry"] += 1
        if dst is not None and tree.is_registry_data(path):
            counts["destination_listed"] += 1
        if action is Action.SKIP:
            counts["proved"] += 1
        elif action in (Action.UPLOAD, Action.CHECK):
            assert src is not None
            counts["written"] += 1
            counts["added"] += dst is None and tree.is_registry_data(path)
            self.written.add(path, src.size, src.md5)
        elif action is Action.DELETE:
            assert dst is not None
            counts["extras"] += 1
            counts["markers"] += tree.is_registry_marker(path, dst.size)
        else:
            counts["outside_registry"] += 1

    def result(self) -> dict[str, Any]:
        return {"proof": {"counts": self.counts, "checked": self.checked.counts}, "written": self.written}


def prove_shard(source: Storage, destination: Storage, task: ShardTask, report: Report) -> ShardOutcome:
    """A shard of the pass, its merge witnessed (here)."""
    witness = ShardProof()
    outcome = sync_shard(source, destination, task, report, witness)
    outcome.result.update(witness.result())
    return outcome


def prove_shard_elsewhere(source: Storage, destination: Storage, task: ShardTask, report: Report) -> ShardOutcome:
    """A shard of the pass, its merge witnessed, in another process (``--processes``, ``--dask``)."""
    witness = ShardProof()
    outcome = sync_shard_elsewhere(source, destination, task, report, witness)
    outcome.result.update(witness.result())
    return outcome


class PassProof:
    """``sync.Proof``: runs each shard witnessed, then confirms what the pass changed; ``summary``
    holds the verdict for the report."""

    def __init__(self) -> None:
        self.summary: dict[str, Any] = {"verdict": "not reached", "reasons": [], "confirmed": 0}

    def shard(self, source: Storage, destination: Storage, task: ShardTask, report: Report) -> ShardOutcome:
        return prove_shard(source, destination, task, report)

    def confirm(self, outcomes: Sequence[ShardOutcome], destination: Storage, options: SyncOptions,
                report: Report, doubts: Sequence[str]) -> None:
        counts, checked = dict.fromkeys(COUNTS, 0), dict.fromkeys(Checked().counts, 0)
        for outcome in outcomes:
            proof = outcome.result["proof"]
            for name, value in proof["counts"].items():
                counts[name] += value
            for name, value in proof["checked"].items():
                checked[name] += value
        self.summary.update(counts=counts, checked=checked)
        if doubts:
            self._fail(f"the pass did not end clean ({'; '.join(doubts)}): nothing is proved; run it again")
            return
        deleted = options.delete and not options.dry_run
        if counts["extras"] and not deleted:
            self._fail(f"{counts['extras']:,} objects under docker/ are only in the destination: run with --delete")
        total = counts["written"] + (counts["extras"] if deleted else 0)
        report.begin_phase("confirming what the pass changed", total)
        failures: list[Result] = []
        with WorkerPool(options.workers, lambda results: _consume(results, report, failures)) as pool:
            for batch in _batches(outcome.result["written"].rows() for outcome in outcomes):
                pool.submit(_confirm_written, destination, batch, covers=[row[:2] for row in batch])
            if deleted:
                for batch in _batches(((path, size, None) for path, size in outcome.candidates or ())
                                      for outcome in outcomes):
                    pool.submit(_confirm_deleted, destination, batch, covers=[row[:2] for row in batch])
        report.end_phases()
        self.summary["confirmed"] = total - len(failures)
        if failures:
            self._fail(f"{len(failures):,} of the {total:,} objects the pass changed are not as it left them "
                       f"(listed under failures)")
        # The documented object count, from the walk and the listing with what the pass added and deleted.
        after = counts["destination_listed"] + counts["added"] - (counts["extras"] if deleted else 0)
        self.summary["destination_objects"] = after
        if counts["source_files"] != after:
            self._fail(f"object count (excluding _uploads): source {counts['source_files']:,} files, destination "
                       f"{after:,} objects after the pass")
        if not self.summary["reasons"]:
            self.summary["verdict"] = "proved"

    def _fail(self, reason: str) -> None:
        self.summary["verdict"] = "failed"
        self.summary["reasons"].append(reason)


def _batches(streams: Iterable[Iterable[tuple[str, int, str | None]]]) -> Iterable[list[tuple[str, int, str | None]]]:
    batch: list[tuple[str, int, str | None]] = []
    for stream in streams:
        for row in stream:
            batch.append(row)
            if len(batch) == CONFIRM_BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


def _consume(results: list[Result], report: Report, failures: list[Result]) -> None:
    """The one consumer of the confirmation jobs: anything but ``confirmed`` is a failure of the pass."""
    for result in results:
        if result.outcome is not Outcome.CONFIRMED:
            failures.append(result)
            report.failure(result.path, result.message)
    report.advance(len(results))


def _confirm_written(destination: Storage, batch: list[tuple[str, int, str | None]]) -> list[Result]:
    return [_written(destination.stat(path), path, size, md5) for path, size, md5 in batch]


def _written(found: Entry | None, path: str, size: int, md5: str | None) -> Result:
    if found is None:
        return _failed(path, size, "missing from the destination after the pass wrote it")
    if found.size != size:
        return _failed(path, size, f"{found.size:,} bytes in the destination after the pass wrote {size:,}")
    if md5 is not None and found.md5 is not None and found.md5 != md5:
        return _failed(path, size, "other content in the destination than the pass wrote")
    return Result(Outcome.CONFIRMED, path, size)


def _confirm_deleted(destination: Storage, batch: list[tuple[str, int, str | None]]) -> list[Result]:
    return [_failed(path, size, "still in the destination after the pass deleted it")
            if destination.stat(path) is not None else Result(Outcome.CONFIRMED, path, size)
            for path, size, _ in batch]


def _failed(path: str, size: int, message: str) -> Result:
    return Result(Outcome.FAILED, path, size, "proof", message)
