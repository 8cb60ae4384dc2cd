"""A dict-backed backend: the storage contract with nothing behind it, for pure tests of the
pipeline (planner, march, guards) without a server. It answers every call the way the real
backends must (tests/test_storage_contract.py runs the same suite on it and on them)."""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import BinaryIO

from migrate import tree
from migrate.errors import BadInput, ConditionFailed, ObjectMissing
from migrate.storage.base import Entry, LinkSink, ProblemSink, Storage
from migrate.storage.ranges import KeyRange


class MemoryStorage(Storage):
    driver = tree.Driver.S3

    def __init__(self, name: str = "memory", rootdirectory: str = "", *, exists: bool = True) -> None:
        self.name = name
        self.rootdirectory = rootdirectory
        self.exists = exists
        self.objects: dict[str, bytes] = {}
        """Keys as stored (with the root prefix), as a bucket would hold them."""
        self.modified: dict[str, float] = {}
        """When ``put`` last wrote each key (objects set directly have no time, as some listings)."""
        self._lock = threading.Lock()

    def location(self, rootdirectory: str) -> str:
        root = rootdirectory.strip("/")
        return f"memory://{self.name}" + (f"/{root}" if root else "")

    @property
    def service_identity(self) -> str:
        return f"memory {id(self.objects):x}"

    def create_exclusive(self, path: str, data: bytes) -> bool:
        with self._lock:
            if self.key(path) in self.objects:
                return False
            self.objects[self.key(path)] = bytes(data)
        return True

    def list_prefixes(self, key_prefix: str, max_entries: int = 1000) -> list[str]:
        with self._lock:
            below = {key_prefix + key[len(key_prefix):].split("/", 1)[0] + "/"
                     for key in self.objects if key.startswith(key_prefix) and "/" in key[len(key_prefix):]}
        return sorted(below)[:max_entries]

    def check_reachable(self) -> None:
        if not self.exists:
            raise BadInput(f"bucket {self.name!r}: the bucket does not exist")

    def has_keys(self, key_prefix: str) -> bool:
        with self._lock:
            return any(key.startswith(key_prefix) for key in self.objects)

    def _walk(self, prefix: str, span: KeyRange | None, on_problem: ProblemSink | None,
              hash_limit: int, on_link: LinkSink | None) -> Generator[Entry, None, None]:
        self.check_reachable()
        under = self.prefix + prefix
        start = self.prefix + span.start if span else under
        end = self.prefix + span.end if span and span.end is not None else None
        with self._lock:  # a snapshot: a listing is a point-in-time view page by page anyway
            keys = sorted(key for key in self.objects
                          if key.startswith(under) and key >= start and (end is None or key < end))
        for key in keys:
            entry = self._entry(key)
            if entry is not None:
                yield entry

    def _entry(self, key: str) -> Entry | None:
        with self._lock:
            data = self.objects.get(key)
            modified = self.modified.get(key)
        if data is None:
            return None
        md5 = hashlib.md5(data).hexdigest()
        return Entry(key[len(self.prefix):], len(data), md5, md5, modified=modified)

    def stat(self, path: str) -> Entry | None:
        return self._entry(self.key(path))

    @contextmanager
    def open(self, path: str) -> Iterator[BinaryIO]:
        yield io.BytesIO(self.read(path))

    def read(self, path: str) -> bytes:
        with self._lock:
            data = self.objects.get(self.key(path))
        if data is None:
            raise ObjectMissing(f"{self.url}/{path}: does not exist")
        return data

    def put(self, path: str, data: bytes | BinaryIO, size: int) -> None:
        body = data if isinstance(data, bytes) else data.read()
        with self._lock:
            self.objects[self.key(path)] = bytes(body)
            self.modified[self.key(path)] = time.time()

    def _delete(self, path: str, if_match: str | None) -> None:
        key = self.key(path)
        with self._lock:
            data = self.objects.get(key)
            if data is None:
                return
            if if_match is not None and hashlib.md5(data).hexdigest() != if_match:
                raise ConditionFailed(f"delete {self.url}/{path}: changed since it was checked")
            del self.objects[key]
            self.modified.pop(key, None)
