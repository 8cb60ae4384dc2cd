"""``regmig verify``: the documented object-count check done right, a per-object comparison from
the same merge as sync, markers, and (``--deep``) the registry's own semantics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from checks.markers import Marker, MarkerFinder
from checks.semantics import DeepOptions, SemanticCheck
from migrate import guards, tree
from migrate.compare import content_matches
from migrate.errors import BadInput
from migrate.listing import read_ahead, registry_entries
from migrate.march import march
from migrate.plan import Action, Reason, decide
from migrate.render import DELETED_AFTER_CUTOVER, DIFFERENCE_LISTS, GONE_OR_LOST, WRITTEN_AFTER_CUTOVER
from migrate.report import Report
from migrate.storage.base import Entry, Storage
from migrate.sync import preflight
from migrate.transfer import JobGuard, WorkerPool

DeepSink = Callable[[Entry, "bytes | None"], None]
"""The deep check's intake: a destination entry, and its bytes when proved equal to the source's."""


@dataclass(frozen=True)
class VerifyOptions:
    include_uploads: bool = False
    workers: int = 64
    deep: DeepOptions | None = None
    cutover: float | None = None
    """--cutover-time (POSIX seconds): the registry has served from the destination read-write since."""
    strict: bool = False
    """With ``cutover``: links gone since that cannot be told from lost ones fail the run."""


@dataclass
class Counts:
    """The documented check: regular files vs objects, both without ``_uploads``."""

    source_files: int = 0
    destination_objects: int = 0
    markers: int = 0
    outside_registry: int = 0
    """Destination objects outside docker/ (and scheduler-state.json): counted apart, like markers."""
    source_outside_registry: int = 0
    marker_kinds: dict[str, int] = field(default_factory=dict)

    def add_marker(self, marker: Marker) -> None:
        self.markers += 1
        self.marker_kinds[marker.kind.value] = self.marker_kinds.get(marker.kind.value, 0) + 1


def verify(source: Storage | None, destination: Storage, options: VerifyOptions, report: Report) -> dict[str, Any]:
    """Compare ``destination`` with ``source`` (or, without a source, check the destination alone)."""
    if source is not None:
        preflight(source, destination)
    elif options.cutover is not None:
        raise BadInput("--cutover-time needs SOURCE: it proves the destination against the source as frozen")
    else:
        destination.check_reachable()
    guards.require_registry_data(destination)
    counts = Counts()
    finder = MarkerFinder()
    semantics = SemanticCheck(destination, options.deep, report, source) if options.deep else None
    cutover = Cutover(options.cutover, options.strict) if options.cutover is not None else None

    def is_registry_marker(entry: Entry) -> bool:
        """Feed one destination entry to the marker finder; True for a marker (counted apart)."""
        for marker in finder.see(entry):
            _record_marker(marker, counts, report)
        return tree.is_registry_marker(entry.path, entry.size)  # another tool's folder is foreign data

    report.begin_phase("listing and comparing")
    destination_entries = read_ahead(
        registry_entries(destination.walk(), include_uploads=options.include_uploads, skip_markers=False))
    if source is None:
        for entry in destination_entries:
            report.examined_one()
            if not is_registry_marker(entry):
                _count_destination(entry.path, counts)
                if semantics:
                    semantics.see(entry)
    else:
        source_entries = read_ahead(registry_entries(source.walk(on_problem=report.problem),
                                                     include_uploads=options.include_uploads, skip_markers=True))
        deep = semantics.see if semantics else None
        with WorkerPool(options.workers) as pool:
            for path, src, dst in march(source_entries, destination_entries):
                report.examined_one()
                if src is not None and tree.is_registry_data(path):
                    counts.source_files += 1
                elif src is not None:
                    counts.source_outside_registry += 1
                if dst is not None and is_registry_marker(dst):
                    continue  # counted apart; a source never holds markers (its walk skips them)
                if dst is not None:
                    _count_destination(path, counts)
                if cutover and cutover.settles(path, src, dst, destination, pool, report):
                    if deep and dst is not None:
                        deep(dst, None)
                    continue
                _compare(path, src, dst, source, destination, pool, report, deep)
    for marker in finder.finish():
        _record_marker(marker, counts, report)
    report.listing_finished = True
    findings = semantics.finish() if semantics else []
    for error in semantics.errors if semantics else []:
        report.failure(error.split(": ", 1)[0], error.split(": ", 1)[-1])
    if cutover:
        cutover.note(report)
    report.end_phases()
    return {"counts": counts.__dict__, "findings": findings,
            "deep_counts": semantics.counts.__dict__ if semantics else None,
            "cutover": cutover.to_dict() if cutover else None}


class Cutover:
    """``--cutover-time``: the registry has written the destination since ``time``. What it wrote
    since is its own; what is older must match the frozen source; a blob gone is a failure (the
    registry deletes blobs only by garbage collection), a link gone is told apart where the
    destination keeps delete markers, else a warning (a failure with ``--strict``)."""

    def __init__(self, time: float, strict: bool) -> None:
        self.time = time
        self.strict = strict
        self.untimed = 0
        """Destination objects listed without a time: compared as written before the cut-over."""

    def settles(self, path: str, src: Entry | None, dst: Entry | None, destination: Storage, pool: WorkerPool,
                report: Report) -> bool:
        """True when the cut-over accounts for this pair, so it is not compared with the source."""
        if dst is not None:
            if dst.modified is None:
                self.untimed += 1
            elif dst.modified >= self.time:
                report.add_to_list(WRITTEN_AFTER_CUTOVER, path)
                return True
            return False
        if src is not None and tree.classify(path).kind in tree.LINK_KINDS:
            pool.submit(self._gone, destination, path, report)
            return True
        return False

    def _gone(self, destination: Storage, path: str, report: Report) -> None:
        with JobGuard(report, path):
            deleted = destination.deleted_after(path, self.time)
            if deleted is None:
                report.add_to_list(GONE_OR_LOST, path)
            elif deleted:
                report.add_to_list(DELETED_AFTER_CUTOVER, path)
            else:
                report.add_to_list("missing in destination", path, "no delete marker since the cut-over")

    def note(self, report: Report) -> None:
        if self.untimed:
            report.note(f"{self.untimed:,} destination objects were listed without a modification time: "
                        f"compared with the source as if written before the cut-over")
        if report.count(GONE_OR_LOST):
            report.note(f"{report.count(GONE_OR_LOST):,} links are gone from the destination: deleted through the "
                        f"registry after the cut-over, or lost; the bucket keeps no delete markers to tell "
                        f"(turn versioning on before the cut-over)"
                        + ("" if self.strict else "; --strict fails on them"))

    def to_dict(self) -> dict[str, Any]:
        return {"time": datetime.fromtimestamp(self.time, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "strict": self.strict, "untimed_objects": self.untimed}


def parse_cutover_time(value: str) -> float:
    """ISO 8601 in UTC (``2026-11-22T07:00:00Z`` or ``+00:00``), to the second, as listings give times.
    Anything else is refused: a time without its zone is a guess about the clock it came from."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        parsed = None
    if parsed is None or parsed.utcoffset() != timedelta(0):
        raise BadInput(f"--cutover-time {value!r}: give the time in UTC as ISO 8601, for example 2026-11-22T07:00:00Z")
    return float(int(parsed.timestamp()))


def _count_destination(path: str, counts: Counts) -> None:
    if tree.is_registry_data(path):
        counts.destination_objects += 1
    else:
        counts.outside_registry += 1


def _record_marker(marker: Marker, counts: Counts, report: Report) -> None:
    counts.add_marker(marker)
    report.add_to_list("markers", marker.path, marker.kind.value)


def _compare(path: str, src: Entry | None, dst: Entry | None, source: Storage, destination: Storage,
             pool: WorkerPool, report: Report, deep: DeepSink | None) -> None:
    action, reason = decide(path, src, dst)
    if action is Action.CHECK:
        assert src is not None and dst is not None
        if source.is_local and dst.md5 is not None:
            # A local read and an MD5: cheaper here than a hand-off to a worker (as in sync).
            _check_content(source, destination, path, dst, report, deep)
        else:
            pool.submit(_check_content, source, destination, path, dst, report, deep)
        return
    if deep and dst is not None:
        deep(dst, None)
    if action is Action.UPLOAD:
        name = {Reason.MISSING: "missing in destination", Reason.SIZE: "size differs"}.get(reason, "content differs")
        report.add_to_list(name, path)
    elif action is Action.DELETE:
        report.add_to_list("extra in destination", path)
    elif action is Action.KEEP:
        report.add_to_list("outside the registry tree", path)


def _check_content(source: Storage, destination: Storage, path: str, dst: Entry, report: Report,
                   deep: DeepSink | None) -> None:
    """Same size: compare content. The deep check then takes the bytes found equal to the source's
    (no read of its own), or, when they differ or could not be compared, decides for itself."""
    proved = None
    with JobGuard(report, path):
        same, data = content_matches(source, destination, path, dst)
        if not same:
            report.add_to_list("content differs", path)
        else:
            proved = data
    if deep:
        deep(dst, proved)


def verdict(summary: dict[str, Any]) -> int:
    """0 when consistent; 1 for any difference, marker, defect or failure."""
    lists = summary["lists"]
    bad = [name for name in (*DIFFERENCE_LISTS, "markers", "failures", "problems", "vanished")
           if lists.get(name, {}).get("count")]
    counts = summary["counts"]
    cutover = summary.get("cutover")
    if cutover and cutover["strict"] and lists.get(GONE_OR_LOST, {}).get("count"):
        bad.append(GONE_OR_LOST)
    # After a cut-over the registry's own writes and deletes change the counts; each object is settled above.
    count_mismatch = summary.get("source") is not None and not cutover and \
        counts["source_files"] != counts["destination_objects"]
    empty = counts["destination_objects"] == 0
    return 1 if bad or summary["findings"] or count_mismatch or empty else 0
