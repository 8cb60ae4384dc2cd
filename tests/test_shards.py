"""Shards cover every key exactly once, in byte order, for any key set and count; they are a pure
function of the count (the same in every process); blobs split evenly; no repository is split."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrate import tree
from migrate.errors import BadInput
from migrate.shards import MAX_SHARDS, WHOLE, Shard, boundaries, boundary, partition, shard_of
from migrate.storage.ranges import KeyRange

HEX = st.binary(min_size=32, max_size=32).map(bytes.hex)
COMPONENT = st.from_regex(r"[a-z0-9]{1,6}([._-][a-z0-9]{1,4}){0,2}", fullmatch=True)
NAME = st.lists(COMPONENT, min_size=1, max_size=3).map("/".join)
TAG = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,8}", fullmatch=True)


@st.composite
def registry_path(draw: st.DrawFn) -> str:
    digest = draw(HEX)
    name = draw(NAME)
    return draw(st.sampled_from([
        f"{tree.BLOBS}sha256/{digest[:2]}/{digest}/data",
        f"{tree.BLOBS}sha512/{digest[:2]}/{digest}/data",
        f"{tree.REPOSITORIES}{name}/_layers/sha256/{digest}/link",
        f"{tree.REPOSITORIES}{name}/_manifests/revisions/sha256/{digest}/link",
        f"{tree.REPOSITORIES}{name}/_manifests/tags/{draw(TAG)}/current/link",
        f"{tree.REPOSITORIES}{name}/_uploads/{digest[:8]}/data",
        f"{tree.REPOSITORIES}{name}/",  # a nameless-tag marker
        f"{tree.LOCKFILES}database-in-use",
        tree.SCHEDULER_STATE,
        tree.REPOSITORIES,
    ]))


# Any Unicode a key can hold (no surrogates: they have no UTF-8), including NUL and U+10FFFF.
ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
EDGES = st.sampled_from(["", "\x00", "\U0010ffff", "docker", "docker/registry/v2/blobs/sha256/\U0010ffff", "\x7f",
                         "docker/registry/v2/repositories/\x00", "docker/registry/v2/blobs/sha256/40/"])


@st.composite
def keys_and_count(draw: st.DrawFn) -> tuple[list[str], int]:
    count = draw(st.integers(1, 64))
    cuts = boundaries(count)
    near_cut = st.sampled_from(cuts).flatmap(lambda cut: st.sampled_from(
        [cut, cut + "\x00", cut[:-1], cut + "/x", cut[:-1] + chr(ord(cut[-1]) - 1) + "\U0010ffff"])) if cuts else EDGES
    keys = draw(st.lists(st.one_of(registry_path(), ANY_TEXT, EDGES, near_cut, ANY_TEXT.map(lambda t: tree.V2 + t)),
                         max_size=60))
    return keys, count


def in_byte_order(keys: list[str]) -> list[str]:
    return sorted(set(keys), key=lambda key: key.encode("utf-8"))


@settings(max_examples=400, deadline=None)
@given(keys_and_count())
def test_shards_cover_every_key_exactly_once_in_byte_order(case: tuple[list[str], int]) -> None:
    keys, count = case
    shards = partition(count)
    assert [s.index for s in shards] == list(range(count)) and {s.count for s in shards} == {count}
    assert shards[0].start == "" and shards[-1].end is None
    assert all(a.end == b.start for a, b in zip(shards, shards[1:]))  # contiguous, no gap, no overlap
    ordered = in_byte_order(keys)
    for key in ordered:
        holders = [s for s in shards if s.contains(key)]
        assert holders == [shard_of(key, count)], key
    # Shard after shard, each in byte order, is the whole listing in byte order.
    assert [key for s in shards for key in ordered if s.contains(key)] == ordered


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 64), st.integers(1, 16), st.data())
def test_a_split_shard_is_its_own_range_cut_in_order(count: int, parts: int, data: st.DataObject) -> None:
    shard = data.draw(st.sampled_from(partition(count)))
    pieces = shard.split(parts)
    assert pieces[0].start == shard.start and pieces[-1].end == shard.end
    assert all(a.end == b.start and not a.empty for a, b in zip(pieces, pieces[1:]))
    assert len(pieces) == parts  # four hex digits and four name characters are fine enough for 1,024 parts
    # The same cuts as the finer partition: a thread's part of shard I/N is a shard of N*parts.
    finer = partition(count * parts)[shard.index * parts:(shard.index + 1) * parts]
    assert [(p.start, p.end) for p in pieces] == [(f.start, f.end) for f in finer]


def test_cuts_are_prefix_friendly_and_never_split_a_repository() -> None:
    for count in (2, 4, 8, 16, 64, 256):
        for cut in boundaries(count):
            if cut.startswith(tree.BLOBS):
                assert len(cut) == len(tree.BLOBS + "sha256/00"), cut  # powers of two cut at whole directories
    for count in range(1, 65):
        for cut in boundaries(count):
            if cut.startswith(tree.REPOSITORIES):
                assert "_" not in cut[len(tree.REPOSITORIES):]


@settings(max_examples=200, deadline=None)
@given(NAME, st.lists(st.sampled_from(["_layers/sha256/aa/link", "_manifests/tags/latest/current/link",
                                       "_manifests/revisions/sha256/bb/link", "_uploads/u/data", ""]), min_size=1),
       st.integers(1, 64))
def test_a_repository_lies_in_one_shard(name: str, suffixes: list[str], count: int) -> None:
    paths = [f"{tree.REPOSITORIES}{name}/{suffix}" for suffix in suffixes]
    assert len({shard_of(path, count).index for path in paths}) == 1


def test_blobs_split_evenly_by_digest() -> None:
    count = 8  # blobs get the first half of the shards
    digests = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(40_000)]
    per_shard = [0] * count
    for digest in digests:
        per_shard[shard_of(f"{tree.BLOBS}sha256/{digest[:2]}/{digest}/data", count).index] += 1
    assert per_shard[4:] == [0, 0, 0, 0]
    for share in per_shard[:4]:
        assert abs(share / len(digests) - 0.25) < 0.01, per_shard


def test_repositories_spread_by_how_names_start() -> None:
    """Common first letters get narrower ranges than rare ones: of 64 shards (32 for
    repositories), names starting with 's' (9% of names) span three, those starting with 'x'
    to 'z' (2.4% together) share at most two."""
    def shards_spanned(first: str, last: str) -> int:
        return shard_of(tree.REPOSITORIES + last, 64).index - shard_of(tree.REPOSITORIES + first, 64).index + 1
    assert shards_spanned("s", "sz") >= 3
    assert shards_spanned("x", "zz") <= 2


def test_the_partition_is_the_same_in_another_process() -> None:
    """Array-job tasks never talk to each other: each must compute the very same cuts."""
    script = "import json; from migrate.shards import boundaries; print(json.dumps([boundaries(n) for n in (3, 7, 64)]))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = json.loads(subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True,
                                      text=True).stdout)
    assert other == [list(boundaries(n)) for n in (3, 7, 64)]


def test_text_form_round_trips_and_auto_reads_the_array_index() -> None:
    for count in (1, 2, 8, 64):
        for shard in partition(count):
            assert Shard.parse(str(shard)) == shard
    assert str(partition(8)[2]) == "2/8"
    assert Shard.parse("auto/4", {"JOB_COMPLETION_INDEX": "3"}) == partition(4)[3]
    assert Shard.parse("auto/4", {"AWS_BATCH_JOB_ARRAY_INDEX": "0"}) == partition(4)[0]
    assert Shard.parse("auto/4", {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1"}) == partition(4)[3]
    assert WHOLE == partition(1)[0] and (WHOLE.start, WHOLE.end) == ("", None)


@pytest.mark.parametrize("text, message", [
    ("8/8", "not from 0 to 7"), ("-1/8", "write it as I/N"), ("2", "write it as I/N"), ("a/b", "write it as I/N"),
    ("0/0", "from 1 to"), (f"0/{MAX_SHARDS + 1}", "from 1 to"), ("auto/4", "none of JOB_COMPLETION_INDEX"),
])
def test_bad_shards_are_bad_input(text: str, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        Shard.parse(text, {})


def test_a_cut_is_the_work_before_it() -> None:
    assert boundary(Fraction(1, 2)) == tree.REPOSITORIES
    assert boundary(Fraction(1, 4)) == f"{tree.BLOBS}sha256/80"
    assert boundary(Fraction(1, 3)).startswith(f"{tree.BLOBS}sha256/aa/aaa")
    assert KeyRange("a", "b").contains("a") and not KeyRange("a", "b").contains("b")
