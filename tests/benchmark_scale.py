"""Benchmark: the daily run, `status`, `quotes`, `gaps` and `check` on a pricedata table of tens of millions of rows.

A script, not a test (timings on shared machines are noise; ratios measured in one run are not):

    WOMBAT_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python tests/benchmark_scale.py                      # 30 M and 1 M rows, 5 rounds
    .venv/bin/python tests/benchmark_scale.py --big-rows 3000000 --small-rows 300000 --rounds 3   # quick
    .venv/bin/python tests/benchmark_scale.py --keep            # then: --reuse, to skip the build

It builds two databases the same way, in SQL only (generate_series), on a fresh
database migrated by prepare_database (the backend's schema and ours): 200 Upbit
markets (1m, 1h and 1d candles) and 4,400 KIS codes (1d candles on weekdays), all
active; a fetched_range row per series covering its stored span; a few
collect_run and gap_summary rows; then VACUUM ANALYZE. The periods of each series
are scaled so the big database holds about --big-rows rows (by default the mix is
~70 days of 1m, 2 years of 1h, 5 years of Upbit 1d, 8 years of KIS 1d) and the
small one about --small-rows. pricedata is loaded in (symbol_id, timestamp) order,
a batch of symbols per transaction, with its secondary indexes, unique key and
foreign key dropped and then rebuilt from their own definitions (checked equal).

Then, alternating small and big, --rounds times each, it times (the database's
work; no exchange is asked):
  - the incremental daily `prices` run: select_symbols and plan_tasks per exchange
    (coverage_ends, newest_timestamps), then jobs.streaming.write_candles of every
    series on a real pool with the real collector module: one new candle each, and
    for KIS (REBASE_ON_CHANGE) the newest stored candle, unchanged, as well;
  - `status` and `status --json` (read_report, render_text, render_json);
  - a `quotes` write of every active symbol (store.upsert_quotes, one transaction);
  - `check` (run_checks without exchanges; its database checks timed alone too);
  - `gaps` of each exchange over its timeframes, with 50 holes and then a hole in
    every series, each ÷ `SELECT count(*)` of the same rows timed alternately.
It prints each median at small and big and big ÷ small with its target (≤ 1.3;
gaps: scan ≤ 5 × count(*)), the EXPLAIN (ANALYZE, BUFFERS) of the run's queries on
the big database with whether pricedata was read by a Seq Scan, and sizing facts.

The database: WOMBAT_TEST_DATABASE_URL (a server where it may create databases), or
an embedded PostgreSQL. The databases are wombat_scale_small and wombat_scale_big,
dropped at the end unless --keep.
"""

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.benchmark_gaps import server_dsn  # noqa: E402
from tests.conftest import dsn_with_database  # noqa: E402
from wombat_collect import gaps  # noqa: E402
from wombat_collect.collectors import load_collector  # noqa: E402
from wombat_collect.config import load_settings  # noqa: E402
from wombat_collect.db import store  # noqa: E402
from wombat_collect.db.queries import statement  # noqa: E402
from wombat_collect.jobs.database import prepare_database  # noqa: E402
from wombat_collect.jobs.planning import Window, plan_tasks  # noqa: E402
from wombat_collect.jobs.prices import open_pool  # noqa: E402
from wombat_collect.jobs.results import PriceOptions  # noqa: E402
from wombat_collect.jobs.streaming import write_candles  # noqa: E402
from wombat_collect.jobs.symbols import select_symbols  # noqa: E402
from wombat_collect.ops import status  # noqa: E402
from wombat_collect.ops.check import run_checks  # noqa: E402
from wombat_collect.ops.check.database import database_checks  # noqa: E402
from wombat_collect.records import Candle, Quote, UpsertCounts  # noqa: E402
from wombat_collect.timeframes import next_start  # noqa: E402

END = datetime(2026, 12, 1, tzinfo=timezone.utc)  # every stored series ends just before it
UPBIT_MARKETS, KIS_CODES = 200, 4400
STEP_SECONDS = {"1m": 60, "1h": 3600, "1d": 86400}
HOLE_STRIDE = 37  # holes of successive series this many periods apart: no KRX day loses its majority
BATCH_ROWS = 1_000_000  # rows per loading transaction
LOADERS = 3  # sessions loading batches at once
RATIO_TARGET, GAPS_TARGET = 1.3, 5.0
SLOW_SECONDS, SLOW_ROUNDS = 30, 3  # a measurement slower than this gets this many rounds only (due)
BUILT_MARK = "wombat benchmark_scale: built, {rows} rows target"
AUTOVACUUM_COST_LIMIT, AUTOVACUUM_COST_DELAY = 200, 0.002  # the defaults since PostgreSQL 12
AUTOVACUUM_MISS_COST = {"PostgreSQL 12-13": 10, "PostgreSQL 14+": 2}  # vacuum_cost_page_miss


@dataclass(frozen=True)
class Series:
    """One kind of series of the mix: an exchange's timeframe, its periods in the default 30 M mix."""

    exchange: str
    timeframe: str
    base_periods: int
    weekdays: bool = False  # KRX: weekdays only


MIX = (Series("upbit", "1m", 70 * 1440), Series("upbit", "1h", 2 * 8760), Series("upbit", "1d", 5 * 365),
       Series("kis", "1d", 8 * 261, weekdays=True))
SYMBOL_COUNTS = {"upbit": UPBIT_MARKETS, "kis": KIS_CODES}
BASE_ROWS = sum(item.base_periods * SYMBOL_COUNTS[item.exchange] for item in MIX)

# The stored values are a function of the symbol and the period index k (epoch ÷ step), in integers
# but the volume, so the benchmark can send the newest stored KIS candle back unchanged without
# reading it (candle_at). Day k is a weekday when (k + 3) % 7 < 5 (1970-01-01 was a Thursday).
VALUES_SQL = """
    INSERT INTO pricedata (symbol_id, "timestamp", open_price, high_price, low_price, close_price, volume,
                           quote_volume, timeframe, created_at)
    SELECT s.id, to_timestamp(g.k * s.seconds), v.o, v.o + 5, v.o - 3, v.o + g.k %% 7 - 3, v.vol,
           v.vol * (v.o + g.k %% 7 - 3), s.timeframe, now()
      FROM {rows}
     CROSS JOIN LATERAL (SELECT 1000 + s.id %% 500 * 10 + (g.k %% 97)::integer AS o,
                                ((g.k * 7919 + s.id) %% 1000000) * 0.001 AS vol) AS v
"""
INSERT_SERIES = VALUES_SQL.format(rows="""
           (SELECT id, %(timeframe)s::text AS timeframe, %(seconds)s::bigint AS seconds
              FROM unnest(%(ids)s::integer[]) AS wanted(id)) AS s
     CROSS JOIN LATERAL generate_series(%(first)s::bigint, %(last)s::bigint) AS g(k)
""") + "     WHERE NOT %(weekdays)s OR (g.k + 3) %% 7 < 5"
INSERT_ROWS = VALUES_SQL.format(rows="""
           unnest(%(ids)s::integer[], %(timeframes)s::text[], %(seconds)s::bigint[], %(moments)s::timestamptz[])
               AS s(id, timeframe, seconds, ts)
     CROSS JOIN LATERAL (SELECT extract(epoch FROM s.ts)::bigint / s.seconds) AS g(k)
""") + "    ON CONFLICT DO NOTHING"
INSERT_SYMBOLS = """
    INSERT INTO symbol (exchange_id, symbol, base_asset, quote_asset, symbol_type, market, is_active,
                        price_precision, quantity_precision, created_at, updated_at)
    SELECT %(exchange_id)s, %(prefix)s || lpad(n::text, %(width)s, '0') || %(suffix)s, 'C' || n, 'KRW', %(type)s,
           %(market)s, true, 8, 8, now(), now()
      FROM generate_series(1, %(count)s) AS n
     ORDER BY n
"""
INSERT_RANGES = """
    INSERT INTO wombat_collect.fetched_range (symbol_id, timeframe, range_start, range_end)
    SELECT id, %(timeframe)s, %(first)s, %(end)s FROM unnest(%(ids)s::integer[]) AS s(id)
"""
INSERT_RUNS = """
    INSERT INTO wombat_collect.collect_run (job, exchange, arguments, host, pid, started_at, finished_at, status,
                                            symbols_ok, rows_inserted, rows_unchanged)
    SELECT job, exchange, '{}'::jsonb, 'bench', 1, %(end)s::timestamptz - make_interval(days => n),
           %(end)s::timestamptz - make_interval(days => n) + interval '5 minutes', 'succeeded', 100, 1000, 10
      FROM unnest(ARRAY['symbols', 'prices', 'quotes']) AS j(job)
     CROSS JOIN unnest(ARRAY['upbit', 'kis']) AS e(exchange)
     CROSS JOIN generate_series(1, 60) AS n
"""
INSERT_SUMMARIES = """
    INSERT INTO wombat_collect.gap_summary (exchange, timeframe, symbols, ranges, periods, checked_at)
    SELECT exchange, timeframe, 0, 0, 0, %(end)s
      FROM unnest(%(exchanges)s::text[], %(timeframes)s::text[]) AS t(exchange, timeframe)
"""
DELETE_ROWS = """
    DELETE FROM pricedata p
     USING unnest(%(ids)s::integer[], %(timeframes)s::text[], %(moments)s::timestamptz[]) AS h(id, timeframe, ts)
     WHERE p.symbol_id = h.id AND p.timeframe = h.timeframe AND p."timestamp" = h.ts
"""
SECONDARY_KEYS = """
    SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint
     WHERE conrelid = 'pricedata'::regclass AND contype IN ('u', 'f') ORDER BY conname
"""
INDEX_DEFINITIONS = """
    SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index
     WHERE indrelid = 'pricedata'::regclass ORDER BY 1
"""


def layout(rows):
    """Given a row target, return [(Series, [period starts])]: the same mix, its periods scaled to the target."""
    factor = rows / BASE_ROWS
    plan = []
    for item in MIX:
        periods = max(10, round(item.base_periods * factor))
        step = timedelta(seconds=STEP_SECONDS[item.timeframe])
        moments, moment = [], END - step
        while len(moments) < periods:
            if not item.weekdays or moment.weekday() < 5:
                moments.append(moment)
            moment -= step
        plan.append((item, moments[::-1]))
    return plan


def connect(dsn, autocommit=False):
    connection = psycopg2.connect(dsn)
    connection.autocommit = autocommit
    with connection.cursor() as cursor:
        cursor.execute("SET TIME ZONE 'UTC'")
    if not autocommit:
        connection.commit()
    return connection


def execute(dsn, sql, parameters=None, fetch=False):
    """Run one statement in its own autocommit session; return its rows if fetch."""
    connection = connect(dsn, autocommit=True)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET maintenance_work_mem = '512MB'")
            cursor.execute(sql, parameters)
            return cursor.fetchall() if fetch else None
    finally:
        connection.close()


def build(dsn, rows):
    """Given an empty database and a row target, store the symbols, the mix, its fetched ranges and history."""
    began = time.monotonic()
    exchange_ids = prepare_database(dsn, [load_collector("upbit"), load_collector("kis")])
    ids = {"upbit": insert_symbols(dsn, exchange_ids["upbit"], ("C", 3, "/KRW"), "CRYPTO", "KRW", UPBIT_MARKETS),
           "kis": insert_symbols(dsn, exchange_ids["kis"], ("1", 5, ""), "STOCK", "KOSPI", KIS_CODES)}
    plan = layout(rows)
    keys, indexes = definitions(dsn)
    drop_secondary_keys(dsn, keys, indexes)
    jobs = [(item, moments, ids[item.exchange][start:start + max(1, BATCH_ROWS // len(moments))])
            for item, moments in plan
            for start in range(0, len(ids[item.exchange]), max(1, BATCH_ROWS // len(moments)))]
    with ThreadPoolExecutor(max_workers=LOADERS) as executor:
        list(executor.map(lambda job: load_batch(dsn, *job), jobs))
    loaded = time.monotonic()
    restore_secondary_keys(dsn, keys, indexes)
    indexed = time.monotonic()
    store_bookkeeping(dsn, plan, ids)
    execute(dsn, "VACUUM ANALYZE")
    count = execute(dsn, "SELECT count(*) FROM pricedata", fetch=True)[0][0]
    execute(dsn, f"COMMENT ON DATABASE {database_name(dsn)} IS %s", (BUILT_MARK.format(rows=rows),))
    print(f"built {database_name(dsn)}: {count:,} rows; load {loaded - began:.0f} s, indexes and keys "
          f"{indexed - loaded:.0f} s, total {time.monotonic() - began:.0f} s", flush=True)


def insert_symbols(dsn, exchange_id, pattern, symbol_type, market, count):
    """Store `count` active symbols of an exchange, named prefix + number (zero-padded to width) + suffix;
    return their ids, ascending."""
    prefix, width, suffix = pattern
    rows = execute(dsn, INSERT_SYMBOLS + " RETURNING id",
                   {"exchange_id": exchange_id, "prefix": prefix, "width": width, "suffix": suffix,
                    "type": symbol_type, "market": market, "count": count}, fetch=True)
    return sorted(row[0] for row in rows)


def load_batch(dsn, item, moments, ids):
    """Insert one batch of symbols' series, in (symbol_id, timestamp) order, in one transaction."""
    seconds = STEP_SECONDS[item.timeframe]
    execute(dsn, INSERT_SERIES, {"ids": ids, "first": int(moments[0].timestamp()) // seconds,
                                 "last": int(moments[-1].timestamp()) // seconds, "seconds": seconds,
                                 "timeframe": item.timeframe, "weekdays": item.weekdays})


def definitions(dsn):
    """Return pricedata's unique and foreign keys [(name, kind, definition)] and indexes [(name, definition)]."""
    return execute(dsn, SECONDARY_KEYS, fetch=True), execute(dsn, INDEX_DEFINITIONS, fetch=True)


def drop_secondary_keys(dsn, keys, indexes):
    """Drop pricedata's unique key, foreign key and secondary indexes (all but the primary key)."""
    for name, _, _ in keys:
        execute(dsn, f"ALTER TABLE pricedata DROP CONSTRAINT {name}")
    for name, _ in indexes:
        if name not in {key for key, _, _ in keys} and name != "pricedata_pkey":
            execute(dsn, f"DROP INDEX {name}")


def restore_secondary_keys(dsn, keys, indexes):
    """Rebuild the dropped indexes (concurrently, a session each), then the keys, from their own definitions."""
    key_names = {name for name, _, _ in keys}
    builds = [definition for name, definition in indexes if name not in key_names and name != "pricedata_pkey"]
    builds += [definition for name, definition in indexes if name in key_names]  # the unique key's index
    with ThreadPoolExecutor(max_workers=len(builds)) as executor:
        list(executor.map(lambda sql: execute(dsn, sql), builds))
    for name, kind, definition in keys:
        using = f"UNIQUE USING INDEX {name}" if kind == "u" else definition
        execute(dsn, f"ALTER TABLE pricedata ADD CONSTRAINT {name} {using}")
    same = definitions(dsn) == (keys, indexes)
    print(f"  pricedata's keys and indexes rebuilt exactly as defined before: {same} "
          f"({', '.join(name for name, _ in indexes)})", flush=True)


def store_bookkeeping(dsn, plan, ids):
    """Store a fetched_range per series over its stored span, some collect_run and gap_summary rows."""
    for item, moments in plan:
        execute(dsn, INSERT_RANGES, {"timeframe": item.timeframe, "first": moments[0],
                                     "end": next_start(moments[-1], item.timeframe), "ids": ids[item.exchange]})
    execute(dsn, INSERT_RUNS, {"end": END})
    execute(dsn, INSERT_SUMMARIES, {"end": END, "exchanges": [item.exchange for item, _ in plan],
                                    "timeframes": [item.timeframe for item, _ in plan]})


def database_name(dsn):
    return psycopg2.extensions.parse_dsn(dsn)["dbname"]


def open_database(server, name, rows, reuse):
    """Given the server, a database name and its row target, return its DSN: reused if asked and built, else built."""
    dsn = dsn_with_database(server, name)
    mark = execute(server, "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                   (name,), fetch=True)
    if reuse and mark and mark[0][0] == BUILT_MARK.format(rows=rows):
        print(f"reusing {name} ({rows:,} rows target)", flush=True)
        return dsn
    execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    execute(server, f'CREATE DATABASE "{name}"')
    build(dsn, rows)
    return dsn


EXCHANGE_TIMEFRAMES = {"upbit": ("1m", "1h", "1d"), "kis": ("1d",)}


@dataclass
class Database:
    """One of the two databases: its DSN, layout, exchange ids and symbols."""

    label: str
    dsn: str
    plan: list
    exchange_ids: dict
    symbols: dict  # {exchange: [(id, symbol)]}, ascending ids


def describe_database(label, dsn, rows):
    """Given a built database, return its Database (ids and symbols read back)."""
    exchange_ids = prepare_database(dsn, [load_collector("upbit"), load_collector("kis")])
    symbols = {code: execute(dsn, "SELECT id, symbol FROM symbol WHERE exchange_id = %s AND is_active ORDER BY id",
                             (exchange_id,), fetch=True) for code, exchange_id in exchange_ids.items()}
    return Database(label, dsn, layout(rows), exchange_ids, symbols)


def candle_at(symbol_id, timeframe, moment):
    """Given a series and a period start, return the candle the build's SQL stores there (VALUES_SQL)."""
    period = int(moment.timestamp()) // STEP_SECONDS[timeframe]
    opening = Decimal(1000 + symbol_id % 500 * 10 + period % 97)
    closing = opening + period % 7 - 3
    volume = Decimal((period * 7919 + symbol_id) % 1000000) / 1000
    return Candle(moment, opening, opening + 5, opening - 3, closing, volume, volume * closing)


def next_trading_start(moment, timeframe, weekdays):
    moment = next_start(moment, timeframe)
    while weekdays and moment.weekday() >= 5:
        moment = next_start(moment, timeframe)
    return moment


def write_task(pool, collector, task, options, stop):
    """Given a planned task, write its next candle (KIS: its newest stored one, unchanged, too) as the run does."""
    symbol_id, timeframe = task.symbol.id, task.timeframe
    if collector.REBASE_ON_CHANGE:  # the KIS run asks for its newest stored candle again: the re-check
        new = next_trading_start(task.start, timeframe, weekdays=True)
        candles = [candle_at(symbol_id, timeframe, task.start), candle_at(symbol_id, timeframe, new)]
    else:
        new = task.start
        candles = [candle_at(symbol_id, timeframe, new)]
    fetched = (task.start, next_start(new, timeframe))
    return write_candles(pool, collector, None, task, candles, fetched, options, stop)


def incremental_run(database):
    """Run the database part of a daily incremental `prices` run; return its seconds. Check what it wrote."""
    began = time.perf_counter()
    options, stop = PriceOptions(), threading.Event()
    backfill_days = load_settings({"DATABASE_URL": database.dsn}).backfill_days
    work = []
    for code, timeframes in EXCHANGE_TIMEFRAMES.items():
        collector = load_collector(code)
        targets = select_symbols(database.dsn, database.exchange_ids[code])
        tasks = plan_tasks(database.dsn, targets, Window(), timeframes, backfill_days, options.now,
                           refetch_newest=collector.REBASE_ON_CHANGE)
        work += [(collector, task) for task in tasks]
    pool = open_pool(database.dsn, options.workers)
    try:
        with ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="collect") as executor:
            counts = list(executor.map(lambda pair: write_task(pool, *pair, options, stop), work))
    finally:
        pool.closeall()
    seconds = time.perf_counter() - began
    total = sum(counts, UpsertCounts())
    rechecked = sum(1 for collector, _ in work if collector.REBASE_ON_CHANGE)
    assert (total.inserted, total.updated, total.unchanged) == (len(work), 0, rechecked), (total, len(work))
    return seconds


def status_runs(database):
    """Return the seconds of `status` and of `status --json`: one read_report of every exchange, and each render."""
    began = time.perf_counter()
    offered = {code: tuple(load_collector(code).TIMEFRAMES) for code in EXCHANGE_TIMEFRAMES}  # as the CLI asks
    report = status.read_report(database.dsn, list(EXCHANGE_TIMEFRAMES), offered=offered)
    read = time.perf_counter()
    status.render_text(report)
    text = time.perf_counter()
    status.render_json(report)
    return text - began, read - began + time.perf_counter() - text


def quotes_run(database, number):
    """Upsert a quote of every active symbol in one transaction, its values those of round `number`."""
    now = datetime.now(timezone.utc)
    rows = [(symbol_id, Quote(name, Decimal(71500 + number + symbol_id % 100), Decimal(71400 + number),
                              Decimal(71600 + number), Decimal("12345678.5") + number, Decimal("-1.2345"), now))
            for symbols in database.symbols.values() for symbol_id, name in symbols]
    began = time.perf_counter()
    connection = psycopg2.connect(database.dsn)
    try:
        store.upsert_quotes(connection, rows)
        connection.commit()
    finally:
        connection.close()
    return time.perf_counter() - began


def check_variables(database, directory):
    return {"DATABASE_URL": database.dsn, "WOMBAT_STATE_DIR": directory, "WOMBAT_LOCK_DIR": directory}


def check_run(database, directory):
    """Run `check` without exchanges (no HTTP); return its seconds. Raise if a database check is not ok."""
    variables = check_variables(database, directory)
    began = time.perf_counter()
    report = run_checks(None, lambda: variables, lambda: load_settings(variables), ())
    seconds = time.perf_counter() - began
    bad = [item for item in report.results if item.name in ("connection", "migrations", "schema", "privileges")
           and item.state != "ok"]
    assert not bad, bad
    return seconds


def check_database_run(database, directory):
    """Run only check's database probes (connection, migrations, schema, backend, privileges); return seconds."""
    settings = load_settings(check_variables(database, directory))
    began = time.perf_counter()
    database_checks(settings)
    return time.perf_counter() - began


COUNT_SQL = "SELECT count(*) FROM pricedata WHERE timeframe = ANY(%s) AND symbol_id = ANY(%s)"
HOLE_SELECTIONS = (("50 holes", 50), ("a hole in every series", None))


def hole_rows(database, wanted):
    """Given how many series per exchange get a 3-period hole (None: every series), return the hole rows as
    parallel lists (ids, timeframes, seconds, moments) and {exchange: holes}. A series' hole sits at its own place."""
    rows, holes, numbers = ([], [], [], []), {code: 0 for code in EXCHANGE_TIMEFRAMES}, {}
    totals = {code: len(self_symbols) * len(EXCHANGE_TIMEFRAMES[code])
              for code, self_symbols in database.symbols.items()}
    for item, moments in database.plan:
        for symbol_id, _ in database.symbols[item.exchange]:
            number = numbers[item.exchange] = numbers.get(item.exchange, -1) + 1
            if wanted is not None and (number % (totals[item.exchange] // wanted) or holes[item.exchange] == wanted):
                continue
            holes[item.exchange] += 1
            place = 1 + (number * HOLE_STRIDE) % (len(moments) - 5)
            for moment in moments[place:place + 3]:
                for values, value in zip(rows, (symbol_id, item.timeframe, STEP_SECONDS[item.timeframe], moment),
                                         strict=True):
                    values.append(value)
    return rows, holes


def make_holes(database, wanted):
    """Put back every series' hole rows, then delete those of `wanted` series per exchange; ANALYZE. Return holes."""
    every, _ = hole_rows(database, None)
    chosen, holes = hole_rows(database, wanted)
    names = ("ids", "timeframes", "seconds", "moments")
    execute(database.dsn, INSERT_ROWS, dict(zip(names, every, strict=True)))
    execute(database.dsn, DELETE_ROWS, {"ids": chosen[0], "timeframes": chosen[1], "moments": chosen[3]})
    execute(database.dsn, "ANALYZE pricedata")
    return holes


def timed_count(database, code):
    ids = [symbol_id for symbol_id, _ in database.symbols[code]]
    connection = psycopg2.connect(database.dsn)
    try:
        began = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(COUNT_SQL, (list(EXCHANGE_TIMEFRAMES[code]), ids))
            cursor.fetchone()
        return time.perf_counter() - began
    finally:
        connection.close()


def timed_scan(database, code, holes):
    """Scan one exchange's every timeframe for gaps; return its seconds. Raise unless it found exactly the holes."""
    began = time.perf_counter()
    found = gaps.scan_exchange(database.dsn, database.exchange_ids[code], load_collector(code),
                               gaps.ScanRequest(EXCHANGE_TIMEFRAMES[code]))
    seconds = time.perf_counter() - began
    assert len(found) == holes[code] and all(gap.periods == 3 for gap in found), (code, len(found), holes[code])
    return seconds


def measure_gaps(databases, rounds, results):
    """For each hole selection, time each exchange's scan and count(*) alternately, --rounds times, on both."""
    for selection, wanted in HOLE_SELECTIONS:
        holes = {database.label: make_holes(database, wanted) for database in databases}
        for number in range(rounds):
            for database in (databases if number % 2 == 0 else databases[::-1]):
                for code in EXCHANGE_TIMEFRAMES:
                    if not due([scan + count for scan, count in results[f"gaps {code} ({selection})"][database.label]]):
                        continue
                    if number % 2 == 0:
                        count = timed_count(database, code)
                        scan = timed_scan(database, code, holes[database.label])
                    else:
                        scan = timed_scan(database, code, holes[database.label])
                        count = timed_count(database, code)
                    results[f"gaps {code} ({selection})"][database.label].append((scan, count))
            print(f"  gaps round {number + 1} ({selection}) done", flush=True)


def due(seconds):
    """Given the seconds of a measurement's rounds so far, return whether to measure it again: not once it has
    SLOW_ROUNDS rounds of more than SLOW_SECONDS each (so the default run ends in time; the table says so)."""
    return len(seconds) < SLOW_ROUNDS or min(seconds) <= SLOW_SECONDS


def measure_runs(databases, rounds, results):
    """Time the run, status, quotes and check on both databases, alternating which goes first, --rounds times."""
    for database in databases:
        quotes_run(database, 0)  # the first quotes insert rows; every measured round updates them all
    for name in ("incremental prices run", "status", "status --json", "quotes (every active symbol)",
                 "check (all but exchanges)", "check: its database probes"):
        results[name]  # noqa: B018 - the table's order
    with tempfile.TemporaryDirectory() as directory:
        for number in range(1, rounds + 1):
            for database in (databases if number % 2 else databases[::-1]):
                timings = {"incremental prices run": incremental_run(database)}
                if due(results["status"][database.label]):
                    timings["status"], timings["status --json"] = status_runs(database)
                timings["quotes (every active symbol)"] = quotes_run(database, number)
                timings["check (all but exchanges)"] = check_run(database, directory)
                timings["check: its database probes"] = check_database_run(database, directory)
                for name, seconds in timings.items():
                    results[name][database.label].append(seconds)
            print(f"  round {number}: " + ", ".join(
                f"{name} {values['small'][-1]:.3f}/{values['big'][-1]:.3f} s" for name, values in results.items()),
                flush=True)


def explain_queries(database):
    """Print EXPLAIN (ANALYZE, BUFFERS) of each query of the incremental run (and of status) on the database,
    and whether it read pricedata by a Seq Scan; return those verdicts as lines. The writes are rolled back."""
    upbit = [symbol_id for symbol_id, _ in database.symbols["upbit"]]
    kis = [symbol_id for symbol_id, _ in database.symbols["kis"]]
    newest = {(code, timeframe): execute(database.dsn, statement("newest_timestamps"),
                                         {"ids": ids[:1], "timeframe": timeframe}, fetch=True)[0][1]
              for code, ids, timeframe in (("kis", kis, "1d"), ("upbit", upbit, "1m"))}
    new = next_trading_start(newest["kis", "1d"], "1d", weekdays=True)
    upbit_new = next_start(newest["upbit", "1m"], "1m")
    staged = {"kis": [candle_at(kis[0], "1d", newest["kis", "1d"]), candle_at(kis[0], "1d", new)],
              "upbit": [candle_at(upbit[0], "1m", upbit_new)]}
    offered = {code: list(load_collector(code).TIMEFRAMES) for code in ("upbit", "kis")}
    queries = [
        ("coverage_ends (upbit 1m, every market)", "coverage_ends", {"ids": upbit, "timeframe": "1m"}, None),
        ("coverage_ends (kis 1d, every code)", "coverage_ends", {"ids": kis, "timeframe": "1d"}, None),
        ("newest_timestamps (upbit 1m, every market)", "newest_timestamps", {"ids": upbit, "timeframe": "1m"}, None),
        ("newest_timestamps (kis 1d, every code)", "newest_timestamps", {"ids": kis, "timeframe": "1d"}, None),
        ("upsert_candles_from_stage (kis 1d: its newest and a new candle staged)", "upsert_candles_from_stage",
         {"symbol_id": kis[0], "timeframe": "1d", "first": newest["kis", "1d"], "last": new}, ("kis", kis[0], "1d")),
        ("upsert_candles_from_stage (upbit 1m: a new candle staged)", "upsert_candles_from_stage",
         {"symbol_id": upbit[0], "timeframe": "1m", "first": upbit_new, "last": upbit_new},
         ("upbit", upbit[0], "1m")),
        ("add_fetched_range (kis 1d)", "add_fetched_range",
         {"symbol_id": kis[0], "timeframe": "1d", "range_start": newest["kis", "1d"],
          "range_end": next_start(new, "1d")}, None),
        ("oldest_timestamp (kis 1d; the re-basing path only)", "oldest_timestamp",
         {"symbol_id": kis[0], "timeframe": "1d"}, None),
        ("symbol_freshness (status, upbit)", "symbol_freshness",
         {"exchange": "upbit", "lag_days": 3, "timeframe": "1d"}, None),
        ("symbol_freshness (status, kis)", "symbol_freshness",
         {"exchange": "kis", "lag_days": 3, "timeframe": "1d"}, None),
        ("timeframe_freshness (status, upbit, every timeframe it offers)", "timeframe_freshness",
         {"exchange": "upbit", "timeframes": offered["upbit"]}, None),
        ("timeframe_freshness (status, kis, every timeframe it offers)", "timeframe_freshness",
         {"exchange": "kis", "timeframes": offered["kis"]}, None),
    ]
    connection = connect(database.dsn)
    verdicts = []
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement("create_candle_stage"))
            for title, name, parameters, stage in queries:
                if stage:
                    cursor.execute(statement("empty_candle_stage"))
                    cursor.copy_expert(statement("copy_candle_stage"),
                                       store.candle_copy_buffer(stage[1], staged[stage[0]], stage[2]))
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS)\n" + statement(name), parameters)
                plan = "\n".join(row[0] for row in cursor.fetchall())
                verdict = plan_verdict(plan)
                verdicts.append(f"  {title:72} {verdict}")
                print(f"\n--- {title}: {verdict}\n{plan}", flush=True)
    finally:
        connection.rollback()
        connection.close()
    return "\n".join(verdicts)


def plan_verdict(plan):
    """Given an EXPLAIN ANALYZE text, return whether it read pricedata by a Seq Scan, how many pricedata rows its
    scans returned (rows × loops, summed), and its execution time."""
    scanned = sum(int(rows) * int(loops) for rows, loops in
                  re.findall(r" on pricedata .*actual time=\S+ rows=(\d+) loops=(\d+)", plan))
    seq = "Seq Scan on pricedata" if "Seq Scan on pricedata" in plan else "no Seq Scan on pricedata"
    return f"{seq}; {scanned:,} pricedata rows read; {plan.rsplit('Execution Time: ', 1)[-1]}"


def explain_gaps(database):
    """Print EXPLAIN (ANALYZE, BUFFERS) of each exchange's gaps scan of its largest timeframe (the scan's own
    settings) on the database as it stands; return the verdicts as lines."""
    verdicts = []
    connection = connect(database.dsn)
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement("scan_settings"))
            for code, timeframe, name in (("upbit", "1m", "gaps_every_period"), ("kis", "1d", "gaps_trading_calendar")):
                ids = [symbol_id for symbol_id, _ in database.symbols[code]]
                parameters = gaps.grid_parameters(timeframe)
                parameters.update(timeframe=timeframe, ids=ids, calendar_ids=ids, recheck=False, since=None)
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS)\n" + statement(name), parameters)
                plan = "\n".join(row[0] for row in cursor.fetchall())
                title = f"{name} ({code} {timeframe}, a hole in every series)"
                verdicts.append(f"  {title:72} {plan_verdict(plan)}")
                print(f"\n--- {title}\n{plan}", flush=True)
    finally:
        connection.rollback()
        connection.close()
    return "\n".join(verdicts)


SIZES_SQL = """
    SELECT pg_total_relation_size('pricedata'), pg_relation_size('pricedata'), pg_indexes_size('pricedata'),
           (SELECT count(*) FROM pricedata)
"""
INDEX_SIZES_SQL = """
    SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index
     WHERE indrelid = 'pricedata'::regclass ORDER BY 1
"""
PER_YEAR_SQL = """
    SELECT e.code, per_series.timeframe, avg(per_series.stored),
           avg(per_series.stored / (extract(epoch FROM per_series.span) / (365.25 * 86400)))
      FROM (SELECT symbol_id, timeframe, count(*) AS stored,
                   max("timestamp") - min("timestamp") + min(CASE timeframe WHEN '1m' THEN interval '1 minute'
                        WHEN '1h' THEN interval '1 hour' ELSE interval '1 day' END) AS span
              FROM pricedata GROUP BY symbol_id, timeframe) AS per_series
      JOIN symbol s ON s.id = per_series.symbol_id
      JOIN exchange e ON e.id = s.exchange_id
     GROUP BY e.code, per_series.timeframe
     ORDER BY e.code DESC, per_series.timeframe DESC
"""


def print_sizing(database):
    """Print pricedata's sizes, bytes per row, rows per market per year and its VACUUM's time and cost."""
    total, table, indexes, rows = execute(database.dsn, SIZES_SQL, fetch=True)[0]
    megabyte = 1024 * 1024
    print(f"\nSizing (big database, {rows:,} rows of pricedata):")
    print(f"  pg_total_relation_size {total / megabyte:,.0f} MB, pg_relation_size {table / megabyte:,.0f} MB, "
          f"pg_indexes_size {indexes / megabyte:,.0f} MB")
    for name, size in execute(database.dsn, INDEX_SIZES_SQL, fetch=True):
        print(f"    {name:28} {size / megabyte:8,.0f} MB  {size / rows:6.1f} bytes/row")
    print(f"  bytes per row: table {table / rows:.1f}, table + indexes {(table + indexes) / rows:.1f}, "
          f"total relation {total / rows:.1f}")
    for code, timeframe, stored, per_year in execute(database.dsn, PER_YEAR_SQL, fetch=True):
        per_year = float(per_year)
        print(f"  {code:5} {timeframe}: {per_year:10,.0f} rows per market per year ({float(stored):,.0f} stored per "
              f"series), {per_year * total / rows / 1024:10,.1f} kB per market per year with its indexes")
    print_vacuum(database)


def print_vacuum(database):
    """Given the big database, time VACUUM (FREEZE, VERBOSE) of pricedata (what an anti-wraparound
    autovacuum does to every page) and print the sleeps autovacuum's default throttle would add to
    the same buffer counts, with PostgreSQL 12-13's and 14+'s page costs."""
    connection = connect(database.dsn, autocommit=True)
    try:
        with connection.cursor() as cursor:
            began = time.perf_counter()
            cursor.execute("VACUUM (FREEZE, VERBOSE) pricedata")
            seconds = time.perf_counter() - began
    finally:
        connection.close()
    usages = re.findall(r"buffer usage: (\d+) hits, (\d+) misses, (\d+) dirtied", "".join(connection.notices))
    print(f"  VACUUM (FREEZE) pricedata, unthrottled: {seconds:.1f} s", flush=True)
    if not usages:
        print("  (no buffer usage in VACUUM VERBOSE's output: PostgreSQL before 14)")
        return
    hits, misses, dirtied = (sum(int(usage[column]) for usage in usages) for column in range(3))  # table, toast
    print(f"    buffers: {hits:,} hits, {misses:,} misses, {dirtied:,} dirtied")
    for version, miss_cost in AUTOVACUUM_MISS_COST.items():
        cost = hits * 1 + misses * miss_cost + dirtied * 20  # vacuum_cost_page_hit, _miss, _dirty
        sleeps = cost / AUTOVACUUM_COST_LIMIT * AUTOVACUUM_COST_DELAY
        print(f"    autovacuum's default throttle (cost limit {AUTOVACUUM_COST_LIMIT} per "
              f"{AUTOVACUUM_COST_DELAY * 1000:g} ms, page miss {miss_cost}), {version}: "
              f"{sleeps:,.0f} s of sleeps on top of the work")


def print_table(results, rounds):
    """Print each measurement's median at small and big, big ÷ small and its target."""
    print(f"\nMedians of {rounds} rounds, small and big measured alternately in the same run:")
    print(f"  {'':44} {'small s':>9} {'big s':>9} {'big÷small':>10}  target")
    for name, values in results.items():
        if name.startswith("gaps"):
            continue
        small, big = statistics.median(values["small"]), statistics.median(values["big"])
        verdict = "met" if big / small <= RATIO_TARGET else "NOT met"
        fewer = f" ({len(values['big'])} rounds at big)" if len(values["big"]) < rounds else ""
        print(f"  {name:44} {small:9.3f} {big:9.3f} {big / small:10.2f}  ≤ {RATIO_TARGET} {verdict}{fewer}")
    print(f"\n  {'gaps: scan ÷ count(*) of the same rows':44} {'small':>19} {'big':>19} {'scan big÷small':>15}"
          "  target")
    for name, values in results.items():
        if not name.startswith("gaps"):
            continue
        cells, verdicts = [], []
        for label in ("small", "big"):
            scan = statistics.median(scan for scan, _ in values[label])
            ratio = statistics.median(scan / count for scan, count in values[label])
            cells.append(f"{scan:6.2f}s {ratio:5.2f}×")
            verdicts.append(ratio <= GAPS_TARGET)
        growth = statistics.median(s for s, _ in values["big"]) / statistics.median(s for s, _ in values["small"])
        fewer = f" ({len(values['big'])} rounds at big)" if len(values["big"]) < rounds else ""
        print(f"  {name:44} {cells[0]:>19} {cells[1]:>19} {growth:15.1f}  ≤ {GAPS_TARGET:g} × count "
              f"{'met' if all(verdicts) else 'NOT met'}{fewer}")
    print("  (each gaps cell: the scan's median seconds, and the median of scan ÷ count(*) per round)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--big-rows", type=int, default=30_000_000, help="rows of the big database (30 M)")
    parser.add_argument("--small-rows", type=int, default=1_000_000, help="rows of the small database (1 M)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each measurement; medians are printed")
    parser.add_argument("--keep", action="store_true", help="do not drop the two databases at the end")
    parser.add_argument("--reuse", action="store_true",
                        help="use the databases a --keep run left, when built for the same row targets")
    arguments = parser.parse_args()
    began = time.monotonic()
    server = server_dsn()
    sizes = (("small", "wombat_scale_small", arguments.small_rows), ("big", "wombat_scale_big", arguments.big_rows))
    try:
        databases = [describe_database(label, open_database(server, name, rows, arguments.reuse), rows)
                     for label, name, rows in sizes]
        print(f"databases ready after {time.monotonic() - began:.0f} s; measuring", flush=True)
        results = defaultdict(lambda: {"small": [], "big": []})  # {measurement: {label: [seconds]}}, in order
        measure_runs(databases, arguments.rounds, results)
        verdicts = explain_queries(databases[1])
        print(f"\nEXPLAIN verdicts (big database):\n{verdicts}")
        print_sizing(databases[1])  # before the holes: each series whole
        measure_gaps(databases, arguments.rounds, results)
        gaps_verdicts = explain_gaps(databases[1])
        print_table(results, arguments.rounds)
        print(f"\nEXPLAIN verdicts (big database):\n{verdicts}\n{gaps_verdicts}")
    finally:
        if not arguments.keep:
            for _, name, _ in sizes:
                execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"\ntotal run time {time.monotonic() - began:.0f} s", flush=True)


if __name__ == "__main__":
    main()
