"""Scale-out: a pass run as shards in worker processes, as array-job shards concluded by gather
(the pods of ``regmig k8s-job`` run here as processes), and as tasks on a real Dask cluster; the
real registry on Ceph RGW serves each result. A shard killed mid-copy is rerun alone, and a
shard that fails keeps every shard's deletes from happening.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import pytest
import yaml

import realregistry as rr
from cli_runner import regmig
from conftest import list_keys, local_files, new_bucket
from faultproxy import FaultProxy, Faults
from migrate import shards, tree
from migrate.outcome import Outcome, Result
from migrate.report import Report
from migrate.sample import demo_registry
from migrate.storage.ranges import KeyRange, just_below
from servers import free_port, stop
from test_registry_end_to_end import push_sample_images, snippet_storage

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, str | None]], Path]:
    """A tree the real registry wrote (nested names, a multi-arch index, shared layers, a deleted
    manifest), and what it serves."""
    work = tmp_path_factory.mktemp("scale-registry")
    root = work / "fs-registry"
    with rr.running_registry({"filesystem": {"rootdirectory": str(root)}}, work / "run") as source:
        push_sample_images(source, work / "run")
        expected = rr.snapshot(source)
    return root, expected, work


def served_from(url: str, endpoint: str, expected: dict[str, dict[str, str | None]], work: Path) -> None:
    """The registry on the bucket, configured as config-snippet prints, pulls every tag and digest."""
    with rr.running_registry(snippet_storage(url, endpoint), work) as migrated:
        rr.serves(migrated, expected, work)


def nothing_left(root: Path, url: str, endpoint: str) -> None:
    again = regmig("sync", str(root), url, "--endpoint-url", endpoint, "--json")
    assert again.exit_code == 0, again.stdout
    assert "uploaded" not in again.json()["outcomes"]


def environment(**extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


def test_four_shards_in_worker_processes(pushed, rgw_endpoint: str) -> None:  # type: ignore[no-untyped-def]
    root, expected, work = pushed
    s3 = boto3.client("s3", endpoint_url=rgw_endpoint, region_name="us-east-1")
    url = f"s3://{new_bucket(s3)}/registry"
    result = regmig("sync", str(root), url, "--endpoint-url", rgw_endpoint, "--processes", "4", "--shards", "4",
                    "--json")
    assert result.exit_code == 0, result.stdout
    report = result.json()
    assert report["outcomes"]["uploaded"]["count"] == len(local_files(root))
    served_from(url, rgw_endpoint, expected, work / "processes")
    nothing_left(root, url, rgw_endpoint)
    checked = regmig("verify", str(root), url, "--endpoint-url", rgw_endpoint, "--processes", "2", "--shards", "4")
    assert checked.exit_code == 0 and "destination matches the source" in checked.stdout
    # --deep follows references across shards and keeps its check in this process: never in workers.
    deep = regmig("verify", str(root), url, "--endpoint-url", rgw_endpoint, "--processes", "2", "--shards", "1",
                  "--deep")
    assert deep.exit_code == 2 and "--deep follows references" in deep.stderr


def test_k8s_job_pods_run_as_four_processes_then_gather(pushed, rgw_endpoint: str) -> None:  # type: ignore[no-untyped-def]
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail("kubernetes-validate is not installed: make install (the test extras include it)", pytrace=False)

    root, expected, work = pushed
    s3 = boto3.client("s3", endpoint_url=rgw_endpoint, region_name="us-east-1")
    bucket = new_bucket(s3)
    url, results = f"s3://{bucket}/registry", f"s3://{bucket}/regmig-results/pass-1"
    common = [str(root), url, "--image", "regmig:test", "--shards", "4", "--results", results,
              "--source-claim", "registry-data", "--secret", "regmig-s3"]
    manifests = []
    for extra in ([], ["--gather", "--delete"]):
        printed = regmig("k8s-job", *common, *extra, "--", "--endpoint-url", rgw_endpoint, "--workers", "16")
        assert printed.exit_code == 0, printed.stderr
        manifest = yaml.safe_load(printed.stdout)
        kubernetes_validate.validate(manifest, "1.33", strict=True)  # raises on any schema error
        manifests.append(manifest)
    job, gather = manifests
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 4 and job["spec"]["backoffLimitPerIndex"] >= 1
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "regmig-s3"}}]
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "registry-data"
    assert container["volumeMounts"][0]["mountPath"] == str(root)
    command = container["command"] + container["args"]
    assert "auto/4" in command

    # Each pod's command, here: the index from JOB_COMPLETION_INDEX, as Kubernetes sets it.
    pods = [subprocess.Popen(command, env=environment(JOB_COMPLETION_INDEX=str(index)), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for index in range(4)]
    for pod_process in pods:
        out, err = pod_process.communicate(timeout=300)
        assert pod_process.returncode == 0, out + err
    assert not [key for key in list_keys(s3, bucket, "registry/") if not key.startswith("registry/docker/")]
    gather_container = gather["spec"]["template"]["spec"]["containers"][0]
    done = subprocess.run(gather_container["command"] + gather_container["args"] + ["--json"], env=environment(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"verdict": "OK"' in done.stdout and '"shards": 4' in done.stdout
    served_from(url, rgw_endpoint, expected, work / "k8s")
    nothing_left(root, url, rgw_endpoint)


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[str]:
    """A real dask scheduler and two workers on 127.0.0.1, each process stopped by its PID."""
    dask = BIN / "dask"
    if not dask.exists():
        pytest.fail("dask is not installed: make install (the test extras include distributed)", pytrace=False)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    processes = []
    try:
        with open(tmp_path / "scheduler.log", "wb") as log:
            processes.append(subprocess.Popen([str(dask), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                               "--no-dashboard"], stdout=log, stderr=subprocess.STDOUT,
                                              env=environment()))
        for number in range(2):
            with open(tmp_path / f"worker-{number}.log", "wb") as log:
                processes.append(subprocess.Popen([str(dask), "worker", address, "--nthreads", "1", "--host",
                                                   "127.0.0.1", "--no-dashboard"], stdout=log,
                                                  stderr=subprocess.STDOUT, env=environment(), cwd=tmp_path))
        _wait_workers(address, 2, processes)
        yield address
    finally:
        for process in reversed(processes):
            stop(process)  # type: ignore[arg-type]


def _wait_workers(address: str, count: int, processes: list[Any]) -> None:
    from distributed import Client

    deadline = time.monotonic() + 90
    with Client(address, timeout=60, set_as_default=False) as client:
        while len(client.scheduler_info()["workers"]) < count:
            assert all(p.poll() is None for p in processes), "a dask process exited at start-up"
            assert time.monotonic() < deadline, "the dask workers did not register"
            time.sleep(0.5)


def test_shards_as_dask_tasks_on_a_real_cluster(pushed, rgw_endpoint: str, dask_cluster: str,  # type: ignore[no-untyped-def]
                                                tmp_path: Path) -> None:
    root, expected, work = pushed
    s3 = boto3.client("s3", endpoint_url=rgw_endpoint, region_name="us-east-1")
    url = f"s3://{new_bucket(s3)}/registry"
    unreadable = regmig("sync", str(tmp_path / "not-mounted-on-the-workers"), url, "--endpoint-url", rgw_endpoint,
                        "--dask", dask_cluster)
    assert unreadable.exit_code == 2 and "cannot read the locations" in unreadable.stderr
    result = regmig("sync", str(root), url, "--endpoint-url", rgw_endpoint, "--dask", dask_cluster, "--shards", "4",
                    "--json")
    assert result.exit_code == 0, result.stdout
    assert result.json()["outcomes"]["uploaded"]["count"] == len(local_files(root))
    served_from(url, rgw_endpoint, expected, work / "dask")
    nothing_left(root, url, rgw_endpoint)


def test_a_shard_killed_mid_copy_is_rerun_alone_and_gather_refuses_until_then(rgw_endpoint: str,  # type: ignore[no-untyped-def]
                                                                           tmp_path: Path) -> None:
    registry = demo_registry(str(tmp_path / "registry"))
    s3 = boto3.client("s3", endpoint_url=rgw_endpoint, region_name="us-east-1")
    bucket = new_bucket(s3)
    url, results = f"s3://{bucket}/registry", str(tmp_path / "results")
    files = [path for path in local_files(registry.root) if not tree.is_excluded(path)]
    sizes = {index: sum(shards.shard_of(path, 4).index == index for path in files) for index in range(4)}
    slow = max(sizes, key=lambda index: sizes[index])
    base = ["regmig", "sync", registry.root, url, "--endpoint-url", rgw_endpoint, "--results", results]
    for index in range(4):
        if index != slow:
            assert subprocess.run([*base, "--shard", f"{index}/4"], env=environment(), capture_output=True,
                                  timeout=300).returncode == 0
    # The slow shard, capped at a few requests a second, killed once part of its range is copied.
    killed = subprocess.Popen([*base, "--shard", f"{slow}/4", "--max-requests-per-second", "3"], env=environment(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    in_range = lambda: [key for key in list_keys(s3, bucket, "registry/")  # noqa: E731
                        if shards.partition(4)[slow].contains(key.removeprefix("registry/"))]
    deadline = time.monotonic() + 120
    while len(in_range()) < 2:
        assert killed.poll() is None and time.monotonic() < deadline, "the shard ended before it could be killed"
        time.sleep(0.2)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert 0 < len(in_range()) < sizes[slow]

    refused = regmig("gather", registry.root, url, "--endpoint-url", rgw_endpoint, "--results", results, "--delete")
    assert refused.exit_code == 1 and f"shard {slow}/4 has no result" in refused.stderr

    rerun = regmig("sync", registry.root, url, "--endpoint-url", rgw_endpoint, "--results", results,
                   "--shard", f"{slow}/4", "--json")
    assert rerun.exit_code == 0, rerun.stdout
    report = rerun.json()
    assert 0 < report["outcomes"]["uploaded"]["count"] < sizes[slow]  # only what the killed run had not copied
    assert any("its process (pid" in note for note in report["notes"])  # its lease, left by the dead run
    gathered = regmig("gather", registry.root, url, "--endpoint-url", rgw_endpoint, "--results", results,
                      "--delete", "--json")
    assert gathered.exit_code == 0, gathered.stdout
    assert regmig("verify", registry.root, url, "--endpoint-url", rgw_endpoint, "--deep").exit_code == 0


def test_one_shards_failed_walk_refuses_every_delete(rgw_endpoint: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    registry = demo_registry(str(tmp_path / "registry"))
    s3 = boto3.client("s3", endpoint_url=rgw_endpoint, region_name="us-east-1")
    bucket = new_bucket(s3)
    url = f"s3://{bucket}/registry"
    assert regmig("sync", registry.root, url, "--endpoint-url", rgw_endpoint).exit_code == 0
    # Destination-only objects in three shards' ranges: a blob, and links of a repository gone from the source.
    extras = [f"registry/{tree.BLOBS}sha256/0a/0a{'1' * 62}/data",
              f"registry/{tree.REPOSITORIES}zz-gone/_layers/sha256/{'2' * 64}/link",
              f"registry/{tree.REPOSITORIES}b-gone/_layers/sha256/{'3' * 64}/link"]
    for key in extras:
        s3.put_object(Bucket=bucket, Key=key, Body=b"sha256:" + b"4" * 64)
    assert len({shards.shard_of(key.removeprefix("registry/"), 4).index for key in extras}) == 3
    failing = next(shard for shard in shards.partition(4)
                   if not any(shard.contains(key.removeprefix("registry/")) for key in extras))
    # Its listing's pages (start-after from just below its start), not the next shard's first page.
    doomed = KeyRange(just_below(failing.start) if failing.start else "",
                      just_below(failing.end) if failing.end else None)

    def listing_of_the_failing_shard(method: str, path: str) -> str | None:
        query = parse_qs(urlsplit(path).query)
        after = unquote(query.get("start-after", [""])[0]).removeprefix("registry/")
        return "403" if method == "GET" and "list-type" in query and doomed.contains(after) and \
            (after or failing.start == "") else None

    with FaultProxy(rgw_endpoint, Faults(rule=listing_of_the_failing_shard)) as proxy:
        result = regmig("sync", registry.root, url, "--endpoint-url", proxy.url, "--processes", "2",
                        "--shards", "4", "--delete", "--json")
    assert result.exit_code == 1, result.stdout
    report = result.json()
    assert f"shard {failing}" in report["delete_refused"] and "stopped before its end" in report["delete_refused"]
    assert [item["path"] for item in report["lists"]["failures"]["listed"]] == [f"shard {failing}"]
    assert "deleted" not in report["outcomes"]
    kept = list_keys(s3, bucket, "registry/")
    assert all(key in kept for key in extras)


def test_a_tick_that_arrives_after_its_shards_result_is_not_counted_again() -> None:
    """A worker's last progress tick and its shard's result travel on different pipes: the tick
    can land after the result. Counted again, the pass's totals exceeded what it examined (a
    4-process sync under valgrind ended INCOMPLETE with every object copied)."""
    shard = Report()
    for index in range(3):
        shard.examined_one(f"docker/registry/v2/blobs/sha256/0{index}/x/data")
        shard.add(Result(Outcome.UPLOADED, f"p{index}", 10, "new"))
    late = shard.snapshot()
    whole = Report()
    whole.expect_shards(1)
    whole.tick(0, late)
    assert (whole.examined, whole.results) == (3, 3)  # the tick counts while the shard runs
    whole.absorb(shard.state(), shard=0)
    whole.tick(0, late)
    assert (whole.examined, whole.results, whole.done_bytes) == (3, 3, 30)
