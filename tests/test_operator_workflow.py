"""plan, doctor and config-snippet, against S3 (Ceph RGW and moto's server) and the real registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import realregistry as rr
from cli_runner import regmig
from conftest import ACCESS_KEY, SECRET_KEY, list_keys
from migrate.config.ruby_literal import parse_literal
from rgw import KMS_KEY_ID


def test_plan_counts_per_area_flags_and_estimates(registry, s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"s3://{bucket}/registry"
    first = regmig("plan", registry.root, url, "--endpoint-url", s3_endpoint, "--json")
    assert first.exit_code == 0, first.stderr
    report = first.json()
    files = [p for p in Path(registry.root).rglob("*") if p.is_file() and "/_uploads/" not in p.as_posix()]
    blobs = [p for p in files if "/blobs/" in p.as_posix()]
    assert report["areas"]["blobs"]["would upload"]["count"] == len(blobs)
    assert report["areas"]["lockfiles"]["would upload"]["count"] == 1
    assert sum(a.get("would upload", {}).get("count", 0) for a in report["areas"].values()) == len(files)
    assert report["estimate"]["read_only_window_seconds"] > 0
    assert report["flags"] == [] and any("_uploads" in note for note in report["notes"])  # before the window: a note
    assert list_keys(s3, bucket) == {}  # the plan changed nothing; its probe objects were removed

    assert regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint).exit_code == 0
    again = regmig("plan", registry.root, url, "--endpoint-url", s3_endpoint, "--json", "--no-probe").json()
    assert "would upload" not in again["outcomes"] and "read_only_window_seconds" not in again["estimate"]
    assert again["areas"]["blobs"]["skipped"]["count"] == len(blobs)  # skips are counted per area too

    source = tmp_path / "config.yml"
    source.write_text(json.dumps({"storage": {"filesystem": {"rootdirectory": registry.root},
                                              "maintenance": {"readonly": {"enabled": False}}}}))
    final = regmig("plan", "--from-config", str(source), url, "--endpoint-url", s3_endpoint, "--final", "--no-probe")
    assert "FLAG: the source registry is not read-only" in final.stdout
    assert final.exit_code == 1  # a FLAG is something to act on (docs/reports.md)
    source.write_text(json.dumps({"storage": {"filesystem": {"rootdirectory": registry.root},
                                              "maintenance": {"readonly": {"enabled": True}}}}))
    ready = regmig("plan", "--from-config", str(source), url, "--endpoint-url", s3_endpoint, "--final", "--no-probe")
    assert "not read-only" not in ready.stdout
    assert "files in _uploads" in ready.stdout and ready.exit_code == 1  # in the window, pushes are lost


def test_doctor_versioning_and_encryption(s3, bucket, s3_endpoint, s3_server) -> None:  # type: ignore[no-untyped-def]
    url = f"s3://{bucket}/registry"
    clean = regmig("doctor", url, "--endpoint-url", s3_endpoint, "--json")
    assert clean.exit_code == 0, clean.stdout
    assert [c["check"] for c in clean.json()["checks"]] == ["reachable", "writable"]
    assert list_keys(s3, bucket) == {}

    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    if s3_server == "moto":  # Ceph RGW 16 has no bucket default encryption (InvalidArgument)
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    warned = regmig("doctor", url, "--endpoint-url", s3_endpoint)
    assert warned.exit_code == 1
    assert "WARN  settings  object versioning is on" in warned.stdout
    assert ("NOTE  settings  the bucket has default encryption" in warned.stdout) == (s3_server == "moto")
    if s3_server == "moto":
        assert "default encryption" not in regmig("doctor", url, "--endpoint-url", s3_endpoint, "--sse",
                                                  "AES256").stdout

    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [{
        "ID": "noncurrent", "Status": "Enabled", "Filter": {"Prefix": ""},
        "NoncurrentVersionExpiration": {"NoncurrentDays": 7}}]})
    sse = ["--sse", "AES256"] if s3_server == "moto" else ["--sse", "aws:kms", "--sse-kms-key-id", KMS_KEY_ID]
    fixed = regmig("doctor", url, "--endpoint-url", s3_endpoint, *sse)
    assert fixed.exit_code == 0, fixed.stdout


def test_doctor_refuses_missing_bucket(s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    result = regmig("doctor", "s3://no-such-bucket-doctor/x", "--endpoint-url", s3_endpoint)
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_config_snippet_never_prints_secrets(s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    key = "azure-account-key-that-must-not-print=="
    out = regmig("config-snippet", "azure://images/reg", "--azure-account-name", "acct", "--azure-account-key", key,
                 "--azure-root-prefix", "legacy").stdout
    assert key not in out
    storage = yaml.safe_load(out.split("# GitLab")[0])["storage"]
    assert storage["azure"]["trimlegacyrootprefix"] is False
    assert storage["azure"]["accountkey"] == "<ACCOUNT_KEY>"
    ruby_blocks = [line for line in out.splitlines() if line.startswith("registry['storage'] = ")]
    assert len(ruby_blocks) == 2
    start = out.index("registry['storage'] = ") + len("registry['storage'] = ")
    parsed, _ = parse_literal(out, start)
    assert parsed == storage  # the gitlab.rb block says the same as config.yml
    assert regmig("config-snippet", "/srv/registry").exit_code == 2


@pytest.mark.registry
def test_config_snippet_makes_the_real_registry_serve_the_copy(registry, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"s3://{bucket}/registry"
    assert regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint).exit_code == 0
    with rr.running_registry({"filesystem": {"rootdirectory": registry.root}}, tmp_path / "fs") as source:
        expected = rr.snapshot(source)
    out = regmig("config-snippet", url, "--endpoint-url", s3_endpoint, "--region", "us-east-1").stdout
    storage = yaml.safe_load(out.split("# GitLab")[0])["storage"]
    storage["s3"].update(accesskey=ACCESS_KEY, secretkey=SECRET_KEY)  # the operator fills the placeholders
    with rr.running_registry(storage, tmp_path / "s3") as migrated:
        assert rr.snapshot(migrated) == expected
        status, _, _ = rr.get(f"{migrated}/v2/library/alpine/blobs/uploads/", method="POST")
        assert status in (405, 503)  # read-only during the cut-over, as the snippet says


def test_data_at_the_bucket_root_is_named_when_a_rootdirectory_was_given(registry, bucket, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    assert regmig("sync", registry.root, f"s3://{bucket}", "--endpoint-url", s3_endpoint).exit_code == 0
    result = regmig("verify", f"s3://{bucket}/registry", "--endpoint-url", s3_endpoint)
    assert result.exit_code == 2
    assert f"did you mean s3://{bucket}?" in result.stderr
    plan = regmig("plan", registry.root, f"s3://{bucket}/registry", "--endpoint-url", s3_endpoint, "--no-probe",
                  "--json").json()
    assert any(f"did you mean s3://{bucket}?" in note for note in plan["notes"])
    clean = regmig("verify", f"s3://{bucket}", "--endpoint-url", s3_endpoint)
    assert clean.exit_code == 0 and "did you mean" not in clean.stdout
