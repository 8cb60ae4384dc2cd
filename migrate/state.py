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

The record is consumed when a pass that may write starts (an interrupted pass leaves none, so
the next one lists), is tied to one destination and one ``--include-uploads`` setting, and
ends with a count line, so a truncated file is an error rather than a shorter listing.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tempfile
import time
from collections.abc import Iterator
from typing import IO

from migrate.errors import BadInput, StorageError
from migrate.storage.base import Entry, Storage

FORMAT = 2
_READABLE = (1, 2)  # format 1 had no stamps: every small file is then read once more
_END = "#end "
_WRITE_BUFFER = 256 * 1024


def identity(destination: Storage, include_uploads: bool) -> dict[str, object]:
    """What a record must match to stand in for a listing of ``destination``."""
    return {"destination": f"{destination.url} ({destination.root_description})", "include_uploads": include_uploads}


class StateWriter:
    """Writes entries in listing order to a temporary file; ``commit`` puts it in place."""

    def __init__(self, path: str, ident: dict[str, object]) -> None:
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
        self._out.write(json.dumps({"format": FORMAT, **ident, "written": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                       time.gmtime())}) + "\n")
        self.count = 0
        self.usable = True

    def add(self, entry: Entry) -> None:
        if "\t" in entry.path or "\n" in entry.path:
            self.usable = False  # such a key cannot be recorded on a line: the next pass lists instead
            return
        stamp = f"\t{entry.stamp}" if entry.stamp and entry.md5 else ""
        self._out.write(f"{entry.path}\t{entry.size}\t{entry.md5 or '-'}{stamp}\n")
        self.count += 1

    def commit(self) -> None:
        self._out.write(f"{_END}{self.count}\n")
        self._out.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        os.replace(self._tmp, self.path)

    def discard(self) -> None:
        self._out.close()
        self._raw.close()
        os.unlink(self._tmp)


def open_state(path: str, ident: dict[str, object], *, consume: bool) -> tuple[str, Iterator[Entry]] | None:
    """The record at ``path`` as (when written, entries in order), or None when there is none.

    ``consume`` removes the file once opened (the open handle still reads it), so a pass that
    dies part-way leaves no record that no longer matches the destination.
    """
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
        if header.get(key) != expected:
            stream.close()
            raise BadInput(f"--state {path}: written for {key} {header.get(key)}, not {expected}; "
                           f"pass another file (or remove it to list the destination)")
    if consume:
        os.unlink(path)
    return str(header.get("written", "?")), _entries(path, stream)


def _entries(path: str, stream: IO[str]) -> Iterator[Entry]:
    count = 0
    with stream:
        try:
            for line in stream:
                if line.startswith(_END):
                    if int(line[len(_END):]) != count:
                        break
                    return
                name, size, md5, *stamp = line.rstrip("\n").split("\t")
                if len(stamp) > 1:
                    raise ValueError(f"{len(stamp) + 3} fields on a line")
                yield Entry(name, int(size), None if md5 == "-" else md5, stamp=stamp[0] if stamp else None)
                count += 1
        except (OSError, ValueError, EOFError) as exc:
            raise StorageError(f"state file {path} is damaged ({exc}): nothing deleted; run again without it") from exc
    raise StorageError(f"state file {path} is truncated after {count} entries: nothing deleted; run again without it")
