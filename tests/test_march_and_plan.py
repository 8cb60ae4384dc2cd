"""The merge-join and the decision rules, as pure functions on plain lists."""

from __future__ import annotations

import pytest

from migrate.errors import ListingOutOfOrder
from migrate.march import march
from migrate.plan import Action, Reason, decide
from migrate.storage.base import Entry

BLOB = "docker/registry/v2/blobs/sha256/aa/" + "a" * 64 + "/data"
LINK = "docker/registry/v2/repositories/app/_manifests/tags/latest/current/link"


def test_march_pairs_every_path_once_in_order() -> None:
    src = [Entry("a", 1), Entry("a-b", 1), Entry("a/x", 1), Entry("c", 1)]
    dst = [Entry("a-b", 2), Entry("b", 1), Entry("c", 1)]
    pairs = [(p, s is not None, d is not None) for p, s, d in march(src, dst)]
    assert pairs == [("a", True, False), ("a-b", True, True), ("a/x", True, False), ("b", False, True),
                     ("c", True, True)]


@pytest.mark.parametrize("side", ["source", "destination"])
def test_march_refuses_out_of_order_input(side: str) -> None:
    bad = [Entry("a/x", 1), Entry("a-b", 1)]  # '/' sorted before '-': a walker bug
    src, dst = (bad, []) if side == "source" else ([], bad)
    with pytest.raises(ListingOutOfOrder, match=side):
        list(march(src, dst))


def test_march_refuses_duplicates() -> None:
    with pytest.raises(ListingOutOfOrder):
        list(march([Entry("a", 1), Entry("a", 1)], []))


@pytest.mark.parametrize(
    ("path", "src", "dst", "expected"),
    [
        (LINK, Entry(LINK, 71), None, (Action.UPLOAD, Reason.MISSING)),
        (LINK, Entry(LINK, 71), Entry(LINK, 72, "x"), (Action.UPLOAD, Reason.SIZE)),
        # Same size link: content must be compared, because every link is 71 bytes.
        (LINK, Entry(LINK, 71), Entry(LINK, 71, "abc"), (Action.CHECK, Reason.SAME)),
        (LINK, Entry(LINK, 71, "abc"), Entry(LINK, 71, "abc"), (Action.SKIP, Reason.SAME)),
        (LINK, Entry(LINK, 71, "abc"), Entry(LINK, 71, "abd"), (Action.UPLOAD, Reason.CONTENT)),
        # A stamp recorded with the MD5 it vouches for: the file has not been written since.
        (LINK, Entry(LINK, 71, stamp="1:2:3:4"), Entry(LINK, 71, "abc", stamp="1:2:3:4"), (Action.SKIP, Reason.SAME)),
        (LINK, Entry(LINK, 71, stamp="1:2:3:5"), Entry(LINK, 71, "abc", stamp="1:2:3:4"), (Action.CHECK, Reason.SAME)),
        (LINK, Entry(LINK, 71), Entry(LINK, 71, "abc", stamp="1:2:3:4"), (Action.CHECK, Reason.SAME)),
        (LINK, Entry(LINK, 71, stamp="1:2:3:4"), Entry(LINK, 71, None, stamp="1:2:3:4"), (Action.CHECK, Reason.SAME)),
        (LINK, Entry(LINK, 72, stamp="1:2:3:4"), Entry(LINK, 71, "abc", stamp="1:2:3:4"), (Action.UPLOAD, Reason.SIZE)),
        # Blob data is named by its digest: equal size is enough.
        (BLOB, Entry(BLOB, 10), Entry(BLOB, 10, "zzz"), (Action.SKIP, Reason.SAME)),
        (BLOB, Entry(BLOB, 10), Entry(BLOB, 11), (Action.UPLOAD, Reason.SIZE)),
        (LINK, None, Entry(LINK, 71), (Action.DELETE, Reason.EXTRA)),
        ("backup/notes.txt", None, Entry("backup/notes.txt", 5), (Action.KEEP, Reason.FOREIGN)),
        ("scheduler-state.json", None, Entry("scheduler-state.json", 5), (Action.DELETE, Reason.EXTRA)),
    ],
)
def test_decide(path: str, src: Entry | None, dst: Entry | None, expected: tuple[Action, Reason]) -> None:
    assert decide(path, src, dst) == expected
