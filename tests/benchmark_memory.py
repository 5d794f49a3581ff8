"""Benchmark: peak memory of the container's command lines, for the Kubernetes resources.

A script, not a test:

    .venv/bin/python tests/benchmark_memory.py --markets 800 --stocks 2800 --days 400

It serves --markets Upbit markets and --stocks KIS stocks with --days of history
from the fake exchanges (no rate limit), then runs on a fresh database, one after
the other, the commands of crontab/supercronic in schedule order (the first
`prices --exchange all` backfills WOMBAT_BACKFILL_DAYS, 365 days; the second is a
daily run), then `status`. Each runs under `/usr/bin/time -v`; it prints the peak
RSS (VmHWM), CPU and wall time of each.

The database: WOMBAT_TEST_DATABASE_URL (a server where it may create databases).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import create_database, drop_database  # noqa: E402
from tests.fakes.kis_server import FakeKis, build_master_row, build_master_zip, make_kis_rows  # noqa: E402
from tests.fakes.upbit_server import FakeUpbit, make_upbit_candles, make_upbit_markets  # noqa: E402

COMMANDS = ["symbols --exchange all", "prices --exchange all", "prices --exchange all", "prices --exchange upbit",
            "status"]
KIS_MARKETS = ("kospi", "kosdaq", "konex")


def fake_upbit(markets, start, end):
    """Given a market count and a date range, return a FakeUpbit serving them."""
    rows = make_upbit_markets(markets, quotes=("KRW",))
    candles = {row["market"]: make_upbit_candles(row["market"], start, end) for row in rows}
    return FakeUpbit(markets=rows, candles=candles, rate_limit=None)


def fake_kis(stocks, start, end):
    """Given a stock count and a date range, return a FakeKis listing them over three markets."""
    server = FakeKis(rate_limit=None, token_throttle_seconds=None)
    codes = [f"{number:06d}" for number in range(100000, 100000 + stocks)]
    for index, market in enumerate(KIS_MARKETS):
        listed = codes[index::len(KIS_MARKETS)]
        rows = [build_master_row(market, code, f"KR7{code}000", f"종목{code}", "ST") for code in listed]
        server.set_master(market, build_master_zip(market, rows))
    for code in codes:
        server.set_prices(code, make_kis_rows(code, start, end))
    return server


def measure(command, env):
    """Given a command line after `wombat-collect` and an env, run it under time -v; return a result line."""
    executable = Path(sys.executable).parent / "wombat-collect"
    started = time.monotonic()
    result = subprocess.run(["/usr/bin/time", "-v", str(executable), *command.split()], env=env,
                            capture_output=True, text=True)
    wall = time.monotonic() - started
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1)) / 1024
    cpu = sum(float(re.search(rf"{kind} time \(seconds\): ([\d.]+)", result.stderr).group(1))
              for kind in ("User", "System"))
    return f"{command:26} exit {result.returncode:3}  peak RSS {peak:6.1f} MiB  CPU {cpu:6.1f} s  wall {wall:6.1f} s"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", type=int, default=800)
    parser.add_argument("--stocks", type=int, default=2800)
    parser.add_argument("--days", type=int, default=400)
    options = parser.parse_args()
    server = os.environ["WOMBAT_TEST_DATABASE_URL"]
    end = datetime.now(timezone.utc).date()
    start = end - timedelta(days=options.days)
    database = create_database(server, "wombat_memory")
    with fake_upbit(options.markets, start, end) as upbit, fake_kis(options.stocks, start, end) as kis, \
            tempfile.TemporaryDirectory() as state:
        env = dict(os.environ, DATABASE_URL=database, UPBIT_API_URL=upbit.url, UPBIT_RATE_LIMIT="1000",
                   KIS_API_URL=kis.url, KIS_MASTER_URL=kis.master_url, KIS_APP_KEY=kis.app_key,
                   KIS_APP_SECRET=kis.app_secret, KIS_RATE_LIMIT="1000", WOMBAT_STATE_DIR=state,
                   WOMBAT_LOCK_DIR=state, WOMBAT_ENV_FILE="/dev/null", TZ="Asia/Seoul")
        for command in COMMANDS:
            print(measure(command, env), flush=True)
    drop_database(server, database)


if __name__ == "__main__":
    main()
