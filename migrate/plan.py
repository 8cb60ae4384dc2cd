"""Pure rules that turn one (source, destination) pair into an action. No I/O here."""

from __future__ import annotations

import enum

from migrate import tree
from migrate.storage.base import Entry


class Action(enum.Enum):
    UPLOAD = "upload"
    CHECK = "check"
    """Same size, content unknown from the listings: read and compare before deciding."""
    SKIP = "skip"
    DELETE = "delete"
    KEEP = "keep"
    """Destination-only, but outside the registry tree: never deleted by a sync."""


class Reason(enum.Enum):
    MISSING = "missing"
    SIZE = "size differs"
    CONTENT = "content differs"
    SAME = "same"
    EXTRA = "only in destination"
    FOREIGN = "outside the registry tree"


def decide(path: str, src: Entry | None, dst: Entry | None) -> tuple[Action, Reason]:
    """Decide what a sync does with one path; ``DELETE`` is only a candidate, gated later."""
    if src is None:
        assert dst is not None
        if not tree.is_registry_data(path):
            return Action.KEEP, Reason.FOREIGN
        return Action.DELETE, Reason.EXTRA
    if dst is None:
        return Action.UPLOAD, Reason.MISSING
    if src.size != dst.size:
        return Action.UPLOAD, Reason.SIZE
    if tree.is_content_addressed(path):
        return Action.SKIP, Reason.SAME
    if src.stamp is not None and src.stamp == dst.stamp and dst.md5 is not None:
        return Action.SKIP, Reason.SAME  # not written since a pass found it equal (migrate.state)
    if src.md5 is not None and dst.md5 is not None:
        return (Action.SKIP, Reason.SAME) if src.md5 == dst.md5 else (Action.UPLOAD, Reason.CONTENT)
    return Action.CHECK, Reason.SAME
