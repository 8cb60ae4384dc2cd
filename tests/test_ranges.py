"""Key ranges as backends use them: prefix bounds, the key just below another (S3's StartAfter),
and the prefix cover that lets Azure list a range without starting at the beginning."""

from __future__ import annotations

import os

from hypothesis import example, given, settings
from hypothesis import strategies as st

from migrate.storage.ranges import KeyRange, after_prefix, just_below, prefix_cover

# Few characters, so keys share prefixes and directories as a registry's do.
KEY = st.text(st.sampled_from("ab/-_\x00\U0010ffffé"), max_size=7)
ANY = st.text(st.characters(codec="utf-8"), max_size=6)


def children_of(keys: set[str]):  # type: ignore[no-untyped-def]
    """A delimiter listing over ``keys``, as a service answers it, counting the names it returns."""
    calls: list[str] = []

    def children(level: str) -> list[str]:
        calls.append(level)
        names = set()
        for key in keys:
            if key.startswith(level):
                rest = key[len(level):]
                names.add(level + rest.split("/", 1)[0] + "/" if "/" in rest else key)
        return sorted(names)
    return children, calls


@settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", 600)), deadline=None)
@given(st.sets(KEY, max_size=30), KEY, st.one_of(st.none(), KEY), st.sampled_from(["", "a", "a/", "ab/"]))
@example({"/", "aa"}, "///b", None, "")  # a key equal to the level it was listed from, ending in '/'
def test_a_prefix_cover_lists_the_range_and_nothing_before_it(keys: set[str], start: str, end: str | None,
                                                               base: str) -> None:
    if end is not None and end < start:
        start, end = end, start
    span = KeyRange(start, end)
    children, _ = children_of(keys)
    prefixes = list(prefix_cover(base, span, children))
    assert prefixes == sorted(prefixes)
    assert all(not b.startswith(a) for a, b in zip(prefixes, prefixes[1:]))  # disjoint: nothing listed twice
    listed = [key for prefix in prefixes for key in sorted(keys) if key.startswith(prefix)]
    wanted = sorted(key for key in keys if key.startswith(base) and span.contains(key))
    assert [key for key in listed if span.contains(key)] == wanted
    assert all(key >= start for key in listed)  # no key before the range is ever read
    assert listed == sorted(listed)  # read in order, so a reader stops at the end


def test_a_cover_follows_the_names_that_exist() -> None:
    blobs = {f"b/{h:02x}/{h:02x}{i}" for h in range(256) for i in range(2)}
    children, calls = children_of(blobs)
    prefixes = list(prefix_cover("b/", KeyRange("b/40", "b/80"), children))
    assert prefixes == ["b/4", "b/5", "b/6", "b/7"]
    assert calls == ["b/"]  # one delimiter listing


@settings(max_examples=400, deadline=None)
@given(ANY, ANY)
def test_after_prefix_is_above_every_extension(prefix: str, rest: str) -> None:
    above = after_prefix(prefix)
    if above is None:
        assert prefix.strip("\U0010ffff") == ""
    else:
        assert prefix + rest < above and prefix < above
        assert not above.startswith(prefix)


@settings(max_examples=400, deadline=None)
@given(ANY.filter(bool), ANY)
def test_just_below_leaves_no_realistic_key_between(key: str, other: str) -> None:
    below = just_below(key)
    assert below < key
    if not other.startswith(below) and other < key:
        assert other < below  # anything between would have to extend ``below`` (with U+10FFFF)
    below.encode("utf-8")  # sendable


def test_under_a_prefix() -> None:
    assert KeyRange("b", "d").under("c") == KeyRange("c", "d")
    assert KeyRange("b", "d").under("e").empty
    assert KeyRange("b", None).under("a/") == KeyRange("b", "b").under("a/")
    assert KeyRange("", None).under("a/") == KeyRange("a/", "a0")
