"""Exchange collectors. Every module here exposes the same names, so jobs never
branch on the exchange:

    EXCHANGE            ExchangeInfo for the `exchange` row
    MARKETS             the market names `--market` accepts
    SYMBOL_PATTERN      a compiled regex a `--symbol` of this exchange fully matches
    SYMBOL_EXAMPLE      a symbol shown in the error when none matches
    LISTING_GROUPS      the markets each listing download covers (None: all at once)
    REBASE_ON_CHANGE    whether changed history means a new adjustment basis
    credentials_problem(settings)                -> None, or the line naming missing credentials prices need
    open_client(settings)                        -> HttpClient (raise ConfigError early; listing needs no keys)
    fetch_symbols(client, group)                 -> iterator of SymbolRecord
    fetch_daily_candles(client, symbol, start)   -> iterator of Candle | RejectedCandle, newest first
    candle_closes_at(timestamp)                  -> when that daily candle is final
"""

import importlib

EXCHANGE_CODES = ("upbit", "kis")


def load_collector(code):
    """Given an exchange code, return its collector module (imported on first use)."""
    if code not in EXCHANGE_CODES:
        raise KeyError(code)
    return importlib.import_module(f"wombat_collect.collectors.{code}")
