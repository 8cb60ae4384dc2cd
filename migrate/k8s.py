"""``regmig k8s-job``: a pass as a Kubernetes Indexed Job, for installations that run on Kubernetes.

One Job of N completions, N at once: pod I runs ``regmig sync ... --shard auto/N`` (the index from
``JOB_COMPLETION_INDEX``), the registry's filesystem root mounted read-only from its volume claim,
credentials from a Secret (every key as an environment variable: AWS_ACCESS_KEY_ID..., or
AZURE_STORAGE_CONNECTION_STRING), the result recorded at ``--results``. ``backoffLimitPerIndex``
reruns a failed shard alone, and a rerun resumes (it copies what is still missing in its range).
A second Job runs ``regmig gather`` once the first has completed. Pure: builds the manifests as
data; the command prints them as YAML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from migrate import __version__
from migrate.errors import BadInput

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$")
SOURCE_VOLUME = "registry"
RESULTS_VOLUME = "results"


@dataclass(frozen=True)
class JobSpec:
    name: str
    image: str
    source: str
    """The registry's root directory as mounted in the pods (the claim is mounted there)."""
    destination: str
    shards: int
    results: str
    source_claim: str | None
    """The claim holding the registry's root (a directory SOURCE); none for an object-store SOURCE."""
    secret: str | None
    results_claim: str | None
    """A ReadWriteMany claim mounted at ``results`` when it is a directory, not an object-store URL."""
    sync_args: tuple[str, ...] = ()
    gather_args: tuple[str, ...] = ()
    namespace: str | None = None
    cpu: str = "1"
    memory: str = "1Gi"
    backoff_per_index: int = 3


def check(spec: JobSpec) -> None:
    if not _NAME.match(spec.name):
        raise BadInput(f"--name {spec.name!r}: a Kubernetes name (lowercase letters, digits and '-', at most "
                       f"52 characters, so the pods' names fit)")
    if "://" not in spec.results and not spec.results_claim:
        raise BadInput(f"--results {spec.results} is a directory: name the ReadWriteMany volume claim that holds "
                       f"it with --results-claim (or give an s3://, gs:// or azure:// location)")
    if "://" not in spec.source and not spec.source_claim:
        raise BadInput(f"SOURCE {spec.source} is a directory: name the volume claim that holds the registry's root "
                       f"with --source-claim (it is mounted read-only at SOURCE in every pod)")
    if "://" in spec.source and spec.source_claim:
        raise BadInput("--source-claim goes with a directory SOURCE, not an object store")


def shard_job(spec: JobSpec) -> dict[str, Any]:
    """The Indexed Job whose pod I syncs shard I of N."""
    check(spec)
    command = ["regmig", "sync", spec.source, spec.destination, *spec.sync_args,
               "--shard", f"auto/{spec.shards}", "--results", spec.results, "--no-progress"]
    return _job(spec, spec.name, command, {
        "completionMode": "Indexed", "completions": spec.shards, "parallelism": spec.shards,
        "backoffLimitPerIndex": spec.backoff_per_index, "maxFailedIndexes": spec.shards,
    })


def gather_job(spec: JobSpec) -> dict[str, Any]:
    """The Job that concludes the pass, to apply once the shard Job has completed."""
    check(spec)
    command = ["regmig", "gather", spec.source, spec.destination, "--results", spec.results, *spec.gather_args,
               "--no-progress"]
    return _job(spec, f"{spec.name}-gather", command, {"completions": 1, "parallelism": 1, "backoffLimit": 0})


def _job(spec: JobSpec, name: str, command: list[str], job_spec: dict[str, Any]) -> dict[str, Any]:
    mounts: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    if spec.source_claim:
        mounts.append({"name": SOURCE_VOLUME, "mountPath": spec.source, "readOnly": True})
        volumes.append({"name": SOURCE_VOLUME, "persistentVolumeClaim": {"claimName": spec.source_claim,
                                                                         "readOnly": True}})
    if spec.results_claim:
        mounts.append({"name": RESULTS_VOLUME, "mountPath": spec.results})
        volumes.append({"name": RESULTS_VOLUME, "persistentVolumeClaim": {"claimName": spec.results_claim}})
    container: dict[str, Any] = {
        "name": "regmig", "image": spec.image, "command": command[:1], "args": command[1:],
        "resources": {"requests": {"cpu": spec.cpu, "memory": spec.memory}, "limits": {"memory": spec.memory}},
        "volumeMounts": mounts,
    }
    if spec.secret:
        container["envFrom"] = [{"secretRef": {"name": spec.secret}}]
    metadata: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/name": "regmig",
                                                         "app.kubernetes.io/version": __version__}}
    if spec.namespace:
        metadata["namespace"] = spec.namespace
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": metadata,
        "spec": {**job_spec, "template": {"metadata": {"labels": {"app.kubernetes.io/name": "regmig"}},
                                          "spec": {"restartPolicy": "Never", "containers": [container],
                                                   "volumes": volumes}}},
    }
