"""--follow-symlinks across key ranges: two links in different ranges (threads, shards, worker
processes, array jobs) to the same directory are the problem a whole walk reports, and keep a
pass from deleting, as they do in a whole walk."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cli_runner import regmig
from migrate.parallel import parallel_walk, source_walk
from migrate.sample import SampleRegistry
from migrate.shards import WHOLE, shard_of
from migrate.storage.base import Entry, ProblemSink
from migrate.storage.filesystem import FilesystemStorage

FIRST, LATER = "a-link", "zz-link"
"""Link names in the first and the last of four shards (and of a whole tree split in four)."""
EXTRA = "docker/registry/v2/blobs/sha256/c0/c0ffee/data"
"""A destination-only blob: a pass with --delete deletes it unless it is refused."""
Walker = Callable[[FilesystemStorage, ProblemSink], Iterator[Entry]]
WALKERS: dict[str, Walker] = {
    "source_walk": lambda storage, sink: source_walk(storage, WHOLE.split(4), 4, on_problem=sink),
    "parallel_walk on threads": lambda storage, sink: parallel_walk(storage, WHOLE.split(4), 4, on_problem=sink),
    "parallel_walk on one thread": lambda storage, sink: parallel_walk(storage, WHOLE.split(4), 1, on_problem=sink),
}


def test_the_names_lie_in_different_shards() -> None:
    assert shard_of(FIRST + "/", 4).index == 0 and shard_of(LATER + "/", 4).index == 3


def link_twice(root: Path, outside: Path, first: str, later: str) -> None:
    """Links ``FIRST`` and ``LATER`` to ``first`` and ``later`` under ``outside`` (a file or a directory)."""
    for rel in ("f", "sub/g"):
        (outside / rel).parent.mkdir(parents=True, exist_ok=True)
        (outside / rel).write_bytes(rel.encode())
    os.symlink(outside / first, root / FIRST)
    os.symlink(outside / later, root / LATER)


def problems_of(walk: Iterator[Entry], problems: dict[str, str]) -> dict[str, str]:
    for _ in walk:
        pass
    return problems


@pytest.mark.parametrize("walker", list(WALKERS))
@pytest.mark.parametrize("first,later", [("", ""), ("", "sub"), ("sub", ""), ("", "sub/g")],
                         ids=["same directory", "inside the first", "holding the first", "a file inside the first"])
def test_links_in_different_ranges_are_checked_as_in_a_whole_walk(tmp_path: Path, walker: str, first: str,
                                                                    later: str) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "docker/registry/v2/repositories/x").mkdir(parents=True)
    (root / "docker/registry/v2/repositories/x/link").write_bytes(b"sha256:1")
    link_twice(root, outside, first, later)
    storage = FilesystemStorage(str(root), follow_symlinks=True)
    whole: dict[str, str] = {}
    problems_of(storage.walk(on_problem=whole.__setitem__), whole)
    assert list(whole) == [LATER] and "back into the tree" in whole[LATER]
    ranged: dict[str, str] = {}
    assert problems_of(WALKERS[walker](storage, ranged.__setitem__), ranged) == whole


def test_links_to_different_places_are_no_problem(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    (outside / "other").mkdir(parents=True)
    (outside / "other/h").write_bytes(b"h")
    link_twice(root, outside, "sub", "other")
    problems: dict[str, str] = {}
    walked = [entry.path for entry in source_walk(FilesystemStorage(str(root), True), WHOLE.split(4), 4,
                                                  on_problem=problems.__setitem__)]
    assert walked == [FIRST + "/g", LATER + "/h"] and not problems


# --- a pass: shards here, in worker processes, as array-job shards gathered ---------------------------------

def linked_pass(registry: SampleRegistry, tmp_path: Path) -> tuple[str, Path]:
    """A destination a first pass filled, a destination-only blob in it (a delete is due), and then
    two links in the source, in different shards, to the same directory on another disk."""
    destination = str(tmp_path / "copy")
    assert regmig("sync", registry.root, destination).exit_code == 0
    Path(destination, EXTRA).parent.mkdir(parents=True)
    Path(destination, EXTRA).write_bytes(b"extra")
    link_twice(Path(registry.root), tmp_path / "disk", "", "")
    return destination, Path(destination, EXTRA)


def refused(result, later: str = LATER) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 1, result.stdout
    report = result.json()
    problems = {p["path"]: p["message"] for p in report["lists"]["problems"]["listed"]}
    assert list(problems) == [later] and "back into the tree" in problems[later], problems
    assert "passed over 1" in report["delete_refused"]


@pytest.mark.parametrize("scale", [[], ["--shards", "4"], ["--processes", "2", "--shards", "4"]],
                         ids=["one shard", "four shards here", "four shards in two processes"])
def test_a_pass_in_shards_refuses_its_deletes_as_a_whole_walk_does(registry: SampleRegistry, tmp_path: Path,
                                                                    scale: list[str]) -> None:
    """One shard too: its source walk is four ranges (``shardsync.SOURCE_THREADS``)."""
    destination, extra = linked_pass(registry, tmp_path)
    refused(regmig("sync", registry.root, destination, "--follow-symlinks", "--delete", "--into-populated-directory",
                   *scale, "--json"))
    assert extra.exists()


def test_gather_checks_the_links_of_every_shard(registry: SampleRegistry, tmp_path: Path) -> None:
    destination, extra = linked_pass(registry, tmp_path)
    results = str(tmp_path / "results")
    for index in range(4):
        shard = regmig("sync", registry.root, destination, "--follow-symlinks", "--into-populated-directory",
                       "--shard", f"{index}/4", "--results", results)
        assert shard.exit_code == 0, shard.stdout  # each shard saw one link: clean on its own
    refused(regmig("gather", registry.root, destination, "--results", results, "--delete", "--json"))
    assert extra.exists()


def test_verify_in_shards_reports_them_too(registry: SampleRegistry, tmp_path: Path) -> None:
    destination, _ = linked_pass(registry, tmp_path)
    checked = regmig("verify", registry.root, destination, "--follow-symlinks", "--shards", "4", "--json")
    assert checked.exit_code == 1
    assert [p["path"] for p in checked.json()["lists"]["problems"]["listed"]] == [LATER]
