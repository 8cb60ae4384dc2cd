"""Fixtures that start real servers on 127.0.0.1 (never in-process mocks).

S3 comes from two servers behind the same fixtures: Ceph RGW (Debian's radosgw, a production S3
that checks signatures) and moto's server (the emulator ``make demo`` embeds). Every test that
takes ``s3_endpoint``, ``s3`` or ``bucket`` runs against both, named ``[rgw]`` and ``[moto]``.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from migrate.sample import SampleRegistry, demo_registry
from rgw import ceph_rgw

# Long enough to be redacted and to be found by the secret-leak tests.
ACCESS_KEY = "AKIAREGMIGTESTKEY0001"
SECRET_KEY = "regmig-test-secret-key-do-not-print-0123456789"
_bucket_names = itertools.count()
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines drown real failures


@pytest.fixture(scope="session", autouse=True)
def aws_environment() -> Iterator[None]:
    """Credentials for the local servers, and nothing that could reach a real AWS account."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith("AWS_"):
            del os.environ[name]
    os.environ.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    yield
    os.environ.clear()
    os.environ.update(saved)


S3_SERVERS = ["rgw", "moto"]


@pytest.fixture(scope="session")
def rgw_endpoint(aws_environment: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Ceph cluster and radosgw for the whole run, with a user holding the test keys."""
    with ceph_rgw(tmp_path_factory.mktemp("ceph"), access_key=ACCESS_KEY, secret_key=SECRET_KEY) as server:
        yield server.endpoint


@pytest.fixture(scope="session")
def moto_endpoint(aws_environment: None) -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session", params=S3_SERVERS)
def s3_endpoint(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_endpoint"))


@pytest.fixture
def s3_server(request: pytest.FixtureRequest, s3_endpoint: str) -> str:
    """Which S3 server this test runs on, for the few settings a Ceph release lacks."""
    return str(request.node.callspec.params["s3_endpoint"])


@pytest.fixture(scope="session")
def s3(s3_endpoint: str):  # type: ignore[no-untyped-def]
    return s3_client(s3_endpoint)


def s3_client(endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3) -> str:  # type: ignore[no-untyped-def]
    return new_bucket(s3)


def new_bucket(client) -> str:  # type: ignore[no-untyped-def]
    name = f"regmig-test-{next(_bucket_names)}"
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def registry(tmp_path: Path) -> SampleRegistry:
    return demo_registry(str(tmp_path / "registry"))


def regmigs_own(key: str) -> bool:
    """regmig's bookkeeping under a root (its generation token and lease, ``.regmig/``): not part of
    the copy, so the helpers below leave it out; the tests of it read it directly."""
    return "/.regmig/" in "/" + key


def list_keys(s3, bucket: str, prefix: str = "") -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """Every object under prefix with its content: what the bucket really holds (but regmig's own)."""
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", ()):
            if not regmigs_own(obj["Key"]):
                out[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def local_files(root: str | Path) -> dict[str, bytes]:
    root = Path(root)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not regmigs_own(p.relative_to(root).as_posix())}


# --- every backend, for the contract tests ------------------------------------------------------

from servers import AZURITE_ACCOUNT, AZURITE_KEY, Backend, azurite, fake_gcs  # noqa: E402


@pytest.fixture(scope="session")
def azurite_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with azurite(tmp_path_factory.mktemp("azurite")) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def gcs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fake_gcs(tmp_path_factory.mktemp("fake-gcs")) as endpoint:
        os.environ["STORAGE_EMULATOR_HOST"] = endpoint
        yield endpoint
        os.environ.pop("STORAGE_EMULATOR_HOST", None)


def _plain_prefix(root: str) -> str:
    root = root.strip("/")
    return f"{root}/" if root else ""


def _s3_backend(s3) -> Backend:  # type: ignore[no-untyped-def]
    name = f"regmig-contract-{next(_bucket_names)}"
    s3.create_bucket(Bucket=name)
    return Backend(
        name="s3", scheme="s3", container=name, args=["--endpoint-url", s3.meta.endpoint_url],
        key_prefix=_plain_prefix,
        put=lambda key, data: s3.put_object(Bucket=name, Key=key, Body=data),
        remove=lambda key: s3.delete_object(Bucket=name, Key=key),
        keys=lambda: list_keys(s3, name),
        attributes=lambda key: {"content_type": s3.head_object(Bucket=name, Key=key)["ContentType"]},
    )


def _azure_backend(endpoint: str, mode: str) -> Backend:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient(endpoint, credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY})
    name = f"regmig-contract-{next(_bucket_names)}"
    container = service.create_container(name)

    def keys() -> dict[str, bytes]:
        return {b.name: container.download_blob(b.name).readall() for b in container.list_blobs()
                if not regmigs_own(b.name)}

    def attributes(key: str) -> dict[str, object]:
        props = container.get_blob_client(key).get_blob_properties()
        return {"content_type": props.content_settings.content_type, "blob_type": str(props.blob_type)}

    legacy = mode == "legacy"
    return Backend(
        name=f"azure-{mode}", scheme="azure", container=name,
        args=["--azure-account-url", endpoint, "--azure-account-key", AZURITE_KEY, "--azure-root-prefix", mode],
        key_prefix=(lambda root: "/" + _plain_prefix(root)) if legacy else _plain_prefix,
        put=lambda key, data: container.upload_blob(key, data, overwrite=True),
        remove=lambda key: container.delete_blob(key),
        keys=keys, attributes=attributes,
    )


def _gcs_backend(endpoint: str) -> Backend:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    client = gcs.Client(project="regmig-test", credentials=AnonymousCredentials(),
                        client_options={"api_endpoint": endpoint})
    name = f"regmig-contract-{next(_bucket_names)}"
    bucket = client.create_bucket(name)

    def keys() -> dict[str, bytes]:
        return {b.name: b.download_as_bytes() for b in client.list_blobs(name) if not regmigs_own(b.name)}

    return Backend(
        name="gcs", scheme="gs", container=name, args=[], key_prefix=_plain_prefix,
        put=lambda key, data: bucket.blob(key).upload_from_string(data),
        remove=lambda key: bucket.blob(key).delete(),
        keys=keys,
        attributes=lambda key: {"content_type": bucket.get_blob(key).content_type},
    )


BACKENDS = ["s3-rgw", "s3-moto", "azure-trimmed", "azure-legacy", "gcs"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    return make_backend(request, request.param)


def make_backend(request: pytest.FixtureRequest, name: str) -> Backend:
    if name.startswith("s3-"):
        return _s3_backend(s3_client(request.getfixturevalue(f"{name.removeprefix('s3-')}_endpoint")))
    if name.startswith("azure-"):
        return _azure_backend(request.getfixturevalue("azurite_endpoint"), name.removeprefix("azure-"))
    if name == "gcs":
        return _gcs_backend(request.getfixturevalue("gcs_endpoint"))
    raise ValueError(name)
