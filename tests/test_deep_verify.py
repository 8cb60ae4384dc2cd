"""``verify --deep`` at scale: links proved by the listing, not read; what is read, and why.

Every GET the verifier sends goes through a counting proxy in front of the real server (Ceph RGW
and moto), so the tests see exactly which objects were read.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from cli_runner import regmig
from conftest import regmigs_own
from faultproxy import FaultProxy, Faults, ResponseFilter
from migrate import tree
from migrate.progress import Meter, plain_line
from migrate.report import Report
from migrate.sample import SampleRegistry
from test_trust import kms_etags

ROOT = "r"
ALPINE = f"{tree.REPOSITORIES}library/alpine"
TOOLS = f"{tree.REPOSITORIES}team-a/tools"
DEEP_PHASES = ["listing and comparing", "indexing links", "checking tags", "reading manifests",
               "checking references", "hashing blobs"]


@pytest.fixture
def synced(registry: SampleRegistry, bucket: str, s3_endpoint: str) -> str:
    url = f"s3://{bucket}/{ROOT}"
    assert regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint).exit_code == 0
    return url


def object_gets(faults: Faults) -> Counter[str]:
    """Registry paths of the objects read (GET without a query: listings carry one); regmig's own
    generation token, read once to learn whether listed ETags are MD5s, is left out."""
    reads: Counter[str] = Counter()
    for _, method, target, _ in faults.log:
        parts = urlsplit(target)
        if method == "GET" and not parts.query:
            key = unquote(parts.path).split("/", 2)[2]  # /bucket/key (path style)
            if not regmigs_own(key):
                reads[key.removeprefix(f"{ROOT}/")] += 1
    return reads


def listed(s3, bucket: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Registry path -> ETag as the bucket lists it."""
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{ROOT}/"):
        for obj in page.get("Contents", ()):
            out[obj["Key"].removeprefix(f"{ROOT}/")] = obj["ETag"].strip('"')
    return out


def deep_verify(endpoint: str, *locations: str, extra: tuple[str, ...] = (),
                response_filter: ResponseFilter | None = None) -> tuple[dict, Counter[str]]:  # type: ignore[type-arg]
    faults = Faults() if response_filter is None else Faults(response_filter=response_filter)
    with FaultProxy(endpoint, faults) as proxy:
        result = regmig("verify", *locations, "--endpoint-url", proxy.url, "--deep", "--json", *extra)
    assert result.exit_code in (0, 1), result.stderr
    return result.json(), object_gets(faults)


def problems(report: dict) -> str:  # type: ignore[type-arg]
    return " | ".join(f["problem"] for group in report["findings"] for f in group["findings"])


def test_links_are_proved_by_the_listing_and_blobs_by_the_source(registry, synced, s3, bucket,  # type: ignore[no-untyped-def]
                                                                 s3_endpoint) -> None:
    objects = listed(s3, bucket)
    links = {p for p in objects if tree.classify(p).kind in tree.LINK_KINDS}
    tags = {p for p in links if tree.classify(p).kind is tree.Kind.TAG_LINK}
    blobs = {p for p in objects if tree.classify(p).kind is tree.Kind.BLOB_DATA}
    multipart = {p for p in blobs if "-" in objects[p]}  # the 12 MiB layer: its ETag is no MD5
    assert links and tags and multipart

    # With the source: no link is read, and only blobs whose ETag is no MD5 come from the bucket.
    report, reads = deep_verify(s3_endpoint, registry.root, synced)
    assert report["exit_code"] == 0, report
    assert set(reads) == multipart
    counts = report["deep_counts"]
    assert counts["links_read"] == 0 and counts["links_proved_by_listing"] + counts["links_proved_by_source"] == len(links)
    assert counts["read_from_source"] == len(blobs) - len(multipart)

    # The bucket alone: tag links are read (their path names no digest), the other links are not;
    # every blob is read once (a manifest's parse also hashes it).
    report, reads = deep_verify(s3_endpoint, synced)
    assert report["exit_code"] == 0, report
    assert {p for p in reads if p in links} == tags
    assert {p: n for p, n in reads.items() if p in blobs} == {p: 1 for p in blobs}
    assert report["deep_counts"]["links_proved_by_listing"] == len(links) - len(tags)

    # A destination blob of the right size but other bytes is read there and found, although the
    # source's copy is sound: its MD5 is not the source file's.
    manifest = tree.blob_path(Path(registry.root, TOOLS, "_manifests/tags/2026.11/current/link").read_text())
    layer = next(p for p in blobs if p != manifest and p not in multipart and 1000 < s3.head_object(
        Bucket=bucket, Key=f"{ROOT}/{p}")["ContentLength"] < 100_000)
    for path in (manifest, layer):
        size = s3.head_object(Bucket=bucket, Key=f"{ROOT}/{path}")["ContentLength"]
        s3.put_object(Bucket=bucket, Key=f"{ROOT}/{path}", Body=b"x" * size)
    report, reads = deep_verify(s3_endpoint, registry.root, synced)
    assert report["exit_code"] == 1
    assert {manifest, layer} <= set(reads)
    found = [(f["path"], f["problem"]) for g in report["findings"] for f in g["findings"]]
    assert (layer, f"blob data does not hash to {tree.classify(layer).digest}") in found
    assert any(path == manifest and "does not parse" in problem for path, problem in found)
    assert (manifest, f"blob data does not hash to {tree.classify(manifest).digest}") in found


def test_a_link_whose_md5_is_not_its_digests_is_read_to_say_what_it_holds(registry, synced, s3, bucket,  # type: ignore[no-untyped-def]
                                                                          s3_endpoint) -> None:
    objects = listed(s3, bucket)
    tags = {p for p in objects if tree.classify(p).kind is tree.Kind.TAG_LINK}
    layer = next(p for p in objects if p.startswith(f"{ALPINE}/_layers/"))
    revision = next(p for p in objects if p.startswith(f"{TOOLS}/_manifests/revisions/"))
    index = next(p for p in objects if p.startswith(f"{ALPINE}/_manifests/tags/3.20/index/"))
    moved = f"{ALPINE}/_manifests/tags/3.21/current/link"
    other = "sha256:" + "c" * 64
    planted = {layer: s3.get_object(Bucket=bucket, Key=f"{ROOT}/{layer}")["Body"].read() + b"\n",
               revision: other.encode(), index: b"", moved: ("sha256:" + "f" * 64).encode()}
    for path, body in planted.items():
        s3.put_object(Bucket=bucket, Key=f"{ROOT}/{path}", Body=body)

    for locations, reads_expected in (((synced,), {layer, revision, index} | tags),
                                      ((registry.root, synced), set(planted))):
        report, reads = deep_verify(s3_endpoint, *locations)
        assert report["exit_code"] == 1
        assert {p for p in reads if p.endswith("/link")} == reads_expected
        assert report["deep_counts"]["links_read"] == len(reads_expected)
        found = problems(report)
        assert "malformed link (trailing newline)" in found
        assert f"link holds {other}, its path names sha256:{revision.split('/')[-2]}" in found
        assert "malformed link (empty)" in found
        assert "tag 3.21 points at sha256:fff" in found
        groups = {g["repository"]: g for g in report["findings"]}
        assert {"3.20", "3.21"} <= set(groups["library/alpine"]["tags"])


def test_links_listed_without_an_md5_are_read_and_the_report_says_so(registry, synced, s3, bucket,  # type: ignore[no-untyped-def]
                                                                     s3_endpoint) -> None:
    """With SSE-KMS (as AWS encrypts) an ETag is no MD5: nothing can be proved from the listing. The
    proxy gives every ETag as SSE-KMS does; verify finds it out from its generation token."""
    objects = listed(s3, bucket)
    links = {p for p in objects if tree.classify(p).kind in tree.LINK_KINDS}
    layer = next(p for p in objects if p.startswith(f"{ALPINE}/_layers/"))
    s3.put_object(Bucket=bucket, Key=f"{ROOT}/{layer}", Body=b"sha256:" + b"d" * 64)
    report, reads = deep_verify(s3_endpoint, synced, response_filter=kms_etags)
    assert report["exit_code"] == 1
    assert {p for p in reads if p.endswith("/link")} == links
    assert report["deep_counts"]["links_without_md5"] == len(links)
    assert any("listed without an MD5" in note and "SSE-KMS" in note for note in report["notes"])
    assert f"link holds sha256:{'d' * 64}" in problems(report)
    with FaultProxy(s3_endpoint, Faults(response_filter=kms_etags)) as proxy:
        text = regmig("verify", synced, "--endpoint-url", proxy.url, "--deep").stdout
    assert f"{len(links):,} link objects were listed without an MD5" in text
    # With the source, the comparison reads them (as a plain verify does) and the report says so too.
    report, reads = deep_verify(s3_endpoint, registry.root, synced, response_filter=kms_etags)
    assert {p for p in reads if p.endswith("/link")} == links
    assert report["deep_counts"]["links_without_md5"] == len(links)
    assert any("listed without an MD5" in note for note in report["notes"])
    assert f"link holds sha256:{'d' * 64}" in problems(report)


def test_verify_records_its_phases(registry, synced, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    manifests = {p.parent.name for p in Path(registry.root).rglob("_manifests/revisions/sha256/*/link")}
    tags = list(Path(registry.root).rglob("_manifests/tags/*/current/link"))
    report = regmig("verify", registry.root, synced, "--endpoint-url", s3_endpoint, "--deep", "--json").json()
    phases = {phase["phase"]: phase for phase in report["phases"]}
    assert list(phases) == DEEP_PHASES
    assert all(phase["seconds"] is not None and phase["seconds"] >= 0 for phase in phases.values())
    assert phases["reading manifests"]["items"] == phases["reading manifests"]["total"] == len(manifests)
    assert phases["checking tags"]["total"] == len(tags)
    plain = regmig("verify", registry.root, synced, "--endpoint-url", s3_endpoint, "--json").json()
    assert [phase["phase"] for phase in plain["phases"]] == ["listing and comparing"]


def test_the_progress_line_shows_the_running_phase() -> None:
    report = Report()
    report.begin_phase("reading manifests", total=40)
    report.advance(3)
    for _ in range(5):
        report.examined_one()
    line = plain_line(Meter(report, "verify").sample())
    assert line.startswith("verify: reading manifests 3/40: 5 objects")
    report.end_phases()
    assert "reading manifests" not in plain_line(Meter(report, "verify").sample())
