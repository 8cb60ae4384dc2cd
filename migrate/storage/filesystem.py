"""The registry's filesystem driver root: the usual migration source, and the rollback destination."""

from __future__ import annotations

import os
import stat as stat_module
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from migrate import tree
from migrate.errors import BadInput, ObjectMissing, StorageError
from migrate.storage.base import Entry, ProblemSink, Storage

_COPY_BUFFER = 1024 * 1024


class FilesystemStorage(Storage):
    driver = tree.Driver.FILESYSTEM
    is_local = True

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.rootdirectory = self.root

    @property
    def url(self) -> str:
        return self.root

    @property
    def prefix(self) -> str:
        return ""

    def _local(self, path: str) -> str:
        if path.startswith("/") or any(part in ("..", ".") for part in path.split("/")):
            raise StorageError(f"refusing a path that leaves the root: {path!r}")
        return os.path.join(self.root, *path.split("/"))

    def check_reachable(self) -> None:
        if not os.path.isdir(self.root):
            raise BadInput(f"{self.root}: no such directory")

    def check_destination(self) -> None:
        # A rollback target may not exist yet: its parent must, and the copy creates it.
        if not os.path.isdir(self.root) and not os.path.isdir(os.path.dirname(self.root)):
            raise BadInput(f"{self.root}: neither it nor its parent directory exists")

    def walk(self, prefix: str = "", on_problem: ProblemSink | None = None) -> Iterator[Entry]:
        # Start at the deepest directory the prefix names fully, then filter on the rest.
        directory, _, _ = prefix.rpartition("/")
        start = directory + "/" if directory else ""
        for entry in self._walk_dir(start, on_problem):
            if entry.path.startswith(prefix):
                yield entry

    def _walk_dir(self, rel_dir: str, on_problem: ProblemSink | None) -> Iterator[Entry]:
        """Depth-first, children sorted so that paths come out in byte order.

        A directory sorts as 'name/', so 'a-b' (0x2d) comes before 'a/x' (0x2f) as in a bucket listing.
        """
        local_dir = self._local(rel_dir.rstrip("/")) if rel_dir else self.root
        try:
            with os.scandir(local_dir) as scan:
                children = [(e.name + "/" if e.is_dir(follow_symlinks=False) else e.name, e) for e in scan]
        except FileNotFoundError:
            return
        except OSError as exc:
            _problem(on_problem, rel_dir, f"cannot list directory: {exc.strerror}")
            return
        children.sort(key=lambda item: item[0])
        for sort_name, dir_entry in children:
            path = rel_dir + sort_name
            if not _encodable(path):
                _problem(on_problem, path.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                         "name is not valid UTF-8; object keys cannot hold it")
            elif sort_name.endswith("/"):
                yield from self._walk_dir(path, on_problem)
            elif dir_entry.is_symlink():
                _problem(on_problem, path, "symbolic link not followed (the registry never writes links)")
            else:
                try:
                    info = dir_entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    _problem(on_problem, path, f"cannot stat: {exc.strerror}")
                    continue
                if not stat_module.S_ISREG(info.st_mode):
                    _problem(on_problem, path, "not a regular file")
                    continue
                yield Entry(path, info.st_size)

    def stat(self, path: str) -> Entry | None:
        try:
            info = os.stat(self._local(path), follow_symlinks=False)
        except FileNotFoundError:
            return None
        return Entry(path, info.st_size) if stat_module.S_ISREG(info.st_mode) else None

    @contextmanager
    def open(self, path: str) -> Iterator[BinaryIO]:
        try:
            stream = open(self._local(path), "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError as exc:
            raise ObjectMissing(f"{path}: vanished") from exc
        except OSError as exc:
            raise StorageError(f"{path}: cannot read: {exc.strerror}") from exc
        with stream:
            yield stream

    def put(self, path: str, data: bytes | BinaryIO, size: int) -> None:
        target = self._local(path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        # Write then rename, as the registry's own driver does, so a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".regmig-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                if isinstance(data, bytes):
                    out.write(data)
                else:
                    while chunk := data.read(_COPY_BUFFER):
                        out.write(chunk)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise

    def delete(self, path: str, if_match: str | None = None) -> None:
        target = self._local(path)
        try:
            os.unlink(target)
        except FileNotFoundError:
            return
        # An empty tag or repository directory left behind would still be listed by the registry.
        parent = os.path.dirname(target)
        while parent != self.root and parent.startswith(self.root):
            try:
                os.rmdir(parent)
            except OSError:
                break
            parent = os.path.dirname(parent)


def _encodable(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _problem(sink: ProblemSink | None, path: str, message: str) -> None:
    if sink is None:
        raise StorageError(f"{path}: {message}")
    sink(path, message)
