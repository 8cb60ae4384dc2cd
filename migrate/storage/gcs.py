"""Google Cloud Storage through google-cloud-storage (its credentials, retries, resumable uploads).

Every object is written as application/octet-stream: the registry's gcs driver treats objects
whose type is application/x-docker-upload-session as missing.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

import google.auth.exceptions
import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.auth.credentials import AnonymousCredentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import storage as gcs
from google.cloud.storage.exceptions import DataCorruption
from google.cloud.storage.retry import DEFAULT_RETRY

from migrate import redact, tree
from migrate.errors import BadInput, ChecksumMismatch, ConditionFailed, ObjectMissing, RegmigError, StorageError
from migrate.ratelimit import RateLimiter
from migrate.storage.options import GCSOptions
from migrate.storage.base import Entry, LinkSink, ProblemSink, Storage, TransferSettings
from migrate.storage.ranges import KeyRange

CONTENT_TYPE = "application/octet-stream"
UPLOAD_SESSION_TYPE = "application/x-docker-upload-session"


class GCSStorage(Storage):
    driver = tree.Driver.GCS

    def __init__(self, bucket: str, rootdirectory: str, options: GCSOptions, transfer: TransferSettings) -> None:
        if not bucket:
            raise BadInput("the bucket name is empty: use gs://BUCKET[/ROOTDIRECTORY]")
        self.bucket_name = bucket
        self.rootdirectory = rootdirectory
        self.transfer = transfer
        self.client = _client(options, transfer)
        self.bucket = self.client.bucket(bucket)
        # Our uploads write the same bytes again when repeated, so retrying them is safe.
        self._retry: Retry = DEFAULT_RETRY.with_timeout(300)

    def location(self, rootdirectory: str) -> str:
        root = rootdirectory.strip("/")
        return f"gs://{self.bucket_name}" + (f"/{root}" if root else "")

    @property
    def service_identity(self) -> str:
        return f"gcs {self.client.api_endpoint} (project {self.client.project})"

    def check_reachable(self) -> None:
        with _errors(f"bucket {self.bucket_name!r}", missing=BadInput):
            self.client.get_bucket(self.bucket_name, retry=self._retry)

    def has_keys(self, key_prefix: str) -> bool:
        with _errors(f"listing gs://{self.bucket_name}/{key_prefix}"):
            return any(True for _ in self.client.list_blobs(self.bucket_name, prefix=key_prefix, max_results=1,
                                                            retry=self._retry))

    def list_prefixes(self, key_prefix: str, max_entries: int = 1000) -> list[str]:
        with _errors(f"listing gs://{self.bucket_name}/{key_prefix}"):
            blobs = self.client.list_blobs(self.bucket_name, prefix=key_prefix, delimiter="/", page_size=max_entries,
                                           retry=self._retry)
            next(iter(blobs.pages), None)  # one page: its prefixes are collected as it is read
        return sorted(blobs.prefixes)[:max_entries]  # fake-gcs-server fills a page past its size

    def health(self) -> list[tuple[str, str]]:
        with _errors(f"bucket {self.bucket_name!r} settings"):
            bucket = self.client.get_bucket(self.bucket_name, retry=self._retry)
        rules = list(bucket.lifecycle_rules or [])
        expires = any(rule.get("action", {}).get("type") == "Delete" and
                      ({"isLive", "daysSinceNoncurrentTime", "numNewerVersions"} & set(rule.get("condition", {})))
                      for rule in rules)
        if bucket.versioning_enabled and not expires:
            return [("WARN", "object versioning is on with no lifecycle rule deleting noncurrent versions: "
                             "deleted upload artifacts are kept and billed")]
        return []

    def _walk(self, prefix: str, span: KeyRange | None, on_problem: ProblemSink | None,
              hash_limit: int, on_link: LinkSink | None) -> Generator[Entry, None, None]:
        root = self.prefix
        offsets = {}  # GCS lists a range itself: from startOffset (included) to endOffset (excluded)
        if span is not None and span.start > prefix:
            offsets["start_offset"] = root + span.start
        if span is not None and span.end is not None:
            offsets["end_offset"] = root + span.end
        with _errors(f"listing gs://{self.bucket_name}/{root + prefix}", missing=BadInput):
            for blob in self.client.list_blobs(self.bucket_name, prefix=root + prefix, page_size=5000,
                                               retry=self._retry, **offsets):
                if blob.content_type == UPLOAD_SESSION_TYPE:
                    continue  # invisible to the registry: not data, never copied or counted
                yield _entry(blob.name[len(root):], blob)

    def stat(self, path: str) -> Entry | None:
        with _errors(f"gs://{self.bucket_name}/{self.key(path)}"):
            blob = self.bucket.get_blob(self.key(path), retry=self._retry)
        return _entry(path, blob) if blob is not None else None

    @contextmanager
    def open(self, path: str) -> Iterator[BinaryIO]:
        with _errors(f"gs://{self.bucket_name}/{self.key(path)}"):
            reader = self.bucket.blob(self.key(path)).open("rb", chunk_size=self.transfer.chunk_size,
                                                           retry=self._retry)
            with reader:
                yield reader

    def read(self, path: str) -> bytes:
        with _errors(f"gs://{self.bucket_name}/{self.key(path)}"):
            return self.bucket.blob(self.key(path)).download_as_bytes(retry=self._retry)

    def put(self, path: str, data: bytes | BinaryIO, size: int) -> None:
        self._upload(path, data, size, if_generation_match=None)

    def create_exclusive(self, path: str, data: bytes) -> bool:
        try:
            self._upload(path, data, len(data), if_generation_match=0)  # 0: only if no live object
        except ConditionFailed:
            return False
        return True

    def _upload(self, path: str, data: bytes | BinaryIO, size: int, *, if_generation_match: int | None) -> None:
        """Every upload carries its MD5: a single request's the service checks; a chunked upload's the
        client checks against the service's at the end (and removes a corrupted object)."""
        key = self.key(path)
        what = f"upload to gs://{self.bucket_name}/{key}"
        with _errors(what):
            try:
                if isinstance(data, bytes):
                    self.bucket.blob(key).upload_from_string(data, content_type=CONTENT_TYPE, checksum="md5",
                                                             if_generation_match=if_generation_match,
                                                             retry=self._retry)
                else:
                    chunked = size >= self.transfer.chunk_size
                    blob = self.bucket.blob(key, chunk_size=_chunk(self.transfer.chunk_size) if chunked else None)
                    blob.upload_from_file(data, size=size, content_type=CONTENT_TYPE, checksum="md5",
                                          if_generation_match=if_generation_match, retry=self._retry)
            except DataCorruption as exc:
                raise ChecksumMismatch(f"{what}: corrupted in transit ({exc})") from None

    def _delete(self, path: str, if_match: str | None) -> None:
        generation = int(if_match) if if_match and if_match.isdigit() else None
        try:
            with _errors(f"delete gs://{self.bucket_name}/{self.key(path)}"):
                self.bucket.blob(self.key(path)).delete(if_generation_match=generation, retry=self._retry)
        except ObjectMissing:
            return

    def close(self) -> None:
        self.client.close()


def _chunk(size: int) -> int:
    """Resumable upload chunks must be multiples of 256 KiB."""
    quantum = 256 * 1024
    return max(quantum, size // quantum * quantum)


def _entry(path: str, blob: Any) -> Entry:
    md5 = base64.b64decode(blob.md5_hash).hex() if blob.md5_hash else None
    # timeCreated is when this generation's content was written; ``updated`` also moves on a
    # metadata change, which would pass an object off as written after a cut-over.
    created = blob.time_created.timestamp() if blob.time_created else None
    return Entry(path, blob.size or 0, md5, str(blob.generation) if blob.generation else None, modified=created)


class _RateLimitedSession(AuthorizedSession):  # type: ignore[misc]
    """Takes a slot from the shared limiter before every request, retries included."""

    limiter: RateLimiter | None = None

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        if self.limiter is not None:
            self.limiter.acquire()
        return super().request(*args, **kwargs)


def _client(options: GCSOptions, transfer: TransferSettings) -> gcs.Client:
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    try:
        if options.keyfile:
            from google.oauth2 import service_account

            credentials = service_account.Credentials.from_service_account_file(
                options.keyfile, scopes=["https://www.googleapis.com/auth/devstorage.read_write"])
            project = options.project or credentials.project_id
        elif emulator:
            credentials, project = AnonymousCredentials(), options.project or "regmig"
        else:
            import google.auth

            credentials, project = google.auth.default(
                scopes=["https://www.googleapis.com/auth/devstorage.read_write"])
            project = options.project or project
    except (OSError, ValueError, google.auth.exceptions.GoogleAuthError) as exc:
        raise BadInput(redact.redact(f"GCS credentials: {exc}")) from None
    session = _RateLimitedSession(credentials)
    if transfer.max_requests_per_second > 0:
        session.limiter = RateLimiter(transfer.max_requests_per_second)
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=transfer.workers + 16)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return gcs.Client(project=project, credentials=credentials, _http=session)


@contextmanager
def _errors(what: str, missing: type[RegmigError] = ObjectMissing) -> Iterator[None]:
    try:
        yield
    except api_exceptions.NotFound:
        raise missing(f"{what}: does not exist") from None
    except api_exceptions.PreconditionFailed:
        raise ConditionFailed(f"{what}: changed since it was checked") from None
    except (api_exceptions.Forbidden, api_exceptions.Unauthorized) as exc:
        raise BadInput(redact.redact(f"{what}: access denied ({exc.code})")) from None
    except api_exceptions.GoogleAPIError as exc:
        raise StorageError(redact.redact(f"{what}: {exc}")) from None
    except (google.auth.exceptions.GoogleAuthError, requests.RequestException) as exc:
        raise StorageError(redact.redact(f"{what}: {type(exc).__name__}: {exc}")) from None
