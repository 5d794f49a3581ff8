"""The typed records that flow from collectors to jobs to the database."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

DAILY = "1d"


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
    """One daily OHLCV candle (a `pricedata` row); `timestamp` is 00:00 UTC of the trade date.

    `corporate_action` is set when the exchange flags a split, rights issue or
    similar on that day, which re-bases an adjusted price history.
    """

    timestamp: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal | None
    corporate_action: bool = False


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
class RejectedCandle:
    """A candle the exchange sent but that could not be read; counted, never stored."""

    reason: str
