"""The log of one run: where it starts, and how it ended.

Every file the log writes to starts with the run's header (regmig's version, host, pid and the
command line, secrets masked), also after a rotation, so a pass that logs ten million lines
never loses the line that says what it is. The last line says how the run ended: done, with
findings, failed, interrupted (SIGINT, SIGTERM). A run that is killed (SIGKILL, out of memory,
power loss) writes nothing more; it leaves its marker (``LOG.run-PID``, locked while it runs)
beside the log, and the next run that logs there finds the marker unlocked and says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from typing import TextIO

from migrate import __version__, redact

log = logging.getLogger("regmig")

ROTATE_BYTES = 256 * 1024 * 1024
ROTATED_KEPT = 20
"""20 rotated files of 256 MiB (gzipped): about 30 million object lines, three times a
ten-million-object pass, stay readable."""
_FORMAT = "%(asctime)s %(process)d %(levelname)s %(message)s"


def header(argv: list[str]) -> str:
    return (f"regmig {__version__} started on {socket.gethostname()} (pid {os.getpid()}): "
            f"{redact.redact(' '.join(redact.redact_argv(argv)))}")


def _file_handler(path: str, head: str) -> logging.Handler:
    """A rotating, multi-process-safe handler that writes the run's header before its first line
    and at the top of every fresh file it writes to after a rotation."""
    from concurrent_log_handler import ConcurrentRotatingFileHandler

    class HeadedHandler(ConcurrentRotatingFileHandler):  # type: ignore[misc]
        headed = False

        def do_write(self, msg: str) -> None:
            if self.stream is None or self.stream.closed:
                self.stream = self.do_open()
            # An empty file is one a rotation just started (inode numbers are reused, sizes are not).
            if not self.headed or os.fstat(self.stream.fileno()).st_size == 0:
                self.headed = True
                record = logging.LogRecord("regmig", logging.INFO, __file__, 0, head, None, None)
                msg = self.format(record) + self.terminator + msg
            super().do_write(msg)

    handler = HeadedHandler(path, maxBytes=ROTATE_BYTES, backupCount=ROTATED_KEPT, use_gzip=True)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(redact.RedactingFilter())
    return handler


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """-v: log records on stderr, looked up at each record, so a live progress display that has
    taken stderr over prints them above itself."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def _claim_marker(path: str) -> Iterator[str]:
    """Lock this run's marker beside the log; report the markers of runs that died unannounced."""
    for other in sorted(glob.glob(glob.escape(path) + ".run-*")):
        try:
            fd = os.open(other, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a run that is still going
        else:
            try:
                seen = json.loads(os.pread(fd, 4096, 0) or b"{}")
            except ValueError:
                seen = {}
            yield (f"an earlier run did not end: {seen.get('header', other)} (since {seen.get('started', '?')}) "
                   f"was killed (SIGKILL, out of memory, power loss, machine stopped) before it could log its end")
            os.unlink(other)
        finally:
            os.close(fd)


class RunLog:
    """Logging for one run: to ``path`` (if given) and, with ``verbosity``, to stderr."""

    def __init__(self, path: str | None, argv: list[str], verbosity: int = 0) -> None:
        self.path = path
        self.head = header(argv)
        self.verbosity = verbosity
        self._handlers: list[logging.Handler] = []
        self._marker_fd: int | None = None
        self._marker: str | None = None

    def __enter__(self) -> RunLog:
        logger = logging.getLogger("regmig")
        # Records below WARNING are not even built without a file or -v (millions of objects).
        level = logging.DEBUG if self.verbosity > 1 else logging.INFO
        logger.setLevel(level if self.path or self.verbosity else logging.WARNING)
        if self.verbosity:
            stderr = _StderrHandler()
            stderr.setFormatter(logging.Formatter("regmig: %(levelname)s %(message)s"))
            stderr.addFilter(redact.RedactingFilter())
            self._handlers.append(stderr)
        if self.path:
            self._handlers.append(_file_handler(self.path, self.head))
        for handler in self._handlers:
            logger.addHandler(handler)
        if self.path:
            for message in _claim_marker(self.path):
                log.warning("%s", message)
            self._hold_marker()
        elif self.verbosity:
            log.info("%s", self.head)
        return self

    def _hold_marker(self) -> None:
        assert self.path
        self._marker = f"{self.path}.run-{os.getpid()}"
        with contextlib.suppress(OSError):
            fd = os.open(self._marker, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            os.write(fd, json.dumps({"header": self.head, "started": started}).encode())
            self._marker_fd = fd

    def ended(self, how: str) -> None:
        """The run's last line: how it ended."""
        log.log(logging.INFO if how.startswith("done") else logging.WARNING, "run ended: %s", how)

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger("regmig")
        for handler in self._handlers:
            logger.removeHandler(handler)
            handler.close()
        if self._marker_fd is not None:
            assert self._marker
            with contextlib.suppress(OSError):
                os.unlink(self._marker)
            os.close(self._marker_fd)
