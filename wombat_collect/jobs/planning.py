"""What a prices run collects: the Window of days, and each series' PriceTask with its start."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from wombat_collect.db import store
from wombat_collect.db.connection import connect, database_errors, transaction
from wombat_collect.records import StoredSymbol
from wombat_collect.timeframes import default_backfill_start, utc_midnight


@dataclass(frozen=True)
class Window:
    """Which days `prices` collects: incremental (default), days_back, since or full."""

    kind: str = "incremental"
    days: int | None = None
    since: date | None = None

    def describe(self):
        return {"incremental": "incremental", "days_back": f"last {self.days} days",
                "since": f"since {self.since}", "full": "full history"}[self.kind]


@dataclass(frozen=True)
class PriceTask:
    """One series to collect: a symbol's candles of one timeframe from `start` (None: all history)."""

    symbol: StoredSymbol
    timeframe: str
    start: datetime | None


def plan_tasks(dsn, targets, window, timeframes, backfill_days, now, refetch_newest=False):
    """Given symbols, a Window and timeframe names, return the PriceTasks, symbol by symbol.

    Incremental: a series starts at the end of its oldest fetched range (so a hole
    a killed run left behind is fetched again), else at its newest stored candle
    (rows stored before fetched_range existed), else at its default backfill
    (timeframes.default_backfill_start).
    """
    starts = {name: plan_starts(dsn, targets, window, name, backfill_days, now, refetch_newest)
              for name in timeframes}
    return [PriceTask(item, name, starts[name][item.id]) for item in targets for name in timeframes]


def plan_starts(dsn, targets, window, timeframe, backfill_days, now, refetch_newest=False):
    """Given symbols, a Window and one timeframe, return {symbol id: first moment to fetch, or None for all}.

    `refetch_newest` (adjusted histories) starts no later than the newest stored candle.
    """
    if window.kind == "full":
        return {item.id: None for item in targets}
    if window.kind == "since":
        return {item.id: utc_midnight(window.since) for item in targets}
    if window.kind == "days_back":
        return {item.id: utc_midnight(now.date() - timedelta(days=window.days)) for item in targets}
    ids = [item.id for item in targets]
    connection = connect(dsn)
    try:
        with database_errors("reading the newest stored candles", connection), \
                transaction(connection, long_running=True):
            covered = store.coverage_ends(connection, ids, timeframe)
            newest = store.newest_timestamps(connection, ids, timeframe)
    finally:
        connection.close()
    fallback = default_backfill_start(now, timeframe, backfill_days)
    starts = {item.id: covered.get(item.id) or newest.get(item.id) or fallback for item in targets}
    if refetch_newest:  # the newest stored row is asked again: a changed one shows a new adjustment basis
        starts = {key: min(filter(None, (start, newest.get(key))), default=None) for key, start in starts.items()}
    return starts
