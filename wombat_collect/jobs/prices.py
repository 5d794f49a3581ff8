"""The prices job: collect PriceTasks concurrently on a pool of connections, a task per worker.

Each task's outcome is counted into the run's JobResult; a block, an unusable
database or TIMEOUT_STREAK timeouts in a row stop the run.
"""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from wombat_collect.db import store
from wombat_collect.db.connection import (
    DatabaseTimeout,
    DatabaseUnusable,
    connect_options,
    database_errors,
    first_line,
    transaction,
)
from wombat_collect.errors import DatabaseError, ExchangeBlocked, Interrupted, SymbolNotFound
from wombat_collect.jobs.results import JobResult, StoppedEarly, SymbolOutcome, failure_of
from wombat_collect.jobs.streaming import pooled_connection, stream_series
from wombat_collect.timeframes import DAILY

TIMEOUT_STREAK = 3  # symbols in a row whose write timed out (a table-wide lock?) before the run stops

logger = logging.getLogger("wombat_collect.jobs")  # the one logger name of every jobs module


def collect_prices(dsn, exchange_id, collector, client, tasks, options):
    """Given PriceTasks, fetch and store their candles concurrently, a task per worker.

    A long series is written in chunks (stream_series); one task's failure
    never stops the others, but a block (418) stops them all. Return a JobResult.
    """
    def submit_tasks(executor, pool, stop, streak, record):
        return [executor.submit(collect_symbol_prices, pool, collector, client, task, options, stop, streak)
                for task in tasks]

    return run_collection(dsn, collector, options, submit_tasks)


def run_collection(dsn, collector, options, submit):
    """Given submit(executor, pool, stop, streak, record) -> futures, run them on options.workers threads.

    A future's SymbolOutcome (or its fatal error) is counted into the run's JobResult;
    a future that collects several series itself (a backfill worker) counts each
    through record(outcome) and returns None. Return the JobResult. Raise
    Interrupted (carrying it) if a signal stopped the run.
    """
    result = JobResult("prices", collector.EXCHANGE.code)
    stop = options.stop_event or threading.Event()
    pool = None if options.dry_run else open_pool(dsn, options.workers)
    streak = TimeoutStreak()
    lock = threading.Lock()

    def record(outcome):
        with lock:
            record_symbol(result, outcome, options.progress)

    try:
        with ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="collect") as executor:
            futures = submit(executor, pool, stop, streak, record)
            try:
                for future in as_completed(futures):
                    with lock:
                        _record_outcome(result, future, stop, options.progress)
            except BaseException:
                stop.set()  # the queued symbols then end at once instead of being fetched
                raise
    finally:
        if pool is not None:
            pool.closeall()
    result.duration = time.monotonic() - result.started
    if options.interrupted:
        interrupted = Interrupted(options.interrupted)
        interrupted.result = result  # what was written before the stop, for the run history
        raise interrupted
    return result


def open_pool(dsn, workers):
    import psycopg2
    from psycopg2.pool import ThreadedConnectionPool

    try:
        return ThreadedConnectionPool(1, workers, dsn, **connect_options(dsn))
    except psycopg2.Error as error:
        raise DatabaseError(f"cannot connect to the database: {first_line(error)}") from None


def _record_outcome(result, future, stop, progress):
    """Given a finished future, add its SymbolOutcome (or its fatal error) to the result; None adds nothing."""
    try:
        outcome = future.result()
    except (ExchangeBlocked, DatabaseUnusable) as error:
        if not result.fatal:
            logger.error("%s", error)
            result.fatal = str(error)
        stop.set()
        result.symbols_not_attempted += 1
        return
    except StoppedEarly:
        result.symbols_not_attempted += 1
        return
    except TimeoutStreakReached as error:
        if not result.fatal:
            logger.error("prices %s: %s", result.exchange, error)
            result.fatal = str(error)
        stop.set()
        result.symbols_failed += 1
        return
    if outcome is not None:
        record_symbol(result, outcome, progress)


def record_symbol(result, outcome, progress):
    """Given a series' SymbolOutcome, add it to the result (its failure logged) and advance the progress bar."""
    if progress:
        progress(1)
    result.rows += outcome.rows
    result.rejected += outcome.rejected
    if outcome.skipped:
        result.symbols_skipped += 1
    elif outcome.error:
        result.symbols_failed += 1
        logger.warning("prices %s %s failed: %s", result.exchange, outcome.symbol, outcome.error)
    else:
        result.symbols_ok += 1


class TimeoutStreakReached(DatabaseError):
    """TIMEOUT_STREAK symbols in a row timed out writing: a table is likely locked; stop the run."""


class TimeoutStreak:
    """How many symbols in a row timed out writing their candles, shared by the run's workers."""

    def __init__(self, limit=TIMEOUT_STREAK):
        self.limit = limit
        self.count = 0
        self._lock = threading.Lock()

    def add(self, timed_out):
        """Given whether a symbol's write timed out, count it (a write that did not resets the count).

        Return True when this timeout makes `limit` in a row.
        """
        with self._lock:
            self.count = self.count + 1 if timed_out else 0
            return self.count == self.limit


def collect_symbol_prices(pool, collector, client, task, options, stop, streak=None):
    """Given one PriceTask, fetch its candles and write them chunk by chunk (stream_series).

    Return a SymbolOutcome. Raise ExchangeBlocked or DatabaseUnusable to stop
    the run, TimeoutStreakReached when this write's timeout makes the streak
    (the run stopped), StoppedEarly if the run is stopping.
    """
    streak = streak or TimeoutStreak()
    if stop.is_set():
        raise StoppedEarly
    label = task.symbol.symbol if task.timeframe == DAILY else f"{task.symbol.symbol} {task.timeframe}"
    try:
        rows, rejected = stream_series(pool, collector, client, task, options, stop)
        streak.add(timed_out=False)
    except SymbolNotFound as error:
        return _skip_unknown(pool, task.symbol, error)
    except DatabaseTimeout as error:
        if streak.add(timed_out=True):
            stop.set()  # before this worker takes its next symbol
            raise TimeoutStreakReached(f"stopped after {streak.limit} symbols in a row timed out: {error}") from None
        return SymbolOutcome(label, error=str(error))
    except Exception as error:
        return SymbolOutcome(label, error=failure_of(error))
    error = f"{len(rejected)} invalid candle(s) rejected, first: {rejected[0]}" if rejected else None
    return SymbolOutcome(label, rows, len(rejected), error=error)


def _skip_unknown(pool, symbol, error):
    """Given a symbol the exchange no longer knows, deactivate it; return its SymbolOutcome (skipped)."""
    try:
        _deactivate_unknown(pool, symbol, error)
    except Exception as failure:
        return SymbolOutcome(symbol.symbol, error=failure_of(failure))
    return SymbolOutcome(symbol.symbol, skipped=True)


def _deactivate_unknown(pool, symbol, error):
    """Given a symbol the exchange no longer knows, mark it inactive (skip on a dry run).

    Raise DatabaseError if that fails.
    """
    logger.warning("%s: %s; marking it inactive", symbol.symbol, error)
    if pool is None:
        return
    connection = pooled_connection(pool)
    try:
        with database_errors("marking it inactive", connection), transaction(connection):
            store.set_symbols_active(connection, [symbol.id], False)
    finally:
        pool.putconn(connection, close=connection.closed != 0)
