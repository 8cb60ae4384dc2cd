"""Where one listing of a shard is cut for its threads: at repository names the object store holds.

``Shard.split`` cuts by a model of how names start (migrate.shards), which the tasks of an array
job must share because none of them may look first. One listing on several threads can look. A
registry whose projects sit under one or two groups (``gitlab-org/...``, a company's name) falls
wholly into one of the model's ranges, and one thread then lists most of the registry alone
while the others idle (a 100,000-object tree of 50 groups named ``group-NN``: 69% of its keys in
one of 16 ranges). So the repositories' part of the shard is cut again at the names found by a
few delimiter listings, with about as many names between two cuts. Blob cuts stay: digests are
uniform, the model is exact there. Any cuts give the same entries in the same order (the ranges
are contiguous and cover the shard); these only even out the threads' work. A local tree keeps
the model's cuts (migrate.shardsync.shard_walk says why).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from migrate import tree
from migrate.shards import Shard
from migrate.storage.base import Storage
from migrate.storage.ranges import KeyRange

NAMES_PER_RANGE = 4
"""Names wanted per range before the descent stops: enough to even out repositories of unlike sizes."""
MAX_REQUESTS = 64
"""Delimiter listings at most, whatever the tree: a fixed cost next to a listing of millions of keys."""
_OWN_PARTS = frozenset({"_layers/", "_manifests/", "_uploads/"})
"""What a repository holds besides repositories nested below it."""


def listing_ranges(storage: Storage, shard: Shard, parts: int, threads: int) -> tuple[KeyRange, ...]:
    """``shard`` in up to ``parts`` contiguous ranges for ``threads`` listing threads: the model's
    cuts, with those among the repositories moved to names ``storage`` holds."""
    fixed = shard.split(parts)
    region = shard.under(tree.REPOSITORIES)
    among = [part for part in fixed if not part.under(tree.REPOSITORIES).empty]
    if len(among) < 2:
        return fixed
    names = [name for name in _names(storage, region, len(among) * NAMES_PER_RANGE, threads)
             if _strictly_inside(region, name)]
    if len(names) < len(among):
        return fixed  # too few names to cut by: the model's cuts are as good
    cuts = {names[len(names) * i // len(among)] for i in range(1, len(among))}
    cuts.update(part.start for part in fixed[1:] if not _strictly_inside(region, part.start))
    edges = [shard.start, *sorted(cuts), shard.end]
    ranges = (KeyRange(lo, hi) for lo, hi in zip(edges, edges[1:]))  # type: ignore[arg-type]
    return tuple(part for part in ranges if not part.empty)


def _names(storage: Storage, region: KeyRange, wanted: int, threads: int) -> list[str]:
    """Repository name prefixes (``repositories/<group>/``, then a level deeper, ...) that reach
    into ``region``, in byte order: one level at a time until there are ``wanted`` or the
    request budget would be spent. A repository's own directories are never descended into. A
    delimiter listing reads one page: a group of more than 1,000 names is cut among its first."""
    level, leaves, requests = [tree.REPOSITORIES], set(), 0
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="regmig-cuts") as pool:
        while len(level) < wanted:
            open_ = [name for name in level if name not in leaves]
            if not open_ or requests + len(open_) > MAX_REQUESTS:
                break
            requests += len(open_)
            below = dict(zip(open_, pool.map(lambda name: _nested(storage, name), open_)))
            leaves.update(name for name, children in below.items() if not children)
            level = sorted(child for name in level for child in below.get(name) or [name]
                           if not region.under(child).empty)
    return [name for name in level if name != tree.REPOSITORIES]


def _nested(storage: Storage, name: str) -> list[str]:
    """The names one level below ``name``: groups, projects, images nested in a project."""
    prefix = storage.prefix
    below = [key[len(prefix):] for key in storage.list_prefixes(storage.key(name))]
    return [child for child in below if child[len(name):] not in _OWN_PARTS]


def _strictly_inside(region: KeyRange, path: str) -> bool:
    return region.start < path and (region.end is None or path < region.end)
