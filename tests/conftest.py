"""Fixtures that start real servers on 127.0.0.1: moto's S3 server over HTTP (never in-process mocks)."""

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


@pytest.fixture(scope="session")
def s3_endpoint(aws_environment: None) -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3(s3_endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3) -> str:  # type: ignore[no-untyped-def]
    name = f"regmig-test-{next(_bucket_names)}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def registry(tmp_path: Path) -> SampleRegistry:
    return demo_registry(str(tmp_path / "registry"))


def list_keys(s3, bucket: str, prefix: str = "") -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """Every object under prefix with its content: what the bucket really holds."""
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", ()):
            out[obj["Key"]] = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def local_files(root: str | Path) -> dict[str, bytes]:
    root = Path(root)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
