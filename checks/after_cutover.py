"""``verify --cutover-time``: proving the copy while the registry already serves from the
destination read-write. What it wrote since the cut-over is its own; what is older must match the
frozen source; a blob gone is a failure (the registry deletes blobs only by garbage collection), a
link gone is told apart where the destination keeps delete markers, else a warning (a failure
with ``--strict``)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from migrate import tree
from migrate.errors import BadInput
from migrate.outcome import PathList, Result
from migrate.plan import Reason
from migrate.report import Report
from migrate.storage.base import Entry, Storage
from migrate.transfer import WorkerPool, attempt


class Cutover:
    """Settles the pairs of the merge that the registry's own writes and deletes explain."""

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
                report.listed(PathList.WRITTEN_AFTER_CUTOVER, path)
                return True
            return False
        if src is not None and tree.classify(path).kind in tree.LINK_KINDS:
            pool.submit(self._gone, destination, path, report)
            return True
        return False

    def _gone(self, destination: Storage, path: str, report: Report) -> list[Result]:
        """A link the source has and the destination lost: deleted since (a delete marker tells), or not."""
        deleted, failure = attempt(path, 0, Reason.MISSING.value, lambda: destination.deleted_after(path, self.time))
        if failure is not None:
            return [failure]
        if deleted is None:
            report.listed(PathList.GONE_OR_LOST, path)
        elif deleted:
            report.listed(PathList.DELETED_AFTER_CUTOVER, path)
        else:
            report.listed(PathList.MISSING, path, "no delete marker since the cut-over")
        return []

    def note(self, report: Report) -> None:
        if self.untimed:
            report.note(f"{self.untimed:,} destination objects were listed without a modification time: "
                        f"compared with the source as if written before the cut-over")
        if gone := report.count(PathList.GONE_OR_LOST):
            report.note(f"{gone:,} links are gone from the destination: deleted through the registry after the "
                        f"cut-over, or lost; the bucket keeps no delete markers to tell (turn versioning on "
                        f"before the cut-over)" + ("" if self.strict else "; --strict fails on them"))

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
