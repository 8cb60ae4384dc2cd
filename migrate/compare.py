"""Content equality for same-size objects, shared by sync (decide to upload) and verify (report)."""

from __future__ import annotations

import hashlib

from migrate.storage.base import Entry, Storage


def content_matches(source: Storage, destination: Storage, path: str, dst: Entry) -> tuple[bool, bytes]:
    """Read the source once; compare its MD5 with the listed one, or the bytes when none was listed.

    Returns the verdict and the source bytes, so a caller that must upload need not read again.
    """
    data = source.read(path)
    if dst.md5 is not None:
        return hashlib.md5(data).hexdigest() == dst.md5, data
    return destination.read(path) == data, data
