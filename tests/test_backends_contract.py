"""One contract, every backend: S3 (moto), Azure Blob in both root-prefix modes (Azurite) and GCS
(fake-gcs-server), all over real HTTP. Key names are asserted as each service stores them."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli_runner import regmig
from conftest import local_files, make_backend
from migrate import tree
from migrate.sample import SampleRegistry
from servers import Backend

TAG_LATEST = "docker/registry/v2/repositories/library/alpine/_manifests/tags/latest/current/link"
TAG_320 = "docker/registry/v2/repositories/library/alpine/_manifests/tags/3.20/current/link"


def registry_files(registry: SampleRegistry) -> dict[str, bytes]:
    return {path: data for path, data in local_files(registry.root).items() if not tree.is_excluded(path)}


def run(*args: str):  # type: ignore[no-untyped-def]
    result = regmig(*args, "--json")
    assert result.exit_code in (0, 1), result.stderr
    return result


@pytest.mark.parametrize("root", ["", "registry", "/nested/root/"])
def test_keys_are_the_registry_drivers_keys(backend: Backend, registry: SampleRegistry, root: str) -> None:
    result = run("sync", registry.root, backend.url(root.strip("/")), *backend.args)
    assert result.exit_code == 0, result.stdout
    prefix = backend.key_prefix(root)
    assert backend.keys() == {prefix + path: data for path, data in registry_files(registry).items()}
    assert backend.attributes(prefix + TAG_LATEST)["content_type"] == "application/octet-stream"


def test_resync_tag_change_delete_verify_and_markers(backend: Backend, registry: SampleRegistry) -> None:
    url = backend.url("registry")
    prefix = backend.key_prefix("registry")
    assert run("sync", registry.root, url, *backend.args).exit_code == 0
    again = run("sync", registry.root, url, *backend.args).json()
    assert "uploaded" not in again["outcomes"]

    # A tag moves (same size, new content) and another tag is deleted on the source.
    Path(registry.root, TAG_LATEST).write_bytes(Path(registry.root, TAG_320).read_bytes())
    for path in Path(registry.root, "docker/registry/v2/repositories/team-a/tools/_manifests/tags").rglob("*"):
        if path.is_file():
            path.unlink()
    changed = run("sync", registry.root, url, *backend.args, "--delete").json()
    assert changed["outcomes"]["uploaded"]["count"] == 1
    assert changed["lists"]["changed"]["listed"] == [{"path": TAG_LATEST}]
    assert changed["outcomes"]["deleted"]["count"] == 2
    assert backend.keys() == {prefix + path: data for path, data in registry_files(registry).items()}

    clean = run("verify", registry.root, url, *backend.args, "--deep")
    assert clean.exit_code == 0, clean.stdout

    # Defects planted with the service's own client: a blob removed, a link changed.
    blob = next(p for p in registry_files(registry) if p.startswith(tree.BLOBS))
    backend.remove(prefix + blob)
    backend.put(prefix + TAG_320, b"sha256:" + b"0" * 64)
    report = run("verify", registry.root, url, *backend.args).json()
    assert report["exit_code"] == 1
    assert [i["path"] for i in report["lists"]["missing in destination"]["listed"]] == [blob]
    assert [i["path"] for i in report["lists"]["content differs"]["listed"]] == [TAG_320]
    assert run("sync", registry.root, url, *backend.args).exit_code == 0

    # Markers, as a bucket-copy tool leaves them; a non-empty look-alike survives.
    markers = [f"{tree.REPOSITORIES}library/alpine/", f"{tree.REPOSITORIES}library/alpine/_manifests/tags/"]
    for marker in markers:
        backend.put(prefix + marker, b"")
    backend.put(prefix + f"{tree.REPOSITORIES}team-a/", b"data")
    found = run("nameless-tags", url, *backend.args).json()
    assert found["exit_code"] == 1
    assert sorted(m["path"] for m in found["markers"]) == sorted(markers)
    fixed = run("nameless-tags", url, *backend.args, "--fix").json()
    assert fixed["exit_code"] == 0 and fixed["removed"] == 2
    stored = backend.keys()
    assert not {prefix + m for m in markers} & set(stored)
    assert stored[prefix + f"{tree.REPOSITORIES}team-a/"] == b"data"


def test_round_trip_filesystem_azure_legacy_s3_filesystem(request: pytest.FixtureRequest, registry: SampleRegistry,
                                                          tmp_path: Path) -> None:
    azure = make_backend(request, "azure-legacy")
    s3 = make_backend(request, "s3-rgw")
    back = tmp_path / "back"
    assert run("sync", registry.root, azure.url("registry"), *azure.args).exit_code == 0
    assert all(key.startswith("/registry/docker/") for key in azure.keys())
    assert run("sync", azure.url("registry"), s3.url("moved"), *azure.args, *s3.args).exit_code == 0
    assert all(key.startswith("moved/docker/") for key in s3.keys())
    assert run("sync", s3.url("moved"), str(back), *s3.args).exit_code == 0
    assert local_files(back) == registry_files(registry)
    assert run("verify", registry.root, str(back)).exit_code == 0


def test_azure_data_in_the_other_root_prefix_is_named(request: pytest.FixtureRequest, registry: SampleRegistry) -> None:
    legacy = make_backend(request, "azure-legacy")
    assert run("sync", registry.root, legacy.url(), *legacy.args).exit_code == 0
    trimmed_args = [a if a != "legacy" else "trimmed" for a in legacy.args]
    result = regmig("verify", legacy.url(), *trimmed_args)
    assert result.exit_code == 2
    assert result.stderr.strip().endswith(f"did you mean {legacy.url()} with --azure-root-prefix legacy "
                                          f"(registry config legacyrootprefix: true)?")


def test_gcs_upload_session_objects_are_invisible_and_replaced(request: pytest.FixtureRequest,
                                                               registry: SampleRegistry) -> None:
    gcs = make_backend(request, "gcs")
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="t", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": request.getfixturevalue("gcs_endpoint")})
    client.bucket(gcs.container).blob(TAG_LATEST).upload_from_string(
        Path(registry.root, TAG_LATEST).read_bytes(), content_type="application/x-docker-upload-session")
    result = run("sync", registry.root, gcs.url(), *gcs.args).json()
    assert result["outcomes"]["uploaded"]["count"] == len(registry_files(registry))
    assert gcs.attributes(TAG_LATEST)["content_type"] == "application/octet-stream"


def test_azure_hierarchical_namespace_is_refused(request: pytest.FixtureRequest, registry: SampleRegistry,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.storage.blob import ContainerClient

    azure = make_backend(request, "azure-trimmed")
    original = ContainerClient.get_account_information
    monkeypatch.setattr(ContainerClient, "get_account_information",
                        lambda self, **kw: {**original(self, **kw), "is_hns_enabled": True})
    result = regmig("sync", registry.root, azure.url(), *azure.args)
    assert result.exit_code == 2
    assert "hierarchical namespace" in result.stderr
    assert azure.keys() == {}
