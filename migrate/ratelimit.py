"""A request-rate cap shared by every worker, like the registry's ``maxrequestspersecond``."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """Spaces requests evenly at ``rate`` per second; every caller waits for its own slot.

    Slots are handed out under a lock and slept outside it, so in any one-second window at
    most ``rate`` requests (plus the one on the window edge) go out, retries included.
    """

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._interval = 1.0 / rate
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self._interval
        delay = slot - now
        if delay > 0:
            time.sleep(delay)
