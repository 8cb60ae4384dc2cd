"""Human text for a finished report: the verdict first, then the counts, then what needs attention."""

from __future__ import annotations

from typing import Any

from migrate import tree
from migrate.outcome import DIFFERENCES, Outcome, PathList
from migrate.progress import human_bytes
from migrate.report import MAX_LISTED
from migrate.roots import OtherRoot
from migrate.storage.options import ROOT_PREFIX_CONFIG

SHOWN = 10
"""How many paths of each list the terminal shows; --json has them all (up to the report's cap)."""


_AZURE_PREFIXES = {tree.Driver.AZURE_TRIMMED: "trimmed", tree.Driver.AZURE_LEGACY: "legacy"}


def no_registry_data(url: str, prefix: str, driver: tree.Driver, others: list[OtherRoot]) -> str:
    """A root with nothing under docker/: where the bucket's registry data is, when it has some."""
    missing = "no docker/ directory" if driver is tree.Driver.FILESYSTEM else f"no key starts {prefix + 'docker/'!r}"
    line = f"no registry data under {url} ({missing})"
    if not others:
        return line
    held = " and ".join(root.url for root in others)
    meant = " or ".join(root.url + (_layout_option(root.driver) if root.driver is not driver else "")
                        for root in others)
    return f"{line}, but {held} {'holds' if len(others) == 1 else 'hold'} some: did you mean {meant}?"


def _layout_option(driver: tree.Driver) -> str:
    mode = _AZURE_PREFIXES.get(driver)
    return f" with --azure-root-prefix {mode} (registry config {ROOT_PREFIX_CONFIG[mode]})" if mode else ""


_REASONS = {
    "missing": "new", "same": "unchanged", "upload": "unfinished uploads in _uploads",
    "tmp debris": "temporary files left by the registry", "no --delete": "no --delete given",
    "refused": "deletes refused", "job crashed": "regmig bug, see the log",
}
"""Plain words for the JSON's reason keys (which stay as they are: docs/reports.md)."""
_WRITTEN = {Outcome.UPLOADED.value: "written", Outcome.WOULD_UPLOAD.value: "would write"}
"""A directory destination is written, not uploaded to."""


def is_directory(location: str | None) -> bool:
    return bool(location) and ("://" not in str(location) or str(location).startswith("file://"))


def outcome_label(outcome: str, destination: str | None) -> str:
    return _WRITTEN.get(outcome, outcome) if is_directory(destination) else outcome


def outcome_lines(outcomes: dict[str, Any], destination: str | None = None) -> list[str]:
    lines = []
    for outcome, data in outcomes.items():
        reasons = ", ".join(f"{_REASONS.get(reason, reason)}: {r['count']:,}" for reason, r in data["by_reason"].items())
        lines.append(f"  {outcome_label(outcome, destination):<17} {data['count']:>10,} objects "
                     f"{human_bytes(data['bytes']):>11}   ({reasons})")
    return lines


def verdict(summary: dict[str, Any]) -> str:
    """One word for how the command ended, the first word of its text and the report's ``verdict``."""
    if summary["exit_code"] == 0:
        return "CLEAN" if summary["command"] == "nameless-tags" else "OK"
    command = summary["command"]
    if command == "nameless-tags":
        return "MARKERS REMAIN" if summary.get("fix") else "MARKERS FOUND"
    if command == "doctor":
        return "FAILED" if any(check["level"] == "FAIL" for check in summary["checks"]) else "WARNINGS"
    return {"sync": "INCOMPLETE", "gather": "INCOMPLETE", "plan": "FLAGGED"}.get(command, "FAILED")


def path_lists(lists: dict[str, Any], names: list[PathList], destination: str | None = None) -> list[str]:
    lines = []
    for listed in names:
        name = listed.value
        data = lists.get(name)
        if not data or not data["count"]:
            continue
        lines.append(f"{outcome_label(name, destination)} ({data['count']:,}):")
        for item in data["listed"][:SHOWN]:
            message = f": {item['message']}" if item.get("message") else ""
            lines.append(f"  {item['path']}{message}")
        if data["count"] > SHOWN:
            lines.append(f"  ... {data['count'] - SHOWN:,} more: --json and --report list {MAX_LISTED:,}, "
                         f"--log-file every one")
    return lines


def sync_text(summary: dict[str, Any]) -> str:
    mode = " (dry run: nothing changed)" if summary["dry_run"] else ""
    lines = [
        f"{summary['command']} {verdict(summary)}{mode}: {summary['source']} -> {summary['destination']}",
        f"  destination layout: {summary['destination_layout']}",
        *outcome_lines(summary["outcomes"], summary["destination"]),
    ]
    if summary["delete_refused"]:
        lines.append(f"DELETES REFUSED: {summary['delete_refused']}")
    elif not summary["delete"] and Outcome.NOT_DELETED.value in summary["outcomes"]:
        lines.append("  destination-only objects were kept: run with --delete (after --dry-run) to remove them")
    shown = [PathList.FAILURES, PathList.PROBLEMS, PathList.VANISHED, PathList.CHANGED, PathList.KEPT,
             PathList.DELETED, PathList.WOULD_DELETE, *([PathList.WOULD_UPLOAD] if summary["dry_run"] else [])]
    lines += path_lists(summary["lists"], shown, summary["destination"])
    lines += summary["notes"]
    if summary.get("proof"):
        lines += proof_lines(summary["proof"])
    lines.append(f"done in {summary['elapsed_seconds']:,.1f} s")
    return "\n".join(lines)


def proof_lines(proof: dict[str, Any]) -> list[str]:
    """``sync --verify``: the proof the pass took of what it left, in verify's terms."""
    if proof["verdict"] == "proved":
        lines = ["verify OK: destination matches the source (proved by this pass: compared against the listing, "
                 "what it changed looked at again)"]
    else:
        lines = ["verify FAILED: " + "; ".join(proof["reasons"])]
    counts = proof.get("counts")
    if counts is None:
        return lines
    lines.append(f"  object count (excluding _uploads): source {counts['source_files']:,} files, destination "
                 f"{proof['destination_objects']:,} objects after the pass (listed {counts['destination_listed']:,}, "
                 f"added {counts['added']:,}, destination-only {counts['extras']:,})")
    deleted = counts["destination_listed"] + counts["added"] - proof["destination_objects"]
    lines.append(f"  proved by the listing {counts['proved']:,}; looked at again after the pass "
                 f"{proof['confirmed']:,} (written {counts['written']:,}, compared {counts['compared']:,}, "
                 f"deleted {deleted:,}, of the destination-only zero-byte markers {counts['markers']:,})")
    lines.append("  checked: " + checked_line(proof["checked"]))
    return lines


def verify_text(summary: dict[str, Any]) -> str:
    counts = summary["counts"]
    lists = summary["lists"]
    differences = sum(lists.get(name.value, {}).get("count", 0) for name in DIFFERENCES)
    defects = sum(len(group["findings"]) for group in summary["findings"])
    if summary["exit_code"] == 0:
        verdict = "verify OK: " + ("destination matches the source" if summary["source"] else "no defects found")
    else:
        verdict = (f"verify FAILED: {differences:,} differences, {counts['markers']:,} markers, "
                   f"{defects:,} registry defects, {lists.get(PathList.FAILURES.value, {}).get('count', 0):,} errors")
    lines = [verdict, f"  {summary['source'] or '(no source)'} -> {summary['destination']}",
             f"  destination layout: {summary['destination_layout']}"]
    cutover = summary.get("cutover")
    if summary["source"] and cutover:
        lines.append(f"  object count (excluding _uploads): source {counts['source_files']:,} files, "
                     f"destination {counts['destination_objects']:,} objects (the registry writes it since the "
                     f"cut-over: each object is settled one by one)")
        def listed(name: PathList) -> int:
            return int(lists.get(name.value, {}).get("count", 0))

        lines.append(f"  cut-over at {cutover['time']}: {listed(PathList.WRITTEN_AFTER_CUTOVER):,} objects written "
                     f"since (the registry's own), {listed(PathList.DELETED_AFTER_CUTOVER):,} links deleted since, "
                     f"{listed(PathList.GONE_OR_LOST):,} gone that nothing tells apart")
    elif summary["source"]:
        match = "match" if counts["source_files"] == counts["destination_objects"] else "MISMATCH"
        lines.append(f"  object count (excluding _uploads): source {counts['source_files']:,} files, "
                     f"destination {counts['destination_objects']:,} objects: {match}")
    else:
        lines.append(f"  objects (excluding _uploads): {counts['destination_objects']:,}")
    apart = f"  counted apart: {counts['markers']:,} zero-byte markers"
    if counts["outside_registry"] or counts["source_outside_registry"]:
        apart += (f", outside the registry tree: {counts['source_outside_registry']:,} source files, "
                  f"{counts['outside_registry']:,} destination objects")
    lines.append(apart)
    if summary.get("checked"):
        lines.append("  checked: " + checked_line(summary["checked"]))
    lines += path_lists(lists, [*DIFFERENCES, PathList.MARKERS, PathList.FAILURES, PathList.PROBLEMS,
                                PathList.VANISHED, PathList.GONE_OR_LOST])
    if summary["deep"]:
        lines.append(f"registry semantics ({summary['deep']}): "
                     + ("consistent" if not summary["findings"] else f"{defects:,} defects"))
        proof = summary["deep_counts"]
        read = proof["manifests_read"] + proof["blobs_hashed"]
        lines.append(f"  links: {proof['links_proved_by_listing'] + proof['links_proved_by_source']:,} proved by "
                     f"their listed MD5, {proof['links_read']:,} read")
        lines.append(f"  blobs: {proof['manifests_read']:,} manifests read and hashed, {proof['blobs_hashed']:,} more "
                     f"blobs hashed; {proof['read_from_source']:,} of these {read:,} from the source's files, "
                     f"their MD5 the one the destination lists")
        for group in summary["findings"]:
            tags = f" (tags affected: {', '.join(group['tags'])})" if group["tags"] else ""
            lines.append(f"  {group['repository']}{tags}:")
            for finding in group["findings"][:SHOWN]:
                lines.append(f"    - {finding['problem']}")
            if len(group["findings"]) > SHOWN:
                lines.append(f"    ... {len(group['findings']) - SHOWN:,} more (see --json)")
    lines += summary["notes"]
    if counts["markers"]:
        lines.append("  markers show up as nameless tags: remove them with `regmig nameless-tags TARGET --fix`")
    lines += _repair_lines(summary)
    lines.append(f"done in {summary['elapsed_seconds']:.1f} s")
    return "\n".join(lines)


def checked_line(checked: dict[str, int]) -> str:
    return ", ".join(f"{checked[name]:,} {name}" for name in ("repositories", "tags", "manifests", "blobs", "links"))


def _repair_lines(summary: dict[str, Any]) -> list[str]:
    """After a failed verify: whether --state records were withdrawn, and what to run to repair."""
    trust = summary.get("trust")
    if not trust:
        return []
    if trust["withdrawn"]:
        lines = ["trust withdrawn: no --state record of this destination is believed any more (its generation "
                 "token moved), so the next sync lists it and repairs what differs"]
    else:
        lines = [f"could not withdraw trust in --state records of this destination ({trust['error']}): "
                 f"run the next sync WITHOUT --state, so that it lists the destination"]
    lines.append("to repair (with the same options as this verify):")
    lines += [f"  {command}" for command in summary["repair"]]
    return lines


_ACTIONS = {"changed": "kept (changed since listed: no longer a marker)"}


def markers_text(summary: dict[str, Any]) -> str:
    found = summary["found"]
    if summary["fix"]:
        head = (f"nameless-tags: removed {summary['removed']:,} of {found:,} markers; "
                + ("target is clean" if summary["remaining"] == 0 else f"{summary['remaining']:,} REMAIN"))
    else:
        head = ("nameless-tags: clean, no zero-byte markers" if not found
                else f"nameless-tags: {found:,} zero-byte markers found (run with --fix to remove them)")
    lines = [head, f"  {summary['target']} ({summary['layout']})"]
    for kind, count in sorted(summary["kinds"].items()):
        lines.append(f"  {count:>8,}  {kind}")
    for item in summary["markers"][:SHOWN]:
        repo = f"  [{item['repository']}]" if item.get("repository") else ""
        path = item["path"] or "(the root's own marker: an empty key named like the root, ending in '/')"
        lines.append(f"  {_ACTIONS.get(item['action'], item['action']):<8} {path}{repo}")
    if len(summary["markers"]) > SHOWN:
        lines.append(f"  ... {len(summary['markers']) - SHOWN:,} more (see --json)")
    lines += path_lists(summary.get("lists", {}), [PathList.FAILURES])
    lines += summary.get("notes", [])
    return "\n".join(lines)


def plan_text(summary: dict[str, Any]) -> str:
    lines = [f"plan {verdict(summary)}: {summary['source']} -> {summary['destination']}",
             f"  destination layout: {summary['destination_layout']}"]
    for name, outcomes in summary["areas"].items():
        parts = ", ".join(f"{outcome_label(outcome, summary['destination'])} {t['count']:,} "
                          f"({human_bytes(t['bytes'])})" for outcome, t in outcomes.items())
        lines.append(f"  {name:<13} {parts}")
    estimate = summary["estimate"]
    lines.append(f"  scan (list both sides, compare content): {estimate['scan_seconds']:,.1f} s")
    if "read_only_window_seconds" in estimate:
        lines.append(f"  measured writes: {estimate['small_write_seconds'] * 1000:.0f} ms per small object, "
                     f"{human_bytes(estimate['write_bytes_per_second'])}/s")
        rate = estimate["listing_objects_per_second"]
        lines.append(f"  measured listing: {rate:,} objects/s" if rate else "  measured listing: nothing to list yet")
        lines.append(f"estimated read-only window: {estimate['read_only_window_seconds']:,.0f} s = final sync --delete "
                     f"{estimate['final_pass_seconds']:,.0f} s + verify {estimate['proof_seconds']:,.0f} s "
                     f"({estimate['objects_after_final_pass']:,} objects; assumes {estimate['assumes']})")
        lines.append(f"  with the final pass proving what it leaves (sync --delete --verify): "
                     f"{estimate['one_pass_window_seconds']:,.0f} s")
        lines.append(f"  with verify --cutover-time after the switch (runbooks/verification.md): "
                     f"{estimate['final_pass_seconds']:,.0f} s")
    for flag in summary["flags"]:
        lines.append(f"FLAG: {flag}")
    lines += path_lists(summary["lists"], [PathList.FAILURES, PathList.PROBLEMS])
    lines += summary["notes"]
    return "\n".join(lines)


def doctor_text(summary: dict[str, Any]) -> str:
    lines = [f"doctor {verdict(summary)}: {summary['target']}"]
    lines += [f"  {c['level']:<5} {c['check']:<9} {c['message']}" for c in summary["checks"]]
    return "\n".join(lines)
