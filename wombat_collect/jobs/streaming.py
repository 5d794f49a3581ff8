"""One series of a prices run: fetch its candles and write them chunk by chunk.

A chunk is committed with the fetched_range it proves; a write that loses its
connection is tried again on a new one; an adjusted history whose basis
changed is fetched again whole (re-basing) in the same transaction.
"""

import logging

from wombat_collect.db import store
from wombat_collect.db.connection import (
    ConnectionLost,
    DatabaseUnusable,
    database_errors,
    first_line,
    transaction,
)
from wombat_collect.jobs.results import StoppedEarly
from wombat_collect.records import Candle, Covered, UpsertCounts
from wombat_collect.timeframes import next_start, period_start
from wombat_collect.validate import EARLIEST_SANE_DATE, candle_problem

CHUNK_CANDLES = 4_000  # candles per transaction of a long series (20 Upbit pages): bounded memory and size
RECONNECT_DELAYS = (0.5, 2.0)  # seconds before each new connection a symbol's write tries after losing one

logger = logging.getLogger("wombat_collect.jobs")  # the one logger name of every jobs module


def stream_series(pool, collector, client, task, options, stop):
    """Given a PriceTask, fetch its candles and write them in chunks of at least CHUNK_CANDLES.

    A chunk is written at a Covered marker of the collector, with the range the
    marker covers (up to the newest closed period) in the same transaction, so a
    killed run leaves only whole chunks and the fetched_range that says so. No
    range is recorded once a candle was rejected (it is not stored). A dry run
    writes nothing. Return (UpsertCounts, reasons of rejected candles).
    """
    chunk, rejected, rows = [], [], UpsertCounts()
    pending = None
    for item in collector.fetch_candles(client, task.symbol.symbol, task.timeframe, task.start, options.now):
        if stop.is_set():
            raise StoppedEarly
        if isinstance(item, Covered):
            pending = None if rejected else item
            if len(chunk) >= CHUNK_CANDLES:
                rows += _write_chunk(pool, collector, client, task, chunk, pending, options, stop)
                chunk, pending = [], None
            continue
        sort_candle(collector, item, task.timeframe, options, chunk, rejected)
    return rows + _write_chunk(pool, collector, client, task, chunk, pending, options, stop), rejected


def _write_chunk(pool, collector, client, task, candles, covered, options, stop):
    """Given a chunk of candles and the Covered marker it ends with (or None), write both. Return UpsertCounts."""
    if options.dry_run:
        return UpsertCounts(unchanged=len(candles))
    fetched = fetched_range(collector, task.timeframe, covered, options.now) if covered else None
    if not candles and fetched is None:
        return UpsertCounts()
    return write_candles(pool, collector, client, task, candles, fetched, options, stop)


def fetched_range(collector, timeframe, covered, now):
    """Given a Covered marker, return the (start, end) it proves fetched up to the newest closed period, or None."""
    current = period_start(now, timeframe)
    closed_until = next_start(current, timeframe) if collector.candle_closes_at(current, timeframe) <= now else current
    start, end = covered.start or EARLIEST_SANE_DATE, min(covered.end, closed_until)
    return (start, end) if start < end else None


def fetch_valid_candles(collector, client, task, start, options, stop):
    """Given a task and a start, return (valid candles to store, reasons of rejected ones) as one list.

    Used to re-collect a (short, KIS) series. Running candles are dropped unless
    options.include_open. Raise StoppedEarly if the run stops meanwhile.
    """
    candles, rejected = [], []
    for item in collector.fetch_candles(client, task.symbol.symbol, task.timeframe, start, options.now):
        if stop.is_set():
            raise StoppedEarly
        if isinstance(item, Covered):
            continue
        sort_candle(collector, item, task.timeframe, options, candles, rejected)
    return candles, rejected


def sort_candle(collector, item, timeframe, options, candles, rejected):
    """Given a fetched Candle or RejectedCandle, append it to `candles` if it is valid and closed
    (or options.include_open), its problem to `rejected` if it is not valid; drop a running candle."""
    problem = item.reason if not isinstance(item, Candle) else candle_problem(item, options.now, timeframe)
    if problem:
        rejected.append(problem)
    elif options.include_open or collector.candle_closes_at(item.timestamp, timeframe) <= options.now:
        candles.append(item)


def write_candles(pool, collector, client, task, candles, fetched, options, stop):
    """Given a chunk of a task's candles and its fetched range (or None), upsert them in one transaction.

    When the collector's history is adjusted (REBASE_ON_CHANGE) and the fetch
    shows a corporate action or a changed stored row, the series' whole stored
    range is fetched again in the same transaction, so every row shares one basis.
    A connection the database dropped (restart, terminated backend) rolled the
    transaction back: the write is tried again on a new connection, after each
    of RECONNECT_DELAYS. Return UpsertCounts. Raise DatabaseError on a database
    failure; DatabaseUnusable when every symbol would fail alike, as when no new
    connection can be opened after the last delay (the server is down).
    """
    retry = False
    for delay in (*RECONNECT_DELAYS, None):
        try:
            return _write_candles_once(pool, collector, client, task, candles, fetched, options, stop, retry)
        except ConnectionLost as error:
            if delay is None and isinstance(error, CannotReconnect):
                raise DatabaseUnusable(str(error)) from None
            if delay is None or stop.is_set():
                raise
            logger.warning("prices %s %s: %s; writing it again on a new connection in %.1fs",
                           collector.EXCHANGE.code, task.symbol.symbol, error, delay)
            if stop.wait(delay):
                raise StoppedEarly from None
            retry = True
    raise AssertionError("unreachable")


def _write_candles_once(pool, collector, client, task, candles, fetched, options, stop, retry=False):
    """Given a chunk of candles, write it and its fetched range in one transaction. Return UpsertCounts.

    On a retry the connection is checked first: the pool may still hold others the server dropped.
    """
    connection = _live_connection(pool) if retry else pooled_connection(pool)
    symbol_id, timeframe = task.symbol.id, task.timeframe
    try:
        with database_errors("writing its candles", connection), transaction(connection, long_running=True):
            rows, updated = store.upsert_candles(connection, symbol_id, candles, timeframe)
            if collector.REBASE_ON_CHANGE and (updated or any(c.corporate_action for c in candles)):
                oldest = store.oldest_timestamp(connection, symbol_id, timeframe)
                if task.start is not None and oldest is not None and oldest < task.start:
                    logger.info("prices %s %s %s: adjustment basis changed, re-collecting from %s",
                                collector.EXCHANGE.code, task.symbol.symbol, timeframe, f"{oldest:%Y-%m-%d}")
                    again, _ = fetch_valid_candles(collector, client, task, oldest, options, stop)
                    rows = rows + store.upsert_candles(connection, symbol_id, again, timeframe)[0]
            if fetched:
                store.add_fetched_range(connection, symbol_id, timeframe, *fetched)
        return rows
    finally:
        pool.putconn(connection, close=connection.closed != 0)


class CannotReconnect(ConnectionLost):
    """The pool could not open a new connection."""


def pooled_connection(pool):
    """Given the pool, return a connection from it. Raise CannotReconnect if a new one cannot be opened."""
    import psycopg2

    try:
        return pool.getconn()
    except psycopg2.Error as error:
        raise CannotReconnect(f"cannot connect to the database: {first_line(error)}") from None


def _live_connection(pool):
    """Given the pool, return a connection that answers, closing the dead ones it hands out first."""
    import psycopg2

    for _ in range(pool.maxconn):
        connection = pooled_connection(pool)
        try:
            store.ping(connection)
            return connection
        except psycopg2.Error:
            pool.putconn(connection, close=True)
    return pooled_connection(pool)
