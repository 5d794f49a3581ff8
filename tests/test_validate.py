"""Candle validation: the rules, and absurd values from both exchanges through the real CLI.

A bad candle is rejected and counted ("N rejected" in the summary), its symbol is
reported failed with the reason (exit 1), its valid candles and every other
symbol are still stored exactly, and no invalid row ever reaches `pricedata`.
"""

import contextlib
import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tests.conftest import run_cli, stored_prices, upbit_env
from tests.fakes.kis_server import FakeKis, make_kis_rows
from tests.fakes.upbit_server import FakeUpbit, make_upbit_candles
from tests.fault_support import (
    KIS_END,
    KIS_START,
    TODAY,
    Scenario,
    for_code_page_2,
    fresh_database,
    install_kis,
    kis_rows,
    run_concurrently,
    symbol_rows,
    upbit_rows,
    upbit_symbol,
)
from tests.kis_support import kis_env
from wombat_collect.records import Candle
from wombat_collect.validate import candle_problem

NOW = datetime(2025, 7, 10, 3, 0, tzinfo=timezone.utc)
DAY = datetime(2025, 7, 1, tzinfo=timezone.utc)
HISTORY_START = TODAY - timedelta(days=30)


def candle(**changes):
    values = {"timestamp": DAY, "open": Decimal("100"), "high": Decimal("110"), "low": Decimal("90"),
              "close": Decimal("105"), "volume": Decimal("12.5"), "quote_volume": Decimal("1300")}
    values.update(changes)
    return Candle(**values)


# --------------------------------------------------------------------------- the rules


@pytest.mark.parametrize("changes", [
    {},
    {"open": Decimal("90"), "close": Decimal("110")},  # open at the low, close at the high
    {"open": Decimal("0.00000001"), "high": Decimal("0.00000001"), "low": Decimal("0.00000001"),
     "close": Decimal("0.00000001")},
    {"volume": Decimal(0), "quote_volume": None},
    {"timestamp": datetime(1980, 1, 1, tzinfo=timezone.utc)},
    {"timestamp": datetime(2025, 7, 11, tzinfo=timezone.utc)},  # tomorrow in UTC: a KRX day already in KST
    {"high": Decimal("999999999999.99999999")},
])
def test_candle_problem_accepts_sane_candles(changes):
    assert candle_problem(candle(**changes), NOW) is None


@pytest.mark.parametrize(("changes", "problem"), [
    ({"open": Decimal("-5"), "low": Decimal("-5")}, "2025-07-01: price not positive or out of range"),
    ({"low": Decimal(0)}, "2025-07-01: price not positive or out of range"),
    ({"close": Decimal("NaN")}, "2025-07-01: price not positive or out of range"),
    ({"high": Decimal("Infinity")}, "2025-07-01: price not positive or out of range"),
    ({"high": Decimal("1e12")}, "2025-07-01: price not positive or out of range"),
    ({"high": Decimal("80")}, "2025-07-01: prices violate low <= open, close <= high"),  # high < low
    ({"open": Decimal("120")}, "2025-07-01: prices violate low <= open, close <= high"),
    ({"close": Decimal("85")}, "2025-07-01: prices violate low <= open, close <= high"),
    ({"volume": Decimal("-1")}, "2025-07-01: volume negative or out of range"),
    ({"quote_volume": Decimal("-0.5")}, "2025-07-01: volume negative or out of range"),
    ({"volume": Decimal("1e22")}, "2025-07-01: volume negative or out of range"),
    ({"volume": Decimal("sNaN")}, "2025-07-01: volume negative or out of range"),
    ({"timestamp": datetime(1970, 1, 2, tzinfo=timezone.utc)}, "1970-01-02: date outside 1980-01-01..tomorrow"),
    ({"timestamp": datetime(2025, 7, 12, tzinfo=timezone.utc)}, "2025-07-12: date outside 1980-01-01..tomorrow"),
    ({"timestamp": datetime(2099, 1, 1, tzinfo=timezone.utc)}, "2099-01-01: date outside 1980-01-01..tomorrow"),
    ({"timestamp": datetime(2025, 7, 1, 15, tzinfo=timezone.utc)}, "2025-07-01: candle does not start at 00:00 UTC"),
    ({"timestamp": datetime(2025, 7, 1)}, "2025-07-01: candle does not start at 00:00 UTC"),  # naive
])
def test_candle_problem_names_what_is_wrong(changes, problem):
    assert candle_problem(candle(**changes), NOW) == problem



@pytest.mark.parametrize(("value", "problem"), [
    ("999999999999.999999999", "2025-07-01: price not positive or out of range"),  # rounds up to 10^12
    ("999999999999.999999995", "2025-07-01: price not positive or out of range"),
    ("999999999999.999999994", None),  # rounds down to 999999999999.99999999
    ("0.000000004", "2025-07-01: price not positive or out of range"),  # rounds to 0
    ("0.000000005", None),  # rounds to 0.00000001
])
def test_candle_problem_judges_prices_as_stored(value, problem):
    price = Decimal(value)
    edge = candle(open=price, high=price, low=price, close=price)
    assert candle_problem(edge, NOW) == problem


def test_candle_holds_values_rounded_as_stored():
    edge = candle(open=Decimal("0.000000005"), high=Decimal("0.000000015"), low=Decimal("0.000000005"),
                  close=Decimal("0.000000005"), volume=Decimal("1.123456785"), quote_volume=None)
    assert (edge.open, edge.high, edge.volume, edge.quote_volume) == (
        Decimal("0.00000001"), Decimal("0.00000002"), Decimal("1.12345679"), None)
    assert str(edge.open) == "1E-8"
    huge = candle(volume=Decimal("9999999999999999999999.999999995"))
    assert huge.volume == Decimal("1E+22")
    assert candle_problem(huge, NOW) == "2025-07-01: volume negative or out of range"


# --------------------------------------------------------------------------- through the CLI

UPBIT_CLEAN = ("KRW-BTC", "BTC-ETH")
KIS_CLEAN = ("005930", "069500")
FUTURE = TODAY + timedelta(days=30)
# symbol -> (how its one bad candle is made, the reason the operator reads)
UPBIT_ABSURD = {
    "KRW-NEG": ("negative price", "price not positive or out of range"),
    "KRW-HILO": ("high < low", "prices violate low <= open, close <= high"),
    "KRW-TEXT": ("non-numeric string", "trade_price is not a number: '12abc'"),
    "KRW-VOL": ("negative volume", "volume negative or out of range"),
    "KRW-FUT": ("date in the future", f"{FUTURE}: date outside 1980-01-01..tomorrow"),
    "KRW-OLD": ("1970 date", "1970-01-02: date outside 1980-01-01..tomorrow"),
}
KIS_ABSURD = {
    "NEGPRC": ("negative price", "price not positive or out of range"),
    "HILOW0": ("high < low", "prices violate low <= open, close <= high"),
    "NOTNUM": ("non-numeric string", "stck_clpr is not a number: 'N/A'"),
    "NEGVOL": ("negative volume", "volume negative or out of range"),
    "FUTURE": ("date in the future", f"{FUTURE}: date outside 1980-01-01..tomorrow"),
    "OLD197": ("1970 date", "1970-01-02: date outside 1980-01-01..tomorrow"),
}


def spoil_upbit(candles, how):
    """Given a market's candles (oldest first) and a kind of absurdity, return (candles served, the bad one)."""
    rows = [dict(row) for row in candles]
    if how in ("date in the future", "1970 date"):
        bad = dict(rows[5])
        day = FUTURE if how == "date in the future" else date(1970, 1, 2)
        bad["candle_date_time_utc"] = f"{day}T00:00:00"
        return rows + [bad], bad
    bad = rows[10]
    if how == "negative price":
        bad["opening_price"] = bad["low_price"] = Decimal("-5")
    elif how == "high < low":
        bad["high_price"] = bad["low_price"] - 1
    elif how == "non-numeric string":
        bad["trade_price"] = "12abc"
    elif how == "negative volume":
        bad["candle_acc_trade_volume"] = Decimal("-1")
    return rows, bad


def spoil_kis(rows, how):
    """Given a code's rows (oldest first) and a kind of absurdity, return (rows served, extra rows, the bad one)."""
    rows = [dict(row) for row in rows]
    if how in ("date in the future", "1970 date"):
        bad = dict(rows[5])
        bad["stck_bsop_date"] = f"{FUTURE:%Y%m%d}" if how == "date in the future" else "19700102"
        return rows, [bad], bad
    bad = rows[-3]  # not the newest row: the fake's output1 snapshot reads that one
    if how == "negative price":
        bad["stck_oprc"] = bad["stck_lwpr"] = "-70000"
    elif how == "high < low":
        bad["stck_hgpr"] = str(int(bad["stck_lwpr"]) - 100)
    elif how == "non-numeric string":
        bad["stck_clpr"] = "N/A"
    elif how == "negative volume":
        bad["acml_vol"] = "-1"
    return rows, [], bad


class DoctoredKis(FakeKis):
    """A FakeKis that also serves rows outside the asked range (a future day on the first page, 1970 on the last)."""

    def __init__(self, **keywords):
        super().__init__(**keywords)
        self.extra = {}  # code -> rows added to its answers

    def _answer_prices(self, request, stuck_cursor):
        response = super()._answer_prices(request, stuck_cursor)
        code = request.query.get("FID_INPUT_ISCD")
        extra = [row for row in self.extra.get(code, [])
                 if (row["stck_bsop_date"] < "1980") == for_code_page_2(code)(request)]
        if extra:
            body = json.loads(response.body)
            body["output2"] = extra + body["output2"]
            response.body = json.dumps(body, ensure_ascii=False).encode("utf-8")
        return response


@pytest.fixture(scope="module")
def absurd(server_dsn, tmp_path_factory):
    """Run `prices` for both exchanges, each with one absurd candle per doctored symbol, side by side."""
    root = tmp_path_factory.mktemp("absurd")
    with contextlib.ExitStack() as stack:
        upbit_fake = stack.enter_context(FakeUpbit(rate_limit=None))
        served, bad = {}, {}
        for market in UPBIT_CLEAN + tuple(UPBIT_ABSURD):
            served[market] = make_upbit_candles(market, HISTORY_START, TODAY)
            if market in UPBIT_ABSURD:
                served[market], bad[market] = spoil_upbit(served[market], UPBIT_ABSURD[market][0])
            upbit_fake.set_candles(market, served[market])
        upbit_db = stack.enter_context(fresh_database(server_dsn))
        upbit = Scenario("upbit", upbit_db, {"DATABASE_URL": upbit_db, "UPBIT_API_URL": upbit_fake.url,
                                             "UPBIT_RATE_LIMIT": "1000", "WOMBAT_LOCK_DIR": str(root)},
                         ("prices", "--exchange", "upbit", "--full"), upbit_fake, {"served": served, "bad": bad})
        kis_fake = stack.enter_context(DoctoredKis(rate_limit=None))
        install_kis(kis_fake, KIS_CLEAN + tuple(KIS_ABSURD))
        kis_bad = {}
        for code, (how, _) in KIS_ABSURD.items():
            rows, kis_fake.extra[code], kis_bad[code] = spoil_kis(make_kis_rows(code, KIS_START, KIS_END), how)
            kis_fake.set_prices(code, rows)
        kis_db = stack.enter_context(fresh_database(server_dsn))
        kis = Scenario("kis", kis_db, kis_env(kis_db, kis_fake, root / "state", WOMBAT_LOCK_DIR=str(root)),
                       ("prices", "--exchange", "kis", "--since", f"{KIS_START}"), kis_fake, {"bad": kis_bad})
        run_concurrently([upbit, kis])
        yield {"upbit": upbit, "kis": kis}


def upbit_good_rows(scenario, market):
    """Given the Upbit scenario and a market, return the rows its valid candles make."""
    candles = [row for row in scenario.data["served"][market] if row is not scenario.data["bad"].get(market)]
    return upbit_rows({market: candles}, since=HISTORY_START)


@pytest.mark.parametrize("market", sorted(UPBIT_ABSURD), ids=[UPBIT_ABSURD[m][0] for m in sorted(UPBIT_ABSURD)])
def test_prices_upbit_absurd_candle_is_rejected_and_fails_its_symbol(absurd, market):
    scenario = absurd["upbit"]
    reason = UPBIT_ABSURD[market][1]
    assert scenario.returncode == 1
    assert f"prices upbit {upbit_symbol(market)} failed: 1 invalid candle(s) rejected, first: " in scenario.stderr
    line = next(line for line in scenario.stderr.splitlines() if f" {upbit_symbol(market)} failed: " in line)
    assert line.endswith(reason)
    assert symbol_rows(scenario.rows("upbit"), upbit_symbol(market)) == upbit_good_rows(scenario, market)


def test_prices_upbit_absurd_candles_are_counted_and_others_stored_exactly(absurd):
    scenario = absurd["upbit"]
    stored = scenario.rows("upbit")
    assert stored == sorted(row for market in UPBIT_CLEAN + tuple(UPBIT_ABSURD)
                            for row in upbit_good_rows(scenario, market))
    assert (f"prices upbit: 8 symbols (2 ok, 6 failed), {len(stored):,} rows ({len(stored):,} new, 6 rejected) in"
            in scenario.stderr)
    assert all(row[4] <= min(row[2], row[5]) and max(row[2], row[5]) <= row[3] and row[4] > 0 and row[6] >= 0
               and date(1980, 1, 1) <= row[1].date() < TODAY for row in stored)


def kis_good_rows(scenario, code):
    """Given the KIS scenario and a code, return the rows its valid days make, as stored_prices gives them."""
    bad_day = scenario.data["bad"][code]["stck_bsop_date"]
    good = [row for row in scenario.fake.series(code) if row["stck_bsop_date"] != bad_day]
    return [(code, datetime.strptime(row["stck_bsop_date"], "%Y%m%d").replace(tzinfo=timezone.utc),
             *(Decimal(row[key]) for key in ("stck_oprc", "stck_hgpr", "stck_lwpr", "stck_clpr", "acml_vol",
                                             "acml_tr_pbmn")), "1d") for row in good]


@pytest.mark.parametrize("code", sorted(KIS_ABSURD), ids=[KIS_ABSURD[c][0] for c in sorted(KIS_ABSURD)])
def test_prices_kis_absurd_row_is_rejected_and_fails_its_symbol(absurd, code):
    scenario = absurd["kis"]
    assert scenario.returncode == 1
    line = next(line for line in scenario.stderr.splitlines() if f" kis {code} failed: " in line)
    assert "failed: 1 invalid candle(s) rejected, first: " in line and line.endswith(KIS_ABSURD[code][1])
    assert symbol_rows(scenario.rows("kis"), code) == kis_good_rows(scenario, code)


def test_prices_kis_absurd_rows_are_counted_and_others_stored_exactly(absurd):
    scenario = absurd["kis"]
    stored = scenario.rows("kis")
    assert stored == kis_rows(scenario.fake, KIS_CLEAN) + [
        row for code in sorted(KIS_ABSURD) for row in kis_good_rows(scenario, code)]
    assert (f"prices kis: 8 symbols (2 ok, 6 failed), {len(stored):,} rows ({len(stored):,} new, 6 rejected) in"
            in scenario.stderr)
    assert all(row[4] <= min(row[2], row[5]) and max(row[2], row[5]) <= row[3] and row[4] > 0 and row[6] >= 0
               and date(1980, 1, 1) <= row[1].date() < TODAY for row in stored)


def test_prices_upbit_rounding_edges_are_judged_as_stored(database, fake_upbit):
    """A price that rounds to 0 or to 10^12 is rejected (before: stored as 0, or a numeric overflow failing every
    candle of the symbol); one that rounds to 0.00000001 is stored as that."""
    start, end = TODAY - timedelta(days=6), TODAY - timedelta(days=1)
    served = {market: make_upbit_candles(market, start, end) for market in ("BTC-EDGE", "KRW-HUGE")}
    tiny, zero = served["BTC-EDGE"][1], served["BTC-EDGE"][2]
    for row, price in ((tiny, Decimal("0.000000005")), (zero, Decimal("0.000000004"))):
        row.update(opening_price=price, high_price=price, low_price=price, trade_price=price)
    huge = served["KRW-HUGE"][3]
    huge["high_price"] = Decimal("999999999999.999999999")
    for market, candles in served.items():
        fake_upbit.set_candles(market, candles)
    result = run_cli("prices", "--exchange", "upbit", "--days-back", "6", env=upbit_env(database, fake_upbit))
    assert result.exit_code == 1, result.output
    for symbol, row in (("EDGE/BTC", zero), ("HUGE/KRW", huge)):
        day = row["candle_date_time_utc"][:10]
        assert (f"prices upbit {symbol} failed: 1 invalid candle(s) rejected, first: {day}: price not positive "
                "or out of range") in result.stderr
    stored = stored_prices(database)
    assert len(stored) == 2 * 6 - 2 and all(0 < row[4] and row[3] < Decimal("1e12") for row in stored)
    tiny_moment = datetime.fromisoformat(tiny["candle_date_time_utc"]).replace(tzinfo=timezone.utc)
    tiny_row = next(row for row in stored if row[1] == tiny_moment and row[0] == "EDGE/BTC")
    assert tiny_row[2:6] == (Decimal("0.00000001"),) * 4


@pytest.mark.parametrize(("code", "problem"), [
    ("BTC/KRW", None),
    ("005930", None),
    ("B\x00TC/KRW", "control character in symbol code 'B\\x00TC/KRW'"),
    ("0059\n30", "control character in symbol code '0059\\n30'"),
    ("0059\x7f30", "control character in symbol code '0059\\x7f30'"),
    ("0059\x8530", "control character in symbol code '0059\\x8530'"),
    (" ", "empty symbol code: ' '"),
])
def test_symbol_problem_refuses_control_characters_in_codes(code, problem):
    from wombat_collect.records import SymbolRecord
    from wombat_collect.validate import symbol_problem

    assert symbol_problem(SymbolRecord(code, "name", "KRW", "KOSPI", "STOCK", 0, 0)) == problem


def test_clean_symbol_strips_control_characters_from_names():
    from wombat_collect.records import SymbolRecord
    from wombat_collect.validate import clean_symbol

    record = SymbolRecord("005930", "삼성\x00전자\r\n", "KR\x1bW", "KOSPI", "ST\x07OCK", 0, 0)
    assert clean_symbol(record) == SymbolRecord("005930", "삼성전자", "KRW", "KOSPI", "STOCK", 0, 0)
@pytest.mark.parametrize(("timestamp", "timeframe", "problem"), [
    (datetime(2025, 7, 1, 22, 25, tzinfo=timezone.utc), "5m", None),
    (datetime(2025, 7, 1, 22, 27, tzinfo=timezone.utc), "5m",
     "2025-07-01 22:27 5m: candle does not start at whole 5 minutes UTC"),
    (datetime(2025, 7, 1, 20, tzinfo=timezone.utc), "4h", None),
    (datetime(2025, 7, 1, 22, tzinfo=timezone.utc), "4h",
     "2025-07-01 22:00 4h: candle does not start at whole 240 minutes UTC"),
    (datetime(2025, 6, 30, tzinfo=timezone.utc), "1w", None),
    (datetime(2025, 7, 1, tzinfo=timezone.utc), "1w", "2025-07-01 1w: candle does not start at a Monday 00:00 UTC"),
    (datetime(2025, 7, 1, tzinfo=timezone.utc), "1M", None),
    (datetime(2025, 7, 2, tzinfo=timezone.utc), "1M", "2025-07-02 1M: candle does not start at the 1st 00:00 UTC"),
    (datetime(2025, 1, 1, tzinfo=timezone.utc), "1y", None),
    (datetime(2025, 7, 1, tzinfo=timezone.utc), "1y", "2025-07-01 1y: candle does not start at 1 January 00:00 UTC"),
])
def test_candle_problem_checks_the_timeframe_grid(timestamp, timeframe, problem):
    assert candle_problem(candle(timestamp=timestamp), NOW, timeframe) == problem
