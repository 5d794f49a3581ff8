"""Bounds on paging, shared by the collectors: no symbol pages without end.

A page of N distinct candles of one timeframe spans at least N periods, so it
must move the cursor back by at least N periods; and a window of P periods
needs about P / page size pages, so a symbol may take that many, plus a small
margin, and no more.
"""

from datetime import date, datetime

from wombat_collect.errors import ExchangeError
from wombat_collect.timeframes import DAILY, next_start, period_start, periods_between, utc_midnight

PAGE_MARGIN = 2  # pages beyond what the window needs: the running candle, a short page, rounding


def page_budget(first, last, page_size, timeframe=DAILY):
    """Given a window's first and last moments (or dates), the candles per page and the timeframe,
    return the most pages it may take."""
    first, last = (period_start(as_moment(value), timeframe) for value in (first, last))
    periods = max(periods_between(first, last, timeframe) + 1, 1)
    return -(-periods // page_size) + PAGE_MARGIN


def check_page_budget(pages, budget, exchange, symbol, first):
    """Given the pages fetched so far and the budget, raise ExchangeError once they exceed it."""
    if pages > budget:
        raise ExchangeError(f"{exchange}: prices of {symbol} took more than {budget} pages for the window "
                            f"from {first:%Y-%m-%d}; the paging cursor is not moving back as it should")


def check_moved_back(bound, oldest, candles, exchange, symbol, timeframe=DAILY):
    """Given the time a page had to start before (exclusive), its oldest candle and its number of distinct
    candles, raise ExchangeError if it moved back less than one period of the timeframe per candle."""
    if next_start(oldest, timeframe, candles) > bound:
        raise ExchangeError(f"{exchange}: prices of {symbol}: a page of {candles} candles moved back only "
                            f"{bound - oldest} from {bound:%Y-%m-%d %H:%M:%S}; expected at least {candles} "
                            f"{'days' if timeframe == DAILY else f'periods of {timeframe}'}")


def as_moment(value):
    """Given a date or an aware datetime, return an aware datetime (a date at 00:00 UTC)."""
    return value if isinstance(value, datetime) else utc_midnight(value) if isinstance(value, date) else value
