"""A lean call path for the S3 calls a registry copy makes millions of times: single-part PUTs of
small objects and ListObjectsV2 pages (and the HEADs that look again at what a pass wrote).

Built from botocore's own pieces (bench/ and docs/performance.md show why): the client's
endpoint resolution (through a presigned URL, so virtual-host, path-style, FIPS and custom
endpoints come out exactly as botocore builds them), its credential chain, its SigV4 signer,
its error parser and its standard-mode retry conditions and backoff. What it leaves out is the
per-call machinery (parameter validation, serialisation, event hooks, and above all response
parsing with timestamp conversion, which cost more CPU than the request itself).

Its transport takes every setting from the HTTP session botocore built for the same client
(the CA bundle it resolved from the client's ``verify``, ``ca_bundle`` / ``AWS_CA_BUNDLE`` or
``REQUESTS_CA_BUNDLE``; the client certificate; connect and read timeouts), so both paths trust,
present and wait for the same things. Where botocore would send through a proxy the lean path
steps aside and the full client carries every call.
"""

from __future__ import annotations

import http.client
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, unquote_plus, urlencode, urlsplit

import botocore.exceptions
from botocore.auth import S3SigV4Auth, _host_from_url
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.httpsession import URLLib3Session, create_urllib3_context, get_cert_path
from botocore.parsers import ResponseParserError, RestXMLParser
from botocore.retries.standard import (
    ExponentialBackoff,
    MaxAttemptsChecker,
    OrRetryChecker,
    RetryContext,
    ThrottledRetryableChecker,
    ThrottlingStatusCodeChecker,
    TransientRetryableChecker,
)
from urllib3.util.ssl_match_hostname import CertificateError

from migrate.errors import BadInput, StorageError
from migrate.storage.s3_listing import Page, parse_page

_NO_HEADERS = HTTPHeaders()  # for answers whose headers nothing reads (only read, never written)


def decode_key(encoded: str) -> str:
    """A key from a listing with encoding-type=url, as botocore decodes it (``unquote_plus``: AWS
    encodes a space as "+"). Registry keys hold no escape but their slashes (which RGW encodes), and
    ``unquote_plus`` was half of a page's parsing time: those take the replace alone."""
    plain = encoded.replace("%2F", "/")
    if "%" in plain or "+" in plain:
        return unquote_plus(encoded)
    return plain


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
        self._bucket = bucket
        config = client.meta.config
        self._connect_timeout, self._read_timeout = config.connect_timeout, config.read_timeout
        session = _http_session(client)
        if session is None:
            raise ValueError("the client's HTTP session is not botocore's own: use the full client")
        self._ssl = _tls_context(session._verify, config.client_cert) if self._scheme == "https" else None
        self._local = threading.local()
        self._retry = OrRetryChecker([TransientRetryableChecker(), ThrottledRetryableChecker(),
                                      ThrottlingStatusCodeChecker()])
        self._attempts = MaxAttemptsChecker(max_attempts)
        self._backoff = ExponentialBackoff()
        self._before_send = before_send
        self._parser = RestXMLParser()

    def put(self, key: str, body: bytes, headers: dict[str, str]) -> None:
        self._call("PUT", self._object_base + quote(key, safe="/~"), body, headers, "PutObject")

    def head(self, key: str) -> tuple[int, str | None, str | None]:
        """(size, ETag, Last-Modified) of one object; a missing one raises botocore's ClientError (404)."""
        _, headers = self._call("HEAD", self._object_base + quote(key, safe="/~"), b"", {}, "HeadObject")
        length = headers.get("Content-Length")
        if length is None or not length.isdigit():  # never taken for empty: a marker check relies on the size
            raise ResponseParserError(f"a HEAD answered without a Content-Length ({length!r})")
        return int(length), headers.get("ETag"), headers.get("Last-Modified")

    def list(self, prefix: str, start_after: str | None = None) -> Iterator[tuple[str, int, str | None, str | None]]:
        """(key, size, etag, last modified as listed) for every key under ``prefix`` (and after
        ``start_after``), in the service's (byte) order; pages are asked for only as the caller reads on."""
        token: str | None = None
        pages = 0
        while True:
            page = self._page(prefix, token, start_after=start_after)
            pages += 1
            decode = decode_key if page.url_encoded else str
            for key, size, etag, modified in page.rows:
                yield decode(key), size, etag, modified
            if not page.truncated:
                return
            following = page.next_token
            if not following or following == token:
                # Ending here would pass a partial listing off as the whole (and feed deletes).
                problem = "no continuation token" if not following else "the same continuation token again"
                raise StorageError(f"listing s3://{self._bucket}/{prefix}: page {pages} is marked truncated "
                                   f"but carries {problem}: the listing cannot be completed")
            token = following

    def probe(self, prefix: str) -> None:
        """One listing page of one key through this path: its TLS settings, signing region and
        answers are checked before anything is written."""
        self._page(prefix, None, max_keys=1)

    def _page(self, prefix: str, token: str | None, max_keys: int | None = None,
              start_after: str | None = None) -> Page:
        """One ListObjectsV2 page, checked to be one."""
        query = {"list-type": "2", "prefix": prefix, "encoding-type": "url"}
        if token:
            query["continuation-token"] = token
        elif start_after:
            query["start-after"] = start_after  # the token carries the position after the first page
        if max_keys is not None:
            query["max-keys"] = str(max_keys)
        body, _ = self._call("GET", f"{self._bucket_url}?{urlencode(query, quote_via=quote)}", b"", {}, "ListObjectsV2")
        return parse_page(body)

    def _call(self, method: str, url: str, body: bytes, headers: dict[str, str],
              operation: str) -> tuple[bytes, HTTPHeaders]:
        """The answer's payload and (for a HEAD, or an error) its headers, after botocore's retries."""
        attempt = 0
        while True:
            attempt += 1
            status, response_headers, payload, error = self._send(method, url, body, headers)
            if error is None and status < 300:
                return payload, response_headers
            if error is not None and tls_failure(error):
                raise error  # the same on every attempt: retrying only hides it
            parsed = self._parse_error(status, response_headers, payload) if error is None else None
            context = RetryContext(
                attempt_number=attempt, parsed_response=parsed, caught_exception=error,
                http_response=AWSResponse(url, status, response_headers, None) if error is None else None)
            if not (self._attempts.is_retryable(context) and self._retry.is_retryable(context)):
                if error is not None:
                    raise error
                raise botocore.exceptions.ClientError(parsed, operation)  # type: ignore[arg-type]
            time.sleep(self._backoff.delay_amount(context))

    def _send(self, method: str, url: str, body: bytes,
              headers: dict[str, str]) -> tuple[int, HTTPHeaders, bytes, Exception | None]:
        """One attempt; a transport failure comes back as the exception botocore raises for it."""
        signed = self.signed_headers(method, url, body, headers)
        path = url[url.index("/", len(self._scheme) + 3):]
        connection = self._connection()
        if self._before_send:
            self._before_send()  # the rate slot, taken as late as possible: right before the bytes go out
        if connection.sock is None:
            error = self._connect(connection, url)
            if error is not None:
                return 0, _NO_HEADERS, b"", error
        try:
            connection.request(method, path, body=body or None, headers=signed)
            response = connection.getresponse()
            payload = response.read()
        except ssl.SSLError as exc:
            connection.close()
            return 0, _NO_HEADERS, b"", botocore.exceptions.SSLError(endpoint_url=url, error=exc)
        except TimeoutError as exc:
            connection.close()
            return 0, _NO_HEADERS, b"", botocore.exceptions.ReadTimeoutError(endpoint_url=url, error=exc)
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            return 0, _NO_HEADERS, b"", botocore.exceptions.ConnectionClosedError(endpoint_url=url, error=exc)
        # Headers matter only to a HEAD, the error parser and the retry checks.
        wanted = response.status >= 300 or method == "HEAD"
        response_headers = HTTPHeaders.from_pairs(response.getheaders()) if wanted else _NO_HEADERS
        return response.status, response_headers, payload, None

    def _connect(self, connection: http.client.HTTPConnection, url: str) -> Exception | None:
        """TCP and TLS within the connect timeout, then the read timeout for the rest (botocore's split)."""
        try:
            connection.connect()
            connection.sock.settimeout(self._read_timeout)
        except ssl.SSLError as exc:
            error: Exception = botocore.exceptions.SSLError(endpoint_url=url, error=exc)
        except TimeoutError as exc:
            error = botocore.exceptions.ConnectTimeoutError(endpoint_url=url, error=exc)
        except OSError as exc:
            error = botocore.exceptions.EndpointConnectionError(endpoint_url=url, error=exc)
        else:
            return None
        connection.close()
        return error

    def signed_headers(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
        """The request's headers with botocore's SigV4 signature added (fresh credentials each time)."""
        request = _SignableRequest(method, url, body, {"Host": self._host_header, **headers})
        S3SigV4Auth(self._credentials.get_frozen_credentials(), "s3", self._region).add_auth(request)
        return dict(request.headers.items())

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            if self._ssl is not None:
                connection = http.client.HTTPSConnection(self._host, self._port, timeout=self._connect_timeout,
                                                         context=self._ssl)
            else:
                connection = http.client.HTTPConnection(self._host, self._port, timeout=self._connect_timeout)
            self._local.connection = connection
        return connection

    def _parse_error(self, status: int, headers: HTTPHeaders, payload: bytes) -> dict[str, Any]:
        parsed = self._parser.parse({"status_code": status, "headers": headers, "body": payload}, None)
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


def lean_path_usable(client: Any) -> bool:
    """Whether the lean path can carry this client's hot calls: not where botocore would send
    through a proxy (from the client's ``proxies`` config, else HTTP(S)_PROXY less NO_PROXY: its
    proxy handling stays its own), nor where its HTTP session is not botocore's usual one.
    ``REGMIG_S3_LEAN=0`` turns it off (the benchmark's comparison row)."""
    if os.environ.get("REGMIG_S3_LEAN", "1") == "0":
        return False
    session = _http_session(client)
    return session is not None and not session._proxy_config.proxy_url_for(client.meta.endpoint_url)


def _http_session(client: Any) -> URLLib3Session | None:
    """The HTTP session botocore built for ``client``: the one place that keeps the ``verify``
    it resolved and the proxies it chose. None when it is not the one we know how to read."""
    session = getattr(getattr(client, "_endpoint", None), "http_session", None)
    if type(session) is not URLLib3Session or not hasattr(session, "_verify") or \
            not hasattr(getattr(session, "_proxy_config", None), "proxy_url_for"):
        return None
    return session


def _tls_context(verify: bool | str, client_cert: str | tuple[str, str] | None) -> ssl.SSLContext:
    """The context botocore's urllib3 session would use: its options, the same CA bundle
    (certifi's when ``verify`` is True), host names checked, the client certificate presented."""
    if not verify:
        return create_urllib3_context(cert_reqs=ssl.CERT_NONE)
    context = create_urllib3_context()
    context.check_hostname = True
    bundle = get_cert_path(verify)
    try:
        context.load_verify_locations(cafile=bundle)
    except (OSError, ssl.SSLError) as exc:
        raise BadInput(f"the CA bundle {bundle} cannot be used: {exc}") from None
    if client_cert:
        cert, key = client_cert if isinstance(client_cert, tuple) else (client_cert, None)
        try:
            context.load_cert_chain(cert, keyfile=key)
        except (OSError, ssl.SSLError) as exc:
            raise BadInput(f"the TLS client certificate {cert} cannot be used: {exc}") from None
    return context


# OpenSSL's reasons for a server that answered a TLS hello in plain HTTP (by OpenSSL version).
_PLAIN_HTTP = {"WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE", "UNKNOWN_PROTOCOL",
               "HTTP_REQUEST"}
# Alerts from a server that wants a client certificate it trusts.
_CLIENT_CERT_REFUSED = {"TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_BAD_CERTIFICATE", "TLSV1_ALERT_UNKNOWN_CA",
                        "SSLV3_ALERT_CERTIFICATE_UNKNOWN", "SSLV3_ALERT_CERTIFICATE_EXPIRED",
                        "SSLV3_ALERT_CERTIFICATE_REVOKED", "TLSV1_ALERT_ACCESS_DENIED"}
_UNTRUSTED_ISSUER = {18, 19, 20, 21}  # X509_V_ERR_*: self-signed, self-signed in chain, unknown issuer


def tls_failure(exc: BaseException) -> str | None:
    """The one-line reason a TLS connection can never succeed as configured (a certificate not
    trusted or not for this host, a plain-HTTP port, a client certificate refused), or None for
    a failure a retry may cure. botocore retries every TLS error as a connection error."""
    cause = _ssl_cause(exc)
    if cause is None:
        return None
    endpoint = _origin(getattr(exc, "kwargs", {}).get("endpoint_url", ""))
    if isinstance(cause, CertificateError):  # urllib3 matches host names itself
        return f"TLS certificate verification failed for {endpoint}: {cause}"
    if isinstance(cause, ssl.SSLCertVerificationError):
        hint = ("; give the CA that signed it as ca_bundle in the AWS config file or AWS_CA_BUNDLE"
                if cause.verify_code in _UNTRUSTED_ISSUER else "")
        return f"TLS certificate verification failed for {endpoint}: {cause.verify_message}{hint}"
    if cause.reason in _PLAIN_HTTP:
        return f"{endpoint} does not speak TLS (a plain-HTTP port?): use http:// or the service's HTTPS port"
    if cause.reason in _CLIENT_CERT_REFUSED:
        return (f"{endpoint} refused the TLS handshake ({cause.reason.lower()}): it wants a client certificate it "
                f"trusts (AWS_SDK_GO_CLIENT_TLS_CERT and AWS_SDK_GO_CLIENT_TLS_KEY)")
    return None


def _ssl_cause(exc: BaseException) -> ssl.SSLError | CertificateError | None:
    """The TLS error under botocore's and urllib3's wrappers, if there is one."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None or isinstance(seen, (ssl.SSLError, CertificateError)):
            return seen
        inner = getattr(seen, "kwargs", {}).get("error") if isinstance(seen, botocore.exceptions.BotoCoreError) \
            else None
        if inner is None and seen.args and isinstance(seen.args[0], BaseException):
            inner = seen.args[0]
        seen = inner or seen.__cause__ or seen.__context__
    return None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else url
