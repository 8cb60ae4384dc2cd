"""The scale-out options of a command (``--processes``, ``--shards``, ``--shard``, ``--results``,
``--dask``) as what its pass runs: which shards, and where."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from migrate.errors import BadInput
from migrate.report import Report
from migrate.runners import Location, Processes, Remote, Runner
from migrate.shards import Shard, partition
from migrate.shardsync import ShardOutcome

DEFAULT_PROCESSES = 1
"""Worker processes when ``--processes`` is not given, from bench/scale_bench.py (docs/scale-out.md):
on this project's 2-core machine, where the S3 server shares the cores, 1 process copied 80,000
small objects at 1,291 objects/s, 2 processes at 1,162 and 4 at 1,124: the server was the bound.
A default above 1 would take cores from a server on the same machine; more processes stay a
choice for a client with cores to spare."""
SHARDS_PER_WORKER = 4
"""Shards per process (or Dask worker thread) when ``--shards`` is not given: more shards than
workers, so one slow shard does not hold the pass while the others idle."""


@dataclass(frozen=True)
class Layout:
    shards: tuple[Shard, ...]
    runner: Runner | None
    """None: here, in this process."""
    results: str | None = None
    """``--results`` of a ``--shard`` run: the one shard's result goes there."""


def layout(kw: dict[str, Any], source: Location | None, destination: Location,
           function: Callable[..., ShardOutcome], report_type: type[Report] = Report) -> Layout:
    """The shards and runner the options ask for; bad combinations are bad input (exit 2)."""
    processes, count = kw.get("processes"), kw.get("shard_count")
    spec, results, dask = kw.get("shard_spec"), kw.get("results_location"), kw.get("dask_address")
    if spec:
        if processes or count or dask:
            raise BadInput("--shard runs one shard of an array job: give it no --processes, --shards or --dask")
        if not results:
            raise BadInput("--shard needs --results LOCATION: where the shard records its result for "
                           "`regmig gather`")
        return Layout((Shard.parse(spec),), None, results)
    if results:
        raise BadInput("--results goes with --shard I/N (a shard of an array job) and with gather")
    remote = Remote(function, source, destination, report_type)
    if dask:
        if processes:
            raise BadInput("--dask runs the shards on the cluster: give it no --processes")
        from migrate.daskrun import Dask

        runner: Runner = Dask(dask, remote)
        return Layout(partition(count or SHARDS_PER_WORKER * runner.concurrency), runner)
    processes = processes or DEFAULT_PROCESSES
    if processes == 1:
        return Layout(partition(count or 1), None)
    return Layout(partition(count or SHARDS_PER_WORKER * processes), Processes(processes, remote))
