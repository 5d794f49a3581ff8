"""Waiting for something that is taken or free at once: a lock, mostly.

A leaf module (the standard library only), so that db/ (the migration lock)
and ops/ (the job locks) both wait the same way without one importing the other.
"""

import time

POLL_SECONDS = 0.2


def wait_for(attempt, wait_seconds, check=None):
    """Given attempt() -> bool, call it until it succeeds or wait_seconds pass.

    Return True if it succeeded. check(), when given, runs between attempts
    (it raises Interrupted when a signal arrived).
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        if attempt():
            return True
        if time.monotonic() >= deadline:
            return False
        if check:
            check()
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
