"""Benchmark: `prices --exchange all` runs Upbit and KIS concurrently.

A script, not a test (timings on shared machines are noise; ratios are not):

    .venv/bin/python tests/benchmark_exchanges.py --upbit-markets 60 --kis-codes 60 --repeat 3

Both fakes are strict (1 s sliding windows at the rates given) and answer after --latency.
Each repetition runs, on fresh databases, `prices --exchange upbit`, `prices --exchange kis`
and `prices --exchange all` in subprocesses (the listing stored first, not timed), and prints
the wall times and the ratio all ÷ max(upbit alone, kis alone): 1.0 is perfect overlap, 2.0
one exchange after the other. The rates are chosen so both exchanges take about as long,
where running them one after the other would cost the most.

The database: WOMBAT_TEST_DATABASE_URL, or an embedded PostgreSQL.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.benchmark_prices import server_dsn  # noqa: E402
from tests.conftest import create_database, drop_database  # noqa: E402
from tests.fakes.kis_server import FakeKis  # noqa: E402
from tests.fakes.upbit_server import FakeUpbit, make_upbit_candles  # noqa: E402
from tests.kis_support import PRICE_END, PRICE_START, both_env, install_masters, install_prices  # noqa: E402


def serve(upbit, kis, markets, codes):
    """Given both fakes, give Upbit `markets` KRW markets and KIS `codes` KOSPI stocks (2024-01-02..06-28)."""
    for index in range(markets):
        market = f"KRW-B{index:04d}"
        upbit.set_candles(market, make_upbit_candles(market, PRICE_START, PRICE_END - timedelta(days=1), seed=index))
    stocks = [(f"{100000 + index:06d}", f"KR7{100000 + index:06d}00", f"종목{index}", "ST") for index in range(codes)]
    install_masters(kis, {"kospi": stocks, "kosdaq": [], "konex": []})
    install_prices(kis, [code for code, *_ in stocks])


def timed_run(server, upbit, kis, exchange, arguments):
    """Given an exchange choice, run its listing, then time its prices run on a fresh database. Return seconds."""
    dsn = create_database(server, "wombat_bench")
    env = dict(os.environ, WOMBAT_ENV_FILE="/dev/null", WOMBAT_LOCK_DIR=tempfile.mkdtemp(),
               **both_env(dsn, upbit, kis, Path(tempfile.mkdtemp()), **arguments))
    base = [sys.executable, "-m", "wombat_collect", "-q"]
    try:
        subprocess.run([*base, "symbols", "--exchange", exchange], env=env, check=True, capture_output=True)
        began = time.monotonic()
        completed = subprocess.run([*base, "prices", "--exchange", exchange, "--since", f"{PRICE_START}"],
                                   env=env, capture_output=True, text=True)
        wall = time.monotonic() - began
    finally:
        drop_database(server, dsn)
    if completed.returncode != 0:
        raise SystemExit(f"prices --exchange {exchange} failed ({completed.returncode}): {completed.stderr[-2000:]}")
    return wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upbit-markets", type=int, default=60)
    parser.add_argument("--kis-codes", type=int, default=60)
    parser.add_argument("--upbit-rate", type=int, default=10)
    parser.add_argument("--kis-rate", type=int, default=20)  # two pages a code: as long as Upbit's one
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    server = server_dsn()
    arguments = {"UPBIT_RATE_LIMIT": str(options.upbit_rate), "KIS_RATE_LIMIT": str(options.kis_rate),
                 "WOMBAT_WORKERS": "8"}
    with FakeUpbit(rate_limit=options.upbit_rate, latency=options.latency) as upbit, \
            FakeKis(rate_limit=options.kis_rate, latency=options.latency, token_throttle_seconds=None) as kis:
        serve(upbit, kis, options.upbit_markets, options.kis_codes)
        ratios = []
        for repetition in range(options.repeat):
            walls = {exchange: timed_run(server, upbit, kis, exchange, arguments)
                     for exchange in ("upbit", "kis", "all")}
            ratio = walls["all"] / max(walls["upbit"], walls["kis"])
            ratios.append(ratio)
            print(f"run {repetition + 1}: upbit {walls['upbit']:.2f}s, kis {walls['kis']:.2f}s, "
                  f"all {walls['all']:.2f}s; all ÷ slower alone = {ratio:.3f}; "
                  f"÷ sum = {walls['all'] / (walls['upbit'] + walls['kis']):.3f}", flush=True)
    print(f"all ÷ slower alone: median {statistics.median(ratios):.3f}, max {max(ratios):.3f} (budget 1.10)")


if __name__ == "__main__":
    main()
