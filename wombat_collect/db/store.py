"""Raw-SQL reads and upserts of `exchange`, `symbol`, `pricedata` and `realtime_prices`.

Every function takes an open connection and leaves transaction control to the
caller, so a job can make one transaction per symbol. Values always travel as
parameters; prices and volumes as Decimal.
"""

import io
from datetime import datetime, timezone

from psycopg2.extras import execute_values

from wombat_collect.db.queries import statement
from wombat_collect.records import DAILY, StoredSymbol, UpsertCounts
from wombat_collect.timeframes import NAMES as TIMEFRAME_NAMES

# execute_values templates: inside a CTE or a subquery `VALUES %s` no longer takes the target's
# column types, so each value says its type (a column of NULLs would otherwise be text).
EXCHANGE_TEMPLATE = "(%s::text, %s::text, %s::text, %s::text, %s::boolean, %s::timestamptz)"
SYMBOL_TEMPLATE = ("(%s::integer, %s::text, %s::text, %s::text, %s::text, %s::text, %s::boolean, %s::numeric,"
                   " %s::numeric, %s::integer, %s::integer, %s::timestamptz, %s::timestamptz)")


def ensure_exchanges(connection, exchanges):
    """Given ExchangeInfo records, insert those missing; never modify existing rows.

    Only missing codes take an id. Return {code: id} for the given exchanges.
    """
    now = datetime.now(timezone.utc)
    rows = [(item.code, item.name, item.country, item.timezone, True, now) for item in exchanges]
    with connection.cursor() as cursor:
        execute_values(cursor, statement("insert_missing_exchanges"), rows, template=EXCHANGE_TEMPLATE)
        cursor.execute(statement("exchange_ids"), {"codes": [item.code for item in exchanges]})
        return dict(cursor.fetchall())


def upsert_symbols(connection, exchange_id, records):
    """Given SymbolRecords of one exchange, insert new ones and update changed ones.

    Every record is stored active; only new symbols take an id. Return UpsertCounts.
    """
    now = datetime.now(timezone.utc)
    unique = {record.symbol: record for record in records}
    rows = [
        (exchange_id, item.symbol, item.base_asset, item.quote_asset, item.symbol_type, item.market,
         True, item.min_order_size, item.max_order_size, item.price_precision,
         item.quantity_precision, now, now)
        for item in unique.values()
    ]
    if not rows:
        return UpsertCounts()
    with connection.cursor() as cursor:
        returned = execute_values(cursor, statement("upsert_symbols"), rows, template=SYMBOL_TEMPLATE, fetch=True)
    inserted = sum(1 for (was_inserted,) in returned if was_inserted)
    return UpsertCounts(inserted, len(returned) - inserted, len(rows) - len(returned))


def stored_symbols(connection, exchange_id):
    """Given an exchange id, return its StoredSymbols, ordered by symbol."""
    with connection.cursor() as cursor:
        cursor.execute(statement("symbols_of_exchange"), {"exchange_id": exchange_id})
        return [StoredSymbol(*row) for row in cursor.fetchall()]


def set_symbols_active(connection, symbol_ids, active):
    """Given symbol ids, set their is_active flag. Return how many rows changed."""
    if not symbol_ids:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(statement("set_symbols_active"), {"ids": list(symbol_ids), "active": active})
        return cursor.rowcount


def newest_timestamps(connection, symbol_ids, timeframe=DAILY):
    """Given symbol ids, return {id: newest stored candle timestamp or None}."""
    with connection.cursor() as cursor:
        cursor.execute(statement("newest_timestamps"), {"ids": list(symbol_ids), "timeframe": timeframe})
        return dict(cursor.fetchall())


def oldest_timestamp(connection, symbol_id, timeframe=DAILY):
    """Given a symbol id, return its oldest stored candle timestamp, or None."""
    with connection.cursor() as cursor:
        cursor.execute(statement("oldest_timestamp"), {"symbol_id": symbol_id, "timeframe": timeframe})
        return cursor.fetchone()[0]


def upsert_candles(connection, symbol_id, candles, timeframe=DAILY):
    """Given Candles of one symbol, insert new rows and update changed ones.

    The rows are COPied into a session's temporary table, then merged with one
    statement (UPDATE of existing rows, INSERT of the others): about twice as fast
    as execute_values (see tests/benchmark_prices.py). Duplicate timestamps keep
    the last candle; unchanged rows are not rewritten; only new rows take an id.
    Return (UpsertCounts, timestamps updated).
    """
    unique = {candle.timestamp: candle for candle in candles}
    if not unique:
        return UpsertCounts(), []
    with connection.cursor() as cursor:
        cursor.execute(statement("create_candle_stage"))
        cursor.copy_expert(statement("copy_candle_stage"), candle_copy_buffer(symbol_id, unique.values(), timeframe))
        cursor.execute(statement("upsert_candles_from_stage"),
                       {"symbol_id": symbol_id, "timeframe": timeframe, "first": min(unique), "last": max(unique)})
        returned = cursor.fetchall()
        cursor.execute(statement("empty_candle_stage"))
    updated = sorted(timestamp for timestamp, was_inserted in returned if not was_inserted)
    inserted = len(returned) - len(updated)
    return UpsertCounts(inserted, len(updated), len(unique) - len(returned)), updated


def candle_copy_buffer(symbol_id, candles, timeframe):
    """Given Candles, return a file of COPY text rows for candle_stage (Decimals as their exact text)."""
    now = datetime.now(timezone.utc).isoformat()
    buffer = io.StringIO()
    for item in candles:
        values = (symbol_id, item.timestamp.isoformat(), timeframe, item.open, item.high, item.low, item.close,
                  item.volume, item.quote_volume, now)
        buffer.write("\t".join("\\N" if value is None else str(value) for value in values) + "\n")
    buffer.seek(0)
    return buffer


def upsert_quotes(connection, rows):
    """Given [(symbol id, Quote)], upsert them into realtime_prices with one statement.

    Duplicate symbol ids keep the last quote; unchanged quotes are not rewritten;
    only symbols without a row take an id. Return UpsertCounts.
    """
    unique = dict(rows)
    if not unique:
        return UpsertCounts()
    quotes = list(unique.values())
    parameters = {
        "symbol_ids": list(unique), "current_prices": [quote.current for quote in quotes],
        "bid_prices": [quote.bid for quote in quotes], "ask_prices": [quote.ask for quote in quotes],
        "volumes": [quote.volume_24h for quote in quotes], "change_rates": [quote.change_rate for quote in quotes],
        "updated_ats": [quote.quoted_at for quote in quotes],
    }
    with connection.cursor() as cursor:
        cursor.execute(statement("upsert_quotes"), parameters)
        returned = cursor.fetchall()
    inserted = sum(1 for (was_inserted,) in returned if was_inserted)
    return UpsertCounts(inserted, len(returned) - inserted, len(unique) - len(returned))


def newest_quotes(connection, codes):
    """Given exchange codes, return {code: newest realtime_prices.updated_at of its symbols, or None}."""
    with connection.cursor() as cursor:
        cursor.execute(statement("newest_quotes"), {"codes": list(codes)})
        return dict(cursor.fetchall())


def add_fetched_range(connection, symbol_id, timeframe, range_start, range_end):
    """Given a range [start, end) of a symbol's timeframe fetched completely, merge it into fetched_range."""
    with connection.cursor() as cursor:
        cursor.execute(statement("add_fetched_range"), {"symbol_id": symbol_id, "timeframe": timeframe,
                                                         "range_start": range_start, "range_end": range_end})


def coverage_ends(connection, symbol_ids, timeframe):
    """Given symbol ids and a timeframe, return {id: end of its oldest fetched range} for those with one."""
    with connection.cursor() as cursor:
        cursor.execute(statement("coverage_ends"), {"ids": list(symbol_ids), "timeframe": timeframe})
        return dict(cursor.fetchall())


def fetched_ranges(connection, symbol_id, timeframe):
    """Given a symbol id and a timeframe, return its fetched ranges [(start, end)], oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(statement("fetched_ranges"), {"symbol_id": symbol_id, "timeframe": timeframe})
        return cursor.fetchall()


def ping(connection):
    """Given a connection, ask the server a trivial question and end the transaction. Raise psycopg2.Error if dead."""
    with connection.cursor() as cursor:
        cursor.execute(statement("ping"))
    connection.rollback()


def gap_summaries(connection, exchange):
    """Given a connection and an exchange code, return the last stored summary rows, as dicts by timeframe."""
    with connection.cursor() as cursor:
        cursor.execute(statement("gap_summaries"), {"exchange": exchange})
        rows = sorted(cursor.fetchall(), key=lambda row: TIMEFRAME_NAMES.index(row[0]))
    return [{"timeframe": name, "symbols": symbols, "ranges": ranges, "periods": periods, "checked_at": checked_at}
            for name, symbols, ranges, periods, checked_at in rows]
