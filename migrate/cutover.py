"""``regmig plan``: what a sync would do now, per area of the tree, and how long the read-only
window would take (the final pass and the proof that follows it), from rates measured in this run."""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from migrate import tree
from migrate.outcome import Outcome, Result
from migrate.probe import probe_writes
from migrate.report import Report, Tally
from migrate.runners import Runner
from migrate.shards import WHOLE, Shard
from migrate.storage.base import Storage
from migrate.sync import SyncOptions, sync


LISTING_SAMPLE = 20_000
"""Destination keys listed to time the listing the proof depends on: twenty pages, a few seconds."""


def area(path: str) -> str:
    if path.startswith(tree.BLOBS):
        return "blobs"
    if path.startswith(tree.REPOSITORIES):
        return "repositories"
    if path.startswith(tree.LOCKFILES):
        return "lockfiles"
    return "other"


class AreaReport(Report):
    """A report that also tallies every outcome per area of the registry tree."""

    def __init__(self) -> None:
        super().__init__()
        self.areas: dict[str, dict[Outcome, Tally]] = defaultdict(lambda: defaultdict(Tally))

    def add(self, result: Result) -> None:
        super().add(result)
        with self._lock:
            tally = self.areas[area(result.path)][result.outcome]
            tally.count += 1
            tally.bytes += result.size

    def counts_each_skip(self) -> bool:
        return True  # its areas count every path

    def state(self) -> dict[str, Any]:
        counted = super().state()
        with self._lock:
            counted["areas"] = [[name, outcome.value, tally.count, tally.bytes]
                                for name, outcomes in self.areas.items() for outcome, tally in outcomes.items()]
        return counted

    def absorb(self, state: dict[str, Any], shard: int | None = None) -> None:
        super().absorb(state, shard)
        with self._lock:
            for name, outcome, count, size in state.get("areas", ()):
                tally = self.areas[name][Outcome(outcome)]
                tally.count += count
                tally.bytes += size


@dataclass(frozen=True)
class PlanOptions:
    workers: int = 64
    include_uploads: bool = False
    probe: bool = True
    final: bool = False
    source_readonly: bool | None = None
    """From the source registry config, when one was given."""
    state_path: str | None = None


def plan(source: Storage, destination: Storage, options: PlanOptions, report: AreaReport, *,
         shards: Sequence[Shard] = (WHOLE,), runner: Runner | None = None) -> dict[str, Any]:
    sync(source, destination, SyncOptions(delete=True, dry_run=True, max_delete=-1, workers=options.workers,
                                          include_uploads=options.include_uploads, state_path=options.state_path),
         report, shards=shards, runner=runner)
    scan_seconds = report.elapsed()
    flags = []
    uploads = report.tally(Outcome.NOT_COPIED)
    if uploads.count:
        # In the window a push in flight is lost; before it, they are the registry at work.
        (flags.append if options.final else report.note)(
            f"{uploads.count:,} files in _uploads or tmp debris ({uploads.bytes:,} bytes): pushes in flight "
            "or abandoned; they are not copied")
    if options.final and options.source_readonly is False:
        flags.append("the source registry is not read-only: set maintenance.readonly.enabled: true before the "
                     "final sync --delete, or pushes made during it can be lost")
    if options.final and options.source_readonly is None:
        flags.append("--final without --from-config: cannot check that the source registry is read-only")
    pending = report.tally(Outcome.WOULD_UPLOAD)
    deletes = report.tally(Outcome.WOULD_DELETE)
    estimate: dict[str, Any] = {"scan_seconds": round(scan_seconds, 2),
                                "pending_uploads": pending.to_dict(), "pending_deletes": deletes.to_dict()}
    if options.probe:
        report.phase = "probing writes"
        probe = probe_writes(destination)
        requests = pending.count + deletes.count
        transfer = requests * probe.small_write_seconds / options.workers + pending.bytes / probe.bytes_per_second
        final_pass = scan_seconds + transfer
        # After the final pass the destination holds what the source holds; verify lists all of it
        # and walks the source (as this run did), whichever takes longer.
        objects = report.tally(Outcome.SKIPPED).count + pending.count
        rate = listing_rate(destination)
        proof = max(objects / rate if rate else 0.0, scan_seconds)
        # sync --verify: one pass that walks and lists at once, then looks at each change again.
        one_pass = proof + transfer + requests * probe.small_write_seconds / options.workers
        estimate.update(
            small_write_seconds=round(probe.small_write_seconds, 4),
            write_bytes_per_second=round(probe.bytes_per_second),
            listing_objects_per_second=round(rate) if rate else None,
            objects_after_final_pass=objects,
            final_pass_seconds=round(final_pass, 1),
            proof_seconds=round(proof, 1),
            read_only_window_seconds=round(final_pass + proof, 1),
            one_pass_window_seconds=round(one_pass, 1),
            assumes="the final pass lists and compares as fast as this run, verify lists the destination as fast "
                    "as its first keys listed here, and nothing else changes before it",
        )
    return {
        "areas": {name: {outcome.value: tally.to_dict()
                         for outcome, tally in sorted(outcomes.items(), key=lambda item: item[0].value)}
                  for name, outcomes in sorted(report.areas.items())},
        "flags": flags,
        "estimate": estimate,
    }


def listing_rate(destination: Storage) -> float | None:
    """Objects per second listed from the destination, over its first ``LISTING_SAMPLE`` keys
    (None when it holds none): the rate at which verify, which lists it all, will go."""
    started = time.monotonic()
    listed = sum(1 for _ in itertools.islice(destination.walk(), LISTING_SAMPLE))
    elapsed = time.monotonic() - started
    return listed / elapsed if listed and elapsed > 0 else None
