"""Run a job for its exchanges: locked, recorded in collect_run, monitored, stoppable.

Order: signal handlers -> lock files (prices first waits for a running
symbols) -> database prepared (migrations) -> advisory locks on a dedicated
connection -> per exchange: banner, dead runs marked, a 'running' row,
monitors' start pings, the work, the row's end, the end pings, the metrics file.
A lock held elsewhere raises LockBusy before the database is touched (file
lock) or before anything is written (advisory lock).
"""

import contextlib
import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from wombat_collect.config import mask_dsn
from wombat_collect.db.connection import connect, database_errors, describe_error
from wombat_collect.errors import Interrupted, WombatError
from wombat_collect.jobs import JobResult
from wombat_collect.ops import history, locks, metrics, monitor, signals

SEOUL = timezone(timedelta(hours=9), "KST")  # Asia/Seoul has had no daylight saving time since 1988

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobRequest:
    """One invocation of a job, as the CLI asked for it."""

    job: str
    exchanges: tuple
    arguments: dict
    wait: float = 0.0
    window: str | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class RunContext:
    """What every exchange's run of one invocation shares."""

    settings: object
    request: JobRequest
    dsn: str
    connection: object
    guard: signals.SignalGuard
    cooperative: bool


def run_job(settings, request, prepare, work, options=None):
    """Given a JobRequest, run work(exchange, dsn, exchange_id) -> JobResult for each exchange.

    prepare() -> (dsn, {code: id}) readies the database once the lock files are
    held. `options` is the PriceOptions collect_prices watches (a signal then
    stops the work cooperatively); without it a signal interrupts the work at once.
    Return the JobResults. Raise ConfigError (lock directory), LockBusy,
    Interrupted, or whatever error ended a run (after recording it).
    """
    with signals.trapped(options) as guard, contextlib.ExitStack() as stack:
        with guard.raising_mode():
            stack.enter_context(locks.file_locks(settings.lock_dir, request.job, request.exchanges,
                                                 request.wait, guard.check))
        dsn, exchange_ids = prepare()
        connection = stack.enter_context(lock_connection(dsn))
        with guard.raising_mode(), database_errors("taking the job's database lock"):
            locks.take_advisory_locks(connection, request.job, request.exchanges, request.wait, guard.check)
        context = RunContext(settings, request, dsn, connection, guard, options is not None)
        results = [run_exchange(context, code, exchange_ids[code], work) for code in request.exchanges]
        guard.check()
        return results


@contextlib.contextmanager
def lock_connection(dsn):
    """Given a DSN, yield a dedicated autocommit connection, closed (locks released) afterwards."""
    connection = connect(dsn, autocommit=True)
    try:
        yield connection
    finally:
        connection.close()


def run_exchange(context, exchange, exchange_id, work):
    """Given one exchange of the job, run its work recorded and monitored. Return its JobResult."""
    context.guard.check()
    context.guard.renew()
    logger.info("%s", banner(context, exchange))
    run_id = begin_run(context, exchange)
    started = time.monotonic()
    try:
        with monitor.monitored(context.settings, context.request.job, exchange, enabled=run_id is not None) as report:
            return execute(context, exchange, exchange_id, work, run_id, report, started)
    finally:
        if run_id is not None:
            metrics.refresh(context.settings.metrics_dir, context.connection)


def begin_run(context, exchange):
    """Given an exchange whose advisory lock we hold, mark its dead runs and insert our row.

    Return the new run id, or None for a dry run (which is not recorded).
    """
    job = context.request.job
    with database_errors("recording the run"):
        for run_id, host, pid, started_at in history.mark_dead_runs(context.connection, job, exchange):
            logger.warning("%s %s: run %d (pid %s on %s, started %s) ended without recording it; marked interrupted",
                           job, exchange, run_id, pid, host, f"{started_at.astimezone(SEOUL):%Y-%m-%d %H:%M %Z}")
        if context.request.dry_run:
            return None
        return history.start_run(context.connection, job, exchange, context.request.arguments)


def execute(context, exchange, exchange_id, work, run_id, report, started):
    """Given a recorded run, call the work and record how it ended. Return the JobResult.

    Re-raise an error that ended the run, once recorded.
    """
    try:
        with context.guard.raising_mode(not context.cooperative):
            result = work(exchange, context.dsn, exchange_id)
    except BaseException as error:
        status, result = ended_by(error, context.request.job, exchange, started)
        conclude(context, run_id, status, result, report)
        raise
    conclude(context, run_id, result.status, result, report)
    return result


def ended_by(error, job, exchange, started):
    """Given the exception that ended a run, return (status, JobResult with `fatal` set)."""
    interrupted = isinstance(error, (Interrupted, KeyboardInterrupt))
    result = getattr(error, "result", None) or JobResult(job, exchange)
    if isinstance(error, KeyboardInterrupt):
        result.fatal = "interrupted by SIGINT"
    elif isinstance(error, WombatError):
        result.fatal = str(error)
    else:
        result.fatal = f"{type(error).__name__}: {error}"
    result.duration = time.monotonic() - started
    return ("interrupted" if interrupted else "failed"), result


def conclude(context, run_id, status, result, report):
    """Given how a run ended, fill the monitors' Report and finish the history row (only warn on failure)."""
    report.status, report.summary, report.duration = status, result.summary(), result.duration
    if run_id is None:
        return
    try:
        record_end(context, run_id, status, result)
    except Exception as error:  # never hide the run's own outcome behind a bookkeeping error
        logger.warning("%s %s: cannot record the end of run %d: %s", result.job, result.exchange, run_id,
                       describe_error(error))


def record_end(context, run_id, status, result):
    """Given how a run ended, update its collect_run row on the lock connection.

    When the database dropped that connection (restart, terminated backend),
    the row is updated on a new one, so it does not stay 'running' and later
    pass for a killed run. Raise psycopg2.Error or DatabaseError if that fails too.
    """
    import psycopg2

    try:
        history.finish_run(context.connection, run_id, status, result)
        return
    except psycopg2.Error as error:
        if not context.connection.closed:
            raise
        logger.warning("%s %s: %s on the connection holding the job's lock; recording run %d on a new one",
                       result.job, result.exchange, describe_error(error), run_id)
    connection = connect(context.dsn, autocommit=True)
    try:
        history.finish_run(connection, run_id, status, result)
    finally:
        connection.close()


def banner(context, exchange):
    """Given an exchange, return the line that opens its run: who, when (both zones), where, what."""
    request = context.request
    now = datetime.now(timezone.utc)
    local = now.astimezone()
    what = request.window or "listing"
    if request.dry_run:
        what += ", dry run"
    return (f"{request.job} {exchange}: start on {socket.gethostname()} pid {os.getpid()}; {what}; "
            f"{now.astimezone(SEOUL):%Y-%m-%d %H:%M} Asia/Seoul = {local:%Y-%m-%d %H:%M} {local.tzname()} (host); "
            f"database {mask_dsn(context.dsn)}")
