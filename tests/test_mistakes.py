"""The operator's mistakes at 2 a.m. (issue 14, items 1 to 5): each ends in a one-line refusal
(exit 2) or a correct result, and nothing that should stay is lost. Real servers throughout:
S3 (the `s3` fixtures), Azurite and fake-gcs-server (the `backend` fixture)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


from cli_runner import regmig
from conftest import list_keys, local_files
from faultproxy import FaultProxy
from migrate import tree
from migrate.sample import SampleRegistry, demo_registry
from servers import Backend

TAG_LATEST = "docker/registry/v2/repositories/library/alpine/_manifests/tags/latest/current/link"
TAG_320 = "docker/registry/v2/repositories/library/alpine/_manifests/tags/3.20/current/link"
TAGS_MARKER = "docker/registry/v2/repositories/library/alpine/_manifests/tags/"


def one_line_refusal(result, *words: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


# --- 1. the wrong root on the destination ----------------------------------------------------------

def test_every_command_names_the_root_that_holds_the_registry(backend: Backend, registry: SampleRegistry) -> None:
    right = backend.url("registry")
    assert regmig("sync", registry.root, right, *backend.args).exit_code == 0
    backend.put(backend.key_prefix("registry") + TAGS_MARKER, b"")  # a nameless tag to be found
    backend.put("backups/db.tar", b"foreign data at the top")
    before = backend.keys()
    hint = f"did you mean {right}?"

    for wrong in (backend.url(), backend.url("wrongroot")):
        one_line_refusal(regmig("nameless-tags", wrong, *backend.args, "--fix"), hint)
        one_line_refusal(regmig("verify", wrong, *backend.args), hint)
        one_line_refusal(regmig("verify", registry.root, wrong, *backend.args), hint)
        one_line_refusal(regmig("sync", registry.root, wrong, *backend.args, "--delete"), hint, "--delete")
        assert backend.keys() == before  # refused before the first write

        preview = regmig("sync", registry.root, wrong, *backend.args, "--delete", "--dry-run", "--json")
        assert preview.exit_code == 0, preview.stderr
        assert any(hint in note and "refuses this" in note for note in preview.json()["notes"])
        plan = regmig("plan", registry.root, wrong, *backend.args, "--no-probe")
        assert plan.exit_code == 0, plan.stderr
        assert hint in plan.stdout
    assert backend.keys() == before

    doctor = regmig("doctor", backend.url("wrongroot"), *backend.args, "--json")
    assert doctor.exit_code == 1
    assert [c["level"] for c in doctor.json()["checks"] if hint in c["message"]] == ["WARN"]
    assert "did you mean" not in regmig("doctor", right, *backend.args).stdout

    # A first copy into a new root beside another registry is legitimate: it runs, with the hint.
    new = regmig("sync", registry.root, backend.url("second"), *backend.args, "--json")
    assert new.exit_code == 0, new.stderr
    assert any(hint in note for note in new.json()["notes"])


def test_the_search_for_another_root_never_lists_the_bucket(registry, s3, bucket, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    """Ten million keys under the right root cost the same few requests as forty: delimiter
    listings and one-key probes only, never a listing of the keys themselves."""
    assert regmig("sync", registry.root, f"s3://{bucket}/a/b/registry", "--endpoint-url", s3_endpoint).exit_code == 0
    for name in ("backups/2026/db.tar", "terraform-state/prod.tfstate", "a/notes.txt"):
        s3.put_object(Bucket=bucket, Key=name, Body=b"x")
    with FaultProxy(s3_endpoint) as proxy:
        result = regmig("nameless-tags", f"s3://{bucket}", "--endpoint-url", proxy.url)
    one_line_refusal(result, f"did you mean s3://{bucket}/a/b/registry?")
    listings = [parse_qs(urlsplit(path).query) for _, method, path, _ in proxy.faults.log
                if method == "GET" and "list-type=2" in path]
    assert listings and all("delimiter" in query or query.get("max-keys") == ["1"] for query in listings), listings
    assert len(proxy.faults.log) <= 12, proxy.faults.log


def test_a_directory_destination_names_the_root_below_it(registry, s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    parent = Path(registry.root).parent
    one_line_refusal(regmig("verify", str(parent)), f"did you mean {registry.root}?")
    assert regmig("sync", registry.root, f"s3://{bucket}/r", "--endpoint-url", s3_endpoint).exit_code == 0
    before = local_files(parent)
    one_line_refusal(regmig("sync", f"s3://{bucket}/r", str(parent), "--endpoint-url", s3_endpoint, "--delete",
                            "--allow-object-source-delete"), f"did you mean {registry.root}?")
    assert local_files(parent) == before


# --- 2. a wrong SOURCE with --delete ------------------------------------------------------------------

def test_delete_from_another_registry_is_refused_before_the_first_write(registry, s3, bucket, s3_endpoint,  # type: ignore[no-untyped-def]
                                                                         tmp_path) -> None:
    url = f"s3://{bucket}/registry"
    assert regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint).exit_code == 0
    wrong = demo_registry(str(tmp_path / "staging"), seed=99)
    before = list_keys(s3, bucket)
    with FaultProxy(s3_endpoint) as proxy:
        refused = regmig("sync", wrong.root, url, "--endpoint-url", proxy.url, "--delete")
    one_line_refusal(refused, "blobs sampled", "--allow-unrelated-source")
    assert list_keys(s3, bucket) == before
    assert {method for _, method, _, _ in proxy.faults.log} <= {"GET", "HEAD"}
    assert len(proxy.faults.log) <= 8, proxy.faults.log  # a sample, not a listing of the destination

    preview = regmig("sync", wrong.root, url, "--endpoint-url", s3_endpoint, "--delete", "--dry-run", "--json")
    assert preview.exit_code == 0
    assert any("--allow-unrelated-source" in note for note in preview.json()["notes"])

    # The real source, changed since the last pass, is not refused; nor is the confirmed one.
    Path(registry.root, TAG_LATEST).write_bytes(Path(registry.root, TAG_320).read_bytes())
    assert regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint, "--delete").exit_code == 0
    confirmed = regmig("sync", wrong.root, url, "--endpoint-url", s3_endpoint, "--delete", "--allow-unrelated-source")
    assert confirmed.exit_code == 0, confirmed.stderr
    assert {k.removeprefix("registry/") for k in list_keys(s3, bucket)} == {
        p for p in local_files(wrong.root) if not tree.is_excluded(p)}


# --- 3. swapped direction without --delete ------------------------------------------------------------

def test_a_populated_registry_directory_as_destination_needs_confirmation(registry, s3, bucket, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    url = f"s3://{bucket}/registry"
    assert regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint).exit_code == 0
    Path(registry.root, TAG_LATEST).write_bytes(Path(registry.root, TAG_320).read_bytes())  # the tag moves on
    before = local_files(registry.root)

    one_line_refusal(regmig("sync", url, registry.root, "--endpoint-url", s3_endpoint), "--into-populated-directory")
    assert local_files(registry.root) == before  # the moved tag is still the newer one
    preview = regmig("plan", url, registry.root, "--endpoint-url", s3_endpoint, "--no-probe")
    assert preview.exit_code == 0 and "--into-populated-directory" in preview.stdout
    assert local_files(registry.root) == before

    confirmed = regmig("sync", url, registry.root, "--endpoint-url", s3_endpoint, "--into-populated-directory")
    assert confirmed.exit_code == 0, confirmed.stderr
    assert Path(registry.root, TAG_LATEST).read_bytes() != before[TAG_LATEST]  # as the operator confirmed


# --- 4. relocated mounts: --follow-symlinks -------------------------------------------------------------

def relocate(registry: SampleRegistry, disk: Path, name: str = "docker") -> None:
    """Move a directory of the tree to another disk and leave a link, as operators do."""
    inside = Path(registry.root, name)
    disk.mkdir(parents=True, exist_ok=True)
    os.rename(inside, disk / inside.name)
    os.symlink(disk / inside.name, inside)


def test_sync_and_verify_follow_a_relocated_docker_directory(registry, s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    expected = {p: d for p, d in local_files(registry.root).items() if not tree.is_excluded(p)}
    relocate(registry, tmp_path / "disk")
    Path(registry.root, "docker-notes").write_bytes(b"sorts before docker/")
    expected["docker-notes"] = b"sorts before docker/"
    url = f"s3://{bucket}/registry"

    skipped = regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint, "--json")
    assert skipped.exit_code == 1
    assert [p["path"] for p in skipped.json()["lists"]["problems"]["listed"]] == ["docker"]
    assert "--follow-symlinks" in skipped.json()["lists"]["problems"]["listed"][0]["message"]

    followed = regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint, "--follow-symlinks")
    assert followed.exit_code == 0, followed.stdout
    assert {k.removeprefix("registry/"): d for k, d in list_keys(s3, bucket).items()} == expected
    verified = regmig("verify", registry.root, url, "--endpoint-url", s3_endpoint, "--follow-symlinks", "--deep")
    assert verified.exit_code == 0, verified.stdout
    plan = regmig("plan", registry.root, url, "--endpoint-url", s3_endpoint, "--follow-symlinks", "--no-probe",
                  "--json")
    assert plan.exit_code == 0 and "would upload" not in plan.json()["outcomes"]


def test_a_dangling_link_or_a_loop_is_a_problem_that_blocks_delete(registry, s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"s3://{bucket}/registry"
    relocate(registry, tmp_path / "disk", "docker")
    assert regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint, "--follow-symlinks").exit_code == 0
    v2 = Path(registry.root, "docker/registry/v2")
    os.symlink(tmp_path / "gone", v2 / "repositories" / "dangling")
    os.symlink("..", v2 / "repositories" / "loop")
    os.symlink(v2 / "blobs", v2 / "repositories" / "alias")
    Path(registry.root, TAG_LATEST).unlink()  # a delete is due
    before = list_keys(s3, bucket)
    result = regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint, "--follow-symlinks", "--delete",
                    "--json")
    assert result.exit_code == 1
    problems = {p["path"]: p["message"] for p in result.json()["lists"]["problems"]["listed"]}
    repositories = "docker/registry/v2/repositories/"
    assert set(problems) == {repositories + "alias", repositories + "dangling", repositories + "loop"}
    assert "dangling" in problems[repositories + "dangling"]
    assert "loop" in problems[repositories + "loop"]
    assert "back into the tree" in problems[repositories + "alias"]
    assert "passed over 3" in result.json()["delete_refused"]
    assert list_keys(s3, bucket) == before


# --- 5. folder markers that are not the registry's --------------------------------------------------------

FOREIGN_MARKERS = ["backups/", "backups/2026/", "terraform-state/"]


def test_foreign_folder_markers_in_a_shared_bucket_are_left_alone(backend: Backend, registry: SampleRegistry) -> None:
    assert regmig("sync", registry.root, backend.url(), *backend.args).exit_code == 0
    prefix = backend.key_prefix("")  # Azure's legacy layout puts even the root's keys under "/"
    for key in FOREIGN_MARKERS:
        backend.put(prefix + key, b"")
    verified = regmig("verify", registry.root, backend.url(), *backend.args, "--json")
    assert verified.exit_code == 0, verified.stdout
    assert verified.json()["counts"]["markers"] == 0

    registry_markers = [prefix + TAGS_MARKER, prefix + "docker/"]
    for key in registry_markers:
        backend.put(key, b"")
    fixed = regmig("nameless-tags", backend.url(), *backend.args, "--fix", "--json")
    assert fixed.exit_code == 0, fixed.stdout
    assert sorted(m["path"] for m in fixed.json()["markers"]) == ["docker/", TAGS_MARKER]
    stored = backend.keys()
    assert all(stored[prefix + key] == b"" for key in FOREIGN_MARKERS)
    assert not set(registry_markers) & set(stored)


def test_the_markers_of_the_root_itself_are_the_registrys(registry, s3, bucket, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    url = f"s3://{bucket}/registry"
    assert regmig("sync", registry.root, url, "--endpoint-url", s3_endpoint).exit_code == 0
    for key in ("registry/", "registry/docker/", "registry/backups/", "backups/"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"")
    found = regmig("nameless-tags", url, "--endpoint-url", s3_endpoint, "--fix", "--json").json()
    assert sorted(m["path"] for m in found["markers"]) == ["", "docker/"]
    keys = list_keys(s3, bucket)
    assert "registry/backups/" in keys and "backups/" in keys
    assert "registry/" not in keys and "registry/docker/" not in keys
