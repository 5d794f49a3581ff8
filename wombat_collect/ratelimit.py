"""A thread-safe request pacer shared by every worker talking to one exchange group.

The exchanges count requests in windows we cannot see, and network jitter
bunches requests together, so the pacer spaces requests evenly at a small
margin below the nominal rate and never lets more than `rate` start within
any one second. It slows down when the server says the window is nearly
spent by someone else, and backs off hard on an explicit "too many requests";
each such refusal also spaces the rest of the run's requests a little wider,
since it shows that the jitter on this path is larger than the margin allows.
"""

import threading
import time
from collections import deque

DEFAULT_MARGIN = 0.96  # measured against a strict sliding-window fake (see tests/benchmark_prices.py)
THROTTLED_MARGIN_STEP = 0.01  # each "too many requests" narrows the margin by this much ...
MINIMUM_MARGIN = 0.90  # ... down to this
WINDOW_SECONDS = 1.0
GUARDED_WINDOW_SECONDS = 1.02  # 20 ms of jitter between our send and the server's count


class RateLimiter:
    """Paces callers of `acquire()` to at most `rate` per second, evenly spaced."""

    def __init__(self, rate, margin=DEFAULT_MARGIN, clock=time.monotonic, sleep=time.sleep):
        self.rate = float(rate)
        self.margin = margin
        self.interval = 1.0 / (self.rate * margin)
        self.window_capacity = max(1, int(self.rate))
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self._started = deque()  # actual start times of the requests of the last window

    def acquire(self):
        """Block until the caller may send one request; return the time waited.

        First wait for the next evenly spaced slot; then, since a thread may wake
        late, check against the actual start times that no more than `rate`
        requests start within any window (plus a guard against network jitter).
        """
        began = self._clock()
        with self._lock:
            slot = max(began, self._next_slot)
            self._next_slot = slot + self.interval
        if slot > began:
            self._sleep(slot - began)
        while True:
            with self._lock:
                now = self._clock()
                while self._started and self._started[0] <= now - GUARDED_WINDOW_SECONDS:
                    self._started.popleft()
                if len(self._started) < self.window_capacity:
                    self._started.append(now)
                    return now - began
                wait = self._started[0] + GUARDED_WINDOW_SECONDS - now
            self._sleep(wait)

    def hold(self, seconds):
        """Delay every request not yet started by at least `seconds` from now."""
        with self._lock:
            self._next_slot = max(self._next_slot, self._clock() + seconds)

    def slow_down(self):
        """After the server refused a request as one too many: space requests wider for the rest of the run.

        Each call narrows the margin by THROTTLED_MARGIN_STEP, never below MINIMUM_MARGIN.
        """
        with self._lock:
            self.margin = max(MINIMUM_MARGIN, min(self.margin, 1.0) - THROTTLED_MARGIN_STEP)
            self.interval = 1.0 / (self.rate * self.margin)

    def observe_remaining(self, remaining):
        """Given the server's count of requests left in its current second, slow down if low.

        Our own requests of the last second explain most of the server's count;
        when the server reports fewer left than that explains, another client
        shares the budget, so wait for the server's window to roll over.
        """
        if remaining is None or remaining > 1:
            return
        with self._lock:
            now = self._clock()
            own = sum(1 for start in self._started if start > now - WINDOW_SECONDS)
        if remaining < self.window_capacity - own - 1:
            self.hold(WINDOW_SECONDS / 2)
