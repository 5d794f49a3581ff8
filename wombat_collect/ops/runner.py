"""Run a job for its exchanges: locked, recorded in collect_run, monitored, stoppable.

Order: signal handlers -> lock files (prices first waits for a running
symbols) -> database prepared (migrations) -> one advisory lock per exchange,
each on a dedicated connection -> per exchange: lock re-checked, banner, dead
runs marked, a 'running' row, monitors' start pings, the work, the lock
re-checked, the row's end, the end pings, the metrics file. A lock held
elsewhere raises LockBusy before the database is touched (file lock) or before
anything is written (advisory lock): every lock is taken before any work.

Cooperative jobs (prices) run their exchanges concurrently, one thread each,
with their own limiter, lock, run row and summary; the others (symbols) run
one exchange after the other in the main thread, where a signal interrupts
them at once. One exchange's failure never stops another's run.
"""

import contextlib
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from wombat_collect.config import mask_dsn
from wombat_collect.db.connection import connect, database_errors, describe_error
from wombat_collect.db.queries import statement
from wombat_collect.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SIGINT,
    Interrupted,
    WombatError,
    describe_unexpected,
)
from wombat_collect.jobs.results import JobResult
from wombat_collect.ops import history, locks, metrics, monitor, signals

SEOUL = timezone(timedelta(hours=9), "KST")  # Asia/Seoul has had no daylight saving time since 1988
LOCK_APPLICATION_NAME = "wombat-collect lock {job} {exchange}"  # pg_stat_activity shows who holds which lock

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
    lock_job: str | None = None  # the job whose locks it takes (repair: prices); None: its own
    shared_lock: bool = False  # backfill workers (prices --worker) hold the job's locks together

    @property
    def lock_name(self):
        """Return the job name its lock files and advisory locks are taken under."""
        return self.lock_job or self.job


@dataclass
class AdvisoryLock:
    """One exchange's advisory lock and the dedicated connection (session) holding it."""

    job: str
    exchange: str
    dsn: str
    shared: bool = False  # held in shared mode, beside other backfill workers
    connection: object = None

    @property
    def key(self):
        return locks.advisory_key(self.job, self.exchange)


@dataclass(frozen=True)
class RunContext:
    """What every exchange's run of one invocation shares."""

    settings: object
    request: JobRequest
    dsn: str
    locks: dict
    guard: signals.SignalGuard
    options: dict | None = None  # {exchange code: PriceOptions} of cooperative work


@dataclass
class Outcome:
    """How one exchange's run ended: its JobResult, and the error that ended it, if one did."""

    result: JobResult
    error: BaseException | None = None

    @property
    def exit_code(self):
        """Return this exchange's exit code: 0 succeeded, 1 failed, or the ending error's own code."""
        if self.error is None:
            return EXIT_OK if self.result.status == "succeeded" else EXIT_FAILED
        if isinstance(self.error, KeyboardInterrupt):
            return EXIT_SIGINT
        return getattr(self.error, "exit_code", EXIT_FAILED)

    def message(self):
        """Return the one line that reports this run: its summary, or what ended it (naming the exchange)."""
        if self.error is None:
            return self.result.summary()
        text = describe_unexpected(self.error) if not isinstance(self.error, WombatError) else str(self.error)
        prefix = f"{self.result.job} {self.result.exchange}"
        return text if text.startswith((prefix, f"{self.result.exchange}:")) else f"{prefix}: {text}"


class LockLost(WombatError):
    """The session holding an exchange's advisory lock ended, and the lock could not be taken again."""


def run_job(settings, request, prepare, work, options=None):
    """Given a JobRequest, run work(exchange, dsn, exchange_id) -> JobResult for each exchange.

    prepare() -> (dsn, {code: id}) readies the database once the lock files are
    held. `options` ({exchange code: PriceOptions}) marks cooperative work: a
    signal then stops each exchange's collect_prices, and the exchanges run
    concurrently; without it they run in turn and a signal interrupts at once.
    Return one Outcome per exchange, in request order. Raise ConfigError (lock
    directory), LockBusy or Interrupted before any work, DatabaseError if the
    locks cannot be taken.
    """
    with signals.trapped() as guard, contextlib.ExitStack() as stack:
        with guard.raising_mode():
            stack.enter_context(locks.file_locks(settings.lock_dir, request.lock_name, request.exchanges,
                                                 request.wait, guard.check, request.shared_lock))
        dsn, exchange_ids = prepare()
        held = {code: AdvisoryLock(request.lock_name, code, dsn, request.shared_lock) for code in request.exchanges}
        stack.callback(release_locks, held.values())
        with guard.raising_mode(), database_errors("taking the job's database lock"):
            for lock in held.values():
                lock.connection = open_lock_connection(dsn, lock)
                locks.take_advisory_locks(lock.connection, request.lock_name, [lock.exchange], request.wait,
                                          guard.check, lock.shared)
        context = RunContext(settings, request, dsn, held, guard, options)
        outcomes = run_exchanges(context, exchange_ids, work)
        guard.check()
        return outcomes


def run_exchanges(context, exchange_ids, work):
    """Given the job's context, run every exchange: concurrently when cooperative. Return their Outcomes."""
    codes = context.request.exchanges
    if context.options is None or len(codes) == 1:
        return [run_exchange(context, code, exchange_ids[code], work) for code in codes]
    with ThreadPoolExecutor(max_workers=len(codes), thread_name_prefix="exchange") as executor:
        futures = [executor.submit(run_exchange, context, code, exchange_ids[code], work) for code in codes]
        return [future.result() for future in futures]


def open_lock_connection(dsn, lock):
    """Given an AdvisoryLock, return a new autocommit connection named after it (not yet locking)."""
    connection = connect(dsn, autocommit=True)
    with connection.cursor() as cursor:
        cursor.execute(statement("set_application_name"),
                       {"name": LOCK_APPLICATION_NAME.format(job=lock.job, exchange=lock.exchange)})
    return connection


def release_locks(held):
    """Given AdvisoryLocks, close their connections (which releases the locks)."""
    for lock in held:
        if lock.connection is not None:
            lock.connection.close()


def holds_lock(lock):
    """Given an AdvisoryLock, return whether its connection's session still holds it.

    Raise psycopg2.Error if the connection is gone.
    """
    with lock.connection.cursor() as cursor:
        cursor.execute(statement("holds_advisory_lock"), {"key": lock.key})
        return cursor.fetchone()[0]


def ensure_lock(lock):
    """Given an AdvisoryLock, make sure its session still holds it; take it again on a new one if not.

    A database restart, idle_session_timeout or a transaction-mode pooler drop a
    session lock silently. The lock is checked in pg_locks (taking it again on a
    session that holds it would stack it). Raise LockLost if another session
    took it meanwhile, DatabaseError if no new connection can be opened.
    """
    import psycopg2

    try:
        if holds_lock(lock):
            return
        reason = "no longer held by its session"
    except psycopg2.Error as error:
        reason = describe_error(error)
    lock.connection.close()
    lock.connection = None
    connection = open_lock_connection(lock.dsn, lock)
    with database_errors("taking the job's database lock again"):
        taken = locks.try_advisory_lock(connection, lock.key, lock.shared)
    if not taken:
        connection.close()
        raise LockLost(f"lost its database lock ({reason}) and another run holds it now")
    lock.connection = connection
    logger.warning("%s %s: lost its database lock (%s); took it again", lock.job, lock.exchange, reason)


def run_exchange(context, exchange, exchange_id, work):
    """Given one exchange of the job, run its work recorded and monitored. Return its Outcome.

    Whatever ends the run (a signal included) is caught into the Outcome, so the
    other exchanges' runs go on.
    """
    started = time.monotonic()
    options = context.options.get(exchange) if context.options else None
    lock = context.locks[exchange]
    try:
        context.guard.check()
        context.guard.attach(options)
        ensure_lock(lock)
        logger.info("%s", banner(context, exchange))
        run_id = begin_run(context, lock)
        if options is not None:
            options.run_id = run_id  # a backfill worker marks the units it did with it
    except BaseException as error:
        return Outcome(ended_by(error, context.request.job, exchange, started)[1], error)
    try:
        with monitor.monitored(context.settings, context.request.job, exchange, enabled=run_id is not None) as report:
            return execute(context, lock, exchange_id, work, run_id, report, started)
    except BaseException as error:
        return Outcome(ended_by(error, context.request.job, exchange, started)[1], error)
    finally:
        if run_id is not None and lock.connection is not None:
            metrics.refresh(context.settings.metrics_dir, lock.connection)


def begin_run(context, lock):
    """Given an exchange's AdvisoryLock, held, mark its dead runs and insert our row.

    Return the new run id, or None for a dry run (which is not recorded).
    """
    job, exchange = context.request.job, lock.exchange
    with database_errors("recording the run"):
        for run_id, host, pid, started_at in history.mark_dead_runs(lock.connection, job, exchange):
            logger.warning("%s %s: run %d (pid %s on %s, started %s) ended without recording it; marked interrupted",
                           job, exchange, run_id, pid, host, f"{started_at.astimezone(SEOUL):%Y-%m-%d %H:%M %Z}")
        if context.request.dry_run:
            return None
        return history.start_run(lock.connection, job, exchange, context.request.arguments)


def execute(context, lock, exchange_id, work, run_id, report, started):
    """Given a recorded run, call the work and record how it ended. Return its Outcome.

    Re-raise an error that ended the run, once recorded.
    """
    exchange = lock.exchange
    try:
        if context.options is None:
            with context.guard.raising_mode():
                result = work(exchange, context.dsn, exchange_id)
        else:
            result = work(exchange, context.dsn, exchange_id)
    except BaseException as error:
        status, result = ended_by(error, context.request.job, exchange, started)
        conclude(context, lock, run_id, status, result, report)
        raise
    conclude(context, lock, run_id, result.status, result, report)
    return Outcome(result)


def ended_by(error, job, exchange, started):
    """Given the exception that ended a run, return (status, JobResult with `fatal` set)."""
    interrupted = isinstance(error, (Interrupted, KeyboardInterrupt))
    result = getattr(error, "result", None) or JobResult(job, exchange)
    if isinstance(error, KeyboardInterrupt):
        result.fatal = "interrupted by SIGINT"
    elif isinstance(error, WombatError):
        result.fatal = str(error)
    else:
        result.fatal = describe_unexpected(error)
    result.duration = time.monotonic() - started
    return ("interrupted" if interrupted else "failed"), result


def conclude(context, lock, run_id, status, result, report):
    """Given how a run ended, fill the monitors' Report and finish the history row (only warn on failure).

    The lock is checked first: a run that lost it to another records its end all the same.
    """
    report.status, report.summary, report.duration = status, result.summary(), result.duration
    if run_id is None:
        return
    try:
        ensure_lock(lock)
    except Exception as error:
        logger.warning("%s %s: %s; recording the end of run %d all the same", result.job, result.exchange,
                       describe_error(error), run_id)
    try:
        record_end(context, lock, run_id, status, result)
    except Exception as error:  # never hide the run's own outcome behind a bookkeeping error
        logger.warning("%s %s: cannot record the end of run %d: %s", result.job, result.exchange, run_id,
                       describe_error(error))


def record_end(context, lock, run_id, status, result):
    """Given how a run ended, update its collect_run row on the lock connection.

    When the database dropped that connection (restart, terminated backend),
    the row is updated on a new one, so it does not stay 'running' and later
    pass for a killed run. Raise psycopg2.Error or DatabaseError if that fails too.
    """
    import psycopg2

    try:
        if lock.connection is not None:
            history.finish_run(lock.connection, run_id, status, result)
            return
    except psycopg2.Error as error:
        if not lock.connection.closed:
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
