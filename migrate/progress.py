"""The progress line on stderr: objects, bytes, rates and ETA, redrawn from the report's counters."""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from migrate.report import Phase, Report


def human_bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _eta(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _phase_line(phase: Phase, examined: int, elapsed: float) -> str:
    """A command that runs in stages (verify): the stage, how far it got, and the objects listed."""
    line = phase.name
    if phase.total is not None:
        line += f": {phase.done:,} of {phase.total:,}"
    elif phase.done:
        line += f": {phase.done:,}"
    return f"{line} | {examined:,} objects listed, {examined / elapsed:,.0f} obj/s | {_eta(elapsed)} elapsed"


class Progress:
    """Redraws one status line every ``interval`` seconds on a terminal (or prints lines elsewhere)."""

    def __init__(self, report: Report, stream: TextIO | None = None, interval: float = 0.5) -> None:
        self.report = report
        self.stream = stream = stream or sys.stderr
        self.interval = interval if stream.isatty() else max(interval, 10.0)
        self._tty = stream.isatty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="regmig-progress", daemon=True)

    def line(self) -> str:
        report = self.report
        elapsed = max(report.elapsed(), 1e-6)
        phase = report.current_phase()
        if phase is not None:
            return _phase_line(phase, report.examined, elapsed)
        uploaded = report.tally("uploaded").count + report.tally("would upload").count
        rate = report.done_bytes / elapsed
        if report.listing_finished and rate > 0:
            eta = "ETA " + _eta(max(report.planned_bytes - report.done_bytes, 0) / rate)
        else:
            eta = "listing"
        return (
            f"{report.examined:,} objects examined, {uploaded:,} copied, "
            f"{human_bytes(report.done_bytes)} of {human_bytes(report.planned_bytes)} | "
            f"{report.examined / elapsed:,.0f} obj/s {human_bytes(rate)}/s | {eta}"
        )

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._draw()

    def _draw(self, final: bool = False) -> None:
        if self._tty:
            self.stream.write("\r\x1b[K" + self.line() + ("\n" if final else ""))
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._draw(final=True)
