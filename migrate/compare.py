"""Content equality for same-size objects, shared by sync (decide to upload) and verify (report)."""

from __future__ import annotations

import hashlib

from migrate.storage.base import Entry, Storage


def content_matches(source: Storage, destination: Storage, path: str, dst: Entry) -> tuple[bool, bytes, str]:
    """Read the source once; compare its MD5 with the listed one, or the bytes when none was listed
    (a service whose listed MD5s are not content MD5s, such as S3 with SSE-KMS, lists none).

    Returns the verdict, the source bytes and their MD5, so a caller that must upload need not
    read again, and one that found them equal knows the MD5 the destination holds.
    """
    data = source.read(path)
    md5 = hashlib.md5(data).hexdigest()
    if dst.md5 is not None:
        return md5 == dst.md5, data, md5
    return destination.read(path) == data, data, md5
