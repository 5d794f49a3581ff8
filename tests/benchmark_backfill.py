"""Benchmark: one backfill shared by N worker processes (`prices --since D --worker`), each its own address.

A script, not a test (timings on shared machines are noise; ratios are not):

    .venv/bin/python tests/benchmark_backfill.py --markets 32 --days 1 --latency 0.05 --rate 10 --rounds 3

The fake Upbit answers after --latency seconds and limits each client address to --rate
requests a second (a strict 1 s sliding window), as Upbit limits each IP. Each round runs
the same 1-minute backfill on a fresh database with 1, 2 and 4 workers, worker i sending
from 127.0.0.(2+i) (WOMBAT_SOURCE_ADDRESS) at UPBIT_RATE_LIMIT = --rate. Throughput is
answered candle requests a second at the fake, from its first to its last candle request
(start-up and the listing excluded). It prints, as medians over the rounds:

- scaling: throughput of N workers ÷ (N × throughput of one), measured in the same round (target ≥ 0.9);
- achieved ÷ limit: throughput of N workers ÷ (N × --rate);
- wall time of N workers ÷ wall time of one, and 429s per 1,000 requests.

Every run must store each served candle once and have no page answered twice, or the
benchmark stops.

The database: WOMBAT_TEST_DATABASE_URL (a server where it may create databases), or an
embedded PostgreSQL.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.benchmark_prices import drop_created_databases, fresh_database, server_dsn  # noqa: E402
from tests.fakes.upbit_server import CANDLE_PREFIX, FakeUpbit, GeneratedSeries  # noqa: E402
from tests.ops_support import cli_command, process_env  # noqa: E402

WORKER_COUNTS = (1, 2, 4)
TARGET = 0.9


def serve_series(fake, markets, days):
    """Given the fake and a size, serve `markets` 1-minute series of `days` days ending at today's midnight.

    Return the first day (the backfill's --since).
    """
    end = datetime.combine(datetime.now(timezone.utc).date(), datetime.min.time())
    start = end - timedelta(days=days)
    for index in range(markets):
        fake.set_generated(GeneratedSeries(f"KRW-P{index:03d}", 1, start, end, seed=index))
    return start.date()


def run_workers(dsn, fake, since, expected, count, rate, threads):
    """Given a fresh database and the candles served, run `count` workers side by side.

    Return (wall seconds, requests, throughput, 429s).
    """
    lock_dir = tempfile.mkdtemp()
    base = {"DATABASE_URL": dsn, "UPBIT_API_URL": fake.url, "UPBIT_RATE_LIMIT": str(rate),
            "WOMBAT_WORKERS": str(threads), "WOMBAT_LOCK_DIR": lock_dir}
    subprocess.run(cli_command("symbols", "--exchange", "upbit"), env=process_env(base), check=True,
                   capture_output=True)
    fake.clear_requests()
    command = cli_command("prices", "--exchange", "upbit", "--since", since.isoformat(), "--timeframe", "1m",
                          "--worker")
    began = time.monotonic()
    processes = [subprocess.Popen(command, env=process_env(dict(base, WOMBAT_SOURCE_ADDRESS=f"127.0.0.{2 + index}")),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for index in range(count)]
    outputs = [process.communicate() for process in processes]
    wall = time.monotonic() - began
    for process, (output, _) in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise SystemExit(f"a worker failed ({process.returncode}): {output[-2000:]}")
    candles = [record for record in fake.requests if record.path.startswith(CANDLE_PREFIX)]
    check_complete(dsn, expected, candles)
    answered = [record.time for record in candles if record.status == 200]
    throughput = (len(answered) - 1) / (max(answered) - min(answered))
    return wall, len(candles), throughput, sum(1 for record in candles if record.status == 429)


def check_complete(dsn, expected, candles):
    """Given a finished backfill's database, the candles served and the candle requests, stop unless every
    served candle is stored once and no page was answered twice."""
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*), count(DISTINCT (symbol_id, timestamp)) FROM pricedata")
        stored, distinct = cursor.fetchone()
    connection.close()
    pages = Counter((record.query["market"], record.query.get("to")) for record in candles if record.status == 200)
    if stored != expected or distinct != stored or max(pages.values()) != 1:
        raise SystemExit(f"incomplete backfill: {stored} rows ({distinct} distinct) of {expected}, "
                         f"a page answered {max(pages.values())} times")


def measure_round(server, fake, since, expected, rate, threads):
    """Given the fake serving the series, run one round. Return {workers: (wall, requests, throughput, 429s)}."""
    return {count: run_workers(fresh_database(server), fake, since, expected, count, rate, threads)
            for count in WORKER_COUNTS}


def print_results(rounds, rate):
    """Given each round's results, print the medians of the ratios."""
    one = [result[1] for result in rounds]
    print(f"1 worker: {statistics.median(r[2] for r in one):.2f} requests/s median ÷ {rate} limit = "
          f"{statistics.median(r[2] for r in one) / rate:.2f}; {statistics.median(r[1] for r in one):.0f} requests, "
          f"{statistics.median(r[0] for r in one):.1f} s wall")
    for count in WORKER_COUNTS[1:]:
        scaling = statistics.median(result[count][2] / (count * result[1][2]) for result in rounds)
        achieved = statistics.median(result[count][2] / (count * rate) for result in rounds)
        wall = statistics.median(result[count][0] / result[1][0] for result in rounds)
        errors = statistics.median(1000 * result[count][3] / result[count][1] for result in rounds)
        verdict = "met" if scaling >= TARGET else "NOT met"
        print(f"{count} workers: throughput ÷ ({count} × one worker) = {scaling:.2f} median (target {TARGET}: "
              f"{verdict}); achieved ÷ ({count} × limit) = {achieved:.2f}; wall ÷ one worker's = {wall:.2f}; "
              f"429s per 1,000 requests {errors:.1f}")
    for number, result in enumerate(rounds, 1):
        print(f"  round {number}: " + "; ".join(
            f"{count} workers {result[count][2]:.2f} req/s, {result[count][1]} requests, {result[count][0]:.1f} s"
            for count in WORKER_COUNTS))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markets", type=int, default=32)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rate", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="WOMBAT_WORKERS of each worker process")
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    print(f"{arguments.markets} markets x {arguments.days} day(s) of 1-minute candles, latency "
          f"{arguments.latency * 1000:.0f} ms, {arguments.rate} req/s per address, {arguments.threads} threads "
          f"per worker, {arguments.rounds} rounds")
    server = server_dsn()
    try:
        with FakeUpbit(latency=arguments.latency, rate_limit=arguments.rate) as fake:
            since = serve_series(fake, arguments.markets, arguments.days)
            expected = arguments.markets * arguments.days * 24 * 60  # a candle every minute, no gap
            rounds = []
            for _ in range(arguments.rounds):
                rounds.append(measure_round(server, fake, since, expected, arguments.rate, arguments.threads))
                drop_created_databases()
        print_results(rounds, arguments.rate)
        print("every run stored each candle once; no page was answered twice")
    finally:
        drop_created_databases()


if __name__ == "__main__":
    main()
