"""``--dask ADDRESS``: a pass's shards as tasks on an existing dask.distributed cluster.

One task per shard, never per object: Dask's scheduler spends on the order of a millisecond per
task and its documentation warns against graphs of hundreds of thousands of tasks, while a shard
is minutes of work. Each task runs ``runners.execute`` on a worker (the locations opened there,
with the worker's own credentials: its environment, instance role or key files), and hands back
the shard's outcome and report; the pass gathers them here and does the deletes here.

The source must be readable from every worker (a shared filesystem, or an object store): that is
checked on every worker before the pass starts, since a worker that sees an empty or missing
tree would otherwise copy nothing and report a clean shard.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from migrate import redact, tree
from migrate.errors import BadInput, RegmigError
from migrate.report import Report
from migrate.runners import Job, Location, Remote, absorb, execute
from migrate.shardsync import ShardOutcome

CONNECT_SECONDS = 20


class Dask:
    """The cluster at ``address``; ``concurrency`` is its worker threads."""

    def __init__(self, address: str, remote: Remote) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise BadInput("--dask needs the Dask extra: pip install 'regmig[dask]'") from None
        try:
            self.client = Client(address, timeout=CONNECT_SECONDS, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise BadInput(f"--dask {address}: cannot reach the scheduler: {exc}") from exc
        self.address = address
        self.remote = remote
        try:
            workers = self.client.scheduler_info()["workers"]
            if not workers:
                raise BadInput(f"--dask {address}: the cluster has no workers")
            self.concurrency = sum(int(worker["nthreads"]) for worker in workers.values())
            self._check_readable()
        except BaseException:
            self.client.close()
            raise

    def _check_readable(self) -> None:
        """Every worker opens the locations and finds a registry in the source, before anything is written."""
        answers = self.client.run(can_read, self.remote.source, self.remote.destination)
        for worker, problem in sorted(answers.items()):
            if problem:
                raise BadInput(f"--dask: worker {worker} cannot read the locations: {problem} (every worker needs "
                               f"the source on a shared filesystem or an object store, and credentials for both)")

    def run(self, tasks: Sequence[Any], report: Report, here: Job) -> list[ShardOutcome]:
        from distributed import as_completed

        report.expect_shards(len(tasks))
        run = uuid.uuid4().hex[:8]
        futures = {self.client.submit(execute, self.remote, task, index, key=f"regmig-{run}-shard-{index}",
                                      pure=False): index for index, task in enumerate(tasks)}
        outcomes: dict[int, ShardOutcome] = {}
        try:
            for future in as_completed(list(futures), loop=self.client.loop):
                index = futures[future]
                try:
                    outcome = future.result()
                except Exception as exc:  # the task itself failed (its worker died, say): this shard's error
                    outcome = ShardOutcome(tasks[index].shard, error=redact.redact(f"its Dask task failed: {exc}"))
                outcomes[index] = outcome
                absorb(report, outcome, index)
        except BaseException:
            self.client.cancel(list(futures))
            raise
        finally:
            self.client.close()
        return [outcomes[index] for index in range(len(tasks))]


def can_read(source: Location | None, destination: Location) -> str | None:
    """On a worker: None when it reaches both locations and the source holds a registry, else why not."""
    try:
        if source is not None:
            with source.open() as storage:
                storage.check_reachable()
                if not storage.has_entries(tree.V2):
                    return f"{storage.url} holds no {tree.V2} there"
        with destination.open() as storage:
            storage.check_destination()
    except RegmigError as exc:
        return redact.redact(str(exc))
    except Exception as exc:  # reported with the worker's name, never raised on the worker
        return redact.redact(f"{type(exc).__name__}: {exc}")
    return None
