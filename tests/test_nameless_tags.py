"""``regmig nameless-tags``: markers found with their kind, removed one exact key at a time,
and the real registry's tag list goes from containing "" to clean."""

from __future__ import annotations

from pathlib import Path

import pytest

import realregistry as rr
from cli_runner import regmig
from conftest import ACCESS_KEY, SECRET_KEY, list_keys
from migrate import tree

ROOT = "registry"
REPOS = f"{ROOT}/{tree.REPOSITORIES}"


def datasync_markers(s3, bucket: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Zero-byte keys at every directory level, as AWS DataSync and some copy tools leave them."""
    keys = [
        REPOS,  # repositories/
        f"{REPOS}library/",  # namespace
        f"{REPOS}library/alpine/",  # repository root (GitLab's documented case)
        f"{REPOS}library/alpine/_manifests/",
        f"{REPOS}library/alpine/_manifests/tags/",  # the tag named ""
        f"{REPOS}group/project/app/_manifests/tags/",
        f"{ROOT}/{tree.BLOBS}sha256/",
    ]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"")
    return keys


@pytest.fixture
def synced(registry, bucket, s3_endpoint):  # type: ignore[no-untyped-def]
    assert regmig("sync", registry.root, f"s3://{bucket}/{ROOT}", "--endpoint-url", s3_endpoint).exit_code == 0
    return registry, bucket


def test_report_kinds_then_fix_only_zero_byte_keys(synced, s3, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    _, bucket = synced
    markers = datasync_markers(s3, bucket)
    # Look like markers but hold data: never touched.
    s3.put_object(Bucket=bucket, Key=f"{REPOS}team-a/", Body=b"x")
    s3.put_object(Bucket=bucket, Key=f"{REPOS}team-a/tools/_manifests/tags/", Body=b"not empty")
    before = list_keys(s3, bucket)
    url = f"s3://{bucket}/{ROOT}"

    report = regmig("nameless-tags", url, "--endpoint-url", s3_endpoint, "--json")
    assert report.exit_code == 1
    data = report.json()
    assert sorted(m["path"] for m in data["markers"]) == sorted(k[len(ROOT) + 1:] for k in markers)
    kinds = {m["path"].removeprefix(tree.REPOSITORIES): m["kind"] for m in data["markers"]}
    assert kinds[""].startswith("repositories/ marker")
    assert kinds["library/"].startswith("namespace marker")
    assert kinds["library/alpine/"].startswith("repository root marker")
    assert kinds["library/alpine/_manifests/tags/"].startswith("tags marker")
    assert kinds["library/alpine/_manifests/"].startswith("directory marker inside")
    assert list_keys(s3, bucket) == before  # reporting changes nothing

    fixed = regmig("nameless-tags", url, "--endpoint-url", s3_endpoint)
    assert fixed.exit_code == 1  # without --fix
    fixed = regmig("nameless-tags", url, "--endpoint-url", s3_endpoint, "--fix")
    assert fixed.exit_code == 0, fixed.stdout
    assert "removed 7 of 7 markers; target is clean" in fixed.stdout
    after = list_keys(s3, bucket)
    assert set(before) - set(after) == set(markers)
    assert after[f"{REPOS}team-a/"] == b"x"
    assert after[f"{REPOS}team-a/tools/_manifests/tags/"] == b"not empty"
    assert regmig("nameless-tags", url, "--endpoint-url", s3_endpoint).exit_code == 0


def test_sync_delete_removes_markers_and_never_copies_them(synced, s3, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, bucket = synced
    markers = datasync_markers(s3, bucket)
    # Bucket to bucket: markers in the source are not spread to the destination.
    other = bucket + "-copy"
    s3.create_bucket(Bucket=other)
    copied = regmig("sync", f"s3://{bucket}/{ROOT}", f"s3://{other}/{ROOT}", "--endpoint-url", s3_endpoint)
    assert copied.exit_code == 0, copied.stderr
    assert not [k for k in list_keys(s3, other) if k.endswith("/")]
    assert len(list_keys(s3, other)) == len(list_keys(s3, bucket)) - len(markers)


@pytest.mark.registry
def test_real_registry_shows_nameless_tag_until_fixed(synced, s3, s3_endpoint, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    registry, bucket = synced
    storage = {"s3": {"region": "us-east-1", "regionendpoint": s3_endpoint, "bucket": bucket, "rootdirectory": f"/{ROOT}",
                      "secure": False, "v4auth": True, "accesskey": ACCESS_KEY, "secretkey": SECRET_KEY}}
    work = tmp_path / "work"
    with rr.running_registry(storage, work) as base:
        clean = rr.snapshot(base)
        count_before = len(list_keys(s3, bucket))
        markers = datasync_markers(s3, bucket)
        assert "" in rr.tags(base, "library/alpine")
        assert "" in rr.tags(base, "group/project/app")

        assert regmig("nameless-tags", f"s3://{bucket}/{ROOT}", "--endpoint-url", s3_endpoint).exit_code == 1
        assert regmig("nameless-tags", f"s3://{bucket}/{ROOT}", "--endpoint-url", s3_endpoint, "--fix").exit_code == 0

        assert "" not in rr.tags(base, "library/alpine")
        assert rr.snapshot(base) == clean
        for repository, tag_digests in clean.items():
            for tag in tag_digests:
                rr.pull(base, f"{repository}:{tag}", work)
        assert len(list_keys(s3, bucket)) == count_before
        assert len(markers) == 7
