"""Docs and runbooks stay true to the code: the CLI reference is generated, and every runbook's
``regmig`` lines run as written against a local S3 server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
    run_runbook("verification.md", env, tmp_path)
    prefix = f"{rootdir}/" if rootdir else ""
    s3.put_object(Bucket=bucket, Key=f"{prefix}{tree.REPOSITORIES}library/alpine/_manifests/tags/", Body=b"")
    run_runbook("nameless-tag-repair.md", env, tmp_path)
    assert (tmp_path / "verify-report.json").stat().st_size > 0
