"""``regmig sync --verify``: the final pass proves what it leaves, over real HTTP (RGW and moto)."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

from cli_runner import regmig
from conftest import list_keys
from faultproxy import Canned, Faults, FaultProxy
from migrate.sample import SampleRegistry

ROOT = "registry"
TAGS = "docker/registry/v2/repositories/library/alpine/_manifests/tags/"
TAG_LATEST = TAGS + "latest/current/link"
TAG_320 = TAGS + "3.20/current/link"


def test_the_final_pass_lists_repairs_and_proves_what_a_record_would_have_hidden(  # type: ignore[no-untyped-def]
        registry: SampleRegistry, s3, bucket, s3_endpoint, tmp_path: Path) -> None:
    url, state = f"s3://{bucket}/{ROOT}", str(tmp_path / "dest.state")
    assert regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint, "--state", state).exit_code == 0
    # Behind regmig's back: a tag moved in the bucket (same 71 bytes, other content), a link the
    # source lacks, and an empty "directory" object (a nameless tag). The record knows none of it.
    s3.put_object(Bucket=bucket, Key=f"{ROOT}/{TAG_LATEST}", Body=Path(registry.root, TAG_320).read_bytes())
    s3.put_object(Bucket=bucket, Key=f"{ROOT}/{TAGS}gone/current/link", Body=b"sha256:" + b"0" * 64)
    s3.put_object(Bucket=bucket, Key=f"{ROOT}/{TAGS}", Body=b"")

    final = regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint, "--state", state, "--delete",
                   "--verify", "--json")
    assert final.exit_code == 0, final.stdout + final.stderr
    summary = final.json()
    proof = summary["proof"]
    assert proof["verdict"] == "proved" and proof["reasons"] == []
    assert summary["outcomes"]["uploaded"]["by_reason"] == {"content differs": {"count": 1, "bytes": 71}}
    assert proof["counts"]["written"] == 1 and proof["counts"]["extras"] == 2 and proof["counts"]["markers"] == 1
    assert proof["counts"]["compared"] == 0  # S3 lists MD5s: every link was compared by them
    assert proof["confirmed"] == 3  # the tag written and the two keys deleted, each looked at again
    assert list_keys(s3, bucket)[f"{ROOT}/{TAG_LATEST}"] == Path(registry.root, TAG_LATEST).read_bytes()
    assert f"{ROOT}/{TAGS}" not in list_keys(s3, bucket)
    assert "state file written" in " ".join(summary["notes"])

    alone = regmig("verify", registry.root, url, "--endpoint-url", s3_endpoint, "--json")
    assert alone.exit_code == 0, alone.stdout
    assert alone.json()["checked"] == proof["checked"]
    assert alone.json()["counts"]["destination_objects"] == proof["destination_objects"]
    text = regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint, "--verify").stdout
    assert "verify OK: destination matches the source" in text
    assert f"source {proof['counts']['source_files']:,} files, destination {proof['destination_objects']:,} " \
           f"objects after the pass (listed " in text


def test_a_write_the_service_acknowledged_but_lost_fails_the_proof_and_keeps_the_record_out(  # type: ignore[no-untyped-def]
        registry: SampleRegistry, s3, bucket, s3_endpoint, tmp_path: Path) -> None:
    url, state = f"s3://{bucket}/{ROOT}", tmp_path / "dest.state"
    assert regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint).exit_code == 0
    moved = Path(registry.root, TAG_LATEST)
    moved.write_bytes(Path(registry.root, TAG_320).read_bytes())
    etag = hashlib.md5(moved.read_bytes()).hexdigest()

    def rule(method: str, path: str) -> Canned | None:  # answered as done, never forwarded
        return Canned(200, headers=(("ETag", f'"{etag}"'),)) if method == "PUT" and \
            path.split("?")[0].endswith(TAG_LATEST) else None

    with FaultProxy(s3_endpoint, Faults(rule=rule)) as proxy:
        final = regmig("sync", registry.root, url, "--endpoint-url", proxy.url, "--state", str(state), "--delete",
                       "--verify", "--json")
    assert final.exit_code == 1
    summary = final.json()
    assert summary["outcomes"]["uploaded"]["count"] == 1  # the pass itself saw nothing wrong
    assert summary["proof"]["verdict"] == "failed"
    assert "1 of the 1 objects the pass changed are not as it left them" in summary["proof"]["reasons"][0]
    # The object the write was meant to replace is still there, with the old tag's MD5.
    assert summary["lists"]["failures"]["listed"] == [
        {"path": TAG_LATEST, "message": "other content in the destination than the pass wrote"}]
    assert not state.exists()  # a pass that could not prove what it left vouches for nothing
    assert "no state file written" in " ".join(summary["notes"])


def test_the_proof_runs_in_every_worker_process(registry: SampleRegistry, s3, bucket, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    url = f"s3://{bucket}/{ROOT}"
    first = regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint, "--verify", "--processes", "2",
                   "--shards", "4", "--json")
    assert first.exit_code == 0, first.stdout + first.stderr
    proof = first.json()["proof"]
    alone = regmig("verify", registry.root, url, "--endpoint-url", s3_endpoint, "--json").json()
    assert proof["verdict"] == "proved" and proof["checked"] == alone["checked"]
    assert proof["confirmed"] == proof["counts"]["written"] == alone["counts"]["source_files"] + \
        alone["counts"]["source_outside_registry"]


def test_objects_a_sync_leaves_in_place_fail_the_proof_and_keep_the_record_out(  # type: ignore[no-untyped-def]
        registry: SampleRegistry, s3, bucket, s3_endpoint, tmp_path: Path) -> None:
    url, state = f"s3://{bucket}/{ROOT}", tmp_path / "dest.state"
    assert regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint, "--state", str(state)).exit_code == 0
    s3.put_object(Bucket=bucket, Key=f"{ROOT}/{TAGS}gone/current/link", Body=b"sha256:" + b"0" * 64)
    s3.put_object(Bucket=bucket, Key=f"{ROOT}/", Body=b"")  # the root's own marker: never a sync's to delete
    kept = regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint, "--state", str(state), "--verify",
                  "--json")
    assert kept.exit_code == 1
    reasons = " | ".join(kept.json()["proof"]["reasons"])
    assert "1 objects under docker/ are only in the destination: run with --delete" in reasons
    assert f"1 zero-byte markers remain (the root's own key): run regmig nameless-tags {url} --fix" in reasons
    assert not state.exists()  # what the pass left is not what the source holds: no record vouches for it
    deleted = regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint, "--state", str(state), "--verify",
                     "--delete", "--json")
    assert deleted.exit_code == 1 and deleted.json()["proof"]["reasons"] == [reasons.split(" | ")[1]]
    assert regmig("nameless-tags", url, "--endpoint-url", s3_endpoint, "--fix").exit_code == 0
    assert regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint, "--state", str(state), "--verify",
                  "--delete").exit_code == 0
    assert regmig("verify", registry.root, url, "--endpoint-url", s3_endpoint).exit_code == 0


def test_a_listed_final_pass_still_refuses_deletes_from_a_source_that_shrank(  # type: ignore[no-untyped-def]
        registry: SampleRegistry, s3, bucket, s3_endpoint, tmp_path: Path) -> None:
    url, state = f"s3://{bucket}/{ROOT}", str(tmp_path / "dest.state")
    assert regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint, "--state", state).exit_code == 0
    before = list_keys(s3, bucket)
    shutil.rmtree(Path(registry.root, "docker/registry/v2/repositories"))  # a mount that shows part of the tree
    final = regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint, "--state", state, "--delete",
                   "--max-delete", "-1", "--verify", "--json")
    assert final.exit_code == 1
    assert "is the source mounted?" in final.json()["delete_refused"]
    assert final.json()["proof"]["verdict"] == "failed"
    assert list_keys(s3, bucket).keys() >= {key for key in before if "/repositories/" in key}


def test_a_shard_that_stopped_leaves_nothing_proved(registry: SampleRegistry, s3, bucket, s3_endpoint,  # type: ignore[no-untyped-def]
                                                    tmp_path: Path) -> None:
    url, state = f"s3://{bucket}/{ROOT}", str(tmp_path / "dest.state")
    assert regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint, "--state", state, "--shards",
                  "2").exit_code == 0
    record = Path(f"{state}.1-of-2")
    with gzip.open(record, "rt") as whole:
        head = [whole.readline(), whole.readline()]
    with gzip.open(record, "wt") as cut:  # a record cut short: its shard stops, as on a damaged disk
        cut.writelines(head)
    final = regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint, "--state", state, "--shards", "2",
                   "--delete", "--verify", "--json")
    assert final.exit_code == 1, final.stderr
    proof = final.json()["proof"]
    assert proof["verdict"] == "failed" and "nothing is proved" in proof["reasons"][0]
    assert "is truncated" in final.json()["lists"]["failures"]["listed"][0]["message"]


def test_verify_with_a_dry_run_or_one_shard_is_refused(registry: SampleRegistry, tmp_path: Path) -> None:
    destination = tmp_path / "copy"
    dry = regmig("sync", registry.root, str(destination), "--verify", "--dry-run")
    assert dry.exit_code == 2 and "--verify" in dry.stderr and "--dry-run" in dry.stderr
    assert len(dry.stderr.strip().splitlines()) == 1
    shard = regmig("sync", registry.root, str(destination), "--verify", "--shard", "0/2", "--results",
                   str(tmp_path / "results"))
    assert shard.exit_code == 2 and "after gather" in shard.stderr
    assert not destination.exists() and not (tmp_path / "results").exists()
    assert json.loads(regmig("sync", registry.root, str(destination), "--verify", "--json").stdout)["proof"][
        "verdict"] == "proved"
    # A directory lists no MD5: every link is read and compared by the pass, and again afterwards.
    Path(destination, TAG_LATEST).write_bytes(Path(registry.root, TAG_320).read_bytes())
    again = json.loads(regmig("sync", registry.root, str(destination), "--verify", "--into-populated-directory",
                              "--json").stdout)
    assert again["proof"]["verdict"] == "proved" and again["proof"]["counts"]["compared"] > 0
    assert again["proof"]["confirmed"] == again["proof"]["counts"]["compared"] + again["proof"]["counts"]["written"]
    assert again["outcomes"]["uploaded"]["count"] == 1
    assert Path(destination, TAG_LATEST).read_bytes() == Path(registry.root, TAG_LATEST).read_bytes()


def test_the_change_ticket_report_carries_the_proof(registry: SampleRegistry, tmp_path: Path) -> None:
    destination, report = tmp_path / "copy", tmp_path / "final.json"
    assert regmig("sync", registry.root, str(destination), "--verify", "--report", str(report)).exit_code == 0
    proof = json.loads(report.read_text())["proof"]
    page = tmp_path / "ticket.md"
    assert regmig("report", str(report), "--output", str(page)).exit_code == 0
    text = page.read_text()
    assert text.startswith("# OK: sync --verify: everything copied, destination matches the source")
    files = proof["counts"]["source_files"]
    assert f"| {files:,} | {proof['destination_objects']:,} | after the pass: listed {proof['counts']['destination_listed']:,}" \
        f" + added {proof['counts']['added']:,} - deleted 0 |" in text and "Checked: 4 repositories" in text
