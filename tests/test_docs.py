"""Docs and runbooks stay true to the code: the CLI reference is generated, and every runbook's
``regmig`` lines run as written against a local S3 server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import local_files
from migrate import clidoc, tree

REPO = Path(__file__).resolve().parent.parent
RUNBOOKS = REPO / "runbooks"
_BLOCK = re.compile(r"```sh\n(.*?)```", re.S)
_EXPECT = re.compile(r"#\s*expect exit (\d+)\s*$")


def test_cli_reference_is_current() -> None:
    assert (REPO / "docs" / "cli.md").read_text() == clidoc.render(), "docs/cli.md is stale: run `make docs`"


def runbook_commands(name: str) -> list[tuple[str, int]]:
    commands = []
    for block in _BLOCK.findall((RUNBOOKS / name).read_text()):
        for line in block.splitlines():
            if line.startswith("regmig "):
                expect = _EXPECT.search(line)
                commands.append((line, int(expect.group(1)) if expect else 0))
    assert commands, f"{name} has no regmig commands"
    return commands


def run_runbook(name: str, env: dict[str, str], cwd: Path) -> None:
    for line, expected in runbook_commands(name):
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", line], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == expected, f"{name}: `{line}` exited {done.returncode}\n{done.stdout}\n{done.stderr}"


@pytest.mark.parametrize("rootdir", ["registry", ""])
def test_runbooks_run_as_written(registry, s3, bucket, s3_endpoint, tmp_path, rootdir) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "REGISTRY_ROOT": registry.root, "BUCKET": bucket, "ROOTDIR": rootdir,
           "AWS_ENDPOINT_URL_S3": s3_endpoint,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    run_runbook("migrate-to-s3.md", env, tmp_path)
    time.sleep(1.1)  # the cut-over time, taken after the final pass (verification.md, step 4)
    env["CUTOVER_TIME"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    run_runbook("verification.md", env, tmp_path)
    prefix = f"{rootdir}/" if rootdir else ""
    s3.put_object(Bucket=bucket, Key=f"{prefix}{tree.REPOSITORIES}library/alpine/_manifests/tags/", Body=b"")
    run_runbook("nameless-tag-repair.md", env, tmp_path)
    assert (tmp_path / "verify-report.json").stat().st_size > 0
    assert json.loads((tmp_path / "final-dry-run.json").read_text())["dry_run"] is True
    page = (tmp_path / "migration-report.html").read_text()
    assert '<div class="word">OK</div>' in page and page.count('class="pass"') == 3


def test_azure_and_gcs_runbooks_run_as_written(registry, tmp_path, request) -> None:  # type: ignore[no-untyped-def]
    from conftest import make_backend
    from servers import AZURITE_ACCOUNT, AZURITE_KEY

    azure = make_backend(request, "azure-trimmed")
    gcs = make_backend(request, "gcs")
    endpoint = request.getfixturevalue("azurite_endpoint")
    env = {**os.environ, "REGISTRY_ROOT": registry.root, "ROOTDIR": "registry", "CONTAINER": azure.container,
           "AZURE_STORAGE_CONNECTION_STRING": f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
                                              f"AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    run_runbook("migrate-to-azure.md", env, tmp_path)
    assert "trimlegacyrootprefix: true" in (tmp_path / "registry-azure-snippet.txt").read_text()
    assert json.loads((tmp_path / "final-dry-run-azure.json").read_text())["dry_run"] is True
    assert json.loads((tmp_path / "verify-azure.json").read_text())["verdict"] == "OK"
    assert '<div class="word">OK</div>' in (tmp_path / "migration-report-azure.html").read_text()
    run_runbook("migrate-to-gcs.md", {**env, "BUCKET": gcs.container}, tmp_path)
    assert all(key.startswith("registry/docker/") for key in gcs.keys())


def test_rollback_runbook_runs_as_written(registry, s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cli_runner import regmig
    from conftest import local_files

    assert regmig("sync", registry.root, f"s3://{bucket}/registry", "--endpoint-url", s3_endpoint).exit_code == 0
    rollback = tmp_path / "rollback"
    env = {**os.environ, "BUCKET": bucket, "ROOTDIR": "registry", "ROLLBACK_ROOT": str(rollback),
           "AWS_ENDPOINT_URL_S3": s3_endpoint,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    run_runbook("rollback-to-filesystem.md", env, tmp_path)
    expected = {p: d for p, d in local_files(registry.root).items() if not tree.is_excluded(p)}
    assert local_files(rollback) == expected


def test_every_json_key_is_documented(registry, s3, bucket, s3_endpoint, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import datetime
    import socket

    from cli_runner import regmig
    from migrate import __version__

    documented = set(re.findall(r"`([a-z_]+)`", (REPO / "docs" / "reports.md").read_text()))
    url = f"s3://{bucket}/r"
    secret = "not-a-real-azure-key-but-a-secret-0123456789"
    common = ("--endpoint-url", s3_endpoint, "--json")
    reports = [regmig("sync", registry.root, url, *common, "--azure-account-key", secret).json(),
               regmig("verify", registry.root, url, *common, "--deep").json(),
               regmig("nameless-tags", url, *common).json(),
               regmig("plan", registry.root, url, *common).json(),
               regmig("doctor", url, *common).json()]
    for report in reports:
        assert set(report) - documented == set(), f"{report['command']}: undocumented keys"
        for key in ("started_at", "finished_at"):
            moment = datetime.datetime.fromisoformat(report[key])
            assert moment.utcoffset() == datetime.timedelta(0), report[key]
        assert report["started_at"] <= report["finished_at"]
        assert report["regmig_version"] == __version__ and report["host"] == socket.gethostname()
        assert report["argv"][:2] == ["regmig", report["command"]] and "--json" in report["argv"]
        assert report["verdict"] in ("OK", "CLEAN") and report["destination"] == url
        assert "source" in report
    sync_report, verify_report = reports[0], reports[1]
    assert secret not in json.dumps(sync_report) and "****" in sync_report["argv"]
    uploaded = sync_report["lists"]["uploaded"]
    assert uploaded["count"] == sync_report["outcomes"]["uploaded"]["count"] == len(uploaded["listed"]) > 0
    files = [path for path in local_files(registry.root) if tree.is_registry_data(path) and not tree.is_excluded(path)]
    kinds = [tree.classify(path) for path in files]
    assert verify_report["checked"] == {
        "repositories": len({info.repository for info in kinds if info.repository}),
        "tags": sum(info.kind is tree.Kind.TAG_LINK for info in kinds),
        "manifests": sum(info.kind is tree.Kind.REVISION_LINK for info in kinds),
        "blobs": sum(info.kind is tree.Kind.BLOB_DATA for info in kinds),
        "links": sum(info.kind in tree.LINK_KINDS for info in kinds),
    }
    assert verify_report["checked"]["repositories"] >= 3 and verify_report["checked"]["tags"] >= 3
    assert [phase["phase"] for phase in sync_report["phases"]][:1] == ["copying"]
