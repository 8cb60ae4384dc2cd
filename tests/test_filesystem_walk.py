"""The filesystem walk emits paths in the byte order an object store lists keys in."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from migrate.errors import StorageError
from migrate.storage import filesystem
from migrate.storage.filesystem import FilesystemStorage


def touch(root: Path, rel: str, data: bytes = b"x") -> None:
    target = root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def test_walk_is_in_byte_order_with_dash_before_slash(tmp_path: Path) -> None:
    names = ["a/x", "a-b", "a0", "a/y/z", "B", "ä/1", "a.b/c", "_z"]
    for name in names:
        touch(tmp_path, name)
    walked = [e.path for e in FilesystemStorage(str(tmp_path)).walk()]
    assert walked == sorted(names, key=lambda n: n.encode())


def test_walk_with_prefix(tmp_path: Path) -> None:
    for name in ["d/a/1", "d/ab/2", "d/b/3", "e/4"]:
        touch(tmp_path, name)
    storage = FilesystemStorage(str(tmp_path))
    assert [e.path for e in storage.walk("d/a")] == ["d/a/1", "d/ab/2"]
    assert [e.path for e in storage.walk("d/a/")] == ["d/a/1"]
    assert [e.path for e in storage.walk("zzz/")] == []


def test_symlinks_are_reported_not_followed(tmp_path: Path) -> None:
    touch(tmp_path, "root/a", b"1")
    touch(tmp_path, "outside/secret", b"2")
    os.symlink(tmp_path / "outside", tmp_path / "root" / "dirlink")
    os.symlink(tmp_path / "outside" / "secret", tmp_path / "root" / "filelink")
    problems: list[tuple[str, str]] = []
    walked = [e.path for e in FilesystemStorage(str(tmp_path / "root")).walk(on_problem=lambda p, m: problems.append((p, m)))]
    assert walked == ["a"]
    assert sorted(p for p, _ in problems) == ["dirlink", "filelink"]
    assert all("--follow-symlinks" in message for _, message in problems)  # the way to copy them
    with pytest.raises(StorageError, match="symbolic link"):
        list(FilesystemStorage(str(tmp_path / "root")).walk())


def test_followed_links_are_walked_in_byte_order_and_loops_reported(tmp_path: Path) -> None:
    """Keys are named by the path under the root; whatever would walk a directory twice or
    forever, or has nothing behind it, is a problem instead."""
    root, disk = tmp_path / "root", tmp_path / "disk"
    touch(root, "a", b"1")
    touch(root, "docker-b", b"2")  # '-' sorts before the '/' of the linked directory's paths
    touch(disk, "docker/x", b"3")
    touch(disk, "docker/sub/y", b"4")
    touch(disk, "file", b"5")
    os.symlink(disk / "docker", root / "docker")
    os.symlink(disk / "file", root / "flink")
    os.symlink("..", disk / "docker" / "sub" / "up")  # an ancestor of itself: a loop
    os.symlink(root / "a", root / "alias")  # back into the tree
    os.symlink(disk / "docker", root / "zz-again")  # a directory already walked, under a second name
    os.symlink(tmp_path / "nothing", root / "dead")
    os.symlink("self", root / "self")
    problems: dict[str, str] = {}
    storage = FilesystemStorage(str(root), follow_symlinks=True)
    entries = list(storage.walk(on_problem=problems.__setitem__, hash_limit=4096))
    walked = [e.path for e in entries]
    assert walked == ["a", "docker-b", "docker/sub/y", "docker/x", "flink"]
    assert [e.md5 for e in entries] == [hashlib.md5(d).hexdigest() for d in (b"1", b"2", b"4", b"3", b"5")]
    assert set(problems) == {"alias", "dead", "docker/sub/up", "self", "zz-again"}
    assert "back into the tree" in problems["alias"] and "back into the tree" in problems["zz-again"]
    assert "loop" in problems["docker/sub/up"]
    assert "dangling" in problems["dead"]
    assert "cannot be followed" in problems["self"]
    assert storage.stat("flink") == filesystem.Entry("flink", 1)


def test_put_and_delete_prune_empty_directories(tmp_path: Path) -> None:
    storage = FilesystemStorage(str(tmp_path))
    storage.put("x/tags/t/current/link", b"sha256:1", 8)
    storage.put("x/other", b"1", 1)
    assert storage.read("x/tags/t/current/link") == b"sha256:1"
    storage.delete("x/tags/t/current/link")
    assert not (tmp_path / "x" / "tags").exists()
    assert (tmp_path / "x" / "other").exists()
    with pytest.raises(StorageError):
        storage.put("../escape", b"1", 1)


def test_walk_hashes_small_files_only_when_asked(tmp_path: Path) -> None:
    link = b"sha256:" + b"ab" * 32
    touch(tmp_path, "r/_layers/sha256/ab/link", link)
    touch(tmp_path, "blobs/data", b"y" * 5000)
    touch(tmp_path, "empty", b"")
    plain = {e.path: e for e in FilesystemStorage(str(tmp_path)).walk()}
    assert all(e.md5 is None for e in plain.values())
    hashed = {e.path: e for e in FilesystemStorage(str(tmp_path)).walk(hash_limit=4096)}
    assert hashed["r/_layers/sha256/ab/link"].md5 == hashlib.md5(link).hexdigest()
    assert hashed["r/_layers/sha256/ab/link"].size == 71
    assert hashed["empty"].md5 == hashlib.md5(b"").hexdigest()
    assert hashed["blobs/data"].md5 is None and hashed["blobs/data"].size == 5000


def test_files_are_stamped_only_once_their_times_have_settled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stamp stands for "not written since": a file written within the margin before the walk
    gets none (a write in the same clock tick could leave its times as they were)."""
    touch(tmp_path, "old", b"1")
    time.sleep(0.05)  # a few clock ticks: "new" gets a later ctime than "old"
    touch(tmp_path, "new", b"2")
    old, new = os.stat(tmp_path / "old"), os.stat(tmp_path / "new")
    assert old.st_ctime_ns < new.st_ctime_ns
    # The walk as if "new" had been written exactly the margin before it began.
    began = time.time_ns()
    monkeypatch.setattr(filesystem.time, "time_ns", lambda: began)
    monkeypatch.setattr(filesystem, "STAMP_MARGIN_NS", began - new.st_ctime_ns)
    entries = {e.path: e for e in FilesystemStorage(str(tmp_path)).walk(hash_limit=4096)}
    assert entries["old"].stamp == f"{old.st_dev}:{old.st_ino}:{old.st_mtime_ns}:{old.st_ctime_ns}"
    assert entries["new"].stamp is None
    assert entries["old"].md5 == hashlib.md5(b"1").hexdigest()


def test_a_root_that_is_a_symbolic_link_is_walked(tmp_path: Path) -> None:
    """Registry data moved to another disk and linked back: the root is followed, links below it are not."""
    touch(tmp_path / "disk", "docker/registry/v2/x", b"1")
    os.symlink(tmp_path / "disk", tmp_path / "registry")
    assert [e.path for e in FilesystemStorage(str(tmp_path / "registry")).walk()] == ["docker/registry/v2/x"]
