"""The timeframe names and their UTC grids (period start, end, grid check, default backfill)."""

from datetime import datetime, timedelta, timezone

import pytest

from wombat_collect.timeframes import (
    NAMES,
    default_backfill_start,
    is_on_grid,
    next_start,
    parse_names,
    period_start,
    periods_between,
)

UTC = timezone.utc
MOMENT = datetime(2026, 11, 26, 22, 27, 41, tzinfo=UTC)  # a Thursday


@pytest.mark.parametrize(("name", "start", "end"), [
    ("1m", datetime(2026, 11, 26, 22, 27, tzinfo=UTC), datetime(2026, 11, 26, 22, 28, tzinfo=UTC)),
    ("3m", datetime(2026, 11, 26, 22, 27, tzinfo=UTC), datetime(2026, 11, 26, 22, 30, tzinfo=UTC)),
    ("5m", datetime(2026, 11, 26, 22, 25, tzinfo=UTC), datetime(2026, 11, 26, 22, 30, tzinfo=UTC)),
    ("10m", datetime(2026, 11, 26, 22, 20, tzinfo=UTC), datetime(2026, 11, 26, 22, 30, tzinfo=UTC)),
    ("15m", datetime(2026, 11, 26, 22, 15, tzinfo=UTC), datetime(2026, 11, 26, 22, 30, tzinfo=UTC)),
    ("30m", datetime(2026, 11, 26, 22, 0, tzinfo=UTC), datetime(2026, 11, 26, 22, 30, tzinfo=UTC)),
    ("1h", datetime(2026, 11, 26, 22, 0, tzinfo=UTC), datetime(2026, 11, 26, 23, 0, tzinfo=UTC)),
    ("4h", datetime(2026, 11, 26, 20, 0, tzinfo=UTC), datetime(2026, 11, 27, 0, 0, tzinfo=UTC)),
    ("1d", datetime(2026, 11, 26, tzinfo=UTC), datetime(2026, 11, 27, tzinfo=UTC)),
    ("1w", datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC)),
    ("1M", datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
    ("1y", datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
])
def test_period_start_and_next_start_bound_the_period_holding_a_moment(name, start, end):
    assert period_start(MOMENT, name) == start
    assert next_start(start, name) == end
    assert is_on_grid(start, name) and not is_on_grid(start + timedelta(seconds=30), name)


def test_period_start_converts_to_utc_first():
    seoul = timezone(timedelta(hours=9))
    assert period_start(datetime(2026, 11, 30, 8, 0, tzinfo=seoul), "1w") == datetime(2026, 11, 23, tzinfo=UTC)


def test_next_start_counts_calendar_months_and_years():
    assert next_start(datetime(2026, 11, 1, tzinfo=UTC), "1M", 200) == datetime(2043, 7, 1, tzinfo=UTC)
    assert next_start(datetime(2026, 1, 1, tzinfo=UTC), "1y", 3) == datetime(2029, 1, 1, tzinfo=UTC)


def test_periods_between_counts_whole_periods():
    assert periods_between(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC), "1M") == 10
    assert periods_between(datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC), "1w") == 1
    assert periods_between(datetime(2026, 11, 30, tzinfo=UTC), datetime(2026, 11, 30, 1, tzinfo=UTC), "5m") == 12


def test_parse_names_orders_dedupes_and_names_the_bad_one():
    assert parse_names(" 1h,1d ,1h,1M") == ("1h", "1d", "1M")
    with pytest.raises(ValueError, match="unknown timeframe '2h'"):
        parse_names("1d,2h")
    with pytest.raises(ValueError, match="names no timeframe"):
        parse_names(" , ")
    assert parse_names(",".join(NAMES)) == NAMES


@pytest.mark.parametrize(("name", "back"), [
    ("1m", timedelta(days=6)), ("5m", timedelta(days=30)), ("1h", timedelta(days=360)),
    ("4h", timedelta(days=1440)), ("1d", timedelta(days=365)),
])
def test_default_backfill_start_per_timeframe(name, back):
    now = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
    assert default_backfill_start(now, name, 365) == period_start(now, name) - back


def test_default_backfill_start_weeks_and_longer_take_all_history():
    now = datetime(2026, 11, 30, tzinfo=UTC)
    assert [default_backfill_start(now, name, 365) for name in ("1w", "1M", "1y")] == [None, None, None]
