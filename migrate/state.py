"""The destination as the last clean pass left it, so the next pass need not list it again.

Listing a bucket of millions of keys is the slow part of a final pass, and that pass runs in
the read-only window. Between passes only regmig writes the destination, so what it held after
the last pass is known: every entry kept, uploaded or left, with the MD5 of what was sent when
regmig hashed those very bytes. A pass given ``--state FILE`` reads that record in place of the
listing and writes a new one when it ends clean. ``verify`` never uses it: it lists both sides,
and is what proves the result.

Where a pass found a local file's content equal to what the destination holds (by the MD5 of
bytes read after the file was stamped), the record keeps the file's stamp (``Entry.stamp``:
device, inode, mtime, ctime). A file with the same stamp at the next pass has not been written
since, so that pass need not read it: the final pass reads only the link files that changed.

A record belongs to one destination: its header names the service (``Storage.service_identity``),
the location and root, and the ``--include-uploads`` setting (another is refused, exit 2), and
carries the destination's generation token as the pass that wrote it left it (migrate.generation).
A record whose token is not the destination's now is not used: something else wrote there since.
The record is consumed when a pass that may write starts (an interrupted pass leaves none), ends
with a count line (a truncated file is an error rather than a shorter listing), and is locked
against a second regmig on this machine while a pass uses it (``locked``).
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import io
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from migrate.errors import BadInput, StorageError
from migrate.shards import WHOLE, Shard
from migrate.storage.base import Entry, Storage

FORMAT = 3
_READABLE = (1, 2, 3)  # 1 had no stamps, 2 no generation token: both are read only to say they are not used
_END = "#end "
_WRITE_BUFFER = 256 * 1024


def identity(destination: Storage, include_uploads: bool, shard: Shard = WHOLE) -> dict[str, object]:
    """What a record must match to stand in for a listing of ``destination`` (or of one shard of it)."""
    ident: dict[str, object] = {"destination": f"{destination.url} ({destination.root_description})",
                                "service": destination.service_identity, "include_uploads": include_uploads}
    if shard.count > 1:
        ident["shard"] = str(shard)
    return ident


def shard_path(path: str, shard: Shard) -> str:
    """Where the record of ``shard`` lives for ``--state path``: a pass of N shards keeps one record
    per shard beside it (``path.3-of-8``), so each shard reads and writes its own, wherever it runs."""
    return path if shard.count == 1 else f"{path}.{shard.index}-of-{shard.count}"


@contextlib.contextmanager
def locked(path: str, *, exclusive: bool) -> Iterator[None]:
    """Hold a lock on ``path`` (on a ``.lock`` file beside it) for as long as a pass uses the record:
    exclusive for a pass that consumes and rewrites it, shared for dry runs that only read it."""
    lock_path = path + ".lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise BadInput(f"--state {path}: cannot create its lock file {lock_path}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise BadInput(f"--state {path} is in use by another regmig ({holder}); let it finish") from None
        if exclusive:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock; the lock file stays (removing it would race another locker)


class StateWriter:
    """Writes entries in listing order to a temporary file; ``commit`` puts it in place."""

    def __init__(self, path: str) -> None:
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        try:
            fd, self._tmp = tempfile.mkstemp(dir=directory, prefix=".regmig-state-", suffix=".part")
        except OSError as exc:
            raise BadInput(f"--state {path}: cannot write in {directory}: {exc.strerror}") from exc
        self._raw = os.fdopen(fd, "wb")
        # Compressed a quarter MiB at a time: a compress call per line (or per 8 KiB, TextIOWrapper's
        # own buffer) releases and retakes the GIL each time, and on the listing thread that wait
        # was a sixth of a final pass's time (bench/, delta phase).
        self._out = io.TextIOWrapper(io.BufferedWriter(gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=1),
                                                       buffer_size=_WRITE_BUFFER), encoding="utf-8")
        self.count = 0
        self.usable = True

    def begin(self, ident: dict[str, object], generation: str) -> None:
        """The header: whom the record belongs to, and the generation token this pass wrote."""
        self._out.write(json.dumps({"format": FORMAT, **ident, "generation": generation,
                                    "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")

    def add(self, path: str, size: int, md5: str | None, stamp: str | None) -> None:
        """One entry's line (its fields, not an ``Entry``: a pass records one per object, most of
        them as the listing gave them with the walk's stamp)."""
        if "\t" in path or "\n" in path:
            self.usable = False  # such a key cannot be recorded on a line: the next pass lists instead
            return
        stamped = f"\t{stamp}" if stamp and md5 else ""
        self._out.write(f"{path}\t{size}\t{md5 or '-'}{stamped}\n")
        self.count += 1

    def commit(self, source_files: int) -> None:
        """``source_files``: what this pass's source walk found, for the next pass's shrink check."""
        self.seal().commit(source_files)

    def seal(self) -> Part:
        """The entries written, closed but not in place: the pass decides later whether they hold."""
        self._out.close()
        self._raw.close()
        return Part(self.path, self._tmp, self.count)

    def discard(self) -> None:
        self.seal().discard()


@dataclass(frozen=True)
class Part:
    """A record whose entries are written but which is not yet in place (a file beside it): a pass of
    several shards puts each shard's in place only after its deletes, when the whole pass was clean."""

    path: str
    temporary: str
    count: int

    def commit(self, source_files: int) -> None:
        """Add the count line (a gzip member of its own: readers take the members as one stream) and
        put the record in place."""
        with open(self.temporary, "ab") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as out:
                out.write(f"{_END}{self.count} {source_files}\n".encode())
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(self.temporary, self.path)

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temporary)


class Record:
    """An opened record: its header now, its entries as the pass reads them."""

    def __init__(self, path: str, header: dict[str, object], stream: IO[str]) -> None:
        self.path = path
        self.format = int(header["format"])  # type: ignore[call-overload]
        self.written = str(header.get("written", "?"))
        self.generation = str(header["generation"]) if header.get("generation") else None
        self.source_files: int | None = None
        """What the source walk of the pass that wrote it found; known once the entries are read."""
        self._stream = stream

    def consume(self) -> None:
        """Remove the file (the open stream still reads it), so a pass that dies part-way leaves no
        record that no longer matches the destination."""
        os.unlink(self.path)

    def close(self) -> None:
        self._stream.close()

    def source_count(self) -> int | None:
        """What the record's pass found in the source, read past its entries without parsing them:
        a pass that lists the destination instead of reading them still guards its deletes with it
        (the shrink check), and refuses a damaged record as ``entries`` does."""
        lines, tail = 0, ""
        with self._stream:
            try:
                while chunk := self._stream.read(1 << 20):
                    lines += chunk.count("\n")
                    tail = (tail + chunk)[-4096:]
            except (OSError, ValueError, EOFError) as exc:
                raise StorageError(f"state file {self.path} is damaged ({exc}): nothing deleted; "
                                   f"run again without it") from exc
        last = tail.rstrip("\n").rsplit("\n", 1)[-1]
        total, *source = last[len(_END):].split() if last.startswith(_END) else ("-1",)
        if not total.isdigit() or int(total) != lines - 1:
            raise StorageError(f"state file {self.path} is truncated: nothing deleted; run again without it")
        return int(source[0]) if source else None

    def entries(self) -> Iterator[Entry]:
        count = 0
        with self._stream:
            try:
                for line in self._stream:
                    if line.startswith(_END):
                        total, *source = line[len(_END):].split()
                        if int(total) != count:
                            break
                        self.source_files = int(source[0]) if source else None
                        return
                    name, size, md5, *stamp = line.rstrip("\n").split("\t")
                    if len(stamp) > 1:
                        raise ValueError(f"{len(stamp) + 3} fields on a line")
                    yield Entry(name, int(size), None if md5 == "-" else md5, stamp=stamp[0] if stamp else None)
                    count += 1
            except (OSError, ValueError, EOFError) as exc:
                raise StorageError(f"state file {self.path} is damaged ({exc}): nothing deleted; "
                                   f"run again without it") from exc
        raise StorageError(f"state file {self.path} is truncated after {count} entries: nothing deleted; "
                           f"run again without it")


def check(path: str, ident: dict[str, object], *, writing: bool) -> None:
    """Refuse (exit 2) a record that belongs to another destination, or (``writing``) a directory
    where no new record can be written, before a pass changes anything (its token included)."""
    if writing:
        StateWriter(path).discard()
    record = open_state(path, ident)
    if record is not None:
        record.close()


def open_state(path: str, ident: dict[str, object]) -> Record | None:
    """The record at ``path`` (header read, identity checked), or None when there is none."""
    try:
        stream: IO[str] = gzip.open(path, "rt", encoding="utf-8")  # type: ignore[assignment]
        header = json.loads(stream.readline())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError) as exc:
        raise BadInput(f"--state {path}: not a regmig state file ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") not in _READABLE:
        stream.close()
        raise BadInput(f"--state {path}: not a regmig state file of format {' or '.join(map(str, _READABLE))}")
    for key, expected in ident.items():
        if (key in header or header["format"] >= FORMAT) and header.get(key) != expected:
            stream.close()
            raise BadInput(f"--state {path}: written for {key} {header.get(key)}, not {expected}; "
                           f"pass another file (or remove it to list the destination)")
    return Record(path, header, stream)
