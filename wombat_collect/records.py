"""The typed records that flow from collectors to jobs to the database."""

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Context, Decimal

DAILY = "1d"
STORED_EXPONENT = Decimal("1e-8")  # pricedata's numeric(20,8) prices and numeric(30,8) volumes keep 8 decimals
STORED_DIGITS_LIMIT = 30  # integer digits beyond any pricedata column: such a value is left for validation to reject
STORED_CONTEXT = Context(prec=STORED_DIGITS_LIMIT + 10)  # room for 30 integer digits and 8 decimals
CANDLE_VALUES = ("open", "high", "low", "close", "volume", "quote_volume")


@dataclass(frozen=True)
class ExchangeInfo:
    """An `exchange` row: what the backend knows an exchange by."""

    code: str
    name: str
    country: str
    timezone: str


@dataclass(frozen=True)
class SymbolRecord:
    """One tradable security or market, as an exchange lists it (a `symbol` row)."""

    symbol: str
    base_asset: str
    quote_asset: str
    market: str
    symbol_type: str
    price_precision: int
    quantity_precision: int
    min_order_size: Decimal | None = None
    max_order_size: Decimal | None = None


@dataclass(frozen=True)
class StoredSymbol:
    """A `symbol` row as read back from the database."""

    id: int
    symbol: str
    market: str | None
    is_active: bool


@dataclass(frozen=True)
class Candle:
    """One OHLCV candle (a `pricedata` row); `timestamp` is the start of its period in UTC
    (00:00 UTC of the trade date for daily candles; see timeframes.py).

    `corporate_action` is set when the exchange flags a split, rights issue or
    similar on that day, which re-bases an adjusted price history.

    Prices and volumes are held as the database stores them: rounded to 8
    decimals, half away from zero, as PostgreSQL rounds numeric(p,8). So
    validation judges exactly what will be written (0.000000004 is 0, and
    999999999999.999999999 is 10^12).
    """

    timestamp: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal | None
    corporate_action: bool = False

    def __post_init__(self):
        for name in CANDLE_VALUES:
            object.__setattr__(self, name, stored_value(getattr(self, name)))


def stored_value(value):
    """Given a Decimal (or None), return it rounded as a numeric(p,8) column stores it.

    A non-finite value, or one too large for any column, is returned as is:
    validation rejects it.
    """
    if not isinstance(value, Decimal) or not value.is_finite() or value.adjusted() >= STORED_DIGITS_LIMIT:
        return value
    return value.quantize(STORED_EXPONENT, rounding=ROUND_HALF_UP, context=STORED_CONTEXT)


@dataclass(frozen=True)
class UpsertCounts:
    """What an upsert did: rows inserted, updated and left unchanged."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    def __add__(self, other):
        return UpsertCounts(
            self.inserted + other.inserted,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
        )

    @property
    def total(self):
        return self.inserted + self.updated + self.unchanged


@dataclass(frozen=True)
class Covered:
    """A collector's promise: every candle in [start, end) has been yielded before this marker.

    `start` None means from the beginning of the exchange's history. Jobs commit
    at these markers and record the range in `fetched_range`.
    """

    start: datetime | None
    end: datetime


@dataclass(frozen=True)
class RejectedCandle:
    """A candle the exchange sent but that could not be read; counted, never stored."""

    reason: str


@dataclass(frozen=True)
class Quote:
    """The latest quote of one symbol (a `realtime_prices` row).

    Prices are the last trade, the best bid and the best ask; `volume_24h` is in
    base units (KRX: the day's accumulated volume); `change_rate` is the change
    against the previous close in percent, rounded to 4 decimals; `quoted_at`
    is the exchange's quote time, or the time of the answer where it gives none.
    """

    symbol: str
    current: Decimal
    bid: Decimal | None
    ask: Decimal | None
    volume_24h: Decimal | None
    change_rate: Decimal | None
    quoted_at: datetime


@dataclass(frozen=True)
class RejectedQuote:
    """A quote the exchange sent but that could not be read; counted, never stored."""

    symbol: str
    reason: str
