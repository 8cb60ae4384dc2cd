"""Human text for a finished report: the verdict first, then the counts, then what needs attention."""

from __future__ import annotations

from typing import Any

from migrate.progress import human_bytes

SHOWN = 10
"""How many paths of each list the terminal shows; --json has them all (up to the report's cap)."""


def outcome_lines(outcomes: dict[str, Any]) -> list[str]:
    lines = []
    for outcome, data in outcomes.items():
        reasons = ", ".join(f"{reason} {r['count']:,}" for reason, r in data["by_reason"].items())
        lines.append(f"  {outcome:<17} {data['count']:>10,} objects {human_bytes(data['bytes']):>11}   ({reasons})")
    return lines


def path_lists(lists: dict[str, Any], names: list[str]) -> list[str]:
    lines = []
    for name in names:
        data = lists.get(name)
        if not data or not data["count"]:
            continue
        lines.append(f"{name} ({data['count']:,}):")
        for item in data["listed"][:SHOWN]:
            message = f": {item['message']}" if item.get("message") else ""
            lines.append(f"  {item['path']}{message}")
        if data["count"] > SHOWN:
            lines.append(f"  ... {data['count'] - SHOWN:,} more (see --json or --log-file)")
    return lines


def sync_text(summary: dict[str, Any]) -> str:
    verdict = "OK" if summary["exit_code"] == 0 else "INCOMPLETE"
    mode = " (dry run: nothing changed)" if summary["dry_run"] else ""
    lines = [
        f"sync {verdict}{mode}: {summary['source']} -> {summary['destination']}",
        f"  destination layout: {summary['destination_layout']}",
        *outcome_lines(summary["outcomes"]),
    ]
    if summary["delete_refused"]:
        lines.append(f"DELETES REFUSED: {summary['delete_refused']}")
    elif not summary["delete"] and "not deleted" in summary["outcomes"]:
        lines.append("  destination-only objects were kept: run with --delete (after --dry-run) to remove them")
    lines += path_lists(summary["lists"], ["failures", "problems", "vanished", "changed", "kept", "deleted", "would delete"])
    lines += summary["notes"]
    lines.append(f"done in {summary['elapsed_seconds']:.1f} s")
    return "\n".join(lines)
