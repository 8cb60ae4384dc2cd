"""Trust (issue 13): a state record belongs to one destination, a job's exception is a result,
one writer at a time, the source is what it was, content compared without MD5 ETags, and
uploads the service checks. Against real servers over HTTP, through the fault proxy where a
service must misbehave; the real registry proves what the copy serves."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest

import realregistry as rr
from cli_runner import regmig
from conftest import ACCESS_KEY, SECRET_KEY, list_keys, local_files, make_backend
from faultproxy import Faults, FaultProxy
from migrate import tree
from migrate.sample import SampleRegistry
from migrate.storage import LocationOptions, open_location
from migrate.storage.options import AzureOptions, S3Options
from servers import Backend, free_port, stop

REGMIG = [sys.executable, "-m", "migrate"]
ROOT = "registry"
TAG_LATEST = "docker/registry/v2/repositories/library/alpine/_manifests/tags/latest/current/link"
TAG_320 = "docker/registry/v2/repositories/library/alpine/_manifests/tags/3.20/current/link"
TEAM_TAGS = "docker/registry/v2/repositories/team-a/tools/_manifests/tags"


def registry_files(registry: SampleRegistry, prefix: str = "") -> dict[str, bytes]:
    return {prefix + path: data for path, data in local_files(registry.root).items() if not tree.is_excluded(path)}


def sync(registry: SampleRegistry, url: str, *extra: str):  # type: ignore[no-untyped-def]
    return regmig("sync", registry.root, url, "--json", *extra)


def notes(result) -> str:  # type: ignore[no-untyped-def]
    return "\n".join(result.json()["notes"])


def source_tags(registry: SampleRegistry) -> dict[str, dict[str, str]]:
    """Every repository's tags and the manifest each points at, as the source tree has them."""
    tags: dict[str, dict[str, str]] = {}
    for path, data in registry_files(registry).items():
        info = tree.classify(path)
        if info.kind is tree.Kind.TAG_LINK:
            tags.setdefault(info.repository or "", {})[info.tag or ""] = data.decode()
    return tags


def served_tags(endpoint: str, bucket: str, work: Path) -> dict[str, dict[str, str | None]]:
    """What Debian's docker-registry on its s3 driver serves from the bucket: tags and their digests."""
    storage = {"s3": {"region": "us-east-1", "regionendpoint": endpoint, "bucket": bucket, "rootdirectory": f"/{ROOT}",
                      "secure": False, "v4auth": True, "accesskey": ACCESS_KEY, "secretkey": SECRET_KEY}}
    with rr.running_registry(storage, work) as base:
        return rr.snapshot(base)


@pytest.fixture(scope="module")
def other_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second S3 service (moto's server in a process of its own: in this one it would share the
    first one's buckets), for the record written against another service."""
    moto = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if moto is None:
        pytest.fail("moto_server is not installed in the virtualenv: run `make install`", pytrace=False)
    port = free_port()
    log = tmp_path_factory.mktemp("other-s3") / "moto.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


# --- 1. a record belongs to exactly one destination ------------------------------------------------

def test_a_record_for_another_service_is_refused_and_one_behind_the_same_name_is_not_used(  # type: ignore[no-untyped-def]
        registry, s3, bucket, s3_endpoint, other_s3, tmp_path) -> None:
    url, state = f"s3://{bucket}/{ROOT}", str(tmp_path / "rehearsal.state")
    other = boto3.client("s3", endpoint_url=other_s3, region_name="us-east-1")
    other.create_bucket(Bucket=bucket)  # an empty bucket of the same name on another service
    assert sync(registry, url, "--endpoint-url", s3_endpoint, "--state", state).exit_code == 0

    refused = regmig("sync", registry.root, url, "--endpoint-url", other_s3, "--state", state, "--delete")
    assert refused.exit_code == 2, refused.stdout
    assert f"written for service s3 {s3_endpoint} " in refused.stderr and len(refused.stderr.splitlines()) == 1
    assert list_keys(other, bucket) == {} and Path(state).exists()

    # The same endpoint name, another service behind it (a DNS name moved, a proxy re-pointed):
    # only the generation token in the destination itself can tell.
    state = str(tmp_path / "by-name.state")
    with FaultProxy(s3_endpoint) as proxy:
        assert sync(registry, url, "--endpoint-url", proxy.url, "--state", state).exit_code == 0
        proxy.upstream = urlsplit(other_s3)
        final = sync(registry, url, "--endpoint-url", proxy.url, "--state", state, "--delete")
    assert final.exit_code == 0, final.stdout
    assert "state file not used: the destination holds no generation token" in notes(final)
    assert final.json()["outcomes"]["uploaded"]["count"] == len(registry_files(registry))
    assert list_keys(other, bucket) == registry_files(registry, f"{ROOT}/")
    assert served_tags(other_s3, bucket, tmp_path / "work") == source_tags(registry)


def test_a_pass_without_the_record_makes_the_record_stale(registry, s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Pass 1 with --state; a tag moves; pass 2 without --state uploads it; the tag moves back; the
    final pass must not believe the record's MD5 for that tag."""
    url, state = f"s3://{bucket}/{ROOT}", str(tmp_path / "dest.state")
    latest = Path(registry.root, TAG_LATEST)
    original = latest.read_bytes()
    assert sync(registry, url, "--endpoint-url", s3_endpoint, "--state", state).exit_code == 0
    latest.write_bytes(Path(registry.root, TAG_320).read_bytes())
    assert sync(registry, url, "--endpoint-url", s3_endpoint).json()["outcomes"]["uploaded"]["count"] == 1
    latest.write_bytes(original)

    final = sync(registry, url, "--endpoint-url", s3_endpoint, "--state", state, "--delete")
    assert final.exit_code == 0, final.stdout
    assert "state file not used: the destination was written since the record was" in notes(final)
    assert final.json()["lists"]["changed"]["listed"] == [{"path": TAG_LATEST}]
    assert list_keys(s3, bucket) == registry_files(registry, f"{ROOT}/")
    served = served_tags(s3_endpoint, bucket, tmp_path / "work")
    assert served["library/alpine"]["latest"] == original.decode()
    assert served == source_tags(registry)


def test_a_failed_verify_withdraws_trust_and_the_next_pass_repairs(registry, s3, bucket, s3_endpoint,  # type: ignore[no-untyped-def]
                                                                   tmp_path) -> None:
    url, state = f"s3://{bucket}/{ROOT}", str(tmp_path / "dest.state")
    assert sync(registry, url, "--endpoint-url", s3_endpoint, "--state", state).exit_code == 0
    blob = next(path for path in registry_files(registry) if tree.is_content_addressed(path))
    s3.delete_object(Bucket=bucket, Key=f"{ROOT}/{blob}")  # lost behind regmig's back

    failed = regmig("verify", registry.root, url, "--endpoint-url", s3_endpoint)
    assert failed.exit_code == 1
    assert "trust withdrawn: no --state record of this destination is believed any more" in failed.stdout
    assert f"  regmig sync {registry.root} {url} --delete\n" in failed.stdout  # what to run to repair
    report = regmig("verify", registry.root, url, "--endpoint-url", s3_endpoint, "--json").json()
    assert report["trust"] == {"withdrawn": True, "error": None} and report["repair"][1].endswith("--delete")

    repaired = sync(registry, url, "--endpoint-url", s3_endpoint, "--state", state, "--delete")  # the runbook's step
    assert repaired.exit_code == 0, repaired.stdout
    assert "state file not used" in notes(repaired)
    assert repaired.json()["outcomes"]["uploaded"]["by_reason"] == {"missing": {"count": 1, "bytes": len(
        registry_files(registry)[blob])}}
    assert regmig("verify", registry.root, url, "--endpoint-url", s3_endpoint).exit_code == 0


def test_a_verify_that_cannot_write_says_to_sync_without_the_record(registry, s3, bucket, s3_endpoint,  # type: ignore[no-untyped-def]
                                                                    tmp_path) -> None:
    url, state = f"s3://{bucket}/{ROOT}", str(tmp_path / "dest.state")
    assert sync(registry, url, "--endpoint-url", s3_endpoint, "--state", state).exit_code == 0
    s3.put_object(Bucket=bucket, Key=f"{ROOT}/{TAG_320}", Body=b"sha256:" + b"0" * 64)  # same size, other content
    read_only = Faults(rule=lambda method, path: "403" if method in ("PUT", "POST", "DELETE") else None)
    with FaultProxy(s3_endpoint, read_only) as proxy:
        failed = regmig("verify", registry.root, url, "--endpoint-url", proxy.url, "--retries", "1")
        report = regmig("verify", registry.root, url, "--endpoint-url", proxy.url, "--retries", "1", "--json").json()
    assert failed.exit_code == 1
    assert "could not withdraw trust" in failed.stdout and "run the next sync WITHOUT --state" in failed.stdout
    assert report["trust"]["withdrawn"] is False and "access denied" in report["trust"]["error"]
    assert regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint, "--delete").exit_code == 0
    assert regmig("verify", registry.root, url, "--endpoint-url", s3_endpoint).exit_code == 0


# --- 2. results, not expectations ---------------------------------------------------------------------

def test_a_job_raising_any_exception_fails_the_pass_and_writes_no_record(registry, s3, bucket, s3_endpoint,  # type: ignore[no-untyped-def]
                                                                         tmp_path, monkeypatch) -> None:
    from migrate.storage.s3 import S3Storage
    from migrate.transfer import Copier

    url, state = f"s3://{bucket}/{ROOT}", tmp_path / "dest.state"
    assert sync(registry, url, "--endpoint-url", s3_endpoint, "--state", str(state)).exit_code == 0
    for path in Path(registry.root, TEAM_TAGS).rglob("*"):
        if path.is_file():
            path.unlink()
    stored = list_keys(s3, bucket)

    def no_such_key(self, paths):  # type: ignore[no-untyped-def]
        raise KeyError("a bug in a delete job")

    monkeypatch.setattr(S3Storage, "delete_many", no_such_key)
    deleting = sync(registry, url, "--endpoint-url", s3_endpoint, "--state", str(state), "--delete")
    report = deleting.json()
    assert deleting.exit_code == 1
    assert report["outcomes"]["crashed"]["count"] == 2
    assert all("KeyError" in item["message"] for item in report["lists"]["failures"]["listed"])
    assert not state.exists() and "no state file written (2 failures" in notes(deleting)
    assert list_keys(s3, bucket) == stored
    monkeypatch.undo()

    real_put = S3Storage.put

    def broken_put(self, path, data, size):  # type: ignore[no-untyped-def]
        if path == TAG_LATEST:
            raise RuntimeError("a bug in an upload job")
        return real_put(self, path, data, size)

    Path(registry.root, TAG_LATEST).write_bytes(Path(registry.root, TAG_320).read_bytes())
    monkeypatch.setattr(S3Storage, "put", broken_put)
    uploading = sync(registry, url, "--endpoint-url", s3_endpoint, "--state", str(state))
    assert uploading.exit_code == 1
    assert uploading.json()["lists"]["failures"]["listed"] == [
        {"path": TAG_LATEST, "message": "RuntimeError: a bug in an upload job"}]
    assert not state.exists()
    monkeypatch.undo()

    # A job that hands back fewer results than the objects it was given: those count as crashed.
    monkeypatch.setattr(Copier, "put_batch", lambda self, batch: [])
    silent = sync(registry, url, "--endpoint-url", s3_endpoint, "--state", str(state))
    assert silent.exit_code == 1
    assert silent.json()["outcomes"]["crashed"]["count"] == 1
    assert "the job returned no result for it" in silent.json()["lists"]["failures"]["listed"][0]["message"]
    assert not state.exists()
    monkeypatch.undo()

    final = sync(registry, url, "--endpoint-url", s3_endpoint, "--state", str(state), "--delete")
    assert final.exit_code == 0 and state.exists()
    assert list_keys(s3, bucket) == registry_files(registry, f"{ROOT}/")


def test_a_file_that_vanishes_during_a_final_pass_fails_it(registry, s3, bucket, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    url = f"s3://{bucket}/{ROOT}"
    blobs = sorted(path for path in registry_files(registry) if tree.is_content_addressed(path))
    stalled = Faults()
    stalled.rule = lambda method, path: "stall" if method == "PUT" and "/docker/" in path and \
        not stalled.stalled.is_set() else None
    with FaultProxy(s3_endpoint, stalled) as proxy:
        process = subprocess.Popen([*REGMIG, "sync", registry.root, url, "--endpoint-url", proxy.url, "--delete",
                                    "--workers", "1", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert stalled.stalled.wait(60)
        Path(registry.root, blobs[-1]).unlink()  # garbage collection, or a push, in the window
        stalled.release.set()
        out, err = process.communicate(timeout=120)
    assert process.returncode == 1, err
    report = json.loads(out)
    assert [item["path"] for item in report["lists"]["vanished"]["listed"]] == [blobs[-1]]
    assert "vanished from the source during a pass with --delete: is the registry read-only?" in "\n".join(
        report["notes"])


# --- 3. one writer at a time --------------------------------------------------------------------------

def test_two_syncs_at_once_leave_one_refusal_and_a_clean_verify(registry, s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url, state, log = f"s3://{bucket}/{ROOT}", str(tmp_path / "dest.state"), str(tmp_path / "sync.log")
    faults = Faults()
    faults.rule = lambda method, path: "stall" if method == "PUT" and "/docker/" in path and \
        not faults.stalled.is_set() else None
    with FaultProxy(s3_endpoint, faults) as proxy:  # the one endpoint name every pass uses
        first = subprocess.Popen([*REGMIG, "sync", registry.root, url, "--endpoint-url", proxy.url, "--state", state,
                                  "--log-file", log, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert faults.stalled.wait(60)
        second = regmig("sync", registry.root, url, "--endpoint-url", proxy.url, "--state", state, "--log-file", log,
                        "--delete")
        fix = regmig("nameless-tags", url, "--endpoint-url", proxy.url, "--fix")
        faults.release.set()
        out, err = first.communicate(timeout=120)
        holder = f"being written by another regmig: regmig sync on {socket.gethostname()} (pid {first.pid}) since"
        for refused in (second, fix):
            assert refused.exit_code == 2 and holder in refused.stderr and len(refused.stderr.splitlines()) == 1
        assert first.returncode == 0, err
        assert json.loads(out)["outcomes"]["uploaded"]["count"] == len(registry_files(registry))
        uploads = [line for line in Path(log).read_text().splitlines() if " INFO uploaded (" in line]
        assert len(uploads) == len(registry_files(registry))  # one writer: nothing uploaded twice
        assert regmig("verify", registry.root, url, "--endpoint-url", proxy.url).exit_code == 0
        again = sync(registry, url, "--endpoint-url", proxy.url, "--state", state)
    assert "destination not listed" in notes(again) and "uploaded" not in again.json()["outcomes"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"{ROOT}/.regmig/")["Contents"]] == [
        f"{ROOT}/.regmig/generation"]  # the lease went with its run


def lease_of(host: str, pid: int, expires_in: float) -> bytes:
    """A lease as another run on another machine leaves it (migrate.lease's format)."""
    now = time.time()
    stamp = lambda epoch: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))  # noqa: E731
    return json.dumps({"command": "sync", "host": host, "pid": pid, "machine": "another-machine",
                       "started": stamp(now - 60), "started_epoch": now - 60, "expires": stamp(now + expires_in),
                       "expires_epoch": now + expires_in, "nonce": "0" * 32}).encode()


def test_a_lease_left_behind_is_taken_over_once_expired_or_broken(registry, s3, bucket, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    url, key = f"s3://{bucket}/{ROOT}", f"{ROOT}/.regmig/lease"
    s3.put_object(Bucket=bucket, Key=key, Body=lease_of("build-7", 4242, 600))
    refused = regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint)
    assert refused.exit_code == 2 and "regmig sync on build-7 (pid 4242) since" in refused.stderr
    assert "--break-lock" in refused.stderr and list_keys(s3, bucket) == {}

    broken = sync(registry, url, "--endpoint-url", s3_endpoint, "--break-lock")
    assert broken.exit_code == 0
    assert "took over the lease of regmig sync on build-7 (pid 4242)" in notes(broken)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=key)  # released at the end

    s3.put_object(Bucket=bucket, Key=key, Body=lease_of("build-7", 4242, -1))
    expired = sync(registry, url, "--endpoint-url", s3_endpoint)
    assert expired.exit_code == 0 and "it expired at" in notes(expired)
    assert list_keys(s3, bucket) == registry_files(registry, f"{ROOT}/")


def test_a_lease_is_renewed_while_its_run_lasts_and_a_run_whose_lease_was_taken_knows(s3, bucket, s3_endpoint,  # type: ignore[no-untyped-def]
                                                                                      monkeypatch) -> None:
    from migrate import lease
    from migrate.storage.base import TransferSettings
    from migrate.storage.s3 import S3Storage

    monkeypatch.setattr(lease, "TTL_SECONDS", 1.0)
    monkeypatch.setattr(lease, "RENEW_SECONDS", 0.2)
    monkeypatch.setattr(lease, "SETTLE_SECONDS", 0.5)
    notes: list[str] = []
    with S3Storage(bucket, ROOT, S3Options(endpoint_url=s3_endpoint), TransferSettings()) as storage:
        with lease.Lease(storage, "sync", break_lock=False, note=notes.append) as held:
            assert held.exclusive  # the service refused a second create: the condition is honoured
            time.sleep(1.5)  # past the first expiry: only the renewals keep it
            with pytest.raises(lease.LeaseHeld, match="regmig sync on"):
                lease.Lease(storage, "sync", break_lock=False, note=notes.append).__enter__()
            # A breaker whose write lands between a live renewal's read and write finds the renewal in
            # place when it reads back, and refuses: the live run keeps the lease, nobody is told it lost.
            # Renewals come every 0.2 s here, so a few tries must see a break win.
            for _ in range(10):
                try:
                    breaker = lease.Lease(storage, "nameless-tags --fix", break_lock=True, note=notes.append)
                    breaker.__enter__()
                    break
                except lease.LeaseHeld as refused:
                    assert "regmig sync on" in str(refused) and held.lost is None
            else:
                pytest.fail("ten breaks of a renewed lease were all refused")
            try:
                time.sleep(0.5)
                assert held.lost and "the lease was taken by regmig nameless-tags --fix" in held.lost
            finally:
                breaker.__exit__(None, None, None)
        assert storage.stat(".regmig/lease") is None  # each removed its own lease, and only its own
    assert notes and all(note.startswith("took over the lease of regmig sync on") for note in notes)


def storage_for(backend: Backend, root: str):  # type: ignore[no-untyped-def]
    """The backend under test as a regmig Storage (its command-line arguments, as options)."""
    args = dict(zip(backend.args[::2], backend.args[1::2]))
    options = LocationOptions(
        s3=S3Options(endpoint_url=args.get("--endpoint-url")),
        azure=AzureOptions(account_url=args.get("--azure-account-url"), account_key=args.get("--azure-account-key"),
                           root_prefix=args.get("--azure-root-prefix", "trimmed")))
    return open_location(backend.url(root), options)


def test_every_backend_creates_exclusively_and_keeps_lease_and_token(backend: Backend, registry: SampleRegistry,  # type: ignore[no-untyped-def]
                                                                     tmp_path: Path) -> None:
    with storage_for(backend, ROOT) as storage:
        assert storage.create_exclusive(".regmig/probe", b"first") is True
        assert storage.create_exclusive(".regmig/probe", b"second") is False
        assert storage.read(".regmig/probe") == b"first"
        storage.delete(".regmig/probe")

    url, state, prefix = backend.url(ROOT), str(tmp_path / "dest.state"), backend.key_prefix(ROOT)
    backend.put(prefix + ".regmig/lease", lease_of("build-7", 4242, 600))
    refused = regmig("sync", registry.root, url, *backend.args)
    assert refused.exit_code == 2 and "regmig sync on build-7 (pid 4242)" in refused.stderr
    assert backend.keys() == {}
    assert sync(registry, url, *backend.args, "--state", state, "--break-lock").exit_code == 0

    blob = next(path for path in registry_files(registry) if tree.is_content_addressed(path))
    backend.remove(prefix + blob)
    failed = regmig("verify", registry.root, url, *backend.args, "--json")
    assert failed.exit_code == 1 and failed.json()["trust"]["withdrawn"] is True
    repaired = sync(registry, url, *backend.args, "--state", state, "--delete")
    assert repaired.exit_code == 0 and "state file not used" in notes(repaired)
    assert repaired.json()["outcomes"]["uploaded"]["count"] == 1
    assert backend.keys() == registry_files(registry, prefix)
    assert regmig("verify", registry.root, url, *backend.args).exit_code == 0


def test_a_filesystem_destination_has_the_same_lease(registry: SampleRegistry, tmp_path: Path) -> None:
    target = tmp_path / "rollback"
    (target / ".regmig").mkdir(parents=True)
    (target / ".regmig" / "lease").write_bytes(lease_of("build-7", 4242, 600))
    refused = regmig("sync", registry.root, str(target))
    assert refused.exit_code == 2 and "regmig sync on build-7 (pid 4242)" in refused.stderr
    assert sync(registry, str(target), "--break-lock").exit_code == 0
    assert local_files(target) == registry_files(registry)
    assert sorted(p.name for p in (target / ".regmig").iterdir()) == ["generation"]


# --- 4. the source is what it was ------------------------------------------------------------------

def test_a_source_that_shrank_since_the_record_deletes_nothing(registry, s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url, state = f"s3://{bucket}/{ROOT}", str(tmp_path / "dest.state")
    assert sync(registry, url, "--endpoint-url", s3_endpoint, "--state", state).exit_code == 0
    stored = list_keys(s3, bucket)
    # A mount that failed: the mount point shows the few files left under it from before (here
    # the blobs, so the guard against another registry as SOURCE does not stop it first).
    repositories = Path(registry.root, tree.REPOSITORIES)
    for child in repositories.iterdir():
        if child.name != "team-a":
            shutil.rmtree(child)
    before = len(stored)
    final = sync(registry, url, "--endpoint-url", s3_endpoint, "--state", state, "--delete", "--max-delete", "-1")
    assert final.exit_code == 1
    refusal = final.json()["delete_refused"]
    assert "but the pass that wrote the state file at" in refusal and f"found {before:,}" in refusal
    assert "is the source mounted?" in refusal and "run again without --state" in refusal
    assert list_keys(s3, bucket) == stored


def test_on_a_network_filesystem_stamps_are_not_trusted(registry, s3, bucket, s3_endpoint, tmp_path,  # type: ignore[no-untyped-def]
                                                        monkeypatch) -> None:
    from migrate.storage import filesystem
    from migrate.storage.filesystem import FilesystemStorage

    monkeypatch.setattr(filesystem, "STAMP_MARGIN_NS", 200_000_000)
    time.sleep(0.3)  # every file settles: a local disk's pass would stamp them all
    url, state = f"s3://{bucket}/{ROOT}", str(tmp_path / "dest.state")
    assert sync(registry, url, "--endpoint-url", s3_endpoint, "--state", state).exit_code == 0
    monkeypatch.setattr(filesystem, "filesystem_type", lambda path: "nfs4", raising=False)
    reads: list[str] = []
    real_read = FilesystemStorage.read
    monkeypatch.setattr(FilesystemStorage, "read", lambda self, path: reads.append(path) or real_read(self, path))
    final = sync(registry, url, "--endpoint-url", s3_endpoint, "--state", state, "--delete")
    assert final.exit_code == 0
    assert "the source is on nfs4: file times are not trusted there" in notes(final)
    small = [p for p, d in registry_files(registry).items() if len(d) <= 4096 and not tree.is_content_addressed(p)]
    assert sorted(reads) == sorted(small)  # each read and compared: none passed over on its stamp


def test_the_filesystem_type_comes_from_mountinfo() -> None:
    from migrate.storage.filesystem import FilesystemStorage, filesystem_type, mount_type

    mountinfo = ("22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
                 "40 22 0:41 / /srv/registry\\040share rw,relatime shared:9 - nfs4 nas:/registry rw,vers=4.2\n"
                 "41 22 0:42 / /mnt/fuse rw,nosuid - fuse.sshfs host:/x rw\n")
    assert mount_type(mountinfo, "0:41", "/elsewhere") == "nfs4"  # by device first
    assert mount_type(mountinfo, "9:9", "/srv/registry share/docker") == "nfs4"  # else the deepest mount point
    assert mount_type(mountinfo, "9:9", "/srv/registry-other") == "ext4"
    assert mount_type(mountinfo, "0:42", "/") == "fuse.sshfs"
    assert filesystem_type("/proc") == "proc"
    assert FilesystemStorage("/proc").network_filesystem() is None


# --- 5. content compare without MD5 ETags ---------------------------------------------------------------

_ETAG = re.compile(rb"(<ETag>(?:&quot;|\"))([0-9a-f]{32})((?:&quot;|\")</ETag>)")


def kms(etag: bytes) -> bytes:
    """What SSE-KMS does to an ETag: 32 hex digits, stable for the object, not the MD5 of its content."""
    return hashlib.md5(b"kms:" + etag).hexdigest().encode()


def kms_etags(method: str, path: str, headers: dict[str, str], payload: bytes) -> tuple[dict[str, str], bytes]:
    if "uploadId=" in path:
        return headers, payload  # a part's ETag goes back to the service, which would know its own
    for name, value in headers.items():
        if name.lower() == "etag" and re.fullmatch(r'"[0-9a-f]{32}"', value):
            headers[name] = f'"{kms(value.strip(chr(34)).encode()).decode()}"'
    return headers, _ETAG.sub(lambda m: m.group(1) + kms(m.group(2)) + m.group(3), payload)


def test_kms_style_etags_neither_loop_nor_hide_a_change(registry, s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url, state = f"s3://{bucket}/{ROOT}", str(tmp_path / "dest.state")
    latest = Path(registry.root, TAG_LATEST)
    original = latest.read_bytes()
    with FaultProxy(s3_endpoint, Faults(response_filter=kms_etags)) as proxy:
        endpoint = ["--endpoint-url", proxy.url]
        assert sync(registry, url, *endpoint).exit_code == 0
        again = sync(registry, url, *endpoint)
        assert again.exit_code == 0 and "uploaded" not in again.json()["outcomes"]  # no endless re-upload
        latest.write_bytes(Path(registry.root, TAG_320).read_bytes())
        moved = sync(registry, url, *endpoint, "--state", state)
        assert moved.json()["lists"]["changed"]["listed"] == [{"path": TAG_LATEST}]  # no false "same"
        assert regmig("verify", registry.root, url, *endpoint).exit_code == 0

        latest.write_bytes(original)  # and from the record: regmig's own MD5s, not the ETags
        final = sync(registry, url, *endpoint, "--state", state, "--delete")
        assert "destination not listed" in notes(final)
        assert final.json()["lists"]["changed"]["listed"] == [{"path": TAG_LATEST}]
        s3.put_object(Bucket=bucket, Key=f"{ROOT}/{TAG_320}", Body=b"sha256:" + b"0" * 64)  # behind regmig's back
        checked = regmig("verify", registry.root, url, *endpoint, "--json").json()
    assert [item["path"] for item in checked["lists"]["content differs"]["listed"]] == [TAG_320]
    assert list_keys(s3, bucket)[f"{ROOT}/{TAG_LATEST}"] == original


# --- 6. uploads the service checks --------------------------------------------------------------------

class Flipper:
    """Flips one byte in the first body of each kind of upload the test names (corruption in transit)."""

    def __init__(self, *kinds: str) -> None:
        self.pending = set(kinds)
        self.flipped: list[str] = []

    def __call__(self, method: str, path: str, body: bytes) -> bytes:
        for kind in list(self.pending):
            if method == "PUT" and kind in path and body:
                self.pending.discard(kind)
                self.flipped.append(path)
                return bytes([body[0] ^ 0x01]) + body[1:]
        return body


def test_a_corrupted_upload_body_is_refused_and_sent_again_on_azure(request, registry: SampleRegistry) -> None:  # type: ignore[no-untyped-def]
    azure = make_backend(request, "azure-trimmed")
    endpoint = request.getfixturevalue("azurite_endpoint")
    flipper = Flipper(TAG_LATEST, "comp=block&")
    with FaultProxy(endpoint, Faults(request_filter=flipper)) as proxy:
        args = [proxy.url + urlsplit(endpoint).path if arg == endpoint else arg for arg in azure.args]
        result = sync(registry, azure.url(ROOT), *args, "--chunk-size", "5MiB")
        sent = [path for _, method, path, _ in proxy.faults.log if method == "PUT"]
    assert result.exit_code == 0, result.stdout
    assert len(flipper.flipped) == 2  # one whole blob, one block of a large one
    link = next(path for path in flipper.flipped if "?" not in path)
    assert sent.count(link) == 2  # a whole blob: refused, then sent again
    blob, _, _ = next(path for path in flipper.flipped if "?" in path).partition("?")
    needed = -(-len(registry_files(registry)[blob.split(f"/{ROOT}/", 1)[1]]) // (5 * 1024 * 1024))
    blocks = [path for path in sent if path.startswith(blob + "?comp=block&")]
    assert len(blocks) > needed and sent.count(blob + "?comp=blocklist") == 1  # its blocks: sent again, committed once
    assert azure.keys() == registry_files(registry, azure.key_prefix(ROOT))


def test_a_corrupted_upload_body_is_refused_and_sent_again_on_s3(rgw_endpoint, registry: SampleRegistry) -> None:  # type: ignore[no-untyped-def]
    """Ceph RGW checks Content-MD5 (and the signed payload hash) on PutObject and UploadPart;
    moto's server checks neither, so it cannot take part."""
    s3 = boto3.client("s3", endpoint_url=rgw_endpoint, region_name="us-east-1")
    bucket = "regmig-corruption"
    s3.create_bucket(Bucket=bucket)
    flipper = Flipper(TAG_LATEST, "partNumber=1")
    with FaultProxy(rgw_endpoint, Faults(request_filter=flipper)) as proxy:
        result = sync(registry, f"s3://{bucket}/{ROOT}", "--endpoint-url", proxy.url, "--chunk-size", "5MiB")
        sent = [path for _, method, path, _ in proxy.faults.log if method == "PUT"]
    assert result.exit_code == 0, result.stdout
    assert len(flipper.flipped) == 2
    link = next(path for path in flipper.flipped if "?" not in path)
    assert sent.count(link) == 2  # a single PUT: refused, then sent again
    blob, _, _ = next(path for path in flipper.flipped if "?" in path).partition("?")
    first_parts = [path for path in sent if path.startswith(blob + "?") and path.endswith("&partNumber=1")]
    assert len(first_parts) == 2  # a part: the same (in a new multipart upload)
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")  # the refused upload was aborted
    assert list_keys(s3, bucket) == registry_files(registry, f"{ROOT}/")


class Unseekable:
    """An object-store download as S3Storage.put sees it: readable, not seekable, size declared apart."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._at = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._at + size
        chunk = bytes(self._data[self._at:end])
        self._at += len(chunk)
        return chunk

    def seekable(self) -> bool:
        return False


def test_a_stream_of_a_declared_size_gets_parts_that_fit_in_ten_thousand(s3, bucket, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    """60 GiB at 5 MiB parts would need 12,289 parts: the declared size makes s3transfer raise the
    part size (to 10 MiB); 11 MiB of it are sent, each part with its Content-MD5."""
    from migrate.storage.base import TransferSettings
    from migrate.storage.s3 import S3Storage

    parts: list[tuple[int, str]] = []
    data = bytes(range(256)) * (11 * 4096)
    with S3Storage(bucket, "r", S3Options(endpoint_url=s3_endpoint), TransferSettings(chunk_size=5 * 1024 * 1024)) as storage:
        storage.client.meta.events.register(
            "before-call.s3.UploadPart",
            lambda params, **_: parts.append((len(params["body"].read()), params["headers"].get("Content-MD5", "")))
            or params["body"].seek(0))
        storage.put("blob", Unseekable(data), 60 * 1024**3)  # type: ignore[arg-type]
    assert sorted(parts, reverse=True) == sorted(
        [(len(part), base64.b64encode(hashlib.md5(part).digest()).decode())
         for part in (data[:10 * 1024 * 1024], data[10 * 1024 * 1024:])], reverse=True)
    assert s3.get_object(Bucket=bucket, Key="r/blob")["Body"].read() == data


# --- 7. secrets from a refresh ------------------------------------------------------------------------

def test_refreshed_credentials_are_redacted_like_the_first(other_s3, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Against moto's server in its own process: it takes any key, and refreshed keys belong to no real user."""
    from migrate import redact

    bucket = "regmig-refreshed"
    client = boto3.client("s3", endpoint_url=other_s3, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)  # a registry root, so nameless-tags has something to look at
    client.put_object(Bucket=bucket, Key=f"{ROOT}/docker/registry/v2/repositories/x/_manifests/tags/t/current/link",
                      Body=b"sha256:" + b"0" * 64)

    issued = tmp_path / "issued"
    script = tmp_path / "credentials.py"
    script.write_text(
        "import json, pathlib, datetime\n"
        f"log = pathlib.Path({str(issued)!r})\n"
        "n = len(log.read_text().splitlines()) if log.exists() else 0\n"
        "key, secret = f'AKIAREFRESHED{n:07d}', f'refreshed-secret-number-{n:04d}-do-not-print'\n"
        "log.write_text((log.read_text() if log.exists() else '') + key + ' ' + secret + '\\n')\n"
        "expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)\n"
        "print(json.dumps({'Version': 1, 'AccessKeyId': key, 'SecretAccessKey': secret,\n"
        "                  'SessionToken': 'refreshed-token-' + str(n) * 12, 'Expiration': expires.isoformat()}))\n")
    config = tmp_path / "aws-config"
    config.write_text(f"[default]\ncredential_process = {sys.executable} {script}\n")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    result = regmig("nameless-tags", f"s3://{bucket}/{ROOT}", "--endpoint-url", other_s3)
    assert result.exit_code == 0, result.stderr
    # Five minutes from expiry is inside botocore's mandatory refresh window: every request refreshes
    # (the first set is replaced so before regmig ever reads it).
    keys = [line.split() for line in issued.read_text().splitlines()][1:]
    assert len(keys) >= 3
    for key, secret in keys:
        assert redact.redact(f"{key} {secret}") == f"{redact.MASK} {redact.MASK}"
