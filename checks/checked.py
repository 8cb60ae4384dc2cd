"""What a proof went through, as the registry sees it: shared by ``verify`` and ``sync --verify``
(which must not pull in verify's deep check to count)."""

from __future__ import annotations

from migrate import tree


class Checked:
    """What the destination holds as the registry sees it, counted next to the object-count
    check: repositories (contiguous in walk order, so counted without a set), tags (current
    links), manifests (revision links), blobs and link files."""

    def __init__(self) -> None:
        self.counts = {"repositories": 0, "tags": 0, "manifests": 0, "blobs": 0, "links": 0}
        self._repository: str | None = None

    def see(self, path: str) -> None:
        info = tree.classify(path)
        if info.kind is tree.Kind.BLOB_DATA:
            self.counts["blobs"] += 1
        elif info.kind in tree.LINK_KINDS:
            self.counts["links"] += 1
            self.counts["tags"] += info.kind is tree.Kind.TAG_LINK
            self.counts["manifests"] += info.kind is tree.Kind.REVISION_LINK
        if info.repository and info.repository != self._repository:
            self._repository = info.repository
            self.counts["repositories"] += 1
