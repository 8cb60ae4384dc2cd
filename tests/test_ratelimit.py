"""The request-rate cap, on a simulated clock (no timing in tests)."""

from __future__ import annotations

from migrate.ratelimit import RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_requests_are_spaced_so_no_one_second_window_exceeds_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(50, clock=clock, sleep=clock.sleep)
    sent = []
    for _ in range(500):
        limiter.acquire()
        sent.append(clock.now)
    assert sent[-1] - sent[0] >= 499 / 50 - 1e-9
    for i, start in enumerate(sent):
        in_window = sum(1 for t in sent[i:] if t < start + 1.0 - 1e-6)  # the window [start, start + 1 s)
        assert in_window <= 50


def test_idle_time_is_not_banked_into_a_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    clock.now += 60  # a minute idle
    sent = []
    for _ in range(20):
        limiter.acquire()
        sent.append(clock.now)
    assert sum(1 for t in sent if t < sent[0] + 1.0 - 1e-6) <= 10
