"""The real Distribution registry (Debian's docker-registry) and skopeo, driven by the tests.

Missing tools fail loudly: CI installs them (.ci/run and `make test-deps`), so a skip would
hide a broken install.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from servers import free_port, stop

MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
])


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: run `make test-deps` (apt-get install docker-registry skopeo)",
                    pytrace=False)
    return path


def child_environment() -> dict[str, str]:
    """AWS_CA_BUNDLE makes the registry's s3 driver panic at start-up (shared testing doc)."""
    env = dict(os.environ)
    env.pop("AWS_CA_BUNDLE", None)
    return env


@contextmanager
def running_registry(storage: dict[str, Any], workdir: Path, extra: dict[str, Any] | None = None) -> Iterator[str]:
    """Start ``docker-registry serve`` with this storage section; yields its base URL."""
    binary = require("docker-registry")
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {**storage, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "regmig-test-http-secret"},
        **(extra or {}),
    }
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / f"registry-{port}.yml"
    config_path.write_text(json.dumps(config))  # YAML is a superset of JSON
    log_path = workdir / f"registry-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([binary, "serve", str(config_path)], stdout=log, stderr=subprocess.STDOUT,
                                   env=child_environment())
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, log_path)
        yield url
    finally:
        stop(process)


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"registry exited at start-up:\n{log_path.read_text()}")
        try:
            urllib.request.urlopen(url + "/v2/", timeout=2).close()
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise AssertionError(f"registry did not start:\n{log_path.read_text()}")


# --- the registry's HTTP API -------------------------------------------------------------------


def get(url: str, accept: str | None = None, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def catalog(base: str) -> list[str]:
    repositories: list[str] = []
    url: str | None = base + "/v2/_catalog?n=100"
    while url:
        status, headers, body = get(url)
        assert status == 200, body
        repositories += json.loads(body)["repositories"]
        link = headers.get("Link")
        url = base + link.split(";")[0].strip("<>") if link else None
    return repositories


def tags(base: str, repository: str) -> list[str]:
    """Tag names. A repository whose last tag was deleted keeps an empty ``tags/`` directory on the
    filesystem (200, no tags) but has no objects under it on S3 (404 NAME_UNKNOWN): both mean none."""
    status, _, body = get(f"{base}/v2/{repository}/tags/list")
    if status == 404 and b"NAME_UNKNOWN" in body:
        return []
    assert status == 200, body
    return sorted(json.loads(body)["tags"] or [])


def manifest_digest(base: str, repository: str, reference: str) -> str | None:
    status, headers, body = get(f"{base}/v2/{repository}/manifests/{reference}", accept=MANIFEST_TYPES)
    if status == 404:
        return None
    assert status == 200, body
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    assert headers.get("Docker-Content-Digest") == digest
    return digest


def delete_manifest(base: str, repository: str, digest: str) -> None:
    status, _, body = get(f"{base}/v2/{repository}/manifests/{digest}", method="DELETE")
    assert status == 202, body


def snapshot(base: str) -> dict[str, dict[str, str | None]]:
    """Every repository's tags with the digest each one resolves to."""
    return {repo: {tag: manifest_digest(base, repo, tag) for tag in tags(base, repo)} for repo in catalog(base)}


# --- skopeo ------------------------------------------------------------------------------------


def skopeo(*args: str, workdir: Path) -> str:
    policy = workdir / "policy.json"
    if not policy.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    command = [require("skopeo"), "--policy", str(policy), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=child_environment())
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stderr}"
    return done.stdout


def push(layout: Path, reference: str, base: str, target: str, workdir: Path, *, all_images: bool = False,
         docker_format: bool = False) -> None:
    args = ["copy", "--dest-tls-verify=false"]
    args += ["--all"] if all_images else []
    args += ["--format", "v2s2"] if docker_format else []
    skopeo(*args, f"oci:{layout}:{reference}", f"docker://{base.removeprefix('http://')}/{target}", workdir=workdir)


def pull(base: str, reference: str, workdir: Path) -> None:
    """A full pull (manifests, configs, every layer, digests checked by skopeo) into a throwaway layout."""
    out = workdir / "pulled"
    shutil.rmtree(out, ignore_errors=True)
    skopeo("copy", "--all", "--src-tls-verify=false", f"docker://{base.removeprefix('http://')}/{reference}",
           f"oci:{out}:x", workdir=workdir)


def serves(base: str, expected: dict[str, dict[str, str | None]], workdir: Path) -> None:
    """The registry at ``base`` lists exactly ``expected`` (a snapshot) and pulls every tag and digest in it."""
    assert snapshot(base) == expected
    for repository, tag_digests in expected.items():
        for tag, digest in tag_digests.items():
            pull(base, f"{repository}:{tag}", workdir)
            pull(base, f"{repository}@{digest}", workdir)


# --- OCI image layouts built from bytes ---------------------------------------------------------


class Layout:
    """An OCI image layout on disk that skopeo can push from."""

    def __init__(self, path: Path) -> None:
        self.path = path
        (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        self.index: list[dict[str, Any]] = []

    def blob(self, data: bytes) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (self.path / "blobs" / "sha256" / digest).write_bytes(data)
        return {"digest": "sha256:" + digest, "size": len(data)}

    def image(self, files: dict[str, bytes], arch: str = "amd64", ref: str | None = None) -> dict[str, Any]:
        layer = _tar_gz(files)
        layer_desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **self.blob(layer)}
        diff_id = "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()
        config = json.dumps({"architecture": arch, "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **self.blob(config)},
            "layers": [layer_desc],
        }).encode()
        desc = {"mediaType": "application/vnd.oci.image.manifest.v1+json", **self.blob(manifest),
                "platform": {"architecture": arch, "os": "linux"}}
        if ref:
            self._name(desc, ref)
        return desc

    def multi_arch(self, ref: str, images: list[dict[str, Any]]) -> dict[str, Any]:
        data = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": images}).encode()
        desc = {"mediaType": "application/vnd.oci.image.index.v1+json", **self.blob(data)}
        self._name(desc, ref)
        return desc

    def _name(self, desc: dict[str, Any], ref: str) -> None:
        self.index.append({**{k: v for k, v in desc.items() if k != "platform"},
                           "annotations": {"org.opencontainers.image.ref.name": ref}})
        (self.path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": self.index}))


def _tar_gz(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)
