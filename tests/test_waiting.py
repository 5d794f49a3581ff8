"""wait_for: attempt until success or the deadline, checking for a signal in between."""

import signal
import time

import pytest

from wombat_collect.errors import Interrupted
from wombat_collect.waiting import POLL_SECONDS, wait_for


def succeeding_on(call_number):
    """Return an attempt() that fails until its `call_number`-th call, and the list of its calls."""
    calls = []

    def attempt():
        calls.append(time.monotonic())
        return len(calls) >= call_number

    return attempt, calls


def test_wait_for_returns_true_once_an_attempt_succeeds():
    attempt, calls = succeeding_on(3)
    assert wait_for(attempt, 30) is True
    assert len(calls) == 3
    assert calls[2] - calls[0] >= 2 * POLL_SECONDS * 0.9  # it polls, it does not spin


def test_wait_for_gives_up_after_wait_seconds():
    attempt, calls = succeeding_on(10**6)
    began = time.monotonic()
    assert wait_for(attempt, 0.5) is False
    assert 0.5 <= time.monotonic() - began < 5
    assert 2 <= len(calls) <= 0.5 / POLL_SECONDS + 2


def test_wait_for_no_wait_tries_exactly_once():
    attempt, calls = succeeding_on(2)
    assert wait_for(attempt, 0) is False
    assert len(calls) == 1


def test_wait_for_check_runs_between_attempts_and_may_stop_the_wait():
    attempt, calls = succeeding_on(10**6)
    checks = []

    def check():
        checks.append(len(calls))
        if len(checks) == 2:
            raise Interrupted(signal.SIGTERM)

    with pytest.raises(Interrupted) as raised:
        wait_for(attempt, 30, check)
    assert raised.value.signal_number == signal.SIGTERM
    assert checks == [1, 2] and len(calls) == 2
