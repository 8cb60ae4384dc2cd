"""``regmig verify`` against moto's S3 server: every defect under the right heading, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_runner import regmig
from migrate import tree
from migrate.sample import SampleRegistry

ROOT = "registry"
ALPINE = "docker/registry/v2/repositories/library/alpine"


@pytest.fixture
def synced(registry: SampleRegistry, bucket: str, s3_endpoint: str) -> tuple[SampleRegistry, str]:
    result = regmig("sync", registry.root, f"s3://{bucket}/{ROOT}", "--endpoint-url", s3_endpoint)
    assert result.exit_code == 0, result.stderr
    return registry, bucket


def verify(registry: SampleRegistry, bucket: str, endpoint: str, *extra: str):  # type: ignore[no-untyped-def]
    return regmig("verify", registry.root, f"s3://{bucket}/{ROOT}", "--endpoint-url", endpoint, *extra)


def paths(report: dict, name: str) -> list[str]:  # type: ignore[type-arg]
    return [item["path"] for item in report["lists"].get(name, {}).get("listed", [])]


def test_clean_copy_verifies(synced, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    registry, bucket = synced
    result = verify(registry, bucket, s3_endpoint, "--deep")
    assert result.exit_code == 0, result.stdout
    assert result.stdout.startswith("verify OK")
    report = verify(registry, bucket, s3_endpoint, "--deep", "--json").json()
    counts = report["counts"]
    files = [p for p in Path(registry.root).rglob("*") if p.is_file()]
    uploads = [p for p in files if "/_uploads/" in p.as_posix()]
    assert counts["source_files"] == counts["destination_objects"] == len(files) - len(uploads)
    assert report["findings"] == []


def test_each_defect_is_reported_under_its_heading(synced, s3, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    registry, bucket = synced
    key = f"{ROOT}/"
    blobs = sorted(k["Key"] for k in s3.list_objects_v2(Bucket=bucket, Prefix=key + tree.BLOBS)["Contents"])
    tools_manifest = Path(registry.root, "docker/registry/v2/repositories/team-a/tools/_manifests/tags/2026.11/current/link").read_text()
    tools_layers = [p.parent.name for p in Path(registry.root, "docker/registry/v2/repositories/team-a/tools/_layers/sha256").glob("*/link")]
    layer_blob = next(k for k in blobs if any(h in k for h in tools_layers))
    # 1. delete one blob (a layer of team-a/tools)
    s3.delete_object(Bucket=bucket, Key=layer_blob)
    # 2. corrupt one link: append a newline to library/alpine:3.20
    link = f"{key}{ALPINE}/_manifests/tags/3.20/current/link"
    s3.put_object(Bucket=bucket, Key=link, Body=s3.get_object(Bucket=bucket, Key=link)["Body"].read() + b"\n")
    # 3. change one tag link: library/alpine:3.21 now points at a manifest that is not there
    moved = f"{key}{ALPINE}/_manifests/tags/3.21/current/link"
    s3.put_object(Bucket=bucket, Key=moved, Body=b"sha256:" + b"f" * 64)
    # 4. drop one manifest (the blob of group/project/app/worker:main)
    worker = Path(registry.root, "docker/registry/v2/repositories/group/project/app/worker/_manifests/tags/main/current/link").read_text()
    s3.delete_object(Bucket=bucket, Key=key + tree.blob_path(worker))
    # 5. add an extra object
    extra = f"{key}{ALPINE}/_layers/sha256/{'e' * 64}/link"
    s3.put_object(Bucket=bucket, Key=extra, Body=b"sha256:" + b"e" * 64)

    result = verify(registry, bucket, s3_endpoint, "--deep", "--json")
    assert result.exit_code == 1
    report = result.json()
    assert sorted(paths(report, "missing in destination")) == sorted([layer_blob[len(key):], tree.blob_path(worker)])
    assert paths(report, "size differs") == [f"{ALPINE}/_manifests/tags/3.20/current/link"]
    assert paths(report, "content differs") == [f"{ALPINE}/_manifests/tags/3.21/current/link"]
    assert paths(report, "extra in destination") == [extra[len(key):]]

    groups = {g["repository"]: g for g in report["findings"]}
    problems = {repo: " | ".join(f["problem"] for f in g["findings"]) for repo, g in groups.items()}
    assert "malformed link (trailing newline)" in problems["library/alpine"]
    assert "tag 3.21 points at sha256:fff" in problems["library/alpine"]
    assert set(groups["library/alpine"]["tags"]) >= {"3.20", "3.21"}
    assert "blob sha256:" in problems["team-a/tools"] and "is missing" in problems["team-a/tools"]
    assert groups["team-a/tools"]["tags"] == ["2026.11"]
    assert f"manifest blob {worker} is missing" in problems["group/project/app/worker"]
    assert groups["group/project/app/worker"]["tags"] == ["main"]
    assert tools_manifest  # the tag whose layer went missing is named above

    text = verify(registry, bucket, s3_endpoint, "--deep").stdout
    assert text.startswith("verify FAILED")
    for heading in ("missing in destination (2)", "size differs (1)", "content differs (1)", "extra in destination (1)",
                    "library/alpine (tags affected: 3.20, 3.21"):
        assert heading in text


def test_count_mismatch_alone_fails(synced, s3, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    registry, bucket = synced
    registry.image("library/alpine", "new", [b"only on the source"])
    result = verify(registry, bucket, s3_endpoint, "--json")
    assert result.exit_code == 1
    counts = result.json()["counts"]
    assert counts["source_files"] > counts["destination_objects"]


def test_corrupt_blob_data_found_by_hash(synced, s3, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    registry, bucket = synced
    key = next(k["Key"] for k in s3.list_objects_v2(Bucket=bucket, Prefix=f"{ROOT}/{tree.BLOBS}")["Contents"]
               if 1_000 < k["Size"] < 100_000)  # a layer, not a manifest (which would also fail to parse)
    size = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
    s3.put_object(Bucket=bucket, Key=key, Body=b"x" * size)  # same size: only hashing can tell
    assert verify(registry, bucket, s3_endpoint).exit_code == 0  # by design: blobs compare by size
    one = regmig("verify", f"s3://{bucket}/{ROOT}", "--endpoint-url", s3_endpoint, "--deep", "--json")
    assert one.exit_code == 1
    findings = [f for g in one.json()["findings"] for f in g["findings"]]
    assert [f["path"] for f in findings] == [key[len(ROOT) + 1:]]
    assert "does not hash" in findings[0]["problem"]
    small_limit = regmig("verify", f"s3://{bucket}/{ROOT}", "--endpoint-url", s3_endpoint, "--deep",
                         "--hash-limit", "10")
    assert small_limit.exit_code == 0  # the blob is above the limit, so it was not hashed


def test_markers_counted_apart_and_reported(synced, s3, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    registry, bucket = synced
    s3.put_object(Bucket=bucket, Key=f"{ROOT}/{ALPINE}/_manifests/tags/", Body=b"")
    report = verify(registry, bucket, s3_endpoint, "--json").json()
    assert report["counts"]["markers"] == 1
    assert report["counts"]["source_files"] == report["counts"]["destination_objects"]
    assert report["exit_code"] == 1
    assert report["lists"]["markers"]["listed"][0]["message"].startswith("tags marker")


def test_verify_bad_input(registry, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    result = regmig("verify", registry.root, "s3://no-such-bucket-here/x", "--endpoint-url", s3_endpoint)
    assert result.exit_code == 2 and "does not exist" in result.stderr
    assert regmig("verify", "a", "b", "c").exit_code == 2
