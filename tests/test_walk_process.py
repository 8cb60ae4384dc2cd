"""A local walk in a process of its own (migrate.walk_process): the same entries, problems and
links as the walk on threads, its errors raised in the pass, a child that dies an error, nothing
left running once the pass stops reading; and a pass's walk goes there only once it is large."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import threading
from pathlib import Path

import pytest

from migrate import parallel, shardsync, tree, walk_process
from migrate.errors import StorageError
from migrate.parallel import pack, parallel_walk
from migrate.sample import valid_registry
from migrate.shards import WHOLE
from migrate.storage import FilesystemStorage
from migrate.storage.base import Link
from migrate.storage.filesystem import NOT_FOLLOWED
from migrate.walk_process import walk_elsewhere


def links_tree(root: Path, count: int) -> FilesystemStorage:
    """``count`` layer links (71 bytes each) and a blob for every tenth, in a registry tree."""
    for number in range(count):
        digest = hashlib.sha256(str(number).encode()).hexdigest()
        link = root / tree.REPOSITORIES / f"group/image{number % 7}" / "_layers/sha256" / digest / "link"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.write_bytes(f"sha256:{digest}".encode())
        if number % 10 == 0:
            blob = root / tree.BLOBS / "sha256" / digest[:2] / digest / "data"
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(os.urandom(number % 5000))
    return FilesystemStorage(str(root))


@pytest.mark.parametrize("threads", [1, 4])
@pytest.mark.parametrize("hash_limit", [0, 4096])
def test_the_same_entries_in_the_same_order_as_the_walk_here(tmp_path: Path, threads: int, hash_limit: int) -> None:
    storage = links_tree(tmp_path / "root", 3000)
    ranges = WHOLE.split(8)
    here = [pack(entry) for entry in parallel_walk(storage, ranges, threads, hash_limit=hash_limit)]
    there = [pack(entry) for entry in walk_elsewhere(storage, ranges, threads, hash_limit=hash_limit)]
    assert len(here) == 3300
    assert there == here  # stamps, MD5s and the bytes read included


def test_problems_and_links_come_back_in_the_stream(tmp_path: Path) -> None:
    root = tmp_path / "root"
    storage = links_tree(root, 50)
    repositories = root / tree.REPOSITORIES / "group"
    (repositories / "image0" / "_layers" / "elsewhere").symlink_to(tmp_path)
    outside = tmp_path / "outside"
    (outside / "_manifests/revisions/sha256").mkdir(parents=True)
    (repositories / "moved").symlink_to(outside)
    problems: list[tuple[str, str]] = []
    there = list(walk_elsewhere(storage, WHOLE.split(4), 2, on_problem=lambda *problem: problems.append(problem)))
    assert [entry.path for entry in there] == [entry.path for entry in parallel_walk(storage, WHOLE.split(4), 2,
                                                                                     on_problem=lambda *_: None)]
    assert problems == [(f"{tree.REPOSITORIES}group/image0/_layers/elsewhere", NOT_FOLLOWED),
                        (f"{tree.REPOSITORIES}group/moved", NOT_FOLLOWED)]
    followed: list[Link] = []
    storage.follow_symlinks = True
    list(walk_elsewhere(storage, WHOLE.split(4), 2, on_problem=lambda *problem: problems.append(problem),
                        on_link=followed.append))
    assert Link(f"{tree.REPOSITORIES}group/moved/", str(outside)) in followed


def test_a_problem_without_a_sink_is_an_error_as_in_the_walk_here(tmp_path: Path) -> None:
    storage = links_tree(tmp_path / "root", 20)
    (tmp_path / "root" / tree.BLOBS / "stray").symlink_to(tmp_path)
    with pytest.raises(StorageError, match="stray: symbolic link not followed"):
        list(walk_elsewhere(storage, WHOLE.split(2), 1))


def test_an_error_in_the_child_is_raised_here(tmp_path: Path) -> None:
    storage = links_tree(tmp_path / "root", 3000)
    with pytest.raises(StorageError, match="cannot keep a listing ahead of its turn in .*missing"):
        list(walk_elsewhere(storage, WHOLE.split(8), 4, spool_dir=str(tmp_path / "missing")))


class Unsendable(Exception):
    """An error that cannot be pickled: it holds a lock."""

    def __init__(self) -> None:
        super().__init__("the disk said no")
        self.lock = threading.Lock()


class FailingStorage(FilesystemStorage):
    """A tree whose walk fails with an error that cannot cross the pipe."""

    def walk(self, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        raise Unsendable()


def test_an_error_that_cannot_cross_the_pipe_is_raised_here_by_its_name(tmp_path: Path) -> None:
    links_tree(tmp_path / "root", 10)
    with pytest.raises(StorageError, match="the walk failed: Unsendable: the disk said no"):
        list(walk_elsewhere(FailingStorage(str(tmp_path / "root")), WHOLE.split(2), 1))


def test_a_child_that_dies_is_an_error_not_the_end_of_the_walk(tmp_path: Path) -> None:
    storage = links_tree(tmp_path / "root", 3000)  # more than the pipe holds: the child waits for the reader
    walk = walk_elsewhere(storage, WHOLE.split(4), 1)
    next(walk)
    child = next(process for process in multiprocessing.active_children() if process.name == "regmig-walk")
    os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
    with pytest.raises(StorageError, match=r"stopped before its end: its process ended \(exit code -9\)"):
        list(walk)


def test_closing_the_walk_stops_the_child(tmp_path: Path) -> None:
    storage = links_tree(tmp_path / "root", 3000)
    walk = walk_elsewhere(storage, WHOLE.split(4), 1)
    next(walk)
    child = next(process for process in multiprocessing.active_children() if process.name == "regmig-walk")
    walk.close()
    assert not child.is_alive()


def test_only_the_programs_own_process_walks_elsewhere() -> None:
    assert walk_process.can_walk_elsewhere()
    with multiprocessing.get_context("forkserver").Pool(1) as pool:
        assert pool.apply(walk_process.can_walk_elsewhere) is False


def test_a_pass_walks_elsewhere_past_its_probe_with_the_same_results(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A sync of a tree larger than the probe gets its walk's rest from a child process; a
    smaller one (or one whose first range ends within the probe) walks here."""
    source = tmp_path / "source"
    valid_registry(str(source), 600)
    calls: list[int] = []

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return walk_elsewhere(*args, **kwargs)

    monkeypatch.setattr(shardsync, "walk_elsewhere", counted)
    storage = FilesystemStorage(str(source))
    whole = list(shardsync.shard_walk(storage, WHOLE, hash_limit=4096))
    assert not calls  # the tree's first range ends within the probe
    monkeypatch.setattr(parallel, "PROBE", 20)
    assert [pack(entry) for entry in shardsync.shard_walk(storage, WHOLE, hash_limit=4096)] == \
        [pack(entry) for entry in whole]
    assert calls == [1]
