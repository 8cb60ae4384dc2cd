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


def _apply(options: list[Callable[[Callable[..., Any]], Callable[..., Any]]]) -> Callable[..., Any]:
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


from_config_option = click.option(
    "--from-config", type=click.Path(exists=True, dir_okay=False),
    help="Source from a registry config.yml or GitLab gitlab.rb (its storage section).")
to_config_option = click.option(
    "--to-config", type=click.Path(exists=True, dir_okay=False),
    help="Destination from a registry config.yml or GitLab gitlab.rb.")

connection_options = _apply([
    click.option("--endpoint-url", help="S3 endpoint (the registry's regionendpoint); AWS_ENDPOINT_URL_S3 works too."),
    click.option("--region", help="S3 region (the registry's region)."),
    click.option("--profile", help="AWS named profile (~/.aws/config, ~/.aws/credentials) for S3; AWS_PROFILE works too."),
    click.option("--path-style", is_flag=True, help="Path-style S3 addressing (the registry's forcepathstyle)."),
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
])
"""Where a location is and how to reach it: every command that opens one."""

write_options = _apply([
    click.option("--sse", type=click.Choice(["AES256", "aws:kms"]), help="Server-side encryption (encrypt: true)."),
    click.option("--sse-kms-key-id", help="KMS key for --sse aws:kms (the registry's keyid)."),
    click.option("--storage-class", help="S3 storage class (the registry's storageclass)."),
])
"""How objects are written: sync, and the probe writes of plan and doctor (a bucket policy may
refuse writes without the encryption it requires)."""

chunk_size_option = click.option("--chunk-size", default="10MiB", show_default=True,
                                 help="Multipart chunk size (chunksize).")

request_options = _apply([
    click.option("--workers", default=64, show_default=True, type=click.IntRange(1, 1024), help="Requests in flight."),
    click.option("--retries", default=8, show_default=True, type=click.IntRange(1, 50),
                 help="Attempts per request before an object counts as failed (backoff between them)."),
    click.option("--max-requests-per-second", default=0.0, type=click.FloatRange(0),
                 help="Cap on requests per second, retries included (maxrequestspersecond); 0 = no cap."),
])
"""How hard a command that sends many requests may press the service."""


delete_guard_options = _apply([
    click.option("--max-delete", default=1000, show_default=True, type=click.IntRange(-1),
                 help="Refuse to delete more than this many objects (all shards of the pass together); -1 lifts "
                      "the limit."),
    click.option("--allow-object-source-delete", is_flag=True,
                 help="Allow --delete when SOURCE is an object store and DESTINATION already holds a registry."),
    click.option("--allow-unrelated-source", is_flag=True,
                 help="Allow --delete when fewer than half of the blobs sampled in DESTINATION exist in SOURCE."),
    click.option("--break-lock", is_flag=True,
                 help="Take DESTINATION's lease even if another regmig seems to hold it (only when that run is "
                      "dead)."),
])
"""The guards on a pass's deletes, wherever the pass concludes (sync, gather)."""

scale_options = _apply([
    click.option("--processes", type=click.IntRange(1, 256), default=None, metavar="N",
                 help="Run the shards in N worker processes on this machine (one report, deletes only after "
                      "every shard ended clean). Default: 1."),
    click.option("--shards", "shard_count", type=click.IntRange(1, 4096), default=None, metavar="N",
                 help="Cut the key space into N shards (default: 4 per process or Dask worker thread). Keep it "
                      "the same across passes so each shard's --state record is found."),
    click.option("--dask", "dask_address", metavar="ADDRESS",
                 help="Run the shards as tasks on this dask.distributed scheduler (tcp://HOST:PORT); needs "
                      "`pip install 'regmig[dask]'` and a source every worker can read."),
])
"""How a command's shards run: here, in worker processes, or on a Dask cluster (sync, verify, plan)."""

shard_job_options = _apply([
    click.option("--shard", "shard_spec", metavar="I/N",
                 help="Run only shard I of N (from 0), or auto/N inside an array job (JOB_COMPLETION_INDEX, "
                      "AWS_BATCH_JOB_ARRAY_INDEX, SLURM_ARRAY_TASK_ID); its result goes to --results, and "
                      "`regmig gather` concludes the pass. Never deletes."),
    click.option("--results", "results_location", metavar="LOCATION",
                 help="With --shard: where each shard records its result (a directory on shared storage, or "
                      "s3://, gs://, azure:// outside the registry's docker/ tree)."),
])
"""A shard of an array job (sync)."""


def follow_symlinks_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """For the commands that walk a directory tree (sync, verify, plan)."""
    return click.option(
        "--follow-symlinks", is_flag=True,
        help="Walk through symbolic links in a directory tree (registry data moved to another disk): "
             "keys are named by the path under the root; loops, dangling links and links back into the "
             "tree are reported.")(command)


REPORT_FORMATS = {".json": "json", ".html": "html", ".htm": "html", ".md": "md"}


def report_format(path: str) -> str:
    """The format a --report / --output file is written in, by its suffix."""
    for suffix, name in REPORT_FORMATS.items():
        if path.lower().endswith(suffix):
            return name
    raise click.BadParameter(f"{path!r}: name it .json, .html or .md (the format to write)")


def report_paths(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Checks each --report / --output name before the run starts (a usage error, exit 2)."""
    for path in (value,) if isinstance(value, str) else value:
        report_format(path)
    return value


_report_option = click.option(
    "--report", "reports", multiple=True, metavar="FILE", type=click.Path(dir_okay=False), callback=report_paths,
    help="Also write the report to FILE: .json (as --json), .html or .md (a page for the change ticket). Repeatable.")
_json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout instead of text.")
_log_options = [
    click.option("--log-file", type=click.Path(dir_okay=False),
                 help="Log file (rotated, kept across runs and processes): each run's command line, progress, "
                      "every object written or deleted, and how the run ended."),
    click.option("-v", "--verbose", count=True, help="Also show the log on stderr (-vv: debug detail)."),
]

output_options = _apply([_json_option, _report_option, *_log_options])
"""For commands that end quickly (doctor)."""

long_run_options = _apply([
    _json_option, _report_option, *_log_options,
    click.option("-P", "--progress/--no-progress", default=None,
                 help="Show progress on stderr: live on a terminal, else a line every --progress-interval "
                      "(default: on; --no-progress for none)."),
    click.option("--progress-interval", default=30.0, show_default=True, type=click.FloatRange(1),
                 metavar="SECONDS", help="Seconds between progress lines where stderr is not a terminal, and in "
                                         "the log."),
])
"""For commands that may run for hours (sync, verify, plan, nameless-tags)."""


_DEFAULTS: dict[str, Any] = {"chunk_size": "10MiB", "workers": 64, "retries": 8, "max_requests_per_second": 0.0,
                             "azure_realm": "core.windows.net", "azure_root_prefix": "trimmed"}
"""What an option a command does not take stands for (the same as the option's default)."""


def _get(kw: dict[str, Any], name: str) -> Any:
    return kw.get(name, _DEFAULTS.get(name))


def location_options(kw: dict[str, Any]) -> LocationOptions:
    """Options for a location named on the command line (defaults for the options the command lacks)."""
    chunk = parse_size(_get(kw, "chunk_size"))
    if chunk < 5 * 1024 * 1024:
        raise BadInput("--chunk-size must be at least 5 MiB (the S3 minimum part size)")
    return LocationOptions(
        s3=S3Options(
            endpoint_url=_get(kw, "endpoint_url"),
            region=_get(kw, "region"),
            path_style=bool(_get(kw, "path_style")),
            sse=_get(kw, "sse"),
            sse_kms_key_id=_get(kw, "sse_kms_key_id"),
            storage_class=_get(kw, "storage_class"),
            profile=_get(kw, "profile"),
        ),
        azure=AzureOptions(
            account_url=_get(kw, "azure_account_url"),
            account_name=_get(kw, "azure_account_name"),
            account_key=_get(kw, "azure_account_key"),
            realm=_get(kw, "azure_realm"),
            root_prefix=_get(kw, "azure_root_prefix"),
        ),
        gcs=GCSOptions(keyfile=_get(kw, "gcs_keyfile")),
        filesystem=FilesystemOptions(follow_symlinks=bool(_get(kw, "follow_symlinks"))),
        transfer=TransferSettings(
            chunk_size=chunk, workers=_get(kw, "workers"), max_requests_per_second=_get(kw, "max_requests_per_second"),
            max_attempts=_get(kw, "retries"),
        ),
    )


# Which LocationOptions field each explicitly given flag overrides on a config-file side.
_FLAG_FIELDS = {
    "endpoint_url": ("s3", "endpoint_url"), "region": ("s3", "region"), "path_style": ("s3", "path_style"),
    "profile": ("s3", "profile"),
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
    resolved: dict[str, Side] = {}
    remaining = list(positional)
    wanted = [role for role in roles if not configs.get(role)]
    skip = len(wanted) - len(remaining)
    if skip < 0 or skip > len([r for r in wanted if r in optional]):
        names = " ".join(role.upper() for role in roles)
        flags = " / ".join(flag for role, flag in (("source", "--from-config"), ("destination", "--to-config"))
                           if role in roles)
        raise BadInput(f"expected {names} (or {flags}), got {len(positional)} locations")
    for role in roles:
        config = configs.get(role)
        if config:
            resolved[role] = Side(*from_config(config, kw))
        elif role in optional and skip > 0:
            skip -= 1
        else:
            resolved[role] = Side(remaining.pop(0), location_options(kw))
    return resolved
