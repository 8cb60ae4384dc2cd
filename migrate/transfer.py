"""Executes planned actions on a bounded pool of workers; results go to the report, never to the screen."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from migrate.compare import content_matches
from migrate.errors import ObjectMissing, RegmigError
from migrate.plan import Reason
from migrate.report import Report
from migrate.storage.base import Entry, Storage


class WorkerPool:
    """A thread pool whose ``submit`` blocks when the queue is full (back-pressure keeps memory flat)."""

    def __init__(self, workers: int, queue_factor: int = 4) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="regmig-worker")
        self._slots = threading.BoundedSemaphore(workers * queue_factor)

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._slots.acquire()
        future: Future[Any] = self._executor.submit(fn, *args)
        future.add_done_callback(lambda _: self._slots.release())

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._executor.shutdown(wait=True, cancel_futures=exc_type is not None)


class Copier:
    """The per-object jobs of a sync. Each catches its own errors and records one outcome."""

    def __init__(self, source: Storage, destination: Storage, report: Report, *, dry_run: bool, small_limit: int) -> None:
        self.source = source
        self.destination = destination
        self.report = report
        self.dry_run = dry_run
        self.small_limit = small_limit
        self._copied = "would upload" if dry_run else "uploaded"

    def upload(self, path: str, src: Entry, reason: str) -> None:
        with self._guard(path):
            if src.size < self.small_limit:
                data = self.source.read(path)
                self.destination.put(path, data, len(data))
                size = len(data)
            else:
                with self.source.open(path) as stream:
                    self.destination.put(path, stream, src.size)
                size = src.size
            self.record_upload(reason, path, size)

    def upload_batch(self, batch: list[tuple[str, Entry, str]]) -> None:
        for path, src, reason in batch:
            self.upload(path, src, reason)

    def read_inline(self, path: str) -> bytes | None:
        """A small local file read on the listing thread, so the bytes hashed for the state record
        are exactly the bytes uploaded. None when it vanished or could not be read (recorded)."""
        with self._guard(path):
            return self.source.read(path)
        return None

    def put_batch(self, batch: list[tuple[str, bytes, str]]) -> None:
        """Upload bytes already read (see ``read_inline``); a dry run only records them."""
        for path, data, reason in batch:
            with self._guard(path):
                if not self.dry_run:
                    self.destination.put(path, data, len(data))
                self.record_upload(reason, path, len(data))

    def check(self, path: str, dst: Entry) -> None:
        """Same size, content unknown: compare content (MD5 against the listing, else bytes)."""
        data = self.check_inline(path, dst)
        if data is not None:
            self.put_batch([(path, data, Reason.CONTENT.value)])

    def check_inline(self, path: str, dst: Entry) -> bytes | None:
        """Compare only: the bytes to upload when the content differs, None when it is the same
        (or vanished). Cheap enough to run on the listing thread when the source is local."""
        with self._guard(path):
            same, data = content_matches(self.source, self.destination, path, dst)
            if same:
                self.report.record("skipped", "same", path, len(data))
                return None
            return data
        return None

    def record_upload(self, reason: str, path: str, size: int) -> None:
        """An upload (or, in a dry run, the upload that would happen); changed objects are also listed."""
        self.report.record(self._copied, reason, path, size,
                           list_as="changed" if reason == Reason.CONTENT.value else None)

    def delete_batch(self, batch: list[tuple[str, int]]) -> None:
        outcome = "would delete" if self.dry_run else "deleted"
        try:
            failed = dict(self.destination.delete_many([path for path, _ in batch])) if not self.dry_run else {}
        except RegmigError as exc:
            failed = {path: str(exc) for path, _ in batch}
        for path, size in batch:
            if path in failed:
                self.report.failure(path, failed[path])
            else:
                self.report.record(outcome, "only in destination", path, size, list_as=outcome)

    def _guard(self, path: str) -> JobGuard:
        return JobGuard(self.report, path)


class JobGuard:
    """Turns a job's exception into a recorded outcome, so one bad object never stops the run."""

    def __init__(self, report: Report, path: str) -> None:
        self.report = report
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, _: object) -> bool:
        if exc is None:
            return False
        if isinstance(exc, ObjectMissing):
            self.report.add_to_list("vanished", self.path, "changed on the source during the copy")
        elif isinstance(exc, RegmigError):
            self.report.failure(self.path, str(exc))
        elif isinstance(exc, Exception):
            self.report.failure(self.path, f"{type(exc).__name__}: {exc}")
        else:
            return False
        return True
