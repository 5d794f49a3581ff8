"""`wombat-collect quotes`: realtime_prices from the fake exchanges into a real PostgreSQL."""

import fcntl
import os
from datetime import datetime, timezone
from decimal import Decimal

import psycopg2
import pytest

from tests.conftest import ids_taken, query, run_cli, upbit_env
from tests.fakes.kis_server import FakeKis
from tests.fakes.upbit_server import FakeUpbit, make_upbit_candles
from tests.kis_support import MASTERS, install_masters, install_prices, kis_env
from tests.ops_support import TODAY, run, running_count, spawn, wait_until
from wombat_collect.ops import locks

MARKETS = ["KRW-BTC", "BTC-ETH", "USDT-XRP", "KRW-DOGE"]
TICKER_PATH = "/v1/ticker/all"
ORDERBOOK_PATH = "/v1/orderbook"
MULTI_PRICE_PATH = "/uapi/domestic-stock/v1/quotations/intstock-multprice"
QUOTE_TIME = datetime(2024, 8, 22, 7, 16, 2, 747000, tzinfo=timezone.utc)  # epoch ms 1724310962747
QUOTE_ROWS = """
    SELECT s.symbol, r.current_price, r.bid_price, r.ask_price, r.volume_24h, r.change_rate, r.updated_at
      FROM realtime_prices r JOIN symbol s ON s.id = r.symbol_id JOIN exchange e ON e.id = s.exchange_id
     WHERE e.code = %s ORDER BY s.symbol
"""
ROW_VERSIONS = "SELECT s.symbol, r.xmin::text FROM realtime_prices r JOIN symbol s ON s.id = r.symbol_id ORDER BY 1"
RUN_ROWS = """
    SELECT exchange, status, symbols_ok, symbols_skipped, rows_inserted, rows_updated, rows_unchanged,
           rows_rejected, error_summary
      FROM wombat_collect.collect_run WHERE job = 'quotes' ORDER BY id
"""


def quote_rows(dsn, exchange="upbit"):
    return query(dsn, QUOTE_ROWS, (exchange,))


def quote_runs(dsn):
    return query(dsn, RUN_ROWS)


@pytest.fixture
def upbit():
    """A FakeUpbit listing MARKETS, with recorded-shape tickers set for two of them."""
    with FakeUpbit(rate_limit=None) as fake:
        fake.set_ticker("KRW-BTC", trade_price=82324000, signed_change_rate=Decimal("0.0644100407"),
                        acc_trade_volume_24h=Decimal("3016.08919175"), timestamp=1724310962747)
        fake.set_ticker("BTC-ETH", trade_price=Decimal("0.04123456"), signed_change_rate=Decimal("-0.0000125"),
                        acc_trade_volume_24h=Decimal("1234.5"), timestamp=1724310962747)
        fake.set_ticker("USDT-XRP", trade_price=Decimal("0.5123"), signed_change_rate=Decimal("0.0000125"),
                        acc_trade_volume_24h=Decimal("99.12345678"), timestamp=1724310962747)
        fake.set_ticker("KRW-DOGE", trade_price=Decimal("171.5"), signed_change_rate=Decimal("0"),
                        acc_trade_volume_24h=Decimal("0"), timestamp=1724310962747)
        fake.set_orderbook("KRW-DOGE", {"market": "KRW-DOGE", "timestamp": 1724310962747,
                                        "orderbook_units": [{"ask_price": Decimal("171.6"), "bid_price": 171,
                                                             "ask_size": 1, "bid_size": 2}]})
        yield fake


@pytest.fixture
def upbit_symbols(database, upbit):
    """The database with MARKETS stored as symbols (by `symbols`); returns the env of a quotes run."""
    env = upbit_env(database, upbit)
    assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
    upbit.clear_requests()
    return env


EXPECTED_UPBIT = [
    # BTC/KRW: 0.0644100407 -> 6.44100407 % -> 6.4410; bid = price, ask one KRW tick above
    ("BTC/KRW", Decimal("82324000"), Decimal("82324000"), Decimal("82324001"), Decimal("3016.08919175"),
     Decimal("6.4410"), QUOTE_TIME),
    # DOGE/KRW: the order book set by hand; a zero change and a zero volume are stored as zero
    ("DOGE/KRW", Decimal("171.5"), Decimal("171"), Decimal("171.6"), Decimal("0"), Decimal("0.0000"), QUOTE_TIME),
    # ETH/BTC: -0.0000125 -> -0.00125 % -> -0.0013 (half away from zero, like PostgreSQL)
    ("ETH/BTC", Decimal("0.04123456"), Decimal("0.04123456"), Decimal("0.04123457"), Decimal("1234.5"),
     Decimal("-0.0013"), QUOTE_TIME),
    ("XRP/USDT", Decimal("0.5123"), Decimal("0.5123"), Decimal("0.5133"), Decimal("99.12345678"),
     Decimal("0.0013"), QUOTE_TIME),
]


def test_collect_quotes_upbit_stores_exact_rows_with_percent_and_rounding(database, upbit, upbit_symbols):
    result = run_cli("quotes", "--exchange", "upbit", env=upbit_symbols)

    assert result.exit_code == 0, result.output
    assert quote_rows(database) == EXPECTED_UPBIT
    assert [(request.path, request.query) for request in upbit.requests] == [
        (TICKER_PATH, {"quote_currencies": "BTC,KRW,USDT"}),
        (ORDERBOOK_PATH, {"markets": "BTC-ETH,KRW-BTC,KRW-DOGE,USDT-XRP"}),
    ]
    assert quote_runs(database) == [("upbit", "succeeded", 4, 0, 4, 0, 0, 0, None)]


def test_collect_quotes_unchanged_quote_is_not_rewritten(database, upbit, upbit_symbols):
    assert run_cli("quotes", "--exchange", "upbit", env=upbit_symbols).exit_code == 0
    versions = query(database, ROW_VERSIONS)
    upbit.set_ticker("KRW-BTC", trade_price=82325000, timestamp=1724310999000)
    upbit.set_ticker("KRW-DOGE", timestamp=1724310999000)  # a newer time, the same values

    assert run_cli("quotes", "--exchange", "upbit", env=upbit_symbols).exit_code == 0

    after = dict(query(database, ROW_VERSIONS))
    assert {symbol: after[symbol] == version for symbol, version in versions} == {
        "BTC/KRW": False, "DOGE/KRW": True, "ETH/BTC": True, "XRP/USDT": True}
    rows = {row[0]: row for row in quote_rows(database)}
    assert rows["BTC/KRW"][1:4] == (Decimal("82325000"), Decimal("82325000"), Decimal("82325001"))
    assert rows["BTC/KRW"][6] == datetime(2024, 8, 22, 7, 16, 39, tzinfo=timezone.utc)
    assert rows["DOGE/KRW"][6] == QUOTE_TIME  # unchanged, so not rewritten, so the old time
    assert quote_runs(database)[-1] == ("upbit", "succeeded", 4, 0, 0, 1, 3, 0, None)


def test_collect_quotes_spends_realtime_prices_ids_only_for_new_rows(database, upbit, upbit_symbols):
    query(database, "UPDATE symbol SET is_active = false WHERE symbol = 'DOGE/KRW' RETURNING id")
    assert run_cli("quotes", "--exchange", "upbit", env=upbit_symbols).exit_code == 0
    assert ids_taken(database, "realtime_prices") == 3
    upbit.set_ticker("KRW-BTC", trade_price=82325000, timestamp=1724310999000)

    assert run_cli("quotes", "--exchange", "upbit", env=upbit_symbols).exit_code == 0
    assert run_cli("quotes", "--exchange", "upbit", env=upbit_symbols).exit_code == 0
    assert ids_taken(database, "realtime_prices") == 3
    query(database, "UPDATE symbol SET is_active = true WHERE symbol = 'DOGE/KRW' RETURNING id")
    assert run_cli("quotes", "--exchange", "upbit", env=upbit_symbols).exit_code == 0

    assert ids_taken(database, "realtime_prices") == 4
    assert query(database, "SELECT r.id, s.symbol FROM realtime_prices r JOIN symbol s ON s.id = r.symbol_id"
                           " ORDER BY r.id")[3] == (4, "DOGE/KRW")
    assert [run[4:7] for run in quote_runs(database)] == [(3, 0, 0), (0, 1, 2), (0, 0, 3), (1, 0, 3)]


def test_collect_quotes_with_the_id_sequence_at_its_end_still_updates_existing_quotes(database, upbit,
                                                                                      upbit_symbols):
    assert run_cli("quotes", "--exchange", "upbit", env=upbit_symbols).exit_code == 0
    query(database, "SELECT setval('realtime_prices_id_seq', 2147483647 - 1)")
    upbit.set_ticker("KRW-BTC", trade_price=82325000, timestamp=1724310999000)

    result = run_cli("quotes", "--exchange", "upbit", env=upbit_symbols)

    assert result.exit_code == 0, result.output
    assert quote_rows(database)[0][1] == Decimal("82325000")
    assert quote_runs(database)[-1] == ("upbit", "succeeded", 4, 0, 0, 1, 3, 0, None)
    assert ids_taken(database, "realtime_prices") == 2147483646


def test_collect_quotes_symbol_missing_from_the_answer_keeps_its_old_row(database, upbit, upbit_symbols):
    assert run_cli("quotes", "--exchange", "upbit", env=upbit_symbols).exit_code == 0
    upbit.omit_quotes = {"KRW-DOGE"}
    upbit.set_ticker("KRW-BTC", trade_price=90000000)

    result = run_cli("quotes", "--exchange", "upbit", env=upbit_symbols)

    assert result.exit_code == 0, result.output
    rows = {row[0]: row for row in quote_rows(database)}
    assert rows["DOGE/KRW"] == EXPECTED_UPBIT[1]
    assert rows["BTC/KRW"][1] == Decimal("90000000")
    assert quote_runs(database)[-1] == ("upbit", "succeeded", 3, 1, 0, 1, 2, 0, None)
    assert "KRW-DOGE" not in upbit.requests[-1].query["markets"]


def test_collect_quotes_inactive_symbol_gets_no_row(database, upbit, upbit_symbols):
    query(database, "UPDATE symbol SET is_active = false WHERE symbol = 'DOGE/KRW' RETURNING id")

    assert run_cli("quotes", "--exchange", "upbit", env=upbit_symbols).exit_code == 0

    assert [row[0] for row in quote_rows(database)] == ["BTC/KRW", "ETH/BTC", "XRP/USDT"]
    assert upbit.requests[-1].query == {"markets": "BTC-ETH,KRW-BTC,USDT-XRP"}


def test_collect_quotes_rejects_values_that_do_not_fit_and_still_succeeds(database, upbit, upbit_symbols):
    upbit.set_ticker("KRW-BTC", trade_price=Decimal("1000000000000"))  # NUMERIC(20,8) holds < 10^12
    upbit.set_ticker("BTC-ETH", signed_change_rate=Decimal("100"))  # 10,000 % does not fit NUMERIC(8,4)
    upbit.set_ticker("USDT-XRP", trade_price="0.5")  # not a JSON number

    result = run_cli("quotes", "--exchange", "upbit", env=upbit_symbols)

    assert result.exit_code == 0, result.output
    assert [row[0] for row in quote_rows(database)] == ["DOGE/KRW"]
    assert quote_runs(database) == [("upbit", "succeeded", 1, 0, 1, 0, 0, 3, None)]
    rejected = [line for line in result.stderr.splitlines() if "rejected" in line]
    assert len(rejected) == 1, result.stderr
    assert "3 quote(s) rejected (values do not fit realtime_prices), first: " in rejected[0]


def test_collect_quotes_unreadable_exchange_fails_with_exit_1_and_writes_nothing(database, upbit, upbit_symbols):
    upbit.set_blocked(True)

    result = run_cli("quotes", "--exchange", "upbit", env=upbit_symbols)

    assert result.exit_code == 1
    assert query(database, "SELECT count(*) FROM realtime_prices") == [(0,)]
    (run_row,) = quote_runs(database)
    assert run_row[:8] == ("upbit", "failed", 0, 0, 0, 0, 0, 0)
    assert run_row[8].startswith("upbit: HTTP 418, this IP is blocked by Upbit")
    assert "Traceback" not in result.output


# --- KIS --------------------------------------------------------------------------------------

@pytest.fixture
def kis():
    with FakeKis(rate_limit=None) as fake:
        install_masters(fake)
        yield fake


def kis_symbols(database, fake, state_dir, **extra):
    """Given a FakeKis, store its master files' symbols; return the env of a quotes run."""
    env = kis_env(database, fake, state_dir, **extra)
    assert run_cli("symbols", "--exchange", "kis", env=env).exit_code == 0
    fake.clear_requests()
    return env


def test_collect_quotes_kis_stores_exact_rows_at_the_answer_time(database, kis, tmp_path):
    kis.set_quote("005930", inter2_prpr="71500", inter2_bidp="71400", inter2_askp="71500", acml_vol="12345678",
                  prdy_ctrt="-1.24")
    kis.set_quote("069500", inter2_prpr="35210", inter2_bidp="0", inter2_askp="", acml_vol="0", prdy_ctrt="0.00")
    install_prices(kis, ["035720"])
    env = kis_symbols(database, kis, tmp_path)
    before = datetime.now(timezone.utc)

    result = run_cli("quotes", "--exchange", "kis", env=env)

    assert result.exit_code == 0, result.output
    rows = quote_rows(database, "kis")
    derived = kis.quote("035720")
    assert [row[:6] for row in rows] == [
        ("005930", Decimal("71500"), Decimal("71400"), Decimal("71500"), Decimal("12345678"), Decimal("-1.2400")),
        ("035720", Decimal(derived["inter2_prpr"]), Decimal(derived["inter2_bidp"]),
         Decimal(derived["inter2_askp"]), Decimal(derived["acml_vol"]), Decimal(derived["prdy_ctrt"])),
        ("069500", Decimal("35210"), None, None, Decimal("0"), Decimal("0.0000")),  # "0" / "": no bid, no ask
    ]
    assert all(before <= row[6] <= datetime.now(timezone.utc) for row in rows)
    codes = sorted(row[0] for rows in MASTERS.values() for row in rows)
    (request,) = [request for request in kis.requests if request.path == MULTI_PRICE_PATH]
    assert request.headers["tr_id"] == "FHKST11300006"
    assert [request.query[f"FID_INPUT_ISCD_{number}"] for number in range(1, len(codes) + 1)] == codes
    assert quote_runs(database) == [("kis", "succeeded", 3, 6, 3, 0, 0, 0, None)]


def test_collect_quotes_kis_virtual_host_says_so_and_collects_nothing(database, kis, tmp_path):
    install_prices(kis, ["005930"])
    env = kis_symbols(database, kis, tmp_path, KIS_ENV="virtual")

    result = run_cli("quotes", "--exchange", "kis", env=env)

    assert result.exit_code == 0, result.output
    assert [line.split(" ", 1)[1] for line in result.stderr.splitlines() if "virtual" in line] == [
        "WARNING quotes kis: quotes need the multi-price TR FHKST11300006, which the virtual host "
        "(KIS_ENV=virtual) lacks; nothing collected"]
    assert kis.requests == []
    assert query(database, "SELECT count(*) FROM realtime_prices") == [(0,)]
    assert quote_runs(database) == [("kis", "succeeded", 0, 0, 0, 0, 0, 0, None)]


# --- locks: quotes never waits for, nor blocks, the daily jobs ---------------------------------

@pytest.fixture
def held_upbit():
    """A FakeUpbit listing the same MARKETS that holds every request unanswered until release()."""
    with FakeUpbit(rate_limit=None) as fake:
        for market in MARKETS:
            fake.set_candles(market, make_upbit_candles(market, TODAY, TODAY))
        fake.hold(lambda request: True)
        try:
            yield fake
        finally:
            fake.release()


def running_jobs(dsn):
    if not running_count(dsn):
        return []
    return query(dsn, "SELECT job FROM wombat_collect.collect_run WHERE status = 'running' ORDER BY id")


def lock_file_held(lock_dir, job, exchange="upbit"):
    """Given a job, return whether some process holds its lock file now (probing with a shared lock)."""
    descriptor = os.open(locks.lock_path(lock_dir, job, exchange), os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        return not locks.try_flock(descriptor, fcntl.LOCK_SH)
    finally:
        os.close(descriptor)


def test_quotes_runs_while_prices_holds_its_lock(database, upbit, upbit_symbols, held_upbit, lock_dir):
    prices = spawn({**upbit_symbols, "UPBIT_API_URL": held_upbit.url, "WOMBAT_WORKERS": "1"},
                   "prices", "--exchange", "upbit", "--days-back", "1")
    symbols_lock = None
    try:
        wait_until(lambda: prices.poll() is not None or held_upbit.count() >= 1)  # mid-run, its request held
        assert (prices.poll(), running_jobs(database), lock_file_held(lock_dir, "prices")) == (
            None, [("prices",)], True)
        symbols_lock = locks.take_file_lock(lock_dir, "symbols", "upbit")  # prices waits for it; quotes must not
        result = run(upbit_symbols, "quotes", "--exchange", "upbit")
        assert (result.returncode, running_jobs(database)) == (0, [("prices",)]), result.stderr
        assert quote_rows(database) == EXPECTED_UPBIT
    finally:
        held_upbit.release()
        stdout, stderr = prices.communicate(timeout=60)
        if symbols_lock is not None:
            os.close(symbols_lock)
    assert prices.returncode == 0, stderr  # and quotes did not block it either
    runs = query(database, "SELECT job, status, started_at, finished_at"
                           " FROM wombat_collect.collect_run WHERE job <> 'symbols'"
                           " ORDER BY id")
    assert [run_row[:2] for run_row in runs] == [("prices", "succeeded"), ("quotes", "succeeded")]
    assert runs[0][2] < runs[1][2] < runs[1][3] < runs[0][3]  # quotes ran start to end inside the prices run


def test_quotes_second_run_while_one_holds_the_quotes_lock_exits_75(database, upbit_symbols, held_upbit):
    first = spawn({**upbit_symbols, "UPBIT_API_URL": held_upbit.url}, "quotes", "--exchange", "upbit")
    try:
        wait_until(lambda: first.poll() is not None or held_upbit.count() >= 1)  # mid-run, its ticker held
        assert (first.poll(), running_jobs(database)) == (None, [("quotes",)])
        result = run(upbit_symbols, "quotes", "--exchange", "upbit")
        assert (result.returncode, first.poll()) == (75, None), result.stderr  # skipped at once, not queued
        assert "quotes upbit is already running" in result.stderr
    finally:
        held_upbit.release()
        first.communicate(timeout=60)
    assert first.returncode == 0


def test_quotes_advisory_lock_held_elsewhere_exits_75(database, upbit_symbols):
    holder = psycopg2.connect(database)
    holder.autocommit = True
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", (locks.advisory_key("quotes", "upbit"),))
        result = run_cli("quotes", "--exchange", "upbit", env=upbit_symbols)
        assert result.exit_code == 75
        assert "quotes upbit is already running" in result.stderr
    finally:
        holder.close()
