"""Where a bucket's registries live: the check behind "did you mean s3://bucket/registry?".

A root that holds no registry data is most often a mistyped rootdirectory. Finding the right one
must not list the bucket (ten million keys): from the top of the bucket, container or directory,
one delimiter listing per prefix, breadth first, a few levels down and a few dozen requests in
all, looking for prefixes that hold ``docker/registry/v2/``. Its cost does not grow with the keys.
"""

from __future__ import annotations

from dataclasses import dataclass

from migrate import tree
from migrate.storage.base import Storage

MAX_DEPTH = 5
"""Levels listed below the top: a rootdirectory of four components, plus Azure's legacy '/'."""
MAX_REQUESTS = 40
"""Delimiter listings and probes together; a bucket with more prefixes than this is searched in part."""
MAX_FOUND = 3
PAGE = 1000


@dataclass(frozen=True, slots=True)
class OtherRoot:
    """A root of the same bucket holding registry data, and the key layout it was written in."""

    url: str
    driver: tree.Driver


def holds_registry_data(storage: Storage) -> bool:
    """Whether anything is under the root's ``docker/`` (one key is enough)."""
    return storage.has_entries("docker/")


def find_other_roots(storage: Storage) -> list[OtherRoot]:
    """Roots of the same bucket (or directory) other than ``storage``'s that hold registry data."""
    layouts = storage.key_layouts or (storage.driver,)
    found: list[OtherRoot] = []
    requests = 0
    level = [""]
    for _ in range(MAX_DEPTH + 1):
        below: list[str] = []
        for prefix in level:
            if requests >= MAX_REQUESTS or len(found) >= MAX_FOUND:
                return found[:MAX_FOUND]
            requests += 1
            for child in storage.list_prefixes(prefix, PAGE):
                if child != prefix + "docker/":
                    below.append(child)
                    continue
                requests += 1  # never descend into a registry's own tree: one probe says if it is one
                if storage.has_keys(prefix + tree.V2):
                    found += _roots_at(storage, prefix, layouts)
        level = below
    return found[:MAX_FOUND]


def _roots_at(storage: Storage, prefix: str, layouts: tuple[tree.Driver, ...]) -> list[OtherRoot]:
    roots = []
    for driver in layouts:
        root = tree.rootdirectory_for(driver, prefix)
        if root is not None and not (driver is storage.driver and prefix == storage.prefix):
            roots.append(OtherRoot(storage.location(root), driver))
    return roots
