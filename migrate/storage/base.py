"""The one interface every storage backend implements.

Backends speak registry paths (``docker/registry/v2/...``); each maps them to its own keys
with the registry driver's rule from :mod:`migrate.tree`, so nothing above this layer
knows about buckets, containers, prefixes or leading slashes.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Generator
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass, field
from typing import BinaryIO

from migrate import tree
from migrate.errors import ConditionFailed, RegmigError, StorageError
from migrate.storage.ranges import KeyRange

ProblemSink = Callable[[str, str], None]
"""Called as ``sink(path, message)`` for an entry a walk had to pass over."""


def report_problem(sink: ProblemSink | None, path: str, message: str) -> None:
    """To ``sink``; without one it raises, as a walk without a sink does."""
    if sink is None:
        raise StorageError(f"{path}: {message}")
    sink(path, message)


@dataclass(frozen=True, slots=True, order=True)
class Link:
    """A symbolic link a local walk followed (--follow-symlinks): its path, 'name/' for a directory
    as the walk sorts it, and the real path it leads to. A walk of one key range sees only its own
    range's links, so whoever merges ranges checks them against each other (migrate.storage.links)."""

    path: str
    target: str


LinkSink = Callable[[Link], None]
"""Called with each link a walk followed."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One object or file as listed: enough to decide a sync without reading it."""

    path: str
    size: int
    md5: str | None = None
    """Lowercase hex MD5 of the content when the listing gives one (S3 single-part ETag, GCS, Azure)."""
    etag: str | None = None
    """The service's version token, for conditional deletes."""
    data: bytes | None = field(default=None, compare=False, repr=False)
    """The content, when a local walk read the file to hash it (``hash_limit``): an upload of it
    then sends these very bytes instead of opening the file again."""
    stamp: str | None = None
    """Local files: device, inode, mtime and ctime as the walk saw them, so a later pass can tell
    the file has not been written since without reading it (see migrate.state). Only for files
    whose ctime had settled when the walk read their directory: a write in the same clock tick as the
    stamp could otherwise go unseen."""
    modified: float | None = field(default=None, compare=False)
    """When the content was last written (POSIX seconds, UTC) as the listing gives it: S3
    LastModified, GCS timeCreated (a metadata update leaves it), Azure last_modified, a file's mtime.
    ``verify --cutover-time`` tells the registry's own writes from the copy by it."""


@dataclass(frozen=True, slots=True)
class TransferSettings:
    """Settings shared by every backend that uploads: the registry's chunksize, parallelism, rate."""

    chunk_size: int = 10 * 1024 * 1024
    workers: int = 64
    max_requests_per_second: float = 0.0
    max_attempts: int = 8


class Storage(abc.ABC):
    """A registry root on some storage service."""

    driver: tree.Driver
    rootdirectory: str
    is_local = False
    """Reads cost a system call, not a request: cheap checks can run inline instead of on a worker."""

    @property
    def url(self) -> str:
        """Where this is, for humans: never contains a secret."""
        return self.location(self.rootdirectory)

    @abc.abstractmethod
    def location(self, rootdirectory: str) -> str:
        """The location of another rootdirectory in the same bucket, container or directory."""

    key_layouts: tuple[tree.Driver, ...] = ()
    """Every key layout a registry driver may have written in this service (Azure has two root
    prefixes); empty means only ``driver``'s."""

    @property
    @abc.abstractmethod
    def service_identity(self) -> str:
        """Which service this is (S3 endpoint and region, Azure account and endpoint, GCS endpoint
        and project, filesystem host): a state record belongs to one. Never contains a secret."""

    @property
    def prefix(self) -> str:
        """Key prefix of the root, as the registry's driver computes it."""
        return tree.key_prefix(self.driver, self.rootdirectory)

    def key(self, path: str) -> str:
        return self.prefix + path

    @property
    def root_description(self) -> str:
        """How registry paths map to keys here (printed in every plan and report)."""
        return f"{self.driver.value} driver, rootdirectory {self.rootdirectory or '(none)'!r}, keys start {self.prefix or '(bucket root)'!r}"

    def walk(self, prefix: str = "", on_problem: ProblemSink | None = None, hash_limit: int = 0,
             within: KeyRange | None = None, on_link: LinkSink | None = None) -> Generator[Entry, None, None]:
        """Yield every entry whose path starts with ``prefix``, in byte order of path; with
        ``within`` (a shard's range), only those in it, the listing started at the range's start
        and ended at its end as closely as the service allows.

        Entries that cannot be listed go to ``on_problem``; without a sink they raise.
        ``hash_limit``: a local tree also gives the MD5 of files up to this size (object listings
        carry one already, so object stores ignore it). A local tree stamps its files (``Entry.stamp``).
        ``on_link``: each symbolic link a local tree's walk followed (object stores have none).
        """
        if within is None:
            return self._walk(prefix, None, on_problem, hash_limit, on_link)
        span = within.under(prefix)
        if span.empty:
            return _nothing()
        return trimmed(self._walk(prefix, span, on_problem, hash_limit, on_link), span)

    @abc.abstractmethod
    def _walk(self, prefix: str, span: KeyRange | None, on_problem: ProblemSink | None,
              hash_limit: int, on_link: LinkSink | None) -> Generator[Entry, None, None]:
        """The backend's listing under ``prefix`` in byte order. With ``span`` (a non-empty range of
        paths under the prefix) it must hold every entry in it and should start and stop as close
        to it as the service can: ``walk`` drops what lies outside, and stops reading at the end."""

    @abc.abstractmethod
    def stat(self, path: str) -> Entry | None:
        """The entry at exactly ``path``, or None."""

    @abc.abstractmethod
    def open(self, path: str) -> AbstractContextManager[BinaryIO]:
        """Stream an entry's content. Raises ObjectMissing when it is gone."""

    def read(self, path: str) -> bytes:
        with self.open(path) as stream:
            return stream.read()

    @abc.abstractmethod
    def put(self, path: str, data: bytes | BinaryIO, size: int) -> None:
        """Write an entry; large streams go in chunks of the transfer chunk size."""

    @abc.abstractmethod
    def create_exclusive(self, path: str, data: bytes) -> bool:
        """Write ``data`` only if nothing is at ``path``; False when something was. Services honour
        the condition in their own way, and an S3-compatible one may ignore it (see migrate.lease)."""

    def calibrate_md5(self, sample: tuple[str, bytes] | None) -> None:
        """Check, before a walk, that the MD5s this service lists are MD5s of the content, against
        ``sample`` (an object whose bytes are known) and the service's settings. Where they are not
        (S3 with SSE-KMS), entries then carry none, and content is compared by reading it."""

    def network_filesystem(self) -> str | None:
        """The type of the network or FUSE filesystem the root is on (nfs4, cifs, fuse.sshfs, ...),
        whose attribute caches may answer a stat with old times; None for a local disk or an object store."""
        return None

    def delete(self, path: str, if_match: str | None = None) -> None:
        """Delete exactly one key, never a prefix. A key already gone is success, on every backend.

        ``if_match`` (a version token from ``stat``): raise ConditionFailed when the key now holds
        another version. The token is compared just before the delete, because some services accept
        the condition and ignore it (Ceph RGW 16 on DeleteObject, fake-gcs-server), and is also sent
        as a condition where the service honours one, which closes the remaining window there.
        """
        if if_match is not None:
            current = self.stat(path)
            if current is None:
                return
            if current.etag != if_match:
                raise ConditionFailed(f"delete {self.url}/{path}: changed since it was checked")
        self._delete(path, if_match)

    @abc.abstractmethod
    def _delete(self, path: str, if_match: str | None) -> None:
        """The service's own delete of one exact key: success when it is already gone."""

    def delete_many(self, paths: list[str]) -> list[tuple[str, str]]:
        """Delete exact keys (never prefixes); returns (path, error) for those that failed.
        Services with a batch call override this to save requests."""
        failed = []
        for path in paths:
            try:
                self.delete(path)
            except RegmigError as exc:
                failed.append((path, str(exc)))
        return failed

    def deleted_after(self, path: str, since: float) -> bool | None:
        """Whether the key at ``path`` was deleted at or after ``since`` (POSIX seconds): True, False
        (the service keeps deletes, and this one is older or none happened), or None when the service
        keeps no record of deletes (no versioning, or not asked of this backend yet)."""
        return None

    def check_reachable(self) -> None:
        """Raise BadInput when the location cannot be used at all (missing bucket, bad credentials)."""

    def check_destination(self) -> None:
        """Raise BadInput when this location cannot receive a copy."""
        self.check_reachable()

    def abort_incomplete_uploads(self, keep: Callable[[str], bool]) -> int:
        """Abort chunked uploads an interrupted run left behind; returns how many. Services that
        expire them by themselves (Azure blocks, GCS sessions) have nothing to do."""
        return 0

    def health(self) -> list[tuple[str, str]]:
        """Service settings worth an operator's attention, as (level, message): WARN or NOTE."""
        return []

    def has_keys(self, key_prefix: str) -> bool:
        """Whether any object key (not registry path) starts with ``key_prefix``. Object stores ask
        the service; this default sees the keys under the root only (a directory's are its paths)."""
        return key_prefix.startswith(self.prefix) and self.has_entries(key_prefix[len(self.prefix):])

    def has_entries(self, prefix: str) -> bool:
        return next(iter(self.walk(prefix)), None) is not None

    @abc.abstractmethod
    def list_prefixes(self, key_prefix: str, max_entries: int = 1000) -> list[str]:
        """The key prefixes one level below ``key_prefix``: a delimiter listing on '/' (each ends in
        '/'), one request reading at most ``max_entries`` names, so its cost does not grow with the
        keys below. Object keys, not registry paths: it looks outside the root too."""

    def close(self) -> None:
        """Release connections and pools."""

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def trimmed(entries: Generator[Entry, None, None], span: KeyRange) -> Generator[Entry, None, None]:
    """The entries of a byte-ordered listing that lie in ``span``: those before it dropped, the
    listing closed (no further page asked for) at the first one past it."""
    start, end = span.start, span.end
    with closing(entries):
        for entry in entries:
            path = entry.path
            if path < start:
                continue
            if end is not None and path >= end:
                return
            yield entry


def _nothing() -> Generator[Entry, None, None]:
    yield from ()
