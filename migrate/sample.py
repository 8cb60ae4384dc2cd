"""Builds valid registry trees on disk, laid out as the registry's filesystem driver writes them.

Used by ``make demo``, the tests and the benchmarks: blobs whose digests match their bytes,
manifests that parse, links in every place the registry keeps them.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import uuid
from dataclasses import dataclass

from migrate import tree

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class SampleRegistry:
    """A registry root on disk; methods write exactly what a push would."""

    root: str

    def write(self, path: str, data: bytes) -> None:
        target = os.path.join(self.root, *path.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as out:
            out.write(data)

    def blob(self, data: bytes) -> str:
        digest = digest_of(data)
        self.write(tree.blob_path(digest), data)
        return digest

    def link(self, repository: str, where: str, digest: str) -> None:
        """``where`` is the part after the repository, e.g. ``_layers``, ``_manifests/revisions``."""
        alg, _, hexpart = digest.partition(":")
        self.write(f"{tree.REPOSITORIES}{repository}/{where}/{alg}/{hexpart}/link", digest.encode())

    def tag(self, repository: str, tag: str, manifest_digest: str) -> None:
        base = f"{tree.REPOSITORIES}{repository}/_manifests/tags/{tag}"
        self.write(f"{base}/current/link", manifest_digest.encode())
        self.link(repository, f"_manifests/tags/{tag}/index", manifest_digest)

    def image(self, repository: str, tag: str | None, layers: list[bytes], *, arch: str = "amd64") -> str:
        """Push a Docker v2 schema 2 image; returns the manifest digest."""
        layer_descriptors = []
        for layer in layers:
            digest = self.blob(layer)
            self.link(repository, "_layers", digest)
            layer_descriptors.append({"mediaType": DOCKER_LAYER, "size": len(layer), "digest": digest})
        config = json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers",
                             "diff_ids": [d["digest"] for d in layer_descriptors]}}).encode()
        config_digest = self.blob(config)
        self.link(repository, "_layers", config_digest)
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": config_digest},
            "layers": layer_descriptors,
        }, indent=3).encode()
        return self._manifest(repository, tag, manifest)

    def index(self, repository: str, tag: str, children: list[tuple[str, str]]) -> str:
        """Push an OCI index over already pushed manifests ``(digest, arch)``; returns its digest."""
        manifests = []
        for digest, arch in children:
            size = os.path.getsize(os.path.join(self.root, *tree.blob_path(digest).split("/")))
            manifests.append({"mediaType": DOCKER_MANIFEST, "size": size, "digest": digest,
                              "platform": {"architecture": arch, "os": "linux"}})
        data = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}).encode()
        return self._manifest(repository, tag, data)

    def _manifest(self, repository: str, tag: str | None, data: bytes) -> str:
        digest = self.blob(data)
        self.link(repository, "_manifests/revisions", digest)
        if tag:
            self.tag(repository, tag, digest)
        return digest

    def unfinished_upload(self, repository: str, data: bytes) -> str:
        upload_id = str(uuid.uuid4())
        base = f"{tree.REPOSITORIES}{repository}/_uploads/{upload_id}"
        self.write(f"{base}/data", data)
        self.write(f"{base}/startedat", b"2026-11-22T07:00:00Z")
        self.write(f"{base}/hashstates/sha256/0", b"\x00" * 16)
        return upload_id

    def lockfiles(self) -> None:
        self.write(tree.LOCKFILES + "filesystem-in-use", b'{"version":1}')


def random_bytes(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size)


def demo_registry(root: str, seed: int = 7) -> SampleRegistry:
    """A small registry with nested names, shared layers, a multi-arch index and an unfinished upload."""
    rng = random.Random(seed)
    registry = SampleRegistry(root)
    base_layer = random_bytes(rng, 300_000)
    registry.image("library/alpine", "3.20", [base_layer])
    latest = registry.image("library/alpine", "latest", [base_layer, random_bytes(rng, 40_000)])
    registry.tag("library/alpine", "3.21", latest)
    amd = registry.image("group/project/app", None, [base_layer, random_bytes(rng, 120_000)], arch="amd64")
    arm = registry.image("group/project/app", None, [random_bytes(rng, 110_000)], arch="arm64")
    registry.index("group/project/app", "v1.0", [(amd, "amd64"), (arm, "arm64")])
    registry.image("group/project/app/worker", "main", [random_bytes(rng, 12 * 1024 * 1024)])
    registry.image("team-a/tools", "2026.11", [random_bytes(rng, 5_000)])
    registry.unfinished_upload("team-a/tools", random_bytes(rng, 8_000))
    registry.lockfiles()
    return registry


def bulk_registry(root: str, links: int, blobs: int, blob_size: int, seed: int = 1, repositories: int = 50) -> int:
    """A registry-shaped tree for benchmarks: ``links`` 71-byte links (one in ten a tag, the rest
    layer links) spread over repositories, plus ``blobs`` blobs of ``blob_size`` bytes.
    Returns the number of files written."""
    rng = random.Random(seed)
    registry = SampleRegistry(root)
    for _ in range(blobs):
        registry.blob(random_bytes(rng, blob_size))
    for i in range(links):
        digest = "sha256:" + rng.randbytes(32).hex()
        repository = f"bench/repo-{i % repositories:03d}"
        if i % 10 == 0:
            registry.write(f"{tree.REPOSITORIES}{repository}/_manifests/tags/t{i}/current/link", digest.encode())
        else:
            registry.link(repository, "_layers", digest)
    return links + blobs


def valid_registry(root: str, objects: int, seed: int = 1, base_images: int = 20) -> int:
    """A semantically valid registry tree of about ``objects`` files, for benchmarks of the proof:
    repositories of tagged images built on shared base images (their layers linked in every
    repository that uses them), one own layer and config per image, some untagged revisions, and
    a multi-arch index every tenth image. Blobs are small (the count is what costs a listing);
    ``verify --deep`` finds it consistent. Returns the number of files written."""
    rng = random.Random(seed)
    registry = _CountingRegistry(root)
    bases = [[random_bytes(rng, rng.randint(200, 2000)) for _ in range(3)] for _ in range(base_images)]
    repository = 0
    while registry.files < objects:
        name = f"group-{repository % 50:02d}/project-{repository:05d}"
        repository += 1
        pushed: list[str] = []
        for image in range(rng.randint(5, 40)):
            layers = [*rng.choice(bases), random_bytes(rng, rng.randint(200, 4000))]
            tag = f"v{image}" if image % 8 != 7 else None  # an overwritten push: a revision without a tag
            pushed.append(registry.image(name, tag, layers, arch=rng.choice(("amd64", "arm64"))))
            if image % 10 == 9:
                registry.index(name, f"multi-{image}", [(pushed[-1], "amd64"), (pushed[-2], "arm64")])
            if registry.files >= objects:
                break
    return registry.files


class _CountingRegistry(SampleRegistry):
    """Counts the files it writes; a shared blob or link already written is left as it is."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.files = 0

    def write(self, path: str, data: bytes) -> None:
        if os.path.exists(os.path.join(self.root, *path.split("/"))):
            return
        super().write(path, data)
        self.files += 1
