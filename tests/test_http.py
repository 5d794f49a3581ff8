"""The HTTP client's fault handling, and the fault matrix of both exchanges through the real CLI.

Decisions (docs/reliability.md's fault table is built from the matrix below):
- A fault that goes away within the retries (5xx bursts, unreadable or cut
  answers, resets, timeouts, 429 / EGW00201 storms) costs nothing: exit 0, every row.
- A fault that persists fails that symbol only, with the reason on stderr and
  no row of it written; the other symbols are stored exactly; exit 1.
- A page that does not move the paging cursor back fails its symbol at once.
- An empty page is the exchange saying "no more data"; after a full page it is
  asked for again once, so a one-off empty answer cannot cut a history short.
- Upbit's 418 (blocked), an exchange that never answers (connection refused),
  and a KIS token that cannot be had stop that exchange's run at once: exit 1.
"""

import contextlib
import re
from datetime import date, timedelta

import pytest
import requests

from tests.conftest import run_cli
from tests.fakes.kis_server import FakeKis
from tests.fakes.upbit_server import FakeUpbit, make_upbit_candles
from tests.fault_support import (
    CANDLES_PATH,
    KIS_PRICES_PATH,
    UPBIT_START,
    Scenario,
    for_code,
    for_code_page_2,
    for_market,
    for_market_page_2,
    fresh_database,
    install_kis,
    install_upbit,
    kis_rows,
    run_concurrently,
    symbol_rows,
    upbit_rows,
    upbit_symbol,
)
from tests.kis_support import MASTERS, expected_prices, install_masters, install_prices, kis_env, kis_prices
from tests.ops_support import closed_port_url
from wombat_collect.collectors import kis, kis_master, upbit
from wombat_collect.collectors.kis_token import TokenUnavailable
from wombat_collect.config import load_settings
from wombat_collect.errors import ExchangeError
from wombat_collect.http import MAX_JSON_BYTES, ExchangeUnreachable, HttpClient
from wombat_collect.ratelimit import THROTTLED_MARGIN_STEP, RateLimiter

TIMEOUT = "4"  # WOMBAT_HTTP_TIMEOUT of the matrix runs: ample for an answer on a busy machine
STALL_SECONDS = 10.0  # how long a "timeout" fault keeps the answer back: well past TIMEOUT
WORKERS = "16"  # every symbol of a run in flight at once
UPBIT_CLEAN = ("KRW-BTC", "BTC-ETH", "USDT-XRP")
KIS_CLEAN = ("005930", "069500", "035720")

# symbol -> (fault kind, how many answers get it, only pages after the first?)
UPBIT_RECOVERING = {
    "KRW-T500": ("500", 3, False), "KRW-T503": ("503", 3, False), "KRW-TMAL": ("malformed_json", 2, False),
    "KRW-TTRU": ("truncated", 2, False), "KRW-TCT": ("wrong_content_type", 2, False),
    "KRW-TRST": ("reset", 2, False), "KRW-TTMO": ("timeout", 1, False), "KRW-TEMP": ("empty", 1, True),
}
UPBIT_FAILING = {
    "KRW-P500": "500", "KRW-P503": "503", "KRW-PMAL": "malformed_json", "KRW-PTRU": "truncated",
    "KRW-PCT": "wrong_content_type", "KRW-PRST": "reset", "KRW-PTMO": "timeout", "KRW-PSTK": "stuck_cursor",
}
KIS_RECOVERING = {
    "T00500": ("500", 3, False), "T00503": ("503", 3, False), "TMALF0": ("malformed_json", 2, False),
    "TTRUNC": ("truncated", 2, False), "TCTYPE": ("wrong_content_type", 2, False),
    "TRESET": ("reset", 2, False), "TTMOUT": ("timeout", 1, False), "TEMPTY": ("empty", 1, True),
}
KIS_FAILING = {
    "P00500": "500", "P00503": "503", "PMALF0": "malformed_json", "PTRUNC": "truncated",
    "PCTYPE": "wrong_content_type", "PRESET": "reset", "PTMOUT": "timeout", "PSTUCK": "stuck_cursor",
}
# what the operator reads for each persistent fault: "prices <exchange> <symbol> failed: <reason>"
FAILURE_REASONS = {
    "upbit": {
        "500": "upbit: HTTP 500: Internal server error (gave up after retries)",
        "503": "upbit: HTTP 503: <html> <head><title>503 Service Temporarily Unavailable</title></head>",
        "malformed_json": 'upbit: non-JSON answer (application/json; charset=utf-8): [{"market": '
                          "(gave up after retries)",
        "truncated": "upbit: answer cut short (connection closed mid-body) (gave up after retries)",
        "wrong_content_type": "upbit: non-JSON answer (text/html; charset=utf-8): <html>oops</html> "
                              "(gave up after retries)",
        "reset": "upbit: connection reset by the server (gave up after retries)",
        "timeout": f"upbit: no answer within {TIMEOUT}s (read timeout) (gave up after retries)",
        "stuck_cursor": "upbit: candles of KRW-PSTK did not move back past",
    },
    "kis": {
        "500": "kis: HTTP 500: EGW00002 서버 에러가 발생했습니다. (gave up after retries)",
        "503": "kis: HTTP 503, not JSON (text/html; charset=utf-8): <html> <head><title>503 Service",
        "malformed_json": 'kis: HTTP 200, not JSON (application/json; charset=utf-8): {"output1":',
        "truncated": "kis: answer cut short (connection closed mid-body) (gave up after retries)",
        "wrong_content_type": "kis: HTTP 200, not JSON (text/html; charset=utf-8): <html>oops</html> "
                              "(gave up after retries)",
        "reset": "kis: connection reset by the server (gave up after retries)",
        "timeout": f"kis: no answer within {TIMEOUT}s (read timeout) (gave up after retries)",
        "stuck_cursor": "kis: prices of PSTUCK did not move back past",
    },
}


def no_sleep(seconds):
    """A sleep that returns at once: back-offs cost no time in the client's unit tests."""


# --------------------------------------------------------------------------- the client, on loopback


def upbit_client(url):
    """Given a base URL, return an Upbit HttpClient whose back-offs and pacing do not wait."""
    limiters = {group: RateLimiter(1000, sleep=no_sleep) for group in upbit.GROUPS}
    return HttpClient("upbit", url, limiters, upbit.classify, 2.0, sleep=no_sleep)


@pytest.mark.parametrize(("kind", "reason"), [
    ("reset", "connection reset by the server"),
    ("truncated", "answer cut short (connection closed mid-body)"),
    ("timeout", "no answer within 0.2s (read timeout)"),
    ("malformed_json", 'non-JSON answer (application/json; charset=utf-8): [{"market":'),
], ids=["reset", "truncated", "timeout", "malformed_json"])
def test_request_json_gives_up_with_a_plain_reason(fake_upbit, kind, reason):
    fake_upbit.set_candles("KRW-BTC", make_upbit_candles("KRW-BTC", date(2025, 1, 1), date(2025, 1, 3)))
    client = upbit_client(fake_upbit.url)
    client.timeout = (5.0, 0.2)
    client.request_json("GET", CANDLES_PATH, "candles", params={"market": "KRW-BTC", "count": 1})  # it answers
    fake_upbit.inject(kind, count=5, seconds=0.5)
    with pytest.raises(ExchangeError) as raised:
        client.request_json("GET", CANDLES_PATH, "candles", params={"market": "KRW-BTC", "count": 1})
    assert str(raised.value) == f"upbit: {reason} (gave up after retries)"
    assert not isinstance(raised.value, ExchangeUnreachable)
    assert fake_upbit.count() == 1 + 5


def test_request_json_host_that_never_answers_is_unreachable():
    url = closed_port_url().split("/ping")[0]
    with pytest.raises(ExchangeUnreachable) as raised:
        upbit_client(url).request_json("GET", CANDLES_PATH, "candles", params={"market": "KRW-BTC"})
    assert str(raised.value) == f"upbit: cannot reach {url}: connection refused (gave up after 5 attempts)"


def test_request_json_three_silent_give_ups_in_a_row_mean_unreachable(fake_upbit):
    fake_upbit.set_candles("KRW-BTC", make_upbit_candles("KRW-BTC", date(2025, 1, 1), date(2025, 1, 3)))
    client = upbit_client(fake_upbit.url)
    client.request_json("GET", CANDLES_PATH, "candles", params={"market": "KRW-BTC", "count": 1})
    fake_upbit.inject("reset", count=15)
    outcomes = []
    for _ in range(3):
        with pytest.raises(ExchangeError) as raised:
            client.request_json("GET", CANDLES_PATH, "candles", params={"market": "KRW-BTC", "count": 1})
        outcomes.append(type(raised.value).__name__)
    assert outcomes == ["ExchangeError", "ExchangeError", "ExchangeUnreachable"]


def test_request_json_an_answer_between_silent_give_ups_resets_the_count(fake_upbit):
    fake_upbit.set_candles("KRW-BTC", make_upbit_candles("KRW-BTC", date(2025, 1, 1), date(2025, 1, 3)))
    client = upbit_client(fake_upbit.url)
    params = {"market": "KRW-BTC", "count": 1}
    client.request_json("GET", CANDLES_PATH, "candles", params=params)
    for _ in range(3):
        fake_upbit.inject("reset", count=5)
        with pytest.raises(ExchangeError) as raised:
            client.request_json("GET", CANDLES_PATH, "candles", params=params)
        assert not isinstance(raised.value, ExchangeUnreachable)
        client.request_json("GET", CANDLES_PATH, "candles", params=params)


def test_request_json_persistent_429_gives_up_after_bounded_retries():
    with FakeUpbit(rate_limit=0) as always_throttled:
        client = upbit_client(always_throttled.url)
        with pytest.raises(ExchangeError) as raised:
            client.request_json("GET", CANDLES_PATH, "candles", params={"market": "KRW-BTC"})
        assert always_throttled.count(status=429) == 9  # 1 + MAX_THROTTLE_RETRIES
    assert str(raised.value) == "upbit: HTTP 429: Too many API requests. (gave up after retries)"
    assert client.counters["throttled"] == 8


def test_request_json_each_429_spaces_later_requests_wider():
    with FakeUpbit(rate_limit=0) as always_throttled:
        client = upbit_client(always_throttled.url)
        client.limiters["candles"] = limiter = RateLimiter(1000, margin=1.0)
        with pytest.raises(ExchangeError):
            client.request_json("GET", CANDLES_PATH, "candles", params={"market": "KRW-BTC"})
        refused = always_throttled.count(status=429)
    assert refused == 9
    assert limiter.margin == pytest.approx(1.0 - refused * THROTTLED_MARGIN_STEP)


def test_request_json_persistent_egw00201_gives_up_after_bounded_retries():
    with FakeKis(rate_limit=0) as always_throttled:
        limiters = {kis.PRICES_GROUP: RateLimiter(1000, sleep=no_sleep)}
        client = HttpClient("kis", always_throttled.url, limiters, kis.classify, 2.0, sleep=no_sleep)
        with pytest.raises(ExchangeError) as raised:
            client.request_json("GET", KIS_PRICES_PATH, kis.PRICES_GROUP, params={"FID_INPUT_ISCD": "005930"},
                                headers={"appkey": always_throttled.app_key})
        assert always_throttled.count(KIS_PRICES_PATH, status=500) == 9
    assert str(raised.value) == "kis: HTTP 500: EGW00201 over the rate limit (gave up after retries)"


def test_get_bytes_names_a_refused_download_plainly():
    url = closed_port_url().split("/ping")[0]
    client = HttpClient("kis", url, {"master": RateLimiter(1000, sleep=no_sleep)}, kis.classify, 2.0,
                        sleep=no_sleep)
    with pytest.raises(ExchangeError, match=r"^kis: cannot download .*/kospi_code.mst.zip: connection refused$"):
        client.get_bytes(f"{url}/kospi_code.mst.zip", "master", 1024)


def kis_client(fake, state_dir):
    """Given a FakeKis, return a KIS client as the CLI opens it (token cache in `state_dir`)."""
    return kis.open_client(load_settings({
        "KIS_API_URL": fake.url, "KIS_MASTER_URL": fake.master_url, "KIS_APP_KEY": fake.app_key,
        "KIS_APP_SECRET": fake.app_secret, "WOMBAT_STATE_DIR": str(state_dir), "KIS_RATE_LIMIT": "200",
        "WOMBAT_HTTP_TIMEOUT": "3"}))


def redirect_refusal(port, status):
    return f"HTTP {status} redirect to 127.0.0.1:{port} refused (redirects are never followed)"


def test_request_json_never_follows_a_redirect_and_does_not_retry(fake_upbit):
    fake_upbit.set_candles("KRW-BTC", make_upbit_candles("KRW-BTC", date(2025, 1, 1), date(2025, 1, 3)))
    with FakeUpbit(rate_limit=None) as other:
        other.set_candles("KRW-BTC", make_upbit_candles("KRW-BTC", date(2025, 1, 1), date(2025, 1, 3)))
        fake_upbit.inject("redirect", count=5, location=f"http://user:pw@127.0.0.1:{other.port}")
        with pytest.raises(ExchangeError) as raised:
            upbit_client(fake_upbit.url).request_json("GET", CANDLES_PATH, "candles", params={"market": "KRW-BTC"})
        assert other.requests == []
        port = other.port
    assert str(raised.value) == f"upbit: {redirect_refusal(port, 302)}"
    assert fake_upbit.count() == 1


def test_request_json_kis_key_and_secret_never_follow_a_redirect(tmp_path):
    with FakeKis(rate_limit=None) as fake, FakeKis(rate_limit=None) as other:
        install_prices(fake, ["005930"])
        client = kis_client(fake, tmp_path)
        fake.inject("redirect", count=5, location=other.url, match=for_code("005930"))
        with pytest.raises(ExchangeError) as raised:
            list(kis.fetch_daily_candles(client, "005930", date(2024, 6, 1)))
        assert other.requests == []  # no appkey / appsecret / authorization header went there
        assert fake.count(KIS_PRICES_PATH) == 1
        port = other.port
    assert str(raised.value) == f"kis: {redirect_refusal(port, 302)}"


def test_request_json_token_request_never_follows_a_307(tmp_path):
    with FakeKis(rate_limit=None) as fake, FakeKis(rate_limit=None) as other:
        client = kis_client(fake, tmp_path)
        fake.inject("redirect", count=5, location=other.url)
        with pytest.raises(TokenUnavailable) as raised:
            client.authenticator.token()
        assert [request.body for request in other.requests] == []  # the JSON body with key and secret stayed
        assert other.tokens_issued == 0 and fake.count("/oauth2/tokenP") == 1
        port = other.port
    assert str(raised.value) == f"kis token: {redirect_refusal(port, 307)}"


def test_get_bytes_never_follows_a_redirect(tmp_path):
    with FakeKis(rate_limit=None) as fake, FakeKis(rate_limit=None) as other:
        install_masters(fake)
        install_masters(other)
        fake.inject("redirect", count=5, location=other.url)
        with pytest.raises(ExchangeError) as raised:
            list(kis.fetch_symbols(kis_client(fake, tmp_path), "KOSPI"))
        assert other.requests == [] and fake.count() == 1
        port, master_url = other.port, fake.master_url
    assert str(raised.value) == (f"kis: cannot download {master_url}/kospi_code.mst.zip: "
                                 f"{redirect_refusal(port, 302)}")


@pytest.mark.parametrize(("kind", "reason"), [
    ("oversized", f"answer of {MAX_JSON_BYTES + 1:,} bytes is over the {MAX_JSON_BYTES:,}-byte cap (refused)"),
    ("oversized_unsized", f"answer is over the {MAX_JSON_BYTES:,}-byte cap (refused)"),
], ids=["with_length", "without_length"])
def test_request_json_oversized_answer_fails_at_once(fake_upbit, kind, reason):
    fake_upbit.inject(kind, count=5, size=MAX_JSON_BYTES + 1)
    with pytest.raises(ExchangeError) as raised:
        upbit_client(fake_upbit.url).request_json("GET", CANDLES_PATH, "candles", params={"market": "KRW-BTC"})
    assert str(raised.value) == f"upbit: {reason}"
    assert fake_upbit.count() == 1


def test_request_json_answer_at_the_cap_is_read(fake_upbit):
    fake_upbit.inject("oversized_unsized", size=MAX_JSON_BYTES)
    client = upbit_client(fake_upbit.url)
    assert client.request_json("GET", CANDLES_PATH, "candles", params={"market": "KRW-BTC"}) == []


@pytest.mark.parametrize("kind", ["oversized", "oversized_unsized"])
def test_get_bytes_oversized_master_zip_fails_at_once(tmp_path, kind):
    with FakeKis(rate_limit=None) as fake:
        install_masters(fake)
        fake.inject(kind, count=5, size=kis_master.MAX_ZIP_BYTES + 1)
        with pytest.raises(ExchangeError, match=r"^kis: cannot download .*/kospi_code.mst.zip: answer .*over the "
                                                r"33,554,432-byte cap \(refused\)$"):
            list(kis.fetch_symbols(kis_client(fake, tmp_path), "KOSPI"))
        assert fake.count() == 1


def test_request_json_trickling_server_is_cut_at_the_total_deadline(fake_upbit, caplog):
    fake_upbit.set_candles("KRW-BTC", make_upbit_candles("KRW-BTC", date(2025, 1, 1), date(2025, 1, 3)))
    client = upbit_client(fake_upbit.url)
    client.timeout = (5.0, 1.0)  # each byte comes well within the read timeout; the whole never within 2s
    fake_upbit.inject("trickle", count=1, seconds=0.05)
    with caplog.at_level("DEBUG", logger="wombat_collect.http"):
        page = client.request_json("GET", CANDLES_PATH, "candles", params={"market": "KRW-BTC", "count": 3})
    assert len(page) == 3 and client.counters["retried"] == 1
    assert [record.fault for record in fake_upbit.requests] == ["trickle", None]
    assert any("upbit: answer not complete within 2s (total deadline), backing off" in record.getMessage()
               for record in caplog.records)


def test_request_json_deeply_nested_json_is_a_non_json_answer(fake_upbit):
    fake_upbit.inject("deep_json", count=5)
    with pytest.raises(ExchangeError) as raised:
        upbit_client(fake_upbit.url).request_json("GET", CANDLES_PATH, "candles", params={"market": "KRW-BTC"})
    assert str(raised.value).startswith("upbit: non-JSON answer (application/json; charset=utf-8): [[[[")
    assert str(raised.value).endswith("… (gave up after retries)")


def test_request_json_hostile_error_message_stays_on_one_line(fake_upbit):
    fake_upbit.inject("hostile_message")
    with pytest.raises(ExchangeError) as raised:
        upbit_client(fake_upbit.url).request_json("GET", CANDLES_PATH, "candles", params={"market": "KRW-BTC"})
    assert str(raised.value) == "upbit: HTTP 400: bad request <0>wombat: FORGED EMERGENCY [31mred next line"


def test_request_json_hostile_kis_messages_stay_on_one_line(tmp_path):
    with FakeKis(rate_limit=None) as fake:
        install_prices(fake, ["005930"])
        client = kis_client(fake, tmp_path)
        fake.inject("hostile_message", match=lambda request: request.path == "/oauth2/tokenP")
        with pytest.raises(TokenUnavailable) as token_error:
            client.authenticator.token()
    with FakeKis(rate_limit=None) as fake:
        install_prices(fake, ["005930"])
        client = kis_client(fake, tmp_path / "other")
        fake.inject("hostile_message", match=for_code("005930"))
        with pytest.raises(ExchangeError) as price_error:
            list(kis.fetch_daily_candles(client, "005930", date(2024, 6, 1)))
    flat = "bad request <0>wombat: FORGED EMERGENCY [31mred next line"
    assert str(token_error.value) == f"kis token: HTTP 400: EGW00101 {flat}"
    assert str(price_error.value) == f"kis: HTTP 400: OPSQ0002 {flat}"


def test_request_json_unreachable_message_hides_userinfo():
    url = closed_port_url().split("/ping")[0]
    with_userinfo = url.replace("http://", "http://operator:hunter22@")
    with pytest.raises(ExchangeUnreachable) as raised:
        upbit_client(with_userinfo).request_json("GET", CANDLES_PATH, "candles", params={"market": "KRW-BTC"})
    assert str(raised.value) == f"upbit: cannot reach {url}: connection refused (gave up after 5 attempts)"


def test_get_bytes_download_message_hides_userinfo():
    url = closed_port_url().split("/ping")[0]
    client = HttpClient("kis", url, {"master": RateLimiter(1000, sleep=no_sleep)}, kis.classify, 2.0,
                        sleep=no_sleep)
    with pytest.raises(ExchangeError) as raised:
        client.get_bytes(url.replace("http://", "http://operator:hunter22@") + "/x.zip?token=abc", "master", 1024)
    assert str(raised.value) == f"kis: cannot download {url}/x.zip: connection refused"


JOURNALD_LINE = re.compile(r"^<[1-7]>(DEBUG|INFO|WARNING|ERROR|CRITICAL): ")
HOSTILE_FAULTS = {"00680K": "redirect", "035720": "hostile_message", "069500": "huge_exponent",
                  "091990": "oversized_unsized", "900110": "deep_json"}


def test_prices_kis_hostile_answers_fail_only_their_symbols(database, tmp_path):
    codes = [row[0] for rows in MASTERS.values() for row in rows]
    with FakeKis(rate_limit=None) as fake, FakeKis(rate_limit=None) as other:
        install_masters(fake)
        install_prices(fake, codes)
        for code, kind in HOSTILE_FAULTS.items():
            fake.inject(kind, count=1000, match=for_code(code), location=other.url, size=MAX_JSON_BYTES + 1)
        result = run_cli("prices", "--exchange", "kis", "--since", "2024-06-01",
                         env=kis_env(database, fake, tmp_path, JOURNAL_STREAM="8:1234", WOMBAT_HTTP_TIMEOUT="1"))
        assert other.requests == []
        port = other.port
        clean = [code for code in codes if code not in HOSTILE_FAULTS]
        # one request each, except deep JSON: retried like any unreadable answer (1 + 4)
        assert fake.count(KIS_PRICES_PATH) == len(clean) + 4 + 5
        stored = [row for row in kis_prices(database) if row[0] in clean]
        assert stored == expected_prices(fake, clean, date(2024, 6, 1))
    assert result.exit_code == 1
    failures = sorted(line.split(" failed: ", 1)[1] for line in result.stderr.splitlines() if " failed: " in line)
    assert failures == sorted([
        f"kis: {redirect_refusal(port, 302)}",
        "kis: HTTP 400: OPSQ0002 bad request <0>wombat: FORGED EMERGENCY [31mred next line",
        "1 invalid candle(s) rejected, first: 2024-06-28: stck_clpr is not a number: Decimal('NaN')",
        f"kis: answer is over the {MAX_JSON_BYTES:,}-byte cap (refused)",
        "kis: HTTP 200, not JSON (application/json; charset=utf-8): " + "[" * 80 + "… (gave up after retries)",
    ])
    assert all(JOURNALD_LINE.match(line) for line in result.output.splitlines()), result.output
    assert "Traceback" not in result.output


UPBIT_HOSTILE_FAULTS = {"KRW-HRED": "redirect", "KRW-HMSG": "hostile_message", "KRW-HBIG": "oversized",
                        "KRW-HNUM": "huge_exponent"}


def test_prices_upbit_hostile_answers_fail_only_their_symbols(database):
    with FakeUpbit(rate_limit=None) as fake, FakeUpbit(rate_limit=None) as other:
        candles = install_upbit(fake, UPBIT_CLEAN + tuple(UPBIT_HOSTILE_FAULTS))
        for market, kind in UPBIT_HOSTILE_FAULTS.items():
            fake.inject(kind, count=1 if kind == "huge_exponent" else 1000, match=for_market(market),
                        location=other.url, size=MAX_JSON_BYTES + 1)
        env = {"DATABASE_URL": database, "UPBIT_API_URL": fake.url, "UPBIT_RATE_LIMIT": "1000",
               "WOMBAT_HTTP_TIMEOUT": TIMEOUT, "JOURNAL_STREAM": "8:1234"}
        result = run_cli("prices", "--exchange", "upbit", "--since", f"{UPBIT_START}", env=env)
        assert other.requests == []
        port = other.port
    assert result.exit_code == 1
    stored = [row for row in upbit_rows_of(database) if row[0] in {upbit_symbol(market) for market in UPBIT_CLEAN}]
    assert stored == upbit_rows({market: candles[market] for market in UPBIT_CLEAN})
    failures = {line.split(" failed: ", 1)[0].rsplit(" ", 1)[1]: line.split(" failed: ", 1)[1]
                for line in result.stderr.splitlines() if " failed: " in line}
    first_page_to = f"{UPBIT_START + timedelta(days=200)}"  # pages go forward: the first answer ends there
    newest = max(row["candle_date_time_utc"] for row in candles["KRW-HNUM"]
                 if row["candle_date_time_utc"] < first_page_to)[:10]
    assert failures == {
        "HRED/KRW": f"upbit: {redirect_refusal(port, 302)}",
        "HMSG/KRW": "upbit: HTTP 400: bad request <0>wombat: FORGED EMERGENCY [31mred next line",
        "HBIG/KRW": f"upbit: answer of {MAX_JSON_BYTES + 1:,} bytes is over the {MAX_JSON_BYTES:,}-byte cap (refused)",
        "HNUM/KRW": f"1 invalid candle(s) rejected, first: {newest}: opening_price is not a number: Decimal('NaN')",
    }
    assert all(JOURNALD_LINE.match(line) for line in result.output.splitlines()), result.output


def upbit_rows_of(database):
    from tests.conftest import stored_prices

    return stored_prices(database, "upbit")


def test_session_sends_no_origin_and_verifies_tls():
    session = upbit_client("https://example.invalid").session()
    assert "Origin" not in session.headers and session.verify is True
    assert isinstance(session, requests.Session)


# --------------------------------------------------------------------------- the matrix, through the CLI


def upbit_scenario(stack, server_dsn, lock_root, name, fake=None, markets=UPBIT_CLEAN, **env):
    """Given a name and a fake (default: a new FakeUpbit), return a prices Scenario with its own database."""
    fake = fake or stack.enter_context(FakeUpbit(rate_limit=None))
    database = stack.enter_context(fresh_database(server_dsn))
    candles = install_upbit(fake, markets)
    environment = {"DATABASE_URL": database, "UPBIT_API_URL": fake.url, "UPBIT_RATE_LIMIT": "1000",
                   "WOMBAT_HTTP_TIMEOUT": TIMEOUT, "WOMBAT_WORKERS": WORKERS,
                   "WOMBAT_LOCK_DIR": str(lock_root / name), **env}
    (lock_root / name).mkdir()
    return Scenario(name, database, environment, ("prices", "--exchange", "upbit", "--since", f"{UPBIT_START}"),
                    fake, {"candles": candles})


def kis_scenario(stack, server_dsn, lock_root, name, fake=None, codes=KIS_CLEAN, **env):
    """Given a name and a fake (default: a new FakeKis), return a prices Scenario with its own database."""
    fake = fake or stack.enter_context(FakeKis(rate_limit=None))
    database = stack.enter_context(fresh_database(server_dsn))
    install_kis(fake, codes)
    (lock_root / name).mkdir()
    environment = kis_env(database, fake, lock_root / name / "state", WOMBAT_HTTP_TIMEOUT=TIMEOUT,
                          WOMBAT_WORKERS=WORKERS, WOMBAT_LOCK_DIR=str(lock_root / name), **env)
    return Scenario(name, database, environment, ("prices", "--exchange", "kis", "--since", "2024-01-02"),
                    fake, {"codes": codes})


def store_listing(scenario, exchange):
    """Given a Scenario, store its exchange's listing first (in-process), as a daily `symbols` would."""
    result = run_cli("symbols", "--exchange", exchange, env=scenario.env)
    assert result.exit_code == 0, result.output


def inject_all(fake, faults, matcher, page_matcher):
    """Given a fake and {symbol: (kind, count, later pages only)}, inject each fault on its symbol."""
    for symbol, (kind, count, later_pages) in faults.items():
        fake.inject(kind, count=count, match=(page_matcher if later_pages else matcher)(symbol),
                    seconds=STALL_SECONDS)


@pytest.fixture(scope="module")
def matrix(server_dsn, tmp_path_factory):
    """Run every scenario of both exchanges at once; return {name: Scenario} once all have ended."""
    lock_root = tmp_path_factory.mktemp("matrix")
    with contextlib.ExitStack() as stack:
        scenarios = {}

        def add(scenario):
            scenarios[scenario.name] = scenario
            return scenario

        # Upbit
        recovering = add(upbit_scenario(stack, server_dsn, lock_root, "upbit recovering",
                                        markets=UPBIT_CLEAN + tuple(UPBIT_RECOVERING) + ("KRW-EMPTY",)))
        inject_all(recovering.fake, UPBIT_RECOVERING, for_market, for_market_page_2)
        recovering.fake.inject("empty", count=1000, match=for_market("KRW-EMPTY"))
        failing = add(upbit_scenario(stack, server_dsn, lock_root, "upbit failing",
                                     markets=UPBIT_CLEAN + tuple(UPBIT_FAILING)))
        inject_all(failing.fake, {symbol: (kind, 1000, False) for symbol, kind in UPBIT_FAILING.items()},
                   for_market, for_market_page_2)
        # a limit of 2/s: the three markets' first pages start together, so one is refused however slow the machine
        add(upbit_scenario(stack, server_dsn, lock_root, "upbit 429 storm",
                           fake=stack.enter_context(FakeUpbit(rate_limit=2))))
        blocked = add(upbit_scenario(stack, server_dsn, lock_root, "upbit 418"))
        store_listing(blocked, "upbit")
        blocked.fake.set_blocked(True)
        refused = add(upbit_scenario(stack, server_dsn, lock_root, "upbit refused"))
        store_listing(refused, "upbit")
        refused.env["UPBIT_API_URL"] = closed_port_url().split("/ping")[0]
        add(upbit_scenario(stack, server_dsn, lock_root, "upbit refused listing",
                           UPBIT_API_URL=closed_port_url().split("/ping")[0]))
        # KIS
        recovering = add(kis_scenario(stack, server_dsn, lock_root, "kis recovering",
                                      codes=KIS_CLEAN + tuple(KIS_RECOVERING) + ("EMPTY0",)))
        inject_all(recovering.fake, KIS_RECOVERING, for_code, for_code_page_2)
        recovering.fake.inject("empty", count=1000, match=for_code("EMPTY0"))
        failing = add(kis_scenario(stack, server_dsn, lock_root, "kis failing", codes=KIS_CLEAN + tuple(KIS_FAILING)))
        inject_all(failing.fake, {code: (kind, 1000, False) for code, kind in KIS_FAILING.items()},
                   for_code, for_code_page_2)
        # likewise: the three codes' first pages start together once the token is issued
        add(kis_scenario(stack, server_dsn, lock_root, "kis EGW00201 storm",
                         fake=stack.enter_context(FakeKis(rate_limit=2))))
        refused = add(kis_scenario(stack, server_dsn, lock_root, "kis refused"))
        store_listing(refused, "kis")
        refused.env["KIS_API_URL"] = closed_port_url().split("/ping")[0]
        token = add(kis_scenario(stack, server_dsn, lock_root, "kis token 500"))
        token.fake.inject("500", count=1000, match=lambda request: request.path == "/oauth2/tokenP")
        run_concurrently(list(scenarios.values()))
        yield scenarios


def failure_line(exchange, symbol, kind):
    return f"prices {exchange} {symbol} failed: {FAILURE_REASONS[exchange][kind]}"


@pytest.mark.parametrize("kind", sorted({kind for kind, _, _ in UPBIT_RECOVERING.values()}))
def test_prices_upbit_fault_that_passes_is_retried_and_loses_no_row(matrix, kind):
    scenario = matrix["upbit recovering"]
    market, (_, count, _) = next((m, fault) for m, fault in UPBIT_RECOVERING.items() if fault[0] == kind)
    assert scenario.returncode == 0, scenario.stderr
    assert sum(1 for record in scenario.fake.requests
               if record.fault == kind and record.query.get("market") == market) == count
    stored = scenario.rows("upbit")
    assert symbol_rows(stored, upbit_symbol(market)) == upbit_rows({market: scenario.data["candles"][market]})


def test_prices_upbit_faults_that_pass_store_every_row(matrix):
    scenario = matrix["upbit recovering"]
    candles = dict(scenario.data["candles"])
    del candles["KRW-EMPTY"]  # the exchange says it has no candles: nothing to store, not a failure
    assert scenario.returncode == 0, scenario.stderr
    assert scenario.rows("upbit") == upbit_rows(candles)
    count = len(upbit_rows(candles))
    assert f"prices upbit: 12 symbols (12 ok), {count:,} rows ({count:,} new) in" in scenario.stdout
    assert scenario.stderr == ""


@pytest.mark.parametrize("kind", sorted(UPBIT_FAILING.values()))
def test_prices_upbit_persistent_fault_fails_only_its_symbol(matrix, kind):
    scenario = matrix["upbit failing"]
    market = next(market for market, fault in UPBIT_FAILING.items() if fault == kind)
    assert scenario.returncode == 1
    assert failure_line("upbit", upbit_symbol(market), kind) in scenario.stderr
    stored = scenario.rows("upbit")
    assert symbol_rows(stored, upbit_symbol(market)) == []
    assert stored == upbit_rows({market: scenario.data["candles"][market] for market in UPBIT_CLEAN})


def test_prices_upbit_persistent_faults_are_counted_in_the_summary(matrix):
    scenario = matrix["upbit failing"]
    count = len(upbit_rows({market: scenario.data["candles"][market] for market in UPBIT_CLEAN}))
    assert f"prices upbit: 11 symbols (3 ok, 8 failed), {count:,} rows ({count:,} new) in" in scenario.stderr
    assert "Traceback" not in scenario.stderr
    assert len([line for line in scenario.stderr.splitlines() if " failed: " in line]) == 8


def test_prices_upbit_429_storm_is_ridden_out(matrix):
    scenario = matrix["upbit 429 storm"]
    assert scenario.returncode == 0, scenario.stderr
    assert scenario.fake.count(CANDLES_PATH, status=429) >= 1
    assert scenario.rows("upbit") == upbit_rows(scenario.data["candles"])


def test_prices_upbit_418_stops_the_exchange(matrix):
    scenario = matrix["upbit 418"]
    assert scenario.returncode == 1
    assert "upbit: HTTP 418, this IP is blocked by Upbit: Your IP has been blocked for 60 seconds" in scenario.stderr
    assert "FAILED: upbit: HTTP 418" in scenario.stderr
    assert scenario.fake.count(CANDLES_PATH) <= int(WORKERS)  # no request after the block was seen
    assert scenario.rows("upbit") == []


def test_prices_upbit_connection_refused_stops_the_exchange(matrix):
    scenario = matrix["upbit refused"]
    url = scenario.env["UPBIT_API_URL"]
    assert scenario.returncode == 1
    assert (f"FAILED: upbit: cannot reach {url}: connection refused (gave up after 5 attempts)"
            in scenario.stderr)
    assert "Traceback" not in scenario.stderr
    assert scenario.rows("upbit") == []


def test_prices_upbit_connection_refused_before_any_listing_fails_clearly(matrix):
    scenario = matrix["upbit refused listing"]
    url = scenario.env["UPBIT_API_URL"]
    assert scenario.returncode == 1
    assert (f"FAILED: no symbols stored, and all markets: upbit: cannot reach {url}: connection refused"
            in scenario.stderr)
    assert scenario.rows("upbit") == []


@pytest.mark.parametrize("kind", sorted({kind for kind, _, _ in KIS_RECOVERING.values()}))
def test_prices_kis_fault_that_passes_is_retried_and_loses_no_row(matrix, kind):
    scenario = matrix["kis recovering"]
    code, (_, count, _) = next((c, fault) for c, fault in KIS_RECOVERING.items() if fault[0] == kind)
    assert scenario.returncode == 0, scenario.stderr
    assert sum(1 for record in scenario.fake.requests
               if record.fault == kind and record.query.get("FID_INPUT_ISCD") == code) == count
    assert symbol_rows(scenario.rows("kis"), code) == kis_rows(scenario.fake, [code])


def test_prices_kis_faults_that_pass_store_every_row(matrix):
    scenario = matrix["kis recovering"]
    codes = [code for code in scenario.data["codes"] if code != "EMPTY0"]
    assert scenario.returncode == 0, scenario.stderr
    assert scenario.rows("kis") == kis_rows(scenario.fake, codes)
    count = len(kis_rows(scenario.fake, codes))
    assert f"prices kis: 12 symbols (12 ok), {count:,} rows ({count:,} new) in" in scenario.stdout
    assert scenario.stderr == ""


@pytest.mark.parametrize("kind", sorted(KIS_FAILING.values()))
def test_prices_kis_persistent_fault_fails_only_its_symbol(matrix, kind):
    scenario = matrix["kis failing"]
    code = next(code for code, fault in KIS_FAILING.items() if fault == kind)
    assert scenario.returncode == 1
    assert failure_line("kis", code, kind) in scenario.stderr
    stored = scenario.rows("kis")
    assert symbol_rows(stored, code) == []
    assert stored == kis_rows(scenario.fake, KIS_CLEAN)


def test_prices_kis_persistent_faults_are_counted_in_the_summary(matrix):
    scenario = matrix["kis failing"]
    count = len(kis_rows(scenario.fake, KIS_CLEAN))
    assert f"prices kis: 11 symbols (3 ok, 8 failed), {count:,} rows ({count:,} new) in" in scenario.stderr
    assert "Traceback" not in scenario.stderr


def test_prices_kis_egw00201_storm_is_ridden_out(matrix):
    scenario = matrix["kis EGW00201 storm"]
    assert scenario.returncode == 0, scenario.stderr
    assert scenario.fake.count(KIS_PRICES_PATH, status=500) >= 1
    assert scenario.rows("kis") == kis_rows(scenario.fake, KIS_CLEAN)


def test_prices_kis_connection_refused_stops_the_exchange(matrix):
    scenario = matrix["kis refused"]
    url = scenario.env["KIS_API_URL"]
    assert scenario.returncode == 1
    assert (f"FAILED: kis token: cannot reach {url}: connection refused (gave up after 5 attempts)"
            in scenario.stderr)
    assert scenario.rows("kis") == []


def test_prices_kis_token_server_errors_stop_the_exchange(matrix):
    scenario = matrix["kis token 500"]
    assert scenario.returncode == 1
    assert "FAILED: kis token: HTTP 500: EGW00002 서버 에러가 발생했습니다. (gave up after retries)" in scenario.stderr
    assert scenario.fake.count(KIS_PRICES_PATH) == 0
    assert scenario.rows("kis") == []


def test_prices_matrix_runs_side_by_side_quickly(matrix):
    assert all(scenario.returncode is not None for scenario in matrix.values())  # each ended within its timeout
    assert all("Traceback" not in scenario.stderr for scenario in matrix.values())




def test_request_json_leaves_from_the_source_address():
    limiters = {group: RateLimiter(1000, sleep=no_sleep) for group in upbit.GROUPS}
    with FakeUpbit(rate_limit=None) as fake:
        fake.set_candles("KRW-BTC", make_upbit_candles("KRW-BTC", date(2025, 1, 1), date(2025, 1, 2)))
        client = HttpClient("upbit", fake.url, limiters, upbit.classify, 2.0, sleep=no_sleep,
                            source_address="127.0.0.3")
        client.request_json("GET", "/v1/market/all", "market")
        assert [record.client for record in fake.requests] == ["127.0.0.3"]


def test_request_json_from_an_address_not_of_this_host_names_the_setting(fake_upbit):
    limiters = {group: RateLimiter(1000, sleep=no_sleep) for group in upbit.GROUPS}
    client = HttpClient("upbit", fake_upbit.url, limiters, upbit.classify, 2.0, sleep=no_sleep,
                        source_address="192.0.2.1")  # TEST-NET-1: never an address of this host
    with pytest.raises(ExchangeError) as raised:
        client.request_json("GET", "/v1/market/all", "market")
    assert "cannot send from WOMBAT_SOURCE_ADDRESS (not an address of this host?)" in str(raised.value)
    assert fake_upbit.count() == 0
