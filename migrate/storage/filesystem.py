"""The registry's filesystem driver root: the usual migration source, and the rollback destination."""

from __future__ import annotations

import bisect
import hashlib
import os
import re
import socket
import stat as stat_module
import tempfile
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import BinaryIO

from migrate import tree
from migrate.errors import BadInput, ObjectMissing, StorageError
from migrate.storage.base import Entry, Link, LinkSink, ProblemSink, Storage, report_problem
from migrate.storage.links import inside, overlapping, walked_twice
from migrate.storage.ranges import KeyRange, common_prefix

_COPY_BUFFER = 1024 * 1024
_FIRST_READ = 4096  # covers link files; a 1 MiB first read would cost an allocation each
STAMP_MARGIN_NS = 2_000_000_000
"""A file is stamped only when its ctime is this much older than the moment the walk read its
directory. Any later write then gets a ctime at least this much newer, so it always changes the
stamp: file times advance in clock ticks (milliseconds on Linux, up to seconds elsewhere), and a
write within the tick of the stamp would otherwise leave it as it was."""
NOT_FOLLOWED = "symbolic link not followed (--follow-symlinks copies what it points to, under this path)"
NETWORK_TYPES = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre",
                           "gpfs", "ncpfs", "davfs", "sshfs"})
"""Filesystems whose clients cache attributes: a stat may answer with times older than the file's."""
_OCTAL = re.compile(r"\\([0-7]{3})")


class FilesystemStorage(Storage):
    driver = tree.Driver.FILESYSTEM
    is_local = True

    def __init__(self, root: str, follow_symlinks: bool = False) -> None:
        self.root = os.path.abspath(root)
        self.rootdirectory = self.root
        self.follow_symlinks = follow_symlinks
        """Registry data moved to another disk and linked back: walk through links as if they were
        the directories or files they point to (loops, dangling links and links back into the
        tree are reported and passed over)."""

    def location(self, rootdirectory: str) -> str:
        return os.path.join(self.root, rootdirectory) if rootdirectory else self.root

    @property
    def service_identity(self) -> str:
        return f"filesystem on {socket.gethostname()}"

    @property
    def prefix(self) -> str:
        return ""

    def network_filesystem(self) -> str | None:
        kind = filesystem_type(self.root)
        if kind is None:
            return "a filesystem of unknown type"
        return kind if kind in NETWORK_TYPES or kind.startswith("fuse") else None

    def _local(self, path: str) -> str:
        wrapped = f"/{path}/"
        if path.startswith("/") or "/../" in wrapped or "/./" in wrapped:
            raise StorageError(f"refusing a path that leaves the root: {path!r}")
        return os.path.join(self.root, path)

    def check_reachable(self) -> None:
        if not os.path.isdir(self.root):
            raise BadInput(f"{self.root}: no such directory")

    def check_destination(self) -> None:
        # A rollback target may not exist yet: its parent must, and the copy creates it.
        if not os.path.isdir(self.root) and not os.path.isdir(os.path.dirname(self.root)):
            raise BadInput(f"{self.root}: neither it nor its parent directory exists")

    def list_prefixes(self, key_prefix: str, max_entries: int = 1000) -> list[str]:
        directory = self._local(key_prefix.rstrip("/")) if key_prefix else self.root
        try:
            with os.scandir(directory) as scan:
                names = [entry.name for entry in scan if entry.is_dir()]
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise StorageError(f"{directory}: cannot list directory: {exc.strerror}") from exc
        # The first names in byte order, as a service's page holds them (a directory is read whole anyway).
        return sorted(f"{key_prefix}{name}/" for name in names)[:max_entries]

    def _walk(self, prefix: str, span: KeyRange | None, on_problem: ProblemSink | None,
              hash_limit: int, on_link: LinkSink | None) -> Generator[Entry, None, None]:
        # Start at the deepest directory the prefix (or the range, when narrower) names fully,
        # then filter on the rest.
        named = prefix
        if span is not None and span.end is not None:
            shared = common_prefix(span.start, span.end)
            named = shared if len(shared) > len(prefix) else prefix
        directory, _, _ = named.rpartition("/")
        start = directory + "/" if directory else ""
        for entry in self._walk_dir(start, on_problem, hash_limit, span, on_link):
            if entry.path.startswith(prefix):
                yield entry

    def _walk_dir(self, rel_dir: str, on_problem: ProblemSink | None, hash_limit: int,
                  span: KeyRange | None, on_link: LinkSink | None) -> Iterator[Entry]:
        """Depth-first, children sorted so that paths come out in byte order.

        A directory sorts as 'name/', so 'a-b' (0x2d) comes before 'a/x' (0x2f) as in a bucket listing.
        Each directory is opened once and its files are stat'ed and read relative to it (a link file
        sits ten directories deep: a full path would be looked up again for every call). An explicit
        stack of directory frames (see ``_frame``) rather than nested generators. With
        ``follow_symlinks`` a link sorts and is walked as what it points to, once ``_Links`` admits it
        (and goes to ``on_link``: another range's walk may have followed one to the same place).
        With ``span``, only the directories that hold one of its bounds are cut to it (two bisections
        each); the others lie wholly inside or outside it and are walked or passed over whole.
        """
        local_dir = self._local(rel_dir.rstrip("/")) if rel_dir else self.root
        top = _open_dir(local_dir, None, rel_dir, on_problem)
        if top is None:
            return
        follow = self.follow_symlinks
        links = _Links(self.root, on_link)
        if follow and rel_dir:
            links.enter(rel_dir)
        stack = [_frame(top, rel_dir, on_problem, follow, span)]
        try:
            while stack:
                dir_fd, children, settled = stack[-1]
                for path, dir_entry in children:
                    if not _encodable(path):
                        report_problem(on_problem, path.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                                       "name is not valid UTF-8; object keys cannot hold it")
                    elif path.endswith("/"):
                        linked = follow and dir_entry.is_symlink()
                        if linked and not links.admit(path, on_problem):
                            continue
                        sub_fd = _open_dir(dir_entry.name, dir_fd, path, on_problem, through_link=linked)
                        if sub_fd is not None:
                            bounds = span if span is not None and span.straddles(path) else None
                            stack.append(_frame(sub_fd, path, on_problem, follow, bounds))
                            break
                    elif dir_entry.is_symlink():
                        if not follow:
                            report_problem(on_problem, path, NOT_FOLLOWED)
                        elif links.admit(path, on_problem):
                            entry = _file_entry(path, dir_entry, dir_fd, hash_limit, settled, on_problem, linked=True)
                            if entry is not None:
                                yield entry
                    else:
                        entry = _file_entry(path, dir_entry, dir_fd, hash_limit, settled, on_problem)
                        if entry is not None:
                            yield entry
                else:
                    os.close(stack.pop()[0])
        finally:
            for dir_fd, _, _ in stack:
                os.close(dir_fd)

    def stat(self, path: str) -> Entry | None:
        try:
            info = os.stat(self._local(path), follow_symlinks=self.follow_symlinks)
        except FileNotFoundError:
            return None
        return Entry(path, info.st_size, modified=info.st_mtime) if stat_module.S_ISREG(info.st_mode) else None

    @contextmanager
    def open(self, path: str) -> Iterator[BinaryIO]:
        with os.fdopen(self._open_fd(path), "rb") as stream:
            yield stream

    def read(self, path: str) -> bytes:
        """Whole small files, link files by the million: one open and one read, no stream objects
        (a third of the per-file cost on the upload path)."""
        fd = self._open_fd(path)
        try:
            data = os.read(fd, _FIRST_READ)
            if len(data) < _FIRST_READ:  # a short read of a regular file is its end
                return data
            parts = [data]
            while chunk := os.read(fd, _COPY_BUFFER):
                parts.append(chunk)
            return b"".join(parts)
        except OSError as exc:
            raise StorageError(f"{path}: cannot read: {exc.strerror}") from exc
        finally:
            os.close(fd)

    def _open_fd(self, path: str) -> int:
        try:
            return os.open(self._local(path), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise ObjectMissing(f"{path}: vanished") from exc
        except OSError as exc:
            raise StorageError(f"{path}: cannot read: {exc.strerror}") from exc

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

    def create_exclusive(self, path: str, data: bytes) -> bool:
        target = self._local(path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return True

    def _delete(self, path: str, if_match: str | None) -> None:
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


def filesystem_type(path: str) -> str | None:
    """The type of the filesystem ``path`` is on (ext4, nfs4, fuse.sshfs, ...), from
    /proc/self/mountinfo: ``os.statvfs`` does not give it. None when it cannot be told."""
    try:
        device = os.stat(path).st_dev
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mounts:
            mountinfo = mounts.read()
    except OSError:
        return None
    return mount_type(mountinfo, f"{os.major(device)}:{os.minor(device)}", os.path.realpath(path))


def mount_type(mountinfo: str, device: str, path: str) -> str | None:
    """From mountinfo lines (``ID PARENT MAJOR:MINOR ROOT MOUNTPOINT OPTIONS ... - TYPE SOURCE ...``):
    the type of the last mount of ``device``, else of the deepest mount point above ``path``."""
    by_device = None
    by_path: tuple[int, str] | None = None
    for line in mountinfo.splitlines():
        fields, _, rest = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or not rest:
            continue
        kind = rest.split()[0]
        if parts[2] == device:
            by_device = kind
        point = _OCTAL.sub(lambda match: chr(int(match.group(1), 8)), parts[4])  # a space is \040
        if path == point or path.startswith(point.rstrip("/") + "/"):
            if by_path is None or len(point) >= by_path[0]:
                by_path = (len(point), kind)
    return by_device or (by_path[1] if by_path else None)


def _open_dir(name: str, parent_fd: int | None, rel_dir: str, on_problem: ProblemSink | None,
              through_link: bool = False) -> int | None:
    # The root may be a symbolic link (registry data moved to another disk); below it, a link is
    # opened only once admitted (``through_link``), so a directory opened by name must not turn out to be one.
    nofollow = os.O_NOFOLLOW if parent_fd is not None and not through_link else 0
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | nofollow
    try:
        return os.open(name, flags, dir_fd=parent_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        report_problem(on_problem, rel_dir, f"cannot list directory: {exc.strerror}")
        return None


def _frame(dir_fd: int, rel_dir: str, on_problem: ProblemSink | None, follow: bool,
           bounds: KeyRange | None) -> tuple[int, Iterator[tuple[str, os.DirEntry[str]]], int]:
    """An open directory, its children still to visit (with ``bounds``, only those that may hold
    a path in it), and the time before which a file's ctime counts as settled (taken as the
    directory is read, before any of its files is stat'ed)."""
    settled = time.time_ns() - STAMP_MARGIN_NS
    children = _children(dir_fd, rel_dir, on_problem, follow)
    if bounds is not None:
        children = _cut(children, bounds)
    return dir_fd, iter(children), settled


def _cut(children: list[tuple[str, os.DirEntry[str]]], bounds: KeyRange) -> list[tuple[str, os.DirEntry[str]]]:
    """The sorted children whose paths may lie in ``bounds``: from the one holding the start (a
    directory 'd/' holds every path that starts with it) to the last one before the end."""
    first = bisect.bisect_left(children, bounds.start, key=_path_of)
    if first and children[first - 1][0].endswith("/") and bounds.start.startswith(children[first - 1][0]):
        first -= 1
    last = len(children) if bounds.end is None else bisect.bisect_left(children, bounds.end, key=_path_of)
    return children[first:last]


def _path_of(child: tuple[str, os.DirEntry[str]]) -> str:
    return child[0]


def _children(dir_fd: int, rel_dir: str, on_problem: ProblemSink | None,
              follow: bool) -> list[tuple[str, os.DirEntry[str]]]:
    """A directory's entries as (relative path, entry), directories as 'name/', in byte order.
    ``follow``: a link to a directory sorts as one (only links cost a stat: the others' type is
    in the directory entry)."""
    try:
        with os.scandir(dir_fd) as scan:
            if follow:
                children = [(rel_dir + (e.name + "/" if _leads_to_directory(e) else e.name), e) for e in scan]
            else:  # the hot path: the type is in the directory entry, no call of ours per entry
                children = [(rel_dir + (e.name + "/" if e.is_dir(follow_symlinks=False) else e.name), e) for e in scan]
    except OSError as exc:
        report_problem(on_problem, rel_dir, f"cannot list directory: {exc.strerror}")
        return []
    children.sort(key=lambda item: item[0])
    return children


def _leads_to_directory(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False  # a link that cannot be followed (a loop of links): reported when its turn comes


def _file_entry(path: str, dir_entry: os.DirEntry[str], dir_fd: int, hash_limit: int, settled: int,
                on_problem: ProblemSink | None, linked: bool = False) -> Entry | None:
    try:
        info = dir_entry.stat(follow_symlinks=linked)
    except FileNotFoundError:
        return None
    except OSError as exc:
        report_problem(on_problem, path, f"cannot stat: {exc.strerror}")
        return None
    if not stat_module.S_ISREG(info.st_mode):
        report_problem(on_problem, path, "not a regular file")
        return None
    # Taken before any read, so content read later is never older than its stamp.
    stamp = f"{info.st_dev}:{info.st_ino}:{info.st_mtime_ns}:{info.st_ctime_ns}" \
        if info.st_ctime_ns < settled else None
    modified = info.st_mtime
    if hash_limit <= 0 or info.st_size > hash_limit:
        return Entry(path, info.st_size, stamp=stamp, modified=modified)
    # Small files (link files) are hashed here, so a pass compares them without reading them again.
    try:
        fd = os.open(dir_entry.name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            data = os.read(fd, hash_limit + 1)
        finally:
            os.close(fd)
    except FileNotFoundError:
        return None
    except OSError:
        # not hashed: the copy reads it and reports what fails
        return Entry(path, info.st_size, stamp=stamp, modified=modified)
    if len(data) > hash_limit:
        # grew since the stat: left for the copy to read whole
        return Entry(path, info.st_size, stamp=stamp, modified=modified)
    return Entry(path, len(data), hashlib.md5(data).hexdigest(), data=data, stamp=stamp, modified=modified)


class _Links:
    """With --follow-symlinks: the real directories a walk has entered (the root's, then each
    followed link's), so a link that would walk something twice or forever is reported instead.
    Only links pay for it (a realpath each): a walk without links never calls it. Each link
    followed goes to ``on_link``, to be checked against those of other ranges' walks."""

    def __init__(self, root: str, on_link: LinkSink | None) -> None:
        self._root = root
        self._on_link = on_link
        self._trees: list[str] = []

    def enter(self, rel_dir: str) -> None:
        """A walk that starts below the root (a key range, a shard): the links on the way down count
        as walked, as in a whole walk, which would have entered them (``docker -> /mnt/disk/docker``
        and a link inside pointing back into it)."""
        if not self._trees:
            self._trees.append(os.path.realpath(self._root))
        parts = rel_dir.strip("/").split("/")
        for depth in range(1, len(parts) + 1):
            local = os.path.join(self._root, *parts[:depth])
            if os.path.islink(local):
                self._followed("/".join(parts[:depth]) + "/", os.path.realpath(local))

    def admit(self, path: str, on_problem: ProblemSink | None) -> bool:
        """Whether the link at ``path`` may be followed; when not, why goes to ``on_problem``."""
        name = path.rstrip("/")  # reported as the link it is, not as the directory it leads to
        link = os.path.join(self._root, name)
        if not self._trees:
            self._trees.append(os.path.realpath(self._root))
        try:
            os.stat(link)
        except FileNotFoundError:
            try:
                pointed = os.readlink(link)
            except OSError:
                return False  # the link itself is gone since the directory was read: nothing to copy
            report_problem(on_problem, name, f"dangling symbolic link: {pointed!r} does not exist")
            return False
        except OSError as exc:
            report_problem(on_problem, name, f"symbolic link cannot be followed: {exc.strerror}")
            return False
        target = os.path.realpath(link)
        if inside(os.path.realpath(os.path.dirname(link)), target):
            report_problem(on_problem, name, f"symbolic link loop: it points to {target}, which holds the link itself")
            return False
        walked = overlapping(target, self._trees)
        if walked is not None:
            report_problem(on_problem, name, walked_twice(target, walked))
            return False
        self._followed(path, target)
        return True

    def _followed(self, path: str, target: str) -> None:
        if path.endswith("/"):
            self._trees.append(target)
        if self._on_link is not None:
            self._on_link(Link(path, target))


def _encodable(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


