"""Exchange collectors. Every module here exposes the same names, so jobs never
branch on the exchange:

    EXCHANGE            ExchangeInfo for the `exchange` row
    MARKETS             the market names `--market` accepts
    SYMBOL_PATTERN      a compiled regex a `--symbol` of this exchange fully matches
    SYMBOL_EXAMPLE      a symbol shown in the error when none matches
    LISTING_GROUPS      the markets each listing download covers (None: all at once)
    REBASE_ON_CHANGE    whether changed history means a new adjustment basis
    TIMEFRAMES          {timeframe name: the exchange's endpoint or period code} for what it offers
    credentials_problem(settings)                -> None, or the line naming missing credentials prices need
    open_client(settings)                        -> HttpClient (raise ConfigError early; listing needs no keys)
    fetch_symbols(client, group)                 -> iterator of SymbolRecord
    fetch_candles(client, symbol, timeframe, start, end)
                                                 -> iterator of Candle | RejectedCandle | Covered: every
                                                    candle from `start` (aligned down to its period; None:
                                                    all history) to `end` (None: now), stored at the start
                                                    of its period in UTC (timeframes.py), each Covered
                                                    marker promising all candles of its range were yielded
                                                    before it (jobs commit at markers: fetched_range)
    fetch_daily_candles(client, symbol, start)   -> fetch_candles of 1d from a date, markers left out
    candle_closes_at(timestamp, timeframe)       -> when that candle is final
    quotes_unavailable(client)                   -> why no quotes can be had (None: they can)
    fetch_quotes(client, symbols)                -> list of Quote | RejectedQuote (symbols missing
                                                    from the exchange's answer are left out)
"""

import importlib
from concurrent.futures import ThreadPoolExecutor

EXCHANGE_CODES = ("upbit", "kis")


def load_collector(code):
    """Given an exchange code, return its collector module (imported on first use)."""
    if code not in EXCHANGE_CODES:
        raise KeyError(code)
    return importlib.import_module(f"wombat_collect.collectors.{code}")


def chunks(items, size):
    """Given a sequence and a chunk size, return consecutive lists of at most `size` items."""
    return [list(items[start:start + size]) for start in range(0, len(items), size)]


def map_concurrently(fetch, batches, workers):
    """Given fetch(batch) -> list, call it for every batch on up to `workers` threads.

    Return the concatenated results in batch order. Raise the first batch's error
    (in batch order) if any batch failed; the pacers of the client keep the rate.
    """
    if len(batches) <= 1 or workers <= 1:
        return [item for batch in batches for item in fetch(batch)]
    executor = ThreadPoolExecutor(max_workers=min(workers, len(batches)), thread_name_prefix="quotes")
    try:
        futures = [executor.submit(fetch, batch) for batch in batches]
        return [item for future in futures for item in future.result()]
    finally:
        executor.shutdown(wait=True, cancel_futures=True)  # after a failure, batches not begun are dropped
