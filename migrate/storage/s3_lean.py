"""A lean call path for the two S3 calls a registry copy makes millions of times: single-part
PUTs of small objects, and ListObjectsV2 pages.

Built from botocore's own pieces (bench/ and docs/performance.md show why): the client's
endpoint resolution (through a presigned URL, so virtual-host, path-style, FIPS and custom
endpoints come out exactly as botocore builds them), its credential chain, its SigV4 signer,
its error parser and its standard-mode retry conditions and backoff. What it leaves out is the
per-call machinery (parameter validation, serialisation, event hooks, and above all response
parsing with timestamp conversion, which cost more CPU than the request itself).
"""

from __future__ import annotations

import http.client
import os
import ssl
import threading
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

import botocore.exceptions
from botocore.auth import S3SigV4Auth, _host_from_url
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.httpsession import get_cert_path
from botocore.parsers import RestXMLParser
from botocore.retries.standard import (
    ExponentialBackoff,
    MaxAttemptsChecker,
    OrRetryChecker,
    RetryContext,
    ThrottledRetryableChecker,
    ThrottlingStatusCodeChecker,
    TransientRetryableChecker,
)

_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class LeanS3:
    """Signed HTTP calls for one bucket, one persistent connection per thread."""

    def __init__(self, client: Any, credentials: Any, bucket: str, max_attempts: int,
                 before_send: Callable[[], None] | None) -> None:
        self._credentials = credentials  # the session's credential chain (refreshes itself)
        self._region = client.meta.region_name or "us-east-1"
        object_url = client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "k"}).split("?")[0]
        self._object_base = object_url[: -len("k")]
        self._bucket_url = client.generate_presigned_url("list_objects_v2", Params={"Bucket": bucket}).split("?")[0]
        # The Host header as botocore's signer would derive it, computed once instead of per request.
        self._host_header = _host_from_url(self._object_base)
        parts = urlsplit(self._object_base)
        self._scheme, self._host, self._port = parts.scheme, parts.hostname or "", parts.port
        self._timeout = client.meta.config.read_timeout
        self._ssl = ssl.create_default_context(cafile=_ca_bundle(client)) if self._scheme == "https" else None
        self._local = threading.local()
        self._retry = OrRetryChecker([TransientRetryableChecker(), ThrottledRetryableChecker(),
                                      ThrottlingStatusCodeChecker()])
        self._attempts = MaxAttemptsChecker(max_attempts)
        self._backoff = ExponentialBackoff()
        self._before_send = before_send
        self._parser = RestXMLParser()

    def put(self, key: str, body: bytes, headers: dict[str, str]) -> None:
        self._call("PUT", self._object_base + quote(key, safe="/~"), body, headers, "PutObject")

    def list(self, prefix: str) -> Iterator[tuple[str, int, str | None]]:
        """(key, size, etag) for every key under ``prefix``, in the service's (byte) order."""
        token: str | None = None
        while True:
            query = {"list-type": "2", "prefix": prefix, "encoding-type": "url"}
            if token:
                query["continuation-token"] = token
            body = self._call("GET", f"{self._bucket_url}?{urlencode(query, quote_via=quote)}", b"", {},
                              "ListObjectsV2")
            root = ElementTree.fromstring(body)
            for item in root.iter(f"{_S3_NS}Contents"):
                etag = item.findtext(f"{_S3_NS}ETag")
                yield unquote(item.findtext(f"{_S3_NS}Key") or ""), int(item.findtext(f"{_S3_NS}Size") or 0), etag
            token = root.findtext(f"{_S3_NS}NextContinuationToken")
            if root.findtext(f"{_S3_NS}IsTruncated") != "true" or not token:
                return

    def _call(self, method: str, url: str, body: bytes, headers: dict[str, str], operation: str) -> bytes:
        attempt = 0
        while True:
            attempt += 1
            status, response_headers, payload, error = self._send(method, url, body, headers)
            if error is None and status < 300:
                return payload
            parsed = self._parse_error(status, response_headers, payload) if error is None else None
            context = RetryContext(
                attempt_number=attempt, parsed_response=parsed, caught_exception=error,
                http_response=AWSResponse(url, status, HTTPHeaders(response_headers), None) if error is None else None)
            if not (self._attempts.is_retryable(context) and self._retry.is_retryable(context)):
                if error is not None:
                    raise error
                raise botocore.exceptions.ClientError(parsed, operation)  # type: ignore[arg-type]
            time.sleep(self._backoff.delay_amount(context))

    def _send(self, method: str, url: str, body: bytes,
              headers: dict[str, str]) -> tuple[int, dict[str, str], bytes, Exception | None]:
        signed = self.signed_headers(method, url, body, headers)
        path = url[url.index("/", len(self._scheme) + 3):]
        connection = self._connection()
        if self._before_send:
            self._before_send()  # the rate slot, taken as late as possible: right before the bytes go out
        try:
            connection.request(method, path, body=body or None, headers=signed)
            response = connection.getresponse()
            payload = response.read()
            # Headers matter only to the error parser and the retry checks.
            return response.status, dict(response.getheaders()) if response.status >= 300 else {}, payload, None
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            return 0, {}, b"", botocore.exceptions.ConnectionClosedError(endpoint_url=url, error=exc)

    def signed_headers(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
        """The request's headers with botocore's SigV4 signature added (fresh credentials each time)."""
        request = _SignableRequest(method, url, body, {"Host": self._host_header, **headers})
        S3SigV4Auth(self._credentials.get_frozen_credentials(), "s3", self._region).add_auth(request)
        return dict(request.headers.items())

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            if self._ssl is not None:
                connection = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout,
                                                         context=self._ssl)
            else:
                connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._local.connection = connection
        return connection

    def _parse_error(self, status: int, headers: dict[str, str], payload: bytes) -> dict[str, Any]:
        parsed = self._parser.parse({"status_code": status, "headers": HTTPHeaders(headers), "body": payload}, None)
        parsed.setdefault("Error", {}).setdefault("Code", str(status))
        return parsed


class _Headers:
    """The part of botocore's HTTPHeaders its signer uses (case-insensitive get, set, delete, items),
    kept in a plain dict: the email.message machinery behind HTTPHeaders cost a third of the signing."""

    def __init__(self, headers: dict[str, str]) -> None:
        self._map = {name.lower(): (name, value) for name, value in headers.items()}

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._map

    def __getitem__(self, name: str) -> str | None:
        item = self._map.get(name.lower())
        return None if item is None else item[1]

    def __setitem__(self, name: str, value: str) -> None:
        self._map[name.lower()] = (name, value)

    def __delitem__(self, name: str) -> None:
        self._map.pop(name.lower(), None)

    def get(self, name: str, default: str | None = None) -> str | None:
        item = self._map.get(name.lower())
        return default if item is None else item[1]

    def items(self) -> list[tuple[str, str]]:
        return list(self._map.values())


class _SignableRequest:
    """What botocore's SigV4 signer reads and writes on a request, without AWSRequest's per-access
    re-preparation of the body (its ``body`` property builds a prepared request each time)."""

    def __init__(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> None:
        self.method = method
        self.url = url
        self.body = self.data = body
        self.headers = _Headers(headers)
        self.params: dict[str, str] = {}
        self.context: dict[str, Any] = {}


def lean_path_usable() -> bool:
    """Proxies (HTTP(S)_PROXY) are botocore's business: the lean path only talks directly.
    ``REGMIG_S3_LEAN=0`` turns it off (the benchmark's comparison row)."""
    if os.environ.get("REGMIG_S3_LEAN", "1") == "0":
        return False
    return not any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"))


def _ca_bundle(client: Any) -> str | None:
    verify = getattr(client.meta.config, "verify", None)
    if isinstance(verify, str):
        return verify
    return os.environ.get("AWS_CA_BUNDLE") or get_cert_path(True) or None

