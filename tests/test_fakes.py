"""Tests of the fake exchange servers themselves (real HTTP on loopback)."""

from __future__ import annotations

import io
import json
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import requests

from tests.fakes.common import SlidingWindowLimiter, dumps_with_decimals, max_requests_in_window
from tests.fakes.kis_server import (
    PRICE_PATH,
    PRICE_TR_ID,
    FakeKis,
    build_master_row,
    build_master_zip,
    make_kis_rows,
    master_field_slices,
)
from tests.fakes.upbit_server import (
    BIG_TRADE_PRICE,
    CANDLES_PATH,
    FakeUpbit,
    make_upbit_candles,
    make_upbit_markets,
)

DAY_ONE = date(2024, 1, 1)
LAST_DAY = date(2025, 6, 30)
TIMEOUT = 5


def utc(text: str) -> datetime:
    """Given ``YYYY-MM-DDTHH:MM:SS``, return that naive UTC datetime."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S")


def get_candles(fake: FakeUpbit, session=requests, **params):
    """Given a fake and query params, return the candles response."""
    return session.get(fake.url + CANDLES_PATH, params=params, timeout=TIMEOUT)


@pytest.fixture
def upbit():
    """A FakeUpbit with two candle markets and no rate limit."""
    candles = {
        "KRW-BTC": make_upbit_candles("KRW-BTC", DAY_ONE, LAST_DAY, gap_every=7),
        "BTC-ETH": make_upbit_candles("BTC-ETH", date(2025, 6, 1), LAST_DAY),
    }
    with FakeUpbit(candles=candles, rate_limit=None) as fake:
        yield fake


class Clock:
    """A settable aware clock for FakeKis(now=...)."""

    def __init__(self) -> None:
        self.moment = datetime(2025, 7, 1, 0, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def kis(clock):
    """A FakeKis with one code of ~18 months of rows and a settable clock."""
    rows = make_kis_rows("005930", DAY_ONE, LAST_DAY, holidays={date(2024, 2, 9)})
    with FakeKis(prices={"005930": rows}, names={"005930": "삼성전자"}, now=clock) as fake:
        yield fake


def issue_token(fake: FakeKis) -> requests.Response:
    """Given a FakeKis, return the answer to a correct token request."""
    body = {"grant_type": "client_credentials", "appkey": fake.app_key, "appsecret": fake.app_secret}
    return requests.post(fake.url + "/oauth2/tokenP", json=body, timeout=TIMEOUT)


def kis_headers(fake: FakeKis, token: str, **overrides: str) -> dict[str, str]:
    """Given a FakeKis and a token, return valid price request headers (with overrides)."""
    headers = {
        "content-type": "application/json; charset=utf-8",
        "authorization": f"Bearer {token}",
        "appkey": fake.app_key,
        "appsecret": fake.app_secret,
        "tr_id": PRICE_TR_ID,
        "custtype": "P",
    }
    headers.update(overrides)
    return {name: value for name, value in headers.items() if value is not None}


def price_params(
    code: str = "005930", start: str = "20240101", end: str = "20250630", adjusted: bool = True
) -> dict[str, str]:
    """Return query params for a daily price request."""
    return {
        "FID_COND_MRKT_DIV_CODE": "J",
        "FID_INPUT_ISCD": code,
        "FID_INPUT_DATE_1": start,
        "FID_INPUT_DATE_2": end,
        "FID_PERIOD_DIV_CODE": "D",
        "FID_ORG_ADJ_PRC": "0" if adjusted else "1",
    }


def get_prices(fake: FakeKis, token: str, session=requests, headers=None, **params) -> requests.Response:
    """Given a FakeKis and a token, return the price answer for params."""
    return session.get(
        fake.url + PRICE_PATH,
        params=price_params(**params),
        headers=headers or kis_headers(fake, token),
        timeout=TIMEOUT,
    )


# =========================================================================== common


def test_dumps_with_decimals_writes_raw_numbers():
    text = dumps_with_decimals({"a": Decimal("242634976840.02426000"), "b": [Decimal("0E-8"), None, "가"], "c": 1})
    assert text == '{"a":242634976840.02426000,"b":[0.00000000,null,"가"],"c":1}'
    assert json.loads(text, parse_float=Decimal)["a"] == Decimal("242634976840.02426000")


def test_sliding_window_limiter_is_strict_per_key():
    now = [0.0]
    limiter = SlidingWindowLimiter(3, 1.0, clock=lambda: now[0])
    answers = []
    for moment in (0.0, 0.5, 0.75, 0.875):
        now[0] = moment
        answers.append(limiter.acquire("a"))
    assert answers == [(True, 2), (True, 1), (True, 0), (False, 0)]
    assert limiter.acquire("b") == (True, 2)
    now[0] = 0.9921875
    assert limiter.acquire("a") == (False, 0)
    now[0] = 1.0
    assert limiter.acquire("a") == (True, 0)


def test_max_requests_in_window_counts_half_open_windows():
    assert max_requests_in_window([0.0, 0.5, 0.999, 1.0, 1.5]) == 3
    assert max_requests_in_window([]) == 0


def test_inject_rejects_unknown_kind(upbit):
    with pytest.raises(ValueError):
        upbit.inject("explode")


# =========================================================================== upbit


def test_market_all_answers_shuffled_rows_with_optional_details():
    with FakeUpbit(markets=make_upbit_markets(12), rate_limit=None) as fake:
        plain = requests.get(fake.url + "/v1/market/all", timeout=TIMEOUT).json()
        detailed = requests.get(fake.url + "/v1/market/all", params={"is_details": "true"}, timeout=TIMEOUT).json()
        old_spelling = requests.get(fake.url + "/v1/market/all", params={"isDetails": "true"}, timeout=TIMEOUT).json()
    codes = [row["market"] for row in plain]
    assert sorted(codes) == sorted(row["market"] for row in make_upbit_markets(12))
    assert codes != sorted(codes)
    assert set(plain[0]) == {"market", "korean_name", "english_name"}
    assert detailed == old_spelling
    assert all(set(row["market_event"]["caution"]) >= {"PRICE_FLUCTUATIONS"} for row in detailed)


def test_make_upbit_markets_cycles_quotes():
    markets = make_upbit_markets(4)
    assert [row["market"] for row in markets] == ["KRW-C001", "BTC-C002", "USDT-C003", "KRW-C004"]
    assert markets == make_upbit_markets(4)


def test_candles_days_pages_backwards_to_the_full_history(upbit):
    expected = make_upbit_candles("KRW-BTC", DAY_ONE, LAST_DAY, gap_every=7)
    collected, to = [], None
    with requests.Session() as session:
        while True:
            params = {"market": "KRW-BTC", "count": 200, **({"to": to} if to else {})}
            page = json.loads(get_candles(upbit, session, **params).text, parse_float=Decimal)
            if not page:
                break
            starts = [row["candle_date_time_utc"] for row in page]
            assert starts == sorted(starts, reverse=True)
            assert to is None or utc(starts[0]) < utc(to[:-1])
            collected.extend(page)
            to = starts[-1] + "Z"
    assert len(collected) == len(expected) and len(expected) < (LAST_DAY - DAY_ONE).days + 1
    assert sorted(collected, key=lambda row: row["candle_date_time_utc"]) == expected


def test_candles_days_accepts_three_to_forms(upbit):
    forms = ["2025-06-24T04:56:53Z", "2025-06-24 04:56:53", "2025-06-24T13:56:53+09:00"]
    answers = [get_candles(upbit, market="BTC-ETH", count=2, to=form).json() for form in forms]
    assert answers[0] == answers[1] == answers[2]
    assert [row["candle_date_time_utc"] for row in answers[0]] == ["2025-06-24T00:00:00", "2025-06-23T00:00:00"]
    exclusive = get_candles(upbit, market="BTC-ETH", count=1, to="2025-06-24T00:00:00Z").json()
    assert exclusive[0]["candle_date_time_utc"] == "2025-06-23T00:00:00"
    assert get_candles(upbit, market="BTC-ETH", to="not-a-date").status_code == 400


def test_candles_days_cuts_count_and_defaults_to_one(upbit):
    assert len(get_candles(upbit, market="KRW-BTC", count=500).json()) == 200
    newest = get_candles(upbit, market="KRW-BTC").json()
    assert len(newest) == 1 and newest[0]["candle_date_time_utc"] == "2025-06-30T00:00:00"


def test_candles_days_answers_errors_like_upbit(upbit):
    missing = get_candles(upbit, count=1)
    assert missing.status_code == 400
    assert missing.json() == {
        "error": {"name": 400, "message": "Missing request parameter error. Check the required parameters!"}
    }
    unknown = get_candles(upbit, market="KRW-NOPE")
    assert (unknown.status_code, unknown.json()) == (404, {"error": {"name": 404, "message": "Code not found"}})
    before_listing = get_candles(upbit, market="BTC-ETH", to="2025-01-01T00:00:00Z")
    assert (before_listing.status_code, before_listing.json()) == (200, [])
    route = requests.get(upbit.url + "/v1/nothing", timeout=TIMEOUT)
    assert route.status_code == 404 and route.json()["error"]["name"] == "not_found"


def test_remove_market_makes_candles_404(upbit):
    upbit.remove_market("BTC-ETH")
    assert get_candles(upbit, market="BTC-ETH").status_code == 404
    markets = requests.get(upbit.url + "/v1/market/all", timeout=TIMEOUT).json()
    assert [row["market"] for row in markets] == ["KRW-BTC"]


def test_candles_days_writes_decimals_as_raw_numbers(upbit):
    text = get_candles(upbit, market="KRW-BTC", count=1, to="2024-01-02T00:00:00Z").text
    assert '"candle_acc_trade_price":242634976840.02426000' in text
    row = json.loads(text, parse_float=Decimal)[0]
    assert row["candle_acc_trade_price"] == BIG_TRADE_PRICE
    assert list(row)[:3] == ["market", "candle_date_time_utc", "candle_date_time_kst"]
    assert row["candle_date_time_kst"] == "2024-01-01T09:00:00"


def test_make_upbit_candles_gives_valid_days_with_gaps_and_late_timestamps():
    candles = make_upbit_candles("KRW-XRP", DAY_ONE, date(2024, 12, 31), seed=3, gap_every=5)
    days = {utc(row["candle_date_time_utc"]).date() for row in candles}
    assert date(2024, 1, 5) not in days and date(2024, 1, 4) in days
    for row in candles:
        assert row["low_price"] <= min(row["opening_price"], row["trade_price"])
        assert row["high_price"] >= max(row["opening_price"], row["trade_price"])
        assert row["low_price"] > 0 and -row["candle_acc_trade_volume"].as_tuple().exponent <= 8
    late = [
        row
        for row in candles
        if row["timestamp"]
        >= (utc(row["candle_date_time_utc"]).replace(tzinfo=timezone.utc) + timedelta(days=1)).timestamp() * 1000
    ]
    assert 0.15 < len(late) / len(candles) < 0.45
    assert any(row["change_price"] is None and row["change_rate"] == 0 for row in candles)
    assert any(row["candle_acc_trade_price"] > Decimal("1e11") for row in candles[1:])
    assert candles == make_upbit_candles("KRW-XRP", DAY_ONE, date(2024, 12, 31), seed=3, gap_every=5)


def test_rate_limit_answers_429_above_ten_per_second_per_group():
    with FakeUpbit(candles={"KRW-BTC": make_upbit_candles("KRW-BTC", DAY_ONE, LAST_DAY)}) as fake:
        start = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: get_candles(fake, market="KRW-BTC"), range(30)))
        burst_seconds = time.monotonic() - start
        statuses = [answer.status_code for answer in answers]
        market_list = requests.get(fake.url + "/v1/market/all", timeout=TIMEOUT)
        time.sleep(1.0)
        after_window = get_candles(fake, market="KRW-BTC")
    if burst_seconds < 0.9:
        assert statuses.count(200) == 10 and statuses.count(429) == 20
    assert max_requests_in_window([r.time for r in fake.requests if r.status == 200 and r.path == CANDLES_PATH]) <= 10
    rejected = answers[statuses.index(429)]
    assert rejected.text == "Too many API requests." and rejected.headers["Content-Type"].startswith("text/plain")
    assert rejected.headers["Remaining-Req"] == "group=candles; min=600; sec=0"
    assert market_list.status_code == 200 and market_list.headers["Remaining-Req"] == "group=market; min=600; sec=9"
    assert after_window.status_code == 200 and after_window.headers["limit-by-ip"] == "Yes"


def test_rate_limit_puts_origin_requests_in_a_ten_second_group(upbit):
    with FakeUpbit(candles={"KRW-BTC": make_upbit_candles("KRW-BTC", DAY_ONE, LAST_DAY)}) as fake:
        origin = {"Origin": "https://example.test"}
        first = requests.get(fake.url + CANDLES_PATH, params={"market": "KRW-BTC"}, headers=origin, timeout=TIMEOUT)
        second = requests.get(fake.url + CANDLES_PATH, params={"market": "KRW-BTC"}, headers=origin, timeout=TIMEOUT)
        plain = get_candles(fake, market="KRW-BTC")
    assert (first.status_code, second.status_code, plain.status_code) == (200, 429, 200)


def test_block_after_429s_switches_to_418_until_unblocked():
    with FakeUpbit(markets=make_upbit_markets(2), rate_limit=1, block_after_429s=3) as fake:
        statuses = [requests.get(fake.url + "/v1/market/all", timeout=TIMEOUT).status_code for _ in range(6)]
        blocked = requests.get(fake.url + "/v1/market/all", timeout=TIMEOUT)
        fake.set_blocked(False)
        time.sleep(1.0)
        unblocked = requests.get(fake.url + "/v1/market/all", timeout=TIMEOUT)
        fake.set_blocked(True)
        reblocked = requests.get(fake.url + "/v1/market/all", timeout=TIMEOUT)
    assert statuses == [200, 429, 429, 429, 418, 418]
    assert blocked.status_code == 418 and "60 seconds" in blocked.text
    assert unblocked.status_code == 200
    assert "120 seconds" in reblocked.text
    assert fake.count(status=418) == 4 and fake.count("/v1/market/all", 429) == 3


def test_latency_does_not_serialize_concurrent_requests(upbit):
    upbit.latency = 0.3
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda _: get_candles(upbit, market="KRW-BTC").status_code, range(16)))
    assert statuses == [200] * 16
    # served one after the other, each request would arrive at least 0.3 s after the one before
    assert max_requests_in_window([request.time for request in upbit.requests], window=0.3) > 1


def test_keep_alive_sessions_survive_many_concurrent_requests(upbit):
    def worker(_):
        with requests.Session() as session:
            return [get_candles(upbit, session, market="KRW-BTC", count=5).status_code for _ in range(20)]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(worker, range(16)))
    assert all(status == 200 for statuses in results for status in statuses)
    assert upbit.count(CANDLES_PATH, 200) == 320


@pytest.mark.parametrize(
    ("kind", "status", "content_type", "body"),
    [
        ("500", 500, "application/json", None),
        ("503", 503, "text/html", None),
        ("malformed_json", 200, "application/json", '[{"market": '),
        ("wrong_content_type", 200, "text/html", "<html>oops</html>"),
        ("empty", 200, "application/json", "[]"),
    ],
)
def test_inject_answers_fault_once(upbit, kind, status, content_type, body):
    upbit.inject(kind)
    faulty = get_candles(upbit, market="KRW-BTC")
    normal = get_candles(upbit, market="KRW-BTC")
    assert faulty.status_code == status and faulty.headers["Content-Type"].startswith(content_type)
    assert body is None or faulty.text == body
    assert normal.status_code == 200 and len(normal.json()) == 1
    assert [record.fault for record in upbit.requests] == [kind, None]


def test_inject_truncated_breaks_the_body(upbit):
    upbit.inject("truncated")
    with requests.Session() as session:
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            get_candles(upbit, session, market="KRW-BTC", count=50)
        assert get_candles(upbit, session, market="KRW-BTC").status_code == 200


def test_inject_reset_drops_the_connection(upbit):
    with requests.Session() as session:
        assert get_candles(upbit, session, market="KRW-BTC").status_code == 200
        upbit.inject("reset")
        with pytest.raises(requests.exceptions.ConnectionError):
            get_candles(upbit, session, market="KRW-BTC")
        assert get_candles(upbit, session, market="KRW-BTC").status_code == 200
    assert [record.status for record in upbit.requests] == [200, None, 200]


def test_inject_timeout_outlasts_the_client_timeout(upbit):
    upbit.inject("timeout", seconds=0.6)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(upbit.url + CANDLES_PATH, params={"market": "KRW-BTC"}, timeout=0.2)
    assert get_candles(upbit, market="KRW-BTC").status_code == 200


def test_inject_stuck_cursor_ignores_to_and_match_filters(upbit):
    upbit.inject("stuck_cursor", count=2, match=lambda request: request.query.get("market") == "KRW-BTC")
    other = get_candles(upbit, market="BTC-ETH", count=1, to="2025-06-10T00:00:00Z").json()
    stuck = [
        get_candles(upbit, market="KRW-BTC", count=3, to=to).json()
        for to in ("2025-01-01T00:00:00Z", "2024-06-01T00:00:00Z")
    ]
    moved = get_candles(upbit, market="KRW-BTC", count=3, to="2024-06-01T00:00:00Z").json()
    assert other[0]["candle_date_time_utc"] == "2025-06-09T00:00:00"
    assert stuck[0] == stuck[1] and stuck[0][0]["candle_date_time_utc"] == "2025-06-30T00:00:00"
    assert moved[0]["candle_date_time_utc"] == "2024-05-31T00:00:00"
    assert upbit.pending_faults() == 0


# =========================================================================== kis tokens


def test_token_issue_answers_bearer_with_kst_expiry(kis, clock):
    answer = issue_token(kis)
    body = answer.json()
    assert answer.status_code == 200 and body["token_type"] == "Bearer" and body["expires_in"] == 86400
    assert body["access_token_token_expired"] == "2025-07-02 09:00:00"
    assert kis.tokens_issued == 1


def test_token_issue_rejects_wrong_app_key(kis):
    body = {"grant_type": "client_credentials", "appkey": "wrong", "appsecret": kis.app_secret}
    answer = requests.post(kis.url + "/oauth2/tokenP", json=body, timeout=TIMEOUT)
    assert answer.status_code == 403 and answer.json()["error_code"] == "EGW00103"
    assert kis.tokens_issued == 0


def test_token_issue_is_throttled_per_minute(kis, clock):
    first = issue_token(kis)
    clock.advance(59)
    throttled = issue_token(kis)
    clock.advance(1)
    later = issue_token(kis)
    assert throttled.status_code == 403
    assert throttled.json() == {
        "error_code": "EGW00133",
        "error_description": "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)",
    }
    assert later.status_code == 200 and later.json()["access_token"] != first.json()["access_token"]
    assert kis.tokens_issued == 2


def test_token_issue_reuses_recent_token_when_configured(clock):
    with FakeKis(now=clock, token_reuse_seconds=6 * 3600) as fake:
        first = issue_token(fake).json()["access_token"]
        clock.advance(3600)
        again = issue_token(fake).json()["access_token"]
        fake.expire_tokens()
        clock.advance(3600)
        fresh = issue_token(fake).json()["access_token"]
    assert first == again != fresh


def test_revoke_makes_token_invalid(kis):
    token = issue_token(kis).json()["access_token"]
    body = {"appkey": kis.app_key, "appsecret": kis.app_secret, "token": token}
    revoked = requests.post(kis.url + "/oauth2/revokeP", json=body, timeout=TIMEOUT)
    assert revoked.json()["code"] == 200
    assert get_prices(kis, token).json()["msg_cd"] == "EGW00121"


# =========================================================================== kis prices


def test_prices_answer_newest_first_pages_of_100(kis):
    token = issue_token(kis).json()["access_token"]
    answer = get_prices(kis, token)
    body = answer.json()
    dates = [row["stck_bsop_date"] for row in body["output2"]]
    assert answer.status_code == 200 and body["rt_cd"] == "0" and body["msg_cd"] == "MCA00000"
    assert body["msg1"].startswith("정상처리 되었습니다.") and body["msg1"].endswith("  ")
    assert len(dates) == 100 and dates == sorted(dates, reverse=True) and dates[0] == "20250630"
    assert body["output1"]["stck_prpr"] == body["output2"][0]["stck_clpr"]
    assert all(isinstance(value, str) for row in body["output2"] for value in row.values())


def test_prices_page_backwards_to_all_weekdays(kis):
    token = issue_token(kis).json()["access_token"]
    collected, end = [], "20250630"
    with requests.Session() as session:
        while True:
            rows = get_prices(kis, token, session, end=end).json()["output2"]
            collected.extend(rows)
            if len(rows) < 100:
                break
            oldest = datetime.strptime(rows[-1]["stck_bsop_date"], "%Y%m%d").date()
            end = (oldest - timedelta(days=1)).strftime("%Y%m%d")
    days = [datetime.strptime(row["stck_bsop_date"], "%Y%m%d").date() for row in collected]
    assert len(days) == len(set(days)) == len(kis.series("005930"))
    assert all(day.weekday() < 5 for day in days) and date(2024, 2, 9) not in days
    assert min(days) == date(2024, 1, 1)


def test_prices_answer_inclusive_date_range(kis):
    token = issue_token(kis).json()["access_token"]
    rows = get_prices(kis, token, start="20250623", end="20250627").json()["output2"]
    assert [row["stck_bsop_date"] for row in rows] == ["20250627", "20250626", "20250625", "20250624", "20250623"]


@pytest.mark.parametrize(
    ("overrides", "msg_cd"),
    [
        ({"tr_id": None}, "OPSQ0002"),
        ({"tr_id": "FHKST01010400"}, "OPSQ0002"),
        ({"custtype": None}, "EGW00208"),
        ({"appkey": "other"}, "EGW00103"),
        ({"appsecret": None}, "EGW00104"),
        ({"authorization": None}, "EGW00205"),
        ({"authorization": "Bearer not-a-token"}, "EGW00121"),
    ],
)
def test_prices_reject_bad_headers_with_http_500(kis, overrides, msg_cd):
    token = issue_token(kis).json()["access_token"]
    answer = get_prices(kis, token, headers=kis_headers(kis, token, **overrides))
    assert answer.status_code == 500 and answer.json()["rt_cd"] == "1" and answer.json()["msg_cd"] == msg_cd


def test_prices_reject_expired_tokens(kis, clock):
    token = issue_token(kis).json()["access_token"]
    clock.advance(86400)
    by_time = get_prices(kis, token)
    clock.advance(60)
    fresh = issue_token(kis).json()["access_token"]
    kis.expire_tokens()
    by_call = get_prices(kis, fresh)
    expected = {"rt_cd": "1", "msg_cd": "EGW00123", "msg1": "기간이 만료된 token 입니다."}
    assert (by_time.status_code, by_time.json()) == (500, expected)
    assert (by_call.status_code, by_call.json()) == (500, expected)


def test_prices_reject_bad_parameters_with_rt_cd(kis):
    token = issue_token(kis).json()["access_token"]
    answer = get_prices(kis, token, end="2025-06-30")
    assert answer.status_code == 200 and answer.json()["rt_cd"] == "1"
    assert "FID_INPUT_DATE_2" in answer.json()["msg1"]


def test_prices_rate_limit_answers_egw00201(clock):
    rows = make_kis_rows("005930", date(2025, 6, 1), LAST_DAY)
    with FakeKis(prices={"005930": rows}, now=clock) as fake:
        token = issue_token(fake).json()["access_token"]
        start = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: get_prices(fake, token), range(30)))
        burst_seconds = time.monotonic() - start
    codes = [answer.json()["msg_cd"] for answer in answers]
    limited = answers[codes.index("EGW00201")]
    assert limited.status_code == 500 and limited.json() == {
        "rt_cd": "1",
        "msg_cd": "EGW00201",
        "msg1": "초당 거래건수를 초과하였습니다.",
    }
    if burst_seconds < 0.9:
        assert codes.count("MCA00000") == 18


def test_prices_unknown_code_answers_zero_price(kis):
    token = issue_token(kis).json()["access_token"]
    body = get_prices(kis, token, code="999999").json()
    assert body["rt_cd"] == "0" and body["output1"]["stck_prpr"] == "0" and body["output2"] == []


def test_prices_pad_empty_and_duplicate_rows_options(clock):
    rows = make_kis_rows("005930", date(2025, 6, 1), LAST_DAY)
    with FakeKis(prices={"005930": rows}, now=clock, pad_empty=True, duplicate_rows=True) as fake:
        token = issue_token(fake).json()["access_token"]
        page = get_prices(fake, token).json()["output2"]
    assert page[-2:] == [{}, {}]
    assert page[0] == page[1] and len(page) == len(rows) + 3


def test_apply_split_changes_only_the_adjusted_series(kis):
    token = issue_token(kis).json()["access_token"]
    original_before = get_prices(kis, token, start="20250610", end="20250613", adjusted=False).json()["output2"]
    kis.apply_split("005930", date(2025, 6, 12), 50)
    adjusted = {
        row["stck_bsop_date"]: row for row in get_prices(kis, token, start="20250610", end="20250613").json()["output2"]
    }
    original = {
        row["stck_bsop_date"]: row
        for row in get_prices(kis, token, start="20250610", end="20250613", adjusted=False).json()["output2"]
    }
    before = {row["stck_bsop_date"]: row for row in original_before}
    assert int(adjusted["20250611"]["stck_clpr"]) == round(int(before["20250611"]["stck_clpr"]) / 50)
    assert int(adjusted["20250611"]["acml_vol"]) == int(before["20250611"]["acml_vol"]) * 50
    assert adjusted["20250613"] == original["20250613"] == before["20250613"]
    assert original["20250611"] == before["20250611"]
    assert adjusted["20250612"]["mod_yn"] == "Y" and adjusted["20250612"]["flng_cls_code"] != "00"
    change = int(adjusted["20250612"]["stck_clpr"]) - int(adjusted["20250611"]["stck_clpr"])
    assert adjusted["20250612"]["prdy_vrss"] == str(change)


def test_inject_stuck_cursor_ignores_date_2(kis):
    token = issue_token(kis).json()["access_token"]
    kis.inject("stuck_cursor")
    stuck = get_prices(kis, token, end="20240630").json()["output2"]
    assert stuck[0]["stck_bsop_date"] == "20250630"


def test_inject_empty_answers_no_rows(kis):
    token = issue_token(kis).json()["access_token"]
    kis.inject("empty", match=lambda request: request.path == PRICE_PATH)
    body = get_prices(kis, token).json()
    assert body["rt_cd"] == "0" and body["output2"] == []


def test_make_kis_rows_gives_weekdays_with_valid_integer_ohlc():
    rows = make_kis_rows("000660", date(2025, 1, 1), date(2025, 3, 31), seed=1, holidays={date(2025, 1, 28)})
    days = [datetime.strptime(row["stck_bsop_date"], "%Y%m%d").date() for row in rows]
    assert all(day.weekday() < 5 for day in days) and date(2025, 1, 28) not in days
    for previous, row in zip(rows, rows[1:], strict=False):
        low, high = int(row["stck_lwpr"]), int(row["stck_hgpr"])
        assert (
            low
            <= min(int(row["stck_oprc"]), int(row["stck_clpr"]))
            <= max(int(row["stck_oprc"]), int(row["stck_clpr"]))
            <= high
        )
        assert int(row["prdy_vrss"]) == int(row["stck_clpr"]) - int(previous["stck_clpr"])


# =========================================================================== kis master files


KOSPI_REFERENCE_WIDTHS = (
    "2,1,4,4,4, 1,1,1,1,1, 1,1,1,1,1, 1,1,1,1,1, 1,1,1,1,1, 1,1,1,1,1, 1,9,5,5,1, 1,1,2,1,1, 1,2,2,2,3, "
    "1,3,12,12,8, 15,21,2,7,1, 1,1,1,1,9, 9,9,5,9,8, 9,3,1,1,1"
)
KOSDAQ_REFERENCE_WIDTHS = (
    "2,1, 4,4,4,1,1, 1,1,1,1,1, 1,1,1,1,1, 1,1,1,1,1, 1,1,1,1,9, 5,5,1,1,1, 2,1,1,1,2, 2,2,3,1,3, "
    "12,12,8,15,21, 2,7,1,1,1, 1,9,9,9,5, 9,8,9,3,1, 1,1"
)


@pytest.mark.parametrize(
    ("market", "widths", "offsets"),
    [
        (
            "kospi",
            KOSPI_REFERENCE_WIDTHS,
            {"그룹코드": 61, "거래정지": 121, "정리매매": 122, "관리종목": 123, "상장일자": 166},
        ),
        (
            "kosdaq",
            KOSDAQ_REFERENCE_WIDTHS,
            {"그룹코드": 61, "거래정지": 116, "정리매매": 117, "관리종목": 118, "상장일자": 161},
        ),
    ],
)
def test_master_field_slices_match_reference_layout(market, widths, offsets):
    slices = master_field_slices(market)
    tail = list(slices.values())[3:]
    assert [part.stop - part.start for part in tail] == [int(width) for width in widths.split(",")]
    assert {name: slices[name].start for name in offsets} == offsets
    assert slices["상장주수"].start == offsets["상장일자"] + 8


def test_master_answers_404_until_set(kis):
    assert requests.get(kis.master_url + "/kospi_code.mst.zip", timeout=TIMEOUT).status_code == 404
    kis.set_master("kospi", build_master_zip("kospi", []))
    assert requests.get(kis.master_url + "/kospi_code.mst.zip", timeout=TIMEOUT).status_code == 200
    assert requests.get(kis.master_url + "/kosdaq_code.mst.zip", timeout=TIMEOUT).status_code == 404


@pytest.mark.parametrize("market", ["kospi", "kosdaq", "konex"])
def test_build_master_zip_rows_parse_back(kis, market):
    long_name = "A" + "가" * 25  # 51 bytes: the cut at byte 40 splits a character
    rows = [
        build_master_row(
            market, "005930", "KR7005930003", "삼성전자", "ST", trading_halt=True, listing_date="19750611"
        ),
        build_master_row(market, "F70101786", "KRF701017860", long_name, "BC"),
        build_master_row(market, "00680K", "KR700680K003", "미래에셋증권2우B", "ST", length_override=100),
    ]
    kis.set_master(market, build_master_zip(market, rows))
    answer = requests.get(f"{kis.master_url}/{market}_code.mst.zip", timeout=TIMEOUT)
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        assert archive.namelist() == [f"{market}_code.mst"]
        lines = archive.read(f"{market}_code.mst").split(b"\n")
    fields = master_field_slices(market)
    good, cut, bad = lines[0], lines[1], lines[2]
    assert len(good) == len(cut) == {"kospi": 288, "kosdaq": 282, "konex": 245}[market] and len(bad) == 100
    assert good[fields["단축코드"]].decode().strip() == "005930" and good[fields["표준코드"]] == b"KR7005930003"
    assert good[fields["한글명"]].decode("cp949").strip() == "삼성전자"
    assert (
        good[fields["그룹코드"]] == b"ST"
        and good[fields["거래정지"]] == b"Y"
        and good[fields["상장일자"]] == b"19750611"
    )
    assert cut[fields["단축코드"]] == b"F70101786" and cut[fields["그룹코드"]] == b"BC"
    with pytest.raises(UnicodeDecodeError):
        cut[fields["한글명"]].decode("cp949")
    assert cut[fields["한글명"]].decode("cp949", errors="ignore") == "A" + "가" * 19


def test_build_master_row_rejects_unknown_field_and_oversized_value():
    with pytest.raises(ValueError):
        build_master_row("kosdaq", "005930", "KR7005930003", "삼성전자", KOSPI50="Y")
    with pytest.raises(ValueError):
        build_master_row("kospi", "0059300000", "KR7005930003", "삼성전자")
