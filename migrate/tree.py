"""Everything regmig knows about the registry's storage layout, in one place.

Paths here are *registry paths*: '/'-separated, relative to the registry's
``rootdirectory`` and without a leading slash (``docker/registry/v2/...``).
Backends turn them into object keys with :func:`object_key`, which follows
each registry storage driver exactly (see docs/registry-storage.md).
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass

V2 = "docker/registry/v2/"
BLOBS = V2 + "blobs/"
REPOSITORIES = V2 + "repositories/"
LOCKFILES = "docker/registry/lockfiles/"
SCHEDULER_STATE = "scheduler-state.json"
REGMIG = ".regmig/"
"""regmig's own objects under a destination root (its generation token and lease): outside the
registry tree, never copied, counted or deleted."""

_DIGEST_HEX = re.compile(r"[0-9a-f]{64}")
# sha256 links must be exact; other algorithms follow distribution's generic digest grammar.
LINK_CONTENT = re.compile(rb"sha256:[0-9a-f]{64}|(?!sha256:)[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_TMP_DEBRIS = re.compile(r"\.[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\.tmp$")


class Kind(enum.Enum):
    BLOB_DATA = "blob data"
    LAYER_LINK = "layer link"
    REVISION_LINK = "revision link"
    SIGNATURE_LINK = "signature link"
    TAG_LINK = "tag link"
    TAG_INDEX_LINK = "tag index link"
    UPLOAD = "upload"
    LOCKFILE = "lockfile"
    SCHEDULER_STATE = "scheduler state"
    TMP_DEBRIS = "tmp debris"
    MARKER = "directory marker"
    REGMIG = "regmig's own"
    UNKNOWN = "unknown"


LINK_KINDS = frozenset(
    {Kind.LAYER_LINK, Kind.REVISION_LINK, Kind.SIGNATURE_LINK, Kind.TAG_LINK, Kind.TAG_INDEX_LINK}
)


@dataclass(frozen=True, slots=True)
class PathInfo:
    """What a registry path is, and which repository / tag / digest it names."""

    kind: Kind
    repository: str | None = None
    tag: str | None = None
    digest: str | None = None


@functools.lru_cache(maxsize=1024)
def classify(path: str) -> PathInfo:
    """Classify one registry path. Pure string work: no I/O. Cached for the last paths: each entry
    of a pass is classified by several of its consumers in turn (the comparison, the counts, the
    marker finder, the deep check), one entry after another."""
    if path == "" or path.endswith("/"):
        return PathInfo(Kind.MARKER, repository=_marker_repository(path))
    if path.startswith(REGMIG):
        return PathInfo(Kind.REGMIG)
    if path.endswith(".tmp") and _TMP_DEBRIS.search(path):
        return PathInfo(Kind.TMP_DEBRIS)
    if path == SCHEDULER_STATE:
        return PathInfo(Kind.SCHEDULER_STATE)
    if path.startswith(LOCKFILES):
        return PathInfo(Kind.LOCKFILE)
    if path.startswith(BLOBS):
        return _classify_blob(path[len(BLOBS) :].split("/"))
    if path.startswith(REPOSITORIES):
        return _classify_repository_path(path[len(REPOSITORIES) :])
    return PathInfo(Kind.UNKNOWN)


def _classify_blob(parts: list[str]) -> PathInfo:
    # <alg>/<hex[0:2]>/<hex>/data
    if len(parts) == 4 and parts[3] == "data" and parts[2][:2] == parts[1] and parts[0]:
        return PathInfo(Kind.BLOB_DATA, digest=f"{parts[0]}:{parts[2]}")
    return PathInfo(Kind.UNKNOWN)


def _split_repository(rest: str) -> tuple[str, list[str]] | None:
    """Split a path below ``repositories/`` at its first '_'-component (no repository name
    component starts with '_'): the name, and the components from there."""
    if rest.startswith("_"):
        return None
    cut = rest.find("/_")
    if cut < 0:
        return None
    return rest[:cut], rest[cut + 1 :].split("/")


def _classify_repository_path(rest: str) -> PathInfo:
    split = _split_repository(rest)
    if split is None:
        return PathInfo(Kind.UNKNOWN)
    repo, rest = split
    head = rest[0]
    if head == "_uploads":
        return PathInfo(Kind.UPLOAD, repository=repo)
    if head == "_layers" and len(rest) == 4 and rest[3] == "link":
        return PathInfo(Kind.LAYER_LINK, repository=repo, digest=f"{rest[1]}:{rest[2]}")
    if head == "_manifests" and len(rest) > 1:
        return _classify_manifest_path(repo, rest[1:])
    return PathInfo(Kind.UNKNOWN, repository=repo)


def _classify_manifest_path(repo: str, rest: list[str]) -> PathInfo:
    if rest[0] == "revisions":
        # revisions/<alg>/<hex>/link  or  revisions/<alg>/<hex>/signatures/<alg>/<hex>/link
        if len(rest) == 4 and rest[3] == "link":
            return PathInfo(Kind.REVISION_LINK, repository=repo, digest=f"{rest[1]}:{rest[2]}")
        if len(rest) == 7 and rest[3] == "signatures" and rest[6] == "link":
            return PathInfo(Kind.SIGNATURE_LINK, repository=repo, digest=f"{rest[1]}:{rest[2]}")
    elif rest[0] == "tags" and len(rest) >= 3:
        tag = rest[1]
        if rest[2:] == ["current", "link"]:
            return PathInfo(Kind.TAG_LINK, repository=repo, tag=tag)
        if len(rest) == 6 and rest[2] == "index" and rest[5] == "link":
            return PathInfo(Kind.TAG_INDEX_LINK, repository=repo, tag=tag, digest=f"{rest[3]}:{rest[4]}")
    return PathInfo(Kind.UNKNOWN, repository=repo)


def _marker_repository(path: str) -> str | None:
    if not path.startswith(REPOSITORIES):
        return None
    rest = path[len(REPOSITORIES) :].rstrip("/")
    split = _split_repository(rest)
    if split:
        return split[0]
    return rest or None


def is_excluded(path: str, include_uploads: bool = False) -> bool:
    """True for paths a migration never copies, counts or deletes: unfinished uploads, tmp debris
    and regmig's own objects.

    Hot path (called once per object on both sides), so it avoids full classification.
    """
    if path.startswith(REGMIG):
        return True
    if "/_uploads/" in path and not include_uploads and classify(path).kind is Kind.UPLOAD:
        return True
    return path.endswith(".tmp") and _TMP_DEBRIS.search(path) is not None


def is_registry_data(path: str) -> bool:
    """True for paths the registry itself owns under its root; only these may ever be deleted."""
    return path.startswith("docker/") or path == SCHEDULER_STATE


def is_content_addressed(path: str) -> bool:
    """Blob data is named by its digest, so equal size means equal content."""
    return path.startswith(BLOBS) and path.endswith("/data")


def is_marker(path: str, size: int) -> bool:
    """A zero-byte key ending in '/': never written by the registry, shown by GitLab as a nameless tag."""
    return size == 0 and (path == "" or path.endswith("/"))


def is_registry_marker(path: str, size: int) -> bool:
    """A marker in the registry's own key space: the root's key itself, or under ``docker/``. Zero-byte
    keys elsewhere under a shared bucket's root (``backups/``, ``terraform-state/``) are another tool's
    folders: never the registry's to count or remove."""
    return is_marker(path, size) and (path == "" or path.startswith("docker/"))


def is_valid_link(content: bytes) -> bool:
    """A link file is exactly '<alg>:<hex>' with no newline; the registry rejects anything else."""
    return LINK_CONTENT.fullmatch(content) is not None


def is_digest_hex(value: str) -> bool:
    return _DIGEST_HEX.fullmatch(value) is not None


def suggest_root(rootdirectory: str) -> str | None:
    """When the user pointed inside the tree (at docker/registry/v2, say), the root they meant."""
    trimmed = rootdirectory.rstrip("/")
    for inner in ("/docker/registry/v2", "/docker/registry", "/docker"):
        if trimmed.endswith(inner):
            return trimmed[: -len(inner)] or "/"
    return None


def blob_path(digest: str) -> str:
    alg, _, hexpart = digest.partition(":")
    return f"{BLOBS}{alg}/{hexpart[:2]}/{hexpart}/data"


def repository_path(repository: str) -> str:
    return f"{REPOSITORIES}{repository}/"


# --- key mapping per storage driver -------------------------------------------------------------


class Driver(enum.Enum):
    S3 = "s3"
    GCS = "gcs"
    AZURE_LEGACY = "azure-legacy"
    AZURE_TRIMMED = "azure-trimmed"
    FILESYSTEM = "filesystem"


_PROBE = "docker/registry/v2/probe"


def object_key(driver: Driver, rootdirectory: str, path: str) -> str:
    """The object key the registry's driver uses for registry path ``path`` under ``rootdirectory``."""
    registry_path = "/" + path
    if driver in (Driver.S3, Driver.GCS):
        return (rootdirectory.rstrip("/") + registry_path).lstrip("/")
    if driver in (Driver.AZURE_LEGACY, Driver.AZURE_TRIMMED):
        root = rootdirectory.strip("/")
        root = root + "/" if root else ""
        key = (root + registry_path.lstrip("/")).rstrip("/")
        return "/" + key if driver is Driver.AZURE_LEGACY else key
    if driver is Driver.FILESYSTEM:
        return path
    raise ValueError(f"unknown driver {driver}")


def key_prefix(driver: Driver, rootdirectory: str) -> str:
    """The key prefix under which every object of this root lives ('' for a bucket root).

    ``key_prefix + path == object_key(path)`` for every path; backends use the prefix form
    so that marker keys (ending in '/') keep their slash, which Azure's formula trims.
    """
    return object_key(driver, rootdirectory, _PROBE)[: -len(_PROBE)]


def rootdirectory_for(driver: Driver, prefix: str) -> str | None:
    """Inverse of :func:`key_prefix`: the rootdirectory whose keys start with ``prefix`` under this
    driver, or None when none does (an Azure legacy prefix starts with '/', a trimmed one never).
    For the filesystem, keys are paths under the root, so the answer is a subdirectory of it."""
    candidate = prefix.strip("/")
    if driver is Driver.FILESYSTEM:
        return candidate
    return candidate if key_prefix(driver, candidate) == prefix else None


def registry_path(driver: Driver, rootdirectory: str, key: str) -> str | None:
    """Inverse of :func:`object_key`: the registry path of ``key``, or None when outside the root."""
    prefix = key_prefix(driver, rootdirectory)
    if not key.startswith(prefix):
        return None
    return key[len(prefix) :]
