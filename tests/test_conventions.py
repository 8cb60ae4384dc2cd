"""The conventions an operator expects of a command line: short options, AWS named profiles, help
that lists only what applies, exit codes as documented, and output in plain words."""

from __future__ import annotations

import json
import re

import pytest

from cli_runner import regmig
from conftest import ACCESS_KEY, SECRET_KEY
from migrate import tree

UPLOAD_ONLY = ("--sse", "--sse-kms-key-id", "--storage-class", "--chunk-size")


@pytest.mark.parametrize("command", ["verify", "doctor", "nameless-tags"])
def test_help_lists_only_what_applies(command: str) -> None:
    shown = set(re.findall(r"(--[a-z0-9-]+)", regmig(command, "--help").stdout))
    chunked = {"--chunk-size"} if command == "doctor" else set(UPLOAD_ONLY)
    if command == "doctor":  # its probe writes use the write settings (a bucket policy may require them)
        assert {"--sse", "--storage-class"} <= shown
    assert not chunked & shown, chunked & shown
    if command in ("doctor", "nameless-tags"):
        assert "--from-config" not in shown and "--to-config" in shown
    assert "--profile" in shown and "--report" in shown and "--verbose" in shown
    assert regmig(command, "s3://b/r", "--chunk-size", "5MiB").exit_code == 2  # not an option here any more


def test_sync_and_config_snippet_keep_the_write_options() -> None:
    for command in ("sync", "config-snippet"):
        shown = set(re.findall(r"(--[a-z0-9-]+)", regmig(command, "--help").stdout))
        assert set(UPLOAD_ONLY) <= shown
    assert "-n, --dry-run" in regmig("sync", "--help").stdout
    assert "-P, --progress" in regmig("sync", "--help").stdout
    assert "-v, --verbose" in regmig("verify", "--help").stdout


def test_short_options_and_verbose_log_on_stderr(registry, s3, bucket, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    url = f"s3://{bucket}/registry"
    dry = regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint, "-n", "-v", "-P")
    assert dry.exit_code == 0
    assert dry.stdout.startswith("sync OK (dry run: nothing changed)")
    assert "regmig: INFO regmig 0.1.0 started on " in dry.stderr and "regmig: INFO would upload (missing): " in dry.stderr
    assert "sync: finishing: " in dry.stderr  # -P: the last progress line
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_profile_reaches_every_s3_client(registry, s3, bucket, s3_endpoint, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "aws-config"
    config.write_text(f"[profile migration]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
                      f"region = eu-west-3\n")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    url = f"s3://{bucket}/registry"
    without = regmig("doctor", url, "--endpoint-url", s3_endpoint, "--region", "us-east-1")
    assert without.exit_code == 2 and "no AWS credentials" in without.stderr
    synced = regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint, "--region", "us-east-1",
                    "--profile", "migration")
    assert synced.exit_code == 0, synced.stderr
    assert regmig("verify", registry.root, url, "--endpoint-url", s3_endpoint, "--region", "us-east-1",
                  "--profile", "migration").exit_code == 0
    snippet = regmig("config-snippet", url, "--profile", "migration")
    assert snippet.exit_code == 0 and "region: eu-west-3" in snippet.stdout  # the profile's region
    missing = regmig("doctor", url, "--endpoint-url", s3_endpoint, "--profile", "nope")
    assert missing.exit_code == 2 and "nope" in missing.stderr


def test_plain_labels_and_directory_wording(registry, s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"s3://{bucket}/registry"
    copied = regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint)
    assert "(unfinished uploads in _uploads: 3)" in copied.stdout and "(new: " in copied.stdout
    assert "upload 3" not in copied.stdout
    back = regmig("sync", url, str(tmp_path / "rollback"), "--endpoint-url", s3_endpoint)
    assert back.exit_code == 0, back.stderr
    assert re.search(r"^  written +\d", back.stdout, re.M) and "uploaded" not in back.stdout
    assert json.loads(regmig("sync", url, str(tmp_path / "rollback2"), "--endpoint-url", s3_endpoint,
                             "--json").stdout)["outcomes"]["uploaded"]["count"] > 0  # the JSON key is unchanged

    s3.put_object(Bucket=bucket, Key="registry/", Body=b"")  # the root's own marker: path ""
    found = regmig("nameless-tags", url, "--endpoint-url", s3_endpoint)
    assert found.exit_code == 1
    assert "found    (the root's own marker: an empty key named like the root, ending in '/')" in found.stdout


def test_thousands_separators_in_refusals(registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    copy = tmp_path / "copy"
    assert regmig("sync", registry.root, str(copy)).exit_code == 0
    extra = copy / tree.REPOSITORIES / "library/alpine/_layers/sha256"
    for i in range(1001):
        (extra / f"{i:064x}").mkdir(parents=True)
        (extra / f"{i:064x}" / "link").write_bytes(b"sha256:" + f"{i:064x}".encode())
    refused = regmig("sync", registry.root, str(copy), "--delete", "--into-populated-directory")
    assert refused.exit_code == 1
    assert "not deleting 1,001 destination-only objects: 1,001 objects would go, more than --max-delete 1,000" \
        in refused.stdout
