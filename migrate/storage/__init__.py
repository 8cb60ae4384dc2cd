"""Storage backends and the one function that turns a location string into one of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from migrate.errors import BadInput
from migrate.storage.base import Entry, Storage, TransferSettings
from migrate.storage.filesystem import FilesystemStorage
from migrate.storage.options import AzureOptions, FilesystemOptions, GCSOptions, S3Options

__all__ = ["Entry", "Storage", "TransferSettings", "LocationOptions", "open_location", "FilesystemStorage"]


@dataclass(frozen=True)
class LocationOptions:
    """Per-service options from the command line; each backend reads its own part."""

    s3: S3Options = field(default_factory=S3Options)
    azure: AzureOptions = field(default_factory=AzureOptions)
    gcs: GCSOptions = field(default_factory=GCSOptions)
    filesystem: FilesystemOptions = field(default_factory=FilesystemOptions)
    transfer: TransferSettings = field(default_factory=TransferSettings)


def open_location(location: str, options: LocationOptions | None = None) -> Storage:
    """A path or ``file:///path``, ``s3://BUCKET[/ROOTDIRECTORY]``, ``gs://BUCKET[/ROOTDIRECTORY]``,
    ``azure://CONTAINER[/ROOTDIRECTORY]``."""
    options = options or LocationOptions()
    if not location:
        raise BadInput("empty location")
    if "://" not in location:
        return FilesystemStorage(location, options.filesystem.follow_symlinks)
    parts = urlsplit(location)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return FilesystemStorage(parts.path, options.filesystem.follow_symlinks)
    if "@" in parts.netloc:
        raise BadInput("credentials do not belong in a location URL: use the options or the environment")
    # Each cloud SDK is imported only when its scheme is used: they cost a second of start-up together.
    if scheme == "s3":
        from migrate.storage.s3 import S3Storage

        return S3Storage(parts.netloc, parts.path, options.s3, options.transfer)
    if scheme in ("gs", "gcs"):
        from migrate.storage.gcs import GCSStorage

        return GCSStorage(parts.netloc, parts.path, options.gcs, options.transfer)
    if scheme == "azure":
        from migrate.storage.azure import AzureStorage

        return AzureStorage(parts.netloc, parts.path, options.azure, options.transfer)
    raise BadInput(f"unknown location scheme {parts.scheme!r} in {location!r}: use a path, s3://, gs:// or azure://")
