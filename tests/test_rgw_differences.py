"""Where Ceph RGW 16 (Debian 12's radosgw) answers differently from moto and AWS, and what regmig
does about it. Each case runs on RGW; the storage contract suite (tests/test_storage_contract.py)
holds the rest, such as RGW accepting and ignoring If-Match on DeleteObject."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from cli_runner import regmig
from conftest import list_keys, new_bucket, s3_client
from migrate.sample import demo_registry

CHUNK = 5 * 1024 * 1024


def test_the_empty_etag_of_complete_multipart_upload_is_never_kept(rgw_endpoint: str, tmp_path: Path) -> None:
    client = s3_client(rgw_endpoint)
    bucket = new_bucket(client)
    # The quirk itself, so this test notices the day the server stops having it.
    upload = client.create_multipart_upload(Bucket=bucket, Key="quirk")
    part = client.upload_part(Bucket=bucket, Key="quirk", UploadId=upload["UploadId"], PartNumber=1, Body=b"x")
    done = client.complete_multipart_upload(Bucket=bucket, Key="quirk", UploadId=upload["UploadId"],
                                            MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]})
    assert done["ETag"] in ("", '""')
    client.delete_object(Bucket=bucket, Key="quirk")

    registry = demo_registry(str(tmp_path / "registry"))
    large = os.urandom(CHUNK + 512 * 1024)
    blob = registry.blob(large)
    url, state = f"s3://{bucket}/registry", tmp_path / "state"
    args = ["--endpoint-url", rgw_endpoint, "--chunk-size", "5MiB", "--state", str(state), "--json"]
    first = regmig("sync", registry.root, url, *args)
    assert first.exit_code == 0, first.stderr
    blob_path = f"docker/registry/v2/blobs/sha256/{blob[7:9]}/{blob[7:]}/data"
    assert list_keys(client, bucket)[f"registry/{blob_path}"] == large
    # The listing's ETag is "<md5 of the parts' MD5s>-<parts>": not an MD5 of the bytes, so not kept as one.
    listed = client.list_objects_v2(Bucket=bucket, Prefix=f"registry/{blob_path}")["Contents"][0]["ETag"]
    assert listed.strip('"').endswith("-2")

    # Records written after the upload, after a pass from that record, and after a pass that
    # listed the bucket (no record to read): none may keep an ETag that is not an MD5, nor ''.
    for listed_pass in (None, False, True):
        if listed_pass is not None:
            if listed_pass:
                state.unlink()
            again = regmig("sync", registry.root, url, *args).json()
            assert again["exit_code"] == 0 and "uploaded" not in again["outcomes"]
        lines = gzip.decompress(state.read_bytes()).decode().splitlines()[1:-1]
        fields = {line.split("\t")[0]: line.split("\t")[1:] for line in lines}
        assert fields[blob_path][:2] == [str(len(large)), "-"]
        assert all(field != "" for values in fields.values() for field in values)
    assert regmig("verify", registry.root, url, "--endpoint-url", rgw_endpoint, "--deep").exit_code == 0


@pytest.mark.parametrize("name", ["a", "Registry_Images"])
def test_a_bucket_name_rgw_cannot_hold_is_named_as_the_cause(rgw_endpoint: str, tmp_path: Path, name: str) -> None:
    registry = demo_registry(str(tmp_path / "registry"))
    result = regmig("sync", registry.root, f"s3://{name}/registry", "--endpoint-url", rgw_endpoint)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "the bucket does not exist" in result.stderr and "breaks S3's bucket naming rules" in result.stderr
    valid = regmig("sync", registry.root, "s3://no-such-bucket-here/registry", "--endpoint-url", rgw_endpoint)
    assert valid.exit_code == 2 and "naming rules" not in valid.stderr


@pytest.mark.parametrize("flags, refusal", [
    (["--storage-class", "STANDARD_IA"], "the service refused --storage-class STANDARD_IA: "),
    (["--sse", "AES256"], "accepted --sse AES256 but did not apply ServerSideEncryption AES256 (the object has none)"),
])
def test_settings_the_service_refuses_or_ignores_stop_the_copy_before_it_starts(
        rgw_endpoint: str, tmp_path: Path, flags: list[str], refusal: str) -> None:  # type: ignore[no-untyped-def]
    """Ceph RGW 16 knows no STANDARD_IA, and stores an AES256 object unencrypted over HTTP."""
    registry = demo_registry(str(tmp_path / "registry"))
    client = s3_client(rgw_endpoint)
    bucket = new_bucket(client)
    result = regmig("sync", registry.root, f"s3://{bucket}/r", "--endpoint-url", rgw_endpoint, *flags)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and refusal in result.stderr, result.stderr
    assert list_keys(client, bucket) == {}


def test_a_wrong_secret_is_one_line_and_never_printed(rgw_endpoint: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """moto accepts any signature; RGW checks it, as AWS does."""
    registry = demo_registry(str(tmp_path / "registry"))
    bucket = new_bucket(s3_client(rgw_endpoint))
    wrong = "a-wrong-secret-that-must-never-be-printed-0123"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", wrong)
    log = tmp_path / "log"
    result = regmig("sync", registry.root, f"s3://{bucket}/r", "--endpoint-url", rgw_endpoint, "--retries", "1",
                    "--log-file", str(log))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "access denied (SignatureDoesNotMatch)" in result.stderr
    assert wrong not in result.stderr + result.stdout + log.read_text()
