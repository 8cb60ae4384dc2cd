"""``sync --state``: the final pass reads the destination from the record of the last clean pass
instead of listing it. Against moto's S3 server over real HTTP, and across every backend."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

from cli_runner import regmig
from conftest import list_keys, local_files
from migrate import tree
from migrate.sample import SampleRegistry
from migrate.storage import filesystem
from migrate.storage.filesystem import FilesystemStorage
from servers import Backend

TAG_LATEST = "docker/registry/v2/repositories/library/alpine/_manifests/tags/latest/current/link"
TAG_320 = "docker/registry/v2/repositories/library/alpine/_manifests/tags/3.20/current/link"
TEAM_TAGS = "docker/registry/v2/repositories/team-a/tools/_manifests/tags"


def registry_files(registry: SampleRegistry) -> dict[str, bytes]:
    return {path: data for path, data in local_files(registry.root).items() if not tree.is_excluded(path)}


def sync(registry: SampleRegistry, url: str, *extra: str):  # type: ignore[no-untyped-def]
    return regmig("sync", registry.root, url, "--json", *extra)


def change_source(registry: SampleRegistry) -> None:
    """A tag moves (same 71 bytes, new content), a repository's tags go, a new tag appears."""
    Path(registry.root, TAG_LATEST).write_bytes(Path(registry.root, TAG_320).read_bytes())
    for path in Path(registry.root, TEAM_TAGS).rglob("*"):
        if path.is_file():
            path.unlink()
    new_tag = Path(registry.root, TAG_LATEST.replace("/latest/", "/edge/"))
    new_tag.parent.mkdir(parents=True)
    new_tag.write_bytes(Path(registry.root, TAG_320).read_bytes())


def test_final_pass_from_state_matches_the_source_without_listing(registry, s3, bucket, s3_endpoint,  # type: ignore[no-untyped-def]
                                                                   tmp_path) -> None:
    url, state = f"s3://{bucket}/registry", str(tmp_path / "dest.state")
    first = sync(registry, url, "--endpoint-url", s3_endpoint, "--state", state)
    assert first.exit_code == 0, first.stdout
    assert Path(state).exists()
    assert any(note.startswith("state file written") for note in first.json()["notes"])

    change_source(registry)
    # Written behind regmig's back: only a listing would see it, and the record says it is not there.
    s3.put_object(Bucket=bucket, Key=f"registry/{tree.REPOSITORIES}ghost/_manifests/tags/x/current/link",
                  Body=b"sha256:" + b"1" * 64)
    final = sync(registry, url, "--endpoint-url", s3_endpoint, "--state", state, "--delete")
    report = final.json()
    assert final.exit_code == 0, final.stdout
    assert any(note.startswith("destination not listed") for note in report["notes"])
    assert report["lists"]["changed"]["listed"] == [{"path": TAG_LATEST}]
    assert report["outcomes"]["uploaded"]["count"] == 2  # the moved tag and the new one
    assert report["outcomes"]["deleted"]["count"] == 2   # team-a/tools' two tag links
    stored = list_keys(s3, bucket, "registry/")
    ghost = f"registry/{tree.REPOSITORIES}ghost/_manifests/tags/x/current/link"
    assert {k: v for k, v in stored.items() if k != ghost} == \
        {"registry/" + p: d for p, d in registry_files(registry).items()}

    # verify lists both sides: it is what catches a destination written behind the record's back.
    checked = regmig("verify", registry.root, url, "--endpoint-url", s3_endpoint, "--json").json()
    assert checked["exit_code"] == 1
    assert [i["path"] for i in checked["lists"]["extra in destination"]["listed"]] == [ghost[len("registry/"):]]

    # The record the final pass wrote is used by the next: nothing to do.
    again = sync(registry, url, "--endpoint-url", s3_endpoint, "--state", state).json()
    assert "uploaded" not in again["outcomes"] and again["exit_code"] == 0


def test_a_final_pass_reads_only_the_files_written_since_the_record(registry, s3, bucket, s3_endpoint,  # type: ignore[no-untyped-def]
                                                                   tmp_path, monkeypatch) -> None:
    """Stamps: the record keeps each compared file's device, inode, mtime and ctime, so the final
    pass reads only what was written since, and still catches a tag moved to same-size content."""
    monkeypatch.setattr(filesystem, "STAMP_MARGIN_NS", 200_000_000)
    time.sleep(0.3)  # the sample tree's files settle: every one is stamped
    url, state = f"s3://{bucket}", str(tmp_path / "dest.state")
    assert sync(registry, url, "--endpoint-url", s3_endpoint, "--state", state).exit_code == 0
    links = [line.split("\t") for line in gzip.decompress(Path(state).read_bytes()).decode().splitlines()[1:-1]
             if line.split("\t")[0].endswith("/link")]
    assert links and all(len(fields) == 4 for fields in links)  # path, size, MD5, stamp

    change_source(registry)  # at once: the moved tag's new ctime may share a clock tick with the record's
    Path(registry.root, TAG_320).write_bytes(Path(registry.root, TAG_320).read_bytes())  # rewritten, same bytes
    reads: list[str] = []
    real_read = FilesystemStorage.read
    monkeypatch.setattr(FilesystemStorage, "read", lambda self, path: reads.append(path) or real_read(self, path))
    final = sync(registry, url, "--endpoint-url", s3_endpoint, "--state", state, "--delete")
    assert final.exit_code == 0, final.stdout
    assert sorted(reads) == sorted([TAG_LATEST, TAG_320, TAG_LATEST.replace("/latest/", "/edge/")])
    assert final.json()["lists"]["changed"]["listed"] == [{"path": TAG_LATEST}]
    assert list_keys(s3, bucket) == registry_files(registry)

    # A record of an older format carries no generation token: it cannot tell whether anything else
    # wrote the destination since, so it is not used; the pass lists the destination and says why.
    header, *body = gzip.decompress(Path(state).read_bytes()).decode().splitlines()
    old = [json.dumps({key: value for key, value in json.loads(header).items() if key not in ("generation", "service")}
                      | {"format": 2})] + body
    Path(state).write_bytes(gzip.compress(("\n".join(old) + "\n").encode()))
    again = sync(registry, url, "--endpoint-url", s3_endpoint, "--state", state, "--delete")
    assert again.exit_code == 0 and "uploaded" not in again.json()["outcomes"]
    assert "state file not used: it was written by an older regmig (format 2), without a generation token" in \
        " ".join(again.json()["notes"])


def test_the_state_file_is_locked_while_a_pass_uses_it(registry, s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two passes with one --state file (even against two destinations) would both consume and rewrite it."""
    import fcntl
    import os

    url, state = f"s3://{bucket}", str(tmp_path / "dest.state")
    assert sync(registry, url, "--endpoint-url", s3_endpoint, "--state", state).exit_code == 0
    fd = os.open(state + ".lock", os.O_RDWR | os.O_CREAT)  # as another regmig holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.pwrite(fd, b"pid 4242\n", 0)
        busy = regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint, "--state", state, "--delete")
        preview = regmig("plan", registry.root, url, "--endpoint-url", s3_endpoint, "--state", state, "--no-probe")
    finally:
        os.close(fd)
    for refused in (busy, preview):
        assert refused.exit_code == 2 and f"--state {state} is in use by another regmig (pid 4242)" in refused.stderr
    assert Path(state).exists()  # not consumed by the refused pass
    assert "destination not listed" in " ".join(sync(registry, url, "--endpoint-url", s3_endpoint, "--state",
                                                     state).json()["notes"])


def test_an_unclean_pass_leaves_no_record_and_a_dry_run_leaves_it_alone(registry, s3, bucket, s3_endpoint,  # type: ignore[no-untyped-def]
                                                                        tmp_path) -> None:
    url, state = f"s3://{bucket}", str(tmp_path / "dest.state")
    assert sync(registry, url, "--endpoint-url", s3_endpoint, "--state", state).exit_code == 0
    before = Path(state).read_bytes()
    change_source(registry)
    dry = sync(registry, url, "--endpoint-url", s3_endpoint, "--state", state, "--delete", "--dry-run")
    assert dry.exit_code == 0 and Path(state).read_bytes() == before
    assert dry.json()["outcomes"]["would delete"]["count"] == 2

    refused = sync(registry, url, "--endpoint-url", s3_endpoint, "--state", state, "--delete", "--max-delete", "1")
    assert refused.exit_code == 1
    assert not Path(state).exists()  # consumed, and not rewritten: it would no longer match
    assert any("no state file written (deletions refused)" in note for note in refused.json()["notes"])
    # Without a record the next pass lists the bucket, and finds the two extras itself.
    relisted = sync(registry, url, "--endpoint-url", s3_endpoint, "--state", state, "--delete").json()
    assert relisted["outcomes"]["deleted"]["count"] == 2
    assert not any(note.startswith("destination not listed") for note in relisted["notes"])
    assert list_keys(s3, bucket) == registry_files(registry)


def test_bad_records_are_refused_and_nothing_is_deleted(registry, s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url, state = f"s3://{bucket}/registry", str(tmp_path / "dest.state")
    assert sync(registry, url, "--endpoint-url", s3_endpoint, "--state", state).exit_code == 0
    record = gzip.decompress(Path(state).read_bytes()).decode()

    other = regmig("sync", registry.root, f"s3://{bucket}/elsewhere", "--endpoint-url", s3_endpoint, "--state", state)
    assert other.exit_code == 2
    assert f"written for destination s3://{bucket}/registry (s3 driver" in other.stderr and len(other.stderr.splitlines()) == 1
    assert Path(state).exists()  # refused before it was consumed

    inside = regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint, "--state",
                    str(Path(registry.root, "dest.state")))
    assert inside.exit_code == 2 and "inside the source tree" in inside.stderr

    # Cut short (a full disk, a copy interrupted): the count line is missing.
    for path in Path(registry.root, TEAM_TAGS).rglob("*"):
        if path.is_file():
            path.unlink()
    stored = list_keys(s3, bucket, "registry/")
    Path(state).write_bytes(gzip.compress("\n".join(record.splitlines()[:-5]).encode() + b"\n"))
    truncated = regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint, "--state", state, "--delete")
    assert truncated.exit_code == 1 and "is truncated after" in truncated.stderr
    assert list_keys(s3, bucket, "registry/") == stored  # nothing deleted

    Path(state).write_text("not a state file\n")
    garbage = regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint, "--state", state, "--delete")
    assert garbage.exit_code == 2 and "not a regmig state file" in garbage.stderr
    assert list_keys(s3, bucket, "registry/") == stored


def test_state_passes_on_every_backend(backend: Backend, registry: SampleRegistry, tmp_path: Path) -> None:
    url, state = backend.url("registry"), str(tmp_path / "dest.state")
    prefix = backend.key_prefix("registry")
    assert sync(registry, url, *backend.args, "--state", state).exit_code == 0
    change_source(registry)
    final = sync(registry, url, *backend.args, "--state", state, "--delete")
    assert final.exit_code == 0, final.stdout
    assert final.json()["outcomes"]["deleted"]["count"] == 2
    assert backend.keys() == {prefix + path: data for path, data in registry_files(registry).items()}
    assert regmig("verify", registry.root, url, *backend.args).exit_code == 0
