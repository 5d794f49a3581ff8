"""Bounds on backward paging, shared by the collectors: no symbol pages without end.

A page of N distinct daily candles spans at least N days, so it must move the
cursor back by at least N days; and a window of D days needs about D / page
size pages, so a symbol may take that many, plus a small margin, and no more.
"""

from datetime import timedelta

from wombat_collect.errors import ExchangeError

PAGE_MARGIN = 2  # pages beyond what the window needs: the running candle, a short page, rounding
PERIOD = timedelta(days=1)  # daily candles


def page_budget(first, last, page_size):
    """Given a window's first and last dates and the candles per page, return the most pages it may take."""
    days = max((last - first).days + 1, 1)
    return -(-days // page_size) + PAGE_MARGIN


def check_page_budget(pages, budget, exchange, symbol, first):
    """Given the pages fetched so far and the budget, raise ExchangeError once they exceed it."""
    if pages > budget:
        raise ExchangeError(f"{exchange}: prices of {symbol} took more than {budget} pages for the window "
                            f"from {first:%Y-%m-%d}; the paging cursor is not moving back as it should")


def check_moved_back(bound, oldest, candles, exchange, symbol):
    """Given the time a page had to start before (exclusive), its oldest candle and its number of distinct
    candles, raise ExchangeError if it moved back less than one period per candle."""
    if bound - oldest < candles * PERIOD:
        raise ExchangeError(f"{exchange}: prices of {symbol}: a page of {candles} candles moved back only "
                            f"{bound - oldest} from {bound:%Y-%m-%d %H:%M:%S}; expected at least {candles} days")
