"""The strongest proof: images pushed by the real registry, synced by regmig, are served from S3.

Debian's docker-registry (distribution 2.8.2) writes the tree on the filesystem driver; after
``regmig sync`` the same registry on the s3 driver, configured with what ``regmig config-snippet``
prints, against Ceph RGW and moto's server, with a rootdirectory and without, must serve every
repository, tag and digest identically, and follow a re-pushed tag after ``sync --delete``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import realregistry as rr
from cli_runner import regmig
from conftest import ACCESS_KEY, SECRET_KEY, list_keys

pytestmark = pytest.mark.registry


def snippet_storage(url: str, endpoint: str) -> dict[str, object]:
    """The storage section ``config-snippet`` prints for the cut-over, placeholders filled in."""
    printed = regmig("config-snippet", url, "--endpoint-url", endpoint, "--region", "us-east-1")
    assert printed.exit_code == 0, printed.stderr
    storage = yaml.safe_load(printed.stdout.split("# GitLab")[0])["storage"]
    storage["s3"].update(accesskey=ACCESS_KEY, secretkey=SECRET_KEY)
    return storage  # type: ignore[no-any-return]


def push_sample_images(base: str, work: Path) -> dict[str, str]:
    """Several repositories with nested names, tags sharing a manifest, a multi-arch index, an
    overwritten tag and a deleted manifest. Returns digests the test refers to."""
    layout = rr.Layout(work / "layout")
    base_image = layout.image({"etc/os-release": b"ID=sample\n"}, ref="base")
    layout.image({"bin/tool": b"v1"}, ref="tool-v1")
    layout.image({"bin/tool": b"v2"}, ref="tool-v2")
    layout.image({"bin/old": b"old"}, ref="old")
    amd = layout.image({"app": b"amd64 build"}, arch="amd64")
    arm = layout.image({"app": b"arm64 build"}, arch="arm64")
    layout.multi_arch("multi", [amd, arm])
    layout.image({"bin/tool": b"v3"}, ref="tool-v3")

    rr.push(layout.path, "base", base, "library/alpine:3.20", work)
    rr.push(layout.path, "base", base, "library/alpine:latest", work)  # two tags, one manifest
    rr.push(layout.path, "base", base, "group/sub/project/app:base", work, docker_format=True)
    rr.push(layout.path, "multi", base, "group/sub/project/app:v1", work, all_images=True)
    rr.push(layout.path, "tool-v1", base, "group/sub/project/app/worker:main", work, docker_format=True)
    rr.push(layout.path, "tool-v1", base, "team/tool:stable", work)
    rr.push(layout.path, "tool-v2", base, "team/tool:stable", work)  # overwritten tag
    rr.push(layout.path, "old", base, "team/tool:old", work)
    old_digest = rr.manifest_digest(base, "team/tool", "old")
    assert old_digest
    rr.delete_manifest(base, "team/tool", old_digest)  # a deleted manifest
    return {"old": old_digest, "base": base_image["digest"]}


@pytest.mark.parametrize("root", ["/registry", ""])
def test_registry_serves_migrated_tree_from_s3(tmp_path: Path, s3, bucket: str, s3_endpoint: str,  # type: ignore[no-untyped-def]
                                               root: str) -> None:
    work = tmp_path / "work"
    url = f"s3://{bucket}{root}"
    key_prefix = root.strip("/") + "/" if root else ""
    source_root = tmp_path / "fs-registry"
    filesystem = {"filesystem": {"rootdirectory": str(source_root)}}
    with rr.running_registry(filesystem, work) as source:
        digests = push_sample_images(source, work)
        expected = rr.snapshot(source)
    assert expected["library/alpine"]["latest"] == expected["library/alpine"]["3.20"]
    assert "old" not in expected["team/tool"]
    assert len(expected) == 4

    result = regmig("sync", str(source_root), url, "--endpoint-url", s3_endpoint, "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["outcomes"]["uploaded"]["count"] > 20
    assert not [k for k in list_keys(s3, bucket) if not k.startswith(key_prefix + "docker/registry/v2/")]

    storage = snippet_storage(url, s3_endpoint)
    with rr.running_registry(storage, work) as migrated:
        assert rr.catalog(migrated) == list(expected)
        rr.serves(migrated, expected, work)
        assert rr.manifest_digest(migrated, "team/tool", digests["old"]) is None

    # Re-push a tag on the filesystem registry, sync --delete, and the S3 registry follows it.
    with rr.running_registry(filesystem, work) as source:
        rr.push(work / "layout", "tool-v3", source, "library/alpine:latest", work)
        rr.delete_manifest(source, "group/sub/project/app/worker", expected["group/sub/project/app/worker"]["main"])
        changed = rr.snapshot(source)
    assert changed["library/alpine"]["latest"] != expected["library/alpine"]["latest"]

    second = regmig("sync", str(source_root), url, "--endpoint-url", s3_endpoint, "--delete", "--json")
    assert second.exit_code == 0, second.stderr
    report = second.json()
    assert report["outcomes"]["deleted"]["count"] >= 1
    changed_paths = [item["path"] for item in report["lists"]["changed"]["listed"]]
    assert changed_paths == ["docker/registry/v2/repositories/library/alpine/_manifests/tags/latest/current/link"]

    with rr.running_registry(storage, work) as migrated:
        assert rr.snapshot(migrated) == changed
        rr.pull(migrated, "library/alpine:latest", work)
        rr.pull(migrated, "library/alpine:3.20", work)



def test_registry_serves_a_tree_whose_docker_directory_is_a_link(tmp_path: Path, s3, bucket: str,  # type: ignore[no-untyped-def]
                                                                  s3_endpoint: str) -> None:
    """Registry data moved to a bigger disk and linked back (`docker -> /mnt/disk/docker`): the
    registry serves it through the link, `sync --follow-symlinks` copies it under the same keys."""
    work = tmp_path / "work"
    root = tmp_path / "fs-registry"
    with rr.running_registry({"filesystem": {"rootdirectory": str(root)}}, work) as source:
        layout = rr.Layout(work / "layout")
        layout.image({"etc/os-release": b"ID=moved\n"}, ref="base")
        amd = layout.image({"app": b"amd64 build"}, arch="amd64")
        arm = layout.image({"app": b"arm64 build"}, arch="arm64")
        layout.multi_arch("multi", [amd, arm])
        rr.push(layout.path, "base", source, "library/alpine:3.20", work)
        rr.push(layout.path, "base", source, "group/sub/app:base", work, docker_format=True)
        rr.push(layout.path, "multi", source, "group/sub/app:v1", work, all_images=True)
    disk = tmp_path / "disk"
    disk.mkdir()
    (root / "docker").rename(disk / "docker")
    (root / "docker").symlink_to(disk / "docker")
    with rr.running_registry({"filesystem": {"rootdirectory": str(root)}}, work) as source:
        expected = rr.snapshot(source)
    assert sorted(expected) == ["group/sub/app", "library/alpine"]

    url = f"s3://{bucket}/registry-root"
    skipped = regmig("sync", str(root), url, "--endpoint-url", s3_endpoint, "--json")
    assert skipped.exit_code == 1
    assert "--follow-symlinks" in skipped.json()["lists"]["problems"]["listed"][0]["message"]
    result = regmig("sync", str(root), url, "--endpoint-url", s3_endpoint, "--follow-symlinks", "--json")
    assert result.exit_code == 0, result.stdout
    assert list_keys(s3, bucket) and all(k.startswith("registry-root/docker/registry/v2/") for k in list_keys(s3, bucket))

    with rr.running_registry(snippet_storage(url, s3_endpoint), work) as migrated:
        rr.serves(migrated, expected, work)
