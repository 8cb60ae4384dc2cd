"""A pass run as separate shard jobs (``sync --shard I/N --results LOCATION``, in an array job of
any batch system) and its conclusion (``regmig gather``).

Shard jobs never talk to each other: they meet at the results location. The first to start
writes the run's manifest there (``run.json``, a conditional create: one wins), naming the pass
(source, destination, shard count, dry run) and the generation token of the run, which any
shard writes to the destination if it still holds the one before (so the order in which they
start does not matter). Each shard takes a lease of its own (two copies of one shard never run
at once), refuses while another run holds the destination's, copies its range and records its
result and its delete candidates. A killed shard leaves no result and is run again alone: it
copies what is still missing in its range.

``gather`` refuses while any shard's result is missing, belongs to another run or token, or is
unclean, or while the destination's token is not the run's (something else wrote it since).
Then it merges the results into one report and, with ``--delete``, applies the delete guards to
the whole pass and deletes, holding the destination's lease.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from migrate import generation, state, tree
from migrate.errors import BadInput, ObjectMissing, RegmigError
from migrate.lease import SHARD_PATH, Lease
from migrate.outcome import Outcome, Result
from migrate.report import Report, Tally
from migrate.shards import Shard, partition
from migrate.shardsync import LEFT_TO_GATHER, Candidates, ShardOutcome, sync_shard
from migrate.storage.base import Link, Storage
from migrate.sync import SyncOptions, begin, check_inputs, check_links, conclude, report_unclean, unclean_reasons

FORMAT = 2
"""2: a shard's result lists the symbolic links its source walk followed (checked by gather across shards)."""
RUN = "run.json"
GATHERED = "gathered.json"


class GatherRefused(RegmigError):
    """Some shard of the pass has not ended clean (or the destination changed since): nothing deleted."""

    exit_code = 1


@dataclass(frozen=True)
class Run:
    """The manifest of one pass run as shard jobs."""

    id: str
    shards: int
    token: generation.Token | None
    previous: str | None
    """The destination's token before the run: a shard that finds it still there writes the run's."""
    manifest: dict[str, Any]


def _name(shard: Shard) -> str:
    return f"shard-{shard.index:04d}-of-{shard.count:04d}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def check_location(results: Storage, source: Storage, destination: Storage) -> None:
    """The results must not be copied, counted or deleted as registry data: outside the source tree,
    and outside the destination's ``docker/`` tree."""
    for side in (source, destination):
        same_place = results.location("") == side.location("") and results.service_identity == side.service_identity
        inside = results.prefix.startswith(side.prefix + tree.V2.split("/")[0] + "/")
        if same_place and (inside or (side is source and results.prefix.startswith(side.prefix))):
            raise BadInput(f"--results {results.url} is inside the registry tree at {side.url}: put it outside "
                           f"(another directory, or another prefix than docker/)")


def _identity(source: Storage, destination: Storage, shards: int, options: SyncOptions) -> dict[str, Any]:
    return {"source": source.url, **state.identity(destination, options.include_uploads), "shards": shards,
            "dry_run": options.dry_run}


def _read_json(results: Storage, path: str) -> dict[str, Any] | None:
    try:
        data = results.read(path)
    except ObjectMissing:
        return None
    try:
        loaded = json.loads(data)
    except ValueError as exc:
        raise BadInput(f"{results.url}/{path} is not a regmig shard result ({exc})") from exc
    if not isinstance(loaded, dict) or loaded.get("format") != FORMAT:
        raise BadInput(f"{results.url}/{path} is not a regmig shard result of format {FORMAT}")
    return loaded


def _put_json(results: Storage, path: str, body: dict[str, Any]) -> None:
    data = json.dumps(body, sort_keys=True).encode()
    results.put(path, data, len(data))


def _run_from(manifest: dict[str, Any]) -> Run:
    token = None
    if manifest.get("token"):
        token = generation.Token(manifest["token"], base64.b64decode(manifest["token_data"]))
    return Run(manifest["run"], int(manifest["shards"]), token, manifest.get("previous"), manifest)


def join(results: Storage, source: Storage, destination: Storage, shards: int, options: SyncOptions) -> Run:
    """The run these shards belong to: the manifest at the results location, written now by the
    first shard to start; its token on the destination (written by whichever shard finds the one
    before still there)."""
    ident = _identity(source, destination, shards, options)
    manifest = _read_json(results, RUN)
    if manifest is None:
        current = generation.current(destination)
        token = current if options.dry_run else generation.new(f"sync --shard ... (a run of {shards} shards)")
        manifest = {"format": FORMAT, "run": uuid.uuid4().hex, **ident, "started": _now(),
                    "by": socket.gethostname(), "token": token.value if token else None,
                    "token_data": base64.b64encode(token.data).decode() if token else None,
                    "previous": current.value if current else None}
        data = json.dumps(manifest, sort_keys=True).encode()
        if not results.create_exclusive(RUN, data):
            manifest = _read_json(results, RUN)  # another shard started first: join its run
            if manifest is None:
                raise BadInput(f"{results.url}/{RUN} could neither be created nor read")
    differs = [key for key, value in ident.items() if manifest.get(key) != value]
    if differs:
        raise BadInput(f"--results {results.url} holds the run of another pass (its {', '.join(differs)} "
                       f"differ): give each pass its own results location")
    gathered = _read_json(results, GATHERED)
    if gathered is not None:
        raise BadInput(f"the pass at --results {results.url} was gathered at {gathered.get('at')}: a new pass "
                       f"needs a new results location")
    run = _run_from(manifest)
    if not options.dry_run:
        assert run.token is not None
        current = generation.current(destination)
        now = current.value if current else None
        if now == run.previous and now != run.token.value:
            generation.put(destination, run.token)
        elif now != run.token.value:
            raise BadInput(f"the destination was written since the run at --results {results.url} began (its "
                           f"generation token moved): start the pass again with a new results location")
    return run


def sync_shard_run(source: Storage, destination: Storage, options: SyncOptions, report: Report, shard: Shard,
                   results: Storage) -> None:
    """One shard of a pass run as separate jobs: copy its range, record its result. Never deletes."""
    if options.delete:
        raise BadInput("a --shard run never deletes: its delete candidates go to --results; give --delete to "
                       "`regmig gather` once every shard has run")
    check_location(results, source, destination)
    # A directory destination that holds a registry is refused (migrate.guards), but not the one the
    # run's earlier shards are filling.
    joining = _read_json(results, RUN) is not None
    check_inputs(source, destination, replace(options, into_populated_directory=True) if joining else options, report)
    with contextlib.ExitStack() as held:
        lease = None
        if not options.dry_run:
            lease = Lease(destination, f"sync --shard {shard}", break_lock=options.break_lock, note=report.note,
                          path=SHARD_PATH.format(index=shard.index, count=shard.count))
            lease.refuse_if_held()  # a plain sync or a gather writing the whole destination
            held.enter_context(lease)
        if options.state_path:
            path = state.shard_path(options.state_path, shard)
            held.enter_context(state.locked(path, exclusive=not options.dry_run))
            state.check(path, state.identity(destination, options.include_uploads, shard),
                        writing=not options.dry_run)
        run = join(results, source, destination, shard.count, options)
        token, template = begin(source, destination, options, report, moved=(run.token, run.previous), only=shard)
        task = replace(template, keep_candidates=True).for_shard(shard)
        try:
            outcome = sync_shard(source, destination, task, report)
        except RegmigError as exc:
            _record(results, run, ShardOutcome(shard, error=str(exc)), report, [str(exc)])
            raise
        report.listing_finished = True
        unclean = unclean_reasons(report, destination, token, lease)
        for reason in unclean[len(report_unclean(report)):]:
            report.failure(f"shard {shard}", reason)  # a lost lease or a moved token: the result holds nothing
        _own_record(outcome, unclean, report)
        _record(results, run, outcome, report, unclean)
    verdict = "clean" if not unclean else f"UNCLEAN ({', '.join(unclean)})"
    report.note(f"shard {shard} recorded at {results.url}: {verdict}; {outcome.extras.count:,} destination-only "
                f"objects left to `regmig gather`")


def _own_record(outcome: ShardOutcome, unclean: list[str], report: Report) -> None:
    """The shard's ``--state`` record is put in place when it ended clean and left no delete candidates
    (gather may delete those, which the record would then still list)."""
    if outcome.part is None:
        return
    if unclean or outcome.extras.count:
        outcome.part.discard()
        why = ", ".join(unclean) if unclean else f"{outcome.extras.count:,} delete candidates wait for gather"
        report.note(f"no state file written ({why}): the next pass lists this shard's part of the destination")
        return
    outcome.part.commit(outcome.source_count)
    report.note(f"state file written: {outcome.part.path} ({outcome.part.count:,} entries)")


def _record(results: Storage, run: Run, outcome: ShardOutcome, report: Report, unclean: list[str]) -> None:
    """The candidates first, then the result that names them: a result is only ever complete."""
    name = _name(outcome.shard)
    candidates = outcome.candidates.data() if outcome.candidates is not None else b""
    results.put(name + ".deletes.gz", candidates, len(candidates))
    _put_json(results, name + ".json", {
        "format": FORMAT, "run": run.id, "token": run.token.value if run.token else None,
        "shard": str(outcome.shard), "finished": _now(), "host": socket.gethostname(),
        "error": outcome.error, "unclean": unclean, "source_count": outcome.source_count,
        "extras": [outcome.extras.count, outcome.extras.bytes],
        "record_source_files": outcome.record_source_files, "record_written": outcome.record_written,
        "links": [[link.path, link.target] for link in outcome.links], "report": report.state()})


def gather(source: Storage, destination: Storage, options: SyncOptions, report: Report, results: Storage) -> int:
    """Conclude a pass whose shards ran as separate jobs; returns its shard count."""
    manifest = _read_json(results, RUN)
    if manifest is None:
        raise BadInput(f"{results.url} holds no shard results (no {RUN}): run the shards with --shard I/N "
                       f"--results {results.url} first")
    check_inputs(source, destination, replace(options, into_populated_directory=True), report)
    run = _run_from(manifest)
    ident = _identity(source, destination, run.shards, replace(options, dry_run=bool(manifest.get("dry_run"))))
    differs = [key for key, value in ident.items() if manifest.get(key) != value]
    if differs:
        raise BadInput(f"the run at {results.url} was for another pass (its {', '.join(differs)} differ)")
    if manifest.get("dry_run") and options.delete and not options.dry_run:
        raise BadInput("the shards ran with --dry-run: gather --delete needs shards that copied; run them again "
                       "without --dry-run (or gather with --dry-run)")
    loaded = _results(results, run)
    if not manifest.get("dry_run"):
        current = generation.current(destination)
        assert run.token is not None
        if current is None or current.value != run.token.value:
            raise GatherRefused(f"not gathering {results.url}: the destination was written since its shards ran "
                                f"(its generation token moved): their results no longer describe it; run the pass "
                                f"again with a new results location")
    with contextlib.ExitStack() as held:
        lease = None
        if options.delete and not options.dry_run:
            lease = held.enter_context(Lease(destination, "gather", break_lock=options.break_lock, note=report.note))
        outcomes = []
        for shard, result in loaded:
            report.absorb(result["report"])
            report.withdraw(Outcome.NOT_DELETED, LEFT_TO_GATHER)
            candidates = _candidates(results, shard, result["extras"][0])
            if not options.delete:
                for path, size in candidates:
                    report.add(Result(Outcome.NOT_DELETED, path, size, "no --delete"))
            outcomes.append(ShardOutcome(shard, result["source_count"], Tally(*result["extras"]), candidates,
                                         record_source_files=result["record_source_files"],
                                         record_written=result["record_written"],
                                         links=[Link(*link) for link in result["links"]]))
        report.listing_finished = True
        check_links(outcomes, report)
        conclude(outcomes, source, destination, options, report, lease, None)
    if options.delete and not options.dry_run and report.delete_refusal is None:
        _put_json(results, GATHERED, {"format": FORMAT, "run": run.id, "at": _now()})
    return run.shards


def _results(results: Storage, run: Run) -> list[tuple[Shard, dict[str, Any]]]:
    """Every shard's result, or a refusal naming each shard that is missing, stale or unclean."""
    loaded, problems = [], []
    token = run.token.value if run.token else None
    for shard in partition(run.shards):
        result = _read_json(results, _name(shard) + ".json")
        if result is None:
            problems.append(f"shard {shard} has no result")
        elif result.get("run") != run.id or result.get("token") != token:
            problems.append(f"shard {shard}'s result is stale (another run's)")
        elif result.get("error"):
            problems.append(f"shard {shard} stopped: {result['error']}")
        elif result.get("unclean"):
            problems.append(f"shard {shard} is unclean ({', '.join(result['unclean'])})")
        else:
            loaded.append((shard, result))
    if problems:
        raise GatherRefused(f"not gathering {results.url}: {'; '.join(problems)}: run those shards again (the "
                            f"same command with their --shard), then gather")
    return loaded


def _candidates(results: Storage, shard: Shard, count: int) -> Candidates:
    try:
        data = results.read(_name(shard) + ".deletes.gz")
    except ObjectMissing:
        raise GatherRefused(f"shard {shard}'s delete candidates are missing from {results.url}: run it again") \
            from None
    return Candidates.from_data(data, count)
