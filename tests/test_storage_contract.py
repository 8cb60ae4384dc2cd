"""One storage contract, every backend, at the storage interface: Ceph RGW and moto (S3), Azurite
in both root-prefix modes, fake-gcs-server, the filesystem, and the in-memory backend of the pure
tests. The same call gives the same answer everywhere: listing order, missing keys, deletes of
keys already gone, conditional deletes, multipart uploads, errors.

(tests/test_backends_contract.py holds the same promise one level up, through the CLI.)
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import AZURITE_KEY, make_backend
from migrate import tree
from migrate.cuts import listing_ranges
from migrate.errors import BadInput, ConditionFailed, ObjectMissing
from migrate.parallel import parallel_walk
from migrate.shards import WHOLE, partition
from migrate.storage import LocationOptions, Storage, TransferSettings, filesystem, open_location
from migrate.storage.memory import MemoryStorage
from migrate.storage.options import AzureOptions, GCSOptions, S3Options
from migrate.storage.ranges import KeyRange

CHUNK = 5 * 1024 * 1024
ROOT = "registry"
V2 = "docker/registry/v2/"
LINK = b"sha256:" + b"a" * 64
# Names chosen for their bytes: '-' (0x2d) sorts before '/' (0x2f), which sorts before '0' and
# '_'; a space, a plus sign, a percent sign and non-ASCII must survive listings and URLs.
PATHS = [
    V2 + "repositories/a-b/_layers/sha256/" + "1" * 64 + "/link",
    V2 + "repositories/a/_layers/sha256/" + "2" * 64 + "/link",
    V2 + "repositories/a/_manifests/tags/v 1+x%20é/current/link",
    V2 + "repositories/a0/_manifests/tags/latest/current/link",
    V2 + "repositories/a_/_manifests/tags/latest/current/link",
    V2 + "repositories/ä/_manifests/tags/latest/current/link",
]
BACKENDS = ["memory", "filesystem", "s3-rgw", "s3-moto", "azure-trimmed", "azure-legacy", "gcs"]
OBJECT_STORES = [name for name in BACKENDS if name not in ("memory", "filesystem")]
every_backend = pytest.mark.parametrize("storage", BACKENDS, indirect=True)
versioned_backends = pytest.mark.parametrize("storage", [b for b in BACKENDS if b != "filesystem"], indirect=True)
"""A filesystem has no version tokens: regmig never deletes conditionally there."""


def options_for(request: pytest.FixtureRequest, name: str) -> LocationOptions:
    transfer = TransferSettings(chunk_size=CHUNK, workers=8, max_attempts=3)
    if name.startswith("s3-"):
        endpoint = request.getfixturevalue(f"{name.removeprefix('s3-')}_endpoint")
        return LocationOptions(s3=S3Options(endpoint_url=endpoint), transfer=transfer)
    if name.startswith("azure-"):
        return LocationOptions(azure=AzureOptions(account_url=request.getfixturevalue("azurite_endpoint"),
                                                  account_key=AZURITE_KEY, root_prefix=name.removeprefix("azure-")),
                               transfer=transfer)
    request.getfixturevalue("gcs_endpoint")  # sets STORAGE_EMULATOR_HOST
    return LocationOptions(gcs=GCSOptions(project="regmig-test"), transfer=transfer)


@pytest.fixture
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """An empty registry root named ``registry`` on a fresh bucket (container, directory)."""
    name = request.param
    if name == "memory":
        yield MemoryStorage(rootdirectory=ROOT)
        return
    if name == "filesystem":
        yield open_location(str(tmp_path / ROOT))
        return
    backend = make_backend(request, name)
    with open_location(backend.url(ROOT), options_for(request, name)) as opened:
        yield opened


def fill(storage: Storage, paths: list[str], data: bytes = LINK) -> None:
    for path in paths:
        storage.put(path, data, len(data))


@every_backend
def test_listing_is_in_byte_order_and_honours_the_prefix(storage: Storage) -> None:
    fill(storage, reversed(PATHS))  # type: ignore[arg-type]
    listed = [entry.path for entry in storage.walk()]
    assert listed == sorted(PATHS, key=lambda path: path.encode())
    under_a = V2 + "repositories/a/"
    assert [e.path for e in storage.walk(under_a)] == [p for p in listed if p.startswith(under_a)]
    assert [e.path for e in storage.walk(V2 + "repositories/a")] == [p for p in listed if "/a" in p]
    assert list(storage.walk(V2 + "nothing/")) == []
    assert storage.has_entries(V2) and not storage.has_entries(V2 + "blobs/")


@every_backend
def test_put_stat_read_round_trip_with_the_content_md5(storage: Storage) -> None:
    path = PATHS[2]
    fill(storage, [path])
    stat = storage.stat(path)
    assert stat is not None and stat.path == path and stat.size == len(LINK)
    listed = next(iter(storage.walk(path)))
    for entry in (stat, listed):
        assert entry.md5 in (None, hashlib.md5(LINK).hexdigest())
    assert storage.read(path) == LINK
    with storage.open(path) as stream:
        assert stream.read() == LINK
    storage.put(path, io.BytesIO(b""), 0)  # a stream, and an empty object
    assert storage.read(path) == b"" and storage.stat(path).size == 0  # type: ignore[union-attr]


@every_backend
def test_a_missing_key_is_none_to_stat_and_missing_to_read(storage: Storage) -> None:
    assert storage.stat(PATHS[0]) is None
    with pytest.raises(ObjectMissing):
        storage.read(PATHS[0])
    with pytest.raises(ObjectMissing):
        with storage.open(PATHS[0]) as stream:
            stream.read()


@every_backend
def test_deleting_a_key_already_gone_is_success(storage: Storage) -> None:
    storage.delete(PATHS[0])
    fill(storage, [PATHS[1]])
    assert storage.delete_many([PATHS[0], PATHS[1]]) == []
    assert list(storage.walk()) == []
    storage.delete(PATHS[1])  # deleted a moment ago


@versioned_backends
def test_conditional_delete_checks_the_version_it_was_given(storage: Storage) -> None:
    fill(storage, [PATHS[0]])
    before = storage.stat(PATHS[0])
    assert before is not None and before.etag
    fill(storage, [PATHS[0]], b"sha256:" + b"b" * 64)  # rewritten since it was checked
    with pytest.raises(ConditionFailed):
        storage.delete(PATHS[0], if_match=before.etag)
    assert storage.read(PATHS[0]) == b"sha256:" + b"b" * 64
    current = storage.stat(PATHS[0])
    assert current is not None
    storage.delete(PATHS[0], if_match=current.etag)
    assert storage.stat(PATHS[0]) is None


@every_backend
def test_a_chunked_upload_lists_its_size_and_never_an_empty_etag(storage: Storage) -> None:
    """Large blobs go up in parts; Ceph RGW 16 answers CompleteMultipartUpload with <ETag></ETag>,
    so nothing regmig keeps may come from that answer."""
    data = os.urandom(CHUNK + 1024 * 1024)
    path = V2 + "blobs/sha256/ab/" + hashlib.sha256(data).hexdigest() + "/data"
    storage.put(path, io.BytesIO(data), len(data))
    for entry in (storage.stat(path), next(iter(storage.walk(path)))):
        assert entry is not None and entry.size == len(data)
        assert entry.etag != "" and entry.md5 in (None, hashlib.md5(data).hexdigest())
    assert storage.read(path) == data


@every_backend
def test_one_delimiter_listing_gives_the_prefixes_one_level_down(storage: Storage) -> None:
    fill(storage, PATHS)
    repositories = storage.prefix + V2 + "repositories/"
    names = ["a-b", "a", "a0", "a_", "ä"]
    assert storage.list_prefixes(repositories) == sorted((repositories + n + "/" for n in names),
                                                          key=lambda key: key.encode())
    assert storage.list_prefixes(repositories, max_entries=2) == storage.list_prefixes(repositories)[:2]
    assert storage.list_prefixes(storage.prefix + V2 + "blobs/") == []


@every_backend
def test_keys_are_stored_under_the_root(storage: Storage) -> None:
    fill(storage, [PATHS[0]])
    assert storage.has_keys(storage.prefix + PATHS[0]) or storage.is_local
    assert [e.path for e in storage.walk()] == [PATHS[0]]


@pytest.mark.parametrize("name", [*OBJECT_STORES, "memory"])
def test_a_missing_bucket_is_bad_input(request: pytest.FixtureRequest, name: str) -> None:
    if name == "memory":
        missing: Storage = MemoryStorage("no-such-bucket", exists=False)
    else:
        scheme = {"s3": "s3", "azure": "azure", "gcs": "gs"}[name.split("-")[0]]
        missing = open_location(f"{scheme}://regmig-no-such-bucket/{ROOT}", options_for(request, name))
    with missing:
        with pytest.raises(BadInput, match="does not exist"):
            missing.check_reachable()
        with pytest.raises(BadInput):
            list(missing.walk())


# --- ranged walks: a shard's part of the tree ---------------------------------------------------

def _blob(hex_start: str) -> str:
    digest = (hex_start + "0" * 64)[:64]
    return f"{V2}blobs/sha256/{digest[:2]}/{digest}/data"


RANGE_PATHS = [
    *PATHS,
    tree.LOCKFILES + "database-in-use",
    _blob("00aa"), _blob("3fff"), _blob("40"), _blob("40a3"), _blob("7fff"), _blob("80"), _blob("ff"),
    V2 + "blobs/sha512/ab/" + "ab" * 64 + "/data",
    V2 + "repositories/sm/_manifests/tags/latest/current/link",
    V2 + "repositories/smith/x/_layers/sha256/" + "3" * 64 + "/link",
    V2 + "repositories/t/_manifests/tags/latest/current/link",
    tree.SCHEDULER_STATE,
]
ORDERED = sorted(RANGE_PATHS, key=lambda path: path.encode())
RANGES = [
    KeyRange(V2 + "blobs/sha256/40", V2 + "blobs/sha256/80"),  # whole directories
    KeyRange(_blob("40a3"), _blob("80")),  # bounds that are keys: the start is in, the end is out
    KeyRange(PATHS[1][:-3], V2 + "repositories/sm/"),  # bounds inside names
    KeyRange(V2 + "repositories/a_", V2 + "repositories/ä0"),  # past ASCII
    KeyRange("", tree.LOCKFILES + "e"),
    KeyRange(V2 + "repositories/t", None),
    KeyRange(V2 + "blobs/sha256/4", V2 + "blobs/sha256/4"),  # empty
]


@every_backend
def test_a_range_walk_lists_exactly_the_range_in_byte_order(storage: Storage) -> None:
    fill(storage, RANGE_PATHS)
    assert [e.path for e in storage.walk()] == ORDERED
    for span in RANGES:
        assert [e.path for e in storage.walk(within=span)] == [p for p in ORDERED if span.contains(p)], span
    repositories = V2 + "repositories/"
    span = KeyRange(V2 + "blobs/", repositories + "a0")  # a range and a prefix together
    assert [e.path for e in storage.walk(repositories, within=span)] == \
        [p for p in ORDERED if p.startswith(repositories) and span.contains(p)]


@every_backend
def test_the_shards_walked_one_after_another_are_the_whole_walk(storage: Storage) -> None:
    fill(storage, RANGE_PATHS)
    for count in (1, 2, 3, 8, 64):
        assert [e.path for shard in partition(count) for e in storage.walk(within=shard)] == ORDERED, count


def _received(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every key the service's listing handed over (or, on a filesystem, every directory read)."""
    seen: list[str] = []
    if storage.is_local:
        original_children = filesystem._children

        def children(dir_fd, rel_dir, on_problem, follow):  # type: ignore[no-untyped-def]
            seen.append(rel_dir)
            return original_children(dir_fd, rel_dir, on_problem, follow)
        monkeypatch.setattr(filesystem, "_children", children)
        return seen
    if hasattr(storage, "_lean"):
        target, name, key = storage._lean, "list", lambda item: item[0]
    elif hasattr(storage, "container"):
        target, name, key = storage.container, "list_blobs", lambda item: item.name
    else:
        target, name, key = storage.client, "list_blobs", lambda item: item.name
    original = getattr(target, name)

    def listing(*args, **kwargs):  # type: ignore[no-untyped-def]
        for item in original(*args, **kwargs):
            seen.append(key(item)[len(storage.prefix):])
            yield item
    monkeypatch.setattr(target, name, listing)
    return seen


@pytest.mark.parametrize("storage", ["filesystem", *OBJECT_STORES], indirect=True)
def test_a_range_walk_reads_nothing_before_its_start(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each backend starts where the range starts (S3 StartAfter, GCS startOffset, Azure's prefix
    cover, the filesystem's pruned directories) instead of filtering the whole listing."""
    fill(storage, RANGE_PATHS)
    seen = _received(storage, monkeypatch)
    # A shard of whole directories, and a range that starts inside one blob's directory.
    for span in (partition(8)[2], KeyRange(_blob("40a3"), V2 + "repositories/a/")):
        seen.clear()
        assert [e.path for e in storage.walk(within=span)] == [p for p in ORDERED if span.contains(p)]
        assert seen and all(path >= span.start or span.start.startswith(path) for path in seen), seen


@every_backend
def test_a_listing_on_several_threads_is_the_walk(storage: Storage) -> None:
    """The ranges listed side by side (one client shared by the threads) and merged back."""
    fill(storage, RANGE_PATHS)
    assert [e.path for e in parallel_walk(storage, partition(8), 4)] == ORDERED
    shard = partition(4)[2]
    assert [e.path for e in parallel_walk(storage, shard.split(3), 3)] == [p for p in ORDERED if shard.contains(p)]


NAMES = {f"{V2}repositories/{name}/" for name in ("a-b", "a", "a0", "a_", "ä", "sm", "smith/x", "t")}
"""The repositories of RANGE_PATHS (``smith/x``: an image nested below a group)."""


@every_backend
def test_a_listing_is_cut_at_the_same_names_everywhere(storage: Storage) -> None:
    """Its threads' ranges come from delimiter listings of the repositories (``migrate.cuts``):
    every backend finds the same names (Azure's legacy leading slash, the filesystem's
    directories), so the same cuts, and the ranges listed side by side are the walk."""
    fill(storage, RANGE_PATHS)
    alike = MemoryStorage(rootdirectory=ROOT)
    fill(alike, RANGE_PATHS)
    for shard in (WHOLE, partition(2)[1]):
        ranges = listing_ranges(storage, shard, 8, 2)
        assert ranges == listing_ranges(alike, shard, 8, 2)
        assert {part.start for part in ranges} & NAMES, ranges  # cut at names found, not only the model's
        assert [e.path for e in parallel_walk(storage, ranges, 3)] == [p for p in ORDERED if shard.contains(p)]


@pytest.mark.parametrize("storage", [*OBJECT_STORES, "memory"], indirect=True)
def test_a_range_walk_lists_markers_at_the_levels_it_descends(storage: Storage) -> None:
    """Zero-byte keys ending in '/' sit exactly at the prefixes a range is found through (a
    nameless-tag marker at ``repositories/`` broke the catalog, distribution#2119)."""
    markers = [V2 + "repositories/", V2 + "repositories/a/", V2 + "repositories/a/_manifests/tags/"]
    fill(storage, RANGE_PATHS)
    fill(storage, markers, b"")
    ordered = sorted([*RANGE_PATHS, *markers], key=lambda path: path.encode())
    for span in (KeyRange(V2 + "repositories/", V2 + "repositories/b"), KeyRange(V2 + "repositories/a-c", None),
                 KeyRange(V2 + "repositories/a/_m", V2 + "repositories/a0"), *partition(8)):
        assert [e.path for e in storage.walk(within=span)] == [p for p in ordered if span.contains(p)], span


@pytest.mark.parametrize("storage", ["s3-rgw", "s3-moto"], indirect=True)
def test_the_full_s3_client_lists_a_range_from_its_start(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the lean path steps aside (a proxy, REGMIG_S3_LEAN=0), boto3's paginator carries StartAfter."""
    fill(storage, RANGE_PATHS)
    monkeypatch.setattr(storage, "_lean", None)
    sent: list[dict[str, object]] = []
    storage.client.meta.events.register("provide-client-params.s3.ListObjectsV2",  # type: ignore[attr-defined]
                                        lambda params, **_: sent.append(dict(params)))
    for span in RANGES:
        sent.clear()
        assert [e.path for e in storage.walk(within=span)] == [p for p in ORDERED if span.contains(p)], span
        if span.start and not span.empty:  # the listing starts just below the range, not at the bucket's start
            assert sent and str(sent[0]["StartAfter"]) < storage.prefix + span.start
