"""Helpers for the fault and validation matrices: fresh databases, fake data, concurrent CLI runs.

A matrix prepares every scenario (a fresh database, its own fake exchange, its
own lock and state directories), then runs `wombat-collect` for all of them at
once as subprocesses: most faults cost back-off sleeps, so running them side by
side keeps the whole matrix about as long as its slowest scenario.
"""

import contextlib
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

import psycopg2

from tests.conftest import dsn_with_database, query, stored_prices
from tests.fakes.kis_server import build_master_row, build_master_zip, make_kis_rows
from tests.fakes.upbit_server import make_upbit_candles
from tests.ops_support import cli_command, process_env

TODAY = datetime.now(timezone.utc).date()
UPBIT_START = TODAY - timedelta(days=450)  # three pages of 200 candles
KIS_START = date(2024, 1, 2)
KIS_END = date(2024, 6, 28)  # 130 trading days: two pages of 100 rows
CANDLES_PATH = "/v1/candles/days"
KIS_PRICES_PATH = "/uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice"
RUN_TIMEOUT_SECONDS = 90


@contextlib.contextmanager
def fresh_database(server_dsn):
    """Given a server DSN, yield the DSN of a new empty database, dropped afterwards."""
    name = f"wombat_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(server_dsn)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        yield dsn_with_database(server_dsn, name)
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


def public_tables(dsn):
    """Given a DSN, return the names of the tables in its public schema, sorted."""
    return [name for (name,) in query(dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                                           " ORDER BY tablename")]


def own_tables(dsn):
    """Given a DSN, return the names of the tables in wombat-collect's own schema (wombat_collect), sorted."""
    return [name for (name,) in query(dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'wombat_collect'"
                                           " ORDER BY tablename")]


def collect_runs(dsn):
    """Given a DSN, return every collect_run row as text (all columns), in id order; [] before the table exists."""
    if not query(dsn, "SELECT to_regclass('wombat_collect.collect_run') IS NOT NULL")[0][0]:
        return []
    return [row for (row,) in query(dsn, "SELECT r::text FROM wombat_collect.collect_run r ORDER BY id")]


# --------------------------------------------------------------------------- Upbit data


def upbit_symbol(market):
    """Given `KRW-BTC`, return `BTC/KRW`."""
    quote, base = market.split("-")
    return f"{base}/{quote}"


def install_upbit(fake, markets, start=UPBIT_START):
    """Given a FakeUpbit and market codes, serve daily candles from `start` to today; return them by market."""
    candles = {market: make_upbit_candles(market, start, TODAY) for market in markets}
    for market, rows in candles.items():
        fake.set_candles(market, rows)
    return candles


def upbit_rows(candles_by_market, since=UPBIT_START):
    """Given the fake's candles by market, return what a run stores (closed candles since `since`), as stored_prices."""
    rows = []
    for market, candles in candles_by_market.items():
        for candle in candles:
            moment = datetime.fromisoformat(candle["candle_date_time_utc"]).replace(tzinfo=timezone.utc)
            if since <= moment.date() < TODAY:
                rows.append((upbit_symbol(market), moment, candle["opening_price"], candle["high_price"],
                             candle["low_price"], candle["trade_price"], candle["candle_acc_trade_volume"],
                             candle["candle_acc_trade_price"], "1d"))
    return sorted(rows, key=lambda row: (row[0], row[1]))


def for_market(market):
    """Return a fault predicate matching Upbit candle requests of one market."""
    return lambda request: request.path == CANDLES_PATH and request.query.get("market") == market


def for_market_page_2(market):
    """Return a fault predicate matching the second and later candle pages of one market."""
    return lambda request: for_market(market)(request) and "to" in request.query


# --------------------------------------------------------------------------- KIS data


def install_kis(fake, codes, start=KIS_START, end=KIS_END):
    """Given a FakeKis and short codes, serve them in the KOSPI master with daily rows from start to end."""
    rows = [build_master_row("kospi", code, f"KR7{code:0>9}"[:12], f"종목{code}", "ST") for code in codes]
    fake.set_master("kospi", build_master_zip("kospi", rows))
    fake.set_master("kosdaq", build_master_zip("kosdaq", []))
    fake.set_master("konex", build_master_zip("konex", []))
    for code in codes:
        fake.set_prices(code, make_kis_rows(code, start, end))


def kis_rows(fake, codes, since=KIS_START):
    """Given a FakeKis and codes, return what a run stores for them, as stored_prices gives them."""
    from tests.kis_support import expected_prices

    return expected_prices(fake, codes, since)


def for_code(code):
    """Return a fault predicate matching KIS price requests of one code."""
    return lambda request: request.path == KIS_PRICES_PATH and request.query.get("FID_INPUT_ISCD") == code


def for_code_page_2(code):
    """Return a fault predicate matching the second and later price pages of one code."""
    today = datetime.now(timezone(timedelta(hours=9))).strftime("%Y%m%d")
    return lambda request: for_code(code)(request) and request.query.get("FID_INPUT_DATE_2") != today


def symbol_rows(rows, symbol):
    """Given stored_prices rows, return those of one symbol."""
    return [row for row in rows if row[0] == symbol]


# --------------------------------------------------------------------------- concurrent runs


@dataclass
class Scenario:
    """One CLI run of a matrix: its environment, arguments and, once run, its outcome."""

    name: str
    database: str
    env: dict
    arguments: tuple
    fake: object = None
    data: dict = field(default_factory=dict)
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0

    def rows(self, exchange):
        return stored_prices(self.database, exchange) if "pricedata" in public_tables(self.database) else []


def run_concurrently(scenarios, timeout=RUN_TIMEOUT_SECONDS):
    """Given Scenarios, run each one's CLI as a subprocess, all at once; fill in their outcomes."""
    from concurrent.futures import ThreadPoolExecutor

    started = time.monotonic()

    def run(scenario):
        process = subprocess.Popen(cli_command(*scenario.arguments), env=process_env(scenario.env),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            scenario.stdout, scenario.stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            scenario.stdout, scenario.stderr = process.communicate()
            scenario.stderr += f"\n[test] killed after {timeout}s"
        scenario.returncode = process.returncode
        scenario.seconds = time.monotonic() - started

    with ThreadPoolExecutor(max_workers=len(scenarios) or 1) as executor:
        list(executor.map(run, scenarios))
    return scenarios
