"""Command-line options shared by the commands, and how locations are resolved from them.

A side's location comes from a positional argument or from a registry config file
(``--from-config`` for the source, ``--to-config`` for the destination); values from the file
replace the option defaults, and options given explicitly on the command line win over both.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple

import click
from click.core import ParameterSource

from migrate.errors import BadInput
from migrate.storage import LocationOptions, TransferSettings
from migrate.storage.options import AzureOptions, FilesystemOptions, GCSOptions, S3Options

if TYPE_CHECKING:  # read only with --from-config / --to-config (YAML parsing is imported then)
    from migrate.config import registry as registry_config

_SIZE = re.compile(r"(?i)^\s*(\d+)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*$")
_UNITS = {None: 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1024**2, "mb": 1000**2, "mib": 1024**2,
          "g": 1024**3, "gb": 1000**3, "gib": 1024**3}


def parse_size(value: str) -> int:
    match = _SIZE.match(value)
    if not match:
        raise click.BadParameter(f"{value!r} is not a size (bytes, or with KiB/MiB/GiB)")
    return int(match.group(1)) * _UNITS[match.group(2).lower() if match.group(2) else None]


def storage_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Options every command that opens a location shares (the registry driver's settings)."""
    options = [
        click.option("--from-config", type=click.Path(exists=True, dir_okay=False),
                     help="Source from a registry config.yml or GitLab gitlab.rb (its storage section)."),
        click.option("--to-config", type=click.Path(exists=True, dir_okay=False),
                     help="Destination from a registry config.yml or GitLab gitlab.rb."),
        click.option("--endpoint-url", help="S3 endpoint (the registry's regionendpoint); AWS_ENDPOINT_URL_S3 works too."),
        click.option("--region", help="S3 region (the registry's region)."),
        click.option("--path-style", is_flag=True, help="Path-style S3 addressing (the registry's forcepathstyle)."),
        click.option("--sse", type=click.Choice(["AES256", "aws:kms"]), help="Server-side encryption (encrypt: true)."),
        click.option("--sse-kms-key-id", help="KMS key for --sse aws:kms (the registry's keyid)."),
        click.option("--storage-class", help="S3 storage class (the registry's storageclass)."),
        click.option("--azure-account-url", help="Azure Blob endpoint, e.g. https://ACCOUNT.blob.core.windows.net."),
        click.option("--azure-account-name", help="Azure storage account (the registry's accountname)."),
        click.option("--azure-account-key", envvar="AZURE_STORAGE_KEY",
                     help="Azure account key (accountkey); AZURE_STORAGE_KEY or AZURE_STORAGE_CONNECTION_STRING work too."),
        click.option("--azure-realm", default="core.windows.net", show_default=True,
                     help="Azure cloud domain (realm), e.g. core.usgovcloudapi.net."),
        click.option("--azure-root-prefix", type=click.Choice(["trimmed", "legacy"]), default="trimmed",
                     show_default=True,
                     help="Blob names without (trimlegacyrootprefix: true) or with a leading '/' (legacyrootprefix: true)."),
        click.option("--gcs-keyfile", type=click.Path(dir_okay=False),
                     help="GCS service-account key file (the registry's keyfile); default: application credentials."),
        click.option("--chunk-size", default="10MiB", show_default=True, help="Multipart chunk size (chunksize)."),
        click.option("--workers", default=64, show_default=True, type=click.IntRange(1, 1024),
                     help="Requests in flight."),
        click.option("--retries", default=8, show_default=True, type=click.IntRange(1, 50),
                     help="Attempts per request before an object counts as failed (backoff between them)."),
        click.option("--max-requests-per-second", default=0.0, type=click.FloatRange(0),
                     help="Cap on requests per second, retries included (maxrequestspersecond); 0 = no cap."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def follow_symlinks_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """For the commands that walk a directory tree (sync, verify, plan)."""
    return click.option(
        "--follow-symlinks", is_flag=True,
        help="Walk through symbolic links in a directory tree (registry data moved to another disk): "
             "keys are named by the path under the root; loops, dangling links and links back into the "
             "tree are reported.")(command)


def output_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout instead of text."),
        click.option("--log-file", type=click.Path(dir_okay=False), help="Rotating log file, safe across processes."),
        click.option("--progress/--no-progress", default=None, help="Progress line on stderr (default: on a terminal)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def location_options(kw: dict[str, Any]) -> LocationOptions:
    """Options for a location named on the command line."""
    chunk = parse_size(kw["chunk_size"])
    if chunk < 5 * 1024 * 1024:
        raise BadInput("--chunk-size must be at least 5 MiB (the S3 minimum part size)")
    return LocationOptions(
        s3=S3Options(
            endpoint_url=kw["endpoint_url"],
            region=kw["region"],
            path_style=kw["path_style"],
            sse=kw["sse"],
            sse_kms_key_id=kw["sse_kms_key_id"],
            storage_class=kw["storage_class"],
        ),
        azure=AzureOptions(
            account_url=kw["azure_account_url"],
            account_name=kw["azure_account_name"],
            account_key=kw["azure_account_key"],
            realm=kw["azure_realm"],
            root_prefix=kw["azure_root_prefix"],
        ),
        gcs=GCSOptions(keyfile=kw["gcs_keyfile"]),
        filesystem=FilesystemOptions(follow_symlinks=kw.get("follow_symlinks", False)),
        transfer=TransferSettings(
            chunk_size=chunk, workers=kw["workers"], max_requests_per_second=kw["max_requests_per_second"],
            max_attempts=kw["retries"],
        ),
    )


# Which LocationOptions field each explicitly given flag overrides on a config-file side.
_FLAG_FIELDS = {
    "endpoint_url": ("s3", "endpoint_url"), "region": ("s3", "region"), "path_style": ("s3", "path_style"),
    "sse": ("s3", "sse"), "sse_kms_key_id": ("s3", "sse_kms_key_id"), "storage_class": ("s3", "storage_class"),
    "azure_account_url": ("azure", "account_url"), "azure_account_name": ("azure", "account_name"),
    "azure_account_key": ("azure", "account_key"), "azure_realm": ("azure", "realm"),
    "azure_root_prefix": ("azure", "root_prefix"), "gcs_keyfile": ("gcs", "keyfile"),
    "workers": ("transfer", "workers"), "max_requests_per_second": ("transfer", "max_requests_per_second"),
    "chunk_size": ("transfer", "chunk_size"), "retries": ("transfer", "max_attempts"),
    "follow_symlinks": ("filesystem", "follow_symlinks"),
}


def _explicit(name: str) -> bool:
    context = click.get_current_context(silent=True)
    source = context.get_parameter_source(name) if context else None
    return source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def from_config(path: str, kw: dict[str, Any]) -> tuple[str, LocationOptions, registry_config.RegistryStorage]:
    """A location read from a registry config file, with explicit flags applied on top."""
    from migrate.config import registry as registry_config

    storage = registry_config.load(path)
    url, options = registry_config.to_location(storage, location_options(kw))
    for flag, (group, attribute) in _FLAG_FIELDS.items():
        if _explicit(flag):
            value = parse_size(kw[flag]) if flag == "chunk_size" else kw[flag]
            options = replace(options, **{group: replace(getattr(options, group), **{attribute: value})})
    return url, options, storage


class Side(NamedTuple):
    """One resolved location; ``config`` is the registry config it came from, if any."""

    url: str
    options: LocationOptions
    config: registry_config.RegistryStorage | None = None


def resolve_locations(kw: dict[str, Any], positional: tuple[str, ...], roles: tuple[str, ...],
                      optional: tuple[str, ...] = ()) -> dict[str, Side]:
    """Match positional arguments and --from-config / --to-config to the command's roles.

    ``roles`` are in positional order ("source", "destination"); a role in ``optional`` may be
    left out, in which case the command works on the others alone.
    """
    configs = {"source": kw.get("from_config"), "destination": kw.get("to_config")}
    for role, config in configs.items():
        if config and role not in roles:
            raise BadInput(f"{'--from-config' if role == 'source' else '--to-config'} does not apply to this command")
    resolved: dict[str, Side] = {}
    remaining = list(positional)
    wanted = [role for role in roles if not configs.get(role)]
    skip = len(wanted) - len(remaining)
    if skip < 0 or skip > len([r for r in wanted if r in optional]):
        names = " ".join(role.upper() for role in roles)
        raise BadInput(f"expected {names} (or --from-config / --to-config), got {len(positional)} locations")
    for role in roles:
        config = configs.get(role)
        if config:
            resolved[role] = Side(*from_config(config, kw))
        elif role in optional and skip > 0:
            skip -= 1
        else:
            resolved[role] = Side(remaining.pop(0), location_options(kw))
    return resolved
