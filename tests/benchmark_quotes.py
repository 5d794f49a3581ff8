"""Benchmark: `wombat-collect quotes` over 800 Upbit markets and 2,800 KIS securities.

A script, not a test (timings on shared machines are noise; ratios are not):

    .venv/bin/python tests/benchmark_quotes.py --latency 0.05

It stores the symbols, starts strict fakes (Upbit: 10 requests/s per group, KIS:
18/s per app key, each answer delayed by --latency) and runs the quotes job of
each exchange in this process (the job the CLI runs, without the interpreter's
start-up), then once more through the CLI. It prints, per exchange:
requests ÷ the minimum possible (Upbit: one ticker/all + ⌈markets/100⌉ order
books; KIS: ⌈codes/30⌉ multi-price requests), wall time ÷ (requests ÷ rate
limit), and rows written per second by the one upsert statement (all new, all
changed, all unchanged), before issue 20 (BASELINE_UPSERT, INSERT … ON CONFLICT, an id
per quote given) and now, with now ÷ before, medians of --rounds.

The database: WOMBAT_TEST_DATABASE_URL (a server where it may create databases), or
an embedded PostgreSQL.
"""

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.benchmark_prices import server_dsn  # noqa: E402
from tests.conftest import create_database, drop_database  # noqa: E402
from tests.fakes.kis_server import FakeKis  # noqa: E402
from tests.fakes.upbit_server import FakeUpbit, make_upbit_markets  # noqa: E402
from wombat_collect import quotes  # noqa: E402
from wombat_collect.collectors import kis, upbit  # noqa: E402
from wombat_collect.config import load_settings  # noqa: E402
from wombat_collect.db import store  # noqa: E402
from wombat_collect.jobs.database import prepare_database  # noqa: E402
from wombat_collect.records import Quote  # noqa: E402

UPBIT_RATE, KIS_RATE = 10, 18
INSERT_SYMBOL = """
    INSERT INTO symbol (exchange_id, symbol, symbol_type, is_active, price_precision, quantity_precision,
                        created_at, updated_at)
    SELECT %s, unnest(%s::text[]), 'BENCH', true, 8, 8, now(), now()
"""


def upbit_symbols(count):
    """Given a count, return the fake's market codes (KRW-C001, BTC-C002, ...) and their BASE/QUOTE symbols."""
    markets = [row["market"] for row in make_upbit_markets(count)]
    return markets, [f"{market.split('-')[1]}/{market.split('-')[0]}" for market in markets]


def kis_codes(count):
    return [f"{100000 + number:06d}" for number in range(count)]


def store_symbols(dsn, exchange_ids, upbit_names, codes):
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute(INSERT_SYMBOL, (exchange_ids["upbit"], upbit_names))
        cursor.execute(INSERT_SYMBOL, (exchange_ids["kis"], codes))
    connection.close()


def settings_for(fake_upbit, fake_kis, state_dir):
    return load_settings({
        "UPBIT_API_URL": fake_upbit.url, "UPBIT_RATE_LIMIT": str(UPBIT_RATE), "KIS_API_URL": fake_kis.url,
        "KIS_APP_KEY": fake_kis.app_key, "KIS_APP_SECRET": fake_kis.app_secret, "KIS_RATE_LIMIT": str(KIS_RATE),
        "WOMBAT_STATE_DIR": str(state_dir), "WOMBAT_HTTP_TIMEOUT": "10"})


def measure_job(dsn, exchange_id, collector, client, fake, path, minimum, rate):
    """Run one exchange's quotes job in-process; print requests ÷ minimum and wall ÷ (requests ÷ rate)."""
    fake.clear_requests()
    began = time.monotonic()
    result = quotes.collect_quotes(dsn, exchange_id, collector, client)
    wall = time.monotonic() - began
    requests = sum(1 for request in fake.requests if request.path in path)
    assert result.status == "succeeded", result.summary()
    print(f"{collector.EXCHANGE.code:5}  rows {result.rows.total:5,}  requests {requests:3} / minimum {minimum:3}"
          f" = {requests / minimum:.2f}  wall {wall:5.2f}s / (requests / rate {rate}/s = {requests / rate:5.2f}s)"
          f" = {wall / (requests / rate):.2f}")
    return result


def measure_cli(dsn, fake_upbit, fake_kis, state_dir):
    env = dict(os.environ, DATABASE_URL=dsn, UPBIT_API_URL=fake_upbit.url, UPBIT_RATE_LIMIT=str(UPBIT_RATE),
               KIS_API_URL=fake_kis.url, KIS_APP_KEY=fake_kis.app_key, KIS_APP_SECRET=fake_kis.app_secret,
               KIS_RATE_LIMIT=str(KIS_RATE), WOMBAT_STATE_DIR=str(state_dir), WOMBAT_ENV_FILE="/dev/null",
               WOMBAT_LOCK_DIR=str(state_dir))
    for exchange in ("upbit", "kis"):
        began = time.monotonic()
        subprocess.run([sys.executable, "-m", "wombat_collect", "quotes", "--exchange", exchange], env=env,
                       check=True, capture_output=True)
        print(f"CLI quotes --exchange {exchange}: {time.monotonic() - began:.2f}s wall (interpreter start-up,"
              " migrations check, locks, run history included)")


# BASELINE, kept to measure against: store.upsert_quotes's statement before issue 20. INSERT … ON
# CONFLICT evaluates nextval() for every proposed row, so every quote spent a realtime_prices id.
BASELINE_UPSERT = """
INSERT INTO realtime_prices AS r (symbol_id, current_price, bid_price, ask_price, volume_24h,
                                  change_rate, updated_at)
SELECT *
  FROM unnest(%(symbol_ids)s::integer[], %(current_prices)s::numeric[], %(bid_prices)s::numeric[],
              %(ask_prices)s::numeric[], %(volumes)s::numeric[], %(change_rates)s::numeric[],
              %(updated_ats)s::timestamptz[])
ON CONFLICT (symbol_id) DO UPDATE
   SET current_price = EXCLUDED.current_price,
       bid_price     = EXCLUDED.bid_price,
       ask_price     = EXCLUDED.ask_price,
       volume_24h    = EXCLUDED.volume_24h,
       change_rate   = EXCLUDED.change_rate,
       updated_at    = EXCLUDED.updated_at
 WHERE (r.current_price, r.bid_price, r.ask_price, r.volume_24h, r.change_rate)
       IS DISTINCT FROM
       (EXCLUDED.current_price, EXCLUDED.bid_price, EXCLUDED.ask_price, EXCLUDED.volume_24h,
        EXCLUDED.change_rate)
RETURNING (xmax = 0) AS inserted
"""
WRITE_PHASES = (("new", Decimal("71500")), ("changed", Decimal("71600")), ("unchanged", Decimal("71600")))


def upsert_quotes_baseline(connection, rows):
    """Upsert [(symbol id, Quote)] with BASELINE_UPSERT; return the rows it returned."""
    quotes = [quote for _, quote in rows]
    with connection.cursor() as cursor:
        cursor.execute(BASELINE_UPSERT, {
            "symbol_ids": [symbol_id for symbol_id, _ in rows], "current_prices": [q.current for q in quotes],
            "bid_prices": [q.bid for q in quotes], "ask_prices": [q.ask for q in quotes],
            "volumes": [q.volume_24h for q in quotes], "change_rates": [q.change_rate for q in quotes],
            "updated_ats": [q.quoted_at for q in quotes]})
        return cursor.fetchall()


def measure_writes(dsn, exchange_id, count, rounds):
    """Upsert `count` quotes three times (new, all changed, all unchanged) with the statement before
    issue 20 and now, `rounds` times (alternating which goes first); print median rows/s of each."""
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT id FROM symbol WHERE exchange_id = %s ORDER BY id LIMIT %s", (exchange_id, count))
        ids = [row[0] for row in cursor.fetchall()]
    connection.close()
    paths = {"before": upsert_quotes_baseline, "now": store.upsert_quotes}
    rates = {phase: {name: [] for name in paths} for phase, _ in WRITE_PHASES}
    for number in range(rounds):
        for name in (list(paths) if number % 2 == 0 else list(paths)[::-1]):
            for phase, seconds in timed_phases(dsn, ids, paths[name]):
                rates[phase][name].append(len(ids) / seconds)
    print(f"write, {len(ids):,} quotes in one statement, median of {rounds}: before = INSERT … ON CONFLICT"
          " (an id per quote given), now = UPDATE + INSERT … WHERE NOT EXISTS")
    for phase, by_path in rates.items():
        before, now = (statistics.median(by_path[name]) for name in paths)
        print(f"  {phase:9}  before {before:9,.0f} rows/s   now {now:9,.0f} rows/s   now ÷ before {now / before:.2f}")


def timed_phases(dsn, ids, upsert):
    """Given symbol ids and an upsert function, empty their quotes, then yield (phase, seconds) of each write."""
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("DELETE FROM realtime_prices WHERE symbol_id = ANY(%s)", (ids,))
    connection.close()
    now = datetime.now(timezone.utc)
    base = Quote("x", Decimal("71500"), Decimal("71400"), Decimal("71600"), Decimal("12345678.5"),
                 Decimal("-1.2345"), now)
    for phase, price in WRITE_PHASES:
        rows = [(symbol_id, replace(base, current=price + index)) for index, symbol_id in enumerate(ids)]
        with psycopg2.connect(dsn) as connection:
            began = time.perf_counter()
            upsert(connection, rows)
            connection.commit()
            seconds = time.perf_counter() - began
        connection.close()
        yield phase, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markets", type=int, default=800)
    parser.add_argument("--codes", type=int, default=2800)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds each fake answer is delayed")
    parser.add_argument("--rounds", type=int, default=7, help="rounds of the before/now write comparison")
    arguments = parser.parse_args()
    server = server_dsn()
    dsn = create_database(server, "wombat_bench")
    markets, names = upbit_symbols(arguments.markets)
    codes = kis_codes(arguments.codes)
    try:
        with FakeUpbit(make_upbit_markets(arguments.markets), rate_limit=UPBIT_RATE,
                       latency=arguments.latency) as fake_upbit, \
                FakeKis(rate_limit=KIS_RATE, latency=arguments.latency) as fake_kis, \
                tempfile.TemporaryDirectory() as state_dir:
            for code in codes:
                fake_kis.set_quote(code, inter2_prpr="71500", inter2_bidp="71400", inter2_askp="71600",
                                   acml_vol="123456", prdy_ctrt="1.25")
            exchange_ids = prepare_database(dsn, [upbit, kis])
            store_symbols(dsn, exchange_ids, names, codes)
            settings = settings_for(fake_upbit, fake_kis, state_dir)
            print(f"{arguments.markets} Upbit markets, {arguments.codes} KIS codes, answers delayed "
                  f"{arguments.latency * 1000:.0f} ms, strict fakes at {UPBIT_RATE}/s (per group) and {KIS_RATE}/s")
            measure_job(dsn, exchange_ids["upbit"], upbit, upbit.open_client(settings), fake_upbit,
                        (upbit.TICKER_PATH, upbit.ORDERBOOK_PATH), 1 + math.ceil(arguments.markets / 100), UPBIT_RATE)
            kis_client = kis.open_client(settings)
            kis_client.authenticator.headers()  # the day's token, fetched once a day, not per run
            measure_job(dsn, exchange_ids["kis"], kis, kis_client, fake_kis, (kis.QUOTES_PATH,),
                        math.ceil(arguments.codes / 30), KIS_RATE)
            measure_cli(dsn, fake_upbit, fake_kis, state_dir)
            measure_writes(dsn, exchange_ids["kis"], arguments.codes, arguments.rounds)
    finally:
        drop_database(server, dsn)


if __name__ == "__main__":
    main()
