"""What can happen to one object, and the result a job hands back for it.

One enum for every module that counts or shows outcomes (sync, the jobs, the report, the
renderers, verify, plan), so an outcome is never a string spelled differently in two places.
The values are the keys of the JSON report (docs/reports.md).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.Enum):
    """What happened to one object in a pass."""

    UPLOADED = "uploaded"
    WOULD_UPLOAD = "would upload"
    SKIPPED = "skipped"
    KEPT = "kept"
    """Destination-only, outside the registry tree: never deleted."""
    DELETED = "deleted"
    WOULD_DELETE = "would delete"
    NOT_DELETED = "not deleted"
    NOT_COPIED = "not copied"
    """Excluded from the copy (``_uploads``, tmp debris, regmig's own objects): not examined."""
    FAILED = "failed"
    """A storage operation failed after its retries: the error is listed."""
    CRASHED = "crashed"
    """Any other exception in a job: a bug, listed like a failure, never silence."""
    VANISHED = "vanished"
    """Gone from the source between its listing and its read."""
    CONFIRMED = "confirmed"
    """Found as the pass left it, when looked at again after the pass (``sync --verify``)."""


UNSUCCESSFUL = frozenset({Outcome.FAILED, Outcome.CRASHED})
"""Outcomes that are also listed as failures and make the exit code 1."""


class PathList(enum.Enum):
    """The named lists of paths a report keeps (bounded; counts always complete)."""

    FAILURES = "failures"
    PROBLEMS = "problems"
    """Entries a source walk had to pass over (unreadable, symbolic links, bad names)."""
    VANISHED = "vanished"
    UPLOADED = "uploaded"
    """Every path a sync wrote (new and changed; ``changed`` also lists the changed ones)."""
    WOULD_UPLOAD = "would upload"
    CHANGED = "changed"
    KEPT = "kept"
    DELETED = "deleted"
    WOULD_DELETE = "would delete"
    MISSING = "missing in destination"
    EXTRA = "extra in destination"
    SIZE_DIFFERS = "size differs"
    CONTENT_DIFFERS = "content differs"
    OUTSIDE = "outside the registry tree"
    MARKERS = "markers"
    WRITTEN_AFTER_CUTOVER = "written after the cut-over"
    """verify --cutover-time: objects the registry wrote since (its own)."""
    DELETED_AFTER_CUTOVER = "deleted after the cut-over"
    """Links the registry deleted since: a delete marker after the cut-over tells."""
    GONE_OR_LOST = "deleted after the cut-over, or lost"
    """Links gone where nothing tells deleted from lost: a warning, a failure with --strict."""


DIFFERENCES = (PathList.MISSING, PathList.EXTRA, PathList.SIZE_DIFFERS, PathList.CONTENT_DIFFERS)
"""verify's per-object differences, in the order they are shown."""


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one object: what every job returns, and what the report counts."""

    outcome: Outcome
    path: str
    size: int = 0
    reason: str = ""
    message: str = ""
    """The error, for failed, crashed and vanished objects."""
    listed: PathList | None = None
    """Also keep the path in this list (changed objects, deletions, kept foreign objects)."""
