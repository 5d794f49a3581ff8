"""Checks every candle, listed symbol and quote passes before it may be written."""

import dataclasses
import re
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

from wombat_collect.timeframes import DAILY, is_on_grid, timeframe

EARLIEST_SANE_DATE = datetime(1980, 1, 1, tzinfo=timezone.utc)  # before any KRX/Upbit history we store
PRICE_LIMIT = Decimal("1e12")  # NUMERIC(20,8) holds less than 10^12
VOLUME_LIMIT = Decimal("1e22")  # NUMERIC(30,8) holds less than 10^22
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1: never part of a code or name
SYMBOL_TEXT_FIELDS = ("base_asset", "quote_asset", "market", "symbol_type")  # names: control characters stripped
QUOTE_LIMIT = Decimal("1e12")  # realtime_prices: NUMERIC(20,8) prices and volume_24h
CHANGE_RATE_LIMIT = Decimal("1e4")  # realtime_prices.change_rate NUMERIC(8,4) holds less than 10^4
CHANGE_RATE_QUANTUM = Decimal("0.0001")  # the column's 4 decimals
GRID_RULES = {
    "minute": "whole {length} minutes UTC",
    "day": "00:00 UTC",
    "week": "a Monday 00:00 UTC",
    "month": "the 1st 00:00 UTC",
    "year": "1 January 00:00 UTC",
}


def candle_problem(candle, now, timeframe_name=DAILY):
    """Given a Candle, the current time and its timeframe, return why it must not be stored, or None.

    A sane candle starts on its timeframe's grid (timeframes.py), between 1980
    and tomorrow, has positive prices with low <= open, close <= high, and
    non-negative volumes that fit the backend's columns. A Candle holds its
    values as stored (rounded to 8 decimals, see records.Candle), so these
    rules judge what would be written.
    """
    label = candle_label(candle.timestamp, timeframe_name)
    if candle.timestamp.utcoffset() is None or not is_on_grid(candle.timestamp, timeframe_name):
        return f"{label}: candle does not start at {grid_rule(timeframe_name)}"
    if not EARLIEST_SANE_DATE <= candle.timestamp <= now + timedelta(days=1):
        return f"{label}: date outside {EARLIEST_SANE_DATE:%Y-%m-%d}..tomorrow"
    prices = (candle.open, candle.high, candle.low, candle.close)
    if any(not price.is_finite() or price <= 0 or price >= PRICE_LIMIT for price in prices):
        return f"{label}: price not positive or out of range"
    if not candle.low <= min(candle.open, candle.close) or not max(candle.open, candle.close) <= candle.high:
        return f"{label}: prices violate low <= open, close <= high"
    volumes = (candle.volume, candle.quote_volume if candle.quote_volume is not None else Decimal(0))
    if any(not volume.is_finite() or volume < 0 or volume >= VOLUME_LIMIT for volume in volumes):
        return f"{label}: volume negative or out of range"
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


def rounded_percent(value):
    """Given a change in percent (Decimal), return it rounded half up to the column's 4 decimals.

    A value too large for the column comes back unrounded (quote_problem rejects it).
    """
    if not value.is_finite() or abs(value) >= CHANGE_RATE_LIMIT:
        return value
    return value.quantize(CHANGE_RATE_QUANTUM, rounding=ROUND_HALF_UP)


def quote_problem(quote):
    """Given a Quote, return why its values do not fit `realtime_prices`, or None.

    A storable quote has a positive current price, non-negative bid, ask and
    24-hour volume (where given), all below 10^12 (NUMERIC(20,8)), a change rate
    between -10^4 and 10^4 (NUMERIC(8,4)) and a timezone-aware quote time.
    """
    if quote.quoted_at.utcoffset() is None:
        return f"{quote.symbol}: quote time has no time zone"
    if not quote.current.is_finite() or not 0 < quote.current < QUOTE_LIMIT:
        return f"{quote.symbol}: current price {quote.current} not positive or out of range"
    for name, value in (("bid price", quote.bid), ("ask price", quote.ask), ("24h volume", quote.volume_24h)):
        if value is not None and (not value.is_finite() or not 0 <= value < QUOTE_LIMIT):
            return f"{quote.symbol}: {name} {value} negative or out of range"
    rate = quote.change_rate
    if rate is not None and (not rate.is_finite() or abs(rate) >= CHANGE_RATE_LIMIT):
        return f"{quote.symbol}: change rate {rate} % does not fit NUMERIC(8,4)"
    return None
def candle_label(moment, timeframe_name):
    """Given a candle's start and timeframe, return how problems name it: the day, plus the time below a day."""
    if timeframe(timeframe_name).unit == "minute":
        return f"{moment:%Y-%m-%d %H:%M} {timeframe_name}"
    return f"{moment:%Y-%m-%d}" if timeframe_name == DAILY else f"{moment:%Y-%m-%d} {timeframe_name}"


def grid_rule(timeframe_name):
    """Given a timeframe, return its grid in words (`whole 5 minutes UTC`, `a Monday 00:00 UTC`)."""
    frame = timeframe(timeframe_name)
    length = int(frame.length.total_seconds() // 60) if frame.unit == "minute" else None
    return GRID_RULES[frame.unit].format(length=length)
