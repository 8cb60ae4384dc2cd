"""The single consumer of result events: counters per outcome, failures, problems, the log.

Workers call ``Report`` methods (thread-safe, no printing); the progress printer and the
renderers only read from it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from migrate import redact

log = logging.getLogger("regmig")
log.addHandler(logging.NullHandler())
log.propagate = False  # the terminal gets the rendered report, not log records

MAX_LISTED = 1000
"""Per list, how many paths are kept for the report; the counts are always complete."""


@dataclass
class Tally:
    count: int = 0
    bytes: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"count": self.count, "bytes": self.bytes}


class PathList:
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

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seconds": None if self.seconds is None else round(self.seconds, 3),
                "items": self.done, "total": self.total}


class Report:
    """Counts what happened, by outcome and reason; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.outcomes: dict[str, dict[str, Tally]] = defaultdict(lambda: defaultdict(Tally))
        self.lists: dict[str, PathList] = defaultdict(PathList)
        self.examined = 0
        self.planned_bytes = 0
        self.done_bytes = 0
        self.listing_finished = False
        self.notes: list[str] = []
        self.delete_refusal: str | None = None
        self.phases: list[Phase] = []

    def examined_one(self) -> None:
        with self._lock:
            self.examined += 1

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
        with self._lock:
            self.planned_bytes += size

    def record(self, outcome: str, reason: str, path: str, size: int, *, list_as: str | None = None) -> None:
        """Count one object under ``outcome``/``reason``; ``list_as`` also keeps its path in that list."""
        with self._lock:
            tally = self.outcomes[outcome][reason]
            tally.count += 1
            tally.bytes += size
            if outcome in ("uploaded", "would upload"):
                self.done_bytes += size
            if list_as:
                self.lists[list_as].add(path)
        log.log(logging.INFO if outcome in ("uploaded", "deleted") else logging.DEBUG, "%s (%s): %s", outcome, reason, path)

    def add_to_list(self, name: str, path: str, message: str = "") -> None:
        with self._lock:
            self.lists[name].add(path, message)
        if name in ("failures", "problems"):
            log.warning("%s: %s: %s", name[:-1], path, message)
        else:
            log.info("%s: %s %s", name, path, message)

    def failure(self, path: str, message: str) -> None:
        self.add_to_list("failures", path, message)

    def problem(self, path: str, message: str) -> None:
        self.add_to_list("problems", path, message)

    def note(self, message: str) -> None:
        with self._lock:
            self.notes.append(redact.redact(message))
        log.info("%s", message)

    def refuse_delete(self, message: str, extras: Tally) -> None:
        """Record that the delete guards stopped the deletions; the run then exits 1."""
        with self._lock:
            self.delete_refusal = message
            self.outcomes["not deleted"]["refused"] = Tally(extras.count, extras.bytes)
        log.warning("%s", message)

    def count(self, name: str) -> int:
        with self._lock:
            return self.lists[name].count if name in self.lists else 0

    def tally(self, outcome: str) -> Tally:
        with self._lock:
            total = Tally()
            for tally in self.outcomes.get(outcome, {}).values():
                total.count += tally.count
                total.bytes += tally.bytes
            return total

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            outcomes = {
                outcome: {
                    "count": sum(t.count for t in reasons.values()),
                    "bytes": sum(t.bytes for t in reasons.values()),
                    "by_reason": {reason: t.to_dict() for reason, t in sorted(reasons.items())},
                }
                for outcome, reasons in sorted(self.outcomes.items())
            }
            return {
                "outcomes": outcomes,
                "lists": {name: items.to_dict() for name, items in sorted(self.lists.items())},
                "notes": list(self.notes),
                "delete_refused": self.delete_refusal,
                "phases": [phase.to_dict() for phase in self.phases],
                "elapsed_seconds": round(self.elapsed(), 3),
            }
