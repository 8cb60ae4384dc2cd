"""``sync --state``: the final pass reads the destination from the record of the last clean pass
instead of listing it. Against moto's S3 server over real HTTP, and across every backend."""

from __future__ import annotations

import gzip
from pathlib import Path

from cli_runner import regmig
from conftest import list_keys, local_files
from migrate import tree
from migrate.sample import SampleRegistry
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
