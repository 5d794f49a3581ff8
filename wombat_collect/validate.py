"""Checks every candle and listed symbol passes before it may be written."""

import dataclasses
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal

EARLIEST_SANE_DATE = datetime(1980, 1, 1, tzinfo=timezone.utc)  # before any KRX/Upbit history we store
PRICE_LIMIT = Decimal("1e12")  # NUMERIC(20,8) holds less than 10^12
VOLUME_LIMIT = Decimal("1e22")  # NUMERIC(30,8) holds less than 10^22
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1: never part of a code or name
SYMBOL_TEXT_FIELDS = ("base_asset", "quote_asset", "market", "symbol_type")  # names: control characters stripped


def candle_problem(candle, now):
    """Given a Candle and the current time, return why it must not be stored, or None.

    A sane candle starts at 00:00 UTC, between 1980 and tomorrow, has positive
    prices with low <= open, close <= high, and non-negative volumes that fit
    the backend's columns. A Candle holds its values as stored (rounded to 8
    decimals, see records.Candle), so these rules judge what would be written.
    """
    day = f"{candle.timestamp:%Y-%m-%d}"
    if candle.timestamp.utcoffset() is None or (candle.timestamp.hour, candle.timestamp.minute) != (0, 0):
        return f"{day}: candle does not start at 00:00 UTC"
    if not EARLIEST_SANE_DATE <= candle.timestamp <= now + timedelta(days=1):
        return f"{day}: date outside {EARLIEST_SANE_DATE:%Y-%m-%d}..tomorrow"
    prices = (candle.open, candle.high, candle.low, candle.close)
    if any(not price.is_finite() or price <= 0 or price >= PRICE_LIMIT for price in prices):
        return f"{day}: price not positive or out of range"
    if not candle.low <= min(candle.open, candle.close) or not max(candle.open, candle.close) <= candle.high:
        return f"{day}: prices violate low <= open, close <= high"
    volumes = (candle.volume, candle.quote_volume if candle.quote_volume is not None else Decimal(0))
    if any(not volume.is_finite() or volume < 0 or volume >= VOLUME_LIMIT for volume in volumes):
        return f"{day}: volume negative or out of range"
    return None


def symbol_problem(record):
    """Given a listed SymbolRecord, return why it must not be stored, or None.

    A code holding a NUL or any other control character is refused (PostgreSQL
    cannot store a NUL, and such a code is no exchange's).
    """
    if not isinstance(record.symbol, str) or not record.symbol.strip():
        return f"empty symbol code: {record.symbol!r}"
    if CONTROL_CHARACTERS.search(record.symbol):
        return f"control character in symbol code {ascii(record.symbol)}"
    return None


def clean_symbol(record):
    """Given a SymbolRecord that passed symbol_problem, return it with control characters stripped from its names."""
    changes = {name: CONTROL_CHARACTERS.sub("", getattr(record, name)) for name in SYMBOL_TEXT_FIELDS
               if isinstance(getattr(record, name), str)}
    return dataclasses.replace(record, **changes)
