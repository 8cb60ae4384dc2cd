"""The lean S3 path signs with botocore's own SigV4 signer but hands it a lighter request object;
its headers must come out exactly as the signer produces them on a botocore AWSRequest.

Pure logic (no server): moto does not check signatures, so this is where a wrong one would show.
"""

from __future__ import annotations

import datetime
import random
from urllib.parse import quote_plus, unquote_plus

import boto3
import botocore.auth
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from migrate.storage.s3_lean import LeanS3, decode_key

FIXED = datetime.datetime(2026, 11, 22, 10, 0, 0)


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: FIXED)


def lean_for(endpoint: str | None, region: str, token: str | None) -> tuple[LeanS3, Credentials]:
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    client = boto3.client("s3", region_name=region, endpoint_url=endpoint, aws_access_key_id="AKIDEXAMPLE",
                          aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    return LeanS3(client, credentials, "registry-bucket", 3, None), credentials


def reference_headers(credentials: Credentials, region: str, method: str, url: str, body: bytes,
                      headers: dict[str, str]) -> dict[str, str]:
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    S3SigV4Auth(credentials.get_frozen_credentials(), "s3", region).add_auth(request)
    return {name.lower(): value for name, value in request.headers.items()}


@pytest.mark.parametrize(("endpoint", "region", "token"), [
    (None, "eu-west-1", None),                      # AWS, virtual-host style, https
    (None, "us-east-1", "session-token-value"),     # temporary credentials add X-Amz-Security-Token
    ("http://127.0.0.1:9000", "us-east-1", None),   # an S3-compatible on a port, path style, http
])
def test_lean_put_signature_matches_botocore(frozen_clock: None, endpoint: str | None, region: str,
                                             token: str | None) -> None:
    lean, credentials = lean_for(endpoint, region, token)
    url = lean._object_base + "docker/registry/v2/repositories/group/app/_manifests/tags/v1.0/current/link"
    body = b"sha256:" + b"ab" * 32
    headers = {"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg==", "Content-Type": "application/octet-stream",
               "x-amz-server-side-encryption": "aws:kms"}
    signed = {name.lower(): value for name, value in lean.signed_headers("PUT", url, body, headers).items()}
    expected = reference_headers(credentials, region, "PUT", url, body, headers)
    assert signed.pop("host") == botocore.auth._host_from_url(url)
    assert signed == expected
    assert "Signature=" in signed["authorization"]


def test_lean_listing_signature_matches_botocore(frozen_clock: None) -> None:
    lean, credentials = lean_for(None, "eu-central-1", None)
    url = lean._bucket_url + "?list-type=2&prefix=docker%2Fregistry%2Fv2%2F&continuation-token=a%2Bb%3D"
    signed = {name.lower(): value for name, value in lean.signed_headers("GET", url, b"", {}).items()}
    signed.pop("host")
    assert signed == reference_headers(credentials, "eu-central-1", "GET", url, b"", {})


@pytest.mark.parametrize("seed", range(4))
def test_a_listed_key_decodes_as_botocore_decodes_it(seed: int) -> None:
    """encoding-type=url keys: AWS keeps '/' and writes a space as '+', RGW encodes '/' as %2F too;
    the fast path (slashes only) and the rest decode exactly as ``unquote_plus``."""
    rng = random.Random(seed)
    for _ in range(500):
        key = "".join(rng.choice("ab/ +%é_-~.2F") for _ in range(rng.randint(0, 30)))
        for encoded in (quote_plus(key, safe="/"), quote_plus(key, safe="")):
            assert decode_key(encoded) == unquote_plus(encoded) == key
    assert decode_key("docker%2Fregistry%2Fv2%2Frepositories%2Fa%252Fb") == "docker/registry/v2/repositories/a%2Fb"
