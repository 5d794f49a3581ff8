"""SIGINT and SIGTERM during a run: record them, stop the work, exit 130 or 143.

Two ways to stop, chosen per stretch of code:
- cooperative (prices): the handler sets the shared stop event and
  PriceOptions.interrupted; workers stop between pages and collect_prices
  raises Interrupted itself;
- raising (symbols, lock waits): the handler raises Interrupted in the main
  thread at once.
Outside both (history writes, hooks) the signal is only recorded, and
SignalGuard.check() raises it at the next safe point.
"""

import contextlib
import signal
import threading

from wombat_collect.errors import Interrupted

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalGuard:
    """The signal state of one invocation: which signal arrived and who must be told."""

    def __init__(self, options=None):
        self.received = None
        self.options = options
        self.raising = False
        self.renew()

    def renew(self):
        """Give the next run a stop event of its own (a block (418) of one exchange sets it too)."""
        self.event = threading.Event()
        if self.received is not None:
            self.event.set()
        if self.options is not None:
            self.options.stop_event = self.event

    def handle(self, signal_number, frame):
        """Record the signal, stop cooperative work; raise Interrupted when in raising mode."""
        self.received = signal_number
        self.event.set()
        if self.options is not None:
            self.options.interrupted = signal_number
        if self.raising:
            raise Interrupted(signal_number)

    def check(self):
        """Raise Interrupted if a signal has arrived."""
        if self.received is not None:
            raise Interrupted(self.received)

    @contextlib.contextmanager
    def raising_mode(self, enabled=True):
        """Within the block (when enabled), a signal raises Interrupted at once."""
        self.check()
        previous, self.raising = self.raising, enabled
        try:
            yield
        finally:
            self.raising = previous


@contextlib.contextmanager
def trapped(options=None):
    """Given PriceOptions (or None), yield a SignalGuard handling SIGINT and SIGTERM.

    The previous handlers come back afterwards. Off the main thread (where
    Python cannot install handlers) the guard is yielded without handlers.
    """
    guard = SignalGuard(options)
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return
    previous = {number: signal.signal(number, guard.handle) for number in HANDLED_SIGNALS}
    try:
        yield guard
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
