"""Progress of a long run, read from the report's counters: live lines on a terminal (drawn by
rich, fitted to its width), and a plain line every ``interval`` seconds where stderr is a file
(nohup, systemd) and in the log.

Rates are over a moving window (the last ``WINDOW`` seconds), so they follow the run instead of
falling with an average since the start; totals come from the report (``Report.totals``: exact
once the walk has ended, estimated before) and are marked ``~`` while estimated.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from migrate.estimate import Totals
from migrate.report import Report

log = logging.getLogger("regmig")

WINDOW = 20.0
"""Seconds of history the rates are measured over."""
MIN_WINDOW = 2.0
"""No rate (and no ETA) from less history than this."""
REFRESH = 0.5
"""Seconds between redraws of the live display, and between samples for the rates."""
_VERBS = {"sync": "copy", "plan": "plan", "verify": "verify", "nameless-tags": "scan"}


def human_bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@dataclass(frozen=True)
class Snapshot:
    """What the display shows at one moment."""

    command: str
    phase: str
    elapsed: float
    done: int
    """Objects finished: with a result (sync, plan), or examined (verify, nameless-tags)."""
    written: int
    bytes_done: int
    totals: Totals | None
    object_rate: float | None
    byte_rate: float | None
    eta: float | None

    @property
    def copies(self) -> bool:
        return self.command in ("sync", "plan")


class Meter:
    """Samples the report and turns the samples into rates over the window and an ETA."""

    def __init__(self, report: Report, command: str, now: Callable[[], float] = time.monotonic) -> None:
        self.report = report
        self.command = command
        self._now = now
        self._samples: collections.deque[tuple[float, int, int]] = collections.deque()

    def sample(self) -> Snapshot:
        report = self.report
        now = self._now()
        copies = self.command in ("sync", "plan")
        done = report.results if copies else report.examined
        written = report.written()
        self._samples.append((now, done, report.done_bytes))
        while len(self._samples) > 2 and now - self._samples[1][0] >= WINDOW:
            self._samples.popleft()
        first = self._samples[0]
        span = now - first[0]
        object_rate = (done - first[1]) / span if span >= MIN_WINDOW else None
        byte_rate = (report.done_bytes - first[2]) / span if span >= MIN_WINDOW else None
        totals = report.totals()
        return Snapshot(self.command, report.phase, report.elapsed(), done, written, report.done_bytes, totals,
                        object_rate, byte_rate if copies else None,
                        _eta(totals, done, report.done_bytes, object_rate, byte_rate if copies else None))


def _eta(totals: Totals | None, done: int, bytes_done: int, object_rate: float | None,
         byte_rate: float | None) -> float | None:
    """The slower of the two: objects left at the object rate, bytes left at the byte rate."""
    if totals is None or not object_rate:
        return None
    eta = max(totals.objects - done, 0) / object_rate
    bytes_left = max(totals.bytes - bytes_done, 0)
    if bytes_left and byte_rate:
        eta = max(eta, bytes_left / byte_rate)
    return eta


def _of(done: str, total: str | None, exact: bool) -> str:
    return done if total is None else f"{done} of {'' if exact else '~'}{total}"


def _segments(snap: Snapshot) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """The two lines' pieces, each with a priority (lower is dropped first when space runs out)."""
    totals = snap.totals
    exact = totals.exact if totals else False
    objects = _of(f"{snap.done:,}", f"{totals.objects:,}" if totals else None, exact) + " objects"
    first = [(9, objects)]
    if snap.copies:
        first.append((3, f"{snap.written:,} {'written' if snap.command == 'sync' else 'to write'}"))
    second: list[tuple[int, str]] = []
    if snap.copies:
        second.append((8, _of(human_bytes(snap.bytes_done), human_bytes(totals.bytes) if totals else None, exact)))
    if snap.object_rate is not None:
        second.append((6, f"{snap.object_rate:,.0f} obj/s"))
    if snap.byte_rate is not None:
        second.append((5, f"{human_bytes(snap.byte_rate)}/s"))
    second.append((10, f"ETA {'' if exact else '~'}{clock(snap.eta)}" if snap.eta is not None
                   else "ETA estimating"))
    second.append((2, f"elapsed {clock(snap.elapsed)}"))
    return first, second


def _fit(pieces: list[tuple[int, str]], width: int, separator: str = "  ") -> str:
    """Join the pieces, dropping the least important until the line fits ``width``."""
    kept = list(pieces)
    while kept and len(separator.join(text for _, text in kept)) > width:
        kept.remove(min(kept, key=lambda piece: piece[0]))
    return separator.join(text for _, text in kept)[:width]


def terminal_lines(snap: Snapshot, width: int) -> list[str]:
    """The live display: a label, a bar and the objects; then bytes, rates and the ETA. Never
    wider than ``width`` (down to 20 columns), so a narrow pane never wraps a redraw."""
    label = (snap.phase or _VERBS.get(snap.command, snap.command))[:14]
    first, second = _segments(snap)
    head = f"{label:<14} "
    share = None
    if snap.totals and snap.totals.objects:
        share = min(snap.done / snap.totals.objects, 1.0)
    percent = f" {share:4.0%} " if share is not None else " "
    tail = _fit(first, max(width - len(head) - len(percent) - 10, 0))
    bar_width = min(max(width - len(head) - len(percent) - len(tail) - 1, 0), 40)
    if bar_width >= 10 and share is not None:
        filled = round(bar_width * share)
        bar = "━" * filled + "─" * (bar_width - filled) + percent
    else:
        bar = "" if share is None else percent.lstrip()
    line1 = (head + bar + tail)[:width]
    line2 = (" " * len(head) + _fit(second, width - len(head)))[:width] if width > len(head) + 12 \
        else _fit(second, width)
    return [line1.rstrip(), line2.rstrip()]


def plain_line(snap: Snapshot) -> str:
    """One line for a file or the log: every piece, nothing dropped."""
    first, second = _segments(snap)
    label = snap.phase or _VERBS.get(snap.command, snap.command)
    share = ""
    if snap.totals and snap.totals.objects:
        share = f" ({min(snap.done / snap.totals.objects, 1.0):.0%})"
    pieces = [first[0][1] + share, *(text for _, text in first[1:]), *(text for _, text in second)]
    return f"{snap.command}: {label}: " + ", ".join(pieces)


class Progress:
    """Shows progress while a command runs: live on a terminal, else (or also, for the log) a
    plain line every ``interval`` seconds. ``show``: draw on ``stream`` at all; the log gets its
    lines whenever it records INFO."""

    def __init__(self, report: Report, command: str, *, show: bool, interval: float = 30.0,
                 stream: TextIO | None = None, final_line: bool = False) -> None:
        self.meter = Meter(report, command)
        self.stream = stream or sys.stderr
        self.show = show
        self.live = show and self.stream.isatty()
        self.interval = interval
        self.final_line = final_line
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="regmig-progress", daemon=True)
        self._display: Any = None
        self._console: Any = None
        self._snapshot = self.meter.sample()

    def _run(self) -> None:
        last_line = time.monotonic()
        while not self._stop.wait(REFRESH):
            self._snapshot = self.meter.sample()
            if self._display is not None:
                self._display.refresh()
            if time.monotonic() - last_line >= self.interval:
                last_line = time.monotonic()
                self._line(self._snapshot)

    def _line(self, snap: Snapshot) -> None:
        line = plain_line(snap)
        if log.isEnabledFor(logging.INFO):
            log.info("progress: %s", line)
        if self.show and not self.live:
            self.stream.write(line + "\n")
            self.stream.flush()

    def _renderable(self):  # type: ignore[no-untyped-def]
        from rich.text import Text

        assert self._console is not None
        width = self._console.size.width
        return Text("\n".join(terminal_lines(self._snapshot, width)), no_wrap=True, overflow="crop")

    def __enter__(self) -> Progress:
        if self.live:
            from rich.console import Console
            from rich.live import Live

            self._console = Console(file=self.stream, highlight=False)
            self._display = Live(get_renderable=self._renderable, console=self._console, auto_refresh=False,
                                 redirect_stdout=False, redirect_stderr=self.stream is sys.stderr)
            self._display.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._snapshot = self.meter.sample()
        if self._display is not None:
            self._display.refresh()
            self._display.stop()
        elif self.final_line and self.show:
            self._line(self._snapshot)
