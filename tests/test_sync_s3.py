"""``regmig sync`` against S3 over real HTTP: Ceph RGW and moto's server."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from conftest import list_keys, local_files
from rgw import KMS_KEY_ID
from cli_runner import regmig
from migrate import tree
from migrate.sample import SampleRegistry

TAG_LATEST = "docker/registry/v2/repositories/library/alpine/_manifests/tags/latest/current/link"
TAG_320 = "docker/registry/v2/repositories/library/alpine/_manifests/tags/3.20/current/link"


def expected_objects(registry: SampleRegistry, prefix: str) -> dict[str, bytes]:
    return {prefix + path: data for path, data in local_files(registry.root).items() if not tree.is_excluded(path)}


def sync(registry: SampleRegistry, url: str, endpoint: str, *extra: str):  # type: ignore[no-untyped-def]
    return regmig("sync", registry.root, url, "--endpoint-url", endpoint, "--json", *extra)


def test_first_sync_copies_the_tree_byte_for_byte(registry, s3, bucket, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    result = sync(registry, f"s3://{bucket}/registry", s3_endpoint)
    assert result.exit_code == 0, result.stderr
    assert list_keys(s3, bucket) == expected_objects(registry, "registry/")
    report = result.json()
    assert report["outcomes"]["uploaded"]["count"] == len(expected_objects(registry, ""))
    # Unfinished uploads are not copied; the lockfile is.
    assert not [k for k in list_keys(s3, bucket) if "/_uploads/" in k]
    assert "registry/docker/registry/lockfiles/filesystem-in-use" in list_keys(s3, bucket)
    head = s3.head_object(Bucket=bucket, Key="registry/" + TAG_LATEST)
    assert head["ContentType"] == "application/octet-stream"


def test_bucket_root_and_trailing_slash_roots_map_like_the_registry(registry, s3, bucket, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    assert sync(registry, f"s3://{bucket}", s3_endpoint).exit_code == 0
    assert set(list_keys(s3, bucket)) == set(expected_objects(registry, ""))
    assert sync(registry, f"s3://{bucket}/nested/root/", s3_endpoint).exit_code == 0
    assert set(list_keys(s3, bucket, "nested/")) == set(expected_objects(registry, "nested/root/"))


def test_resync_uploads_nothing_then_exactly_the_moved_tag(registry, s3, bucket, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    url = f"s3://{bucket}/registry"
    assert sync(registry, url, s3_endpoint).exit_code == 0
    second = sync(registry, url, s3_endpoint).json()
    assert "uploaded" not in second["outcomes"]
    assert second["outcomes"]["skipped"]["count"] == len(expected_objects(registry, ""))

    # Re-point 'latest' at the 3.20 manifest: same 71 bytes, new content.
    latest = Path(registry.root, TAG_LATEST)
    before = latest.read_bytes()
    latest.write_bytes(Path(registry.root, TAG_320).read_bytes())
    assert len(before) == latest.stat().st_size == 71
    third = sync(registry, url, s3_endpoint).json()
    assert third["outcomes"]["uploaded"]["count"] == 1
    assert third["lists"]["changed"]["listed"] == [{"path": TAG_LATEST}]
    assert s3.get_object(Bucket=bucket, Key="registry/" + TAG_LATEST)["Body"].read() == latest.read_bytes()


def test_new_image_uploads_only_new_objects(registry, s3, bucket, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    url = f"s3://{bucket}/registry"
    assert sync(registry, url, s3_endpoint).exit_code == 0
    before = set(local_files(registry.root))
    registry.image("library/alpine", "edge", [b"new layer bytes"])
    added = {p for p in set(local_files(registry.root)) - before}
    report = sync(registry, url, s3_endpoint).json()
    assert report["outcomes"]["uploaded"]["count"] == len(added)
    assert list_keys(s3, bucket) == expected_objects(registry, "registry/")


def test_delete_removes_destination_only_objects_after_dry_run(registry, s3, bucket, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    url = f"s3://{bucket}/registry"
    assert sync(registry, url, s3_endpoint).exit_code == 0
    s3.put_object(Bucket=bucket, Key="unrelated/keep-me", Body=b"other data")
    tag_dir = Path(registry.root, "docker/registry/v2/repositories/team-a/tools/_manifests/tags/2026.11")
    shutil.rmtree(tag_dir)

    without = sync(registry, url, s3_endpoint).json()
    assert without["outcomes"]["not deleted"]["count"] == 2
    assert "deleted" not in without["outcomes"]

    dry = sync(registry, url, s3_endpoint, "--delete", "--dry-run").json()
    assert dry["outcomes"]["would delete"]["count"] == 2
    assert len(list_keys(s3, bucket, "registry/")) == len(expected_objects(registry, "")) + 2

    real = sync(registry, url, s3_endpoint, "--delete").json()
    assert real["outcomes"]["deleted"]["count"] == 2
    assert list_keys(s3, bucket, "registry/") == expected_objects(registry, "registry/")
    assert "unrelated/keep-me" in list_keys(s3, bucket)  # outside the root: never touched


def test_delete_at_bucket_root_keeps_foreign_objects(registry, s3, bucket, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key="backups/important.tar", Body=b"other data")
    result = sync(registry, f"s3://{bucket}", s3_endpoint, "--delete")
    assert result.exit_code == 0
    assert result.json()["outcomes"]["kept"]["count"] == 1
    assert "backups/important.tar" in list_keys(s3, bucket)


def test_max_delete_guard_refuses_and_deletes_nothing(registry, s3, bucket, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    url = f"s3://{bucket}/registry"
    assert sync(registry, url, s3_endpoint).exit_code == 0
    shutil.rmtree(Path(registry.root, "docker/registry/v2/repositories/group"))
    before = list_keys(s3, bucket)
    result = sync(registry, url, s3_endpoint, "--delete", "--max-delete", "3")
    assert result.exit_code == 1
    assert "more than --max-delete 3" in result.json()["delete_refused"]
    assert list_keys(s3, bucket) == before
    assert sync(registry, url, s3_endpoint, "--delete", "--max-delete", "-1").exit_code == 0
    assert list_keys(s3, bucket) == expected_objects(registry, "registry/")


def test_delete_refused_when_source_walk_passed_over_entries(registry, s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"s3://{bucket}/registry"
    assert sync(registry, url, s3_endpoint).exit_code == 0
    Path(registry.root, TAG_320).unlink()
    (tmp_path / "elsewhere").write_bytes(b"x")
    os.symlink(tmp_path / "elsewhere", Path(registry.root, TAG_320))
    result = sync(registry, url, s3_endpoint, "--delete")
    assert result.exit_code == 1
    assert "passed over 1" in result.json()["delete_refused"]
    assert result.json()["lists"]["problems"]["listed"][0]["path"] == TAG_320
    assert "registry/" + TAG_320 in list_keys(s3, bucket)


def test_uploads_are_copied_only_when_asked(registry, s3, bucket, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    assert sync(registry, f"s3://{bucket}/r", s3_endpoint, "--include-uploads").exit_code == 0
    assert [k for k in list_keys(s3, bucket) if "/_uploads/" in k]


def test_large_blob_goes_multipart_and_resyncs_by_size(registry, s3, bucket, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    url = f"s3://{bucket}/registry"
    assert sync(registry, url, s3_endpoint, "--chunk-size", "5MiB").exit_code == 0
    big = max(local_files(registry.root).items(), key=lambda item: len(item[1]))
    assert len(big[1]) > 10 * 1024 * 1024
    head = s3.head_object(Bucket=bucket, Key="registry/" + big[0])
    assert head["ETag"].strip('"').endswith("-3")  # three 5 MiB parts (the registry's chunksize)
    assert hashlib.sha256(s3.get_object(Bucket=bucket, Key="registry/" + big[0])["Body"].read()).hexdigest() in big[0]
    again = sync(registry, url, s3_endpoint, "--chunk-size", "5MiB").json()
    assert "uploaded" not in again["outcomes"]


def test_human_output_and_log_file(registry, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "sync.log"
    result = regmig("sync", registry.root, f"s3://{bucket}/registry", "--endpoint-url", s3_endpoint,
                    "--log-file", str(log), "--progress")
    assert result.exit_code == 0
    assert result.stdout.startswith("sync OK:")
    assert "uploaded" in result.stdout
    assert "sync: finishing: " in result.stderr and "objects (100%)" in result.stderr  # the final progress line
    assert log.exists()


@pytest.mark.parametrize(
    ("source_suffix", "dest", "message"),
    [
        ("/docker/registry/v2", "s3://{bucket}/r", "did you mean"),
        ("/missing", "s3://{bucket}/r", "no such directory"),
        ("", "s3://no-such-bucket-here/r", "does not exist"),
        ("", "s3:///r", "bucket name is empty"),
        ("", "ftp://{bucket}/r", "unknown location scheme"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(registry, s3, bucket, s3_endpoint, source_suffix, dest, message) -> None:  # type: ignore[no-untyped-def]
    result = regmig("sync", registry.root + source_suffix, dest.format(bucket=bucket), "--endpoint-url", s3_endpoint,
                    "--delete")
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert list_keys(s3, bucket) == {}


def test_empty_registry_root_refused_with_delete(tmp_path, s3, bucket, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key="r/docker/registry/v2/blobs/x", Body=b"1")
    (tmp_path / "empty").mkdir()
    result = regmig("sync", str(tmp_path / "empty"), f"s3://{bucket}/r", "--endpoint-url", s3_endpoint, "--delete")
    assert result.exit_code == 2
    assert "not a registry root" in result.stderr
    assert list(list_keys(s3, bucket)) == ["r/docker/registry/v2/blobs/x"]


def test_secrets_never_printed(registry, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from conftest import ACCESS_KEY, SECRET_KEY

    log = tmp_path / "log"
    ok = regmig("sync", registry.root, f"s3://{bucket}/r", "--endpoint-url", s3_endpoint, "--json", "--log-file", str(log))
    bad = regmig("sync", registry.root, "s3://no-such-bucket-x/r", "--endpoint-url", s3_endpoint, "--log-file", str(log))
    everything = ok.stdout + ok.stderr + bad.stdout + bad.stderr + log.read_text()
    assert bad.exit_code == 2
    assert SECRET_KEY not in everything and ACCESS_KEY not in everything


def test_s3_write_settings_reach_the_objects(registry, s3, bucket, s3_endpoint, s3_server) -> None:  # type: ignore[no-untyped-def]
    # Ceph RGW 16 has SSE-KMS (keys from its own config) and no storage class but STANDARD.
    sse = ["--sse", "aws:kms", "--sse-kms-key-id", KMS_KEY_ID] if s3_server == "rgw" else ["--sse", "AES256"]
    storage_class = "STANDARD" if s3_server == "rgw" else "STANDARD_IA"
    result = sync(registry, f"s3://{bucket}/r", s3_endpoint, *sse, "--storage-class", storage_class,
                  "--max-requests-per-second", "500", "--workers", "8")
    assert result.exit_code == 0, result.stderr
    for key in ("r/" + TAG_LATEST, next(k for k in list_keys(s3, bucket) if "/blobs/" in k)):
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == sse[1]
        assert head.get("StorageClass", "STANDARD") == storage_class
        assert head["ContentType"] == "application/octet-stream"
    assert not [key for key in list_keys(s3, bucket) if "regmig-probe" in key]


def test_failed_objects_are_listed_and_exit_1(registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A filesystem destination with a directory where a tag link must go: that one write fails.
    destination = tmp_path / "rollback"
    (destination / TAG_LATEST / "in-the-way").parent.mkdir(parents=True)
    (destination / TAG_LATEST / "in-the-way").write_bytes(b"x")
    result = regmig("sync", registry.root, str(destination), "--json", "--into-populated-directory")
    assert result.exit_code == 1
    report = result.json()
    assert [item["path"] for item in report["lists"]["failures"]["listed"]] == [TAG_LATEST]
    assert report["outcomes"]["uploaded"]["count"] == len(expected_objects(registry, "")) - 1
    assert local_files(destination)[TAG_320] == local_files(registry.root)[TAG_320]
