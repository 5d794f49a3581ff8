"""The shared request pacer, on a simulated clock."""

import threading

import pytest

from wombat_collect.ratelimit import DEFAULT_MARGIN, MINIMUM_MARGIN, THROTTLED_MARGIN_STEP, RateLimiter


class SimulatedClock:
    """A clock whose sleep() advances time instead of waiting."""

    def __init__(self):
        self.now = 100.0
        self.lock = threading.Lock()

    def time(self):
        return self.now

    def sleep(self, seconds):
        with self.lock:
            self.now += seconds


def start_times(limiter, clock, count):
    times = []
    for _ in range(count):
        limiter.acquire()
        times.append(clock.now)
    return times


def test_acquire_spaces_requests_evenly_below_the_rate():
    clock = SimulatedClock()
    limiter = RateLimiter(10, clock=clock.time, sleep=clock.sleep)
    times = start_times(limiter, clock, 101)
    achieved = 100 / (times[-1] - times[0])
    assert abs(achieved - 10 * DEFAULT_MARGIN) < 1e-6


def test_acquire_never_exceeds_the_rate_in_any_window_even_without_margin():
    clock = SimulatedClock()
    limiter = RateLimiter(10, margin=1.5, clock=clock.time, sleep=clock.sleep)
    times = start_times(limiter, clock, 60)
    for index, start in enumerate(times):
        assert sum(1 for other in times if start <= other < start + 1.0) <= 10, index


def test_slow_down_spaces_later_requests_wider_down_to_the_minimum():
    clock = SimulatedClock()
    limiter = RateLimiter(10, clock=clock.time, sleep=clock.sleep)
    limiter.slow_down()
    times = start_times(limiter, clock, 101)
    assert 100 / (times[-1] - times[0]) == pytest.approx(10 * (DEFAULT_MARGIN - THROTTLED_MARGIN_STEP))
    for _ in range(100):
        limiter.slow_down()
    times = start_times(limiter, clock, 101)
    assert 100 / (times[-1] - times[0]) == pytest.approx(10 * MINIMUM_MARGIN)


def test_hold_delays_the_next_request():
    clock = SimulatedClock()
    limiter = RateLimiter(10, clock=clock.time, sleep=clock.sleep)
    limiter.acquire()
    limiter.hold(2.0)
    waited = limiter.acquire()
    assert waited >= 2.0


def test_observe_remaining_ignores_what_our_own_requests_explain():
    clock = SimulatedClock()
    limiter = RateLimiter(10, clock=clock.time, sleep=clock.sleep)
    start_times(limiter, clock, 10)
    limiter.observe_remaining(0)
    assert limiter.acquire() < 0.2


def test_observe_remaining_slows_down_when_another_client_shares_the_budget():
    clock = SimulatedClock()
    limiter = RateLimiter(10, clock=clock.time, sleep=clock.sleep)
    limiter.acquire()
    limiter.observe_remaining(1)
    assert limiter.acquire() >= 0.5
