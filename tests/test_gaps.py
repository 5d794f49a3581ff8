"""`wombat-collect gaps`: holes made by deleting rows, reported exactly, repaired from the fakes, remembered."""

import json
from datetime import date, datetime, timezone

import pytest

from tests.conftest import query, run_cli, stored_prices, upbit_env
from tests.fakes.kis_server import make_kis_rows
from tests.fakes.upbit_server import make_upbit_candles, make_upbit_minute_candles, make_upbit_period_candles
from tests.kis_support import install_masters, kis_env, kis_prices
from wombat_collect.gaps import BLOCK_PERIODS
from wombat_collect.ops import locks

UPBIT_DAYS = "/v1/candles/days"
KIS_PRICES = "/uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice"
KIS_CODES = ("005930", "035720", "069500")
KRX_HOLIDAYS = (date(2024, 3, 1), date(2024, 4, 10), date(2024, 5, 6))  # 삼일절, 총선, 어린이날 대체공휴일


def utc(year, month, day):
    """Given a date, return 00:00 UTC of it."""
    return datetime(year, month, day, tzinfo=timezone.utc)


def delete_candles(dsn, symbol, first, last, timeframe="1d"):
    """Given a symbol and an inclusive range of days (dates) or period starts (datetimes), delete its candles there."""
    if not isinstance(first, datetime):
        first, last = utc(first.year, first.month, first.day), utc(last.year, last.month, last.day)
    query(dsn, """DELETE FROM pricedata p USING symbol s
                   WHERE s.id = p.symbol_id AND s.symbol = %s AND p.timeframe = %s
                     AND p."timestamp" BETWEEN %s AND %s RETURNING p.id""", (symbol, timeframe, first, last))


@pytest.fixture
def upbit_history(database, fake_upbit):
    """Two Upbit markets with daily candles 2025-01-01..2025-03-31, ETH lacking 2025-02-20 on the exchange too.

    Return (env, the stored rows of one uninterrupted run).
    """
    fake_upbit.set_candles("KRW-BTC", make_upbit_candles("KRW-BTC", date(2025, 1, 1), date(2025, 3, 31)))
    eth = [row for row in make_upbit_candles("KRW-ETH", date(2025, 1, 1), date(2025, 3, 31))
           if not row["candle_date_time_utc"].startswith("2025-02-20")]
    fake_upbit.set_candles("KRW-ETH", eth)
    env = upbit_env(database, fake_upbit)
    result = run_cli("prices", "--exchange", "upbit", "--since", "2025-01-01", env=env)
    assert result.exit_code == 0, result.output
    return env, stored_prices(database)


def test_gaps_reports_exactly_the_deleted_ranges(database, upbit_history):
    env, _ = upbit_history
    delete_candles(database, "BTC/KRW", date(2025, 3, 2), date(2025, 3, 4))
    delete_candles(database, "BTC/KRW", date(2025, 1, 10), date(2025, 1, 10))
    delete_candles(database, "BTC/KRW", date(2025, 1, 6), date(2025, 1, 8))  # across the scan's blocks (01-08)
    result = run_cli("gaps", "--exchange", "upbit", "--timeframe", "1d", env=env)
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == [
        "BTC/KRW 1d: 2025-01-06..2025-01-08 (3 days)",
        "BTC/KRW 1d: 2025-01-10 (1 day)",
        "BTC/KRW 1d: 2025-03-02..2025-03-04 (3 days)",
        "ETH/KRW 1d: 2025-02-20 (1 day)",
        "gaps: 4 ranges (8 periods missing) in 2 series of 2 symbols (scanned upbit 1d)",
    ]


def test_gaps_filters_by_symbol_and_since_and_prints_json(database, upbit_history):
    env, _ = upbit_history
    delete_candles(database, "BTC/KRW", date(2025, 3, 2), date(2025, 3, 4))
    result = run_cli("gaps", "--exchange", "upbit", "--symbol", "BTC/KRW", "--since", "2025-03-03", "--json",
                     env=env)
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["gaps"] == [{
        "exchange": "upbit", "symbol": "BTC/KRW", "timeframe": "1d", "first": "2025-03-03", "last": "2025-03-04",
        "start": "2025-03-03T00:00:00+00:00", "end": "2025-03-05T00:00:00+00:00", "periods": 2,
        "trading_calendar": False}]
    assert report["scanned"] == {"upbit": ["1m", "3m", "5m", "10m", "15m", "30m", "1h", "4h", "1d", "1w", "1M",
                                           "1y"]}


def test_gaps_repair_restores_exactly_the_served_rows_then_exits_0(database, fake_upbit, upbit_history):
    env, _ = upbit_history
    run_cli("gaps", "--exchange", "upbit", "--timeframe", "1d", "--repair", env=env)  # ETH's hole: confirmed empty
    before = stored_prices(database)
    delete_candles(database, "BTC/KRW", date(2025, 3, 2), date(2025, 3, 4))
    delete_candles(database, "ETH/KRW", date(2025, 1, 5), date(2025, 1, 6))
    fake_upbit.clear_requests()
    result = run_cli("gaps", "--exchange", "upbit", "--timeframe", "1d", "--repair", env=env)
    assert result.exit_code == 0, result.output
    assert "BTC/KRW 1d: 2025-03-02..2025-03-04 (3 days): stored 3" in result.stdout.splitlines()
    assert "ETH/KRW 1d: 2025-01-05..2025-01-06 (2 days): stored 2" in result.stdout.splitlines()
    assert stored_prices(database) == before
    assert fake_upbit.count(UPBIT_DAYS) == 2  # one page per range, from the candle before it
    assert query(database, "SELECT job, exchange, status, symbols_ok, symbols_failed, rows_inserted"
                           " FROM wombat_collect.collect_run"
                           " WHERE job = 'repair' ORDER BY id DESC LIMIT 1") == [
        ("repair", "upbit", "succeeded", 2, 0, 5)]
    after = run_cli("gaps", "--exchange", "upbit", "--timeframe", "1d", env=env)
    assert after.exit_code == 0, after.output
    assert after.stdout.splitlines() == ["gaps: none (scanned upbit 1d)"]


def test_gaps_hours_and_months_are_counted_on_their_grid_and_repaired(database, fake_upbit):
    fake_upbit.set_candles("KRW-BTC", make_upbit_minute_candles("KRW-BTC", 60, datetime(2025, 3, 1),
                                                                datetime(2025, 3, 3)), "minutes/60")
    fake_upbit.set_candles("KRW-BTC", make_upbit_period_candles(
        "KRW-BTC", [date(2024, month, 1) for month in range(1, 13)]), "months")
    env = upbit_env(database, fake_upbit)
    result = run_cli("prices", "--exchange", "upbit", "--timeframe", "1h", "--timeframe", "1M", "--full", env=env)
    assert result.exit_code == 0, result.output
    before = stored_prices(database)
    delete_candles(database, "BTC/KRW", datetime(2025, 3, 2, 5, tzinfo=timezone.utc),
                   datetime(2025, 3, 2, 7, tzinfo=timezone.utc), "1h")
    delete_candles(database, "BTC/KRW", date(2024, 5, 1), date(2024, 6, 1), "1M")
    scan = run_cli("gaps", "--exchange", "upbit", "--timeframe", "1h", "--timeframe", "1M", env=env)
    assert scan.exit_code == 1, scan.output
    assert scan.stdout.splitlines() == [
        "BTC/KRW 1h: 2025-03-02 05:00..2025-03-02 07:00 (3 periods)",
        "BTC/KRW 1M: 2024-05-01..2024-06-01 (2 months)",
        "gaps: 2 ranges (5 periods missing) in 2 series of 1 symbol (scanned upbit 1h 1M)",
    ]
    fake_upbit.clear_requests()
    repair = run_cli("gaps", "--exchange", "upbit", "--timeframe", "1h", "--timeframe", "1M", "--repair", env=env)
    assert repair.exit_code == 0, repair.output
    assert stored_prices(database) == before
    assert [record.path for record in fake_upbit.requests] in (
        ["/v1/candles/minutes/60", "/v1/candles/months"], ["/v1/candles/months", "/v1/candles/minutes/60"])


def test_gaps_repair_confirms_a_hole_the_exchange_lacks_and_never_asks_again(database, fake_upbit, upbit_history):
    env, _ = upbit_history
    fake_upbit.clear_requests()
    first = run_cli("gaps", "--exchange", "upbit", "--timeframe", "1d", "--repair", env=env)
    assert first.exit_code == 0, first.output
    assert "ETH/KRW 1d: 2025-02-20 (1 day): confirmed empty" in first.stdout.splitlines()
    assert fake_upbit.count(UPBIT_DAYS) == 1
    assert query(database, "SELECT s.symbol, c.timeframe, c.range_start, c.range_end"
                           " FROM wombat_collect.confirmed_empty c"
                           " JOIN symbol s ON s.id = c.symbol_id") == [
        ("ETH/KRW", "1d", utc(2025, 2, 20), utc(2025, 2, 21))]

    scan = run_cli("gaps", "--exchange", "upbit", "--timeframe", "1d", env=env)
    assert (scan.exit_code, scan.stdout.splitlines()) == (0, ["gaps: none (scanned upbit 1d)"])
    again = run_cli("gaps", "--exchange", "upbit", "--timeframe", "1d", "--repair", env=env)
    assert again.exit_code == 0, again.output
    assert fake_upbit.count(UPBIT_DAYS) == 1  # not asked again

    recheck = run_cli("gaps", "--exchange", "upbit", "--timeframe", "1d", "--recheck", env=env)
    assert recheck.exit_code == 1
    assert recheck.stdout.splitlines()[0] == "ETH/KRW 1d: 2025-02-20 (1 day)"
    asked = run_cli("gaps", "--exchange", "upbit", "--timeframe", "1d", "--repair", "--recheck", env=env)
    assert asked.exit_code == 0, asked.output
    assert fake_upbit.count(UPBIT_DAYS) == 2


def test_gaps_repair_fails_when_the_answer_does_not_reach_back(database, fake_upbit, upbit_history):
    env, _ = upbit_history
    delete_candles(database, "BTC/KRW", date(2025, 3, 2), date(2025, 3, 4))
    served = make_upbit_candles("KRW-BTC", date(2025, 1, 1), date(2025, 3, 31))
    fake_upbit.set_candles("KRW-BTC", [row for row in served if row["candle_date_time_utc"] >= "2025-03-05"])
    result = run_cli("gaps", "--exchange", "upbit", "--timeframe", "1d", "--symbol", "BTC/KRW", "--repair", env=env)
    assert result.exit_code == 1, result.output
    assert ("BTC/KRW 1d: 2025-03-02..2025-03-04 (3 days): FAILED: the answer did not reach back past 2025-03-02 "
            "(0 candle(s) stored, nothing confirmed empty)") in result.stdout.splitlines()
    assert query(database, "SELECT count(*) FROM wombat_collect.confirmed_empty") == [(0,)]


def test_gaps_repair_waits_for_no_one_holding_the_prices_lock(database, fake_upbit, upbit_history, lock_dir):
    env, _ = upbit_history
    descriptor = locks.take_file_lock(locks.check_lock_dir(lock_dir), "prices", "upbit")
    try:
        result = run_cli("gaps", "--exchange", "upbit", "--timeframe", "1d", "--repair", env=env)
    finally:
        import os

        os.close(descriptor)
    assert result.exit_code == 75, result.output


def test_status_shows_open_gaps_of_the_last_scan(database, upbit_history):
    env, _ = upbit_history
    delete_candles(database, "BTC/KRW", date(2025, 3, 2), date(2025, 3, 4))
    assert run_cli("gaps", "--exchange", "upbit", "--timeframe", "1d", env=env).exit_code == 1
    text = run_cli("status", "--exchange", "upbit", env=env).stdout.splitlines()
    line = [item for item in text if item.startswith("upbit open gaps")]
    assert len(line) == 1 and line[0].endswith("): 1d 2 in 2 symbol(s) (4 periods)"), text
    report = json.loads(run_cli("status", "--exchange", "upbit", "--json", env=env).stdout)
    assert [{key: value for key, value in item.items() if key != "checked_at"}
            for item in report["exchanges"][0]["gaps"]] == [
        {"timeframe": "1d", "symbols": 2, "ranges": 2, "periods": 4}]


def test_gaps_usage_errors_exit_2(database, upbit_history):
    env, _ = upbit_history
    assert run_cli("gaps", "--exchange", "kis", "--timeframe", "1h", env=env).exit_code == 2
    assert run_cli("gaps", "--since", "2999-01-01", env=env).exit_code == 2
    assert run_cli("gaps", "--symbol", "NOPE/KRW", "--exchange", "upbit", env=env).exit_code == 2


@pytest.fixture
def krx_history(database, tmp_path):
    """Three KRX codes, weekdays 2024-02-01..2024-05-31 less three holidays; 035720 halted on 2024-04-15.

    069500 alone has a candle on the 2024-04-10 holiday: one of three is no majority, so KRX did not trade.

    Return (FakeKis, env, the stored rows).
    """
    from tests.fakes.kis_server import FakeKis

    with FakeKis(rate_limit=None, token_throttle_seconds=None) as fake:
        install_masters(fake)
        for code in KIS_CODES:
            holidays = KRX_HOLIDAYS[:1] + KRX_HOLIDAYS[2:] if code == "069500" else KRX_HOLIDAYS  # a lone candle
            rows = make_kis_rows(code, date(2024, 2, 1), date(2024, 5, 31), holidays=holidays)
            if code == "035720":
                rows = [row if row["stck_bsop_date"] != "20240415" else
                        {**row, "acml_vol": "0", "stck_oprc": "0", "stck_hgpr": "0", "stck_lwpr": "0"}
                        for row in rows]
            fake.set_prices(code, rows)
        env = kis_env(database, fake, tmp_path / "state")
        assert run_cli("symbols", "--exchange", "kis", env=env).exit_code == 0
        for code in KIS_CODES:
            result = run_cli("prices", "--exchange", "kis", "--symbol", code, "--since", "2024-02-01", env=env)
            assert result.exit_code == 0, result.output
        yield fake, env, kis_prices(database)


def test_gaps_krx_holidays_and_weekends_are_not_gaps(database, krx_history):
    _, env, _ = krx_history
    result = run_cli("gaps", "--exchange", "kis", "--timeframe", "1d", env=env)
    assert result.stdout.splitlines() == [
        "035720 1d: 2024-04-15 (1 trading day)",  # the halt: KRX traded, 035720 did not
        "gaps: 1 range (1 periods missing) in 1 series of 1 symbol (scanned kis 1d)",
    ]
    assert result.exit_code == 1


def test_gaps_krx_counts_trading_days_and_repairs_across_a_weekend(database, krx_history):
    fake, env, stored = krx_history
    delete_candles(database, "005930", date(2024, 2, 29), date(2024, 3, 5))  # Thu, Fri(holiday), weekend, Mon, Tue
    result = run_cli("gaps", "--exchange", "kis", "--timeframe", "1d", "--symbol", "005930", env=env)
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines()[0] == "005930 1d: 2024-02-29..2024-03-05 (3 trading days)"
    since = run_cli("gaps", "--exchange", "kis", "--timeframe", "1d", "--symbol", "005930", "--since", "2024-03-02",
                    env=env)
    assert since.stdout.splitlines()[0] == "005930 1d: 2024-03-04..2024-03-05 (2 trading days)"
    fake.clear_requests()
    repair = run_cli("gaps", "--exchange", "kis", "--timeframe", "1d", "--repair", env=env)
    assert repair.exit_code == 0, repair.output
    assert "005930 1d: 2024-02-29..2024-03-05 (3 trading days): stored 3" in repair.stdout.splitlines()
    assert "035720 1d: 2024-04-15 (1 trading day): confirmed empty" in repair.stdout.splitlines()
    assert kis_prices(database) == stored
    assert fake.count(KIS_PRICES) == 2
    after = run_cli("gaps", "--exchange", "kis", "--timeframe", "1d", env=env)
    assert (after.exit_code, after.stdout.splitlines()) == (0, ["gaps: none (scanned kis 1d)"])


def test_gaps_krx_finds_holes_across_and_inside_the_scans_blocks(database, krx_history):
    _, env, _ = krx_history
    block_seconds = 86400 * BLOCK_PERIODS
    assert utc(2024, 4, 26).timestamp() // block_seconds != utc(2024, 4, 29).timestamp() // block_seconds
    delete_candles(database, "005930", date(2024, 4, 25), date(2024, 4, 29))  # Thu, Fri | weekend, Mon
    delete_candles(database, "005930", date(2024, 3, 12), date(2024, 3, 12))  # inside the first block
    delete_candles(database, "069500", date(2024, 4, 30), date(2024, 5, 2))  # the head of its second block
    result = run_cli("gaps", "--exchange", "kis", "--timeframe", "1d", env=env)
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines() == [  # (a day two of the three lack would be a KRX holiday)
        "005930 1d: 2024-03-12 (1 trading day)",
        "005930 1d: 2024-04-25..2024-04-29 (3 trading days)",
        "035720 1d: 2024-04-15 (1 trading day)",
        "069500 1d: 2024-04-30..2024-05-02 (3 trading days)",
        "gaps: 4 ranges (8 periods missing) in 3 series of 3 symbols (scanned kis 1d)",
    ]
