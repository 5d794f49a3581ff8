"""The record every check returns (CheckResult), the report gathering them (CheckReport), and the guard that
turns a check's error into a CRITICAL line so the other checks still run."""

from dataclasses import dataclass, field
from datetime import datetime

from wombat_collect.errors import WombatError, describe_unexpected
from wombat_collect.ops.status import STATES

OK, WARNING, CRITICAL = STATES


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict: its name, ok/warning/critical, and one line saying what was found and what to do."""

    name: str
    state: str
    message: str


@dataclass
class CheckReport:
    """Every check's result, in order; `state` is the worst of them."""

    checked_at: datetime
    results: list = field(default_factory=list)

    @property
    def state(self):
        return max((result.state for result in self.results), key=STATES.index, default=OK)

    @property
    def exit_code(self):
        return STATES.index(self.state)


def result(name, state, message):
    """Given a check's name, state and message, return its CheckResult, the message on one line, secrets masked."""
    from wombat_collect.http_text import flatten

    return CheckResult(name, state, flatten(message))


def skipped(name, reason, state=WARNING):
    """Given a check's name and why it cannot run, return its 'skipped' CheckResult."""
    return result(name, state, f"skipped: {reason}")


def guarded(name, check, *arguments):
    """Given a check function and its arguments, return its result(s) as a list; an error becomes a CRITICAL line.

    A WombatError or database error says what went wrong; anything else is one
    redacted line, so one broken check never stops the others.
    """
    import psycopg2

    from wombat_collect.db.connection import describe_error

    try:
        found = check(*arguments)
    except WombatError as error:
        return [result(name, CRITICAL, str(error))]
    except psycopg2.Error as error:
        return [result(name, CRITICAL, describe_error(error))]
    except Exception as error:  # the last guard: one line, the other checks still run
        return [result(name, CRITICAL, describe_unexpected(error))]
    return found if isinstance(found, list) else [found]
