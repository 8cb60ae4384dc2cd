"""The report as a page for the change ticket (``--report FILE.html`` / ``.md``, ``regmig report``).

The same JSON summaries the commands print, laid out for a reader: the verdict first, then the
timings of every pass (with a small inline SVG chart when there are several passes or phases),
then per report its count check side by side, what it checked, and its findings. No template
engine and no assets: one self-contained file that opens anywhere and attaches to a ticket.
"""

from __future__ import annotations

import html as _html
from collections.abc import Iterable
from typing import Any

from migrate.outcome import DIFFERENCES, PathList
from migrate.progress import human_bytes
from migrate.render import checked_line, outcome_label

_GOOD = {"OK", "CLEAN"}
_WARN = {"FLAGGED", "WARNINGS"}
COLOURS = {"good": "#1a7f37", "warn": "#9a6700", "bad": "#cf222e"}
"""The verdict banner's background per tone (the screenshot test looks for these)."""
_FINDING_LISTS = [*DIFFERENCES, PathList.MARKERS, PathList.FAILURES, PathList.PROBLEMS, PathList.VANISHED,
                  PathList.CHANGED, PathList.DELETED, PathList.WOULD_DELETE, PathList.KEPT, PathList.OUTSIDE]
_RECORD_LISTS = [PathList.UPLOADED, PathList.WOULD_UPLOAD]
_SHOWN = 1000

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #1f2328; background: #fff; }
main { max-width: 1100px; margin: 0 auto; padding: 0 24px 48px; }
.verdict { color: #fff; padding: 28px 32px; margin: 0 0 24px; }
.verdict .word { font-size: 44px; font-weight: 700; letter-spacing: .02em; }
.verdict .what { font-size: 20px; margin-top: 4px; }
.verdict .where { font-family: ui-monospace, monospace; font-size: 14px; margin-top: 8px; opacity: .9; }
h1 { font-size: 22px; margin: 24px 0 8px; } h2 { font-size: 18px; margin: 28px 0 8px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #d0d7de; padding: 6px 12px; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.side td { font-size: 28px; font-weight: 600; text-align: center; min-width: 220px; }
.match { color: #1a7f37; font-weight: 700; } .mismatch { color: #cf222e; font-weight: 700; }
code, .path { font-family: ui-monospace, monospace; font-size: 13px; word-break: break-all; }
ul.paths { margin: 4px 0; padding-left: 20px; } .pass { border-top: 2px solid #d0d7de; margin-top: 32px; }
.muted { color: #59636e; }
"""


def tone(verdict: str) -> str:
    return "good" if verdict in _GOOD else "warn" if verdict in _WARN else "bad"


def _e(value: object) -> str:
    return _html.escape(str(value))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60:,} h {minutes % 60:02d} min"


def _verdict_of(summary: dict[str, Any]) -> str:
    from migrate.render import verdict

    return str(summary.get("verdict") or verdict(summary))


def headline(summary: dict[str, Any]) -> str:
    """The sentence under the verdict word."""
    command = summary["command"]
    verdict = _verdict_of(summary)
    if command == "verify":
        if verdict == "OK":
            return "verify: destination matches the source" if summary.get("source") else "verify: no defects found"
        return "verify: " + ", ".join(f"{count:,} {name}" for name, count in _verify_problems(summary).items())
    if command == "sync" and summary.get("proof"):
        proof = summary["proof"]
        return "sync --verify: " + ("everything copied, destination matches the source" if verdict == "OK" else
                                    "; ".join(proof["reasons"]) or "not everything was copied")
    if command == "sync":
        mode = " (dry run: nothing changed)" if summary.get("dry_run") else ""
        return f"sync{mode}: " + ("everything copied" if verdict == "OK" else "not everything was copied")
    if command == "plan":
        return "plan: " + (f"{len(summary.get('flags', [])):,} flags to act on" if summary.get("flags")
                           else "nothing to act on before the window")
    if command == "nameless-tags":
        return f"nameless-tags: {summary.get('found', 0):,} markers found, {summary.get('removed', 0):,} removed"
    return f"{command}: {verdict.lower()}"


def _verify_problems(summary: dict[str, Any]) -> dict[str, int]:
    lists = summary.get("lists", {})
    counts = summary.get("counts", {})
    return {
        "differences": sum(lists.get(name.value, {}).get("count", 0) for name in DIFFERENCES),
        "markers": counts.get("markers", 0),
        "registry defects": sum(len(group["findings"]) for group in summary.get("findings", [])),
        "errors": lists.get(PathList.FAILURES.value, {}).get("count", 0),
    }


def _overall(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The report whose verdict heads the page: the last proof (a verify, or a sync --verify), else the last pass."""
    verifies = [s for s in summaries if s["command"] == "verify" or s.get("proof")]
    return (verifies or summaries)[-1]


def chart(summaries: list[dict[str, Any]], width: int = 1000) -> str:
    """Inline SVG: one bar per pass, its length its duration, split into its phases."""
    row, label_width = 34, 300
    longest = max((s.get("elapsed_seconds") or 0 for s in summaries), default=0) or 1
    scale = (width - label_width - 110) / longest
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{row * len(summaries) + 10}" '
             f'role="img" aria-label="duration of each pass">']
    shades = ["#0969da", "#54aeff", "#218bff", "#80ccff"]
    for index, summary in enumerate(summaries):
        y = 5 + index * row
        elapsed = summary.get("elapsed_seconds") or 0
        label = f"{index + 1}. {_pass_name(summary)}"
        parts.append(f'<text x="0" y="{y + 20}" font-size="13" font-family="system-ui, sans-serif">{_e(label)}</text>')
        x = float(label_width)
        for number, phase in enumerate(_phases(summary)):
            length = max(phase["seconds"] * scale, 1.0)
            parts.append(f'<rect x="{x:.1f}" y="{y + 6}" width="{length:.1f}" height="20" '
                         f'fill="{phase.get("shade", shades[number % len(shades)])}"><title>{_e(phase["phase"])}: '
                         f'{_e(duration(phase["seconds"]))}</title></rect>')
            x += length
        colour = COLOURS[tone(_verdict_of(summary))]
        parts.append(f'<text x="{x + 8:.1f}" y="{y + 20}" font-size="13" fill="{colour}" '
                     f'font-family="system-ui, sans-serif">{_e(duration(elapsed))} {_e(_verdict_of(summary))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _phases(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's phases, with the time before the first (checks, lease, first listings) as ``starting``."""
    phases = list(summary.get("phases") or [])
    before = round((summary.get("elapsed_seconds") or 0) - sum(phase["seconds"] for phase in phases), 3)
    if before > 0:
        phases.insert(0, {"phase": "starting", "seconds": before, "shade": "#8c959f"})
    return phases


def _pass_name(summary: dict[str, Any]) -> str:
    name = summary["command"]
    if summary.get("dry_run"):
        name += " --dry-run"
    elif summary.get("delete"):
        name += " --delete"
    if summary.get("deep"):
        name += " --deep"
    if summary.get("proof"):
        name += " --verify"
    started = summary.get("started_at")
    return f"{name} ({started.replace('T', ' ')[:16]} UTC)" if started else name


def _timings_table(summaries: list[dict[str, Any]]) -> str:
    rows = ["<table><tr><th>pass</th><th>started (UTC)</th><th>finished (UTC)</th><th>duration</th>"
            "<th>phases</th><th>verdict</th></tr>"]
    for index, summary in enumerate(summaries):
        phases = ", ".join(f"{p['phase']} {duration(p['seconds'])}" for p in _phases(summary))
        rows.append(f"<tr><td>{index + 1}. {_e(_pass_name(summary).split(' (')[0])}</td>"
                    f"<td>{_e(summary.get('started_at', '?'))}</td><td>{_e(summary.get('finished_at', '?'))}</td>"
                    f"<td class=n>{_e(duration(summary.get('elapsed_seconds')))}</td><td>{_e(phases)}</td>"
                    f"<td>{_e(_verdict_of(summary))}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def counted(summary: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int] | None] | None:
    """The object count and what was checked, of a verify or of a sync that proved what it left
    (``sync --verify``: the destination as the pass left it); None for any other pass."""
    proof = summary.get("proof")
    if summary["command"] == "sync" and proof and proof.get("counts"):
        counts = {name: proof["counts"][name] for name in ("source_files", "markers", "outside_registry",
                                                            "source_outside_registry")}
        listed, added, after = proof["counts"]["destination_listed"], proof["counts"]["added"], \
            proof["destination_objects"]
        # Not a second count: what the pass's listing showed, with what it added and deleted.
        derived = f"after the pass: listed {listed:,} + added {added:,} - deleted {listed + added - after:,}"
        return {**counts, "destination_objects": after, "derived": derived}, proof["checked"]
    if summary["command"] == "verify" and summary.get("counts"):
        return summary["counts"], summary.get("checked")
    return None


def _count_check(summary: dict[str, Any]) -> str:
    view = counted(summary)
    if view is None:
        return ""
    counts, checked = view
    proved_by_pass = summary["command"] == "sync"
    out = ["<h2 id=count-check>Object count (excluding _uploads)</h2>"]
    if summary.get("source"):
        same = counts["source_files"] == counts["destination_objects"]
        verdict = _e(counts["derived"]) if "derived" in counts else ("match" if same else "MISMATCH")
        out.append(f'<table class="side"><tr><th>source files</th><th>destination objects</th></tr>'
                   f'<tr><td>{counts["source_files"]:,}</td><td>{counts["destination_objects"]:,}</td></tr></table>'
                   f'<p class="{"match" if same else "mismatch"}">{verdict}</p>')
    else:
        out.append(f'<table class="side"><tr><th>destination objects</th></tr>'
                   f'<tr><td>{counts["destination_objects"]:,}</td></tr></table>')
    markers = "zero-byte markers (destination-only: deleted by --delete)" if proved_by_pass else "zero-byte markers"
    out.append(f"<p>Counted apart: {counts['markers']:,} {markers}, {counts['outside_registry']:,} "
               f"destination objects and {counts['source_outside_registry']:,} source files outside the "
               f"registry tree.</p>")
    out.append("<h2 id=checked>What was checked</h2><ul>")
    if checked:
        out.append(f"<li>{_e(checked_line(checked))}</li>")
    if proved_by_pass:
        out.append(f"<li>every object: compared with the source by the pass itself (blobs by size, links and other "
                   f"files by content); the {summary['proof']['confirmed']:,} it wrote, compared or deleted looked "
                   f"at again after it</li>")
    else:
        out.append("<li>every object: " + ("compared with the source (blobs by size, links and other files by "
                                           "content)" if summary.get("source") else "listed (no source given)") + "</li>")
    out.append("<li>registry semantics: " + (_e(summary["deep"]) + " (tags, manifests, links, blob digests)"
                                             if summary.get("deep") else "not checked (no --deep)") + "</li></ul>")
    return "".join(out)


def _outcomes(summary: dict[str, Any]) -> str:
    outcomes = summary.get("outcomes")
    if not outcomes or summary["command"] not in ("sync", "plan"):
        return ""
    rows = ["<h2>Objects</h2><table><tr><th>outcome</th><th>objects</th><th>bytes</th></tr>"]
    for outcome, data in outcomes.items():
        rows.append(f"<tr><td>{_e(outcome_label(outcome, summary.get('destination')))}</td>"
                    f"<td class=n>{data['count']:,}</td><td class=n>{_e(human_bytes(data['bytes']))}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _path_list(title: str, data: dict[str, Any], open_: bool) -> str:
    listed = data.get("listed", [])[:_SHOWN]
    more = f", {len(listed):,} listed here, the rest in the log" if data["count"] > len(listed) else ""
    items = "".join(f"<li><span class=path>{_e(item['path'] or '(the root itself)')}</span>"
                    + (f": {_e(item['message'])}" if item.get("message") else "") + "</li>" for item in listed)
    return (f"<details{' open' if open_ else ''}><summary>{_e(title)} ({data['count']:,}{more})</summary>"
            f"<ul class=paths>{items}</ul></details>")


def _findings(summary: dict[str, Any]) -> str:
    lists = summary.get("lists", {})
    out = ["<h2 id=findings>Findings</h2>"]
    found = False
    for name in _FINDING_LISTS:
        data = lists.get(name.value)
        if data and data["count"]:
            found = True
            out.append(_path_list(outcome_label(name.value, summary.get("destination")), data, open_=True))
    for group in summary.get("findings", []):
        found = True
        tags = f" (tags affected: {', '.join(group['tags'])})" if group.get("tags") else ""
        out.append(f"<p><b>{_e(group['repository'])}</b>{_e(tags)}</p><ul>"
                   + "".join(f"<li>{_e(f['problem'])}</li>" for f in group["findings"]) + "</ul>")
    for flag in summary.get("flags", []):
        found = True
        out.append(f"<p><b>FLAG:</b> {_e(flag)}</p>")
    if summary.get("delete_refused"):
        found = True
        out.append(f"<p><b>Deletes refused:</b> {_e(summary['delete_refused'])}</p>")
    for check in summary.get("checks", []):
        found = True
        out.append(f"<p><b>{_e(check['level'])}</b> {_e(check['check'])}: {_e(check['message'])}</p>")
    if summary.get("repair"):
        out.append("<p>To repair, in order:</p><pre>" + _e("\n".join(summary["repair"])) + "</pre>")
    if not found:
        out.append("<p>None.</p>")
    for name in _RECORD_LISTS:
        data = lists.get(name.value)
        if data and data["count"]:
            out.append(_path_list(outcome_label(name.value, summary.get("destination")), data, open_=False))
    if summary.get("notes"):
        out.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(note)}</li>" for note in summary["notes"]) + "</ul>")
    return "".join(out)


def _run_facts(summary: dict[str, Any]) -> str:
    rows = [("source", summary.get("source") or "(none)"), ("destination", summary.get("destination")),
            ("layout", summary.get("destination_layout") or summary.get("layout")),
            ("started", summary.get("started_at")), ("finished", summary.get("finished_at")),
            ("duration", duration(summary.get("elapsed_seconds"))), ("exit code", summary.get("exit_code")),
            ("regmig", summary.get("regmig_version")), ("host", summary.get("host")),
            ("command line", " ".join(summary.get("argv") or []))]
    return "<table>" + "".join(f"<tr><th>{_e(k)}</th><td><code>{_e(v)}</code></td></tr>"
                               for k, v in rows if v not in (None, "")) + "</table>"


def _banner(summary: dict[str, Any]) -> str:
    verdict = _verdict_of(summary)
    where = f"{summary.get('source') or '(no source)'} → {summary.get('destination')}"
    return (f'<header id="verdict" class="verdict {tone(verdict)}" style="background:{COLOURS[tone(verdict)]}">'
            f'<div class="word">{_e(verdict)}</div><div class="what">{_e(headline(summary))}</div>'
            f'<div class="where">{_e(where)}</div></header>')


def page(summaries: list[dict[str, Any]]) -> str:
    """The whole page: verdict, timings (chart when there is more than one bar to compare), passes."""
    overall = _overall(summaries)
    title = "regmig migration report" if len(summaries) > 1 else f"regmig {overall['command']} report"
    body = [_banner(overall), "<main>", f"<h1>{_e(title)}</h1>", "<h2 id=timings>Timings</h2>"]
    if len(summaries) > 1 or len(overall.get("phases", [])) > 1:
        body.append(chart(summaries))
    body.append(_timings_table(summaries))
    for index, summary in enumerate(reversed(summaries)):
        number = len(summaries) - index
        if len(summaries) > 1:
            body.append(f'<section class="pass"><h1>Pass {number}: {_e(_pass_name(summary))} '
                        f'— {_e(_verdict_of(summary))}</h1><p>{_e(headline(summary))}</p>')
        else:
            body.append("<section>")
        body += [_count_check(summary), _outcomes(summary), _findings(summary), "<h2>Run</h2>",
                 _run_facts(summary), "</section>"]
    body.append("</main>")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n")


def _md_list(title: str, data: dict[str, Any]) -> Iterable[str]:
    yield f"**{title}** ({data['count']:,}):"
    yield ""
    for item in data.get("listed", [])[:_SHOWN]:
        message = f": {item['message']}" if item.get("message") else ""
        yield f"- `{item['path'] or '(the root itself)'}`{message}"
    if data["count"] > len(data.get("listed", [])):
        yield f"- ... {data['count'] - len(data.get('listed', [])):,} more (in the log)"
    yield ""


def markdown(summaries: list[dict[str, Any]]) -> str:
    """The same report as Markdown, for a ticket system that renders it."""
    overall = _overall(summaries)
    out = [f"# {_verdict_of(overall)}: {headline(overall)}", "",
           f"`{overall.get('source') or '(no source)'}` → `{overall.get('destination')}`", "", "## Timings", "",
           "| pass | started (UTC) | finished (UTC) | duration | verdict |", "|---|---|---|---|---|"]
    for index, summary in enumerate(summaries):
        out.append(f"| {index + 1}. {_pass_name(summary).split(' (')[0]} | {summary.get('started_at', '?')} | "
                   f"{summary.get('finished_at', '?')} | {duration(summary.get('elapsed_seconds'))} | "
                   f"{_verdict_of(summary)} |")
    out.append("")
    for index, summary in enumerate(reversed(summaries)):
        out += [f"## Pass {len(summaries) - index}: {_pass_name(summary)}: {_verdict_of(summary)}", ""]
        view = counted(summary)
        if view is not None:
            counts, checked = view
            if summary.get("source"):
                same = counts["source_files"] == counts["destination_objects"]
                out += ["| source files | destination objects | |", "|---:|---:|---|",
                        f"| {counts['source_files']:,} | {counts['destination_objects']:,} | "
                        f"{counts.get('derived') or ('match' if same else 'MISMATCH')} |", ""]
            if checked:
                out += [f"Checked: {checked_line(checked)}; registry semantics: "
                        f"{summary.get('deep') or 'not checked (no --deep)'}.", ""]
        for name, data in summary.get("outcomes", {}).items():
            out.append(f"- {outcome_label(name, summary.get('destination'))}: {data['count']:,} objects, "
                       f"{human_bytes(data['bytes'])}")
        out.append("")
        for name in _FINDING_LISTS:
            data = summary.get("lists", {}).get(name.value)
            if data and data["count"]:
                out += list(_md_list(outcome_label(name.value, summary.get("destination")), data))
        for group in summary.get("findings", []):
            out += [f"**{group['repository']}**:", "", *(f"- {f['problem']}" for f in group["findings"]), ""]
        out += [f"- FLAG: {flag}" for flag in summary.get("flags", [])]
        out += [f"- {c['level']} {c['check']}: {c['message']}" for c in summary.get("checks", [])]
        out += [f"- note: {note}" for note in summary.get("notes", [])]
        out += ["", f"regmig {summary.get('regmig_version', '?')} on {summary.get('host', '?')}: "
                    f"`{' '.join(summary.get('argv') or [])}`", ""]
    return "\n".join(out)
