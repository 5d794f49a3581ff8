"""Upbit quotation API: the market listing, candles of every timeframe and quotes (no key needed).

Facts: ../shared/reference/upbit-api.md. Upbit codes are QUOTE-BASE (`KRW-BTC`);
the backend stores BASE/QUOTE (`BTC/KRW`).
"""

import itertools
import re
from datetime import date, datetime, timezone
from decimal import Decimal

from wombat_collect.collectors import chunks, map_concurrently
from wombat_collect.collectors.paging import check_moved_back, check_page_budget, page_budget
from wombat_collect.errors import ExchangeError
from wombat_collect.http import HttpClient, Verdict
from wombat_collect.http_text import flatten, snippet
from wombat_collect.ratelimit import RateLimiter
from wombat_collect.records import (
    Candle,
    Covered,
    ExchangeInfo,
    Quote,
    RejectedCandle,
    RejectedQuote,
    SymbolRecord,
)
from wombat_collect.timeframes import DAILY, next_start, period_start, utc_midnight
from wombat_collect.validate import EARLIEST_SANE_DATE, rounded_percent

EXCHANGE = ExchangeInfo(code="upbit", name="Upbit", country="KR", timezone="Asia/Seoul")
MARKETS = ("KRW", "BTC", "USDT")
SYMBOL_PATTERN = re.compile(r"[A-Z0-9]{1,20}/(KRW|BTC|USDT)")  # what `--symbol` may name: BASE/QUOTE
SYMBOL_EXAMPLE = "BTC/KRW"
LISTING_GROUPS = (None,)  # one call lists every quote market
REBASE_ON_CHANGE = False  # finished candles never change
TRADES_EVERY_PERIOD = True  # around the clock: every period between two candles is a gap (gaps.py)
SYMBOL_TYPE = "CRYPTO"
PRICE_PRECISION = 8  # the most decimals any Upbit price has (BTC-quoted markets)
QUANTITY_PRECISION = 8  # Upbit quantities have up to 8 decimals
PAGE_SIZE = 200
EARLIEST_DATE = date(2017, 1, 1)  # before Upbit's first candles (it opened in October 2017): "all history"
LISTING_PATH = "/v1/market/all"
CANDLES_PATH = "/v1/candles/days"
TICKER_PATH = "/v1/ticker/all"  # every market of the named quote currencies in one answer
ORDERBOOK_PATH = "/v1/orderbook"
ORDERBOOK_MARKETS_PER_REQUEST = 100  # undocumented maximum; keeps the URL near 1 KB
QUOTE_WORKERS = 4  # order-book requests in flight at once (the pacer keeps the rate)
QUOTE_FIELDS = {"current": "trade_price", "volume_24h": "acc_trade_volume_24h", "change_rate": "signed_change_rate"}
PERCENT = Decimal(100)  # signed_change_rate is a ratio: 0.0644100407 = 6.4410 %
TIMEFRAMES = {  # timeframe -> candle endpoint; all in the `candles` rate group (one limiter)
    **{name: f"/v1/candles/minutes/{minutes}" for name, minutes in (
        ("1m", 1), ("3m", 3), ("5m", 5), ("10m", 10), ("15m", 15), ("30m", 30), ("1h", 60), ("4h", 240))},
    "1d": CANDLES_PATH,
    "1w": "/v1/candles/weeks",
    "1M": "/v1/candles/months",
    "1y": "/v1/candles/years",
}
GROUPS = ("market", "candles", "ticker", "orderbook")
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
                      remaining_of=remaining_requests, source_address=settings.source_address)


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
    """Given a BASE/QUOTE symbol and a first date (None: all history), yield its daily candles (fetch_candles)."""
    first = utc_midnight(start) if start else None
    return (item for item in fetch_candles(client, symbol, DAILY, first) if not isinstance(item, Covered))


def fetch_candles(client, symbol, timeframe, start=None, end=None):
    """Given a BASE/QUOTE symbol, a timeframe and a first period (None: all history), yield its candles.

    With a start, pages forward PAGE_SIZE periods at a time from the start's
    period (each page asked `to` its end, exclusive), so what is yielded grows
    from the start and a Covered marker after each page says how far; `end`
    (default: now) is where paging stops, the last page asked without `to` when
    it reaches past the present (the running candle included). Without a start,
    pages backwards from the newest candle (see _fetch_backwards). Raise
    SymbolNotFound for an unknown market, ExchangeError if a page is malformed
    or outside what was asked.
    """
    if start is None:
        yield from _fetch_backwards(client, market_code(symbol), timeframe)
        return
    market = market_code(symbol)
    segment_start = period_start(start, timeframe)
    end = end or datetime.now(timezone.utc)
    seen_any = False
    while segment_start <= end:
        segment_end = next_start(segment_start, timeframe, PAGE_SIZE)
        cursor = segment_end if segment_end <= datetime.now(timezone.utc) else None
        page = fetch_page(client, market, timeframe, cursor, again_if_empty=True)
        if not page and seen_any:  # candles exist before segment_end: an empty answer (asked twice) is wrong
            raise ExchangeError(f"upbit: {series_label(timeframe)}candles of {market}: an empty page before "
                                f"{moment_label(segment_end)} after candles")
        if not page:  # nothing before segment_end: the history starts later, find it backwards
            yield Covered(start=period_start(start, timeframe), end=min(segment_end, end))
            yield from _fetch_backwards(client, market, timeframe, stop=segment_end)
            return
        for candle in page:
            if isinstance(candle, Candle) and EARLIEST_SANE_DATE <= candle.timestamp < segment_start:
                continue  # yielded by the page before (a gap made this page reach back); insane dates go on

            seen_any = True
            yield candle
        segment_start = segment_end
        yield Covered(start=period_start(start, timeframe), end=min(segment_end, end))


def _fetch_backwards(client, market, timeframe, stop=None):
    """Given a market code and a timeframe, yield its candles from the newest back to `stop` (None: all).

    Pages backwards with the exclusive `to` cursor, a Covered marker after each
    page. An empty page after a full one ends the history only if asking again
    confirms it (a glitch must not cut the history short). Raise ExchangeError
    if a page does not move backwards, or the history takes more pages than it
    can need (collectors.paging).
    """
    cursor = None
    newest_end = datetime.now(timezone.utc)
    first = stop or EARLIEST_DATE
    budget = page_budget(first, newest_end, PAGE_SIZE, timeframe)
    for pages in itertools.count(1):
        check_page_budget(pages, budget, "upbit", market, first)
        page = fetch_page(client, market, timeframe, cursor, again_if_empty=cursor is not None)
        timestamps = [candle.timestamp for candle in page if isinstance(candle, Candle)]
        yield from (candle for candle in page
                    if stop is None or not isinstance(candle, Candle) or candle.timestamp >= stop)
        oldest = min(timestamps, default=None)
        if len(page) < PAGE_SIZE or oldest is None or (stop is not None and oldest <= stop):
            yield Covered(start=stop or EARLIEST_SANE_DATE, end=newest_end)
            return
        yield Covered(start=oldest, end=newest_end)
        cursor = oldest


def fetch_page(client, market, timeframe, cursor, again_if_empty=False):
    """Given a market, a timeframe and an exclusive `to` (None: the newest), return one page parsed.

    A page is Candles and RejectedCandles, newest first. An empty page is asked
    again once when `again_if_empty`. Raise ExchangeError if the answer is not a
    list or holds a candle at or after the cursor (the cursor did not move).
    """
    params = {"market": market, "count": PAGE_SIZE}
    if cursor:
        params["to"] = cursor.strftime("%Y-%m-%dT%H:%M:%SZ")
    path = TIMEFRAMES[timeframe]
    page = client.request_json("GET", path, "candles", params=params)
    if page == [] and again_if_empty:
        page = client.request_json("GET", path, "candles", params=params)
    if not isinstance(page, list):
        raise ExchangeError(f"upbit: {timeframe} candles of {market} are not a list: {snippet(str(page))}")
    candles = [parse_candle(row) for row in page]
    times = {candle.timestamp for candle in candles if isinstance(candle, Candle)}
    if cursor and times and max(times) >= cursor:
        raise ExchangeError(f"upbit: {series_label(timeframe)}candles of {market} did not move back past "
                            f"{moment_label(cursor)}")
    if times:
        bound = cursor or next_start(max(times), timeframe)
        check_moved_back(bound, min(times), len(times), "upbit", market, timeframe)
    return candles


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
            return RejectedCandle(f"{moment_label(timestamp)}: {source} is not a number: {snippet(repr(value))}")
        values[field] = Decimal(value)
    return Candle(timestamp=timestamp, **values)


def series_label(timeframe):
    """Given a timeframe, return how errors name its candles: nothing for daily ones (`1m ` otherwise)."""
    return "" if timeframe == DAILY else f"{timeframe} "


def moment_label(timestamp):
    """Given a candle's start, return it as problems name it: the date, with the time unless midnight."""
    return f"{timestamp:%Y-%m-%d}" if (timestamp.hour, timestamp.minute) == (0, 0) else f"{timestamp:%Y-%m-%d %H:%M}"


def candle_closes_at(timestamp, timeframe=DAILY):
    """Given a candle's start and timeframe, return when it is final: when its period ends (UTC)."""
    return next_start(timestamp, timeframe)


def quotes_unavailable(client):
    """Given a client, return why quotes cannot be had from it: never (None)."""
    return None


def fetch_quotes(client, symbols):
    """Given BASE/QUOTE symbols, return a Quote (or RejectedQuote) for each one Upbit quotes.

    One ticker/all request names every quote currency of the symbols; the best
    bid and ask come from the order book, ORDERBOOK_MARKETS_PER_REQUEST markets
    a request. Symbols absent from the ticker answer are left out. Raise
    ExchangeError if an answer cannot be had or is not a list.
    """
    wanted = {market_code(symbol): symbol for symbol in symbols}
    currencies = sorted({market.split("-")[0] for market in wanted})
    if not currencies:
        return []
    tickers = answer_rows(client, TICKER_PATH, "ticker", {"quote_currencies": ",".join(currencies)})
    tickers = {row["market"]: row for row in tickers if row.get("market") in wanted}
    books = map_concurrently(lambda batch: fetch_order_books(client, batch),
                             chunks(sorted(tickers), ORDERBOOK_MARKETS_PER_REQUEST), QUOTE_WORKERS)
    books = {row["market"]: row for row in books if isinstance(row.get("market"), str)}
    return [parse_quote(wanted[market], row, books.get(market)) for market, row in sorted(tickers.items())]


def fetch_order_books(client, markets):
    """Given Upbit market codes, return their order-book objects (one request)."""
    return answer_rows(client, ORDERBOOK_PATH, "orderbook", {"markets": ",".join(markets)})


def answer_rows(client, path, group, params):
    """Given a request, return its answer's objects. Raise ExchangeError if the answer is not a list."""
    answer = client.request_json("GET", path, group, params=params)
    if not isinstance(answer, list):
        raise ExchangeError(f"upbit: {path} answer is not a list: {snippet(str(answer))}")
    return [row for row in answer if isinstance(row, dict)]


def parse_quote(symbol, ticker, book):
    """Given a symbol, its ticker object and its order book (or None), return a Quote or RejectedQuote.

    The quote time is the ticker's `timestamp` (else `trade_timestamp`); bid and
    ask are the first order-book level's, None without an order book.
    """
    values = {}
    for field, source in QUOTE_FIELDS.items():
        values[field] = number_of(ticker.get(source))
        if values[field] is None:
            return RejectedQuote(symbol, f"{symbol}: {source} is not a number: {snippet(repr(ticker.get(source)))}")
    stamp = ticker.get("timestamp", ticker.get("trade_timestamp"))
    quoted_at = epoch_ms_time(stamp)
    if quoted_at is None:
        return RejectedQuote(symbol, f"{symbol}: timestamp is not epoch milliseconds: {snippet(repr(stamp))}")
    bid, ask = best_bid_ask(book)
    return Quote(symbol, values["current"], bid, ask, values["volume_24h"],
                 rounded_percent(values["change_rate"] * PERCENT), quoted_at)


def epoch_ms_time(value):
    """Given epoch milliseconds (a JSON number), return the aware UTC datetime, or None if unreadable."""
    number = number_of(value)
    try:
        return datetime.fromtimestamp(int(number) / 1000, timezone.utc) if number is not None else None
    except (OverflowError, ValueError, OSError):
        return None


def best_bid_ask(book):
    """Given an order-book object (or None), return (best bid, best ask) as Decimals, None where absent."""
    units = book.get("orderbook_units") if isinstance(book, dict) else None
    first = units[0] if isinstance(units, list) and units and isinstance(units[0], dict) else {}
    return number_of(first.get("bid_price")), number_of(first.get("ask_price"))


def number_of(value):
    """Given a JSON value, return it as a finite Decimal, or None if it is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        return None
    number = Decimal(value)
    return number if number.is_finite() else None


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
