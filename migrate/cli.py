"""The ``regmig`` command: options in, one core call, output rendered, errors mapped to exit codes.

Each command imports its own implementation when it runs: the final ``sync`` pass runs in the
read-only window, and the verifier's, planner's and log handler's imports were a tenth of a
second of it (bench/, delta phase).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click

from migrate import __version__, redact, render
from migrate.errors import RegmigError
from migrate.progress import Progress
from migrate.report import Report
from migrate.cli_options import follow_symlinks_option, output_options, parse_size, resolve_locations, storage_options
from migrate.storage import Storage, open_location
from migrate.sync import SyncOptions, sync

log = logging.getLogger("regmig")
@contextlib.contextmanager
def logging_to(log_file: str | None) -> Iterator[None]:
    """Log to a rotating file for the duration of one command (records below WARNING are not even
    built without a file, which matters at millions of objects)."""
    logger = logging.getLogger("regmig")
    if not log_file:
        logger.setLevel(logging.WARNING)
        yield
        return
    from concurrent_log_handler import ConcurrentRotatingFileHandler

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
        except Exception as exc:  # a bug of ours: still one line for the operator, the traceback in the log
            log.exception("internal error")
            click.echo(f"regmig: internal error: {redact.redact(f'{type(exc).__name__}: {exc}')}", err=True)
            sys.exit(1)
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
@click.argument("locations", nargs=-1, metavar="SOURCE DESTINATION")
@click.option("--delete", is_flag=True, help="Delete destination-only objects under the root, after a clean pass.")
@click.option("--max-delete", default=1000, show_default=True, type=click.IntRange(-1),
              help="Refuse to delete more than this many objects; -1 lifts the limit.")
@click.option("--dry-run", is_flag=True, help="Print the plan (counts and bytes per action); change nothing.")
@click.option("--include-uploads", is_flag=True, help="Also copy _uploads (unfinished uploads; normally skipped).")
@click.option("--allow-object-source-delete", is_flag=True,
              help="Allow --delete when SOURCE is an object store and DESTINATION already holds a registry.")
@click.option("--allow-unrelated-source", is_flag=True,
              help="Allow --delete when fewer than half of the blobs sampled in DESTINATION exist in SOURCE.")
@click.option("--into-populated-directory", is_flag=True,
              help="Allow a DESTINATION directory that already holds a registry (a rollback onto the old root).")
@follow_symlinks_option
@click.option("--state", "state_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="Record what DESTINATION holds after a clean pass; the next pass reads FILE instead of "
                   "listing DESTINATION (a short final pass). Only regmig may write DESTINATION in between.")
@storage_options
@output_options
@handles_errors
def sync_command(locations: tuple[str, ...], **kw: Any) -> int:
    """Copy the registry tree at SOURCE (the registry's rootdirectory) to DESTINATION.

    SOURCE is usually a directory holding docker/registry/v2; DESTINATION is s3://BUCKET[/ROOT],
    gs://BUCKET[/ROOT] or azure://CONTAINER[/ROOT]. Either side may be any of these (bucket to
    bucket, or back to a directory for a rollback). Blobs (named by digest) are compared by size,
    links and other files by content.
    """
    sides = resolve_locations(kw, locations, ("source", "destination"))
    report = Report()
    source, destination = sides["source"], sides["destination"]
    with (logging_to(kw["log_file"]), open_location(source.url, source.options) as src,
          open_location(destination.url, destination.options) as dst):
        log.info("sync %s -> %s (%s)", src.url, dst.url, dst.root_description)
        sync_options = SyncOptions(
            delete=kw["delete"],
            max_delete=kw["max_delete"],
            dry_run=kw["dry_run"],
            include_uploads=kw["include_uploads"],
            allow_object_source_delete=kw["allow_object_source_delete"],
            allow_unrelated_source=kw["allow_unrelated_source"],
            into_populated_directory=kw["into_populated_directory"],
            workers=kw["workers"],
            state_path=kw["state_path"],
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
@click.argument("locations", nargs=-1, metavar="[SOURCE] DESTINATION")
@click.option("--deep", is_flag=True, help="Also check registry semantics: links, tags, manifests, blob digests.")
@click.option("--hash-limit", default="64MiB", show_default=True, help="With --deep, hash blobs up to this size.")
@click.option("--hash-all", is_flag=True, help="With --deep, hash every blob whatever its size.")
@click.option("--include-uploads", is_flag=True, help="Also compare _uploads (excluded by default, as in sync).")
@click.option("--cutover-time", metavar="TIME",
              help="The registry has served from DESTINATION read-write since TIME (ISO 8601 UTC, e.g. "
                   "2026-11-22T07:00:00Z): objects written since are its own, older ones must match SOURCE.")
@click.option("--strict", is_flag=True,
              help="With --cutover-time, fail (exit 1) on links gone since that no delete marker explains.")
@follow_symlinks_option
@storage_options
@output_options
@handles_errors
def verify_command(locations: tuple[str, ...], **kw: Any) -> int:
    """Prove DESTINATION holds SOURCE exactly, and (--deep) that a registry can serve it.

    Prints the documented object-count check (excluding _uploads), then every object missing,
    extra, of another size or other content, and zero-byte markers. With one location, checks
    that location alone. With --cutover-time, proves the copy after the registry was switched
    over to DESTINATION (see runbooks/verification.md). Exit 0 only when consistent, 1 when
    anything was found.
    """
    from checks.semantics import DeepOptions
    from checks.verify import VerifyOptions, parse_cutover_time, verdict, verify
    from migrate.errors import BadInput

    if kw["strict"] and kw["cutover_time"] is None:
        raise BadInput("--strict needs --cutover-time")
    cutover = parse_cutover_time(kw["cutover_time"]) if kw["cutover_time"] is not None else None

    sides = resolve_locations(kw, locations, ("source", "destination"), optional=("source",))
    deep = DeepOptions(hash_limit=None if kw["hash_all"] else parse_size(kw["hash_limit"]),
                       workers=kw["workers"]) if kw["deep"] else None
    report = Report()
    with contextlib.ExitStack() as stack:
        stack.enter_context(logging_to(kw["log_file"]))
        src = stack.enter_context(open_location(sides["source"].url, sides["source"].options)) if "source" in sides else None
        dst = stack.enter_context(open_location(sides["destination"].url, sides["destination"].options))
        if show_progress(kw["progress"]):
            stack.enter_context(Progress(report))
        result = verify(src, dst, VerifyOptions(include_uploads=kw["include_uploads"], workers=kw["workers"],
                                                deep=deep, cutover=cutover, strict=kw["strict"]), report)
    summary = {
        "command": "verify", "source": src.url if src else None, "destination": dst.url,
        "destination_layout": dst.root_description,
        "deep": None if not deep else ("every blob hashed" if deep.hash_limit is None
                                       else f"blobs up to {kw['hash_limit']} hashed"),
        **result, **report.to_dict(),
    }
    summary["exit_code"] = verdict(summary)
    emit(summary, kw["as_json"], render.verify_text)
    return summary["exit_code"]


@main.command("nameless-tags")
@click.argument("locations", nargs=-1, metavar="TARGET")
@click.option("--fix", is_flag=True, help="Delete each zero-byte marker: one exact key at a time, never a prefix.")
@storage_options
@output_options
@handles_errors
def nameless_tags_command(locations: tuple[str, ...], **kw: Any) -> int:
    """Find the zero-byte keys ending in '/' that show up as tags with no name, and remove them.

    Without --fix only reports (exit 1 when any were found). With --fix, re-checks each key is
    still a zero-byte object right before deleting exactly that key (conditionally where the
    service supports it); objects with content are never touched. Exit 0 when clean afterwards.
    """
    from checks import markers

    target = resolve_locations(kw, locations, ("destination",))["destination"]
    with logging_to(kw["log_file"]), open_location(target.url, target.options) as storage:
        summary = markers.scan(storage, fix=kw["fix"])
    for item in summary["markers"]:
        log.info("marker %s: %s (%s)", item["action"], item["path"], item["kind"])
    emit(summary, kw["as_json"], render.markers_text)
    return int(summary["exit_code"])


@main.command("plan")
@click.argument("locations", nargs=-1, metavar="SOURCE DESTINATION")
@click.option("--final", is_flag=True, help="This is the final pass: check the source registry is read-only.")
@click.option("--no-probe", is_flag=True, help="Do not write probe objects (no read-only window estimate).")
@click.option("--include-uploads", is_flag=True, help="Count _uploads as sync --include-uploads would.")
@click.option("--state", "state_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="Read DESTINATION from the sync --state FILE, as the final pass will (left unchanged).")
@follow_symlinks_option
@storage_options
@output_options
@handles_errors
def plan_command(locations: tuple[str, ...], **kw: Any) -> int:
    """What a sync --delete would do now, per area of the tree, and how long its read-only window takes.

    Lists both sides and compares content exactly as the final pass will (changing nothing), then
    times a few probe writes to the destination (removed again) to estimate the window.
    """
    from migrate.cutover import AreaReport, PlanOptions, plan

    sides = resolve_locations(kw, locations, ("source", "destination"))
    source_config = sides["source"].config
    readonly = source_config.readonly if source_config else None
    report = AreaReport()
    options = PlanOptions(workers=kw["workers"], include_uploads=kw["include_uploads"], probe=not kw["no_probe"],
                          final=kw["final"], source_readonly=readonly, state_path=kw["state_path"])
    with contextlib.ExitStack() as stack:
        stack.enter_context(logging_to(kw["log_file"]))
        src = stack.enter_context(open_location(sides["source"].url, sides["source"].options))
        dst = stack.enter_context(open_location(sides["destination"].url, sides["destination"].options))
        if show_progress(kw["progress"]):
            stack.enter_context(Progress(report))
        result = plan(src, dst, options, report)
    summary = {"command": "plan", "source": src.url, "destination": dst.url,
               "destination_layout": dst.root_description, **result, **report.to_dict()}
    summary["exit_code"] = 1 if report.count("failures") or report.count("problems") else 0
    emit(summary, kw["as_json"], render.plan_text)
    return summary["exit_code"]


@main.command("config-snippet")
@click.argument("locations", nargs=-1, metavar="DESTINATION")
@storage_options
@click.option("--driver", type=click.Choice(["s3", "s3_v2"]),
              help="S3 driver to write: s3 (Distribution's s3-aws; every registry) or s3_v2 (GitLab's registry "
                   "only, on aws-sdk-go-v2: beta from GitLab 17.10; from 19.0 s3 runs it too). Default: the "
                   "config file's S3 driver, else s3.")
@handles_errors
def config_snippet_command(locations: tuple[str, ...], **kw: Any) -> int:
    """Print the registry storage configuration that reads DESTINATION as regmig wrote it.

    Gives config.yml's storage section and gitlab.rb's registry['storage'] block, for the
    read-only cut-over and for afterwards. With the operator's own file (--to-config, the
    destination's config, or --from-config, the registry's current one) it prints that file
    again with only the storage driver's section and maintenance.readonly changed: redirect,
    delete, cache, notifications and every other setting stay as they are. The S3 endpoint
    and region are the ones regmig uses (flag, file, or AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL
    and the AWS config). Storage credentials are printed as placeholders, never values; the
    file's other settings (http.secret too) are printed as the file has them.
    """
    from migrate.config import registry as registry_config
    from migrate.config import snippet
    from migrate.errors import BadInput

    current_path = kw.pop("from_config")
    if current_path and kw["to_config"]:
        raise BadInput("config-snippet takes one registry config: --to-config (the destination's) "
                       "or --from-config (the registry's current one)")
    side = resolve_locations(kw, locations, ("destination",))["destination"]
    current = registry_config.load(current_path) if current_path else None
    click.echo(snippet.render(side.url, side.options, driver=kw["driver"], current=current, target=side.config),
               nl=False)
    return 0


@main.command("doctor")
@click.argument("locations", nargs=-1, metavar="DESTINATION")
@storage_options
@output_options
@handles_errors
def doctor_command(locations: tuple[str, ...], **kw: Any) -> int:
    """Check a destination before migrating: reachable, writable (probe objects, removed again),
    and settings that cause trouble later (versioning without a lifecycle rule, encryption)."""
    from migrate.doctor import doctor

    url, options, _ = resolve_locations(kw, locations, ("destination",))["destination"]
    with logging_to(kw["log_file"]), open_location(url, options) as storage:
        summary = doctor(storage)
    emit(summary, kw["as_json"], render.doctor_text)
    return int(summary["exit_code"])
