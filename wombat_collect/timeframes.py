"""Candle timeframes, named as the backend's price API names them, and their UTC grids.

A timeframe's candle is stored at the start of its period in UTC (pricedata.timestamp):
minutes and hours on whole multiples of their length since midnight UTC; days at
00:00 UTC; weeks on Monday 00:00 UTC; months on the 1st at 00:00 UTC; years on
1 January at 00:00 UTC. The name is stored verbatim in pricedata.timeframe.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

NAMES = ("1m", "3m", "5m", "10m", "15m", "30m", "1h", "4h", "1d", "1w", "1M", "1y")
DAILY = "1d"
DEFAULT_NAMES = (DAILY,)
MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)
WEEK = timedelta(days=7)
CALENDAR_UNITS = ("month", "year")
BACKFILL_CANDLES = 8640  # a first run of ~800 Upbit markets: 800 x 44 pages / 10 req/s = 59 min
MONDAY = 0


@dataclass(frozen=True)
class Timeframe:
    """One timeframe: its name, its unit and, for fixed-length units, its length."""

    name: str
    unit: str  # minute, day, week, month or year
    length: timedelta | None  # None for months and years (calendar lengths)

    def __str__(self):
        return self.name


TIMEFRAMES = {
    **{f"{count}m": Timeframe(f"{count}m", "minute", MINUTE * count) for count in (1, 3, 5, 10, 15, 30)},
    "1h": Timeframe("1h", "minute", MINUTE * 60),
    "4h": Timeframe("4h", "minute", MINUTE * 240),
    "1d": Timeframe("1d", "day", DAY),
    "1w": Timeframe("1w", "week", WEEK),
    "1M": Timeframe("1M", "month", None),
    "1y": Timeframe("1y", "year", None),
}


def timeframe(name):
    """Given a timeframe name (`5m`, `1M`), return its Timeframe. Raise ValueError if unknown."""
    try:
        return TIMEFRAMES[name]
    except KeyError:
        raise ValueError(f"unknown timeframe {name!r} (known: {' '.join(NAMES)})") from None


def parse_names(text):
    """Given a comma-separated list (`1d,1h`), return the names in NAMES order, each once.

    Raise ValueError naming the first unknown one, or if the list is empty.
    """
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError("names no timeframe")
    for name in names:
        timeframe(name)
    return tuple(name for name in NAMES if name in names)


def period_start(moment, name):
    """Given an aware datetime and a timeframe name, return the start of the period holding it (UTC)."""
    frame = timeframe(name)
    moment = moment.astimezone(timezone.utc)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if frame.unit == "minute":
        return midnight + (moment - midnight) // frame.length * frame.length
    if frame.unit == "day":
        return midnight
    if frame.unit == "week":
        return midnight - timedelta(days=midnight.weekday() - MONDAY)
    if frame.unit == "month":
        return midnight.replace(day=1)
    return midnight.replace(month=1, day=1)


def next_start(start, name, periods=1):
    """Given a period start and a timeframe name, return the start `periods` periods later (the end)."""
    frame = timeframe(name)
    if frame.length is not None:
        return start + frame.length * periods
    months = periods * (12 if frame.unit == "year" else 1)
    total = start.year * 12 + start.month - 1 + months
    return start.replace(year=total // 12, month=total % 12 + 1)


def is_on_grid(moment, name):
    """Given an aware datetime and a timeframe name, return whether a candle may start there."""
    return moment.utcoffset() is not None and period_start(moment, name) == moment


def periods_between(earlier, later, name):
    """Given two period starts, return how many whole periods of `name` lie between them."""
    frame = timeframe(name)
    if frame.length is not None:
        return (later - earlier) // frame.length
    months = (later.year - earlier.year) * 12 + later.month - earlier.month
    return months // 12 if frame.unit == "year" else months


def default_backfill_start(now, name, backfill_days):
    """Given the time, a timeframe and WOMBAT_BACKFILL_DAYS, return where a symbol without candles starts.

    Minute and hour timeframes go back BACKFILL_CANDLES periods (about 44 Upbit
    pages); days go back `backfill_days`; weeks, months and years get all history (None).
    """
    frame = timeframe(name)
    if frame.unit == "minute":
        return period_start(now, name) - frame.length * BACKFILL_CANDLES
    if frame.unit == "day":
        return period_start(now, name) - DAY * backfill_days
    return None


def backfill_description(name, backfill_days):
    """Given a timeframe and WOMBAT_BACKFILL_DAYS, return the default backfill in words (docs/data.md, "Timeframes")."""
    frame = timeframe(name)
    if frame.unit == "minute":
        days = frame.length * BACKFILL_CANDLES / DAY
        return f"{days:g} days ({BACKFILL_CANDLES:,} candles)"
    return f"{backfill_days} days" if frame.unit == "day" else "all history"


def utc_midnight(day):
    """Given a date, return 00:00 UTC of it."""
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
