"""Storage backends and the one function that turns a location string into one of them."""

from __future__ import annotations

import importlib
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


_CLOUDS = {
    "s3": ("migrate.storage.s3", "S3Storage", "s3"),
    "gs": ("migrate.storage.gcs", "GCSStorage", "gcs"),
    "gcs": ("migrate.storage.gcs", "GCSStorage", "gcs"),
    "azure": ("migrate.storage.azure", "AzureStorage", "azure"),
}
"""Scheme: the backend's module, its class and its part of ``LocationOptions``. Each cloud SDK is
imported only when its scheme is used: they cost a second of start-up together."""


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
    if scheme not in _CLOUDS:
        raise BadInput(f"unknown location scheme {parts.scheme!r} in {location!r}: "
                       "use a path, s3://, gs:// or azure://")
    module, name, service = _CLOUDS[scheme]
    backend = getattr(importlib.import_module(module), name)
    return backend(parts.netloc, parts.path, getattr(options, service), options.transfer)  # type: ignore[no-any-return]


def backend_module(location: str) -> str:
    """The module that opens a location, for a process to import ahead (runners' fork server)."""
    scheme = urlsplit(location).scheme.lower() if "://" in location else ""
    return _CLOUDS[scheme][0] if scheme in _CLOUDS else FilesystemStorage.__module__
