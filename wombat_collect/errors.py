"""Exceptions that end a run, each with the exit code the operator sees.

Exit codes (documented in the README):
    0   all good
    1   the job, or any symbol, failed (also: database unreachable)
    2   usage or configuration error
    75  another run holds the lock (EX_TEMPFAIL: try later)
    130 interrupted by SIGINT, 143 by SIGTERM
"""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BUSY = 75
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class WombatError(Exception):
    """An error with a one-line message meant for the operator."""

    exit_code = EXIT_FAILED


class ConfigError(WombatError):
    """A missing or malformed setting (environment, .env file, flag)."""

    exit_code = EXIT_USAGE


class DatabaseError(WombatError):
    """The database could not be reached or refused an operation."""


class SchemaError(DatabaseError):
    """An existing database lacks tables or columns wombat-collect writes."""


class LockBusy(WombatError):
    """Another run of the same job holds its lock."""

    exit_code = EXIT_BUSY


class ExchangeError(WombatError):
    """An exchange answered with an error, or with something unreadable."""


class SymbolNotFound(ExchangeError):
    """The exchange does not know this symbol (any more)."""


class ExchangeBlocked(ExchangeError):
    """The exchange has blocked us (Upbit 418): stop that exchange's run at once."""


class AuthenticationError(ExchangeError):
    """The exchange rejected our credentials or token."""


class TokenExpired(AuthenticationError):
    """The access token expired or is invalid: get a new one and retry once."""


class Interrupted(WombatError):
    """SIGINT or SIGTERM arrived during a run."""

    def __init__(self, signal_number):
        import signal

        self.signal_number = signal_number
        self.exit_code = EXIT_SIGINT if signal_number == signal.SIGINT else EXIT_SIGTERM
        super().__init__(f"interrupted by {signal.Signals(signal_number).name}")


def describe_unexpected(error):
    """Given an exception nobody expected, return one redacted line naming its type (never a traceback)."""
    from wombat_collect.logging_setup import redact

    if isinstance(error, KeyboardInterrupt):
        return "interrupted by SIGINT"
    return " ".join(redact(f"unexpected {type(error).__name__}: {error}").split())
