"""The quotes job: the latest quote of every active symbol into `realtime_prices`.

Like the prices job (jobs/), it takes a collector module (see collectors/__init__.py), an
HttpClient and a DSN, and never branches on the exchange. Flow: cli -> commands -> quotes
-> collectors (fetch_quotes) and db/store (one upsert statement per run).

A run fails only when the exchange could not be read (or the database could
not be written); quotes whose values do not fit the columns are rejected,
counted and logged once, and the run still succeeds: a minute later they are
asked for again.
"""

import logging
import time

from wombat_collect.db import store
from wombat_collect.db.connection import connect, database_errors, transaction
from wombat_collect.errors import ExchangeError
from wombat_collect.jobs.results import JobResult
from wombat_collect.records import Quote
from wombat_collect.validate import quote_problem

JOB = "quotes"

logger = logging.getLogger(__name__)


def collect_quotes(dsn, exchange_id, collector, client):
    """Given a collector, store the latest quote of each active symbol of its exchange.

    Symbols missing from the exchange's answer keep their stored rows. Return a
    JobResult: `fatal` set when the exchange could not be read. Raise
    DatabaseError if the database fails.
    """
    result = JobResult(JOB, collector.EXCHANGE.code)
    reason = collector.quotes_unavailable(client)
    if reason:
        logger.warning("%s %s: %s; nothing collected", JOB, result.exchange, reason)
        return finished(result)
    active = active_symbols(dsn, exchange_id)
    try:
        answered = collector.fetch_quotes(client, sorted(active))
    except ExchangeError as error:
        result.fatal = str(error)
        return finished(result)
    rows, rejected = checked_rows(answered, active)
    report_rejected(result, rejected)
    result.rows = write_quotes(dsn, rows)
    result.symbols_ok = len(rows)
    result.symbols_skipped = len(active) - len(rows) - len(rejected)
    return finished(result)


def active_symbols(dsn, exchange_id):
    """Given an exchange id, return {symbol: id} of its active symbols."""
    connection = connect(dsn)
    try:
        with database_errors("reading the stored symbols", connection), transaction(connection):
            return {item.symbol: item.id for item in store.stored_symbols(connection, exchange_id) if item.is_active}
    finally:
        connection.close()


def checked_rows(answered, active):
    """Given the collector's Quotes and RejectedQuotes and {symbol: id}, split them.

    Return ([(symbol id, Quote)] to write, [reason] of the rejected ones); an
    answer for a symbol not in `active` (inactive, unknown) is dropped.
    """
    rows, rejected = {}, {}
    for item in answered:
        if item.symbol not in active:
            continue
        problem = quote_problem(item) if isinstance(item, Quote) else item.reason
        if problem:
            rejected[item.symbol] = problem
            rows.pop(item.symbol, None)
        else:
            rows[item.symbol] = (active[item.symbol], item)
            rejected.pop(item.symbol, None)
    return list(rows.values()), list(rejected.values())


def report_rejected(result, rejected):
    """Given the reasons of rejected quotes, count them in the result and log them in one line."""
    result.rejected = len(rejected)
    if rejected:
        logger.warning("%s %s: %d quote(s) rejected (values do not fit realtime_prices), first: %s",
                       JOB, result.exchange, len(rejected), rejected[0])


def write_quotes(dsn, rows):
    """Given [(symbol id, Quote)], upsert them in one statement and transaction. Return UpsertCounts."""
    connection = connect(dsn)
    try:
        with database_errors("writing the quotes", connection), transaction(connection, long_running=True):
            return store.upsert_quotes(connection, rows)
    finally:
        connection.close()


def finished(result):
    """Given a JobResult, set its duration and return it."""
    result.duration = time.monotonic() - result.started
    return result
