"""Cutting one listing for its threads at the repository names a location holds (migrate.cuts):
any tree, any shard, the ranges cover it exactly; a registry under one group is spread over the
threads instead of falling into one range; the delimiter listings stay within their budget.
(The same cuts on every backend: tests/test_storage_contract.py.)"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections import Counter

import pytest

from migrate import cuts, tree
from migrate.cuts import listing_ranges
from migrate.parallel import parallel_walk
from migrate.shards import WHOLE, partition
from migrate.storage.memory import MemoryStorage
from migrate.storage.ranges import KeyRange


def registry(names: list[str], links: int = 6, blobs: int = 200) -> MemoryStorage:
    storage = MemoryStorage()
    for i in range(blobs):
        digest = hashlib.sha256(f"blob{i}".encode()).hexdigest()
        storage.objects[f"{tree.BLOBS}sha256/{digest[:2]}/{digest}/data"] = b"x"
    for name in names:
        for i in range(links):
            digest = hashlib.sha256(f"{name}{i}".encode()).hexdigest()
            storage.objects[f"{tree.REPOSITORIES}{name}/_layers/sha256/{digest}/link"] = b"x"
        storage.objects[f"{tree.REPOSITORIES}{name}/_manifests/tags/latest/current/link"] = b"x"
    return storage


def per_range(storage: MemoryStorage, ranges: tuple[KeyRange, ...]) -> list[int]:
    """How many repository keys each range holds."""
    starts = [part.start for part in ranges]
    held = Counter(bisect.bisect_right(starts, key) - 1 for key in storage.objects if key.startswith(tree.REPOSITORIES))
    return [held[i] for i in range(len(ranges))]


def test_a_registry_under_one_group_is_spread_over_the_threads() -> None:
    """The name model cannot know that every project sits under ``acme/``: its 16 ranges put all of
    them in one. Cut at the names found, no range holds more than twice its share."""
    storage = registry([f"acme/project-{i:03}" for i in range(300)])
    model = per_range(storage, WHOLE.split(16))
    assert max(model) == sum(model)  # what the threads had before: one lists every repository
    ranges = listing_ranges(storage, WHOLE, 16, 4)
    counts = [count for part, count in zip(ranges, per_range(storage, ranges))
              if not part.under(tree.REPOSITORIES).empty]
    assert len(counts) == 8 and max(counts) <= 2 * sum(counts) / len(counts), counts
    assert [part.start for part in ranges[:9]] == [part.start for part in WHOLE.split(16)[:9]]  # blob cuts stay


def test_names_nested_at_any_depth_are_cut_between() -> None:
    """Images nested in projects, groups in groups: the descent goes down while there are too few names."""
    storage = registry([f"big/sub-{i}/project/image-{j}" for i in range(3) for j in range(40)] + ["solo"])
    ranges = listing_ranges(storage, WHOLE, 8, 2)
    counts = [count for part, count in zip(ranges, per_range(storage, ranges))
              if not part.under(tree.REPOSITORIES).empty]
    assert len(counts) == 4 and max(counts) <= 2 * sum(counts) / len(counts), counts


@pytest.mark.parametrize("seed", range(12))
def test_the_ranges_cover_every_shard_exactly_in_order(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "ab-_0z.é"
    names = {"/".join("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4)))
                      for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(0, 120))}
    storage = registry(sorted(names), links=rng.randint(1, 3), blobs=rng.randint(0, 50))
    storage.objects[tree.LOCKFILES + "database-in-use"] = b"x"
    storage.objects[tree.REGMIG + "generation"] = b"x"
    count = rng.choice([1, 2, 3, 5, 8])
    for shard in partition(count):
        parts = rng.choice([1, 2, 3, 16, 64])
        ranges = listing_ranges(storage, shard, parts, 3)
        assert ranges[0].start == shard.start and ranges[-1].end == shard.end
        assert all(a.end == b.start for a, b in zip(ranges, ranges[1:]))
        assert list(parallel_walk(storage, ranges, 3)) == list(storage.walk(within=shard))


def test_the_descent_stays_within_its_request_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten groups of ten subgroups of ten projects and 64 ranges wanted: the third level would take
    a hundred more listings, so the cuts are made from the second."""
    storage = registry([f"g{i}/s{j}/p{k}" for i in range(10) for j in range(10) for k in range(10)], links=1)
    calls = []
    listed = storage.list_prefixes
    monkeypatch.setattr(storage, "list_prefixes", lambda prefix, *a: calls.append(prefix) or listed(prefix, *a))
    ranges = listing_ranges(storage, WHOLE, 64, 4)
    assert len(calls) <= cuts.MAX_REQUESTS and len(calls) == 11
    assert len(ranges) == 64
