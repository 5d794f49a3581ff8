"""The KIS collector against the fake KIS on loopback, and `wombat-collect prices --exchange kis`."""

from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest

from tests.conftest import query, run_cli
from tests.fakes.kis_server import FakeKis, make_kis_rows, period_rows
from tests.kis_support import (
    MASTERS,
    PRICE_END,
    expected_prices,
    install_masters,
    install_prices,
    kis_env,
    kis_prices,
)
from wombat_collect.collectors import kis
from wombat_collect.config import load_settings
from wombat_collect.errors import ExchangeError
from wombat_collect.http import Answer, Verdict
from wombat_collect.http_text import parse_json
from wombat_collect.records import Candle, RejectedCandle, RejectedQuote
from wombat_collect.timeframes import period_start

PRICES_PATH = "/uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice"
KOSPI_CODES = [row[0] for row in MASTERS["kospi"]]
ALL_CODES = [row[0] for rows in MASTERS.values() for row in rows]
MAY = date(2024, 5, 1)


@pytest.fixture
def fake():
    with FakeKis(rate_limit=None) as server:
        yield server


def open_client(fake, state_dir, **variables):
    """Given a FakeKis and a state directory, return a KIS client as the CLI opens it."""
    return kis.open_client(load_settings({
        "KIS_API_URL": fake.url, "KIS_MASTER_URL": fake.master_url, "KIS_APP_KEY": fake.app_key,
        "KIS_APP_SECRET": fake.app_secret, "WOMBAT_STATE_DIR": str(state_dir), "KIS_RATE_LIMIT": "200",
        "WOMBAT_HTTP_TIMEOUT": "3", **variables}))


def answer(status, body, content_type="application/json"):
    return Answer(status, parse_json(body), body, content_type)


def price_queries(fake):
    return [request.query for request in fake.requests if request.path == PRICES_PATH]


# --------------------------------------------------------------------------- unit


@pytest.mark.parametrize(("status", "body", "verdict", "message"), [
    (200, '{"rt_cd":"0","msg_cd":"MCA00000","msg1":"정상처리 되었습니다.   ","output2":[]}', Verdict.OK, ""),
    (500, '{"rt_cd":"1","msg_cd":"EGW00201","msg1":"초당 거래건수를 초과하였습니다."}', Verdict.THROTTLED,
     "HTTP 500: EGW00201 over the rate limit"),
    (500, '{"rt_cd":"1","msg_cd":"EGW00123","msg1":"기간이 만료된 token 입니다."}', Verdict.AUTH,
     "HTTP 500: EGW00123 access token rejected"),
    (500, '{"rt_cd":"1","msg_cd":"EGW00121","msg1":"유효하지 않은 token 입니다."}', Verdict.AUTH,
     "HTTP 500: EGW00121 access token rejected"),
    (500, '{"rt_cd":"1","msg_cd":"EGW00103","msg1":"유효하지 않은 AppKey입니다."}', Verdict.FAIL,
     "HTTP 500: EGW00103 유효하지 않은 AppKey입니다. (check KIS_APP_KEY and KIS_APP_SECRET)"),
    (200, '{"rt_cd":"1","msg_cd":"OPSQ2001","msg1":"ERROR : INPUT_FIELD_NAME FID_INPUT_ISCD   "}', Verdict.FAIL,
     "HTTP 200: OPSQ2001 ERROR : INPUT_FIELD_NAME FID_INPUT_ISCD"),
    (502, '{"error":"bad gateway"}', Verdict.RETRY, 'HTTP 502: {"error":"bad gateway"}'),
    (503, "<html>503 Service Temporarily Unavailable</html>", Verdict.RETRY,
     "HTTP 503, not JSON (text/html): <html>503 Service Temporarily Unavailable</html>"),
    (200, '{"rt_cd":"0","output2":[{"stck', Verdict.RETRY,
     'HTTP 200, not JSON (application/json): {"rt_cd":"0","output2":[{"stck'),
    (404, "<html>404</html>", Verdict.FAIL, "HTTP 404, not JSON (text/html): <html>404</html>"),
])
def test_classify_reads_rt_cd_and_msg_cd_whatever_the_status(status, body, verdict, message):
    content_type = "text/html" if body.startswith("<") else "application/json"
    assert kis.classify(answer(status, body, content_type)) == (verdict, message)


def test_parse_candle_reads_strings_as_exact_decimals():
    row = make_kis_rows("005930", date(2024, 7, 1), date(2024, 7, 1))[0]
    row.update(stck_oprc="70100", acml_tr_pbmn="1234567890123456789012")
    candle = kis.parse_candle(row, date(2024, 7, 1), adjusted=True)
    assert candle == Candle(
        timestamp=datetime(2024, 7, 1, tzinfo=timezone.utc), open=Decimal("70100"), high=Decimal(row["stck_hgpr"]),
        low=Decimal(row["stck_lwpr"]), close=Decimal(row["stck_clpr"]), volume=Decimal(row["acml_vol"]),
        quote_volume=Decimal("1234567890123456789012"), corporate_action=False)


@pytest.mark.parametrize("value", ["", "12a", "NaN", "Infinity", None])
def test_parse_candle_rejects_non_numbers(value):
    row = make_kis_rows("005930", date(2024, 7, 1), date(2024, 7, 1))[0]
    row["stck_hgpr"] = value
    assert kis.parse_candle(row, date(2024, 7, 1), adjusted=True) == RejectedCandle(
        f"2024-07-01: stck_hgpr is not a number: {value!r}")


def test_fetch_daily_candles_huge_exponent_is_one_rejected_candle(fake, tmp_path):
    fake.set_prices("005930", make_kis_rows("005930", date(2024, 6, 24), date(2024, 6, 28)))
    fake.inject("huge_exponent", match=lambda request: request.path == PRICES_PATH)
    candles = list(kis.fetch_daily_candles(open_client(fake, tmp_path), "005930", date(2024, 6, 24)))
    assert candles[0] == RejectedCandle("2024-06-28: stck_clpr is not a number: Decimal('NaN')")
    assert [f"{candle.timestamp:%Y-%m-%d}" for candle in candles[1:]] == [
        "2024-06-27", "2024-06-26", "2024-06-25", "2024-06-24"]


@pytest.mark.parametrize(("flng_cls_code", "mod_yn", "adjusted", "flagged"), [
    ("00", "N", True, False), ("01", "N", True, True), ("02", "N", True, True), ("00", "Y", True, True),
    ("", "", True, False), ("01", "Y", False, False),
])
def test_parse_candle_flags_corporate_actions(flng_cls_code, mod_yn, adjusted, flagged):
    row = make_kis_rows("005930", date(2024, 7, 1), date(2024, 7, 1))[0]
    row.update(flng_cls_code=flng_cls_code, mod_yn=mod_yn)
    assert kis.parse_candle(row, date(2024, 7, 1), adjusted).corporate_action is flagged


def test_candle_closes_at_18_kst_of_the_trade_date():
    start = datetime(2024, 7, 1, tzinfo=timezone.utc)
    assert kis.candle_closes_at(start) == datetime(2024, 7, 1, 18, tzinfo=timezone(timedelta(hours=9)))


def test_fetch_daily_candles_pages_back_to_the_start(fake, tmp_path):
    fake.set_prices("005930", make_kis_rows("005930", date(2023, 1, 2), PRICE_END))
    candles = list(kis.fetch_daily_candles(open_client(fake, tmp_path), "005930", date(2023, 3, 2)))
    wanted = [row for row in fake.series("005930") if row["stck_bsop_date"] >= "20230302"]
    assert [f"{candle.timestamp:%Y%m%d}" for candle in candles] == [row["stck_bsop_date"] for row in reversed(wanted)]
    queries = price_queries(fake)
    today = datetime.now(timezone(timedelta(hours=9))).strftime("%Y%m%d")
    assert queries[0] == {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "005930", "FID_INPUT_DATE_1": "20230302",
                          "FID_INPUT_DATE_2": today, "FID_PERIOD_DIV_CODE": "D", "FID_ORG_ADJ_PRC": "0"}
    oldest_of_first_page = datetime.strptime(wanted[-100]["stck_bsop_date"], "%Y%m%d").date()
    assert queries[1]["FID_INPUT_DATE_2"] == f"{oldest_of_first_page - timedelta(days=1):%Y%m%d}"
    assert len(queries) == 4  # 100 + 100 + 100 + the rest (< 100)
    headers = next(request.headers for request in fake.requests if request.path == PRICES_PATH)
    assert (headers["tr_id"], headers["custtype"], headers["content-type"]) == (
        "FHKST03010100", "P", "application/json; charset=utf-8")


def test_fetch_daily_candles_without_start_asks_from_1980(fake, tmp_path):
    fake.set_prices("005930", make_kis_rows("005930", date(2024, 6, 3), PRICE_END))
    candles = list(kis.fetch_daily_candles(open_client(fake, tmp_path), "005930"))
    assert len(candles) == 20
    assert price_queries(fake)[0]["FID_INPUT_DATE_1"] == "19800104"


def test_fetch_daily_candles_asks_for_original_prices_when_not_adjusted(fake, tmp_path):
    fake.set_prices("005930", make_kis_rows("005930", date(2024, 6, 3), PRICE_END))
    fake.apply_split("005930", "20240614", 50)
    client = open_client(fake, tmp_path, KIS_ADJUSTED="false")
    candles = list(kis.fetch_daily_candles(client, "005930", date(2024, 6, 3)))
    assert price_queries(fake)[0]["FID_ORG_ADJ_PRC"] == "1"
    assert [candle.close for candle in reversed(candles)] == [
        Decimal(row["stck_clpr"]) for row in fake.series("005930", adjusted=False)]
    assert not any(candle.corporate_action for candle in candles)


def test_fetch_daily_candles_skips_padding_and_duplicates(tmp_path):
    rows = make_kis_rows("005930", date(2023, 6, 1), PRICE_END)
    with FakeKis(rate_limit=None, pad_empty=True, duplicate_rows=True, prices={"005930": rows}) as padded:
        candles = list(kis.fetch_daily_candles(open_client(padded, tmp_path), "005930", date(2023, 6, 1)))
    assert [f"{candle.timestamp:%Y%m%d}" for candle in candles] == [row["stck_bsop_date"] for row in reversed(rows)]


def test_fetch_daily_candles_stuck_cursor_raises(fake, tmp_path):
    fake.set_prices("005930", make_kis_rows("005930", date(2023, 1, 2), PRICE_END))
    fake.inject("stuck_cursor", count=10)
    with pytest.raises(ExchangeError, match="did not move back past"):
        list(kis.fetch_daily_candles(open_client(fake, tmp_path), "005930", date(2023, 1, 2)))
    assert len(price_queries(fake)) == 2


def test_fetch_daily_candles_creeping_cursor_is_capped_by_the_window(fake, tmp_path):
    fake.set_prices("005930", make_kis_rows("005930", date(2023, 1, 2), PRICE_END))
    fake.inject("creeping_cursor", count=10_000)  # every page: 100 copies of one day, one day back each
    first = date(2024, 1, 2)
    with pytest.raises(ExchangeError, match=r"^kis: prices of 005930 took more than \d+ pages for the window from "
                                            r"2024-01-02; the paging cursor is not moving back as it should$"):
        list(kis.fetch_daily_candles(open_client(fake, tmp_path), "005930", first))
    days = (datetime.now(kis.KST).date() - first).days + 1
    assert len(price_queries(fake)) == -(-days // 100) + 2


def test_fetch_daily_candles_unknown_code_yields_nothing(fake, tmp_path):
    assert list(kis.fetch_daily_candles(open_client(fake, tmp_path), "999999", MAY)) == []


def test_fetch_daily_candles_retries_server_errors_then_succeeds(fake, tmp_path):
    fake.set_prices("005930", make_kis_rows("005930", MAY, PRICE_END))
    fake.inject("503", match=lambda request: request.path == PRICES_PATH)
    fake.inject("malformed_json", match=lambda request: request.path == PRICES_PATH)
    client = open_client(fake, tmp_path)
    client._sleep = lambda seconds: None
    assert len(list(kis.fetch_daily_candles(client, "005930", MAY))) == 43
    assert client.counters["retried"] == 2


def test_fetch_daily_candles_client_error_fails_with_kis_message(fake, tmp_path):
    with pytest.raises(ExchangeError, match="^kis: HTTP 200: OPSQ2001 ERROR : INPUT_FIELD_NAME FID_INPUT_ISCD$"):
        list(kis.fetch_daily_candles(open_client(fake, tmp_path), "", MAY))
    assert len(price_queries(fake)) == 1


# --------------------------------------------------------------------------- end to end


def test_prices_since_stores_exact_rows(database, fake, tmp_path):
    install_masters(fake)
    install_prices(fake, ALL_CODES)
    result = run_cli("prices", "--exchange", "kis", "--since", "2024-05-01", env=kis_env(database, fake, tmp_path))
    assert result.exit_code == 0, result.output
    stored = kis_prices(database)
    assert stored == expected_prices(fake, ALL_CODES, MAY)
    assert len(stored) == 9 * 43
    # Aware, at 00:00 UTC (read back in the server's TimeZone, whatever the host's zone made it).
    assert all(row[1].tzinfo is not None and row[1].astimezone(timezone.utc).time() == time(0) for row in stored)
    assert query(database, "SELECT p.close_price::text FROM pricedata p JOIN symbol s ON s.id = p.symbol_id"
                           " WHERE s.symbol = '005930' AND p.timestamp = '2024-06-28 00:00+00'") == [
        (f"{Decimal(fake.series('005930')[-1]['stck_clpr']):.8f}",)]


def test_prices_market_option_filters(database, fake, tmp_path):
    install_masters(fake)
    install_prices(fake, ALL_CODES)
    result = run_cli("prices", "--exchange", "kis", "--market", "KOSPI", "--since", "2024-06-01",
                     env=kis_env(database, fake, tmp_path))
    assert result.exit_code == 0, result.output
    assert sorted({query["FID_INPUT_ISCD"] for query in price_queries(fake)}) == sorted(KOSPI_CODES)
    assert kis_prices(database) == expected_prices(fake, KOSPI_CODES, date(2024, 6, 1))


def test_prices_rate_limit_storms_are_retried(database, tmp_path):
    with FakeKis(rate_limit=3) as strict:
        install_masters(strict)
        install_prices(strict, ALL_CODES)
        result = run_cli("prices", "--exchange", "kis", "--since", "2024-06-01",
                         env=kis_env(database, strict, tmp_path))
        assert result.exit_code == 0, result.output
        assert strict.count(PRICES_PATH, status=500) >= 3  # EGW00201 answers
        assert kis_prices(database) == expected_prices(strict, ALL_CODES, date(2024, 6, 1))


def test_prices_split_rebases_the_stored_history(database, fake, tmp_path):
    install_masters(fake)
    install_prices(fake, ["005930"])
    env = kis_env(database, fake, tmp_path, WOMBAT_BACKFILL_DAYS="36500")
    assert run_cli("prices", "--exchange", "kis", "--since", "2024-03-04", env=env).exit_code == 0
    fake.set_prices("005930", make_kis_rows("005930", date(2024, 1, 2), date(2024, 7, 31)))
    fake.apply_split("005930", "20240715", 50)
    result = run_cli("prices", "--exchange", "kis", env=env)
    assert result.exit_code == 0, result.output
    assert "adjustment basis changed, re-collecting from 2024-03-04" in result.stdout
    assert kis_prices(database) == expected_prices(fake, ["005930"], date(2024, 3, 4))
    assert kis_prices(database)[0][5] != expected_prices(fake, ["005930"], date(2024, 3, 4), adjusted=False)[0][5]


def test_prices_rejected_candle_fails_the_symbol_only(database, fake, tmp_path):
    install_masters(fake)
    install_prices(fake, ["005930", "069500"])
    rows = make_kis_rows("069500", date(2024, 1, 2), PRICE_END)
    rows[-3]["stck_clpr"] = "N/A"  # not the newest row: the fake's output1 reads that one
    fake.set_prices("069500", rows)
    result = run_cli("prices", "--exchange", "kis", "--since", "2024-06-01", env=kis_env(database, fake, tmp_path))
    assert result.exit_code == 1, result.output
    assert "069500 failed: 1 invalid candle(s) rejected, first: 2024-06-26: stck_clpr is not a number: 'N/A'" \
        in result.stderr
    assert [row for row in kis_prices(database) if row[0] == "005930"] == expected_prices(
        fake, ["005930"], date(2024, 6, 1))


def test_prices_missing_app_key_exits_2_before_any_request(database, fake, tmp_path):
    env = kis_env(database, fake, tmp_path, KIS_APP_KEY="")
    result = run_cli("prices", "--exchange", "kis", env=env)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "KIS_APP_KEY must be set" in result.stderr and "KIS_APP_SECRET" not in result.stderr
    assert fake.requests == []


def test_prices_invalid_app_key_stops_the_run_with_one_token_request(database, fake, tmp_path):
    install_masters(fake)
    install_prices(fake, ALL_CODES)
    result = run_cli("prices", "--exchange", "kis", env=kis_env(database, fake, tmp_path, KIS_APP_KEY="PSwrong"))
    assert result.exit_code == 1
    assert "EGW00103" in result.stderr and "PSwrong" not in result.output
    assert fake.count("/oauth2/tokenP") == 1 and price_queries(fake) == []


def test_page_candles_skips_halted_days_without_trades():
    traded = {"stck_bsop_date": "20250702", "stck_oprc": "100", "stck_hgpr": "110", "stck_lwpr": "90",
              "stck_clpr": "105", "acml_vol": "7", "acml_tr_pbmn": "735", "flng_cls_code": "00", "mod_yn": "N"}
    halted = dict(traded, stck_bsop_date="20250701", stck_oprc="0", stck_hgpr="0", stck_lwpr="0", acml_vol="0",
                  acml_tr_pbmn="0")
    candles = list(kis.page_candles([traded, halted], date(2025, 6, 1), set(), adjusted=True))
    assert candles == [Candle(datetime(2025, 7, 2, tzinfo=timezone.utc), Decimal(100), Decimal(110), Decimal(90),
                              Decimal(105), Decimal(7), Decimal(735))]


MULTI_PRICE_PATH = "/uapi/domestic-stock/v1/quotations/intstock-multprice"


def test_fetch_quotes_asks_30_codes_a_request(fake, tmp_path):
    codes = [f"{number:06d}" for number in range(100001, 100066)]  # 65 codes -> 30 + 30 + 5
    for code in codes:
        fake.set_quote(code, inter2_prpr="1000", acml_vol="5", prdy_ctrt="1.5")
    client = open_client(fake, tmp_path)

    quotes = kis.fetch_quotes(client, codes)

    assert [quote.symbol for quote in quotes] == codes
    requests = [request for request in fake.requests if request.path == MULTI_PRICE_PATH]
    assert sorted(len(request.query) // 2 for request in requests) == [5, 30, 30]
    assert all(request.query[f"FID_COND_MRKT_DIV_CODE_{number}"] == "J"
               for request in requests for number in range(1, len(request.query) // 2 + 1))
    assert quotes[0].change_rate == Decimal("1.5000")


def test_fetch_quotes_leaves_out_codes_the_answer_lacks(fake, tmp_path):
    fake.set_quote("005930", inter2_prpr="71500")
    assert [quote.symbol for quote in kis.fetch_quotes(open_client(fake, tmp_path), ["005930", "999999"])] == [
        "005930"]


def test_fetch_quotes_client_error_raises_with_the_kis_message(fake, tmp_path):
    fake.virtual = True  # the virtual host lacks the TR
    with pytest.raises(ExchangeError, match="MCA00124"):
        kis.fetch_quotes(open_client(fake, tmp_path), ["005930"])


def test_quotes_unavailable_only_on_the_virtual_host(fake, tmp_path):
    assert kis.quotes_unavailable(open_client(fake, tmp_path)) is None
    assert "virtual host" in kis.quotes_unavailable(open_client(fake, tmp_path, KIS_ENV="virtual"))


@pytest.mark.parametrize("field, value", [("inter2_prpr", ""), ("prdy_ctrt", "N/A"), ("acml_vol", None)])
def test_parse_quote_rejects_what_is_not_a_number(field, value):
    row = {"inter_shrn_iscd": "005930", "inter2_prpr": "1", "prdy_ctrt": "0", "acml_vol": "0", field: value}
    assert kis.parse_quote(row, datetime.now(timezone.utc)).symbol == "005930"
    assert isinstance(kis.parse_quote(row, datetime.now(timezone.utc)), RejectedQuote)
# --------------------------------------------------------------------------- weeks, months, years

PERIOD_ROWS = """
    SELECT p.timeframe, p."timestamp", p.open_price, p.high_price, p.low_price, p.close_price,
           p.volume, p.quote_volume
      FROM pricedata p JOIN symbol s ON s.id = p.symbol_id
     WHERE s.symbol = %s AND p.timeframe <> '1d'
     ORDER BY p.timeframe, p."timestamp"
"""


def expected_period_rows(fake, code, timeframe, period, first):
    """Given the fake, a code, a timeframe and its KIS period code, return its rows at their period starts."""
    rows = []
    for row in period_rows(fake.series(code), period):
        day = datetime.strptime(row["stck_bsop_date"], "%Y%m%d").replace(tzinfo=timezone.utc)
        start = period_start(day, timeframe)
        if start >= first:
            rows.append((timeframe, start, *(Decimal(row[key]) for key in (
                "stck_oprc", "stck_hgpr", "stck_lwpr", "stck_clpr", "acml_vol", "acml_tr_pbmn"))))
    return rows


def test_prices_weeks_months_years_dated_mid_period_are_stored_at_the_period_start(database, fake, tmp_path):
    install_masters(fake)
    install_prices(fake, ["005930"])
    monthly = period_rows(fake.series("005930"), "M")
    assert [row["stck_bsop_date"] for row in monthly][-2:] == ["20240531", "20240628"]  # KIS dates: last trading day
    result = run_cli("prices", "--exchange", "kis", "--symbol", "005930", "--since", "2024-03-06",
                     "--timeframe", "1w", "--timeframe", "1M", "--timeframe", "1y",
                     env=kis_env(database, fake, tmp_path))
    assert result.exit_code == 0, result.output
    first = datetime(2024, 3, 6, tzinfo=timezone.utc)
    stored = query(database, PERIOD_ROWS, ("005930",))
    assert stored == sorted(expected_period_rows(fake, "005930", "1M", "M", period_start(first, "1M"))
                            + expected_period_rows(fake, "005930", "1w", "W", period_start(first, "1w"))
                            + expected_period_rows(fake, "005930", "1y", "Y", period_start(first, "1y")))
    assert [row[1] for row in stored if row[0] == "1M"] == [
        datetime(2024, month, 1, tzinfo=timezone.utc) for month in (3, 4, 5, 6)]
    assert [row[1] for row in stored if row[0] == "1y"] == [datetime(2024, 1, 1, tzinfo=timezone.utc)]
    weeks = [row[1] for row in stored if row[0] == "1w"]
    assert weeks[0] == datetime(2024, 3, 4, tzinfo=timezone.utc) and all(week.weekday() == 0 for week in weeks)
    assert len(weeks) == 17
    codes = {query_["FID_PERIOD_DIV_CODE"]: query_["FID_INPUT_DATE_1"] for query_ in price_queries(fake)}
    assert codes == {"W": "20240304", "M": "20240301", "Y": "20240101"}  # the window aligned down per period
    assert query(database, "SELECT count(*) FROM pricedata WHERE timeframe = '1d'") == [(0,)]


def test_fetch_candles_weeks_page_on_from_the_oldest_period_start_minus_one_day(fake, tmp_path):
    fake.set_prices("005930", make_kis_rows("005930", date(2020, 1, 1), PRICE_END))
    candles = [item for item in kis.fetch_candles(open_client(fake, tmp_path), "005930", "1w")
               if isinstance(item, Candle)]
    weeks = len(period_rows(fake.series("005930"), "W"))
    assert len(candles) == weeks == 235
    assert [candle.timestamp for candle in candles] == sorted((candle.timestamp for candle in candles), reverse=True)
    ends = [query_["FID_INPUT_DATE_2"] for query_ in price_queries(fake)]
    oldest_of_first_page = candles[99].timestamp  # a Monday
    assert ends[1] == f"{oldest_of_first_page - timedelta(days=1):%Y%m%d}"  # the Sunday before, not the row's date
    assert len(ends) == 3


@pytest.mark.parametrize(("timeframe", "start", "closes"), [
    ("1d", datetime(2024, 7, 1, tzinfo=timezone.utc), datetime(2024, 7, 1, 18, tzinfo=kis.KST)),
    ("1w", datetime(2024, 7, 1, tzinfo=timezone.utc), datetime(2024, 7, 7, 18, tzinfo=kis.KST)),
    ("1M", datetime(2024, 2, 1, tzinfo=timezone.utc), datetime(2024, 2, 29, 18, tzinfo=kis.KST)),
    ("1y", datetime(2024, 1, 1, tzinfo=timezone.utc), datetime(2024, 12, 31, 18, tzinfo=kis.KST)),
])
def test_candle_closes_at_18_kst_of_the_periods_last_calendar_day(timeframe, start, closes):
    assert kis.candle_closes_at(start, timeframe) == closes


def test_prices_wombat_timeframes_collects_what_kis_offers_and_names_what_it_skips(database, fake, tmp_path):
    install_masters(fake)
    install_prices(fake, ["005930"])
    result = run_cli("prices", "--exchange", "kis", "--symbol", "005930", "--since", "2024-06-03",
                     env=kis_env(database, fake, tmp_path, WOMBAT_TIMEFRAMES="5m,1h,1M"))
    assert result.exit_code == 0, result.output
    assert [line.split(" INFO ")[1] for line in result.stdout.splitlines() if "skipping" in line] == [
        "prices kis: skipping timeframe 5m, 1h (not offered by kis)"]
    assert query(database, "SELECT DISTINCT timeframe FROM pricedata") == [("1M",)]
