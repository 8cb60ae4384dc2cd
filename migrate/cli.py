"""The ``regmig`` command: options in, one core call, output rendered, errors mapped to exit codes.

Each command imports its own implementation when it runs: the final ``sync`` pass runs in the
read-only window, and the verifier's, planner's and log handler's imports were a tenth of a
second of it (bench/, delta phase).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import click
from click.core import ParameterSource

from migrate import __version__, redact, render
from migrate.cli_options import (chunk_size_option, connection_options, delete_guard_options, follow_symlinks_option,
                                 from_config_option, long_run_options, output_options, parse_size, report_format,
                                 report_paths, request_options, resolve_locations, scale_options, shard_job_options,
                                 to_config_option, write_options)
from migrate.errors import BadInput, RegmigError
from migrate.outcome import PathList
from migrate.progress import Progress
from migrate.report import Report
from migrate.runlog import RunLog
from migrate.runners import Location
from migrate.scaleout import layout
from migrate.shardsync import ShardOutcome, sync_shard_elsewhere
from migrate.storage import Storage, open_location
from migrate.sync import SyncOptions, exit_code, sync

log = logging.getLogger("regmig")
_ARGV = "regmig.argv"
_STARTED = "regmig.started"
_VERDICT = "regmig.verdict"


class Terminated(KeyboardInterrupt):
    """SIGTERM (systemd stop, kill): unwinds like Ctrl-C, so leases and state files are released."""


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread (an embedding caller keeps its own)
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def runs(command: Callable[..., int]) -> Callable[..., None]:
    """Runs one command: its log (header, how it ended), SIGTERM, and the one place that maps
    regmig errors to a one-line message and an exit code; no tracebacks."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        context = click.get_current_context()
        context.meta[_STARTED] = time.time()
        argv = context.meta.get(_ARGV) or ["regmig", *sys.argv[1:]]
        with RunLog(kwargs.get("log_file"), argv, kwargs.get("verbose", 0)) as run, _sigterm_unwinds():
            code, how = _run(command, context, args, kwargs)
            run.ended(how)
        sys.exit(code)

    return wrapper


def _run(command: Callable[..., int], context: click.Context, args: Any, kwargs: Any) -> tuple[int, str]:
    try:
        code = command(*args, **kwargs)
    except RegmigError as exc:
        message = redact.redact(str(exc))
        click.echo(f"regmig: error: {message}", err=True)
        return exc.exit_code, f"failed: {message} (exit {exc.exit_code})"
    except Terminated:
        click.echo("regmig: terminated (SIGTERM); rerun the same command to continue", err=True)
        return 143, "interrupted by SIGTERM (exit 143)"
    except KeyboardInterrupt:
        click.echo("regmig: interrupted; rerun the same command to continue", err=True)
        return 130, "interrupted by SIGINT (exit 130)"
    except Exception as exc:  # a bug of ours: still one line for the operator, the traceback in the log
        log.exception("internal error")
        message = redact.redact(f"{type(exc).__name__}: {exc}")
        click.echo(f"regmig: internal error: {message}", err=True)
        return 1, f"failed: internal error {message} (exit 1)"
    verdict = context.meta.get(_VERDICT)
    return code, f"done{', ' + verdict if verdict else ''} (exit {code})"


def _iso(moment: float) -> str:
    return datetime.datetime.fromtimestamp(moment, datetime.timezone.utc).isoformat(timespec="seconds")


def run_info(summary: dict[str, Any]) -> dict[str, Any]:
    """What every report carries about its run, for the change ticket."""
    context = click.get_current_context()
    argv = context.meta.get(_ARGV) or ["regmig", *sys.argv[1:]]
    return {
        "started_at": _iso(context.meta.get(_STARTED, time.time())),
        "finished_at": _iso(time.time()),
        "regmig_version": __version__,
        "host": socket.gethostname(),
        "argv": redact.redact_argv(argv),
        "verdict": render.verdict(summary),
    }


def emit(summary: dict[str, Any], kw: dict[str, Any], text: Callable[[dict[str, Any]], str]) -> None:
    """Print the finished report (JSON or text) and write each --report file."""
    summary.update(run_info(summary))
    click.get_current_context().meta[_VERDICT] = summary["verdict"]
    for path in kw.get("reports", ()):
        write_report(path, [summary])
    if kw.get("as_json"):
        click.echo(redact.redact(json.dumps(summary, indent=2, sort_keys=True)))
    else:
        click.echo(redact.redact(text(summary)))


def write_report(path: str, summaries: list[dict[str, Any]]) -> None:
    """One report file, in the format its name says, put in place whole (never half written)."""
    from migrate import htmlreport

    kind = report_format(path)
    if kind == "json":
        body = json.dumps(summaries[-1], indent=2, sort_keys=True) + "\n"
    else:
        body = htmlreport.page(summaries) if kind == "html" else htmlreport.markdown(summaries)
    temporary = f"{path}.part"
    try:
        with open(temporary, "w", encoding="utf-8") as out:
            out.write(redact.redact(body))
        os.replace(temporary, path)
    except OSError as exc:
        raise BadInput(f"--report {path}: cannot write it: {exc.strerror}") from exc
    log.info("report written: %s", path)


def progress(report: Report, command: str, kw: dict[str, Any]) -> contextlib.AbstractContextManager[Any]:
    """Progress on stderr (unless --no-progress) and in the log (when it records INFO)."""
    flag = kw["progress"]
    if flag is False and not log.isEnabledFor(logging.INFO):
        return contextlib.nullcontext()
    return Progress(report, command, show=flag is not False, interval=kw["progress_interval"],
                    final_line=flag is True)


class _Regmig(click.Group):
    """Keeps the command line as given, for the log's header and the report's ``argv``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_ARGV] = ["regmig", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_Regmig, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="regmig")
def main() -> None:
    """Move a container registry's storage to object storage, prove the copy, repair nameless tags."""


@main.command("sync")
@click.argument("locations", nargs=-1, metavar="SOURCE DESTINATION")
@click.option("--delete", is_flag=True, help="Delete destination-only objects under the root, after a clean pass.")
@delete_guard_options
@click.option("-n", "--dry-run", is_flag=True, help="Print the plan (counts and bytes per action); change nothing.")
@click.option("--verify", "prove", is_flag=True,
              help="Prove the copy in the same pass (the final pass of the read-only window): the destination is "
                   "listed, what the pass changed is looked at again, and the verdict is verify's.")
@click.option("--include-uploads", is_flag=True, help="Also copy _uploads (unfinished uploads; normally skipped).")
@click.option("--into-populated-directory", is_flag=True,
              help="Allow a DESTINATION directory that already holds a registry (a rollback onto the old root).")
@follow_symlinks_option
@click.option("--state", "state_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="Record what DESTINATION holds after a clean pass; the next pass reads FILE instead of "
                   "listing DESTINATION (a short final pass). Only regmig may write DESTINATION in between.")
@from_config_option
@to_config_option
@connection_options
@write_options
@chunk_size_option
@request_options
@scale_options
@shard_job_options
@long_run_options
@runs
def sync_command(locations: tuple[str, ...], **kw: Any) -> int:
    """Copy the registry tree at SOURCE (the registry's rootdirectory) to DESTINATION.

    SOURCE is usually a directory holding docker/registry/v2; DESTINATION is s3://BUCKET[/ROOT],
    gs://BUCKET[/ROOT] or azure://CONTAINER[/ROOT]. Either side may be any of these (bucket to
    bucket, or back to a directory for a rollback). Blobs (named by digest) are compared by size,
    links and other files by content.
    """
    sides = resolve_locations(kw, locations, ("source", "destination"))
    if kw["prove"] and (kw["dry_run"] or kw["shard_spec"]):
        raise BadInput(f"--verify proves a pass that writes the whole destination: not with "
                       f"{'--dry-run' if kw['dry_run'] else '--shard'} (run regmig verify "
                       f"{'instead' if kw['dry_run'] else 'after gather'})")
    report = Report()
    source, destination = sides["source"], sides["destination"]
    proof, job = None, cast(Callable[..., ShardOutcome], sync_shard_elsewhere)
    if kw["prove"]:
        from checks.proof import PassProof, prove_shard_elsewhere

        proof, job = PassProof(), prove_shard_elsewhere
    with open_location(source.url, source.options) as src, open_location(destination.url, destination.options) as dst:
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
            break_lock=kw["break_lock"],
        )
        scale = layout(kw, Location.of(*source[:2]), Location.of(*destination[:2]), job)
        with progress(report, "sync", kw):
            if scale.results:
                from migrate import results

                with open_location(scale.results, destination.options) as store:
                    results.sync_shard_run(src, dst, sync_options, report, scale.shards[0], store)
            else:
                sync(src, dst, sync_options, report, shards=scale.shards, runner=scale.runner, proof=proof)
        summary = sync_summary(src, dst, sync_options, report)
        if proof is not None:
            summary["proof"] = proof.summary
            summary["exit_code"] = summary["exit_code"] or int(proof.summary["verdict"] != "proved")
        if scale.results:
            summary.update(shard=str(scale.shards[0]), results=scale.results)
        log.info("sync finished with exit code %d: %s", summary["exit_code"], json.dumps(summary["outcomes"]))
    emit(summary, kw, render.sync_text)
    return summary["exit_code"]


@main.command("gather")
@click.argument("locations", nargs=-1, metavar="SOURCE DESTINATION")
@click.option("--results", "results_location", required=True, metavar="LOCATION",
              help="Where the shards of the pass (sync --shard I/N --results LOCATION) recorded their results.")
@click.option("--delete", is_flag=True,
              help="Delete the shards' destination-only objects, once every shard ended clean.")
@delete_guard_options
@click.option("-n", "--dry-run", is_flag=True, help="Show what would be deleted; change nothing.")
@from_config_option
@to_config_option
@connection_options
@request_options
@long_run_options
@runs
def gather_command(locations: tuple[str, ...], **kw: Any) -> int:
    """Conclude a pass whose shards ran as separate jobs (sync --shard I/N --results LOCATION): one
    report and verdict for the whole pass, then (--delete) the deletes.

    Refuses (exit 1, nothing deleted) while any shard's result is missing, from another run, or
    unclean, or when the destination was written since the shards ran. The delete guards apply
    to the whole pass (--max-delete counts every shard's deletes).
    """
    from migrate import results

    sides = resolve_locations(kw, locations, ("source", "destination"))
    report = Report()
    source, destination = sides["source"], sides["destination"]
    options = SyncOptions(delete=kw["delete"], max_delete=kw["max_delete"], dry_run=kw["dry_run"],
                          allow_object_source_delete=kw["allow_object_source_delete"],
                          allow_unrelated_source=kw["allow_unrelated_source"], workers=kw["workers"],
                          break_lock=kw["break_lock"])
    with open_location(source.url, source.options) as src, open_location(destination.url, destination.options) as dst, \
            open_location(kw["results_location"], destination.options) as store:
        with progress(report, "sync", kw):
            shards = results.gather(src, dst, options, report, store)
        summary = {**sync_summary(src, dst, options, report), "command": "gather", "shards": shards,
                   "results": kw["results_location"]}
    emit(summary, kw, render.sync_text)
    return summary["exit_code"]


@main.command("k8s-job", context_settings={"ignore_unknown_options": True})
@click.argument("arguments", nargs=-1, metavar="SOURCE DESTINATION [-- SYNC-OPTIONS...]")
@click.option("--image", required=True, help="The container image with regmig installed (pip install regmig).")
@click.option("--shards", "shard_count", default=8, show_default=True, type=click.IntRange(1, 4096),
              help="Shards of the pass: the Job's completions and parallelism.")
@click.option("--results", "results_location", required=True, metavar="LOCATION",
              help="Where the shards record their results: s3://, gs://, azure:// (outside docker/), or a "
                   "directory on --results-claim.")
@click.option("--source-claim", metavar="CLAIM",
              help="The PersistentVolumeClaim holding the registry's root, mounted read-only at SOURCE.")
@click.option("--results-claim", metavar="CLAIM", help="A ReadWriteMany claim mounted at a directory --results.")
@click.option("--secret", metavar="NAME",
              help="A Secret whose keys become the pods' environment (AWS_ACCESS_KEY_ID, "
                   "AWS_SECRET_ACCESS_KEY, AZURE_STORAGE_CONNECTION_STRING...).")
@click.option("--name", default="regmig-sync", show_default=True, help="The Job's name (the gather Job adds -gather).")
@click.option("--namespace", help="The namespace to run in.")
@click.option("--cpu", default="1", show_default=True, help="CPU request per pod.")
@click.option("--memory", default="1Gi", show_default=True, help="Memory request and limit per pod.")
@click.option("--backoff-limit-per-index", default=3, show_default=True, type=click.IntRange(0),
              help="Times a failed shard's pod is retried (alone; a retry resumes).")
@click.option("--delete", is_flag=True, help="The gather Job deletes destination-only objects (sync --delete).")
@click.option("--gather", "print_gather", is_flag=True,
              help="Print the gather Job (apply it once the shard Job has completed) instead of the shard Job.")
@runs
def k8s_job_command(arguments: tuple[str, ...], **kw: Any) -> int:
    """Print a Kubernetes Indexed Job that runs a sync pass as N shards, one pod per shard (regmig sync
    ... --shard auto/N), and with --gather the Job that concludes it (regmig gather).

    Options for the sync go after the locations, behind "--" (for example -- --endpoint-url URL
    --state /results/state); the connection and request options among them go to gather too.
    Apply the shard Job, wait for it (kubectl wait --for=condition=complete job/NAME), then apply
    the gather Job.
    """
    import yaml

    from migrate import k8s

    if len(arguments) < 2:
        raise BadInput("expected SOURCE DESTINATION, then (after --) the sync options")
    source, destination, *extra = arguments
    sync_args, gather_args = _split_sync_options(source, destination, extra)
    if kw["delete"]:
        gather_args.append("--delete")
    spec = k8s.JobSpec(name=kw["name"], image=kw["image"], source=source, destination=destination,
                       shards=kw["shard_count"], results=kw["results_location"], source_claim=kw["source_claim"],
                       secret=kw["secret"], results_claim=kw["results_claim"], sync_args=tuple(sync_args),
                       gather_args=tuple(gather_args), namespace=kw["namespace"], cpu=kw["cpu"],
                       memory=kw["memory"], backoff_per_index=kw["backoff_limit_per_index"])
    manifest = k8s.gather_job(spec) if kw["print_gather"] else k8s.shard_job(spec)
    then = ("after the shard Job has completed" if kw["print_gather"] else
            "then, once complete: regmig k8s-job ... --gather | kubectl apply -f -")
    click.echo(f"# regmig {__version__}: {spec.shards} shards of a sync pass; {then}")
    click.echo(yaml.safe_dump(manifest, sort_keys=False), nl=False)
    return 0


def _split_sync_options(source: str, destination: str, extra: list[str]) -> tuple[list[str], list[str]]:
    """The sync options as given (checked by sync's own parser: a typo is bad input now, not in N
    pods), and those of them that gather takes too."""
    if "--shard" in extra or "--results" in extra or any(arg.startswith(("--shard=", "--results=")) for arg in extra):
        raise BadInput("k8s-job sets --shard and --results itself: leave them out of the sync options")
    try:
        context = sync_command.make_context("sync", [source, destination, *extra])
    except click.UsageError as exc:
        raise BadInput(f"the sync options: {exc.format_message()}") from exc
    gather_names = {param.name for param in gather_command.params}
    shared = []
    for param in sync_command.params:
        if not isinstance(param, click.Option) or param.name not in gather_names or param.name in (
                "delete", "max_delete", "dry_run", "results_location"):
            continue
        if context.get_parameter_source(param.name) is not ParameterSource.COMMANDLINE:
            continue
        value = context.params[param.name]
        shared += [param.opts[0]] if param.is_flag else [param.opts[0], str(value)]
    return list(extra), shared


def sync_summary(src: Storage, dst: Storage, options: SyncOptions, report: Report) -> dict[str, Any]:
    data = report.to_dict()
    return {
        "command": "sync",
        "source": src.url,
        "destination": dst.url,
        "destination_layout": dst.root_description,
        "dry_run": options.dry_run,
        "delete": options.delete,
        "exit_code": exit_code(options, report),
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
@from_config_option
@to_config_option
@connection_options
@request_options
@scale_options
@long_run_options
@runs
def verify_command(locations: tuple[str, ...], **kw: Any) -> int:
    """Prove DESTINATION holds SOURCE exactly, and (--deep) that a registry can serve it.

    Prints the documented object-count check (excluding _uploads), what it checked (repositories,
    tags, manifests, blobs, links), then every object missing, extra, of another size or other
    content, and zero-byte markers. With one location, checks that location alone. With
    --cutover-time, proves the copy after the registry was switched over to DESTINATION (see
    runbooks/verification.md). Exit 0 only when consistent, 1 when anything was found.
    """
    from checks.semantics import DeepOptions
    from checks.after_cutover import parse_cutover_time
    from checks.verify import VerifyOptions, repair_commands, verdict, verify, verify_shard_elsewhere, withdraw_trust

    if kw["strict"] and kw["cutover_time"] is None:
        raise BadInput("--strict needs --cutover-time")
    cutover = parse_cutover_time(kw["cutover_time"]) if kw["cutover_time"] is not None else None

    sides = resolve_locations(kw, locations, ("source", "destination"), optional=("source",))
    deep = DeepOptions(hash_limit=None if kw["hash_all"] else parse_size(kw["hash_limit"]),
                       workers=kw["workers"]) if kw["deep"] else None
    report = Report()
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(open_location(sides["source"].url, sides["source"].options)) if "source" in sides else None
        dst = stack.enter_context(open_location(sides["destination"].url, sides["destination"].options))
        source = Location.of(*sides["source"][:2]) if "source" in sides else None
        scale = layout(kw, source, Location.of(*sides["destination"][:2]), verify_shard_elsewhere)
        with progress(report, "verify", kw):
            result = verify(src, dst, VerifyOptions(include_uploads=kw["include_uploads"], workers=kw["workers"],
                                                    deep=deep, cutover=cutover, strict=kw["strict"]), report,
                            shards=scale.shards, runner=scale.runner)
        summary = {
            "command": "verify", "source": src.url if src else None, "destination": dst.url,
            "destination_layout": dst.root_description,
            "deep": None if not deep else ("every blob hashed" if deep.hash_limit is None
                                           else f"blobs up to {kw['hash_limit']} hashed"),
            **result, **report.to_dict(),
        }
        summary["exit_code"] = verdict(summary)
        failed = summary["exit_code"] != 0
        summary["trust"] = withdraw_trust(dst) if failed else None
        summary["repair"] = repair_commands(summary) if failed else []
    emit(summary, kw, render.verify_text)
    return summary["exit_code"]


@main.command("nameless-tags")
@click.argument("locations", nargs=-1, metavar="TARGET")
@click.option("--fix", is_flag=True, help="Delete each zero-byte marker: one exact key at a time, never a prefix.")
@click.option("--break-lock", is_flag=True,
              help="With --fix, take TARGET's lease even if another regmig seems to hold it "
                   "(only when that run is dead).")
@to_config_option
@connection_options
@request_options
@long_run_options
@runs
def nameless_tags_command(locations: tuple[str, ...], **kw: Any) -> int:
    """Find the zero-byte keys ending in '/' that show up as tags with no name, and remove them.

    Without --fix only reports (exit 1 when any were found). With --fix, re-checks each key is
    still a zero-byte object right before deleting exactly that key (conditionally where the
    service supports it); objects with content are never touched. Exit 0 when clean afterwards.
    """
    from checks import markers

    target = resolve_locations(kw, locations, ("destination",))["destination"]
    report = Report()
    with open_location(target.url, target.options) as storage, progress(report, "nameless-tags", kw):
        if kw["fix"]:
            summary = _fix_markers(storage, kw["break_lock"], report)
        else:
            summary = markers.scan(storage, fix=False, report=report)
    for item in summary["markers"]:
        log.info("marker %s: %s (%s)", item["action"], item["path"], item["kind"])
    summary.update(source=None, destination=summary["target"], elapsed_seconds=round(report.elapsed(), 3),
                   phases=report.phase_timings())
    emit(summary, kw, render.markers_text)
    return int(summary["exit_code"])


def _fix_markers(storage: Storage, break_lock: bool, report: Report) -> dict[str, Any]:
    """Deleting markers writes the destination: it takes the lease and moves the generation token
    first, as a sync does (migrate.lease, migrate.generation)."""
    from checks import markers
    from migrate import generation
    from migrate.lease import Lease

    storage.check_reachable()
    notes: list[str] = []
    with Lease(storage, "nameless-tags --fix", break_lock=break_lock, note=notes.append):
        generation.advance(storage, "nameless-tags --fix")
        summary = markers.scan(storage, fix=True, report=report)
    return {**summary, "notes": notes}


@main.command("plan")
@click.argument("locations", nargs=-1, metavar="SOURCE DESTINATION")
@click.option("--final", is_flag=True, help="This is the final pass: check the source registry is read-only.")
@click.option("--no-probe", is_flag=True, help="Do not write probe objects (no read-only window estimate).")
@click.option("--include-uploads", is_flag=True, help="Count _uploads as sync --include-uploads would.")
@click.option("--state", "state_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="Read DESTINATION from the sync --state FILE, as the final pass will (left unchanged).")
@follow_symlinks_option
@from_config_option
@to_config_option
@connection_options
@write_options
@request_options
@scale_options
@long_run_options
@runs
def plan_command(locations: tuple[str, ...], **kw: Any) -> int:
    """What a sync --delete would do now, per area of the tree, and how long its read-only window takes.

    Lists both sides and compares content exactly as the final pass will (changing nothing), then
    times a few probe writes to the destination (removed again) to estimate the window. Exit 1
    when a FLAG is raised (something to act on before the window) or anything failed.
    """
    from migrate.cutover import AreaReport, PlanOptions, plan

    sides = resolve_locations(kw, locations, ("source", "destination"))
    source_config = sides["source"].config
    readonly = source_config.readonly if source_config else None
    report = AreaReport()
    options = PlanOptions(workers=kw["workers"], include_uploads=kw["include_uploads"], probe=not kw["no_probe"],
                          final=kw["final"], source_readonly=readonly, state_path=kw["state_path"])
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(open_location(sides["source"].url, sides["source"].options))
        dst = stack.enter_context(open_location(sides["destination"].url, sides["destination"].options))
        scale = layout(kw, Location.of(*sides["source"][:2]), Location.of(*sides["destination"][:2]),
                       sync_shard_elsewhere, AreaReport)
        with progress(report, "plan", kw):
            result = plan(src, dst, options, report, shards=scale.shards, runner=scale.runner)
    summary = {"command": "plan", "source": src.url, "destination": dst.url,
               "destination_layout": dst.root_description, **result, **report.to_dict()}
    failed = report.count(PathList.FAILURES) or report.count(PathList.PROBLEMS) or summary["flags"]
    summary["exit_code"] = 1 if failed else 0
    emit(summary, kw, render.plan_text)
    return summary["exit_code"]


@main.command("config-snippet")
@click.argument("locations", nargs=-1, metavar="DESTINATION")
@from_config_option
@to_config_option
@connection_options
@write_options
@chunk_size_option
@click.option("--driver", type=click.Choice(["s3", "s3_v2"]),
              help="S3 driver to write: s3 (Distribution's s3-aws; every registry) or s3_v2 (GitLab's registry "
                   "only, on aws-sdk-go-v2: beta from GitLab 17.10; from 19.0 s3 runs it too). Default: the "
                   "config file's S3 driver, else s3.")
@runs
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
@to_config_option
@connection_options
@write_options
@request_options
@output_options
@runs
def doctor_command(locations: tuple[str, ...], **kw: Any) -> int:
    """Check a destination before migrating: reachable, writable (probe objects, removed again),
    and settings that cause trouble later (versioning without a lifecycle rule, encryption).
    Exit 1 on a WARN or FAIL."""
    from migrate.doctor import doctor

    url, options, _ = resolve_locations(kw, locations, ("destination",))["destination"]
    with open_location(url, options) as storage:
        summary = doctor(storage)
    summary.update(source=None, destination=summary["target"])
    emit(summary, kw, render.doctor_text)
    return int(summary["exit_code"])


@main.command("report")
@click.argument("reports", nargs=-1, required=True, metavar="REPORT.json...",
                type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, metavar="FILE", type=click.Path(dir_okay=False),
              callback=report_paths, help="The page to write: .html or .md.")
@runs
def report_command(reports: tuple[str, ...], output: str) -> int:
    """Write one page from the JSON reports of a migration's passes (--json or --report FILE.json),
    in the order given: the verdict of the last, a chart and table of every pass's timings, then
    each report's count check, what it checked and its findings. For the change ticket."""
    if report_format(output) == "json":
        raise BadInput(f"--output {output}: the JSON reports are the input; name it .html or .md")
    summaries = []
    for path in reports:
        try:
            with open(path, encoding="utf-8") as handle:
                loaded = json.load(handle)
        except (OSError, ValueError) as exc:
            raise BadInput(f"{path}: not a JSON report ({exc})") from exc
        if not isinstance(loaded, dict) or "command" not in loaded or "exit_code" not in loaded:
            raise BadInput(f"{path}: not a regmig report (no command or exit_code)")
        summaries.append(loaded)
    write_report(output, summaries)
    click.echo(f"report written: {output} ({len(summaries):,} passes)")
    return 0
