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
    """The signal state of one invocation: which signal arrived and who must be told.

    Several exchanges' runs may be attached at once (`--exchange all` runs them
    concurrently): a signal stops every one of them.
    """

    def __init__(self):
        self.received = None
        self.raising = False
        self._lock = threading.RLock()  # re-entrant: the handler may run while the main thread attaches
        self._attached = []  # (stop event, PriceOptions or None) of the runs under way

    def attach(self, options=None):
        """Given one run's PriceOptions (or None), give it a stop event of its own; return the event.

        A block (418) of one exchange sets that event only; a signal sets every one.
        """
        event = threading.Event()
        with self._lock:
            self._attached.append((event, options))
            if self.received is not None:
                self._tell(event, options)
        if options is not None:
            options.stop_event = event
        return event

    def handle(self, signal_number, frame):
        """Record the signal, stop cooperative work; raise Interrupted when in raising mode."""
        self.received = signal_number
        with self._lock:
            for event, options in self._attached:
                self._tell(event, options)
        if self.raising:
            raise Interrupted(signal_number)

    def _tell(self, event, options):
        event.set()
        if options is not None:
            options.interrupted = self.received

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
def trapped():
    """Yield a SignalGuard handling SIGINT and SIGTERM.

    The previous handlers come back afterwards. Off the main thread (where
    Python cannot install handlers) the guard is yielded without handlers.
    """
    guard = SignalGuard()
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return
    previous = {number: signal.signal(number, guard.handle) for number in HANDLED_SIGNALS}
    try:
        yield guard
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
