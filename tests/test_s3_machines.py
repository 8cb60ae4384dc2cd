"""Machines regmig does not control: a TLS endpoint with its own CA (and one that wants a client
certificate), a bucket in another region, listings encoded the way AWS encodes them (or not at
all), a page cut short by something in between, an HTTPS endpoint on a plain-HTTP port.

The S3 server is a real one (the ``s3_endpoint`` fixture); the fault proxy in front of it
terminates TLS with a throwaway CA, or answers and rewrites what AWS would and the local servers
do not emulate. Both of regmig's S3 paths are exercised: the lean one (listings and small PUTs)
and the full boto3 client (``REGMIG_S3_LEAN=0``).
"""

from __future__ import annotations

import html
import re
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote_plus, unquote_plus

import boto3
import botocore.exceptions

import pytest
from botocore.config import Config

from cli_runner import regmig
from conftest import list_keys, local_files
from faultproxy import Canned, Faults, FaultProxy, bodies
from migrate import tree
from migrate.errors import BadInput
from migrate.storage import LocationOptions, Storage, open_location
from migrate.storage.options import S3Options
from migrate.storage.s3_lean import LeanS3, lean_path_usable
from tlscerts import Certs, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("ca"))


def server_tls(certs: Certs, *, client_ca: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.server_cert, certs.server_key)
    if client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(certs.ca)
    return context


@pytest.fixture
def aws_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An AWS config file of this test's own (the session's points at /dev/null)."""
    path = tmp_path / "aws-config"
    path.write_text("[default]\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(path))
    yield path


def trust(aws_config: Path, ca: Path) -> None:
    aws_config.write_text(f"[default]\nca_bundle = {ca}\n")


def expected(registry_root: str, prefix: str) -> dict[str, bytes]:
    return {prefix + p: d for p, d in local_files(registry_root).items() if not tree.is_excluded(p)}


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@contextmanager
def storage(url: str, endpoint: str) -> Iterator[Storage]:
    opened = open_location(url, LocationOptions(s3=S3Options(endpoint_url=endpoint)))
    try:
        yield opened
    finally:
        opened.close()


# --- 6. a CA of one's own, a client certificate, timeouts, proxies ---------------------------------

def test_ca_bundle_in_the_aws_config_file_serves_the_lean_path_and_boto3(registry, s3, bucket, s3_endpoint,  # type: ignore[no-untyped-def]
                                                                         certs, aws_config, monkeypatch) -> None:
    trust(aws_config, certs.ca)
    url = f"s3://{bucket}/r"
    faults = Faults()
    with FaultProxy(s3_endpoint, faults, tls=server_tls(certs)) as proxy:
        assert proxy.url.startswith("https://")
        synced = regmig("sync", registry.root, url, "--endpoint-url", proxy.url)
        assert synced.exit_code == 0, synced.stderr
        monkeypatch.setenv("REGMIG_S3_LEAN", "0")  # every call through boto3
        verified = regmig("verify", registry.root, url, "--endpoint-url", proxy.url, "--deep")
        assert verified.exit_code == 0, verified.stderr
    assert list_keys(s3, bucket) == expected(registry.root, "r/")  # the TLS proxy is the only way in
    assert not faults.handshake_failures


@pytest.mark.parametrize("case", ["ca missing", "host mismatch"])
def test_an_untrusted_certificate_is_one_line_at_once(registry, s3, bucket, s3_endpoint, certs, aws_config,  # type: ignore[no-untyped-def]
                                                       tmp_path, case) -> None:
    if case == "host mismatch":  # a trusted CA, its certificate for another name
        other = make_certs(tmp_path / "other", server_names=("storage.example.internal",))
        trust(aws_config, other.ca)
        context = server_tls(other)
    else:
        context = server_tls(certs)
    faults = Faults()
    with FaultProxy(s3_endpoint, faults, tls=context) as proxy:
        result = regmig("sync", registry.root, f"s3://{bucket}/r", "--endpoint-url", proxy.url)
    line = one_line(result.stderr)
    assert result.exit_code == 2
    assert line.startswith(f"regmig: error: TLS certificate verification failed for {proxy.url}: ")
    assert ("127.0.0.1" in line) if case == "host mismatch" else ("ca_bundle" in line and "AWS_CA_BUNDLE" in line)
    assert faults.connections == 1, "one attempt: a certificate does not get better by retrying"
    assert not faults.log and list_keys(s3, bucket) == {}


def test_the_lean_listing_reports_a_tls_failure_at_once(bucket, s3_endpoint, certs) -> None:  # type: ignore[no-untyped-def]
    faults = Faults()
    with FaultProxy(s3_endpoint, faults, tls=server_tls(certs)) as proxy:
        with storage(f"s3://{bucket}/r", proxy.url) as destination:
            assert destination._lean is not None  # type: ignore[attr-defined]
            with pytest.raises(BadInput, match="^TLS certificate verification failed for https://127.0.0.1:"):
                list(destination.walk())
    assert faults.connections == 1


def test_a_client_certificate_for_mutual_tls(registry, s3, bucket, s3_endpoint, certs, aws_config,  # type: ignore[no-untyped-def]
                                             monkeypatch) -> None:
    trust(aws_config, certs.ca)
    url = f"s3://{bucket}/r"
    refusing = Faults()
    with FaultProxy(s3_endpoint, refusing, tls=server_tls(certs, client_ca=True)) as proxy:
        refused = regmig("sync", registry.root, url, "--endpoint-url", proxy.url, "--retries", "1")
        # The proxy's thread records the failed handshake after the client has seen the alert.
        deadline = time.monotonic() + 5
        while not refusing.handshake_failures and time.monotonic() < deadline:
            time.sleep(0.05)
        assert refused.exit_code != 0 and not refusing.log and refusing.handshake_failures
    # A proxy of its own for the runs with the certificate: a refused connection's failure may be
    # recorded late (its thread outlives the client), and must not count against them.
    monkeypatch.setenv("AWS_SDK_GO_CLIENT_TLS_CERT", str(certs.client_cert))
    monkeypatch.setenv("AWS_SDK_GO_CLIENT_TLS_KEY", str(certs.client_key))
    faults = Faults()
    with FaultProxy(s3_endpoint, faults, tls=server_tls(certs, client_ca=True)) as proxy:
        synced = regmig("sync", registry.root, url, "--endpoint-url", proxy.url)
        assert synced.exit_code == 0, synced.stderr
        monkeypatch.setenv("REGMIG_S3_LEAN", "0")
        verified = regmig("verify", registry.root, url, "--endpoint-url", proxy.url)
        assert verified.exit_code == 0, verified.stderr
    assert not faults.handshake_failures
    assert list_keys(s3, bucket) == expected(registry.root, "r/")


def lean_client(endpoint: str, **config: object) -> LeanS3:
    client = boto3.client("s3", endpoint_url=endpoint, config=Config(**config))  # type: ignore[arg-type]
    return LeanS3(client, boto3.session.Session().get_credentials(), "any-bucket", 1, None)


def test_the_lean_path_waits_as_long_as_botocore_reads(bucket, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    faults = Faults(rule=lambda method, path: "stall" if method == "GET" else None)
    with FaultProxy(s3_endpoint, faults) as proxy:
        lean = lean_client(proxy.url, connect_timeout=30, read_timeout=0.5)
        with pytest.raises(botocore.exceptions.ReadTimeoutError):
            list(lean.list(""))


def test_the_lean_path_gives_up_connecting_when_botocore_would() -> None:
    with socket.socket() as silent:  # accepts TCP (the kernel does) and never answers the TLS hello
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        lean = lean_client(f"https://127.0.0.1:{silent.getsockname()[1]}", connect_timeout=0.3, read_timeout=5)
        with pytest.raises(botocore.exceptions.ConnectTimeoutError):
            list(lean.list(""))


@pytest.mark.parametrize(("environment", "proxies", "lean"), [
    ({"HTTP_PROXY": "http://127.0.0.1:9"}, None, False),            # botocore would send through it
    ({"HTTPS_PROXY": "http://127.0.0.1:9"}, None, True),            # for https only: this endpoint is http
    ({"HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1"}, None, True),  # the endpoint is exempt
    ({}, {"http": "http://127.0.0.1:9"}, False),                    # the client's own proxies setting
    ({"HTTP_PROXY": "http://127.0.0.1:9"}, {}, True),               # an explicit "no proxies" wins
])
def test_the_lean_path_steps_aside_exactly_where_botocore_uses_a_proxy(monkeypatch, environment, proxies,  # type: ignore[no-untyped-def]
                                                                        lean) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url="http://127.0.0.1:9000", config=Config(proxies=proxies))
    assert lean_path_usable(client) is lean


# --- 7. a bucket in another region ------------------------------------------------------------------

WRONG_SIGNING_REGION = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AuthorizationHeaderMalformed</Code>'
                        b"<Message>The authorization header is malformed; the region 'us-east-1' is wrong; expecting "
                        b"'eu-west-1'</Message><Region>eu-west-1</Region><RequestId>R1</RequestId></Error>")
PERMANENT_REDIRECT = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>PermanentRedirect</Code><Message>The '
                      b"bucket you are attempting to access must be addressed using the specified endpoint. Please "
                      b"send all future requests to this endpoint.</Message><Endpoint>s3.eu-west-1.amazonaws.com"
                      b"</Endpoint><RequestId>R2</RequestId></Error>")
XML = ("Content-Type", "application/xml")
BUCKET_REGION = ("x-amz-bucket-region", "eu-west-1")


def signed_for_the_wrong_region(method: str, path: str) -> Canned:
    """What AWS answers a request signed for us-east-1 to a bucket in eu-west-1: HEAD gets a bare
    400 with the bucket's region in a header, the rest AuthorizationHeaderMalformed naming it."""
    if method == "HEAD":
        return Canned(400, headers=(BUCKET_REGION,))
    return Canned(400, WRONG_SIGNING_REGION, (XML,))


def test_a_bucket_in_another_region_is_one_line_naming_it(registry, s3, bucket, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    faults = Faults(rule=signed_for_the_wrong_region)
    with FaultProxy(s3_endpoint, faults) as proxy:
        result = regmig("sync", registry.root, f"s3://{bucket}/r", "--endpoint-url", proxy.url)
    line = one_line(result.stderr)
    assert result.exit_code == 2
    assert "another region" in line and "--region eu-west-1" in line
    assert len(faults.log) <= 2, "botocore's one redirect at most, never a retry loop"
    assert not [entry for entry in faults.log if entry[1] == "PUT"]
    assert list_keys(s3, bucket) == {}


@pytest.mark.parametrize("answer", [
    Canned(301, PERMANENT_REDIRECT, (XML, BUCKET_REGION)),  # a regional endpoint that is not the bucket's
    Canned(400, WRONG_SIGNING_REGION, (XML,)),               # the region named in the body only
], ids=["301", "400"])
def test_the_lean_path_names_the_bucket_region_on_listing_and_put(bucket, s3_endpoint, answer) -> None:  # type: ignore[no-untyped-def]
    faults = Faults(rule=lambda method, path: answer)
    with FaultProxy(s3_endpoint, faults) as proxy:
        with storage(f"s3://{bucket}/r", proxy.url) as destination:
            assert destination._lean is not None  # type: ignore[attr-defined]
            with pytest.raises(BadInput, match="another region; use --region eu-west-1$"):
                list(destination.walk())
            with pytest.raises(BadInput, match="another region; use --region eu-west-1$"):
                destination.put("docker/registry/v2/repositories/a/_layers/sha256/x/link", b"sha256:x", 8)
    assert [entry[1] for entry in faults.log] == ["GET", "PUT"], "each asked once"


# --- 8. listing keys, as each service encodes them, and pages cut short ---------------------------

ODD_KEYS = ["a b/c d", "a+b", "100%", "100%25", "%20", "ü/ñ 𝄞", "sp  two", "q?x=1&y=#2", "+lead", "tilde~"]


def as_aws_encodes(method: str, path: str, body: bytes) -> bytes:
    """AWS's encoding-type=url form: a space is "+", a plus "%2B" (quote_plus)."""
    return re.sub(rb"<Key>(.*?)</Key>", lambda m: b"<Key>" + quote_plus(_key(m), safe="/").encode() + b"</Key>",
                  body) if b"<ListBucketResult" in body else body


def as_if_encoding_type_were_ignored(method: str, path: str, body: bytes) -> bytes:
    """A service that ignores encoding-type: plain keys (XML-escaped) and no EncodingType element."""
    if b"<ListBucketResult" not in body:
        return body
    body = re.sub(rb"<EncodingType>url</EncodingType>", b"", body)
    return re.sub(rb"<Key>(.*?)</Key>", lambda m: b"<Key>" + html.escape(_key(m), quote=False).encode() + b"</Key>",
                  body)


def _key(match: re.Match[bytes]) -> str:
    """The key as the server meant it (it was asked for encoding-type=url)."""
    return unquote_plus(html.unescape(match.group(1).decode()))


def test_listed_keys_are_decoded_as_botocore_decodes_them(s3, bucket, s3_endpoint, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for key in ODD_KEYS:
        s3.put_object(Bucket=bucket, Key="r/" + key, Body=key.encode())
    truth = sorted(key[2:] for key in list_keys(s3, bucket))  # botocore's own decoding
    assert truth == sorted(ODD_KEYS)
    for rewrite in (None, as_aws_encodes, as_if_encoding_type_were_ignored):
        with FaultProxy(s3_endpoint, Faults(response_filter=bodies(rewrite)) if rewrite else Faults()) as proxy:
            for lean in ("1", "0"):
                monkeypatch.setenv("REGMIG_S3_LEAN", lean)
                with storage(f"s3://{bucket}/r", proxy.url) as source:
                    listed = sorted(entry.path for entry in source.walk())
                assert listed == truth, (rewrite, lean)


def truncated_without_a_token(method: str, path: str, body: bytes) -> bytes:
    """A listing page that says more follows and gives no way to ask for it (a broken proxy, a bug)."""
    body = body.replace(b"<IsTruncated>false</IsTruncated>", b"<IsTruncated>true</IsTruncated>")
    return re.sub(rb"<NextContinuationToken>.*?</NextContinuationToken>", b"", body)


@pytest.mark.parametrize("lean", ["1", "0"])
def test_a_page_marked_truncated_without_a_token_stops_the_run(registry, s3, bucket, s3_endpoint, monkeypatch,  # type: ignore[no-untyped-def]
                                                               lean) -> None:
    url = f"s3://{bucket}/r"
    assert regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint).exit_code == 0
    stray = f"r/{tree.REPOSITORIES}gone/_layers/sha256/{'a' * 64}/link"
    s3.put_object(Bucket=bucket, Key=stray, Body=b"sha256:" + b"a" * 64)
    before = list_keys(s3, bucket)
    monkeypatch.setenv("REGMIG_S3_LEAN", lean)
    with FaultProxy(s3_endpoint, Faults(response_filter=bodies(truncated_without_a_token))) as proxy:
        result = regmig("sync", registry.root, url, "--endpoint-url", proxy.url, "--delete")
    assert result.exit_code == 1
    assert "marked truncated but carries no continuation token" in one_line(result.stderr)
    assert list_keys(s3, bucket) == before


# --- 9. an HTTPS endpoint on a plain-HTTP port ------------------------------------------------------

def test_an_https_endpoint_on_a_plain_http_port_is_bad_input(registry, s3, bucket, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    faults = Faults()
    with FaultProxy(s3_endpoint, faults) as proxy:
        endpoint = proxy.url.replace("http://", "https://")
        result = regmig("sync", registry.root, f"s3://{bucket}/r", "--endpoint-url", endpoint)
    assert result.exit_code == 2
    assert one_line(result.stderr) == (f"regmig: error: {endpoint} does not speak TLS (a plain-HTTP port?): use "
                                       f"http:// or the service's HTTPS port")
    assert faults.connections == 1
    assert list_keys(s3, bucket) == {}
