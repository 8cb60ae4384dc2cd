"""A pull-through cache (the Dependency Proxy seed) migrates too: its cached images and its
scheduler-state.json survive the move, and it serves the cache from S3 with the upstream gone."""

from __future__ import annotations

import contextlib
import time
import urllib.request
from pathlib import Path

import pytest

import realregistry as rr
from cli_runner import regmig
from conftest import ACCESS_KEY, SECRET_KEY

pytestmark = pytest.mark.registry


def test_proxy_registry_migrates_with_its_cache(tmp_path: Path, s3, bucket: str, s3_endpoint: str) -> None:  # type: ignore[no-untyped-def]
    work = tmp_path / "work"
    upstream_root, cache_root = tmp_path / "upstream", tmp_path / "cache"
    layout = rr.Layout(work / "layout")
    layout.image({"a": b"cached one"}, ref="one")
    layout.image({"b": b"cached two"}, ref="two")
    layout.image({"c": b"never pulled"}, ref="three")

    with rr.running_registry({"filesystem": {"rootdirectory": str(upstream_root)}}, work) as upstream:
        for ref in ("one", "two", "three"):
            rr.push(layout.path, ref, upstream, f"library/app:{ref}", work)
        proxy = {"proxy": {"remoteurl": upstream}}
        with rr.running_registry({"filesystem": {"rootdirectory": str(cache_root)}}, work, proxy) as cache:
            digests = {ref: rr.manifest_digest(cache, "library/app", ref) for ref in ("one", "two")}
            for ref in ("one", "two"):
                rr.pull(cache, f"library/app:{ref}", work)
            state = cache_root / "scheduler-state.json"
            deadline = time.monotonic() + 30  # distribution saves the scheduler state every 5 s
            while not state.exists() and time.monotonic() < deadline:
                time.sleep(0.5)
    assert state.exists(), "the proxy registry writes its scheduler state at the root"

    url = f"s3://{bucket}/cache"
    result = regmig("sync", str(cache_root), url, "--endpoint-url", s3_endpoint, "--json")
    assert result.exit_code == 0, result.stderr
    stored = s3.get_object(Bucket=bucket, Key="cache/scheduler-state.json")["Body"].read()
    assert stored == state.read_bytes()
    assert regmig("verify", str(cache_root), url, "--endpoint-url", s3_endpoint, "--deep").exit_code == 0

    # The proxy checks its upstream at start-up; once it runs, the upstream goes away, so
    # whatever the cache serves comes from the migrated bucket.
    storage = {"s3": {"region": "us-east-1", "regionendpoint": s3_endpoint, "bucket": bucket,
                      "rootdirectory": "/cache", "secure": False, "v4auth": True,
                      "accesskey": ACCESS_KEY, "secretkey": SECRET_KEY}}
    upstream_process: contextlib.AbstractContextManager[str] | None = rr.running_registry(
        {"filesystem": {"rootdirectory": str(upstream_root)}}, work)
    upstream = upstream_process.__enter__()
    try:
        with rr.running_registry(storage, work, {"proxy": {"remoteurl": upstream}}) as migrated:
            upstream_process.__exit__(None, None, None)
            upstream_process = None
            with pytest.raises(OSError):
                urllib.request.urlopen(upstream + "/v2/", timeout=2)
            for ref, digest in digests.items():
                assert rr.manifest_digest(migrated, "library/app", digest) == digest
                rr.pull(migrated, f"library/app@{digest}", work)
            assert rr.manifest_digest(migrated, "library/app", "three") is None
    finally:
        if upstream_process is not None:
            upstream_process.__exit__(None, None, None)
