"""Exchange collectors. Every module here exposes the same names, so jobs never
branch on the exchange: CONTRACT below lists them (name, kind, what it returns
or raises). tests/test_collectors.py checks every registered exchange against
it, and docs/development.md "Adding an exchange" shows the same table.

fetch_candles yields every candle from `start` (aligned down to its period;
None: all history) to `end` (None: now), stored at the start of its period in
UTC (timeframes.py), and Covered markers, each promising that all candles of its
range were yielded before it (jobs commit at markers: fetched_range).
"""

import importlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

EXCHANGE_CODES = ("upbit", "kis")  # the registry: a new exchange's module name goes here


@dataclass(frozen=True)
class ContractName:
    """One name every collector module exposes: its kind and what it returns or raises."""

    name: str
    kind: str  # a constant's type (ExchangeInfo, tuple, pattern, str, bool, dict), function or generator
    returns: str
    raises: str = ""


CONTRACT = (
    ContractName("EXCHANGE", "ExchangeInfo", "the `exchange` row (code, name, country, timezone)"),
    ContractName("MARKETS", "tuple", "the market names `--market` accepts"),
    ContractName("SYMBOL_PATTERN", "pattern", "a compiled regex a `--symbol` of this exchange fully matches"),
    ContractName("SYMBOL_EXAMPLE", "str", "a symbol shown in the error when none matches"),
    ContractName("LISTING_GROUPS", "tuple", "the groups one listing download covers (`(None,)`: all at once)"),
    ContractName("REBASE_ON_CHANGE", "bool", "whether a changed stored candle means a new adjustment basis"),
    ContractName("TRADES_EVERY_PERIOD", "bool", "whether every period trades (Upbit); else `gaps` derives the "
                 "trading calendar from the stored candles"),
    ContractName("TIMEFRAMES", "dict", "{timeframe name: the exchange's endpoint or period code} it offers"),
    ContractName("credentials_problem", "function", "`(settings)` -> None, or the line naming the missing "
                 "credentials prices need"),
    ContractName("open_client", "function", "`(settings)` -> an `HttpClient` (listing needs no keys)",
                 "ConfigError"),
    ContractName("fetch_symbols", "generator", "`(client, group)` -> `SymbolRecord`s of one listing group",
                 "ExchangeError"),
    ContractName("fetch_candles", "generator", "`(client, symbol, timeframe, start, end)` -> `Candle`, "
                 "`RejectedCandle` and `Covered`, from `start` (None: all history) to `end` (None: now)",
                 "SymbolNotFound (or yields no candle) for an unknown symbol; ExchangeError"),
    ContractName("fetch_daily_candles", "function", "`(client, symbol, start)` -> an iterator of the 1d "
                 "candles from a date, without markers", "as fetch_candles"),
    ContractName("candle_closes_at", "function", "`(timestamp, timeframe)` -> when that candle is final: "
                 "after its start, no later than the next period's start"),
    ContractName("quotes_unavailable", "function", "`(client)` -> why no quotes can be had, or None"),
    ContractName("fetch_quotes", "function", "`(client, symbols)` -> a list of `Quote` and `RejectedQuote` "
                 "(symbols missing from the answer are left out)", "ExchangeError"),
)


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
