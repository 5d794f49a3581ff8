"""The jobs: collect symbols, collect prices of every timeframe. Independent of the exchange.

A job takes a collector module (see collectors/__init__.py), an HttpClient and
a database DSN; it never branches on which exchange it is given. A prices run,
module by module:

- database: migrate, create the exchange rows (prepare_database), hand over to the backend;
- symbols: the symbols job (collect_symbols), and which stored symbols to collect (select_symbols);
- planning: the Window of days, each series' PriceTask and its incremental start (plan_tasks);
- prices: the run (collect_prices): a pool of connections, a worker per task, each task's outcome;
- backfill: `prices --worker` (collect_backfill): the units of a backfill shared by processes, claimed one by one;
- streaming: one series fetched and written chunk by chunk, reconnects, re-basing (stream_series);
- results: the outcome records (JobResult, SymbolOutcome), PriceOptions, and failure_of.

The names below are re-exported so that `jobs.<name>` keeps working; code inside
wombat_collect imports each name from the module that owns it.
"""

from wombat_collect.jobs.database import backend_hint, hand_over_database, prepare_database
from wombat_collect.jobs.planning import PriceTask, Window, plan_starts, plan_tasks
from wombat_collect.jobs.prices import (
    TIMEOUT_STREAK,
    TimeoutStreak,
    TimeoutStreakReached,
    collect_prices,
    collect_symbol_prices,
    open_pool,
)
from wombat_collect.jobs.results import (
    LISTING_STOPPERS,
    RUN_STOPPERS,
    JobResult,
    PriceOptions,
    StoppedEarly,
    SymbolOutcome,
    failure_of,
)
from wombat_collect.jobs.streaming import (
    CHUNK_CANDLES,
    RECONNECT_DELAYS,
    CannotReconnect,
    fetch_valid_candles,
    fetched_range,
    pooled_connection,
    sort_candle,
    stream_series,
    write_candles,
)
from wombat_collect.jobs.symbols import (
    ListingRefused,
    collect_listing_if_empty,
    collect_symbols,
    select_symbols,
    valid_symbols,
)

__all__ = [
    "CHUNK_CANDLES", "LISTING_STOPPERS", "RECONNECT_DELAYS", "RUN_STOPPERS", "TIMEOUT_STREAK",
    "CannotReconnect", "JobResult", "ListingRefused", "PriceOptions", "PriceTask", "StoppedEarly", "SymbolOutcome",
    "TimeoutStreak", "TimeoutStreakReached", "Window",
    "backend_hint", "collect_listing_if_empty", "collect_prices", "collect_symbol_prices", "collect_symbols",
    "fetch_valid_candles", "fetched_range", "failure_of", "hand_over_database", "open_pool", "plan_starts",
    "plan_tasks", "pooled_connection", "prepare_database", "select_symbols", "sort_candle", "stream_series",
    "valid_symbols", "write_candles",
]
