"""FakeUpbit: a fake Upbit quotation API (``/v1/market/all``, ``/v1/candles/days``,
``/v1/ticker/all`` and ``/v1/orderbook``).

Follows shared/reference/upbit-api.md. Choices where the reference is silent or uncertain:

- Rate groups: ``/v1/market/all`` -> "market", ``/v1/candles/days`` -> "candles", any other
  path -> "default"; each group has its own strict 1 s sliding window of ``rate_limit``
  per client IP address, as Upbit limits by IP (workers on 127.0.0.2, 127.0.0.3, ... each
  have their own). A request with an ``Origin`` header is counted in one "origin" window of
  1 request per 10 s per address instead (its ``Remaining-Req`` still names the route's group).
  ``rate_limit=None`` disables every limit (``Remaining-Req`` then reports ``sec=9``).
- 429 body: ``Too many API requests.`` (text/plain), no Retry-After.
- 418 (blocked) body: plain text naming the block duration, e.g.
  ``Your IP has been blocked for 60 seconds due to too many API requests.``; the duration
  doubles with each block. Blocked mode lasts until ``set_blocked(False)`` (no timer).
  ``block_after_429s=N`` enters it once N 429s were answered within 10 s.
- Candles of every kind: ``days``, ``weeks``, ``months``, ``years`` and ``minutes/{unit}``
  (unit 1, 3, 5, 10, 15, 30, 60, 240; another unit answers the unknown-route 404), each kind
  its own series per market (``set_candles(market, rows, kind)``), all in the "candles" rate
  group. Paging is the same for all: newest first, strictly before ``to`` (exclusive), at most
  ``count`` (<= 200); without ``to`` the newest, the running candle included when the series
  holds it. Minutes without trades simply have no row (``gap_every``). ``set_generated`` serves a
  long minute series computed on demand (rows are a function of market and time), so a year of
  1-minute candles costs no memory in the fake.
- ``count`` that is not an integer or is below 1, and a ``to`` that cannot be parsed (e.g. a
  ``+09:00`` offset whose ``+`` was not URL-encoded and so arrived as a space), answer 400
  ``Type mismatch error. Check the parameters type!``.
- A market's candles are served only while the market is in the market list: ``set_markets``
  without it (a delisting or rename) makes its candles 404. ``set_candles`` for a market not
  listed adds a default market row for it.
- Quotes: ``/v1/ticker/all?quote_currencies=KRW,BTC`` answers the ticker of every listed market
  of those quote currencies (a missing parameter: 400; an unknown currency: 404 Code not found);
  ``/v1/orderbook?markets=A,B`` answers one order book per market, in the order asked (a missing
  parameter: 400; any market not listed: 404 Code not found). A listed market without a ticker
  set by ``set_ticker`` gets ``make_upbit_ticker``'s; its order book is ``make_upbit_orderbook``
  around the ticker's price unless ``set_orderbook`` gave one. Both groups ("ticker",
  "orderbook") have their own window, like candles. ``omit_quotes`` leaves markets out of both.
  The shapes are recorded answers' (field names and order; values made up).
- ``make_upbit_candles`` puts ``BIG_TRADE_PRICE`` (242634976840.02426000) as the oldest
  candle's ``candle_acc_trade_price`` whatever the quote currency.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable

from tests.fakes.common import (
    KST,
    Admission,
    FakeService,
    Request,
    Response,
    SlidingWindowLimiter,
    dumps_with_decimals,
    json_response,
    stable_seed,
    text_response,
)

MARKETS_PATH = "/v1/market/all"
CANDLES_PATH = "/v1/candles/days"
TICKER_PATH = "/v1/ticker/all"
ORDERBOOK_PATH = "/v1/orderbook"
CANDLE_PREFIX = "/v1/candles/"
MINUTE_UNITS = (1, 3, 5, 10, 15, 30, 60, 240)
CANDLE_KINDS = frozenset({"days", "weeks", "months", "years", *(f"minutes/{unit}" for unit in MINUTE_UNITS)})
ROUTE_GROUPS = {MARKETS_PATH: "market", TICKER_PATH: "ticker", ORDERBOOK_PATH: "orderbook",
                **{CANDLE_PREFIX + kind: "candles" for kind in CANDLE_KINDS}}
MINUTE_KEYS = (
    "market", "candle_date_time_utc", "candle_date_time_kst", "opening_price", "high_price", "low_price",
    "trade_price", "timestamp", "candle_acc_trade_price", "candle_acc_trade_volume", "unit",
)
QUOTE_EPOCH_MS = 1_724_310_962_747  # 2024-08-22 07:16:02.747 UTC, a recorded ticker's timestamp
ORDERBOOK_LEVELS = 15
DEFAULT_GROUP = "default"

DEFAULT_RATE_LIMIT = 10
ORIGIN_GROUP_KEY = "origin"
ORIGIN_RATE_LIMIT = 1
ORIGIN_WINDOW_SECONDS = 10.0
REMAINING_MIN = 600
REMAINING_WHEN_UNLIMITED = 9
BLOCK_COUNT_WINDOW_SECONDS = 10.0
FIRST_BLOCK_SECONDS = 60

DEFAULT_COUNT = 1
MAX_COUNT = 200
MARKET_SHUFFLE_SEED = 20250701
CANDLE_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"

TOO_MANY_REQUESTS_TEXT = "Too many API requests."
BLOCKED_TEXT = "Your IP has been blocked for {seconds} seconds due to too many API requests."
MISSING_PARAMETER_MESSAGE = "Missing request parameter error. Check the required parameters!"
TYPE_MISMATCH_MESSAGE = "Type mismatch error. Check the parameters type!"
CODE_NOT_FOUND_MESSAGE = "Code not found"
NOT_FOUND_ROUTE_MESSAGE = "Not found"

CAUTION_KEYS = (
    "PRICE_FLUCTUATIONS",
    "TRADING_VOLUME_SOARING",
    "DEPOSIT_AMOUNT_SOARING",
    "GLOBAL_PRICE_DIFFERENCES",
    "CONCENTRATION_OF_SMALL_ACCOUNTS",
)
BASIC_MARKET_KEYS = ("market", "korean_name", "english_name")
CANDLE_KEYS = (
    "market",
    "candle_date_time_utc",
    "candle_date_time_kst",
    "opening_price",
    "high_price",
    "low_price",
    "trade_price",
    "timestamp",
    "candle_acc_trade_price",
    "candle_acc_trade_volume",
    "prev_closing_price",
    "change_price",
    "change_rate",
)

# Generator settings.
BIG_TRADE_PRICE = Decimal("242634976840.02426000")
EIGHT_DECIMALS = Decimal("0.00000001")
PRICE_QUANTUM = {"KRW": Decimal("1"), "BTC": EIGHT_DECIMALS, "USDT": Decimal("0.001")}
BASE_PRICE_RANGE = {"KRW": (1_000, 90_000_000), "BTC": (0.000001, 0.05), "USDT": (0.05, 60_000.0)}
TRADE_VALUE_RANGE = {"KRW": (1e9, 5e11), "BTC": (0.1, 100.0), "USDT": (1e3, 1e7)}
FLAT_CLOSE_EVERY = 9  # every 9th candle closes at the previous close (change_price null)
LATE_TIMESTAMP_SHARE = 0.3  # share of candles whose last trade is just after next midnight


# --------------------------------------------------------------------------- generators


def default_market_event(warning: bool = False, caution: Iterable[str] = ()) -> dict[str, Any]:
    """Given a warning flag and the caution keys that are set, return a ``market_event``."""
    flagged = set(caution)
    return {"warning": warning, "caution": {key: key in flagged for key in CAUTION_KEYS}}


def default_market_row(market: str) -> dict[str, Any]:
    """Given a market code like ``KRW-BTC``, return a market row with made-up names."""
    base = market.split("-", 1)[-1]
    return {
        "market": market,
        "korean_name": f"{base} 코인",
        "english_name": base,
        "market_event": default_market_event(),
    }


def make_upbit_markets(count: int, quotes: Iterable[str] = ("KRW", "BTC", "USDT")) -> list[dict[str, Any]]:
    """Given a count and quote currencies, return that many deterministic market rows.

    Market ``i`` (from 1) is ``<quote>-C<i:03>`` with quotes taken in turn: KRW-C001,
    BTC-C002, USDT-C003, KRW-C004, ... Every 5th has ``warning`` set, every 7th a caution.
    """
    quote_list = list(quotes)
    rows = []
    for number in range(1, count + 1):
        quote = quote_list[(number - 1) % len(quote_list)]
        caution = ("PRICE_FLUCTUATIONS",) if number % 7 == 0 else ()
        rows.append(
            {
                "market": f"{quote}-C{number:03d}",
                "korean_name": f"코인{number:03d}",
                "english_name": f"Coin {number:03d}",
                "market_event": default_market_event(number % 5 == 0, caution),
            }
        )
    return rows


def _quote_of(market: str) -> str:
    """Given ``KRW-BTC``, return ``KRW`` (unknown quotes are treated like USDT)."""
    quote = market.split("-", 1)[0]
    return quote if quote in PRICE_QUANTUM else "USDT"


def _price(value: float | Decimal, quote: str) -> Decimal:
    """Given a raw positive value and a quote currency, return a price on that quote's grid."""
    quantum = PRICE_QUANTUM[quote]
    if quote == "KRW" and value < 100:
        quantum = Decimal("0.01")
    return max(Decimal(str(value)).quantize(quantum), quantum)


def _last_trade_timestamp(day: date, rng: random.Random) -> int:
    """Given a candle's UTC day, return the epoch ms of its last trade; in ~30% of cases a
    few seconds after the next UTC midnight, as real answers show."""
    next_midnight = datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(days=1)
    if rng.random() < LATE_TIMESTAMP_SHARE:
        offset_ms = rng.randint(1_000, 5_000)
    else:
        offset_ms = -rng.randint(1, 3_600_000)
    return int(next_midnight.timestamp() * 1000) + offset_ms


def _candle_row(
    market: str, day: date, prices: dict[str, Decimal], volume: Decimal, value: Decimal, timestamp: int
) -> dict[str, Any]:
    """Given a market, a day, OHLC + previous close, volume, traded value and last-trade
    time, return a day candle dict with the reference's fields."""
    start = datetime(day.year, day.month, day.day)
    change = prices["close"] - prices["prev_close"]
    return {
        "market": market,
        "candle_date_time_utc": start.strftime(CANDLE_TIME_FORMAT),
        "candle_date_time_kst": start.replace(tzinfo=timezone.utc).astimezone(KST).strftime(CANDLE_TIME_FORMAT),
        "opening_price": prices["open"],
        "high_price": prices["high"],
        "low_price": prices["low"],
        "trade_price": prices["close"],
        "timestamp": timestamp,
        "candle_acc_trade_price": value,
        "candle_acc_trade_volume": volume,
        "prev_closing_price": prices["prev_close"],
        "change_price": change if change else None,
        "change_rate": (change / prices["prev_close"]).quantize(EIGHT_DECIMALS) if change else Decimal(0),
    }


def _day_prices(previous_close: Decimal, quote: str, rng: random.Random, flat: bool) -> dict[str, Decimal]:
    """Given the previous close, return open/high/low/close/prev_close with low <= open,
    close <= high; the close equals the previous close when ``flat``."""
    open_price = _price(float(previous_close) * rng.uniform(0.98, 1.02), quote)
    close = previous_close if flat else _price(float(open_price) * rng.uniform(0.9, 1.1), quote)
    high = _price(float(max(open_price, close)) * rng.uniform(1.0, 1.05), quote)
    low = _price(float(min(open_price, close)) * rng.uniform(0.95, 1.0), quote)
    return {
        "open": open_price,
        "high": max(high, open_price, close),
        "low": min(low, open_price, close),
        "close": close,
        "prev_close": previous_close,
    }


def make_upbit_candles(
    market: str, start: date, end: date, seed: int = 0, gap_every: int | None = None
) -> list[dict[str, Any]]:
    """Given a market and an inclusive day range, return deterministic day candles, oldest first.

    Prices, volumes and traded values are ``Decimal`` (up to 8 decimals; KRW traded values
    reach 1e11+); the oldest candle's ``candle_acc_trade_price`` is exactly ``BIG_TRADE_PRICE``.
    Every ``gap_every``-th day (the gap_every-th, 2*gap_every-th, ...) has no candle.
    ``prev_closing_price`` is the previous candle's close, so gaps are bridged as upstream does.
    """
    quote = _quote_of(market)
    rng = random.Random(stable_seed(seed, market))
    low_bound, high_bound = BASE_PRICE_RANGE[quote]
    previous_close = _price(rng.uniform(low_bound, high_bound), quote)
    candles: list[dict[str, Any]] = []
    for offset in range((end - start).days + 1):
        if gap_every and (offset + 1) % gap_every == 0:
            continue
        day = start + timedelta(days=offset)
        prices = _day_prices(previous_close, quote, rng, flat=(len(candles) + 1) % FLAT_CLOSE_EVERY == 0)
        value = Decimal(str(rng.uniform(*TRADE_VALUE_RANGE[quote]))).quantize(EIGHT_DECIMALS)
        if not candles:
            value = BIG_TRADE_PRICE
        volume = (value / ((prices["high"] + prices["low"]) / 2)).quantize(EIGHT_DECIMALS)
        candles.append(_candle_row(market, day, prices, volume, value, _last_trade_timestamp(day, rng)))
        previous_close = prices["close"]
    return candles


def make_upbit_ticker(market: str, seed: int = 0, timestamp: int = QUOTE_EPOCH_MS) -> dict[str, Any]:
    """Given a market, return a deterministic ticker in the shape of a recorded ``/v1/ticker`` answer.

    ``signed_change_rate`` has 10 decimals (a ratio), numbers are ``Decimal``; ``timestamp`` and
    ``trade_timestamp`` are epoch ms (the trade 34 ms before the ticker).
    """
    quote = _quote_of(market)
    rng = random.Random(stable_seed(seed, "ticker " + market))
    previous = _price(rng.uniform(*BASE_PRICE_RANGE[quote]), quote)
    price = _price(float(previous) * rng.uniform(0.9, 1.1), quote)
    change = price - previous
    rate = (change / previous).quantize(Decimal("0.0000000001"))
    volume = Decimal(str(rng.uniform(10, 1e7))).quantize(EIGHT_DECIMALS)
    moment = datetime.fromtimestamp(timestamp / 1000, timezone.utc)
    return {
        "market": market, "trade_date": f"{moment:%Y%m%d}", "trade_time": f"{moment:%H%M%S}",
        "trade_date_kst": f"{moment.astimezone(KST):%Y%m%d}", "trade_time_kst": f"{moment.astimezone(KST):%H%M%S}",
        "trade_timestamp": timestamp - 34, "opening_price": previous, "high_price": max(price, previous),
        "low_price": min(price, previous), "trade_price": price, "prev_closing_price": previous,
        "change": "RISE" if change > 0 else "FALL" if change < 0 else "EVEN",
        "change_price": abs(change), "change_rate": abs(rate), "signed_change_price": change,
        "signed_change_rate": rate, "trade_volume": Decimal("0.00042335"),
        "acc_trade_price": (volume * price / 3).quantize(EIGHT_DECIMALS),
        "acc_trade_price_24h": (volume * price).quantize(EIGHT_DECIMALS),
        "acc_trade_volume": (volume / 3).quantize(EIGHT_DECIMALS), "acc_trade_volume_24h": volume,
        "highest_52_week_price": price * 2,
        "highest_52_week_date": "2024-03-14", "lowest_52_week_price": previous / 2,
        "lowest_52_week_date": "2023-09-11", "timestamp": timestamp,
    }


def make_upbit_orderbook(market: str, price: Decimal, timestamp: int = QUOTE_EPOCH_MS) -> dict[str, Any]:
    """Given a market and its last price, return an order book in the recorded shape: best level
    first, asks one tick above the price and up, bids at the price and down."""
    tick = PRICE_QUANTUM[_quote_of(market)]
    units = [{"ask_price": price + tick * (level + 1), "bid_price": max(price - tick * level, tick),
              "ask_size": Decimal("0.24078656"), "bid_size": Decimal("0.00718341")}
             for level in range(ORDERBOOK_LEVELS)]
    return {"market": market, "timestamp": timestamp, "total_ask_size": Decimal("8.83621228"),
            "total_bid_size": Decimal("2.43976741"), "orderbook_units": units, "level": 0}
def upbit_minute_row(market: str, unit: int, start: datetime, seed: int = 0) -> dict[str, Any]:
    """Given a market, a minute unit and a candle start (naive UTC), return its minute candle; the
    values are a function of (seed, market, start) alone, so any page can be computed on its own."""
    quote = _quote_of(market)
    rng = random.Random(stable_seed(seed, f"{market}|{unit}|{start.isoformat()}"))
    low_bound, high_bound = BASE_PRICE_RANGE[quote]
    open_price = _price(rng.uniform(low_bound, high_bound), quote)
    close = _price(float(open_price) * rng.uniform(0.99, 1.01), quote)
    high = max(_price(float(max(open_price, close)) * rng.uniform(1.0, 1.01), quote), open_price, close)
    low = min(_price(float(min(open_price, close)) * rng.uniform(0.99, 1.0), quote), open_price, close)
    volume = Decimal(str(rng.uniform(0.001, 5.0))).quantize(EIGHT_DECIMALS)
    return {
        "market": market,
        "candle_date_time_utc": start.strftime(CANDLE_TIME_FORMAT),
        "candle_date_time_kst": (start + timedelta(hours=9)).strftime(CANDLE_TIME_FORMAT),
        "opening_price": open_price,
        "high_price": high,
        "low_price": low,
        "trade_price": close,
        "timestamp": int((start.replace(tzinfo=timezone.utc) + timedelta(minutes=unit)).timestamp() * 1000) - 1,
        "candle_acc_trade_price": (volume * close).quantize(EIGHT_DECIMALS),
        "candle_acc_trade_volume": volume,
        "unit": unit,
    }


def make_upbit_minute_candles(
    market: str, unit: int, start: datetime, end: datetime, seed: int = 0, gap_every: int | None = None
) -> list[dict[str, Any]]:
    """Given a market, a minute unit and a naive UTC range [start, end), return its minute candles,
    oldest first; every ``gap_every``-th interval (counted from ``start``) has no candle (no trade)."""
    rows, moment, index = [], start, 0
    while moment < end:
        index += 1
        if not (gap_every and index % gap_every == 0):
            rows.append(upbit_minute_row(market, unit, moment, seed))
        moment += timedelta(minutes=unit)
    return rows


def make_upbit_period_candles(market: str, starts: Iterable[date], seed: int = 0) -> list[dict[str, Any]]:
    """Given a market and the first days of weeks, months or years, return one candle per period
    with ``first_day_of_period``, dated at 00:00 UTC of that day, oldest first."""
    rows = []
    for day in starts:
        row = upbit_minute_row(market, 1, datetime(day.year, day.month, day.day), seed)
        del row["unit"]
        row["first_day_of_period"] = day.isoformat()
        rows.append(row)
    return rows


@dataclass(frozen=True)
class GeneratedSeries:
    """A minute series computed on demand: every ``unit`` minutes in [start, end) but the gaps."""

    market: str
    unit: int
    start: datetime
    end: datetime
    seed: int = 0
    gap_every: int | None = None

    def page(self, before: datetime | None, count: int) -> list[dict[str, Any]]:
        """Given an exclusive ``to`` (None: no bound) and a count, return the page, newest first."""
        step = timedelta(minutes=self.unit)
        limit = self.end if before is None else min(before, self.end)
        index = -(-(limit - self.start) // step) - 1  # the last slot starting before limit
        rows = []
        while index >= 0 and len(rows) < count:
            if not (self.gap_every and (index + 1) % self.gap_every == 0):
                rows.append(upbit_minute_row(self.market, self.unit, self.start + step * index, self.seed))
            index -= 1
        return rows


# --------------------------------------------------------------------------- parsing


def parse_to(value: str) -> datetime | None:
    """Given a ``to`` value (``...Z``, ``YYYY-MM-DD HH:MM:SS`` = UTC, or ``...+09:00``),
    return it as a naive UTC datetime, or None if it cannot be parsed."""
    text = value
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def parse_count(value: str | None) -> int | None:
    """Given the ``count`` parameter (or None), return the count to serve (cut to 200), or
    None if it is not a positive integer."""
    if value is None:
        return DEFAULT_COUNT
    try:
        count = int(value)
    except ValueError:
        return None
    return min(count, MAX_COUNT) if count >= 1 else None


def _candle_start(candle: dict[str, Any]) -> datetime:
    """Given a candle dict, return its start as a naive UTC datetime."""
    return datetime.strptime(candle["candle_date_time_utc"], CANDLE_TIME_FORMAT)


def _error(status: int, name: int | str, message: str) -> Response:
    """Given a status, an error name and a message, return an Upbit error answer."""
    return json_response(status, {"error": {"name": name, "message": message}})


def _is_true(value: str | None) -> bool:
    """Given a query value, return whether it says true."""
    return value is not None and value.strip().lower() == "true"


# --------------------------------------------------------------------------- the fake


class FakeUpbit(FakeService):
    """A fake Upbit quotation API on loopback. See the module docstring for choices."""

    MALFORMED_BODY = b'[{"market": '
    HUGE_NUMBER_FIELD = "opening_price"

    def __init__(
        self,
        markets: list[dict[str, Any]] | None = None,
        candles: dict[str, list[dict[str, Any]]] | None = None,
        latency: float = 0.0,
        rate_limit: int | None = DEFAULT_RATE_LIMIT,
        block_after_429s: int | None = None,
        blocked: bool = False,
    ) -> None:
        super().__init__(latency)
        self._lock = threading.RLock()
        self._series: dict[tuple[str, str], list[tuple[datetime, dict[str, Any]]] | GeneratedSeries] = {}
        for market, rows in (candles or {}).items():
            self._series[(market, "days")] = self._sorted_candles(rows)
        if markets is None:
            markets = [default_market_row(market) for market in sorted({market for market, _ in self._series})]
        self._markets = [dict(row) for row in markets]
        self.rate_limit = rate_limit
        self._group_limiter = SlidingWindowLimiter(rate_limit, 1.0)
        self._origin_limiter = SlidingWindowLimiter(
            None if rate_limit is None else ORIGIN_RATE_LIMIT, ORIGIN_WINDOW_SECONDS
        )
        self.block_after_429s = block_after_429s
        self.blocked = blocked
        self.blocks = 1 if blocked else 0
        self._recent_429s: deque[float] = deque()
        self._tickers: dict[str, dict[str, Any]] = {}
        self._orderbooks: dict[str, dict[str, Any]] = {}
        self.omit_quotes: set[str] = set()

    # ---- mutators

    def set_markets(self, markets: list[dict[str, Any]]) -> None:
        """Given market rows, replace the market list (unlisted markets' candles then 404)."""
        with self._lock:
            self._markets = [dict(row) for row in markets]

    def set_candles(self, market: str, candles: list[dict[str, Any]], kind: str = "days") -> None:
        """Given a market, its candles of one kind (``days``, ``minutes/5``, ``weeks``...; any order),
        replace them; list the market if needed."""
        with self._lock:
            self._series[(market, kind)] = self._sorted_candles(candles)
            if market not in self._listed_codes():
                self._markets.append(default_market_row(market))

    def set_generated(self, series: GeneratedSeries) -> None:
        """Given a GeneratedSeries, serve it as the market's ``minutes/{unit}``; list the market if needed."""
        with self._lock:
            self._series[(series.market, f"minutes/{series.unit}")] = series
            if series.market not in self._listed_codes():
                self._markets.append(default_market_row(series.market))

    def remove_market(self, market: str) -> None:
        """Given a market code, delist it: gone from the market list, its candles 404."""
        with self._lock:
            self._markets = [row for row in self._markets if row["market"] != market]
            self._series = {key: rows for key, rows in self._series.items() if key[0] != market}

    def set_ticker(self, market: str, **fields: Any) -> dict[str, Any]:
        """Given a market and ticker fields, set its ticker: ``make_upbit_ticker``'s with those
        fields replaced (a field set to ``...`` is removed); list the market if needed. Return it."""
        with self._lock:
            ticker = {**self._tickers.get(market, make_upbit_ticker(market)), **fields}
            self._tickers[market] = {key: value for key, value in ticker.items() if value is not ...}
            if market not in self._listed_codes():
                self._markets.append(default_market_row(market))
            return dict(self._tickers[market])

    def set_orderbook(self, market: str, orderbook: dict[str, Any] | None) -> None:
        """Given a market and an order-book object (None: derive it from the ticker), serve it."""
        with self._lock:
            if orderbook is None:
                self._orderbooks.pop(market, None)
            else:
                self._orderbooks[market] = dict(orderbook)

    def ticker(self, market: str) -> dict[str, Any]:
        """Given a market, return the ticker it is answered with."""
        with self._lock:
            return dict(self._tickers.get(market) or make_upbit_ticker(market))

    def orderbook(self, market: str) -> dict[str, Any]:
        """Given a market, return the order book it is answered with."""
        with self._lock:
            stored = self._orderbooks.get(market)
            price = self.ticker(market).get("trade_price")
            price = price if isinstance(price, (int, Decimal)) else PRICE_QUANTUM[_quote_of(market)]
            return dict(stored or make_upbit_orderbook(market, Decimal(price)))

    def set_blocked(self, blocked: bool) -> None:
        """Enter (True) or leave (False) blocked mode, where everything answers 418."""
        with self._lock:
            if blocked and not self.blocked:
                self.blocks += 1
            self.blocked = blocked
            self._recent_429s.clear()

    # ---- admission: blocks and rate limits

    def _admit(self, request: Request) -> Admission:
        """Given a request, return a 418/429 rejection or acceptance, with the limit headers."""
        group = ROUTE_GROUPS.get(request.path, DEFAULT_GROUP)
        with self._lock:
            if self.blocked:
                return Admission(self._blocked_response(), self._limit_headers(group, 0))
        if request.header("origin") is not None:
            accepted, remaining = self._origin_limiter.acquire((request.client, ORIGIN_GROUP_KEY))
        else:
            accepted, remaining = self._group_limiter.acquire((request.client, group))
        headers = self._limit_headers(group, REMAINING_WHEN_UNLIMITED if remaining is None else remaining)
        if accepted:
            return Admission(None, headers)
        self._note_429()
        return Admission(text_response(429, TOO_MANY_REQUESTS_TEXT), headers)

    @staticmethod
    def _limit_headers(group: str, remaining: int) -> dict[str, str]:
        """Given a group and what is left of its window, return the rate-limit headers."""
        return {"Remaining-Req": f"group={group}; min={REMAINING_MIN}; sec={remaining}", "limit-by-ip": "Yes"}

    def _blocked_response(self) -> Response:
        """Return the 418 answer naming the current block duration."""
        seconds = FIRST_BLOCK_SECONDS * 2 ** max(self.blocks - 1, 0)
        return text_response(418, BLOCKED_TEXT.format(seconds=seconds))

    def _note_429(self) -> None:
        """Record a 429 answer; enter blocked mode after ``block_after_429s`` within 10 s."""
        now = time.monotonic()
        with self._lock:
            self._recent_429s.append(now)
            while now - self._recent_429s[0] >= BLOCK_COUNT_WINDOW_SECONDS:
                self._recent_429s.popleft()
            if self.block_after_429s is not None and len(self._recent_429s) >= self.block_after_429s:
                self.set_blocked(True)

    # ---- routes

    def _route(self, request: Request, stuck_cursor: bool) -> Response:
        """Given an admitted request, return the normal answer for its route."""
        if request.method == "GET" and request.path == MARKETS_PATH:
            return self._answer_markets(request)
        if request.method == "GET" and request.path[len(CANDLE_PREFIX):] in CANDLE_KINDS \
                and request.path.startswith(CANDLE_PREFIX):
            return self._answer_candles(request, stuck_cursor)
        if request.method == "GET" and request.path == TICKER_PATH:
            return self._answer_tickers(request)
        if request.method == "GET" and request.path == ORDERBOOK_PATH:
            return self._answer_orderbooks(request)
        return _error(404, "not_found", NOT_FOUND_ROUTE_MESSAGE)

    def _empty_response(self, request: Request) -> Response:
        """Return 200 ``[]``."""
        return json_response(200, [])

    def _internal_error(self) -> Response:
        """Return an HTTP 500 in Upbit's error shape."""
        return _error(500, 500, "Internal server error")

    def _creeping_response(self, request: Request) -> Response:
        """Given a request, answer its normal page; with a ``to``, every candle re-dated one second
        before the previous one, starting one second before ``to``."""
        response = self._route(request, stuck_cursor=False)
        before = parse_to(request.query.get("to") or "") if request.path.startswith(CANDLE_PREFIX) else None
        if before is None or response.status != 200:
            return response
        rows = json.loads(response.body, parse_float=Decimal)
        for index, row in enumerate(rows, 1):
            moment = before - timedelta(seconds=index)
            row["candle_date_time_utc"] = moment.strftime(CANDLE_TIME_FORMAT)
            row["candle_date_time_kst"] = (moment + timedelta(hours=9)).strftime(CANDLE_TIME_FORMAT)
        return json_response(200, rows, dumps_with_decimals)

    def _error_with_message(self, request: Request, message: str) -> Response:
        """Given a request and a message, return Upbit's HTTP 400 error answer carrying it."""
        return _error(400, "invalid_parameter", message)

    def _answer_markets(self, request: Request) -> Response:
        """Given a market list request, return every listed market in a shuffled order."""
        details = _is_true(request.query.get("is_details")) or _is_true(request.query.get("isDetails"))
        with self._lock:
            rows = [self._market_answer_row(row, details) for row in self._markets]
        return json_response(200, self._shuffled(rows), dumps_with_decimals)

    @staticmethod
    def _market_answer_row(row: dict[str, Any], details: bool) -> dict[str, Any]:
        """Given a stored market row, return it as answered with or without details."""
        if not details:
            return {key: row[key] for key in BASIC_MARKET_KEYS if key in row}
        answer = dict(row)
        answer.setdefault("market_event", default_market_event())
        return answer

    @staticmethod
    def _shuffled(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Given rows, return them in a deterministic shuffled order that is never sorted by
        market code (when there are at least two distinct codes)."""
        result = list(rows)
        random.Random(MARKET_SHUFFLE_SEED).shuffle(result)
        codes = [row.get("market", "") for row in result]
        if len(set(codes)) > 1 and codes == sorted(codes):
            result = result[1:] + result[:1]
        return result

    def _answer_candles(self, request: Request, stuck_cursor: bool) -> Response:
        """Given a candles request of any kind, return up to ``count`` candles starting strictly
        before ``to``, newest first, or the matching 400/404."""
        market = request.query.get("market")
        if not market:
            return _error(400, 400, MISSING_PARAMETER_MESSAGE)
        count = parse_count(request.query.get("count"))
        to_text = None if stuck_cursor else request.query.get("to")
        before = parse_to(to_text) if to_text else None
        if count is None or (to_text and before is None):
            return _error(400, 400, TYPE_MISMATCH_MESSAGE)
        with self._lock:
            if market not in self._listed_codes():
                return _error(404, 404, CODE_NOT_FOUND_MESSAGE)
            stored = self._series.get((market, request.path[len(CANDLE_PREFIX):]), [])
        if isinstance(stored, GeneratedSeries):
            return json_response(200, stored.page(before, count), dumps_with_decimals)
        eligible = [row for start, row in stored if before is None or start < before]
        page = [self._candle_answer_row(row) for row in reversed(eligible[-count:])]
        return json_response(200, page, dumps_with_decimals)

    def _answer_tickers(self, request: Request) -> Response:
        """Given a ticker/all request, return the tickers of every listed market of its quote
        currencies (listing order), or the matching 400/404."""
        currencies = [code for code in (request.query.get("quote_currencies") or "").split(",") if code]
        if not currencies:
            return _error(400, 400, MISSING_PARAMETER_MESSAGE)
        with self._lock:
            listed = [row["market"] for row in self._markets]
            if not set(currencies) <= {market.split("-", 1)[0] for market in listed}:
                return _error(404, 404, CODE_NOT_FOUND_MESSAGE)
            markets = [market for market in listed
                       if market.split("-", 1)[0] in currencies and market not in self.omit_quotes]
            rows = [self.ticker(market) for market in markets]
        return json_response(200, rows, dumps_with_decimals)

    def _answer_orderbooks(self, request: Request) -> Response:
        """Given an orderbook request, return one order book per market asked, or the 400/404."""
        markets = [code for code in (request.query.get("markets") or "").split(",") if code]
        if not markets:
            return _error(400, 400, MISSING_PARAMETER_MESSAGE)
        with self._lock:
            if not set(markets) <= self._listed_codes():
                return _error(404, 404, CODE_NOT_FOUND_MESSAGE)
            rows = [self.orderbook(market) for market in markets if market not in self.omit_quotes]
        return json_response(200, rows, dumps_with_decimals)

    @staticmethod
    def _candle_answer_row(row: dict[str, Any]) -> dict[str, Any]:
        """Given a stored candle, return it with the reference's keys first, in order."""
        ordered = {key: row[key] for key in CANDLE_KEYS if key in row}
        ordered.update({key: value for key, value in row.items() if key not in ordered})
        return ordered

    # ---- helpers

    def _listed_codes(self) -> set[str]:
        """Return the codes currently in the market list (caller holds the lock)."""
        return {row["market"] for row in self._markets}

    @staticmethod
    def _sorted_candles(rows: list[dict[str, Any]]) -> list[tuple[datetime, dict[str, Any]]]:
        """Given candle dicts in any order, return (start, copy) pairs, oldest first."""
        return sorted(((_candle_start(row), dict(row)) for row in rows), key=lambda pair: pair[0])
