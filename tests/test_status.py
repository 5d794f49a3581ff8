"""`wombat-collect status`: exit codes 0/1/2, the table, --json, dead and running runs."""

import json
import re
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest

from tests.conftest import query, run_cli, upbit_env
from tests.fakes.upbit_server import make_upbit_candles
from tests.ops_support import TODAY, closed_port_url
from wombat_collect.ops import locks
from wombat_collect.ops.history import Run
from wombat_collect.ops.status import JobHealth, judge_job

NOW = datetime(2025, 7, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def collected(database, fake_upbit):
    """A database after a successful `symbols` and `prices` run for Upbit (two markets, 8 days)."""
    for market in ("KRW-BTC", "USDT-XRP"):
        fake_upbit.set_candles(market, make_upbit_candles(market, TODAY - timedelta(days=8), TODAY))
    env = upbit_env(database, fake_upbit)
    assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
    assert run_cli("prices", "--exchange", "upbit", env=env).exit_code == 0
    return env


def status(env, *arguments):
    return run_cli("status", *arguments, env=env)


def execute(dsn, sql, parameters=None):
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute(sql, parameters)
    connection.close()


def test_status_fresh_database_warns_never_run(database):
    result = status({"DATABASE_URL": database})
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == ("WOMBAT-COLLECT WARNING - upbit symbols: never run; upbit prices: never run; "
                        "kis symbols: never run; kis prices: never run")
    assert [line.split()[:4] for line in lines[2:6]] == [
        ["upbit", "symbols", "warning", "never"], ["upbit", "prices", "warning", "never"],
        ["kis", "symbols", "warning", "never"], ["kis", "prices", "warning", "never"]]
    assert lines[6] == ("upbit: 0 active, 0 inactive symbols; newest candle none; 0 lagging more than 3 days; "
                        "0 without candles")


def test_status_exchange_upbit_after_a_successful_run_exits_0(collected):
    result = status(collected, "--exchange", "upbit")
    assert result.exit_code == 0, result.stdout
    lines = result.stdout.splitlines()
    assert lines[0] == "WOMBAT-COLLECT OK"
    assert lines[1].split("  ")[0] == "exchange"
    cells = re.split(r"\s{2,}", lines[3])
    assert [cells[index] for index in (0, 1, 2, 4, 6, 7)] == ["upbit", "prices", "ok", "succeeded", "2/0/0", "16/0/0"]
    assert cells[8].endswith("(0.0 h ago)")
    newest = (TODAY - timedelta(days=1)).isoformat()
    assert lines[4] == (f"upbit: 2 active, 0 inactive symbols; newest candle {newest}; 0 lagging more than 3 days; "
                        "0 without candles")


def test_status_all_after_an_upbit_run_warns_only_about_kis(collected):
    result = status(collected)
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == "WOMBAT-COLLECT WARNING - kis symbols: never run; kis prices: never run"


def test_status_failed_last_run_is_critical(collected, fake_upbit):
    fake_upbit.set_blocked(True)
    assert run_cli("prices", "--exchange", "upbit", env=collected).exit_code == 1
    result = status(collected, "--exchange", "upbit")
    assert result.exit_code == 2
    assert result.stdout.startswith("WOMBAT-COLLECT CRITICAL - upbit prices: last run failed: upbit: ")


def test_status_partial_last_run_warns(collected, fake_upbit):
    candles = make_upbit_candles("KRW-BTC", TODAY - timedelta(days=8), TODAY)
    candles[-2] = dict(candles[-2], low_price=candles[-2]["high_price"] * 2)
    fake_upbit.set_candles("KRW-BTC", candles)
    assert run_cli("prices", "--exchange", "upbit", "--days-back", "3", env=collected).exit_code == 1
    result = status(collected, "--exchange", "upbit")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0] == \
        "WOMBAT-COLLECT WARNING - upbit prices: last run partial: 1 symbol(s) failed"


def test_status_success_older_than_max_age_is_critical(collected, database):
    execute(database, "UPDATE wombat_collect.collect_run SET started_at = started_at - interval '30 hours',"
                      " finished_at = finished_at - interval '30 hours' WHERE job = 'prices'")
    result = status(collected, "--exchange", "upbit")
    assert result.exit_code == 2
    assert result.stdout.splitlines()[0] == \
        "WOMBAT-COLLECT CRITICAL - upbit prices: last success 30.0 h ago (max age 26 h)"
    assert status(collected, "--exchange", "upbit", "--max-age", "31").exit_code == 0


def test_status_lagging_symbols_warn(collected, database, fake_upbit):
    stale = make_upbit_candles("BTC-ETH", TODAY - timedelta(days=30), TODAY - timedelta(days=10))
    fake_upbit.set_candles("BTC-ETH", stale)
    assert run_cli("symbols", "--exchange", "upbit", env=collected).exit_code == 0
    assert run_cli("prices", "--exchange", "upbit", "--days-back", "40", env=collected).exit_code == 0
    result = status(collected, "--exchange", "upbit")
    assert result.exit_code == 1
    newest = (TODAY - timedelta(days=1)).isoformat()
    assert result.stdout.splitlines()[0] == (f"WOMBAT-COLLECT WARNING - upbit: 1 active symbol(s) lag the newest "
                                             f"candle ({newest}) by more than 3 days")
    assert status(collected, "--exchange", "upbit", "--lag-days", "12").exit_code == 0


def test_status_json_reports_runs_symbols_and_problems(collected, database):
    result = status(collected, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert (report["state"], report["exit_code"], report["max_age_hours"], report["lag_days"]) == ("warning", 1, 26, 3)
    assert report["problems"] == ["WARNING: kis symbols: never run", "WARNING: kis prices: never run"]
    assert report["checked_at"].endswith("+09:00")
    upbit, kis = report["exchanges"]
    assert upbit["symbols"] == {"active": 2, "inactive": 0, "without_candles": 0, "lagging": 0}
    assert upbit["newest_candle"] == (TODAY - timedelta(days=1)).isoformat()
    prices = upbit["jobs"][1]
    assert (prices["job"], prices["state"], prices["running"], prices["problems"]) == ("prices", "ok", False, [])
    run_id, finished = query(database, "SELECT id, finished_at FROM wombat_collect.collect_run WHERE job = 'prices'")[0]
    last = prices["last_run"]
    assert last == prices["last_success"]
    assert (last["id"], last["status"], last["symbols_ok"], last["rows_inserted"], last["error_summary"]) == \
        (run_id, "succeeded", 2, 16, None)
    assert datetime.fromisoformat(last["finished_at"]) == finished.replace(microsecond=0)
    assert last["finished_at"].endswith("+09:00")
    assert last["arguments"]["exchange"] == "upbit" and last["duration_seconds"] >= 0
    assert [(job["job"], job["state"], job["problems"], job["last_run"]) for job in kis["jobs"]] == [
        ("symbols", "warning", ["never run"], None), ("prices", "warning", ["never run"], None)]


def test_status_shows_a_dead_running_row_as_interrupted_without_changing_it(collected, database):
    execute(database, "INSERT INTO wombat_collect.collect_run (job, exchange, host, pid)"
                      " VALUES ('prices', 'upbit', 'gone', 9)")
    result = status(collected, "--exchange", "upbit", "--json")
    assert result.exit_code == 1
    prices = json.loads(result.stdout)["exchanges"][0]["jobs"][1]
    assert prices["problems"] == ["last run interrupted: process gone without recording its end (killed?)"]
    assert (prices["last_run"]["status"], prices["running"]) == ("interrupted", False)
    assert query(database, "SELECT status FROM wombat_collect.collect_run WHERE host = 'gone'") == [("running",)]


def test_status_live_running_row_is_reported_running(collected, database):
    holder = psycopg2.connect(database)
    holder.autocommit = True
    with holder.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", (locks.advisory_key("prices", "upbit"),))
        cursor.execute("INSERT INTO wombat_collect.collect_run (job, exchange, host, pid)"
                       " VALUES ('prices', 'upbit', 'busy', 9)")
    try:
        result = status(collected, "--exchange", "upbit", "--json")
    finally:
        holder.close()
    assert result.exit_code == 0
    prices = json.loads(result.stdout)["exchanges"][0]["jobs"][1]
    assert (prices["running"], prices["last_run"]["status"], prices["last_success"]["status"]) == \
        (True, "running", "succeeded")


def test_status_unreachable_database_is_critical(tmp_path):
    port = closed_port_url().split(":")[2].split("/")[0]
    result = status({"DATABASE_URL": f"postgresql://postgres:Hidden-Pass-5@127.0.0.1:{port}/x"})
    assert result.exit_code == 2
    assert result.stdout.startswith("WOMBAT-COLLECT CRITICAL - cannot connect to the database: ")
    assert "Hidden-Pass-5" not in result.output


def make_run(status, hours_ago, **counts):
    """Given a status and an age, return a Run that ended that many hours before NOW."""
    finished = NOW - timedelta(hours=hours_ago)
    values = dict(symbols_ok=1, symbols_failed=0, symbols_skipped=0, rows_inserted=1, rows_updated=0,
                  rows_unchanged=0, rows_rejected=0, error_summary=None)
    values.update(counts)
    return Run(1, "prices", "upbit", {}, "h", 1, finished - timedelta(minutes=1), finished, status, **values)


@pytest.mark.parametrize("last, success, expected", [
    (None, None, [("warning", "never run")]),
    (make_run("succeeded", 1), make_run("succeeded", 1), []),
    (make_run("failed", 1, error_summary="boom"), make_run("succeeded", 2), [("critical", "last run failed: boom")]),
    (make_run("partial", 1, symbols_failed=2), make_run("succeeded", 2),
     [("warning", "last run partial: 2 symbol(s) failed")]),
    (make_run("failed", 1, error_summary="x"), None, [("critical", "last run failed: x"),
                                                       ("critical", "never succeeded")]),
    (make_run("succeeded", 27), make_run("succeeded", 27), [("critical", "last success 27.0 h ago (max age 26 h)")]),
])
def test_judge_job_states(last, success, expected):
    health = JobHealth("prices", "upbit", last, last, success)
    assert judge_job(health, NOW, 26) == expected


# --- quotes ------------------------------------------------------------------------------------

SEOUL = timezone(timedelta(hours=9))


@pytest.fixture
def quoted(collected, fake_upbit):
    """`collected` plus a successful Upbit quotes run whose quotes are one minute old."""
    stamp = int((datetime.now(timezone.utc) - timedelta(minutes=1)).timestamp() * 1000)
    for market in ("KRW-BTC", "USDT-XRP"):
        fake_upbit.set_ticker(market, timestamp=stamp)
    assert run_cli("quotes", "--exchange", "upbit", env=collected).exit_code == 0
    return collected


def test_status_fresh_quotes_are_ok_and_shown(quoted):
    result = status(quoted, "--exchange", "upbit")
    assert result.exit_code == 0, result.stdout
    lines = result.stdout.splitlines()
    assert [[re.split(r"\s{2,}", line)[index] for index in (0, 1, 2, 4)] for line in lines[2:5]] == [
        ["upbit", "symbols", "ok", "succeeded"], ["upbit", "prices", "ok", "succeeded"],
        ["upbit", "quotes", "ok", "succeeded"]]
    assert re.fullmatch(r"upbit: newest quote \d{4}-\d\d-\d\d \d\d:\d\d KST \((1\.\d) min ago\)", lines[-2])
    assert lines[-1].startswith("upbit timeframes: 1d newest ")  # the per-timeframe line comes last


def test_status_stale_quotes_are_critical(quoted):
    result = status(quoted, "--exchange", "upbit", "--quote-max-age", "0.5")
    assert result.exit_code == 2
    assert re.fullmatch(r"WOMBAT-COLLECT CRITICAL - upbit: newest quote 1\.\d min old \(max age 0\.5 min\)",
                        result.stdout.splitlines()[0])
    assert json.loads(status(quoted, "--exchange", "upbit", "--json").stdout)["exchanges"][0]["newest_quote"]


def test_status_without_quote_runs_judges_no_quotes(collected):
    result = status(collected, "--exchange", "upbit", "--quote-max-age", "0.001")
    assert result.exit_code == 0
    assert "quote" not in result.stdout


@pytest.mark.parametrize("seoul_time, judged", [
    ("2025-07-04 12:00", True),  # a Friday, in session
    ("2025-07-04 08:40", False),  # in session for 10 minutes only (less than the 15-minute limit)
    ("2025-07-04 08:45", True),
    ("2025-07-04 18:00", True),
    ("2025-07-04 18:01", False),
    ("2025-07-05 12:00", False),  # Saturday
    ("2025-07-07 08:29", False),  # Monday, before the pre-market
])
def test_judge_quotes_applies_to_kis_only_while_krx_trades(seoul_time, judged):
    from wombat_collect.ops.status import judge_quotes

    now = datetime.strptime(seoul_time, "%Y-%m-%d %H:%M").replace(tzinfo=SEOUL)
    stale = now - timedelta(minutes=20)
    expected = [("critical", "newest quote 20.0 min old (max age 15 min)")] if judged else []
    assert judge_quotes("kis", stale, now, 15) == expected
    assert judge_quotes("kis", now - timedelta(minutes=14), now, 15) == []
    assert judge_quotes("upbit", stale, now, 15) == [("critical", "newest quote 20.0 min old (max age 15 min)")]
    assert judge_quotes("upbit", None, now, 15) == [("warning", "no quotes stored")]


def store_one_symbol_with_candles(database, listing, candles):
    """Given an empty database, a listing (exchange code, symbol, symbol type, market) and candles
    [(timeframe, timestamp)], initialise the schema and store that one symbol with those candles."""
    exchange, symbol, symbol_type, market = listing
    assert run_cli("db", "init", env={"DATABASE_URL": database}).exit_code == 0
    execute(database, "INSERT INTO symbol (exchange_id, symbol, base_asset, quote_asset, symbol_type, market,"
                      " is_active, price_precision, quantity_precision, created_at, updated_at)"
                      " SELECT id, %s, split_part(%s, '/', 1), 'KRW', %s, %s, true, 8, 8, now(), now()"
                      " FROM exchange WHERE code = %s", (symbol, symbol, symbol_type, market, exchange))
    for timeframe, moment in candles:
        execute(database, "INSERT INTO pricedata (symbol_id, timestamp, open_price, high_price, low_price,"
                          " close_price, volume, timeframe, created_at) SELECT id, %s, 1, 1, 1, 1, 0, %s, now()"
                          " FROM symbol", (moment, timeframe))


def test_status_reports_each_timeframe_newest_candle_and_lag_in_its_periods(database):
    from wombat_collect.db.connection import connect
    from wombat_collect.ops.status import build_report, render_text

    store_one_symbol_with_candles(database, ("upbit", "BTC/KRW", "CRYPTO", "KRW"), [
        ("1d", "2026-11-28 00:00+00"), ("5m", "2026-11-30 06:40+00"), ("1w", "2026-11-16 00:00+00")])
    connection = connect(database, autocommit=True)
    now = datetime(2026, 11, 30, 7, 2, tzinfo=timezone.utc)
    try:
        report = build_report(connection, ("upbit",), now=now)
        filtered = build_report(connection, ("upbit",), now=now, timeframes=("1h", "5m"))
    finally:
        connection.close()
    assert render_text(report).splitlines()[-1] == (
        "upbit timeframes: 5m newest 2026-11-30 06:40 UTC, lag 3; 1d newest 2026-11-28 00:00 UTC, lag 1; "
        "1w newest 2026-11-16 00:00 UTC, lag 1")  # 06:45..06:55 closed; 29 Nov; the week of 23 Nov
    assert render_text(filtered).splitlines()[-1] == (
        "upbit timeframes: 5m newest 2026-11-30 06:40 UTC, lag 3; 1h no candles")


def test_build_report_reads_only_the_offered_timeframes_unless_asked(database):
    from wombat_collect.db.connection import connect
    from wombat_collect.ops.status import build_report, render_text

    store_one_symbol_with_candles(database, ("kis", "005930", "STOCK", "KOSPI"), [
        ("1d", "2026-11-27 00:00+00"), ("5m", "2026-11-27 06:20+00")])
    connection = connect(database, autocommit=True)
    now = datetime(2026, 11, 30, 7, 2, tzinfo=timezone.utc)
    try:
        offered = build_report(connection, ("kis",), now=now, offered={"kis": ("1d", "1w")})
        asked = build_report(connection, ("kis",), now=now, offered={"kis": ("1d", "1w")}, timeframes=("5m",))
        everything = build_report(connection, ("kis",), now=now)
    finally:
        connection.close()
    assert render_text(offered).splitlines()[-1] == "kis timeframes: 1d newest 2026-11-27 00:00 UTC, lag 2"
    assert render_text(asked).splitlines()[-1] == "kis timeframes: 5m newest 2026-11-27 06:20 UTC, lag 871"
    assert render_text(everything).splitlines()[-1] == (
        "kis timeframes: 5m newest 2026-11-27 06:20 UTC, lag 871; 1d newest 2026-11-27 00:00 UTC, lag 2")


def test_status_timeframe_option_filters_the_json(collected):
    result = status(collected, "--exchange", "upbit", "--json", "--timeframe", "1d", "--timeframe", "1h")
    document = json.loads(result.stdout)
    newest = (TODAY - timedelta(days=1)).isoformat()
    assert document["exchanges"][0]["timeframes"] == [
        {"timeframe": "1h", "newest_candle": None, "lag_periods": None},
        {"timeframe": "1d", "newest_candle": f"{newest} 00:00", "lag_periods": 0}]
