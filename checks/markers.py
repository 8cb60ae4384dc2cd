"""Zero-byte "directory marker" objects: the cause of nameless tags, and their exact-key repair.

The registry never writes a key ending in '/', so every zero-byte one under the root is debris
left by a bucket-copy tool. Removal is one exact key at a time, re-checked just before, and
never a prefix: the safe form of GitLab's documented ``aws s3 rm s3://.../<repo>/``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from migrate import guards, tree
from migrate.errors import ConditionFailed, RegmigError
from migrate.report import Report
from migrate.shards import WHOLE
from migrate.shardsync import shard_walk
from migrate.storage.base import Entry, Storage


class MarkerKind(enum.Enum):
    TAGS = "tags marker: the registry lists a tag named \"\""
    REPOSITORY_ROOT = "repository root marker (GitLab shows a nameless tag)"
    REPOSITORIES = "repositories/ marker: breaks the catalog"
    NAMESPACE = "namespace marker: breaks the catalog and garbage collection"
    INSIDE_REPOSITORY = "directory marker inside a repository"
    BLOBS = "directory marker in blobs/"
    OTHER = "other directory marker"


@dataclass(frozen=True, slots=True)
class Marker:
    path: str
    kind: MarkerKind
    repository: str | None
    etag: str | None


class MarkerFinder:
    """Finds markers in a listing that is pushed through it one entry at a time (so verify can
    share the listing it already walks).

    Whether ``repositories/a/b/`` is a repository root or a namespace is known only once the walk
    has seen (or not) ``repositories/a/b/_*`` below it, so those few markers wait until the walk
    leaves their subtree; all others come out at once.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[str, str | None]] = []  # repositories/<name>/ markers, outermost first
        self._repositories: set[str] = set()

    def see(self, entry: Entry) -> list[Marker]:
        found = []
        while self._pending and not entry.path.startswith(self._pending[-1][0]):
            found.append(self._settle(*self._pending.pop()))
        if tree.is_registry_marker(entry.path, entry.size):
            marker = _classify(entry.path, entry.etag)
            if marker is None:
                self._pending.append((entry.path, entry.etag))
            else:
                found.append(marker)
        elif entry.path.startswith(tree.REPOSITORIES):
            repository = tree.classify(entry.path).repository
            if repository:
                self._repositories.add(repository)
        return found

    def finish(self) -> list[Marker]:
        found = [self._settle(*pending) for pending in reversed(self._pending)]
        self._pending.clear()
        return found

    def _settle(self, path: str, etag: str | None) -> Marker:
        name = path[len(tree.REPOSITORIES):].rstrip("/")
        kind = MarkerKind.REPOSITORY_ROOT if name in self._repositories else MarkerKind.NAMESPACE
        return Marker(path, kind, name, etag)


def find_markers(storage: Storage, report: Report | None = None) -> Iterator[Marker]:
    """Stream every marker under the root with its kind, from one listing (counted in ``report``,
    for the progress display)."""
    finder = MarkerFinder()
    for entry in shard_walk(storage, WHOLE):  # listed by key ranges on several threads, in byte order
        if report is not None:
            report.examined_one(entry.path)
        yield from finder.see(entry)
    yield from finder.finish()


def _classify(path: str, etag: str | None) -> Marker | None:
    if path == tree.REPOSITORIES:
        return Marker(path, MarkerKind.REPOSITORIES, None, etag)
    if path.startswith(tree.BLOBS):
        return Marker(path, MarkerKind.BLOBS, None, etag)
    if not path.startswith(tree.REPOSITORIES):
        return Marker(path, MarkerKind.OTHER, None, etag)
    below = path[len(tree.REPOSITORIES):].rstrip("/").split("/")
    if any(part.startswith("_") for part in below):
        kind = MarkerKind.TAGS if path.endswith("/_manifests/tags/") else MarkerKind.INSIDE_REPOSITORY
        return Marker(path, kind, tree.classify(path).repository, etag)
    return None  # repository root or namespace: decided when its subtree has been walked


def remove_marker(storage: Storage, marker: Marker) -> bool:
    """Delete exactly this key if it is still a zero-byte marker; False when it no longer is."""
    if not marker.path.endswith("/") and marker.path != "":
        raise ValueError(f"not a marker key: {marker.path!r}")
    current = storage.stat(marker.path)
    if current is None or current.size != 0:
        return False
    try:
        storage.delete(marker.path, if_match=current.etag)
    except ConditionFailed:
        return False
    return True


def scan(storage: Storage, fix: bool, listed_limit: int = 1000, report: Report | None = None) -> dict[str, Any]:
    """Report every marker; with ``fix``, remove each one (exact key, re-checked), then re-scan.
    ``report`` counts the objects listed and names the phase, for the progress display."""
    storage.check_reachable()
    guards.require_registry_data(storage)
    if report is not None:
        report.phase = "finding and removing" if fix else "finding markers"
    kinds: dict[str, int] = {}
    listed: list[dict[str, str | None]] = []
    failures: list[dict[str, str]] = []
    found = removed = 0
    for marker in find_markers(storage, report):
        found += 1
        kinds[marker.kind.value] = kinds.get(marker.kind.value, 0) + 1
        action = "found"
        if fix:
            try:
                action = "removed" if remove_marker(storage, marker) else "changed"
            except RegmigError as exc:
                action = "failed"
                failures.append({"path": marker.path, "message": str(exc)})
            removed += action == "removed"
        if len(listed) < listed_limit:
            listed.append({"path": marker.path, "kind": marker.kind.value, "repository": marker.repository,
                           "action": action})
    if report is not None:
        report.listing_finished = True
        if fix and found:
            report.phase = "listing again"
    remaining = sum(1 for _ in find_markers(storage)) if fix and found else found
    return {
        "command": "nameless-tags", "target": storage.url, "layout": storage.root_description, "fix": fix,
        "found": found, "removed": removed, "remaining": remaining, "kinds": kinds, "markers": listed,
        "lists": {"failures": {"count": len(failures), "listed": failures, "truncated": False}},
        "exit_code": 1 if remaining or failures else 0,
    }
