"""Where a pass's shards run: here, one after another (``Here``), or in worker processes on this
machine (``Processes``); a Dask cluster is in migrate.daskrun. A runner only runs them: the pass
(migrate.sync, checks.verify) moves the token before and decides the deletes after.

A shard that runs elsewhere is a ``Job``'s function, importable by name, called there with the
locations opened there (boto3 clients and open files do not travel) and a report of its own; it
hands back a ``ShardOutcome`` with that report's state, which the pass's report absorbs, and
while it runs, its counters (``Tick``) every half second for the one progress display. An error
in a shard ends that shard only: it comes back as the outcome's ``error``, so the others finish
and the pass refuses its deletes.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.util
import os
import queue
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Protocol

from migrate import redact
from migrate.errors import RegmigError
from migrate.report import Report, Tick
from migrate.shardsync import ShardOutcome
from migrate.storage import LocationOptions, Storage, backend_module, open_location

log = logging.getLogger("regmig")

Job = Callable[[Any, Report], ShardOutcome]
"""Runs one shard's task against a report: ``job(task, report)``."""
TICK_SECONDS = 0.5


@dataclass(frozen=True)
class Location:
    """A location as given (URL and options), for a process that opens it itself."""

    url: str
    options: LocationOptions

    @classmethod
    def of(cls, url: str, options: LocationOptions) -> Location:
        """A path made absolute: another process may start in another directory."""
        return cls(url if "://" in url else os.path.abspath(url), options)

    def open(self) -> Storage:
        return open_location(self.url, self.options)


@dataclass(frozen=True)
class Remote:
    """How a shard runs in another process: ``function(source, destination, task, report)`` (an
    importable module-level function) with the locations opened there."""

    function: Callable[[Any, Storage, Any, Report], ShardOutcome]
    source: Location | None
    destination: Location
    report_type: type[Report] = Report

    def modules(self) -> list[str]:
        """What a worker imports to run it: the function's module and the locations' backends."""
        locations = [self.destination] + ([self.source] if self.source else [])
        backends = {backend_module(location.url) for location in locations}
        return [self.function.__module__, self.report_type.__module__, *sorted(backends)]


class Runner(Protocol):
    concurrency: int
    """Shards running at once: the pass shares its ``--workers`` among them."""

    def run(self, tasks: Sequence[Any], report: Report, here: Job) -> list[ShardOutcome]:
        """Every task's outcome, in the order of ``tasks`` (``here`` runs one in this process)."""


class Here:
    """In this process, one shard after another, on the locations the pass has open. With one shard
    its error is raised as it is; with several, a shard's error is its outcome's and the rest run."""

    concurrency = 1

    def run(self, tasks: Sequence[Any], report: Report, here: Job) -> list[ShardOutcome]:
        if len(tasks) == 1:
            return [here(tasks[0], report)]
        outcomes = []
        for task in tasks:
            try:
                outcomes.append(here(task, report))
            except RegmigError as exc:
                outcomes.append(ShardOutcome(task.shard, error=redact.redact(str(exc)), error_exit=exc.exit_code))
        return outcomes


class Processes:
    """``count`` worker processes on this machine, each taking the next shard when it is done with
    one (more shards than processes even out their differences).

    The workers are forks of a fork server (``forkserver``), not of the pass: the pass holds threads
    (its lease's renewal), which a fork would copy mid-step, while the server is a fresh interpreter
    that imports the shard's code and the locations' backends once for every worker, where ``spawn``
    had each worker import them again. Each worker opens the locations once, for all the shards it
    runs, and takes the pass's environment and directory as they are when the pass starts it. What
    the server fixed when it started stays: the modules it imported (with what they read from the
    environment at import) and its standard streams; one pass per process, as the CLI runs, meets
    none of it."""

    def __init__(self, count: int, remote: Remote) -> None:
        self.count = self.concurrency = count
        self.remote = remote

    def run(self, tasks: Sequence[Any], report: Report, here: Job) -> list[ShardOutcome]:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(self.remote.modules())
        ticks: Any = context.Queue()
        report.expect_shards(len(tasks))
        outcomes: dict[int, ShardOutcome] = {}
        stop = threading.Event()
        listener = threading.Thread(target=_listen, args=(ticks, report, stop), name="regmig-ticks", daemon=True)
        listener.start()
        pool = ProcessPoolExecutor(max_workers=min(self.count, len(tasks)), mp_context=context,
                                   initializer=_worker_started, initargs=(ticks, dict(os.environ), os.getcwd()))
        try:
            pending: dict[Future[ShardOutcome], int] = {
                pool.submit(execute, self.remote, task, index): index for index, task in enumerate(tasks)}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    outcomes[index] = _outcome(future, tasks[index])
                    absorb(report, outcomes[index], index)
            pool.shutdown(wait=True)
        except BaseException:
            _terminate(pool)
            raise
        finally:
            stop.set()
            listener.join()
            ticks.close()
        return [outcomes[index] for index in range(len(tasks))]


def absorb(report: Report, outcome: ShardOutcome, index: int) -> None:
    """A shard's report into the pass's, in place of its ticks."""
    if outcome.report_state is not None:
        report.absorb(outcome.report_state, shard=index)
        outcome.report_state = None


def _outcome(future: Future[ShardOutcome], task: Any) -> ShardOutcome:
    try:
        return future.result()
    except BrokenProcessPool:
        return ShardOutcome(task.shard, error="its worker process died (killed, or out of memory) before it ended")


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Stop the workers now (interrupted): each child this pool started, by its process."""
    pool.shutdown(wait=False, cancel_futures=True)
    for child in multiprocessing.active_children():
        child.terminate()
    for child in multiprocessing.active_children():
        child.join(5)


def _listen(ticks: Any, report: Report, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            index, tick = ticks.get(timeout=TICK_SECONDS)
        except queue.Empty:
            continue
        except (EOFError, OSError):
            return
        report.tick(index, tick)


_ticks: Any = None
_opened: dict[Location, Storage] | None = None
"""In a worker process of ``Processes``: the locations it has opened, kept for its next shards (a
Dask worker, shared and long-lived, opens them for each shard and closes them after)."""


def _worker_started(ticks: Any, environment: dict[str, str], directory: str) -> None:
    """In each worker process: the pass's environment (credentials, endpoints) and directory as they
    are now, not as the fork server found them; the pass's process handles Ctrl-C and stops the
    workers itself."""
    global _ticks, _opened
    _ticks, _opened = ticks, {}
    os.environ.clear()
    os.environ.update(environment)
    os.chdir(directory)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def execute(remote: Remote, task: Any, index: int) -> ShardOutcome:
    """One shard in this (worker) process: its own report, ticked to the pass while it runs, its
    state in the outcome. Any error ends only this shard."""
    report = remote.report_type()
    stop = threading.Event()
    ticker = threading.Thread(target=_tick, args=(report, index, stop), name="regmig-tick", daemon=True)
    ticker.start()
    try:
        outcome = _call(remote, task, report)
    except RegmigError as exc:
        outcome = ShardOutcome(task.shard, error=redact.redact(str(exc)), error_exit=exc.exit_code)
    except Exception as exc:  # a bug of ours: this shard's error, named; the pass refuses its deletes
        log.exception("shard %s crashed", task.shard)
        outcome = ShardOutcome(task.shard, error=redact.redact(f"internal error {type(exc).__name__}: {exc}"))
    finally:
        stop.set()
        ticker.join()
    outcome.report_state = report.state()
    return outcome


def _call(remote: Remote, task: Any, report: Report) -> ShardOutcome:
    if _opened is not None:
        source = _open_once(remote.source) if remote.source else None
        return remote.function(source, _open_once(remote.destination), task, report)
    source = remote.source.open() if remote.source else None
    try:
        with remote.destination.open() as destination:
            return remote.function(source, destination, task, report)
    finally:
        if source is not None:
            source.close()


def _open_once(location: Location) -> Storage:
    """The location as this worker process first opened it (a boto3 client costs about a tenth of a
    second of CPU to make), closed when the process ends."""
    assert _opened is not None
    storage = _opened.get(location)
    if storage is None:
        storage = _opened[location] = location.open()
        multiprocessing.util.Finalize(storage, _close, args=(storage,), exitpriority=10)
    return storage


def _close(storage: Storage) -> None:
    """At the worker's exit, after its shards' outcomes went back: a failure to close is logged,
    redacted (multiprocessing would print it raw)."""
    try:
        storage.close()
    except Exception as exc:  # the outcomes are delivered: this only tidies up
        log.warning("closing %s at the end of a worker process: %s", storage.url,
                    redact.redact(str(exc)))


def _tick(report: Report, index: int, stop: threading.Event) -> None:
    while not stop.wait(TICK_SECONDS):
        if _ticks is not None:
            tick: Tick = report.snapshot()
            _ticks.put((index, tick))
