"""Classification and key mapping, checked against the examples in the shared registry-storage doc."""

from __future__ import annotations

import pytest

from migrate import tree
from migrate.tree import Driver, Kind

HEX = "a" * 64
V2 = "docker/registry/v2"


@pytest.mark.parametrize(
    ("path", "kind", "repository", "tag", "digest"),
    [
        (f"{V2}/blobs/sha256/aa/{HEX}/data", Kind.BLOB_DATA, None, None, f"sha256:{HEX}"),
        (f"{V2}/blobs/sha512/aa/{HEX}/data", Kind.BLOB_DATA, None, None, f"sha512:{HEX}"),
        (f"{V2}/blobs/sha256/bb/{HEX}/data", Kind.UNKNOWN, None, None, None),
        (f"{V2}/repositories/a/b/c/_layers/sha256/{HEX}/link", Kind.LAYER_LINK, "a/b/c", None, f"sha256:{HEX}"),
        (f"{V2}/repositories/app/_manifests/revisions/sha256/{HEX}/link", Kind.REVISION_LINK, "app", None,
         f"sha256:{HEX}"),
        (f"{V2}/repositories/app/_manifests/revisions/sha256/{HEX}/signatures/sha256/{'b' * 64}/link",
         Kind.SIGNATURE_LINK, "app", None, f"sha256:{HEX}"),
        (f"{V2}/repositories/g/app/_manifests/tags/v1.0-rc_1/current/link", Kind.TAG_LINK, "g/app", "v1.0-rc_1",
         None),
        (f"{V2}/repositories/g/app/_manifests/tags/latest/index/sha256/{HEX}/link", Kind.TAG_INDEX_LINK, "g/app",
         "latest", f"sha256:{HEX}"),
        (f"{V2}/repositories/g/app/_uploads/0f7e/data", Kind.UPLOAD, "g/app", None, None),
        (f"{V2}/repositories/g/app/_uploads/0f7e/hashstates/sha256/0", Kind.UPLOAD, "g/app", None, None),
        ("docker/registry/lockfiles/database-in-use", Kind.LOCKFILE, None, None, None),
        ("scheduler-state.json", Kind.SCHEDULER_STATE, None, None, None),
        (f"{V2}/repositories/app/_manifests/tags/x/current/link.1b4e28ba-2fa1-11d2-883f-0016d3cca427.tmp",
         Kind.TMP_DEBRIS, None, None, None),
        (f"{V2}/repositories/app/_manifests/tags/", Kind.MARKER, "app", None, None),
        (f"{V2}/repositories/group/app/", Kind.MARKER, "group/app", None, None),
        (f"{V2}/repositories/_layers/x", Kind.UNKNOWN, None, None, None),
        ("notes.txt", Kind.UNKNOWN, None, None, None),
    ],
)
def test_classify(path: str, kind: Kind, repository: str | None, tag: str | None, digest: str | None) -> None:
    info = tree.classify(path)
    assert (info.kind, info.repository, info.tag, info.digest) == (kind, repository, tag, digest)


def test_exclusions_cover_uploads_and_debris_only() -> None:
    upload = f"{V2}/repositories/a/_uploads/1/data"
    assert tree.is_excluded(upload)
    assert not tree.is_excluded(upload, include_uploads=True)
    assert tree.is_excluded(f"{V2}/blobs/sha256/aa/{HEX}/data.1b4e28ba-2fa1-11d2-883f-0016d3cca427.tmp")
    # A repository may be *named* like an upload folder only below a '_' component; tags are not uploads.
    assert not tree.is_excluded(f"{V2}/repositories/a/_manifests/tags/_uploads/current/link")
    assert not tree.is_excluded(f"{V2}/blobs/sha256/aa/{HEX}/data")


@pytest.mark.parametrize(
    ("driver", "root", "key"),
    [
        # S3 and GCS strip leading and trailing slashes of the root (shared doc, section 3).
        (Driver.S3, "", "docker/registry/v2/blobs"),
        (Driver.S3, "/", "docker/registry/v2/blobs"),
        (Driver.S3, "/registry", "registry/docker/registry/v2/blobs"),
        (Driver.S3, "registry/", "registry/docker/registry/v2/blobs"),
        (Driver.S3, "/a/b/", "a/b/docker/registry/v2/blobs"),
        (Driver.GCS, "", "docker/registry/v2/blobs"),
        (Driver.GCS, "/registry", "registry/docker/registry/v2/blobs"),
        # Azure: legacy keeps a leading '/', trimmed has none.
        (Driver.AZURE_LEGACY, "", "/docker/registry/v2/blobs"),
        (Driver.AZURE_LEGACY, "registry", "/registry/docker/registry/v2/blobs"),
        (Driver.AZURE_LEGACY, "/registry/", "/registry/docker/registry/v2/blobs"),
        (Driver.AZURE_TRIMMED, "", "docker/registry/v2/blobs"),
        (Driver.AZURE_TRIMMED, "registry", "registry/docker/registry/v2/blobs"),
        (Driver.AZURE_TRIMMED, "/registry/", "registry/docker/registry/v2/blobs"),
    ],
)
def test_object_key_follows_each_driver(driver: Driver, root: str, key: str) -> None:
    path = "docker/registry/v2/blobs"
    assert tree.object_key(driver, root, path) == key
    assert tree.key_prefix(driver, root) + path == key
    assert tree.registry_path(driver, root, key) == path


def test_registry_path_outside_root_is_none() -> None:
    assert tree.registry_path(Driver.S3, "registry", "other/docker/registry/v2/x") is None


def test_link_format_is_exact() -> None:
    assert tree.is_valid_link(f"sha256:{HEX}".encode())
    assert not tree.is_valid_link(f"sha256:{HEX}\n".encode())
    assert not tree.is_valid_link(f"sha256:{HEX[:-1]}".encode())
    assert not tree.is_valid_link(f"sha256:{HEX.upper()}".encode())
    assert not tree.is_valid_link(b"")


def test_markers_are_zero_byte_keys_ending_in_slash() -> None:
    assert tree.is_marker(f"{V2}/repositories/app/", 0)
    assert not tree.is_marker(f"{V2}/repositories/app/", 1)
    assert not tree.is_marker(f"{V2}/repositories/app/x", 0)


@pytest.mark.parametrize(
    ("given", "suggested"),
    [("/srv/reg/docker/registry/v2", "/srv/reg"), ("/srv/reg/docker/registry/v2/", "/srv/reg"),
     ("/srv/reg/docker", "/srv/reg"), ("/srv/reg", None)],
)
def test_suggest_root(given: str, suggested: str | None) -> None:
    assert tree.suggest_root(given) == suggested


@pytest.mark.parametrize(
    ("driver", "prefix", "root"),
    [
        (Driver.S3, "", ""), (Driver.S3, "registry/", "registry"), (Driver.GCS, "a/b/", "a/b"),
        (Driver.AZURE_TRIMMED, "registry/", "registry"), (Driver.AZURE_TRIMMED, "/registry/", None),
        (Driver.AZURE_LEGACY, "/registry/", "registry"), (Driver.AZURE_LEGACY, "/", ""),
        (Driver.AZURE_LEGACY, "registry/", None), (Driver.AZURE_LEGACY, "", None),
        (Driver.FILESYSTEM, "srv/registry/", "srv/registry"),
    ],
)
def test_rootdirectory_for_inverts_the_key_prefix(driver: Driver, prefix: str, root: str | None) -> None:
    assert tree.rootdirectory_for(driver, prefix) == root
    if root is not None and driver is not Driver.FILESYSTEM:
        assert tree.key_prefix(driver, root) == prefix


def test_only_markers_in_the_registrys_key_space_are_the_registrys() -> None:
    for path in ("", "docker/", "docker/registry/", f"{V2}/repositories/app/_manifests/tags/"):
        assert tree.is_registry_marker(path, 0)
    for path in ("backups/", "backups/2026/", "terraform-state/", "dockerfiles/"):
        assert tree.is_marker(path, 0) and not tree.is_registry_marker(path, 0)
    assert not tree.is_registry_marker("docker/", 1)
