"""Azure Blob Storage through azure-storage-blob (its auth, retries, block uploads, paging).

Blob names follow the GitLab registry's Azure driver: with the legacy root prefix every name
starts with '/', with the trimmed prefix (GitLab 16.0+ default) none does.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import requests
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobPrefix, BlobServiceClient, ContainerClient, ContentSettings

from migrate import redact, tree
from migrate.errors import BadInput, ChecksumMismatch, ConditionFailed, ObjectMissing, RegmigError, StorageError
from migrate.ratelimit import RateLimiter
from migrate.storage.options import ROOT_PREFIX_CONFIG, AzureOptions
from migrate.storage.base import Entry, LinkSink, ProblemSink, Storage, TransferSettings
from migrate.storage.ranges import KeyRange, prefix_cover

CONTENT_TYPE = "application/octet-stream"


class AzureStorage(Storage):
    key_layouts = (tree.Driver.AZURE_TRIMMED, tree.Driver.AZURE_LEGACY)

    def __init__(self, container: str, rootdirectory: str, options: AzureOptions, transfer: TransferSettings) -> None:
        if not container:
            raise BadInput("the container name is empty: use azure://CONTAINER[/ROOTDIRECTORY]")
        if options.root_prefix not in ROOT_PREFIX_CONFIG:
            raise BadInput(f"--azure-root-prefix must be trimmed or legacy, not {options.root_prefix!r}")
        self.driver = tree.Driver.AZURE_LEGACY if options.root_prefix == "legacy" else tree.Driver.AZURE_TRIMMED
        self.container_name = container
        self.rootdirectory = rootdirectory
        self.options = options
        self.transfer = transfer
        self.service = _service_client(options, transfer)
        self.container: ContainerClient = self.service.get_container_client(container)

    def location(self, rootdirectory: str) -> str:
        root = rootdirectory.strip("/")
        return f"azure://{self.container_name}" + (f"/{root}" if root else "")

    @property
    def service_identity(self) -> str:
        return f"azure account {self.service.account_name} at {self.service.scheme}://{self.service.primary_hostname}"

    @property
    def root_description(self) -> str:
        return (f"azure driver, {self.options.root_prefix} root prefix "
                f"(registry config: {ROOT_PREFIX_CONFIG[self.options.root_prefix]}), " + super().root_description)

    def check_reachable(self) -> None:
        with _errors(f"container {self.container_name!r}", missing=BadInput):
            self.container.get_container_properties()
            info = self.container.get_account_information()
        if info.get("is_hns_enabled"):
            raise BadInput("the storage account has hierarchical namespace (ADLS Gen2) enabled; the registry's "
                           "azure driver does not work on it (distribution#3922): use an account without it")

    def has_keys(self, key_prefix: str) -> bool:
        with _errors(f"listing {self.container_name}/{key_prefix}"):
            return next(iter(self.container.list_blobs(name_starts_with=key_prefix, results_per_page=1)), None) is not None

    def list_prefixes(self, key_prefix: str, max_entries: int = 1000) -> list[str]:
        with _errors(f"listing {self.container_name}/{key_prefix}"):
            page = next(self.container.walk_blobs(name_starts_with=key_prefix, delimiter="/",
                                                  results_per_page=max_entries).by_page(), [])
            return [item.name for item in page if isinstance(item, BlobPrefix)]

    def _walk(self, prefix: str, span: KeyRange | None, on_problem: ProblemSink | None,
              hash_limit: int, on_link: LinkSink | None) -> Generator[Entry, None, None]:
        root = self.prefix
        with _errors(f"listing {self.container_name}/{root + prefix}", missing=BadInput):
            if span is None:
                prefixes: Iterable[str] = [root + prefix]
            else:  # Azure cannot start a listing mid-way: a range is listed as the prefixes that cover it
                keys = KeyRange(root + span.start, None if span.end is None else root + span.end)
                prefixes = prefix_cover(root + prefix, keys, self._names_under)
            for key_prefix in prefixes:
                for blob in self.container.list_blobs(name_starts_with=key_prefix, results_per_page=5000):
                    yield _entry(blob.name[len(root):], blob)

    def _names_under(self, key_prefix: str) -> Iterator[str]:
        """One delimiter listing: the blob names and sub-prefixes directly under ``key_prefix``."""
        for item in self.container.walk_blobs(name_starts_with=key_prefix, delimiter="/", results_per_page=5000):
            yield item.name

    def stat(self, path: str) -> Entry | None:
        try:
            with _errors(f"{self.container_name}/{self.key(path)}"):
                props = self.container.get_blob_client(self.key(path)).get_blob_properties()
        except ObjectMissing:
            return None
        return _entry(path, props)

    @contextmanager
    def open(self, path: str) -> Iterator[BinaryIO]:
        with _errors(f"{self.container_name}/{self.key(path)}"):
            downloader = self.container.download_blob(self.key(path), max_concurrency=1)
        yield downloader  # type: ignore[misc]  # StorageStreamDownloader reads like a binary stream

    def read(self, path: str) -> bytes:
        with _errors(f"{self.container_name}/{self.key(path)}"):
            return self.container.download_blob(self.key(path)).readall()

    def put(self, path: str, data: bytes | BinaryIO, size: int) -> None:
        self._upload(path, data, size, overwrite=True)

    def create_exclusive(self, path: str, data: bytes) -> bool:
        try:
            self._upload(path, data, len(data), overwrite=False)  # sent with If-None-Match: *
        except _Exists:
            return False
        return True

    def _upload(self, path: str, data: bytes | BinaryIO, size: int, *, overwrite: bool) -> None:
        key = self.key(path)
        what = f"upload to {self.container_name}/{key}"
        settings = ContentSettings(content_type=CONTENT_TYPE)
        if isinstance(data, bytes):
            # Content-MD5 stored on the blob, so later listings can compare content.
            settings.content_md5 = bytearray(hashlib.md5(data).digest())
        with _errors(what):
            try:
                # validate_content: every request (the one Put Blob, or each Put Block) carries the
                # Content-MD5 of its body, which the service checks.
                self.container.upload_blob(key, data, length=size, overwrite=overwrite, content_settings=settings,
                                           max_concurrency=4, validate_content=True)
            except ResourceExistsError:
                raise _Exists() from None
            except HttpResponseError as exc:
                if exc.status_code == 400 and (exc.error_code == "Md5Mismatch" or "md5" in str(exc.message).lower()):
                    raise ChecksumMismatch(f"{what}: the service refused the body as corrupted in transit "
                                           f"({exc.error_code})") from None
                raise

    def _delete(self, path: str, if_match: str | None) -> None:
        conditions: dict[str, Any] = {}
        if if_match:
            conditions = {"etag": if_match, "match_condition": MatchConditions.IfNotModified}
        try:
            with _errors(f"delete {self.container_name}/{self.key(path)}"):
                self.container.delete_blob(self.key(path), **conditions)
        except ObjectMissing:
            return

    def close(self) -> None:
        self.container.close()
        self.service.close()


class _Exists(RegmigError):
    """A conditional create found the blob there (internal to create_exclusive)."""


def _entry(path: str, blob: Any) -> Entry:
    md5 = blob.content_settings.content_md5 if blob.content_settings else None
    modified = blob.last_modified.timestamp() if blob.last_modified else None
    return Entry(path, blob.size, bytes(md5).hex() if md5 else None, blob.etag, modified=modified)


class _RateLimitPolicy(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Takes a slot from the shared limiter before every try, retries included."""

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    def on_request(self, request: Any) -> None:
        self._limiter.acquire()


def _service_client(options: AzureOptions, transfer: TransferSettings) -> BlobServiceClient:
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=transfer.workers + 16)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    settings: dict[str, Any] = {
        "transport": RequestsTransport(session=session, session_owner=True),
        "max_single_put_size": transfer.chunk_size,
        "max_block_size": transfer.chunk_size,
        "retry_total": transfer.max_attempts,
        "connection_timeout": 10,
        "read_timeout": 60,
    }
    if transfer.max_requests_per_second > 0:
        settings["per_retry_policies"] = [_RateLimitPolicy(RateLimiter(transfer.max_requests_per_second))]
    connection_string = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    redact.add_secret(options.account_key)
    redact.add_secret(connection_string)
    try:
        if options.account_key:
            url = options.account_url or _account_url(options)
            name = options.account_name or _account_name(url)
            credential: Any = {"account_name": name, "account_key": options.account_key}
            return BlobServiceClient(url, credential=credential, **settings)
        if connection_string and not options.account_url and not options.account_name:
            return BlobServiceClient.from_connection_string(connection_string, **settings)
        from azure.identity import DefaultAzureCredential

        return BlobServiceClient(options.account_url or _account_url(options), credential=DefaultAzureCredential(),
                                 **settings)
    except ValueError as exc:
        raise BadInput(redact.redact(f"Azure account settings: {exc}")) from None


def _account_url(options: AzureOptions) -> str:
    if not options.account_name:
        raise BadInput("Azure needs --azure-account-url or --azure-account-name "
                       "(or AZURE_STORAGE_CONNECTION_STRING)")
    return f"https://{options.account_name}.blob.{options.realm}"


def _account_name(url: str) -> str:
    """The account is the first host label, or the first path part for emulator-style URLs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host.replace(".", "").isdigit() or host == "localhost":
        return parts.path.strip("/").split("/")[0]
    return host.split(".")[0]


@contextmanager
def _errors(what: str, missing: type[RegmigError] = ObjectMissing) -> Iterator[None]:
    """Turn SDK exceptions into one-line regmig errors, with secrets redacted."""
    try:
        yield
    except ResourceNotFoundError as exc:
        code = getattr(exc, "error_code", None)
        if code == "ContainerNotFound":
            raise BadInput(f"{what}: the container does not exist") from None
        raise missing(f"{what}: does not exist") from None
    except ResourceModifiedError:
        raise ConditionFailed(f"{what}: changed since it was checked") from None
    except ClientAuthenticationError as exc:
        raise BadInput(redact.redact(f"{what}: authentication failed; check the account key or credentials "
                                     f"({getattr(exc, 'error_code', None) or 'denied'})")) from None
    except HttpResponseError as exc:
        if exc.status_code == 412:
            raise ConditionFailed(f"{what}: changed since it was checked") from None
        if exc.status_code == 403:
            raise BadInput(redact.redact(f"{what}: access denied ({exc.error_code})")) from None
        raise StorageError(redact.redact(f"{what}: {exc.error_code or exc.status_code}: {exc.reason}")) from None
    except AzureError as exc:
        raise StorageError(redact.redact(f"{what}: {type(exc).__name__}: {str(exc).splitlines()[0]}")) from None

