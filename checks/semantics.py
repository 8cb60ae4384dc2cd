"""``verify --deep``: does the tree make sense to a registry, not just match the source?

Checks every link's format, tag -> revision -> manifest blob, every blob a manifest references
(present in blobs/, linked in the repository), and that blob data hashes to its digest. The
listing is pushed through :meth:`SemanticCheck.see`; links, blobs and references go into a
temporary on-disk SQLite database, so ten million links need no ten million Python objects.

Links are proved without reading them where the listing can: a content-addressed link
(``_layers``, ``_manifests/revisions``, a tag's ``index``) must hold exactly the digest its path
names, so the MD5 the listing gives (a single-part object's ETag, computed by the service from the
bytes it stores) is compared with the MD5 of ``<alg>:<hex>``. A link whose MD5 differs is read, to
say what it holds; one listed without an MD5 (SSE-KMS, multipart, a service that lists none) is
read, and the report says how many. A tag's ``current/link`` names nothing in its path: the caller
hands over its bytes when it proved them equal to the source's, else it is read. Manifests are
read and parsed. With a local source, manifests and the blobs to hash are read from the source's
files and proved to be the destination's bytes by the listed MD5; where that fails, from the
destination.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from migrate import tree
from migrate.errors import ObjectMissing, RegmigError
from migrate.outcome import Result
from migrate.report import Report
from migrate.storage.base import Entry, Storage
from migrate.transfer import WorkerPool

_SCHEMA = """
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
PRAGMA cache_size = -32768;
CREATE TABLE blobs (digest TEXT PRIMARY KEY, size INTEGER, md5 TEXT);
CREATE TABLE links (repo TEXT, kind TEXT, tag TEXT, path_digest TEXT, target TEXT, path TEXT);
CREATE TABLE refs (manifest TEXT, digest TEXT, kind TEXT);
CREATE TABLE hashed (digest TEXT PRIMARY KEY);
CREATE TABLE findings (repo TEXT, tag TEXT, digest TEXT, problem TEXT, path TEXT);
"""
_INDEXES = """
CREATE INDEX links_by_repo ON links (repo, kind, path_digest);
CREATE INDEX links_by_target ON links (repo, kind, target);
CREATE INDEX refs_by_manifest ON refs (manifest);
CREATE INDEX refs_by_digest ON refs (digest, kind);
"""
_INSERT = {"blobs": "INSERT OR REPLACE INTO blobs VALUES (?, ?, ?)",
           "links": "INSERT INTO links VALUES (?, ?, ?, ?, ?, ?)",
           "refs": "INSERT INTO refs VALUES (?, ?, ?)",
           "hashed": "INSERT OR IGNORE INTO hashed VALUES (?)"}
_BATCH = 1000
"""Rows written (and read) per SQLite call: one call per row cost more than the listing itself."""
INLINE_LIMIT = 1024 * 1024
"""Blobs up to this size that the local source holds are read on the checking thread: a system call
costs less than the hand-off to a worker. Larger ones, and those read from the service, go to the
workers (hashing releases the GIL, so large blobs use every core)."""
CONTENT_ADDRESSED_LINKS = frozenset({tree.Kind.LAYER_LINK, tree.Kind.REVISION_LINK, tree.Kind.TAG_INDEX_LINK})
"""Links that hold exactly the digest their path names."""
BLOB_STORE = "(blob store)"


@dataclass(frozen=True)
class DeepOptions:
    hash_limit: int | None = 64 * 1024 * 1024
    """Hash blobs up to this size; None hashes every blob (--hash-all)."""
    workers: int = 32


@dataclass
class DeepCounts:
    """How each object was proved: what the report says about the cost and the strength of the proof."""

    links_proved_by_listing: int = 0
    """Content-addressed links whose listed MD5 is that of the digest their path names."""
    links_proved_by_source: int = 0
    """Links whose listed MD5 (or bytes) the comparison found equal to the source file's."""
    links_read: int = 0
    links_without_md5: int = 0
    """Links listed without an MD5, read for that reason: by the comparison with the source (then
    counted in ``links_proved_by_source``), else here (in ``links_read``)."""
    manifests_read: int = 0
    blobs_hashed: int = 0
    read_from_source: int = 0
    """Manifests and hashed blobs read from the source's files, whose MD5 is the one listed for the
    destination's object (counted in ``manifests_read`` / ``blobs_hashed`` too)."""


class SemanticCheck:
    """Collects a location's links and blobs as its listing streams past, then checks them."""

    def __init__(self, storage: Storage, options: DeepOptions, report: Report, source: Storage | None = None) -> None:
        self.storage = storage
        self.options = options
        self.report = report
        self.source = source if source is not None and source.is_local else None
        """Only a local source: reading a bucket's copy would cost as much as reading the destination."""
        self._db = sqlite3.connect("", check_same_thread=False)  # "" = private temporary file
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._pending: dict[str, list[tuple[Any, ...]]] = {table: [] for table in _INSERT}
        self._pool = WorkerPool(options.workers, self._crashed)
        self.counts = DeepCounts()
        self.errors: list[str] = []

    def see(self, entry: Entry, content: bytes | None = None) -> None:
        """One destination entry as listed; thread-safe. ``content``: its bytes, when the caller
        proved them (equal to the source file's), so the object is not read again."""
        info = tree.classify(entry.path)
        if info.kind is tree.Kind.BLOB_DATA:
            self._add("blobs", (info.digest, entry.size, entry.md5))
            return
        if info.kind not in tree.LINK_KINDS:
            return
        if entry.md5 is None:
            self._count("links_without_md5")
        if content is not None:
            self._count("links_proved_by_source")
            self._record_link(entry.path, info, content)
        elif info.kind in CONTENT_ADDRESSED_LINKS and entry.md5 is not None and \
                entry.md5 == hashlib.md5(str(info.digest).encode()).hexdigest():
            self._count("links_proved_by_listing")
            self._record_link(entry.path, info, str(info.digest).encode())
        else:
            self._pool.submit(self._read_link, entry.path, info)

    def _read_link(self, path: str, info: tree.PathInfo) -> None:
        content = self._read(path)
        if content is not None:
            self._count("links_read")
            self._record_link(path, info, content)

    def _record_link(self, path: str, info: tree.PathInfo, content: bytes) -> None:
        target = content.decode("ascii", "replace") if tree.is_valid_link(content) else None
        self._add("links", (info.repository, info.kind.name, info.tag, info.digest, target, path))
        if target is None:
            self._finding(info.repository, info.tag, None, f"malformed link {_describe(content)}", path)
        elif info.digest and info.kind is not tree.Kind.SIGNATURE_LINK and target != info.digest:
            self._finding(info.repository, info.tag, target, f"link holds {target}, its path names {info.digest}", path)

    def finish(self) -> list[dict[str, Any]]:
        """Run the checks that need the whole index; returns findings grouped by repository. Every
        caller of :meth:`see` must have returned."""
        self._pool.__exit__(None)
        self._flush()
        self.report.begin_phase("indexing links")
        self._db.executescript(_INDEXES)
        self._check_tags()
        self._parse_manifests()
        self._check_references()
        self._hash_blobs()
        self._note_reads()
        return self._grouped()

    # --- checks ---------------------------------------------------------------------------------

    def _check_tags(self) -> None:
        self.report.begin_phase("checking tags", self._scalar("SELECT COUNT(*) FROM links WHERE kind = 'TAG_LINK'"))
        rows = self._rows(
            "SELECT t.repo, t.tag, t.target, t.path, "
            "  EXISTS (SELECT 1 FROM links r WHERE r.repo = t.repo AND r.kind = 'REVISION_LINK' "
            "          AND r.path_digest = t.target), "
            "  EXISTS (SELECT 1 FROM blobs b WHERE b.digest = t.target) "
            "FROM links t WHERE t.kind = 'TAG_LINK'")
        for repo, tag, target, path, has_revision, has_blob in rows:
            self.report.advance()
            if target is None:
                continue  # malformed: already a finding
            if not has_revision:
                self._finding(repo, tag, target, f"tag {tag} points at {target}, which has no revision link", path)
            if not has_blob:
                self._finding(repo, tag, target, f"tag {tag}: manifest blob {target} is missing", path)

    def _parse_manifests(self) -> None:
        missing = self._rows(
            "SELECT repo, path_digest, path FROM links l WHERE kind = 'REVISION_LINK' "
            "AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.digest = l.path_digest)")
        for repo, digest, path in missing:
            self._finding(repo, None, digest, f"revision {digest}: manifest blob is missing", path)
        # From the revision links to the blobs (by their key): no index leads from a blob to its links.
        manifests = "FROM links l JOIN blobs b ON b.digest = l.path_digest WHERE l.kind = 'REVISION_LINK'"
        self.report.begin_phase("reading manifests", self._scalar("SELECT COUNT(DISTINCT b.digest) " + manifests))
        with WorkerPool(self.options.workers, self._crashed) as pool:
            for digest, size, md5 in self._rows("SELECT DISTINCT b.digest, b.size, b.md5 " + manifests):
                data = self._from_source(digest, md5) if size <= INLINE_LIMIT else None
                if data is not None:
                    self._parse_manifest(digest, data)
                else:
                    pool.submit(self._read_manifest, digest, md5, size > INLINE_LIMIT)
        self._flush()

    def _read_manifest(self, digest: str, md5: str | None, try_source: bool) -> None:
        data = (self._from_source(digest, md5) if try_source else None) or self._read(tree.blob_path(digest))
        if data is None:
            self.report.advance()
            return
        self._parse_manifest(digest, data)

    def _parse_manifest(self, digest: str, data: bytes) -> None:
        self.report.advance()
        self._count("manifests_read")
        # Read whole anyway: hashing it here spares the blob hashing a second read.
        alg, _, expected = digest.partition(":")
        if alg in hashlib.algorithms_available:
            if hashlib.new(alg, data).hexdigest() != expected:
                self._finding(BLOB_STORE, None, digest, f"blob data does not hash to {digest}", tree.blob_path(digest))
            self._add("hashed", (digest,))
        try:
            references = manifest_references(data)
        except ValueError as exc:
            for (repo,) in self._query("SELECT DISTINCT repo FROM links WHERE kind = 'REVISION_LINK' "
                                       "AND path_digest = ?", (digest,)):
                self._finding(repo, None, digest, f"manifest {digest} does not parse: {exc}", tree.blob_path(digest))
            return
        for ref_digest, kind in references:
            self._add("refs", (digest, ref_digest, kind))

    def _check_references(self) -> None:
        self.report.begin_phase("checking references")
        rows = self._rows(
            "SELECT DISTINCT r.repo, f.manifest, f.digest, f.kind, "
            "  EXISTS (SELECT 1 FROM blobs b WHERE b.digest = f.digest), "
            "  EXISTS (SELECT 1 FROM links l WHERE l.repo = r.repo AND l.path_digest = f.digest "
            "          AND l.kind = CASE f.kind WHEN 'child' THEN 'REVISION_LINK' ELSE 'LAYER_LINK' END) "
            "FROM links r JOIN refs f ON f.manifest = r.path_digest WHERE r.kind = 'REVISION_LINK'")
        for repo, manifest, digest, kind, has_blob, linked in rows:
            self.report.advance()
            what = "child manifest" if kind == "child" else "blob"
            if not has_blob:
                self._finding(repo, None, manifest, f"manifest {manifest}: {what} {digest} is missing",
                              tree.blob_path(digest))
            elif not linked:
                where = "_manifests/revisions" if kind == "child" else "_layers"
                self._finding(repo, None, manifest, f"manifest {manifest}: {what} {digest} is not linked in {where}",
                              f"{tree.REPOSITORIES}{repo}/{where}/{digest.replace(':', '/')}/link")

    def _hash_blobs(self) -> None:
        limit = self.options.hash_limit
        which = "FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM hashed h WHERE h.digest = b.digest)" + \
            ("" if limit is None else " AND size <= ?")
        args = () if limit is None else (limit,)
        self.report.begin_phase("hashing blobs", self._scalar("SELECT COUNT(*) " + which, args))
        with WorkerPool(self.options.workers, self._crashed) as pool:
            for digest, size, md5 in self._rows("SELECT digest, size, md5 " + which, args):
                if digest.partition(":")[0] not in hashlib.algorithms_available:
                    self.report.advance()
                    continue
                hashed = self._hash_from_source(digest, md5) if size <= INLINE_LIMIT else None
                if hashed is not None:
                    self._check_hash(digest, hashed)
                else:
                    pool.submit(self._hash_blob, digest, md5, size > INLINE_LIMIT)

    def _hash_blob(self, digest: str, md5: str | None, try_source: bool) -> None:
        hashed = self._hash_from_source(digest, md5) if try_source else None
        if hashed is None:
            try:
                hashed, _ = _hash(self.storage, tree.blob_path(digest), digest.partition(":")[0])
            except RegmigError as exc:
                self.report.advance()
                self._error(tree.blob_path(digest), exc)
                return
        self._check_hash(digest, hashed)

    def _check_hash(self, digest: str, hashed: str) -> None:
        self.report.advance()
        self._count("blobs_hashed")
        if hashed != digest.partition(":")[2]:
            self._finding(BLOB_STORE, None, digest, f"blob data does not hash to {digest}", tree.blob_path(digest))

    def _hash_from_source(self, digest: str, md5: str | None) -> str | None:
        """The digest of the source file, when its MD5 is the one listed for the destination's object."""
        if self.source is None or md5 is None:
            return None
        try:
            hashed, source_md5 = _hash(self.source, tree.blob_path(digest), digest.partition(":")[0])
        except RegmigError:
            return None  # not in the source (written since), or unreadable there: the destination decides
        if source_md5 != md5:
            return None
        self._count("read_from_source")
        return hashed

    def _note_reads(self) -> None:
        if self.counts.links_without_md5 and not self.storage.is_local:  # a directory lists no MD5 by nature
            self.report.note(f"--deep: {self.counts.links_without_md5:,} link objects were listed without an MD5 "
                             f"(SSE-KMS or multipart ETags, or a service that lists none): each was read instead "
                             f"of proved by the listing")

    # --- plumbing -------------------------------------------------------------------------------

    def _from_source(self, digest: str, md5: str | None) -> bytes | None:
        """A blob's bytes from the source file, when its MD5 is the one listed for the destination."""
        if self.source is None or md5 is None:
            return None
        try:
            data = self.source.read(tree.blob_path(digest))
        except RegmigError:
            return None  # not in the source (written since), or unreadable there: the destination decides
        if hashlib.md5(data).hexdigest() != md5:
            return None
        self._count("read_from_source")
        return data

    def _read(self, path: str) -> bytes | None:
        try:
            return self.storage.read(path)
        except ObjectMissing:
            return None  # vanished since the listing: not a defect of what is there
        except RegmigError as exc:
            self._error(path, exc)
            return None

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self.counts, name, getattr(self.counts, name) + 1)

    def _error(self, path: str, exc: Exception | str) -> None:
        with self._lock:
            self.errors.append(f"{path}: {exc}")

    def _crashed(self, results: list[Result]) -> None:
        """The pool's consumer: a check job returns nothing, so anything it hands back is a crash."""
        for result in results:
            self._error(result.path, result.message)

    def _finding(self, repo: str | None, tag: str | None, digest: str | None, problem: str, path: str) -> None:
        with self._lock:
            self._db.execute("INSERT INTO findings VALUES (?, ?, ?, ?, ?)",
                             (repo or BLOB_STORE, tag, digest, problem, path))

    def _add(self, table: str, row: tuple[Any, ...]) -> None:
        with self._lock:
            pending = self._pending[table]
            pending.append(row)
            if len(pending) >= _BATCH:
                self._db.executemany(_INSERT[table], pending)
                pending.clear()

    def _flush(self) -> None:
        with self._lock:
            for table, pending in self._pending.items():
                self._db.executemany(_INSERT[table], pending)
                pending.clear()

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _scalar(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        return int(self._query(sql, args)[0][0])

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        """Rows a batch at a time, so a query over millions of links never sits in memory. Workers
        may write other tables meanwhile (each call takes the lock)."""
        with self._lock:
            cursor = self._db.execute(sql, args)
        while True:
            with self._lock:
                rows = cursor.fetchmany(_BATCH)
            if not rows:
                return
            yield from rows

    def _grouped(self) -> list[dict[str, Any]]:
        """Findings per repository, each with the tags it affects (directly, or through an index)."""
        groups: dict[str, dict[str, Any]] = {}
        for repo, tag, digest, problem, path in self._query(
                "SELECT repo, tag, digest, problem, path FROM findings ORDER BY repo, problem"):
            group = groups.setdefault(repo, {"repository": repo, "tags": set(), "findings": []})
            affected = {tag} if tag else set(self._tags_using(repo, digest)) if digest else set()
            group["tags"] |= affected
            group["findings"].append({"problem": problem, "path": path, "tags": sorted(affected)})
        for group in groups.values():
            group["tags"] = sorted(group["tags"])
        self._db.close()
        return list(groups.values())

    def _tags_using(self, repo: str, digest: str) -> list[str]:
        return [row[0] for row in self._query(
            "SELECT DISTINCT tag FROM links WHERE kind = 'TAG_LINK' AND (repo = ? OR ? = ?) AND (target = ? OR target IN "
            "(SELECT manifest FROM refs WHERE digest = ? AND kind = 'child'))",
            (repo, repo, BLOB_STORE, digest, digest))]


def _hash(storage: Storage, path: str, alg: str) -> tuple[str, str]:
    """The object's digest under ``alg`` and its MD5, in one streaming read."""
    hasher, md5 = hashlib.new(alg), hashlib.md5()
    with storage.open(path) as stream:
        while chunk := stream.read(1024 * 1024):
            hasher.update(chunk)
            md5.update(chunk)
    return hasher.hexdigest(), md5.hexdigest()


def manifest_references(data: bytes) -> list[tuple[str, str]]:
    """Digests a manifest needs: ('layer' for config and layers, 'child' for an index's manifests)."""
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON ({exc.__class__.__name__})") from None
    if not isinstance(manifest, dict):
        raise ValueError("not a JSON object")
    version = manifest.get("schemaVersion")
    if version == 1:
        return [(layer["blobSum"], "layer") for layer in _list(manifest, "fsLayers")]
    if version != 2:
        raise ValueError(f"unknown schemaVersion {version!r}")
    if "manifests" in manifest:
        return [(_digest(child), "child") for child in _list(manifest, "manifests")]
    if "config" not in manifest:
        raise ValueError("schema 2 manifest without config or manifests")
    references = [(_digest(manifest["config"]), "layer")]
    # Foreign layers (with "urls") live outside the registry and are never in blobs/.
    references += [(_digest(layer), "layer") for layer in _list(manifest, "layers") if not layer.get("urls")]
    return references


def _list(manifest: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = manifest.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ValueError(f"{key} is not a list of objects")
    return value


def _digest(descriptor: Any) -> str:
    digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
    if not isinstance(digest, str) or ":" not in digest:
        raise ValueError("descriptor without a digest")
    return digest


def _describe(content: bytes) -> str:
    if not content:
        return "(empty)"
    if content.endswith(b"\n"):
        return "(trailing newline)"
    return f"({len(content)} bytes: {content[:80]!r})"
