"""Storage backends and the one function that turns a location string into one of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from migrate.errors import BadInput
from migrate.storage.base import Entry, Storage, TransferSettings
from migrate.storage.filesystem import FilesystemStorage
from migrate.storage.s3 import S3Options, S3Storage

__all__ = ["Entry", "Storage", "TransferSettings", "LocationOptions", "open_location", "FilesystemStorage"]


@dataclass(frozen=True)
class LocationOptions:
    """Per-service options from the command line; each backend reads its own part."""

    s3: S3Options = field(default_factory=S3Options)
    transfer: TransferSettings = field(default_factory=TransferSettings)


def open_location(location: str, options: LocationOptions | None = None) -> Storage:
    """``/path`` or ``file:///path`` -> filesystem; ``s3://BUCKET[/ROOTDIRECTORY]`` -> S3."""
    options = options or LocationOptions()
    if not location:
        raise BadInput("empty location")
    if "://" not in location:
        return FilesystemStorage(location)
    parts = urlsplit(location)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return FilesystemStorage(parts.path)
    if scheme == "s3":
        return S3Storage(parts.netloc, parts.path, options.s3, options.transfer)
    raise BadInput(f"unknown location scheme {parts.scheme!r} in {location!r}: use a path or s3://BUCKET[/ROOTDIRECTORY]")
