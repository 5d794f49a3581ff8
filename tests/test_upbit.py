"""The Upbit collector against the fake Upbit on loopback."""

from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from tests.conftest import run_cli, stored_prices, upbit_env
from tests.fakes.upbit_server import FakeUpbit, make_upbit_candles, make_upbit_markets, make_upbit_minute_candles
from tests.fault_support import for_market
from wombat_collect.collectors import upbit
from wombat_collect.config import load_settings
from wombat_collect.errors import ExchangeBlocked, ExchangeError, SymbolNotFound
from wombat_collect.http import USER_AGENT
from wombat_collect.records import Candle, Covered, Quote, RejectedCandle, RejectedQuote


@pytest.fixture
def client(fake_upbit):
    return upbit.open_client(load_settings({"UPBIT_API_URL": fake_upbit.url, "UPBIT_RATE_LIMIT": "1000",
                                            "WOMBAT_HTTP_TIMEOUT": "3"}))


def test_fetch_symbols_maps_every_quote_market(fake_upbit, client):
    fake_upbit.set_markets(make_upbit_markets(6))
    records = sorted(upbit.fetch_symbols(client), key=lambda record: record.symbol)
    assert [(r.symbol, r.base_asset, r.quote_asset, r.market) for r in records] == [
        ("C001/KRW", "C001", "KRW", "KRW"), ("C002/BTC", "C002", "BTC", "BTC"), ("C003/USDT", "C003", "USDT", "USDT"),
        ("C004/KRW", "C004", "KRW", "KRW"), ("C005/BTC", "C005", "BTC", "BTC"), ("C006/USDT", "C006", "USDT", "USDT"),
    ]
    request = fake_upbit.requests[-1]
    assert request.query == {"is_details": "true"}
    assert request.headers.get("user-agent") == USER_AGENT
    assert "origin" not in request.headers


def test_fetch_symbols_rejects_a_malformed_listing(fake_upbit, client):
    fake_upbit.set_markets([{"market": "KRWBTC"}])
    with pytest.raises(ExchangeError, match="malformed market row"):
        list(upbit.fetch_symbols(client))


def test_fetch_daily_candles_pages_back_to_the_start(fake_upbit, client):
    rows = make_upbit_candles("KRW-BTC", date(2024, 1, 1), date(2025, 6, 30), gap_every=5)
    fake_upbit.set_candles("KRW-BTC", rows)
    candles = list(upbit.fetch_daily_candles(client, "BTC/KRW", date(2024, 3, 1)))
    wanted = [row for row in rows if row["candle_date_time_utc"] >= "2024-03-01"]
    assert sorted((c.timestamp for c in candles), reverse=True) == [
        datetime.fromisoformat(row["candle_date_time_utc"]).replace(tzinfo=timezone.utc) for row in reversed(wanted)]
    newest = max(candles, key=lambda candle: candle.timestamp)
    assert newest.close == wanted[-1]["trade_price"] and isinstance(newest.close, Decimal)
    pages = [request.query for request in fake_upbit.requests if request.path == "/v1/candles/days"]
    assert pages[:2] == [{"market": "KRW-BTC", "count": "200", "to": "2024-09-17T00:00:00Z"},
                         {"market": "KRW-BTC", "count": "200", "to": "2025-04-05T00:00:00Z"}]  # 200 days each, forward


def test_fetch_daily_candles_without_start_reads_all_history(fake_upbit, client):
    rows = make_upbit_candles("KRW-BTC", date(2024, 1, 1), date(2024, 12, 31))
    fake_upbit.set_candles("KRW-BTC", rows)
    candles = list(upbit.fetch_daily_candles(client, "BTC/KRW"))
    assert len(candles) == len(rows) == 366


def test_fetch_daily_candles_unknown_code_raises_symbol_not_found(fake_upbit, client):
    with pytest.raises(SymbolNotFound, match="Code not found"):
        list(upbit.fetch_daily_candles(client, "NOPE/KRW", date(2025, 1, 1)))


def test_fetch_daily_candles_stuck_cursor_raises(fake_upbit, client):
    fake_upbit.set_candles("KRW-BTC", make_upbit_candles("KRW-BTC", date(2024, 1, 1), date(2025, 6, 30)))
    fake_upbit.inject("stuck_cursor", count=10)
    with pytest.raises(ExchangeError, match="did not move back"):
        list(upbit.fetch_daily_candles(client, "BTC/KRW", date(2024, 1, 1)))


def test_fetch_daily_candles_cursor_creeping_by_seconds_raises(fake_upbit, client):
    fake_upbit.set_candles("KRW-BTC", make_upbit_candles("KRW-BTC", date(2024, 1, 1), date(2025, 6, 30)))
    fake_upbit.inject("creeping_cursor", count=50)  # page 1 is whole; from page 2 each moves back 200 seconds
    with pytest.raises(ExchangeError, match=r"^upbit: prices of KRW-BTC: a page of 200 candles moved back only "
                                            r"0:03:20 from 2024-07-19 00:00:00; expected at least 200 days$"):
        list(upbit.fetch_daily_candles(client, "BTC/KRW", date(2024, 1, 1)))
    assert fake_upbit.count() == 1  # pages go forward from the start: the first one asks `to` 2024-07-19


def test_prices_creeping_cursor_fails_that_symbol_only(database, fake_upbit):
    for market in ("KRW-BTC", "KRW-ETH"):
        fake_upbit.set_candles(market, make_upbit_candles(market, date(2024, 1, 1), date(2025, 6, 30)))
    fake_upbit.inject("creeping_cursor", count=50, match=for_market("KRW-BTC"))
    result = run_cli("prices", "--exchange", "upbit", "--since", "2024-01-01", env=upbit_env(database, fake_upbit))
    assert result.exit_code == 1, result.output
    failures = [line for line in result.stderr.splitlines() if " failed: " in line]
    assert len(failures) == 1 and failures[0].endswith(
        "prices upbit BTC/KRW failed: upbit: prices of KRW-BTC: a page of 200 candles moved back only 0:03:20 from "
        "2024-07-19 00:00:00; expected at least 200 days")
    assert {row[0] for row in stored_prices(database)} == {"ETH/KRW"}
    assert len(stored_prices(database)) == (date(2025, 6, 30) - date(2024, 1, 1)).days + 1


def test_fetch_daily_candles_blocked_raises_at_once(fake_upbit, client):
    fake_upbit.set_blocked(True)
    with pytest.raises(ExchangeBlocked, match="418"):
        list(upbit.fetch_daily_candles(client, "BTC/KRW", date(2025, 1, 1)))
    assert fake_upbit.count() == 1


def test_fetch_daily_candles_client_error_is_not_retried(fake_upbit, client):
    with pytest.raises(ExchangeError, match="HTTP 400"):
        list(client.request_json("GET", "/v1/candles/days", "candles", params={"count": "1"}))
    assert fake_upbit.count() == 1


def test_fetch_daily_candles_slows_down_on_remaining_req_before_429(client):
    rows = make_upbit_candles("KRW-BTC", date(2023, 1, 1), date(2025, 6, 30))
    with FakeUpbit(candles={"KRW-BTC": rows}, rate_limit=2) as strict:
        client.base_url = strict.url
        candles = list(upbit.fetch_daily_candles(client, "BTC/KRW", date(2023, 1, 1)))
        assert strict.count(status=429) == 0
    assert len(candles) == len(rows)


def test_fetch_daily_candles_retries_429_then_succeeds(client):
    rows = make_upbit_candles("KRW-BTC", date(2023, 1, 1), date(2025, 6, 30))
    client.remaining_of = None  # ignore Remaining-Req, so the server's 429 is what stops us
    with FakeUpbit(candles={"KRW-BTC": rows}, rate_limit=2) as strict:
        client.base_url = strict.url
        candles = list(upbit.fetch_daily_candles(client, "BTC/KRW", date(2023, 1, 1)))
        assert strict.count(status=429) >= 1
    assert len(candles) == len(rows)
    assert client.counters["throttled"] == strict.count(status=429)


def test_fetch_daily_candles_gives_up_after_bounded_server_errors(fake_upbit, client):
    fake_upbit.set_candles("KRW-BTC", make_upbit_candles("KRW-BTC", date(2025, 6, 1), date(2025, 6, 30)))
    fake_upbit.inject("500", count=50)
    with pytest.raises(ExchangeError, match="gave up after retries"):
        list(upbit.fetch_daily_candles(client, "BTC/KRW", date(2025, 6, 1)))
    assert fake_upbit.count() == 5


def test_parse_candle_rejects_non_numbers():
    row = {"candle_date_time_utc": "2025-07-01T00:00:00", "opening_price": "abc", "high_price": 1,
           "low_price": 1, "trade_price": 1, "candle_acc_trade_volume": 1, "candle_acc_trade_price": 1}
    assert upbit.parse_candle(row) == RejectedCandle("2025-07-01: opening_price is not a number: 'abc'")


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_parse_candle_rejects_non_finite_numbers(value):
    row = {"candle_date_time_utc": "2025-07-01T00:00:00", "opening_price": 1, "high_price": value,
           "low_price": 1, "trade_price": 1, "candle_acc_trade_volume": 1, "candle_acc_trade_price": 1}
    assert upbit.parse_candle(row) == RejectedCandle(f"2025-07-01: high_price is not a number: {value!r}")


def test_fetch_daily_candles_huge_exponent_is_one_rejected_candle(fake_upbit, client):
    fake_upbit.set_candles("KRW-BTC", make_upbit_candles("KRW-BTC", date(2025, 1, 1), date(2025, 1, 3)))
    fake_upbit.inject("huge_exponent")
    candles = list(upbit.fetch_daily_candles(client, "BTC/KRW"))
    assert candles[0] == RejectedCandle("2025-01-03: opening_price is not a number: Decimal('NaN')")
    assert [f"{candle.timestamp:%Y-%m-%d}" for candle in candles[1:]] == ["2025-01-02", "2025-01-01"]


def test_parse_candle_reads_utc_and_decimals():
    row = {"candle_date_time_utc": "2025-07-01T00:00:00", "opening_price": Decimal("0.00001234"), "high_price": 2,
           "low_price": 1, "trade_price": 1, "candle_acc_trade_volume": Decimal("5.5"),
           "candle_acc_trade_price": Decimal("242634976840.02426000")}
    assert upbit.parse_candle(row) == Candle(datetime(2025, 7, 1, tzinfo=timezone.utc), Decimal("0.00001234"),
                                             Decimal(2), Decimal(1), Decimal(1), Decimal("5.5"),
                                             Decimal("242634976840.02426000"))


def test_remaining_requests_reads_sec():
    assert upbit.remaining_requests({"Remaining-Req": "group=candles; min=600; sec=9"}) == 9
    assert upbit.remaining_requests({}) is None


def test_candle_closes_at_next_utc_midnight():
    start = datetime(2025, 7, 1, tzinfo=timezone.utc)
    assert upbit.candle_closes_at(start) == datetime(2025, 7, 2, tzinfo=timezone.utc)


def test_fetch_quotes_one_ticker_request_and_order_books_by_the_hundred(fake_upbit, client):
    fake_upbit.set_markets(make_upbit_markets(250))
    symbols = [f"C{number:03d}/{('KRW', 'BTC', 'USDT')[(number - 1) % 3]}" for number in range(1, 251)]

    quotes = upbit.fetch_quotes(client, symbols)

    assert sorted(quote.symbol for quote in quotes) == sorted(symbols)
    paths = [request.path for request in fake_upbit.requests]
    assert paths == ["/v1/ticker/all"] + ["/v1/orderbook"] * 3
    batches = sorted(len(request.query["markets"].split(",")) for request in fake_upbit.requests[1:])
    assert batches == [50, 100, 100]
    assert max(len(request.query["markets"]) for request in fake_upbit.requests[1:]) < 1000


def test_fetch_quotes_asks_only_for_the_quote_currencies_of_the_symbols(fake_upbit, client):
    fake_upbit.set_markets(make_upbit_markets(6))

    quotes = upbit.fetch_quotes(client, ["C001/KRW", "C004/KRW", "C404/KRW"])

    assert [quote.symbol for quote in quotes] == ["C001/KRW", "C004/KRW"]  # C404 is not in the answer
    assert fake_upbit.requests[0].query == {"quote_currencies": "KRW"}
    assert upbit.fetch_quotes(client, []) == []


def test_fetch_quotes_blocked_raises_at_once(fake_upbit, client):
    fake_upbit.set_markets(make_upbit_markets(3))
    fake_upbit.set_blocked(True)
    with pytest.raises(ExchangeBlocked):
        upbit.fetch_quotes(client, ["C001/KRW"])
    assert fake_upbit.count() == 1


def test_parse_quote_converts_the_ratio_to_rounded_percent_and_reads_epoch_ms():
    ticker = {"trade_price": 82324000, "acc_trade_volume_24h": Decimal("3016.08919175"),
              "signed_change_rate": Decimal("0.0644100407"), "timestamp": 1724310962747}
    book = {"orderbook_units": [{"ask_price": 82325000, "bid_price": 82324000}]}

    assert upbit.parse_quote("BTC/KRW", ticker, book) == Quote(
        "BTC/KRW", Decimal(82324000), Decimal(82324000), Decimal(82325000), Decimal("3016.08919175"),
        Decimal("6.4410"), datetime(2024, 8, 22, 7, 16, 2, 747000, tzinfo=timezone.utc))
    assert upbit.parse_quote("BTC/KRW", ticker, None).bid is None


@pytest.mark.parametrize("field, value", [("trade_price", "82324000"), ("signed_change_rate", None),
                                          ("timestamp", "soon"), ("acc_trade_volume_24h", True)])
def test_parse_quote_rejects_what_is_not_a_number(field, value):
    ticker = {"trade_price": 1, "acc_trade_volume_24h": 1, "signed_change_rate": 0, "timestamp": 1724310962747,
              field: value}
    rejected = upbit.parse_quote("BTC/KRW", ticker, None)
    assert isinstance(rejected, RejectedQuote) and rejected.symbol == "BTC/KRW"
def test_fetch_candles_minutes_go_forward_and_keep_gaps(fake_upbit, client):
    rows = make_upbit_minute_candles("KRW-BTC", 5, datetime(2025, 7, 1), datetime(2025, 7, 3), gap_every=3)
    fake_upbit.set_candles("KRW-BTC", rows, "minutes/5")
    start = datetime(2025, 7, 1, 12, 2, tzinfo=timezone.utc)  # aligned down to 12:00
    items = list(upbit.fetch_candles(client, "BTC/KRW", "5m", start, datetime(2025, 7, 3, tzinfo=timezone.utc)))
    candles = [item.timestamp for item in items if isinstance(item, Candle)]
    wanted = [datetime.fromisoformat(row["candle_date_time_utc"]).replace(tzinfo=timezone.utc) for row in rows]
    assert sorted(candles) == [moment for moment in wanted if moment >= datetime(2025, 7, 1, 12, tzinfo=timezone.utc)]
    pages = [request.query.get("to") for request in fake_upbit.requests if request.path == "/v1/candles/minutes/5"]
    assert pages == ["2025-07-02T04:40:00Z", "2025-07-02T21:20:00Z", "2025-07-03T14:00:00Z"]  # 200 x 5 min each
    assert [item for item in items if isinstance(item, Covered)][-1] == Covered(
        datetime(2025, 7, 1, 12, tzinfo=timezone.utc), datetime(2025, 7, 3, tzinfo=timezone.utc))


def test_fetch_candles_empty_page_after_candles_raises(fake_upbit, client):
    rows = make_upbit_minute_candles("KRW-BTC", 1, datetime(2025, 7, 1), datetime(2025, 7, 2))
    fake_upbit.set_candles("KRW-BTC", rows, "minutes/1")
    fake_upbit.inject("empty", count=2, match=lambda request: request.query.get("to") == "2025-07-01T06:40:00Z")
    with pytest.raises(ExchangeError, match=r"^upbit: 1m candles of KRW-BTC: an empty page before 2025-07-01 06:40"):
        list(upbit.fetch_candles(client, "BTC/KRW", "1m", datetime(2025, 7, 1, tzinfo=timezone.utc),
                                 datetime(2025, 7, 2, tzinfo=timezone.utc)))


@pytest.mark.parametrize(("timeframe", "start", "closes"), [
    ("5m", datetime(2025, 7, 1, 22, 25, tzinfo=timezone.utc), datetime(2025, 7, 1, 22, 30, tzinfo=timezone.utc)),
    ("1w", datetime(2025, 6, 30, tzinfo=timezone.utc), datetime(2025, 7, 7, tzinfo=timezone.utc)),
    ("1M", datetime(2025, 12, 1, tzinfo=timezone.utc), datetime(2026, 1, 1, tzinfo=timezone.utc)),
])
def test_candle_closes_at_the_end_of_its_period(timeframe, start, closes):
    assert upbit.candle_closes_at(start, timeframe) == closes
