"""The single consumer of results: counters per outcome, the path lists, notes, the log.

Jobs hand back ``Result`` objects (migrate.outcome) and the listing thread adds its own; the
report counts them (thread-safe, no printing). The progress printer and the renderers only read
from it. Every examined object ends with exactly one result, so ``unaccounted`` tells whether the
results add up to the pass (a state record is written only when they do).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from migrate import redact
from migrate.estimate import Totals, WalkEstimate
from migrate.outcome import UNSUCCESSFUL, Outcome, PathList, Result

log = logging.getLogger("regmig")
log.addHandler(logging.NullHandler())
log.propagate = False  # the terminal gets the rendered report, not log records

MAX_LISTED = 1000
"""Per list, how many paths are kept for the report; the counts are always complete."""
_UPLOAD_LISTS = {Outcome.UPLOADED: PathList.UPLOADED, Outcome.WOULD_UPLOAD: PathList.WOULD_UPLOAD}
_LOGGED = {Outcome.UPLOADED: logging.INFO, Outcome.DELETED: logging.INFO, Outcome.VANISHED: logging.INFO,
           Outcome.WOULD_UPLOAD: logging.INFO, Outcome.WOULD_DELETE: logging.INFO,
           Outcome.FAILED: logging.WARNING, Outcome.CRASHED: logging.ERROR}


@dataclass
class Tally:
    count: int = 0
    bytes: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"count": self.count, "bytes": self.bytes}


@dataclass(frozen=True, slots=True)
class Tick:
    """A running shard's counters, sent to the pass's report now and then for the progress display."""

    examined: int = 0
    results: int = 0
    done_bytes: int = 0
    planned_bytes: int = 0
    written: int = 0


class _Shards:
    """Shards run elsewhere: their latest ticks, and the totals estimated from those finished
    (shards are cut to about equal work, so the finished ones tell the size of the rest)."""

    def __init__(self) -> None:
        self.expected = 0
        self.live: dict[int, Tick] = {}
        self.absorbed: set[int] = set()
        """Shards whose exact results are in: a tick of theirs still on its way is stale."""
        self._done = 0
        self._examined = 0
        self._planned = 0

    def finished(self, examined: int, planned_bytes: int) -> None:
        self._done += 1
        self._examined += examined
        self._planned += planned_bytes

    def totals(self, examined: int, planned_bytes: int, listing_finished: bool) -> Totals | None:
        if listing_finished:
            return Totals(examined, planned_bytes, True)
        if not self._done:
            return None
        scale = self.expected / self._done
        return Totals(max(round(self._examined * scale), examined), max(round(self._planned * scale), planned_bytes),
                      False)


class BoundedPaths:
    """A bounded list of (path, message) with a complete count, so huge runs keep flat memory."""

    def __init__(self) -> None:
        self.count = 0
        self.items: list[dict[str, str]] = []

    def add(self, path: str, message: str = "") -> None:
        self.count += 1
        if len(self.items) < MAX_LISTED:
            self.items.append({"path": path, "message": redact.redact(message)} if message else {"path": path})

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "listed": self.items, "truncated": self.count > len(self.items)}


@dataclass
class Phase:
    """One stage of a command (verify: listing and comparing, reading manifests, ...): how far it got."""

    name: str
    started: float
    total: int | None = None
    """Items the stage will take, when known before it starts."""
    done: int = 0
    seconds: float | None = None
    """Set when the stage ended."""

    def label(self) -> str:
        """The stage as the progress display names it: with how far it got, when that is known."""
        if self.total is not None:
            return f"{self.name} {self.done:,}/{self.total:,}"
        return f"{self.name} {self.done:,}" if self.done else self.name

    def to_dict(self, now: float) -> dict[str, Any]:
        seconds = self.seconds if self.seconds is not None else now - self.started
        return {"phase": self.name, "seconds": round(seconds, 3), "items": self.done, "total": self.total}


class Report:
    """Counts what happened, by outcome and reason; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.outcomes: dict[Outcome, dict[str, Tally]] = defaultdict(lambda: defaultdict(Tally))
        self.lists: dict[PathList, BoundedPaths] = defaultdict(BoundedPaths)
        self.examined = 0
        self.results = 0
        """Results for examined objects (every outcome but ``not copied``)."""
        self.planned_bytes = 0
        self.done_bytes = 0
        self.listing_finished = False
        self.notes: list[str] = []
        self.delete_refusal: str | None = None
        self._estimate = WalkEstimate()
        self._shards = _Shards()
        self.phases: list[Phase] = []

    @property
    def phase(self) -> str:
        """What the command is doing now (``copying``, ``deleting``...), for the progress display:
        the running stage with how far it got; empty before the first and after the last."""
        phase = self.current_phase()
        return phase.label() if phase else ""

    @phase.setter
    def phase(self, name: str) -> None:
        """Start stage ``name`` unless it is the one running (each stage is timed for ``phases``)."""
        current = self.current_phase()
        if current is None or current.name != name:
            self.begin_phase(name)

    def examined_one(self, path: str | None = None) -> None:
        """One more object examined; its path (in walk order) lets the totals be estimated."""
        with self._lock:
            self.examined += 1
            if path is not None:
                self._estimate.see(path)

    def begin_phase(self, name: str, total: int | None = None) -> None:
        """End the current stage (if any) and start the next; renderers show the last one."""
        with self._lock:
            now = time.monotonic()
            self._end_phase(now)
            self.phases.append(Phase(name, now, total))
        log.info("phase: %s%s", name, f" ({total:,} items)" if total is not None else "")

    def advance(self, count: int = 1) -> None:
        with self._lock:
            if self.phases:
                self.phases[-1].done += count

    def end_phases(self) -> None:
        with self._lock:
            self._end_phase(time.monotonic())

    def current_phase(self) -> Phase | None:
        """A copy of the running stage, or None when none runs."""
        with self._lock:
            if not self.phases or self.phases[-1].seconds is not None:
                return None
            phase = self.phases[-1]
            return Phase(phase.name, phase.started, phase.total, phase.done)

    def _end_phase(self, now: float) -> None:
        if self.phases and self.phases[-1].seconds is None:
            self.phases[-1].seconds = now - self.phases[-1].started

    def planned(self, size: int) -> None:
        """Bytes the pass will write for the object examined last."""
        with self._lock:
            self.planned_bytes += size
            self._estimate.planned(size)

    def totals(self) -> Totals | None:
        """Objects and bytes of the whole pass: exact once the walk has ended, estimated before
        (migrate.estimate, or for shards run elsewhere from the shards finished), None while too
        little is known."""
        with self._lock:
            if self._shards.expected:
                return self._shards.totals(self.examined, self.planned_bytes, self.listing_finished)
            return self._estimate.totals(self.examined, self.planned_bytes, self.listing_finished)

    def written(self) -> int:
        """Objects uploaded (or, in a dry run, to upload) so far, shards still running included."""
        with self._lock:
            live = sum(tick.written for tick in self._shards.live.values())
        return self.tally(Outcome.UPLOADED).count + self.tally(Outcome.WOULD_UPLOAD).count + live

    def expect_shards(self, count: int) -> None:
        """This report gathers ``count`` shards run elsewhere (other processes, other machines)."""
        with self._lock:
            self._shards.expected = count

    def tick(self, shard: int, tick: Tick) -> None:
        """How far a shard running elsewhere has got (its counters so far), for the progress display:
        counted until ``absorb`` replaces them with the shard's exact results."""
        with self._lock:
            if shard in self._shards.absorbed:
                return  # sent before the shard's result, arrived after it (the ticks take another pipe)
            before = self._shards.live.get(shard, Tick())
            self._shards.live[shard] = tick
            self.examined += tick.examined - before.examined
            self.results += tick.results - before.results
            self.done_bytes += tick.done_bytes - before.done_bytes
            self.planned_bytes += tick.planned_bytes - before.planned_bytes

    def snapshot(self) -> Tick:
        with self._lock:
            written = sum(tally.count for outcome in _UPLOAD_LISTS for tally in self.outcomes.get(outcome, {}).values())
            return Tick(self.examined, self.results, self.done_bytes, self.planned_bytes, written)

    def state(self) -> dict[str, Any]:
        """Everything a shard's report counted, as plain data (JSON): what ``absorb`` adds to the
        pass's report, in another process or on another machine."""
        with self._lock:
            return {
                "examined": self.examined, "results": self.results, "planned_bytes": self.planned_bytes,
                "done_bytes": self.done_bytes, "notes": list(self.notes),
                "outcomes": [[outcome.value, reason, tally.count, tally.bytes]
                             for outcome, reasons in self.outcomes.items() for reason, tally in reasons.items()],
                "lists": {name.value: {"count": paths.count, "items": paths.items} for name, paths in self.lists.items()},
            }

    def absorb(self, state: dict[str, Any], shard: int | None = None) -> None:
        """Add a shard's report (``state``), in place of what its ticks had counted so far."""
        with self._lock:
            before = self._shards.live.pop(shard, Tick()) if shard is not None else Tick()
            self.examined += state["examined"] - before.examined
            self.results += state["results"] - before.results
            self.planned_bytes += state["planned_bytes"] - before.planned_bytes
            self.done_bytes += state["done_bytes"] - before.done_bytes
            for outcome, reason, count, size in state["outcomes"]:
                tally = self.outcomes[Outcome(outcome)][reason]
                tally.count += count
                tally.bytes += size
            for name, listed in state["lists"].items():
                paths = self.lists[PathList(name)]
                paths.count += listed["count"]
                paths.items.extend(listed["items"][:max(MAX_LISTED - len(paths.items), 0)])
            self.notes.extend(note for note in state["notes"] if note not in self.notes)
            if shard is not None:
                self._shards.absorbed.add(shard)
                self._shards.finished(state["examined"], state["planned_bytes"])

    def add(self, result: Result) -> None:
        """Count one object's result; failures and vanished objects are also listed with their error."""
        outcome = result.outcome
        with self._lock:
            tally = self.outcomes[outcome][result.reason]
            tally.count += 1
            tally.bytes += result.size
            if outcome is not Outcome.NOT_COPIED:
                self.results += 1
            if outcome in (Outcome.UPLOADED, Outcome.WOULD_UPLOAD):
                self.done_bytes += result.size
                self.lists[_UPLOAD_LISTS[outcome]].add(result.path)
            if outcome in UNSUCCESSFUL:
                self.lists[PathList.FAILURES].add(result.path, result.message)
            elif outcome is Outcome.VANISHED:
                self.lists[PathList.VANISHED].add(result.path, result.message)
            if result.listed is not None:
                self.lists[result.listed].add(result.path)
        level = _LOGGED.get(outcome, logging.DEBUG)
        if log.isEnabledFor(level):
            detail = f": {redact.redact(result.message)}" if result.message else ""
            log.log(level, "%s (%s): %s%s", outcome.value, result.reason, result.path, detail)

    def add_skipped(self, reason: str, count: int, size: int) -> None:
        """``count`` skipped objects of one reason at once, ``size`` bytes in all: for a pass that
        finds them one by one and counts them in bulk (see ``counts_each_skip``)."""
        with self._lock:
            tally = self.outcomes[Outcome.SKIPPED][reason]
            tally.count += count
            tally.bytes += size
            self.results += count

    def counts_each_skip(self) -> bool:
        """Whether each skipped object must go through ``add``: each is logged (``-vv``), or a
        report that tallies by path overrides this."""
        return log.isEnabledFor(_LOGGED.get(Outcome.SKIPPED, logging.DEBUG))

    def add_all(self, results: list[Result]) -> None:
        for result in results:
            self.add(result)

    def listed(self, name: PathList, path: str, message: str = "") -> None:
        """Keep a path in a named list without counting an outcome (verify's findings, walk problems)."""
        with self._lock:
            self.lists[name].add(path, message)
        if name in (PathList.FAILURES, PathList.PROBLEMS):
            log.warning("%s: %s: %s", name.value, path, message)
        else:
            log.info("%s: %s %s", name.value, path, message)

    def failure(self, path: str, message: str) -> None:
        self.listed(PathList.FAILURES, path, message)

    def problem(self, path: str, message: str) -> None:
        self.listed(PathList.PROBLEMS, path, message)

    def note(self, message: str) -> None:
        with self._lock:
            self.notes.append(redact.redact(message))
        log.info("%s", message)

    def refuse_delete(self, message: str, extras: Tally) -> None:
        """Record that the delete guards stopped the deletions; the run then exits 1."""
        with self._lock:
            self.delete_refusal = message
            self.outcomes[Outcome.NOT_DELETED]["refused"] = Tally(extras.count, extras.bytes)
            self.results += extras.count
        log.warning("%s", message)

    def withdraw(self, outcome: Outcome, reason: str) -> Tally:
        """Take back the results counted under ``outcome`` and ``reason`` (gather replaces a shard's
        candidates left to it with what it did with them)."""
        with self._lock:
            tally = self.outcomes.get(outcome, {}).pop(reason, Tally())
            if outcome in self.outcomes and not self.outcomes[outcome]:
                del self.outcomes[outcome]
            self.results -= tally.count
            return tally

    def count(self, name: PathList) -> int:
        with self._lock:
            return self.lists[name].count if name in self.lists else 0

    def tally(self, outcome: Outcome) -> Tally:
        with self._lock:
            total = Tally()
            for tally in self.outcomes.get(outcome, {}).values():
                total.count += tally.count
                total.bytes += tally.bytes
            return total

    def unaccounted(self) -> int:
        """Examined objects without a result: a job lost them, so the pass proves nothing about them."""
        with self._lock:
            return self.examined - self.results

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def phase_timings(self) -> list[dict[str, Any]]:
        """Each stage, how long it lasted (a running one until now) and how far it got."""
        now = time.monotonic()
        with self._lock:
            return [phase.to_dict(now) for phase in self.phases]

    def to_dict(self) -> dict[str, Any]:
        phases = self.phase_timings()
        with self._lock:
            outcomes = {
                outcome.value: {
                    "count": sum(t.count for t in reasons.values()),
                    "bytes": sum(t.bytes for t in reasons.values()),
                    "by_reason": {reason: t.to_dict() for reason, t in sorted(reasons.items())},
                }
                for outcome, reasons in sorted(self.outcomes.items(), key=lambda item: item[0].value)
            }
            return {
                "outcomes": outcomes,
                "lists": {name.value: items.to_dict() for name, items in sorted(self.lists.items(),
                                                                                 key=lambda item: item[0].value)},
                "notes": list(self.notes),
                "delete_refused": self.delete_refusal,
                "elapsed_seconds": round(self.elapsed(), 3),
                "phases": phases,
            }
