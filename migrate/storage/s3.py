"""Amazon S3 and S3-compatible services, through boto3 (credentials, signing, retries, multipart)."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import os
import re
import uuid
from collections.abc import Callable, Generator, Iterator
from datetime import datetime
from contextlib import contextmanager
from typing import Any, BinaryIO

import boto3
import botocore.exceptions
import botocore.loaders
import botocore.parsers
import botocore.session
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.credentials import RefreshableCredentials
from s3transfer.manager import TransferManager
from s3transfer.subscribers import BaseSubscriber

from migrate import redact, tree
from migrate.errors import BadInput, ChecksumMismatch, ConditionFailed, ObjectMissing, RegmigError, StorageError
from migrate.probe import PROBE_DIR
from migrate.ratelimit import RateLimiter
from migrate.storage.options import S3Options
from migrate.storage.base import Entry, LinkSink, ProblemSink, Storage, TransferSettings
from migrate.storage.ranges import KeyRange, just_below
from migrate.storage.s3_lean import LeanS3, lean_path_usable, tls_failure

CONTENT_TYPE = "application/octet-stream"
_BUCKET_NAME = re.compile(r"[a-z0-9](?!.*\.\.)[a-z0-9.-]{1,61}[a-z0-9]")
"""S3's rules for new buckets; AWS still serves older names that break them (us-east-1 before 2018)."""
_HEADERS = {"ContentType": "Content-Type", "ServerSideEncryption": "x-amz-server-side-encryption",
            "SSEKMSKeyId": "x-amz-server-side-encryption-aws-kms-key-id", "StorageClass": "x-amz-storage-class"}
_CORRUPTED = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"}
"""Error codes of a body that did not match the checksum sent with it (Content-MD5, signed payload hash)."""
_KMS = ("aws:kms", "aws:kms:dsse")
_MODELS: dict[Any, Any] = {}
"""The service models and endpoint rules every client of this process has read (a session's own
loader would parse the JSON again: most of the tenth of a second of CPU a client costs to make)."""


class S3Storage(Storage):
    driver = tree.Driver.S3

    def __init__(self, bucket: str, rootdirectory: str, options: S3Options, transfer: TransferSettings) -> None:
        if not bucket:
            raise BadInput("the bucket name is empty: use s3://BUCKET[/ROOTDIRECTORY]")
        if options.sse not in (None, "AES256", "aws:kms"):
            raise BadInput(f"--sse must be AES256 or aws:kms, not {options.sse!r}")
        if options.sse_kms_key_id and options.sse != "aws:kms":
            raise BadInput("--sse-kms-key-id needs --sse aws:kms")
        self.bucket = bucket
        self.rootdirectory = rootdirectory
        self.options = options
        self.transfer = transfer
        self.client, credentials, limiter = _make_client(options, transfer)
        if isinstance(credentials, RefreshableCredentials):
            _redact_refreshes(credentials)
        # Every part of a multipart upload carries its Content-MD5, which the service checks.
        self.client.meta.events.register("before-call.s3.UploadPart", _part_md5)
        # The hot calls (small PUTs, listings, HEADs) take the lean path built from the client's pieces.
        usable = credentials and lean_path_usable(self.client)
        self._lean = LeanS3(self.client, credentials, bucket, transfer.max_attempts,
                            limiter.acquire if limiter else None) if usable else None
        self._manager = TransferManager(
            self.client,
            # Parts in flight: s3transfer's default (10, as the AWS CLI). More made moto's server
            # slower per part (bench/ blobs phase: 55 MiB/s at 16 against 73 MiB/s at 10).
            TransferConfig(multipart_threshold=transfer.chunk_size, multipart_chunksize=transfer.chunk_size),
        )
        # With SSE-KMS the ETag is not the MD5 of the content, so it cannot prove equality
        # (calibrate_md5 also finds a bucket that encrypts so by default).
        self._etag_is_md5 = options.sse not in _KMS
        self._tracks_deletes: bool | None = None
        self._write_args: dict[str, str] = {"ContentType": CONTENT_TYPE}
        if options.sse:
            self._write_args["ServerSideEncryption"] = options.sse
        if options.sse_kms_key_id:
            self._write_args["SSEKMSKeyId"] = options.sse_kms_key_id
        if options.storage_class:
            self._write_args["StorageClass"] = options.storage_class
        self._lean_headers = {_HEADERS[name]: value for name, value in self._write_args.items()}

    def location(self, rootdirectory: str) -> str:
        root = rootdirectory.strip("/")
        return f"s3://{self.bucket}" + (f"/{root}" if root else "")

    @property
    def service_identity(self) -> str:
        meta = self.client.meta
        return f"s3 {meta.endpoint_url} ({meta.partition} partition, region {meta.region_name})"

    def check_reachable(self) -> None:
        what = f"bucket {self.bucket!r}"
        try:
            try:
                with _errors(what, missing=BadInput):
                    self.client.head_bucket(Bucket=self.bucket)
            except BadInput as exc:
                # A HEAD answer has no body: a 404 from any web server looks the same, and a 403 does
                # not say whether the secret is wrong or a policy denies. A listing tells both.
                if "does not exist" in str(exc) or "(403)" in str(exc):
                    self._confirm_s3(what)
                raise
            self._confirm_s3(what)
        except BadInput as exc:
            if "does not exist" in str(exc) and not _BUCKET_NAME.fullmatch(self.bucket):
                raise BadInput(f"{exc}, and {self.bucket!r} breaks S3's bucket naming rules (3 to 63 lowercase "
                               f"letters, digits, dots and hyphens), which services such as Ceph RGW enforce: "
                               f"check the name") from None
            raise

    def _confirm_s3(self, what: str) -> None:
        """A listing answers with S3's own error codes; anything else is not an S3 service. It goes
        the way the copy's listings and PUTs go (the lean path, when they take it), so a TLS setting,
        region or answer that path cannot work with stops the run before the first write."""
        endpoint = self.client.meta.endpoint_url
        try:
            if self._lean is not None:
                self._lean.probe(self.prefix)
            else:
                self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
        except botocore.parsers.ResponseParserError:
            raise BadInput(f"{endpoint} does not answer like an S3 service") from None
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code.isdigit():
                raise BadInput(f"{endpoint} does not answer like an S3 service (HTTP {code})") from None
            with _errors(what, missing=BadInput):
                raise

    def check_destination(self) -> None:
        self.check_reachable()
        if len(self._write_args) > 1:
            self._check_write_settings()

    def _check_write_settings(self) -> None:
        """One probe object, written with the copy's settings and read back, before the copy.

        Services refuse settings they lack (Ceph RGW 16 answers InvalidArgument to a storage class
        it does not define) or accept a header and ignore it (RGW 16 stores an ``AES256`` object
        unencrypted over HTTP): either way every upload would fail, or succeed without the
        encryption the operator asked for."""
        asked = {"ServerSideEncryption": self.options.sse, "StorageClass": self.options.storage_class}
        flags = " ".join(f"{flag} {value}" for flag, value in (("--sse", self.options.sse),
                                                               ("--storage-class", self.options.storage_class))
                         if value)
        key = f"{self.prefix}{PROBE_DIR}/{uuid.uuid4()}"
        try:
            with _errors(f"a test write to s3://{self.bucket}/{key}"):
                self.client.put_object(Bucket=self.bucket, Key=key, Body=b"", **self._write_args)
                head = self.client.head_object(Bucket=self.bucket, Key=key)
        except StorageError as exc:
            raise BadInput(f"the service refused {flags}: {exc}") from None
        finally:
            with _errors(f"delete s3://{self.bucket}/{key}"):
                self.client.delete_object(Bucket=self.bucket, Key=key)
        # HEAD leaves StorageClass out for STANDARD objects.
        got = {"ServerSideEncryption": head.get("ServerSideEncryption"),
               "StorageClass": head.get("StorageClass", "STANDARD")}
        ignored = [f"{name} {value} (the object has {got[name] or 'none'})"
                   for name, value in asked.items() if value and got[name] != value]
        if ignored:
            raise BadInput(f"s3://{self.bucket}: the service accepted {flags} but did not apply "
                           f"{', '.join(ignored)}: drop the setting or configure the service for it")

    def has_entries(self, prefix: str) -> bool:
        # One key is enough: a listing page of 1,000 costs the service (and the client) far more.
        return self.has_keys(self.prefix + prefix)

    def has_keys(self, key_prefix: str) -> bool:
        with _errors(f"listing s3://{self.bucket}/{key_prefix}"):
            return bool(self.client.list_objects_v2(Bucket=self.bucket, Prefix=key_prefix, MaxKeys=1).get("KeyCount"))

    def list_prefixes(self, key_prefix: str, max_entries: int = 1000) -> list[str]:
        with _errors(f"listing s3://{self.bucket}/{key_prefix}"):
            page = self.client.list_objects_v2(Bucket=self.bucket, Prefix=key_prefix, Delimiter="/",
                                               MaxKeys=min(max_entries, 1000))
        return [common["Prefix"] for common in page.get("CommonPrefixes", ())]

    def abort_incomplete_uploads(self, keep: Callable[[str], bool]) -> int:
        """Abort multipart uploads left under the root by an interrupted copy (S3 keeps and bills
        them forever); uploads ``keep`` claims (the registry's own ``_uploads``) are left alone."""
        aborted = 0
        paginator = self.client.get_paginator("list_multipart_uploads")
        with _errors(f"multipart uploads in s3://{self.bucket}/{self.prefix}"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for upload in page.get("Uploads", ()):
                    if keep(upload["Key"][len(self.prefix):]):
                        continue
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                    aborted += 1
        return aborted

    def health(self) -> list[tuple[str, str]]:
        findings = []
        with _errors(f"bucket {self.bucket!r} settings"):
            versioning = self.client.get_bucket_versioning(Bucket=self.bucket).get("Status")
            if versioning == "Enabled" and not self._expires_noncurrent_versions():
                findings.append(("WARN", "object versioning is on with no lifecycle rule expiring noncurrent "
                                 "versions: deleted upload artifacts are kept and billed (add a rule with "
                                 "NoncurrentVersionExpiration)"))
            if not self.options.sse and self._default_encryption():
                findings.append(("NOTE", "the bucket has default encryption; objects are encrypted with it "
                                 "although --sse was not given"))
        return findings

    def _expires_noncurrent_versions(self) -> bool:
        try:
            rules = self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket).get("Rules", [])
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
                return False
            raise
        return any(rule.get("Status") == "Enabled" and rule.get("NoncurrentVersionExpiration") for rule in rules)

    def calibrate_md5(self, sample: tuple[str, bytes] | None) -> None:
        """An ETag is the MD5 of the content only without SSE-KMS: compare a known object's ETag
        with the MD5 of its bytes, or, with none written yet, ask for the bucket's default encryption."""
        if not self._etag_is_md5:
            return
        if sample is not None:
            path, data = sample
            listed = self.stat(path)
            if listed is not None and listed.etag and len(listed.etag) == 32 and \
                    listed.etag != hashlib.md5(data).hexdigest():
                self._etag_is_md5 = False
            return
        try:
            rules = self.client.get_bucket_encryption(Bucket=self.bucket).get(
                "ServerSideEncryptionConfiguration", {}).get("Rules", [])
        except botocore.exceptions.ClientError:
            return  # none configured, or not allowed to ask: the next write's token settles it
        if any(rule.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") in _KMS for rule in rules):
            self._etag_is_md5 = False

    def _default_encryption(self) -> bool:
        try:
            config = self.client.get_bucket_encryption(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ServerSideEncryptionConfigurationNotFoundError":
                return False
            raise
        return bool(config.get("ServerSideEncryptionConfiguration", {}).get("Rules"))

    def _walk(self, prefix: str, span: KeyRange | None, on_problem: ProblemSink | None,
              hash_limit: int, on_link: LinkSink | None) -> Generator[Entry, None, None]:
        root = self.prefix
        # A range starts the listing at its first key (S3 lists keys after StartAfter); the
        # caller stops reading at its end, so no page past it is asked for.
        after = just_below(root + span.start) if span is not None and span.start > prefix else None
        with _errors(f"listing s3://{self.bucket}/{root + prefix}", missing=BadInput):
            if self._lean is not None:
                for key, size, etag, modified in self._lean.list(root + prefix, after):
                    yield self._entry(key[len(root):], size, etag, _listed_time(modified))
                return
            args = {"Bucket": self.bucket, "Prefix": root + prefix, **({"StartAfter": after} if after else {})}
            for page in self.client.get_paginator("list_objects_v2").paginate(**args):
                for obj in page.get("Contents", ()):
                    yield self._entry(obj["Key"][len(root):], obj["Size"], obj.get("ETag"),
                                      _time(obj.get("LastModified")))
                if page.get("IsTruncated") and not page.get("NextContinuationToken"):
                    raise StorageError(f"listing s3://{self.bucket}/{root + prefix}: a page is marked truncated but "
                                       f"carries no continuation token: the listing cannot be completed")

    def _entry(self, path: str, size: int, etag: str | None, modified: float | None) -> Entry:
        etag = (etag or "").strip('"') or None
        md5 = etag if self._etag_is_md5 and etag and len(etag) == 32 else None
        return Entry(path, size, md5, etag, modified=modified)

    def stat(self, path: str) -> Entry | None:
        try:
            with _errors(f"s3://{self.bucket}/{self.key(path)}"):
                if self._lean is not None:
                    size, etag, modified = self._lean.head(self.key(path))
                    return self._entry(path, size, etag, _header_time(modified))
                head = self.client.head_object(Bucket=self.bucket, Key=self.key(path))
        except ObjectMissing:
            return None
        return self._entry(path, head["ContentLength"], head.get("ETag"), _time(head.get("LastModified")))

    @contextmanager
    def open(self, path: str) -> Iterator[BinaryIO]:
        with _errors(f"s3://{self.bucket}/{self.key(path)}"):
            body = self.client.get_object(Bucket=self.bucket, Key=self.key(path))["Body"]
        with body:
            yield body

    def put(self, path: str, data: bytes | BinaryIO, size: int) -> None:
        key = self.key(path)
        with _errors(f"upload to s3://{self.bucket}/{key}"), _refused_bodies(f"upload to s3://{self.bucket}/{key}"):
            if size >= self.transfer.chunk_size and not isinstance(data, bytes):
                # The declared size lets s3transfer raise its part size for a stream it cannot measure
                # (an object-store source): at 10,000 parts of the chunk size a larger blob would fail.
                self._manager.upload(data, self.bucket, key, extra_args=dict(self._write_args),
                                     subscribers=[_DeclaredSize(size)]).result()
                return
            # Single part, so the listed ETag is the MD5 that later syncs compare against.
            if isinstance(data, bytes) or not data.seekable():
                body: bytes | BinaryIO = data if isinstance(data, bytes) else data.read()
                md5 = hashlib.md5(body).digest()  # type: ignore[arg-type]
                if self._lean is not None:
                    self._lean.put(key, body, {**self._lean_headers,  # type: ignore[arg-type]
                                               "Content-MD5": base64.b64encode(md5).decode()})
                    return
            else:
                md5 = _md5_of_stream(data)
                body = data
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body,
                                   ContentMD5=base64.b64encode(md5).decode(), **self._write_args)

    def create_exclusive(self, path: str, data: bytes) -> bool:
        key = self.key(path)
        try:
            with _errors(f"create s3://{self.bucket}/{key}"):
                try:
                    self.client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*",
                                           ContentMD5=base64.b64encode(hashlib.md5(data).digest()).decode(),
                                           **self._write_args)
                except botocore.exceptions.ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") == "ConditionalRequestConflict":
                        return False  # another conditional write of this key is in flight
                    raise
        except ConditionFailed:
            return False
        return True

    def _delete(self, path: str, if_match: str | None) -> None:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key(path)}
        if if_match:
            args["IfMatch"] = f'"{if_match}"'
        try:
            with _errors(f"delete s3://{self.bucket}/{args['Key']}"):
                self.client.delete_object(**args)
        except ObjectMissing:  # a conditional delete of a key gone meanwhile
            return

    def delete_many(self, paths: list[str]) -> list[tuple[str, str]]:
        """One DeleteObjects request per 1,000 exact keys."""
        failed: list[tuple[str, str]] = []
        for start in range(0, len(paths), 1000):
            chunk = paths[start:start + 1000]
            with _errors(f"delete in s3://{self.bucket}/{self.prefix}"):
                result = self.client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": self.key(path)} for path in chunk], "Quiet": True})
            root = len(self.prefix)
            failed += [(error["Key"][root:], f"{error.get('Code')}: {error.get('Message')}")
                       for error in result.get("Errors", ())]
        return failed

    def deleted_after(self, path: str, since: float) -> bool | None:
        """From the key's versions: its latest version is a delete marker written at or after
        ``since``. None when the bucket has never had versioning (deletes leave no trace)."""
        if self._tracks_deletes is None:
            with _errors(f"bucket {self.bucket!r} versioning"):
                status = self.client.get_bucket_versioning(Bucket=self.bucket).get("Status")
            self._tracks_deletes = status in ("Enabled", "Suspended")  # suspended still writes markers
        if not self._tracks_deletes:
            return None
        key = self.key(path)
        with _errors(f"versions of s3://{self.bucket}/{key}"):
            for page in self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=key):
                for marker in page.get("DeleteMarkers", ()):
                    if marker["Key"] == key and marker.get("IsLatest"):
                        return bool(marker["LastModified"].timestamp() >= since)
        return False

    def close(self) -> None:
        self._manager.shutdown()
        self.client.close()


class _DeclaredSize(BaseSubscriber):  # type: ignore[misc]
    """Tells s3transfer the size of what it uploads, as the AWS CLI does for streams."""

    def __init__(self, size: int) -> None:
        self._size = size

    def on_queued(self, future: Any, **_: Any) -> None:
        future.meta.provide_transfer_size(self._size)


def _part_md5(params: dict[str, Any], **_: Any) -> None:
    """before-call hook: the Content-MD5 of an UploadPart's body (s3transfer sends none by itself)."""
    body = params.get("body")
    if body is None or "Content-MD5" in params["headers"]:
        return
    digest = hashlib.md5(body).digest() if isinstance(body, (bytes, bytearray)) else _md5_of_stream(body)
    params["headers"]["Content-MD5"] = base64.b64encode(digest).decode()


@contextmanager
def _refused_bodies(what: str) -> Iterator[None]:
    """A body the service refused as not matching its checksum: corrupted in transit, safe to send again."""
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _CORRUPTED:
            raise ChecksumMismatch(f"{what}: the service refused the body as corrupted in transit ({code})") from None
        raise


def _redact_refreshes(credentials: RefreshableCredentials) -> None:
    """Credentials that refresh themselves (assumed roles, instance profiles, credential_process)
    bring new keys and tokens: each new set is registered for redaction as the first one was."""
    frozen = credentials.get_frozen_credentials
    seen: list[Any] = [None]

    def get_frozen_credentials() -> Any:
        current = frozen()
        if current is not seen[0]:
            for secret in (current.access_key, current.secret_key, current.token):
                redact.add_secret(secret)
            seen[0] = current
        return current

    credentials.get_frozen_credentials = get_frozen_credentials  # type: ignore[method-assign]
def _time(value: Any) -> float | None:
    """A timestamp botocore parsed (a datetime with its zone) as POSIX seconds."""
    return value.timestamp() if value is not None else None


def _listed_time(text: str | None) -> float | None:
    """LastModified as a listing page gives it (ISO 8601, ``Z`` or an offset)."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None  # a service's odd format: the entry then counts as written before any cut-over


def _header_time(text: str | None) -> float | None:
    """Last-Modified as a HEAD answers it (an HTTP date)."""
    if not text:
        return None
    try:
        return email.utils.parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError):
        return None


def _md5_of_stream(stream: BinaryIO) -> bytes:
    """MD5 of a seekable stream in constant memory, rewound for the upload that follows."""
    start = stream.tell()
    digest = hashlib.md5()
    while chunk := stream.read(1024 * 1024):
        digest.update(chunk)
    stream.seek(start)
    return digest.digest()


def _make_client(options: S3Options, transfer: TransferSettings) -> tuple[Any, Any, RateLimiter | None]:
    """The boto3 client, the credential chain it signs with, and the shared rate limiter."""
    models = _sharing_models()
    try:
        session = boto3.session.Session(
            botocore_session=models,
            aws_access_key_id=options.access_key,
            aws_secret_access_key=options.secret_key,
            region_name=options.region,
            profile_name=options.profile,
        )
        models.get_scoped_config()  # where a session with its own loader finds a missing profile
    except botocore.exceptions.ProfileNotFound as exc:
        raise BadInput(f"{exc}: name a profile of ~/.aws/config or ~/.aws/credentials") from None
    credentials = session.get_credentials()
    if credentials is not None:
        frozen = credentials.get_frozen_credentials()
        for secret in (frozen.access_key, frozen.secret_key, frozen.token):
            redact.add_secret(secret)
    config = Config(
        client_cert=_client_cert(),
        max_pool_connections=transfer.workers + 16,
        retries={"mode": "standard", "max_attempts": transfer.max_attempts},
        s3={"addressing_style": "path" if options.path_style else "auto"},
        # Default CRC trailers break many S3-compatible servers; MD5 (Content-MD5) is what we check.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=10,
        read_timeout=60,
    )
    try:
        client = session.client("s3", endpoint_url=options.endpoint_url, config=config)
    except ValueError as exc:
        raise BadInput(f"invalid S3 endpoint {options.endpoint_url!r}: {exc}") from exc
    # botocore retries every TLS error as a connection error; one that cannot heal stops the call at once.
    client.meta.events.register_first("needs-retry.s3", _stop_on_tls_failure)
    limiter = RateLimiter(transfer.max_requests_per_second) if transfer.max_requests_per_second > 0 else None
    if limiter is not None:
        client.meta.events.register("before-send.s3", lambda **_: limiter.acquire())
    return client, credentials, limiter


class _SharedModelsLoader(botocore.loaders.Loader):
    """A loader whose cache is the process's (:data:`_MODELS`). One per session all the same:
    boto3 appends its own search path to the loader of each session it makes."""

    def __init__(self) -> None:
        super().__init__()
        self._cache = _MODELS


def _sharing_models() -> botocore.session.Session:
    """A botocore session that reads service models through the process's cache."""
    session = botocore.session.Session()
    session.register_component("data_loader", _SharedModelsLoader())
    return session


def _read_models() -> None:
    """Reads what an S3 client needs into the process's cache, by making one that is never used.
    Done on import: every process that imports this backend makes a client, and the workers the
    fork server (migrate.runners) forks after importing it start with the models in memory."""
    _sharing_models().create_client("s3", region_name="us-east-1", aws_access_key_id="unused",
                                    aws_secret_access_key="unused")


def _client_cert() -> str | tuple[str, str] | None:
    """The TLS client certificate (mutual TLS) from the variables the registry's s3 driver reads
    (aws-sdk-go); botocore itself reads none from the environment or config files."""
    cert, key = os.environ.get("AWS_SDK_GO_CLIENT_TLS_CERT"), os.environ.get("AWS_SDK_GO_CLIENT_TLS_KEY")
    if bool(cert) != bool(key):
        raise BadInput("AWS_SDK_GO_CLIENT_TLS_CERT and AWS_SDK_GO_CLIENT_TLS_KEY go together: set both or neither")
    return (cert, key) if cert and key else None


def _stop_on_tls_failure(caught_exception: Exception | None = None, **_: Any) -> None:
    """A needs-retry handler run first: raising ends the call with the TLS error itself, before
    the standard retry handler schedules another attempt that would fail the same way."""
    if caught_exception is not None and tls_failure(caught_exception):
        raise caught_exception


_ACCESS_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "Forbidden"}
_MISSING_KEY_CODES = {"NoSuchKey", "404", "NotFound"}
_REGION_CODES = {"PermanentRedirect", "301", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"}


@contextmanager
def _errors(what: str, missing: type[RegmigError] = ObjectMissing) -> Iterator[None]:
    """Turn SDK exceptions into one-line regmig errors, with secrets redacted."""
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code == "NoSuchBucket":
            raise BadInput(f"{what}: the bucket does not exist") from None
        if code in _ACCESS_CODES:
            raise BadInput(f"{what}: access denied ({code}); check the credentials and the bucket policy") from None
        bucket_region = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
        # A HEAD signed for the wrong region gets a bare 400 with the bucket's region (botocore's rule too).
        if code in _REGION_CODES or (code == "400" and bucket_region):
            region = bucket_region or error.get("Region")
            hint = f"; use --region {region}" if region else "; set --region to the bucket's region"
            raise BadInput(f"{what}: the bucket is in another region{hint}") from None
        if code in ("PreconditionFailed", "412"):
            raise ConditionFailed(f"{what}: changed since it was checked") from None
        if code in _MISSING_KEY_CODES:
            raise missing(f"{what}: does not exist") from None
        detail = f"{code}: {error['Message']}" if code and error.get("Message") else code or str(exc)
        raise StorageError(redact.redact(f"{what}: {detail}")) from None
    except botocore.parsers.ResponseParserError as exc:
        raise StorageError(redact.redact(f"{what}: the answer is not S3's: {exc}")) from None
    except botocore.exceptions.NoCredentialsError:
        raise BadInput("no AWS credentials found (environment, shared config, or instance role)") from None
    except botocore.exceptions.EndpointConnectionError as exc:
        raise BadInput(redact.redact(f"{what}: cannot connect to the endpoint: {exc}")) from None
    except (botocore.exceptions.BotoCoreError, ValueError) as exc:
        problem = tls_failure(exc)  # configuration, not the network: bad input
        if problem:
            raise BadInput(redact.redact(problem)) from None
        raise StorageError(redact.redact(f"{what}: {exc}")) from None


_read_models()
