"""--follow-symlinks across key ranges: the links the walks of several ranges followed, checked
against each other once every range has ended.

A whole walk (migrate.storage.filesystem) refuses a link that would walk a directory a second
time, but a walk cut into ranges (threads, shards, worker processes, array jobs, Dask) sees only
its own range's links: two links in different ranges to the same directory outside the root
would both be followed. So each range reports the links it followed, and whoever merges the
ranges settles them here with the same rule, in byte order, as the whole walk would have met them.
Only links are kept: a tree has few.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from migrate.storage.base import Link, LinkSink, ProblemSink, report_problem


def inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def overlapping(target: str, walked: Iterable[str]) -> str | None:
    """The first of the ``walked`` directories that holds ``target`` or lies in it."""
    return next((tree for tree in walked if inside(target, tree) or inside(tree, target)), None)


def walked_twice(target: str, walked: str) -> str:
    """Why a link to ``target`` is a problem when ``walked`` was walked already."""
    return (f"symbolic link points back into the tree ({target}, walked as {walked}): not followed, it would "
            f"copy the same files under two names")


class Followed:
    """The links several ranges' walks followed, added from their threads as they go."""

    def __init__(self, links: Iterable[Link] = ()) -> None:
        self._lock = threading.Lock()
        self._links = set(links)  # a link on the way down to several ranges is reported by each

    def add(self, link: Link) -> None:
        with self._lock:
            self._links.add(link)

    def settle(self, on_problem: ProblemSink | None, on_link: LinkSink | None = None) -> None:
        """Once every range has ended: a link whose target overlaps a directory an earlier link (in
        byte order: the whole walk's order) led to is a problem, as the whole walk reports it, though
        its files were walked by now; the others go on to ``on_link``, the merge above this one."""
        trees: list[str] = []
        for link in sorted(self._links):
            walked = overlapping(link.target, trees)
            if walked is not None:
                report_problem(on_problem, link.path.rstrip("/"), walked_twice(link.target, walked))
                continue
            if link.path.endswith("/"):
                trees.append(link.target)
            if on_link is not None:
                on_link(link)
