"""Each backend's settings, kept apart from the backends so that reading options never imports
a cloud SDK."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class S3Options:
    """The registry s3 driver's settings that matter to a copy."""

    endpoint_url: str | None = None
    region: str | None = None
    path_style: bool = False
    sse: str | None = None
    sse_kms_key_id: str | None = None
    storage_class: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    profile: str | None = None
    """An AWS named profile; None: the default chain (AWS_PROFILE, then the default profile)."""


ROOT_PREFIX_CONFIG = {
    "trimmed": "trimlegacyrootprefix: true",
    "legacy": "legacyrootprefix: true",
}
"""The azure driver's config line for each --azure-root-prefix."""


@dataclass(frozen=True, slots=True)
class FilesystemOptions:
    """How a directory tree is walked (--follow-symlinks: registry data moved to another disk)."""

    follow_symlinks: bool = False


@dataclass(frozen=True, slots=True)
class AzureOptions:
    """The registry azure driver's settings that matter to a copy."""

    account_url: str | None = None
    account_name: str | None = None
    account_key: str | None = None
    realm: str = "core.windows.net"
    root_prefix: str = "trimmed"


@dataclass(frozen=True, slots=True)
class GCSOptions:
    keyfile: str | None = None
    project: str | None = None
