"""Upbit quotation API: the market listing and daily candles (no key needed).

Facts: ../shared/reference/upbit-api.md. Upbit codes are QUOTE-BASE (`KRW-BTC`);
the backend stores BASE/QUOTE (`BTC/KRW`).
"""

import itertools
import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from wombat_collect.collectors.paging import PERIOD, check_moved_back, check_page_budget, page_budget
from wombat_collect.errors import ExchangeError
from wombat_collect.http import HttpClient, Verdict, flatten, snippet
from wombat_collect.ratelimit import RateLimiter
from wombat_collect.records import Candle, ExchangeInfo, RejectedCandle, SymbolRecord
from wombat_collect.validate import EARLIEST_SANE_DATE

EXCHANGE = ExchangeInfo(code="upbit", name="Upbit", country="KR", timezone="Asia/Seoul")
MARKETS = ("KRW", "BTC", "USDT")
SYMBOL_PATTERN = re.compile(r"[A-Z0-9]{1,20}/(KRW|BTC|USDT)")  # what `--symbol` may name: BASE/QUOTE
SYMBOL_EXAMPLE = "BTC/KRW"
LISTING_GROUPS = (None,)  # one call lists every quote market
REBASE_ON_CHANGE = False  # finished candles never change
SYMBOL_TYPE = "CRYPTO"
PRICE_PRECISION = 8  # the most decimals any Upbit price has (BTC-quoted markets)
QUANTITY_PRECISION = 8  # Upbit quantities have up to 8 decimals
PAGE_SIZE = 200
EARLIEST_DATE = date(2017, 1, 1)  # before Upbit's first candles (it opened in October 2017): "all history"
LISTING_PATH = "/v1/market/all"
CANDLES_PATH = "/v1/candles/days"
GROUPS = ("market", "candles")
CANDLE_FIELDS = {
    "open": "opening_price",
    "high": "high_price",
    "low": "low_price",
    "close": "trade_price",
    "volume": "candle_acc_trade_volume",
    "quote_volume": "candle_acc_trade_price",
}


def credentials_problem(settings):
    """Given Settings, return None: Upbit's public API needs no credentials."""
    return None


def open_client(settings):
    """Given Settings, return an HttpClient for Upbit with one pacer per request group."""
    limiters = {group: RateLimiter(settings.upbit_rate_limit) for group in GROUPS}
    return HttpClient("upbit", settings.upbit_api_url, limiters, classify, settings.http_timeout,
                      remaining_of=remaining_requests)


def fetch_symbols(client, group=None):
    """Given a client, yield a SymbolRecord per listed market (all quote markets).

    Raise ExchangeError if the listing is not a list of markets.
    """
    listing = client.request_json("GET", LISTING_PATH, "market", params={"is_details": "true"})
    if not isinstance(listing, list):
        raise ExchangeError(f"upbit: market listing is not a list: {snippet(str(listing))}")
    for row in listing:
        code = row.get("market") if isinstance(row, dict) else None
        if not isinstance(code, str) or code.count("-") != 1:
            raise ExchangeError(f"upbit: malformed market row: {snippet(str(row))}")
        quote, base = code.split("-")
        if group is None or quote == group:
            yield SymbolRecord(
                symbol=f"{base}/{quote}", base_asset=base, quote_asset=quote, market=quote,
                symbol_type=SYMBOL_TYPE, price_precision=PRICE_PRECISION,
                quantity_precision=QUANTITY_PRECISION,
            )


def fetch_daily_candles(client, symbol, start=None):
    """Given a BASE/QUOTE symbol and a first date (None: all history), yield its daily candles.

    Newest first, the running candle included; pages backwards with the exclusive
    `to` cursor. An empty page after a full one ends the history only if asking
    again confirms it (a glitch must not cut the history short). Raise
    SymbolNotFound for an unknown market, ExchangeError if a page is malformed,
    does not move the cursor back a day per candle, or the window takes more
    pages than it can need (collectors.paging).
    """
    market = market_code(symbol)
    first = start or EARLIEST_DATE
    budget = page_budget(first, datetime.now(timezone.utc).date(), PAGE_SIZE)
    cursor = None
    for pages in itertools.count(1):
        check_page_budget(pages, budget, "upbit", market, first)
        page = fetch_page(client, market, cursor)
        candles = [parse_candle(row) for row in page]
        oldest = page_oldest(candles, cursor, market)
        for candle in candles:
            if isinstance(candle, Candle) and start and EARLIEST_SANE_DATE <= candle.timestamp \
                    and candle.timestamp.date() < start:
                continue  # before the window (an insane date goes on, to be rejected and counted)
            yield candle
        if len(page) < PAGE_SIZE or oldest is None or (start and oldest.date() <= start):
            return
        cursor = oldest


def fetch_page(client, market, cursor):
    """Given a market code and the cursor (None: the newest page), return one page of candle rows.

    An empty page after a full one is asked for again. Raise ExchangeError if it is not a list.
    """
    params = {"market": market, "count": PAGE_SIZE}
    if cursor:
        params["to"] = cursor.strftime("%Y-%m-%dT%H:%M:%SZ")
    page = client.request_json("GET", CANDLES_PATH, "candles", params=params)
    if page == [] and cursor:
        page = client.request_json("GET", CANDLES_PATH, "candles", params=params)
    if not isinstance(page, list):
        raise ExchangeError(f"upbit: candles of {market} are not a list: {snippet(str(page))}")
    return page


def page_oldest(candles, cursor, market):
    """Given a page's parsed candles and the cursor it was asked with, return its oldest candle's time.

    Return None if it holds no readable candle. Raise ExchangeError if a candle
    is not before the cursor, or the page moved back less than a day per candle.
    """
    times = {candle.timestamp for candle in candles if isinstance(candle, Candle)}
    if not times:
        return None
    if cursor and max(times) >= cursor:
        raise ExchangeError(f"upbit: candles of {market} did not move back past {cursor:%Y-%m-%d}")
    check_moved_back(cursor or max(times) + PERIOD, min(times), len(times), "upbit", market)
    return min(times)


def parse_candle(row):
    """Given one JSON candle, return a Candle, or a RejectedCandle saying what is wrong."""
    if not isinstance(row, dict):
        return RejectedCandle(f"not an object: {snippet(str(row))}")
    try:
        timestamp = datetime.fromisoformat(str(row["candle_date_time_utc"])).replace(tzinfo=timezone.utc)
    except (KeyError, ValueError):
        return RejectedCandle(f"bad candle_date_time_utc: {snippet(str(row.get('candle_date_time_utc')))}")
    values = {}
    for field, source in CANDLE_FIELDS.items():
        value = row.get(source)
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)) or not Decimal(value).is_finite():
            return RejectedCandle(f"{timestamp:%Y-%m-%d}: {source} is not a number: {snippet(repr(value))}")
        values[field] = Decimal(value)
    return Candle(timestamp=timestamp, **values)


def candle_closes_at(timestamp):
    """Given a daily candle's start (00:00 UTC), return when it is final: the next midnight UTC."""
    return timestamp + timedelta(days=1)


def market_code(symbol):
    """Given `BTC/KRW`, return Upbit's `KRW-BTC`."""
    base, _, quote = symbol.partition("/")
    return f"{quote}-{base}"


def remaining_requests(headers):
    """Given answer headers, return `sec` of Remaining-Req (requests left this second), or None."""
    for part in headers.get("Remaining-Req", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == "sec" and value.isdigit():
            return int(value)
    return None


def classify(answer):
    """Given an Answer from Upbit, return (Verdict, message) per the reference's error table."""
    status = answer.status
    if status == 200:
        if answer.payload is None:
            return Verdict.RETRY, f"non-JSON answer ({answer.content_type or 'no type'}): {snippet(answer.text)}"
        return Verdict.OK, ""
    message = f"HTTP {status}: {error_message(answer)}"
    if status == 429:
        return Verdict.THROTTLED, message
    if status == 418:
        return Verdict.BLOCKED, f"HTTP 418, this IP is blocked by Upbit: {snippet(answer.text)}"
    if status == 404 and "code not found" in message.lower():
        return Verdict.NOT_FOUND, message
    if status >= 500:
        return Verdict.RETRY, message
    return Verdict.FAIL, message


def error_message(answer):
    """Given an error Answer, return Upbit's `error.message` (name may be int or str), or the body."""
    error = answer.payload.get("error") if isinstance(answer.payload, dict) else None
    if isinstance(error, dict) and flatten(error.get("message") or ""):
        return flatten(error["message"])
    return snippet(answer.text) or "(empty body)"
