"""Executes planned actions on a bounded pool of workers. Every job hands back one result per
object it was given (migrate.outcome), and the pool passes them to the one consumer: a job never
prints, records behind the pool's back, or loses an exception."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from migrate.compare import content_matches
from migrate.errors import ChecksumMismatch, ObjectMissing, RegmigError
from migrate.outcome import Outcome, PathList, Result
from migrate.plan import Reason
from migrate.storage.base import Entry, Storage

Covers = Sequence[tuple[str, int]]
"""The (path, size) of every object a job is responsible for."""
Consumer = Callable[[list[Result]], None]
T = TypeVar("T")
CHECKSUM_ATTEMPTS = 3
"""Uploads whose body the service refused as corrupted in transit are sent again this many times in all."""


class WorkerPool:
    """A thread pool whose ``submit`` blocks when the queue is full (back-pressure keeps memory flat).

    Each job runs inside ``_run``: its results, or for an exception of any type a ``crashed``
    result for every object it covers (or one for the job), reach ``consume``; an object a job
    covers and returned no result for counts as crashed too. The pool counts the jobs submitted
    and finished.
    """

    def __init__(self, workers: int, consume: Consumer, queue_factor: int = 4) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="regmig-worker")
        self._slots = threading.BoundedSemaphore(workers * queue_factor)
        self._consume = consume
        self._lock = threading.Lock()
        self._consumer_errors: list[BaseException] = []
        self.submitted = 0
        self.finished = 0

    def submit(self, job: Callable[..., Iterable[Result] | None], *args: Any, covers: Covers = ()) -> None:
        self._slots.acquire()
        try:
            future: Future[None] = self._executor.submit(self._run, job, args, covers)
        except BaseException:
            self._slots.release()
            raise
        with self._lock:
            self.submitted += 1
        future.add_done_callback(self._done)

    def _run(self, job: Callable[..., Iterable[Result] | None], args: tuple[Any, ...], covers: Covers) -> None:
        try:
            results = list(job(*args) or ())
        except Exception as exc:  # any exception at all: every object of the job is a crash, listed
            message = f"{type(exc).__name__}: {exc}"
            results = [_crashed(path, size, message) for path, size in covers or [(_name(job, args), 0)]]
        if covers:
            answered = {result.path for result in results}
            results += [_crashed(path, size, "the job returned no result for it") for path, size in covers
                        if path not in answered]
        try:
            self._consume(results)
        except BaseException as exc:  # re-raised by __exit__: a result that cannot be counted stops the run
            with self._lock:
                self._consumer_errors.append(exc)

    def _done(self, _: Future[None]) -> None:
        with self._lock:
            self.finished += 1
        self._slots.release()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._executor.shutdown(wait=True, cancel_futures=exc_type is not None)
        if exc_type is None and self._consumer_errors:
            raise self._consumer_errors[0]


def _name(job: Callable[..., Any], args: tuple[Any, ...]) -> str:
    """What a job that answers for no listed object was doing, for its crash report."""
    subject = f" {args[0]}" if args and isinstance(args[0], str) else ""
    return f"({getattr(job, '__qualname__', 'job')}{subject})"


def _crashed(path: str, size: int, message: str) -> Result:
    return Result(Outcome.CRASHED, path, size, "job crashed", message)


def attempt(path: str, size: int, reason: str, action: Callable[[], T]) -> tuple[T | None, Result | None]:
    """``(action's value, None)``, or ``(None, this object's result)`` for the failure it raised."""
    try:
        return action(), None
    except ObjectMissing:
        return None, Result(Outcome.VANISHED, path, size, reason, "changed on the source during the copy")
    except RegmigError as exc:
        return None, Result(Outcome.FAILED, path, size, reason, str(exc))
    except Exception as exc:  # a bug of ours, or of a library: this object crashed; the run goes on
        return None, _crashed(path, size, f"{type(exc).__name__}: {exc}")


def _outcome(path: str, size: int, reason: str, action: Callable[[], Result]) -> Result:
    result, failure = attempt(path, size, reason, action)
    return failure or result  # type: ignore[return-value]


class Copier:
    """The per-object jobs of a sync; each returns one result per object."""

    def __init__(self, source: Storage, destination: Storage, *, dry_run: bool, small_limit: int) -> None:
        self.source = source
        self.destination = destination
        self.dry_run = dry_run
        self.small_limit = small_limit
        self._copied = Outcome.WOULD_UPLOAD if dry_run else Outcome.UPLOADED

    def upload(self, path: str, src: Entry, reason: str) -> list[Result]:
        return [_outcome(path, src.size, reason, functools.partial(self._upload, path, src, reason))]

    def _upload(self, path: str, src: Entry, reason: str) -> Result:
        if src.size < self.small_limit:
            data = self.source.read(path)
            _send_checked(lambda: self.destination.put(path, data, len(data)))
            return self.uploaded(reason, path, len(data))

        def send() -> None:  # each attempt reads the source afresh: a stream cannot be rewound
            with self.source.open(path) as stream:
                self.destination.put(path, stream, src.size)

        _send_checked(send)
        return self.uploaded(reason, path, src.size)

    def upload_batch(self, batch: list[tuple[str, Entry, str]]) -> list[Result]:
        return [result for path, src, reason in batch for result in self.upload(path, src, reason)]

    def read_inline(self, path: str, size: int, reason: str) -> tuple[bytes | None, Result | None]:
        """A small local file read on the listing thread, so the bytes hashed for the state record
        are exactly the bytes sent: (bytes, None), or (None, its result when it could not be read)."""
        return attempt(path, size, reason, lambda: self.source.read(path))

    def put_batch(self, batch: list[tuple[str, bytes, str]]) -> list[Result]:
        """Upload bytes already read (see ``read_inline``); a dry run only counts them."""
        return [_outcome(path, len(data), reason, functools.partial(self._put_bytes, path, data, reason))
                for path, data, reason in batch]

    def _put_bytes(self, path: str, data: bytes, reason: str) -> Result:
        if not self.dry_run:
            _send_checked(lambda: self.destination.put(path, data, len(data)))
        return self.uploaded(reason, path, len(data))

    def check(self, path: str, dst: Entry) -> list[Result]:
        """Same size, content unknown: read the source and compare (MD5 against the listing, else bytes)."""
        compared, failure = attempt(path, dst.size, Reason.CONTENT.value,
                                    lambda: content_matches(self.source, self.destination, path, dst))
        if compared is None:
            return [failure] if failure else []
        same, data, _ = compared
        if same:
            return [Result(Outcome.SKIPPED, path, len(data), Reason.SAME.value)]
        return self.put_batch([(path, data, Reason.CONTENT.value)])

    def compare_batch(self, batch: list[tuple[str, bytes]]) -> list[Result]:
        """Source bytes read on the listing thread, against a destination that lists no MD5: read it
        and compare; where it differs, upload these very bytes (the state record holds their MD5)."""
        return [_outcome(path, len(data), Reason.CONTENT.value, functools.partial(self._compare, path, data))
                for path, data in batch]

    def _compare(self, path: str, data: bytes) -> Result:
        if self.destination.read(path) == data:
            return Result(Outcome.SKIPPED, path, len(data), Reason.SAME.value)
        return self._put_bytes(path, data, Reason.CONTENT.value)

    def uploaded(self, reason: str, path: str, size: int) -> Result:
        """An upload (or, in a dry run, the upload that would happen); changed objects are also listed."""
        return Result(self._copied, path, size, reason,
                      listed=PathList.CHANGED if reason == Reason.CONTENT.value else None)

    def delete_batch(self, batch: list[tuple[str, int]]) -> list[Result]:
        reason = Reason.EXTRA.value
        if self.dry_run:
            return [Result(Outcome.WOULD_DELETE, path, size, reason, listed=PathList.WOULD_DELETE)
                    for path, size in batch]
        try:
            failed = dict(self.destination.delete_many([path for path, _ in batch]))
        except RegmigError as exc:
            failed = {path: str(exc) for path, _ in batch}
        return [Result(Outcome.FAILED, path, size, reason, failed[path]) if path in failed
                else Result(Outcome.DELETED, path, size, reason, listed=PathList.DELETED) for path, size in batch]


def _send_checked(send: Callable[[], None]) -> None:
    """Send an upload; when the service refuses its body as corrupted in transit (its checksum did
    not match), send it again, a few times at most."""
    for attempt_number in range(1, CHECKSUM_ATTEMPTS + 1):
        try:
            send()
            return
        except ChecksumMismatch:
            if attempt_number == CHECKSUM_ATTEMPTS:
                raise
