"""``regmig verify``: the documented object-count check done right, a per-object comparison from
the same merge as sync, markers, and (``--deep``) the registry's own semantics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from checks.after_cutover import Cutover
from checks.checked import Checked
from checks.markers import Marker, MarkerFinder
from checks.semantics import DeepOptions, SemanticCheck
from migrate import generation, guards, tree
from migrate.compare import content_matches
from migrate.errors import BadInput, RegmigError
from migrate.listing import read_ahead, registry_entries
from migrate.march import march
from migrate.outcome import DIFFERENCES, PathList, Result
from migrate.plan import Action, Reason, decide
from migrate.report import Report
from migrate.runners import Here, Runner
from migrate.shards import WHOLE, Shard
from migrate.shardsync import INLINE_READ, ShardOutcome, shard_walk
from migrate.storage.base import Entry, Link, Storage
from migrate.sync import preflight, run_shards
from migrate.transfer import WorkerPool, attempt

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

    def add(self, shard: dict[str, Any]) -> None:
        """A shard's counts added to these."""
        for name, value in shard.items():
            if name == "marker_kinds":
                for kind, count in value.items():
                    self.marker_kinds[kind] = self.marker_kinds.get(kind, 0) + count
            else:
                setattr(self, name, getattr(self, name) + value)


@dataclass(frozen=True)
class VerifyTask:
    """One shard of a verify, as plain data (it may run in another process)."""

    shard: Shard
    include_uploads: bool
    workers: int
    token_data: bytes | None
    """The destination's generation token as stored: a known content for ``calibrate_md5``."""
    cutover: float | None = None
    strict: bool = False


def verify(source: Storage | None, destination: Storage, options: VerifyOptions, report: Report, *,
           shards: Sequence[Shard] = (WHOLE,), runner: Runner | None = None) -> dict[str, Any]:
    """Compare ``destination`` with ``source`` (or, without a source, check the destination alone),
    as ``shards`` run by ``runner`` (default: here), their counts added up."""
    if source is not None:
        preflight(source, destination)
    elif options.cutover is not None:
        raise BadInput("--cutover-time needs SOURCE: it proves the destination against the source as frozen")
    else:
        destination.check_reachable()
    guards.require_registry_data(destination)
    if options.deep and (len(shards) > 1 or runner is not None):  # its check lives in this process
        raise BadInput("--deep follows references across the whole tree (a manifest's blobs lie in other "
                       "shards): run it as one shard, without --processes, --shards or --dask (its listings "
                       "still run on several threads)")
    token = generation.current(destination)  # an object of known content: are listed MD5s content MD5s?
    destination.calibrate_md5((generation.PATH, token.data) if token else None)
    semantics = SemanticCheck(destination, options.deep, report, source) if options.deep else None
    runner = runner or Here()
    tasks = [VerifyTask(shard, options.include_uploads, -(-options.workers // runner.concurrency),
                        token.data if token else None, options.cutover, options.strict) for shard in shards]
    report.begin_phase("listing and comparing")
    outcomes = run_shards(runner, tasks, report,
                          lambda task, shard_report: verify_shard(source, destination, task, shard_report, semantics))
    counts, checked = Counts(), Checked()
    cutover = Cutover(options.cutover, options.strict) if options.cutover is not None else None
    for outcome in outcomes:
        counts.add(outcome.result.get("counts", {}))
        for name, value in outcome.result.get("checked", {}).items():
            checked.counts[name] += value
        if cutover:
            cutover.untimed += outcome.result.get("untimed", 0)
    findings = semantics.finish() if semantics else []
    for error in semantics.errors if semantics else []:
        report.failure(error.split(": ", 1)[0], error.split(": ", 1)[-1])
    if cutover:
        cutover.note(report)
    report.end_phases()
    return {"counts": counts.__dict__, "checked": checked.counts, "findings": findings,
            "deep_counts": semantics.counts.__dict__ if semantics else None,
            "cutover": cutover.to_dict() if cutover else None}


def verify_shard_elsewhere(source: Storage | None, destination: Storage, task: VerifyTask,
                           report: Report) -> ShardOutcome:
    """``verify_shard`` with locations just opened in another process, listed MD5s calibrated first."""
    destination.calibrate_md5((generation.PATH, task.token_data) if task.token_data else None)
    return verify_shard(source, destination, task, report)


def verify_shard(source: Storage | None, destination: Storage, task: VerifyTask, report: Report,
                 semantics: SemanticCheck | None = None) -> ShardOutcome:
    """One shard's comparison: its part of both listings merged, counted and compared; markers found
    (``semantics``: the deep check, fed every destination entry, when the verify is one shard)."""
    counts = Counts()
    checked = Checked()
    finder = MarkerFinder()
    cutover = Cutover(task.cutover, task.strict) if task.cutover is not None else None
    links: list[Link] = []

    def is_registry_marker(entry: Entry) -> bool:
        """Feed one destination entry to the marker finder; True for a marker (counted apart)."""
        for marker in finder.see(entry):
            _record_marker(marker, counts, report)
        return tree.is_registry_marker(entry.path, entry.size)  # another tool's folder is foreign data

    destination_entries = read_ahead(registry_entries(shard_walk(destination, task.shard),
                                                      include_uploads=task.include_uploads, skip_markers=False))
    if source is None:
        for entry in destination_entries:
            report.examined_one(entry.path)
            if not is_registry_marker(entry):
                _count_destination(entry.path, counts, checked)
                if semantics:
                    semantics.see(entry)
    else:
        # The walk hashes link files as it reads each directory (``INLINE_READ``): the comparison
        # then sets their MD5 against the listed one without opening them again by path.
        walk = shard_walk(source, task.shard, report.problem, INLINE_READ, on_link=links.append)
        source_entries = read_ahead(registry_entries(walk, include_uploads=task.include_uploads, skip_markers=True))
        deep = semantics.see if semantics else None
        with WorkerPool(task.workers, report.add_all) as pool:
            for path, src, dst in march(source_entries, destination_entries):
                report.examined_one(path)
                if src is not None and tree.is_registry_data(path):
                    counts.source_files += 1
                elif src is not None:
                    counts.source_outside_registry += 1
                if dst is not None and is_registry_marker(dst):
                    continue  # counted apart; a source never holds markers (its walk skips them)
                if dst is not None:
                    _count_destination(path, counts, checked)
                if cutover and cutover.settles(path, src, dst, destination, pool, report):
                    if deep and dst is not None:
                        deep(dst, None)
                    continue
                _compare(path, src, dst, source, destination, pool, report, deep)
    for marker in finder.finish():
        _record_marker(marker, counts, report)
    if task.shard.count == 1:
        report.listing_finished = True
    return ShardOutcome(task.shard, result={"counts": counts.__dict__, "checked": checked.counts,
                                            "untimed": cutover.untimed if cutover else 0}, links=links)


def _count_destination(path: str, counts: Counts, checked: Checked) -> None:
    if tree.is_registry_data(path):
        counts.destination_objects += 1
        checked.see(path)
    else:
        counts.outside_registry += 1


def _record_marker(marker: Marker, counts: Counts, report: Report) -> None:
    counts.add_marker(marker)
    report.listed(PathList.MARKERS, marker.path, marker.kind.value)


def _compare(path: str, src: Entry | None, dst: Entry | None, source: Storage, destination: Storage,
             pool: WorkerPool, report: Report, deep: DeepSink | None) -> None:
    action, reason = decide(path, src, dst)
    if action is Action.CHECK:
        assert src is not None and dst is not None
        if source.is_local and dst.md5 is not None:
            # A local read and an MD5: cheaper here than a hand-off to a worker (as in sync).
            report.add_all(_check_content(path, dst, source, destination, report, deep))
        else:
            pool.submit(_check_content, path, dst, source, destination, report, deep)
        return
    if deep and dst is not None:
        deep(dst, _proved_bytes(src, dst) if action is Action.SKIP else None)
    if action is Action.UPLOAD:
        report.listed({Reason.MISSING: PathList.MISSING, Reason.SIZE: PathList.SIZE_DIFFERS}.get(
            reason, PathList.CONTENT_DIFFERS), path)
    elif action is Action.DELETE:
        report.listed(PathList.EXTRA, path)
    elif action is Action.KEEP:
        report.listed(PathList.OUTSIDE, path)


def _proved_bytes(src: Entry | None, dst: Entry) -> bytes | None:
    """The walk's bytes of a source file whose MD5 is the one listed for the destination's object:
    the destination's bytes, proved without a read (the deep check learns a tag's target from them)."""
    if src is not None and src.data is not None and dst.md5 is not None and src.md5 == dst.md5:
        return src.data
    return None


def _check_content(path: str, dst: Entry, source: Storage, destination: Storage, report: Report,
                   deep: DeepSink | None) -> list[Result]:
    """Same size: compare content (a difference is listed, a failure to read comes back as a result).
    The deep check then takes the bytes found equal to the source's (no read of its own), or, when
    they differ or could not be compared, decides for itself."""
    compared, failure = attempt(path, dst.size, Reason.CONTENT.value,
                                lambda: content_matches(source, destination, path, dst))
    same = compared is not None and compared[0]
    if compared is not None and not same:
        report.listed(PathList.CONTENT_DIFFERS, path)
    if deep:
        deep(dst, compared[1] if compared is not None and same else None)
    return [failure] if failure else []


def withdraw_trust(destination: Storage) -> dict[str, Any]:
    """A failed verify moves the destination's generation token: no --state record written before
    is believed any more, so the next ``sync --state`` lists the destination and repairs it."""
    try:
        generation.advance(destination, "verify")
    except RegmigError as exc:
        return {"withdrawn": False, "error": str(exc)}
    return {"withdrawn": True, "error": None}


def repair_commands(summary: dict[str, Any]) -> list[str]:
    """What to run after a failed verify, in order (options such as --endpoint-url left out)."""
    source, destination = summary["source"], summary["destination"]
    commands = []
    if summary["counts"]["markers"]:
        commands.append(f"regmig nameless-tags {destination} --fix")
    if source is None:
        commands.append(f"regmig sync SOURCE {destination} --delete   (from the registry's source tree)")
        commands.append(f"regmig verify {destination} --deep")
        return commands
    commands += [f"regmig sync {source} {destination} --delete --dry-run",
                 f"regmig sync {source} {destination} --delete",
                 f"regmig verify {source} {destination}" + (" --deep" if summary["deep"] else "")]
    return commands


def verdict(summary: dict[str, Any]) -> int:
    """0 when consistent; 1 for any difference, marker, defect or failure."""
    lists = summary["lists"]
    bad = [name for name in (*DIFFERENCES, PathList.MARKERS, PathList.FAILURES, PathList.PROBLEMS, PathList.VANISHED)
           if lists.get(name.value, {}).get("count")]
    counts = summary["counts"]
    cutover = summary.get("cutover")
    if cutover and cutover["strict"] and lists.get(PathList.GONE_OR_LOST.value, {}).get("count"):
        bad.append(PathList.GONE_OR_LOST)
    # After a cut-over the registry's own writes and deletes change the counts; each object is settled above.
    count_mismatch = summary.get("source") is not None and not cutover and \
        counts["source_files"] != counts["destination_objects"]
    empty = counts["destination_objects"] == 0
    return 1 if bad or summary["findings"] or count_mismatch or empty else 0
