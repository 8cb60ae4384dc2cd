"""``verify --cutover-time``: the proof of the copy after the registry was switched over to the
bucket, read-write. What the registry wrote since is its own, what is older must match the frozen
source, a blob gone is a failure, a link gone is a warning (or, in a versioned bucket, told apart).

Times come from each service's listing (Ceph RGW, moto, Azurite, fake-gcs-server, files), so every
backend must give them; the last test runs the real registry on Ceph RGW.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

import realregistry as rr
from cli_runner import regmig
from conftest import new_bucket, s3_client
from migrate import tree
from migrate.outcome import PathList
from migrate.sample import SampleRegistry
from migrate.storage import Storage, open_location
from test_registry_end_to_end import snippet_storage
from test_storage_contract import BACKENDS, PATHS, fill, options_for, storage  # noqa: F401 (fixture)

WRITTEN_AFTER_CUTOVER = PathList.WRITTEN_AFTER_CUTOVER.value
DELETED_AFTER_CUTOVER = PathList.DELETED_AFTER_CUTOVER.value
GONE_OR_LOST = PathList.GONE_OR_LOST.value

ROOT = "r"
ALPINE = f"{tree.REPOSITORIES}library/alpine"
TOOLS = f"{tree.REPOSITORIES}team-a/tools"


def cut_over() -> str:
    """The cut-over time, to the second, once the clock has passed the second of every write so
    far: earlier writes list as older than it, later ones as at or after it."""
    time.sleep(1.1)
    return datetime.fromtimestamp(time.time(), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def paths(report: dict, name: str) -> list[str]:  # type: ignore[type-arg]
    return sorted(item["path"] for item in report["lists"].get(name, {}).get("listed", []))


@pytest.mark.parametrize("storage", BACKENDS, indirect=True)
def test_every_listing_gives_the_time_an_object_was_written(storage: Storage, request, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    before = time.time()
    fill(storage, PATHS[:2])
    after = time.time()
    views = [storage]
    if storage.url.startswith("s3://"):  # the boto3 path too, not only the lean listing
        monkeypatch.setenv("REGMIG_S3_LEAN", "0")
        views.append(open_location(storage.url, options_for(request, request.node.callspec.params["storage"])))
    for view in views:
        for entry in [*view.walk(), view.stat(PATHS[0])]:
            assert entry is not None and entry.modified is not None, entry
            assert before - 2 <= entry.modified <= after + 2, (entry, before, after)


def test_the_cutover_time_is_iso_8601_in_utc(registry, bucket, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    url = f"s3://{bucket}/{ROOT}"
    assert regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint).exit_code == 0
    for value in ("2026-11-22T07:00:00", "2026-11-22T08:00:00+01:00", "now", "yesterday", ""):
        result = regmig("verify", registry.root, url, "--endpoint-url", s3_endpoint, "--cutover-time", value)
        assert result.exit_code == 2, (value, result.stdout)
        assert "ISO 8601" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    alone = regmig("verify", url, "--endpoint-url", s3_endpoint, "--cutover-time", "2026-11-22T07:00:00Z")
    assert alone.exit_code == 2 and "needs SOURCE" in alone.stderr
    strict = regmig("verify", registry.root, url, "--endpoint-url", s3_endpoint, "--strict")
    assert strict.exit_code == 2 and "--strict needs --cutover-time" in strict.stderr
    for value in ("2026-11-22T07:00:00Z", "2026-11-22T07:00:00.250+00:00"):
        ok = regmig("verify", registry.root, url, "--endpoint-url", s3_endpoint, "--cutover-time", value, "--json")
        assert ok.exit_code == 0 and ok.json()["cutover"]["time"] == "2026-11-22T07:00:00Z"


def test_after_the_cut_over_the_registrys_writes_are_its_own_and_the_rest_must_match(  # type: ignore[no-untyped-def]
        registry, s3, bucket, s3_endpoint, tmp_path) -> None:
    url = f"s3://{bucket}/{ROOT}"
    assert regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint).exit_code == 0
    key = f"{ROOT}/"
    # Before the cut-over: a tag link changed behind regmig's back (same size, other content).
    tag_320 = f"{ALPINE}/_manifests/tags/3.20/current/link"
    latest = Path(registry.root, ALPINE, "_manifests/tags/latest/current/link").read_bytes()
    s3.put_object(Bucket=bucket, Key=key + tag_320, Body=latest)
    cutover = cut_over()
    # After it, as the registry writes: a new image, a moved tag, a deleted tag.
    pushed = SampleRegistry(str(tmp_path / "pushed"))
    new_manifest = pushed.image("library/alpine", "new", [b"a layer pushed after the cut-over"])
    new_paths = sorted(p.relative_to(pushed.root).as_posix() for p in Path(pushed.root).rglob("*") if p.is_file())
    for path in new_paths:
        s3.put_object(Bucket=bucket, Key=key + path, Body=Path(pushed.root, path).read_bytes())
    moved = f"{ALPINE}/_manifests/tags/3.21/current/link"
    s3.put_object(Bucket=bucket, Key=key + moved, Body=new_manifest.encode())
    deleted = sorted(p.relative_to(registry.root).as_posix()
                     for p in Path(registry.root, TOOLS, "_manifests/tags").rglob("link"))
    for path in deleted:
        s3.delete_object(Bucket=bucket, Key=key + path)

    def verify(*extra: str) -> dict:  # type: ignore[type-arg]
        return regmig("verify", registry.root, url, "--endpoint-url", s3_endpoint, "--cutover-time", cutover,
                      "--json", *extra).json()

    assert regmig("verify", registry.root, url, "--endpoint-url", s3_endpoint).exit_code == 1
    report = verify("--deep")
    assert report["exit_code"] == 1
    assert paths(report, "content differs") == [tag_320]  # older than the cut-over: must match the source
    assert paths(report, WRITTEN_AFTER_CUTOVER) == sorted([*new_paths, moved])
    assert paths(report, GONE_OR_LOST) == deleted
    for name in ("missing in destination", "extra in destination", "size differs", "failures"):
        assert paths(report, name) == [], name
    assert report["findings"] == []  # the tree as the registry left it makes sense to a registry
    assert report["cutover"] == {"time": cutover, "strict": False, "untimed_objects": 0}

    # Written again after the cut-over, the tag is the registry's; gone links warn, and fail with --strict.
    s3.put_object(Bucket=bucket, Key=key + tag_320, Body=Path(registry.root, tag_320).read_bytes())
    report = verify()
    assert report["exit_code"] == 0, report["lists"]
    assert any("deleted through the registry after the cut-over, or lost" in note for note in report["notes"])
    text = regmig("verify", registry.root, url, "--endpoint-url", s3_endpoint, "--cutover-time", cutover).stdout
    assert text.startswith("verify OK") and f"deleted after the cut-over, or lost ({len(deleted)})" in text
    assert verify("--strict")["exit_code"] == 1
    # The same proof as shards in worker processes: each settles its own pairs, the counts add up.
    sharded = verify("--processes", "2", "--shards", "4")
    assert sharded["exit_code"] == 0 and sharded["cutover"] == report["cutover"]
    for name in (WRITTEN_AFTER_CUTOVER, GONE_OR_LOST, "content differs", "missing in destination"):
        assert paths(sharded, name) == paths(report, name), name

    # A blob gone is never the registry's doing (only garbage collection deletes blobs).
    blob = tree.blob_path(Path(registry.root, ALPINE, "_manifests/tags/3.20/current/link").read_text())
    s3.delete_object(Bucket=bucket, Key=key + blob)
    report = verify()
    assert report["exit_code"] == 1
    assert paths(report, "missing in destination") == [blob]


def test_a_versioned_bucket_tells_links_deleted_since_from_lost_ones(registry, s3, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    bucket = new_bucket(s3)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    url = f"s3://{bucket}/{ROOT}"
    assert regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint).exit_code == 0
    lost = f"{TOOLS}/_manifests/tags/2026.11/current/link"
    s3.delete_object(Bucket=bucket, Key=f"{ROOT}/{lost}")  # before the cut-over: the copy lacked it
    cutover = cut_over()
    gone = f"{ALPINE}/_manifests/tags/3.21/current/link"
    s3.delete_object(Bucket=bucket, Key=f"{ROOT}/{gone}")  # after it: the registry's delete

    def verify() -> dict:  # type: ignore[type-arg]
        return regmig("verify", registry.root, url, "--endpoint-url", s3_endpoint, "--cutover-time", cutover,
                      "--strict", "--json").json()

    report = verify()
    assert report["exit_code"] == 1
    assert paths(report, "missing in destination") == [lost]
    assert report["lists"]["missing in destination"]["listed"][0]["message"] == "no delete marker since the cut-over"
    assert paths(report, DELETED_AFTER_CUTOVER) == [gone]
    assert paths(report, GONE_OR_LOST) == []
    s3.put_object(Bucket=bucket, Key=f"{ROOT}/{lost}", Body=Path(registry.root, lost).read_bytes())
    report = verify()
    assert report["exit_code"] == 0, report["lists"]
    assert paths(report, WRITTEN_AFTER_CUTOVER) == [lost]


@pytest.mark.registry
def test_the_copy_is_proved_while_the_real_registry_serves_from_the_bucket(tmp_path: Path, rgw_endpoint: str) -> None:
    s3 = s3_client(rgw_endpoint)
    bucket = new_bucket(s3)
    url = f"s3://{bucket}/registry"
    work = tmp_path / "work"
    source_root = tmp_path / "fs-registry"
    layout = rr.Layout(work / "layout")
    layout.image({"etc/os-release": b"ID=base\n"}, ref="base")
    layout.image({"bin/tool": b"v1"}, ref="v1")
    layout.image({"bin/tool": b"v2"}, ref="v2")
    layout.image({"bin/old": b"old"}, ref="old")
    with rr.running_registry({"filesystem": {"rootdirectory": str(source_root)}}, work) as source:
        rr.push(layout.path, "base", source, "library/alpine:3.20", work)
        rr.push(layout.path, "v1", source, "team/tool:stable", work)
        rr.push(layout.path, "old", source, "team/tool:old", work)
        old = rr.manifest_digest(source, "team/tool", "old")
    assert old
    assert regmig("sync", str(source_root), url, "--endpoint-url", rgw_endpoint).exit_code == 0
    cutover = cut_over()

    # The cut-over: the registry serves from the bucket, read-write; pushes and deletes go there.
    storage = snippet_storage(url, rgw_endpoint)
    storage["maintenance"] = {"readonly": {"enabled": False}}  # the proof comes after: no read-only window
    with rr.running_registry(storage, work) as migrated:
        rr.push(layout.path, "v2", migrated, "team/tool:stable", work)  # a moved tag, new blobs
        rr.push(layout.path, "v2", migrated, "group/new:v2", work)  # a new repository
        rr.delete_manifest(migrated, "team/tool", old)  # its revision and its tag go
        served = rr.snapshot(migrated)
    assert set(served) == {"library/alpine", "team/tool", "group/new"} and "old" not in served["team/tool"]

    def verify(*extra: str) -> dict:  # type: ignore[type-arg]
        return regmig("verify", str(source_root), url, "--endpoint-url", rgw_endpoint, "--cutover-time", cutover,
                      "--json", *extra).json()

    assert regmig("verify", str(source_root), url, "--endpoint-url", rgw_endpoint).exit_code == 1
    report = verify("--deep")
    assert report["exit_code"] == 0, (report["lists"], report["findings"])
    old_tag = f"{tree.REPOSITORIES}team/tool/_manifests/tags/old/current/link"
    old_revision = f"{tree.REPOSITORIES}team/tool/_manifests/revisions/{old.replace(':', '/')}/link"
    assert {old_tag, old_revision} <= set(paths(report, GONE_OR_LOST))
    written = paths(report, WRITTEN_AFTER_CUTOVER)
    assert f"{tree.REPOSITORIES}team/tool/_manifests/tags/stable/current/link" in written
    assert any(path.startswith(f"{tree.REPOSITORIES}group/new/") for path in written)
    assert any(path.startswith(tree.BLOBS) for path in written)
    assert verify("--strict")["exit_code"] == 1

    # A blob removed behind the registry's back is caught.
    blob = next(p.relative_to(source_root).as_posix() for p in sorted(source_root.rglob("data"))
                if p.relative_to(source_root).as_posix().startswith(tree.BLOBS))
    s3.delete_object(Bucket=bucket, Key=f"registry/{blob}")
    report = verify()
    assert report["exit_code"] == 1
    assert paths(report, "missing in destination") == [blob]


def test_plan_estimates_the_window_as_the_final_pass_and_the_proof(registry, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The proof is timed from the destination's own listing (slowed here to half a second a page)
    and added to the final pass."""
    from faultproxy import FaultProxy, Faults

    url = f"s3://{bucket}/{ROOT}"
    state = str(tmp_path / "regmig.state")
    files = [p for p in Path(registry.root).rglob("*") if p.is_file() and "/_uploads/" not in p.as_posix()]
    slow = False
    slow_listing = Faults(rule=lambda method, path: "stall-short" if slow and "list-type=2" in path else None)
    with FaultProxy(s3_endpoint, slow_listing) as proxy:  # the record is bound to the endpoint: one for both
        assert regmig("sync", registry.root, url, "--endpoint-url", proxy.url, "--state", state).exit_code == 0
        slow = True
        report = regmig("plan", registry.root, url, "--endpoint-url", proxy.url, "--state", state, "--json").json()
        text = regmig("plan", registry.root, url, "--endpoint-url", proxy.url, "--state", state).stdout
    estimate = report["estimate"]
    assert estimate["objects_after_final_pass"] == len(files)
    # The timed listing takes every key under the root, regmig's own (generation token, lease) too.
    keys = s3_client(s3_endpoint).list_objects_v2(Bucket=bucket, Prefix=f"{ROOT}/")["KeyCount"]
    assert 0 < estimate["listing_objects_per_second"] <= round(keys / 0.5)
    rate = estimate["listing_objects_per_second"]
    assert estimate["proof_seconds"] >= max(0.5, len(files) / rate - 0.1)
    assert abs(estimate["read_only_window_seconds"] - estimate["final_pass_seconds"] - estimate["proof_seconds"]) < 0.2
    assert "estimated read-only window:" in text and "+ verify" in text and "verify --cutover-time" in text
    # The final pass proving what it leaves (sync --verify) lists once; with nothing pending it is that listing.
    assert abs(estimate["one_pass_window_seconds"] - estimate["proof_seconds"]) < 0.2
    assert "(sync --delete --verify)" in text
