"""The ``regmig`` command: options in, one core call, output rendered, errors mapped to exit codes."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click
from concurrent_log_handler import ConcurrentRotatingFileHandler

from checks import markers
from checks.semantics import DeepOptions
from checks.verify import VerifyOptions, verify
from checks.verify import verdict as verify_exit_code
from migrate import __version__, redact, render
from migrate.errors import BadInput, RegmigError
from migrate.progress import Progress
from migrate.report import Report
from migrate.storage import LocationOptions, Storage, TransferSettings, open_location
from migrate.storage.azure import AzureOptions
from migrate.storage.gcs import GCSOptions
from migrate.storage.s3 import S3Options
from migrate.sync import SyncOptions, sync

log = logging.getLogger("regmig")
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
        click.option("--max-requests-per-second", default=0.0, type=click.FloatRange(0),
                     help="Cap on requests per second, retries included (maxrequestspersecond); 0 = no cap."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


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
        transfer=TransferSettings(
            chunk_size=chunk, workers=kw["workers"], max_requests_per_second=kw["max_requests_per_second"]
        ),
    )


@contextlib.contextmanager
def logging_to(log_file: str | None) -> Iterator[None]:
    """Log to a rotating file for the duration of one command (records below WARNING are not even
    built without a file, which matters at millions of objects)."""
    logger = logging.getLogger("regmig")
    if not log_file:
        logger.setLevel(logging.WARNING)
        yield
        return
    handler = ConcurrentRotatingFileHandler(log_file, maxBytes=50 * 1024 * 1024, backupCount=5)
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s"))
    handler.addFilter(redact.RedactingFilter())
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()


def handles_errors(command: Callable[..., int]) -> Callable[..., None]:
    """One place that maps regmig errors to a one-line message and an exit code; no tracebacks."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            code = command(*args, **kwargs)
        except RegmigError as exc:
            log.error("%s", exc)
            click.echo(f"regmig: error: {redact.redact(str(exc))}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("regmig: interrupted; rerun the same command to continue", err=True)
            sys.exit(130)
        sys.exit(code)

    return wrapper


def emit(summary: dict[str, Any], as_json: bool, text: Callable[[dict[str, Any]], str]) -> None:
    if as_json:
        click.echo(redact.redact(json.dumps(summary, indent=2, sort_keys=True)))
    else:
        click.echo(redact.redact(text(summary)))


def show_progress(flag: bool | None) -> bool:
    return sys.stderr.isatty() if flag is None else flag


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="regmig")
def main() -> None:
    """Move a container registry's storage to object storage, prove the copy, repair nameless tags."""


@main.command("sync")
@click.argument("source")
@click.argument("destination")
@click.option("--delete", is_flag=True, help="Delete destination-only objects under the root, after a clean pass.")
@click.option("--max-delete", default=1000, show_default=True, type=click.IntRange(-1),
              help="Refuse to delete more than this many objects; -1 lifts the limit.")
@click.option("--dry-run", is_flag=True, help="Print the plan (counts and bytes per action); change nothing.")
@click.option("--include-uploads", is_flag=True, help="Also copy _uploads (unfinished uploads; normally skipped).")
@storage_options
@output_options
@handles_errors
def sync_command(source: str, destination: str, **kw: Any) -> int:
    """Copy the registry tree at SOURCE (the registry's rootdirectory) to DESTINATION.

    SOURCE is usually a directory holding docker/registry/v2; DESTINATION is s3://BUCKET[/ROOT],
    gs://BUCKET[/ROOT] or azure://CONTAINER[/ROOT]. Either side may be any of these (bucket to
    bucket, or back to a directory for a rollback). Blobs (named by digest) are compared by size,
    links and other files by content.
    """
    options = location_options(kw)
    report = Report()
    with logging_to(kw["log_file"]), open_location(source, options) as src, open_location(destination, options) as dst:
        log.info("sync %s -> %s (%s)", src.url, dst.url, dst.root_description)
        sync_options = SyncOptions(
            delete=kw["delete"],
            max_delete=kw["max_delete"],
            dry_run=kw["dry_run"],
            include_uploads=kw["include_uploads"],
            workers=kw["workers"],
        )
        if show_progress(kw["progress"]):
            with Progress(report):
                sync(src, dst, sync_options, report)
        else:
            sync(src, dst, sync_options, report)
        summary = sync_summary(src, dst, sync_options, report)
        log.info("sync finished with exit code %d: %s", summary["exit_code"], json.dumps(summary["outcomes"]))
    emit(summary, kw["as_json"], render.sync_text)
    return summary["exit_code"]


def sync_summary(src: Storage, dst: Storage, options: SyncOptions, report: Report) -> dict[str, Any]:
    data = report.to_dict()
    failed = report.count("failures") or report.count("problems") or report.delete_refusal
    return {
        "command": "sync",
        "source": src.url,
        "destination": dst.url,
        "destination_layout": dst.root_description,
        "dry_run": options.dry_run,
        "delete": options.delete,
        "exit_code": 1 if failed else 0,
        **data,
    }


@main.command("verify")
@click.argument("locations", nargs=-1, required=True, metavar="[SOURCE] DESTINATION")
@click.option("--deep", is_flag=True, help="Also check registry semantics: links, tags, manifests, blob digests.")
@click.option("--hash-limit", default="64MiB", show_default=True, help="With --deep, hash blobs up to this size.")
@click.option("--hash-all", is_flag=True, help="With --deep, hash every blob whatever its size.")
@click.option("--include-uploads", is_flag=True, help="Also compare _uploads (excluded by default, as in sync).")
@storage_options
@output_options
@handles_errors
def verify_command(locations: tuple[str, ...], **kw: Any) -> int:
    """Prove DESTINATION holds SOURCE exactly, and (--deep) that a registry can serve it.

    Prints the documented object-count check (excluding _uploads), then every object missing,
    extra, of another size or other content, and zero-byte markers. With one location, checks
    that location alone. Exit 0 only when consistent, 1 when anything was found.
    """
    if len(locations) > 2:
        raise BadInput("verify takes [SOURCE] DESTINATION")
    options = location_options(kw)
    deep = DeepOptions(hash_limit=None if kw["hash_all"] else parse_size(kw["hash_limit"]),
                       workers=options.transfer.workers) if kw["deep"] else None
    report = Report()
    with contextlib.ExitStack() as stack:
        stack.enter_context(logging_to(kw["log_file"]))
        stores = [stack.enter_context(open_location(location, options)) for location in locations]
        src, dst = (stores[0], stores[1]) if len(stores) == 2 else (None, stores[0])
        if show_progress(kw["progress"]):
            stack.enter_context(Progress(report))
        result = verify(src, dst, VerifyOptions(include_uploads=kw["include_uploads"], workers=options.transfer.workers,
                                                deep=deep), report)
    summary = {
        "command": "verify", "source": src.url if src else None, "destination": dst.url,
        "destination_layout": dst.root_description,
        "deep": None if not deep else ("every blob hashed" if deep.hash_limit is None
                                       else f"blobs up to {kw['hash_limit']} hashed"),
        **result, **report.to_dict(),
    }
    summary["exit_code"] = verify_exit_code(summary)
    emit(summary, kw["as_json"], render.verify_text)
    return summary["exit_code"]


@main.command("nameless-tags")
@click.argument("target")
@click.option("--fix", is_flag=True, help="Delete each zero-byte marker: one exact key at a time, never a prefix.")
@storage_options
@output_options
@handles_errors
def nameless_tags_command(target: str, **kw: Any) -> int:
    """Find the zero-byte keys ending in '/' that show up as tags with no name, and remove them.

    Without --fix only reports (exit 1 when any were found). With --fix, re-checks each key is
    still a zero-byte object right before deleting exactly that key (conditionally where the
    service supports it); objects with content are never touched. Exit 0 when clean afterwards.
    """
    options = location_options(kw)
    with logging_to(kw["log_file"]), open_location(target, options) as storage:
        summary = markers.scan(storage, fix=kw["fix"])
    for item in summary["markers"]:
        log.info("marker %s: %s (%s)", item["action"], item["path"], item["kind"])
    emit(summary, kw["as_json"], render.markers_text)
    return int(summary["exit_code"])
