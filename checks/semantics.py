"""``verify --deep``: does the tree make sense to a registry, not just match the source?

Checks every link's format, tag -> revision -> manifest blob, every blob a manifest references
(present in blobs/, linked in the repository), and that blob data hashes to its digest. The
listing is pushed through :meth:`SemanticCheck.see`; links, blobs and references go into a
temporary on-disk SQLite database, so ten million links need no ten million Python objects.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any

from migrate import tree
from migrate.errors import ObjectMissing, RegmigError
from migrate.outcome import Result
from migrate.storage.base import Entry, Storage
from migrate.transfer import WorkerPool

_SCHEMA = """
CREATE TABLE blobs (digest TEXT PRIMARY KEY, size INTEGER);
CREATE TABLE links (repo TEXT, kind TEXT, tag TEXT, path_digest TEXT, target TEXT, path TEXT);
CREATE TABLE refs (manifest TEXT, digest TEXT, kind TEXT);
CREATE TABLE findings (repo TEXT, tag TEXT, digest TEXT, problem TEXT, path TEXT);
"""
_INDEXES = """
CREATE INDEX links_by_repo ON links (repo, kind, path_digest);
CREATE INDEX links_by_target ON links (repo, kind, target);
CREATE INDEX refs_by_manifest ON refs (manifest);
CREATE INDEX refs_by_digest ON refs (digest, kind);
"""
BLOB_STORE = "(blob store)"


@dataclass(frozen=True)
class DeepOptions:
    hash_limit: int | None = 64 * 1024 * 1024
    """Hash blobs up to this size; None hashes every blob (--hash-all)."""
    workers: int = 32


class SemanticCheck:
    """Collects a location's links and blobs as its listing streams past, then checks them."""

    def __init__(self, storage: Storage, options: DeepOptions) -> None:
        self.storage = storage
        self.options = options
        self._db = sqlite3.connect("", check_same_thread=False)  # "" = private temporary file
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._pool = WorkerPool(options.workers, self._crashed)
        self.errors: list[str] = []

    def see(self, entry: Entry) -> None:
        info = tree.classify(entry.path)
        if info.kind is tree.Kind.BLOB_DATA:
            self._execute("INSERT OR REPLACE INTO blobs VALUES (?, ?)", (info.digest, entry.size))
        elif info.kind in tree.LINK_KINDS:
            self._pool.submit(self._read_link, entry.path, info)

    def _read_link(self, path: str, info: tree.PathInfo) -> None:
        content = self._read(path)
        if content is None:
            return
        target = content.decode("ascii", "replace") if tree.is_valid_link(content) else None
        self._execute("INSERT INTO links VALUES (?, ?, ?, ?, ?, ?)",
                      (info.repository, info.kind.name, info.tag, info.digest, target, path))
        if target is None:
            self._finding(info.repository, info.tag, None, f"malformed link {_describe(content)}", path)
        elif info.digest and info.kind is not tree.Kind.SIGNATURE_LINK and target != info.digest:
            self._finding(info.repository, info.tag, target, f"link holds {target}, its path names {info.digest}", path)

    def finish(self) -> list[dict[str, Any]]:
        """Run the checks that need the whole index; returns findings grouped by repository."""
        self._pool.__exit__(None)
        self._db.executescript(_INDEXES)
        self._check_tags()
        self._parse_manifests()
        self._check_references()
        self._hash_blobs()
        return self._grouped()

    # --- checks ---------------------------------------------------------------------------------

    def _check_tags(self) -> None:
        rows = self._query(
            "SELECT t.repo, t.tag, t.target, t.path, "
            "  EXISTS (SELECT 1 FROM links r WHERE r.repo = t.repo AND r.kind = 'REVISION_LINK' "
            "          AND r.path_digest = t.target), "
            "  EXISTS (SELECT 1 FROM blobs b WHERE b.digest = t.target) "
            "FROM links t WHERE t.kind = 'TAG_LINK' AND t.target IS NOT NULL")
        for repo, tag, target, path, has_revision, has_blob in rows:
            if not has_revision:
                self._finding(repo, tag, target, f"tag {tag} points at {target}, which has no revision link", path)
            if not has_blob:
                self._finding(repo, tag, target, f"tag {tag}: manifest blob {target} is missing", path)

    def _parse_manifests(self) -> None:
        missing = self._query(
            "SELECT repo, path_digest, path FROM links l WHERE kind = 'REVISION_LINK' "
            "AND NOT EXISTS (SELECT 1 FROM blobs b WHERE b.digest = l.path_digest)")
        for repo, digest, path in missing:
            self._finding(repo, None, digest, f"revision {digest}: manifest blob is missing", path)
        digests = [row[0] for row in self._query(
            "SELECT DISTINCT path_digest FROM links l WHERE kind = 'REVISION_LINK' "
            "AND EXISTS (SELECT 1 FROM blobs b WHERE b.digest = l.path_digest)")]
        with WorkerPool(self.options.workers, self._crashed) as pool:
            for digest in digests:
                pool.submit(self._parse_manifest, digest)

    def _parse_manifest(self, digest: str) -> None:
        data = self._read(tree.blob_path(digest))
        if data is None:
            return
        try:
            references = manifest_references(data)
        except ValueError as exc:
            for (repo,) in self._query("SELECT DISTINCT repo FROM links WHERE kind = 'REVISION_LINK' "
                                       "AND path_digest = ?", (digest,)):
                self._finding(repo, None, digest, f"manifest {digest} does not parse: {exc}", tree.blob_path(digest))
            return
        for ref_digest, kind in references:
            self._execute("INSERT INTO refs VALUES (?, ?, ?)", (digest, ref_digest, kind))

    def _check_references(self) -> None:
        rows = self._query(
            "SELECT DISTINCT r.repo, f.manifest, f.digest, f.kind, "
            "  EXISTS (SELECT 1 FROM blobs b WHERE b.digest = f.digest), "
            "  EXISTS (SELECT 1 FROM links l WHERE l.repo = r.repo AND l.path_digest = f.digest "
            "          AND l.kind = CASE f.kind WHEN 'child' THEN 'REVISION_LINK' ELSE 'LAYER_LINK' END) "
            "FROM links r JOIN refs f ON f.manifest = r.path_digest WHERE r.kind = 'REVISION_LINK'")
        for repo, manifest, digest, kind, has_blob, linked in rows:
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
        query = "SELECT digest, size FROM blobs" + ("" if limit is None else " WHERE size <= ?")
        with WorkerPool(self.options.workers, self._crashed) as pool:
            for digest, _ in self._query(query, () if limit is None else (limit,)):
                pool.submit(self._hash_blob, digest)

    def _hash_blob(self, digest: str) -> None:
        alg, _, expected = digest.partition(":")
        if alg not in hashlib.algorithms_available:
            return
        hasher = hashlib.new(alg)
        try:
            with self.storage.open(tree.blob_path(digest)) as stream:
                while chunk := stream.read(1024 * 1024):
                    hasher.update(chunk)
        except RegmigError as exc:
            self._error(tree.blob_path(digest), exc)
            return
        if hasher.hexdigest() != expected:
            self._finding(BLOB_STORE, None, digest, f"blob data does not hash to {digest}", tree.blob_path(digest))

    # --- plumbing -------------------------------------------------------------------------------

    def _read(self, path: str) -> bytes | None:
        try:
            return self.storage.read(path)
        except ObjectMissing:
            return None  # vanished since the listing: not a defect of what is there
        except RegmigError as exc:
            self._error(path, exc)
            return None

    def _error(self, path: str, exc: Exception | str) -> None:
        with self._lock:
            self.errors.append(f"{path}: {exc}")

    def _crashed(self, results: list[Result]) -> None:
        """The pool's consumer: a check job returns nothing, so anything it hands back is a crash."""
        for result in results:
            self._error(result.path, result.message)

    def _finding(self, repo: str | None, tag: str | None, digest: str | None, problem: str, path: str) -> None:
        self._execute("INSERT INTO findings VALUES (?, ?, ?, ?, ?)", (repo or BLOB_STORE, tag, digest, problem, path))

    def _execute(self, sql: str, args: tuple[Any, ...]) -> None:
        with self._lock:
            self._db.execute(sql, args)

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

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
