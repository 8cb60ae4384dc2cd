"""Worker processes (``runners.Processes``): what a worker keeps between shards and what it takes
from the pass. Pure logic on local directories; the real servers' runs are in test_scale_out.py."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from migrate.report import Report
from migrate.runners import Location, Processes, Remote
from migrate.shards import Shard, partition
from migrate.shardsync import ShardOutcome
from migrate.storage import LocationOptions, Storage


@dataclass(frozen=True)
class Task:
    shard: Shard


def note_the_worker(source: Storage | None, destination: Storage, task: Task, report: Report) -> ShardOutcome:
    """Counts, on the storage objects themselves, the shards that were handed them."""
    for storage in (source, destination):
        setattr(storage, "shards_seen", getattr(storage, "shards_seen", 0) + 1)
    return ShardOutcome(task.shard, result={"pid": os.getpid(), "source": getattr(source, "shards_seen"),
                                            "destination": getattr(destination, "shards_seen"),
                                            "variable": os.environ.get("REGMIG_TEST_VARIABLE"),
                                            "directory": os.getcwd()})


def run(tmp_path: Path, processes: int, shards: int) -> list[dict[str, Any]]:
    (tmp_path / "source").mkdir(exist_ok=True)
    (tmp_path / "destination").mkdir(exist_ok=True)
    remote = Remote(note_the_worker, Location.of(str(tmp_path / "source"), LocationOptions()),
                    Location.of(str(tmp_path / "destination"), LocationOptions()))
    tasks = [Task(shard) for shard in partition(shards)]
    outcomes = Processes(processes, remote).run(tasks, Report(), here=lambda task, report: pytest.fail("ran here"))
    assert [outcome.error for outcome in outcomes] == [None] * shards
    return [outcome.result for outcome in outcomes]


def test_a_worker_opens_each_location_once_for_all_its_shards(tmp_path: Path) -> None:
    results = run(tmp_path, processes=1, shards=3)
    assert len({result["pid"] for result in results}) == 1
    assert [result["source"] for result in results] == [1, 2, 3]
    assert [result["destination"] for result in results] == [1, 2, 3]


def test_workers_take_the_environment_and_directory_the_pass_has_now(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers are forks of a server started once per process: the second pass's workers still see
    the second pass's environment (credentials, endpoints) and working directory."""
    for value in ("first", "second"):
        directory = tmp_path / value
        directory.mkdir()
        monkeypatch.chdir(directory)
        monkeypatch.setenv("REGMIG_TEST_VARIABLE", value)
        results = run(tmp_path, processes=2, shards=2)
        assert {(result["variable"], result["directory"]) for result in results} == {(value, str(directory))}


FORKED_CLIENT = """
import importlib, os
import botocore.loaders
from migrate.storage import LocationOptions, backend_module, open_location
importlib.import_module(backend_module("s3://bucket/root"))
reads = []
read = botocore.loaders.JSONFileLoader.load_file
botocore.loaders.JSONFileLoader.load_file = lambda self, path: reads.append(path) or read(self, path)
if os.fork() == 0:
    open_location("s3://bucket/root", LocationOptions())
    print(len(reads), flush=True)
    os._exit(0)
os.wait()
"""


def test_a_worker_makes_its_s3_client_without_reading_the_service_model_again() -> None:
    """What the fork server imports ahead for an S3 location leaves the model in memory: parsing
    it costs most of a tenth of a second of CPU per worker, every time a worker starts."""
    environment = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
                       AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=os.devnull,
                       AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    done = subprocess.run([sys.executable, "-c", FORKED_CLIENT], env=environment, capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.split() == ["0"], done.stderr
