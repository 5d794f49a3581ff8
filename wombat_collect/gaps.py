"""`wombat-collect gaps`: find the missing candles inside each stored series, and refill exactly them.

A period of a symbol's series is missing when it lies between the series'
first and newest stored candle, the market traded in it, and no candle is
stored for it. Markets whose collector says TRADES_EVERY_PERIOD (Upbit) trade
every period; the others (KRX) trade on a calendar derived from the stored
candles of all their symbols (db/sql/gaps.sql). The scan runs in SQL; only
the missing ranges reach Python.

`--repair` asks the exchange for each range (collector.fetch_candles from the
stored candle just before the range to the range's end) and stores what it
returns through the prices path (jobs.streaming.sort_candle, write_candles). An
answer that reaches back past the range's start proves that what it lacks
does not exist: those periods are recorded in confirmed_empty, which later
scans and repairs skip (unless --recheck). Flow: cli -> commands -> gaps -> collectors
and db (SQL in db/sql/gaps.sql).
"""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from wombat_collect.db import store
from wombat_collect.db.connection import DatabaseUnusable, connect, database_errors, transaction
from wombat_collect.db.queries import statement
from wombat_collect.errors import ExchangeBlocked, Interrupted
from wombat_collect.jobs.planning import PriceTask
from wombat_collect.jobs.prices import open_pool
from wombat_collect.jobs.results import JobResult, StoppedEarly, failure_of
from wombat_collect.jobs.streaming import pooled_connection, sort_candle, write_candles
from wombat_collect.jobs.symbols import select_symbols
from wombat_collect.records import Candle, RejectedCandle, StoredSymbol, UpsertCounts
from wombat_collect.timeframes import NAMES as TIMEFRAME_NAMES
from wombat_collect.timeframes import next_start, period_start
from wombat_collect.timeframes import timeframe as timeframe_of

JOB = "repair"
LOCK_JOB = "prices"  # a repair writes the series `prices` writes: it takes the same lock
BLOCK_PERIODS = 128  # the scan counts each series in blocks of about this many periods (db/sql/gaps.sql)
APPROXIMATE_MONTH = timedelta(days=30)  # a block only needs to be about BLOCK_PERIODS long
PERIOD_NOUNS = {"day": "day", "week": "week", "month": "month", "year": "year", "minute": "period"}

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gap:
    """One missing range of a series: [start, end) on the timeframe's grid, `periods` long.

    `previous` is the stored candle just before it; `trading_calendar` says the
    count is in trading periods (KRX).
    """

    exchange: str
    symbol: StoredSymbol
    timeframe: str
    previous: datetime
    start: datetime
    end: datetime
    periods: int
    trading_calendar: bool = False

    @property
    def last(self):
        """Return the start of the range's last missing period."""
        return period_start(self.end - timedelta(microseconds=1), self.timeframe)


@dataclass
class Repair:
    """What --repair did for one Gap: candles stored, whether the rest was confirmed empty, or why it failed."""

    gap: Gap
    stored: int = 0
    confirmed: bool = False
    rows: UpsertCounts = field(default_factory=UpsertCounts)
    rejected: int = 0
    error: str | None = None

    @property
    def ok(self):
        return self.error is None


@dataclass(frozen=True)
class ScanRequest:
    """What one exchange's scan covers: timeframes, --symbol names (empty: all active), --since, --recheck."""

    timeframes: tuple
    symbol_names: tuple = ()
    since: datetime | None = None
    recheck: bool = False

    @property
    def complete(self):
        """Return whether the scan covers every active symbol, period and open gap (its counts may be the summary)."""
        return not self.symbol_names and self.since is None and not self.recheck


def scan_exchange(dsn, exchange_id, collector, request):
    """Given an exchange and a ScanRequest, return its Gaps, ordered by symbol, timeframe and start.

    Raise ConfigError naming an unknown --symbol, DatabaseError if the database fails.
    """
    targets = select_symbols(dsn, exchange_id, (), request.symbol_names)
    connection = connect(dsn)
    try:
        with database_errors("scanning for gaps", connection), transaction(connection, long_running=True):
            with connection.cursor() as cursor:
                cursor.execute(statement("scan_settings"))
            everyone = [item.id for item in store.stored_symbols(connection, exchange_id)]
            found = [gap for name in request.timeframes
                     for gap in scan_series(connection, collector, name, targets, everyone, request)]
    finally:
        connection.close()
    return sorted(found, key=lambda gap: (gap.symbol.symbol, TIMEFRAME_NAMES.index(gap.timeframe), gap.start))


def scan_exchanges(dsn, exchange_ids, collectors, requests):
    """Given {code: exchange id} and {code: ScanRequest}, scan each exchange; return every Gap.

    A complete scan (ScanRequest.complete) also stores its counts for `status`.
    """
    found = []
    for collector in collectors:
        code = collector.EXCHANGE.code
        found += scan_and_summarise(dsn, exchange_ids[code], collector, requests[code])
    return found


def scan_and_summarise(dsn, exchange_id, collector, request):
    """Given one exchange and its ScanRequest, return its Gaps; store their counts if the scan is complete."""
    checked_at = datetime.now(timezone.utc)
    found = scan_exchange(dsn, exchange_id, collector, request)
    if request.complete:
        store_summary(dsn, collector.EXCHANGE.code, request.timeframes, found, checked_at)
    return found


def scan_series(connection, collector, name, targets, everyone, request):
    """Given one timeframe, the symbols to report and all the exchange's symbol ids, return their Gaps."""
    by_id = {item.id: item for item in targets}
    every_period = collector.TRADES_EVERY_PERIOD
    parameters = grid_parameters(name)
    parameters.update(timeframe=name, ids=list(by_id), calendar_ids=everyone, recheck=request.recheck,
                      since=period_start(request.since, name) if request.since else None)
    with connection.cursor() as cursor:
        cursor.execute(statement("gaps_every_period" if every_period else "gaps_trading_calendar"), parameters)
        rows = cursor.fetchall()
    return [Gap(collector.EXCHANGE.code, by_id[symbol_id], name, previous, start, end, periods, not every_period)
            for symbol_id, previous, start, end, periods in rows]


def grid_parameters(name):
    """Given a timeframe name, return the scan's grid parameters: step (an interval), months, seconds, block_seconds."""
    frame = timeframe_of(name)
    if frame.length is None:
        months = 12 if frame.unit == "year" else 1
        return {"step": f"{months} months", "months": months, "seconds": 1,
                "block_seconds": int(APPROXIMATE_MONTH.total_seconds()) * months * BLOCK_PERIODS}
    seconds = int(frame.length.total_seconds())
    return {"step": f"{seconds} seconds", "months": 0, "seconds": seconds, "block_seconds": seconds * BLOCK_PERIODS}


def store_summary(dsn, exchange, timeframes, gaps, checked_at):
    """Given a complete scan's Gaps of one exchange, store per timeframe how many are open (gap_summary)."""
    connection = connect(dsn)
    try:
        with database_errors("storing the gap summary", connection), transaction(connection):
            for name in timeframes:
                mine = [gap for gap in gaps if gap.timeframe == name]
                parameters = {"exchange": exchange, "timeframe": name, "ranges": len(mine),
                              "symbols": len({gap.symbol.id for gap in mine}),
                              "periods": sum(gap.periods for gap in mine), "checked_at": checked_at}
                with connection.cursor() as cursor:
                    cursor.execute(statement("store_gap_summary"), parameters)
    finally:
        connection.close()


def moment_text(moment, name):
    """Given a period start and its timeframe, return it as reports show it (a date, or date and UTC time)."""
    moment = moment.astimezone(timezone.utc)
    return f"{moment:%Y-%m-%d}" if timeframe_of(name).unit != "minute" else f"{moment:%Y-%m-%d %H:%M}"


def count_text(gap):
    """Given a Gap, return its length in words: `3 days`, `1 trading day`, `12 periods`."""
    noun = PERIOD_NOUNS[timeframe_of(gap.timeframe).unit]
    if gap.trading_calendar:
        noun = f"trading {noun}"
    return f"{gap.periods:,} {noun}{'' if gap.periods == 1 else 's'}"


def describe(gap):
    """Given a Gap, return its report line: `BTC/KRW 1d: 2025-03-02..2025-03-04 (3 days)`."""
    first, last = moment_text(gap.start, gap.timeframe), moment_text(gap.last, gap.timeframe)
    span = first if first == last else f"{first}..{last}"
    return f"{gap.symbol.symbol} {gap.timeframe}: {span} ({count_text(gap)})"


def gap_dict(gap):
    """Given a Gap, return its JSON-ready dict."""
    return {"exchange": gap.exchange, "symbol": gap.symbol.symbol, "timeframe": gap.timeframe,
            "first": moment_text(gap.start, gap.timeframe), "last": moment_text(gap.last, gap.timeframe),
            "start": gap.start.isoformat(), "end": gap.end.isoformat(), "periods": gap.periods,
            "trading_calendar": gap.trading_calendar}


def summary_line(gaps, scanned):
    """Given every Gap found and {exchange: timeframes scanned}, return the report's last line."""
    what = "; ".join(f"{code} {' '.join(names) or 'no timeframe'}" for code, names in scanned.items())
    if not gaps:
        return f"gaps: none (scanned {what})"
    series = len({(gap.exchange, gap.symbol.id, gap.timeframe) for gap in gaps})
    symbols = len({(gap.exchange, gap.symbol.id) for gap in gaps})
    return (f"gaps: {len(gaps):,} range{'' if len(gaps) == 1 else 's'} ({sum(gap.periods for gap in gaps):,} "
            f"periods missing) in {series:,} series of {symbols:,} symbol{'' if symbols == 1 else 's'} "
            f"(scanned {what})")


def repair_gaps(dsn, collector, client, gaps, options):
    """Given Gaps of one exchange, fetch and store each range, `options.workers` at a time.

    Return (JobResult of job `repair`, [Repair] in the order of `gaps`). Raise
    Interrupted (its `result` set) when a signal stopped the run.
    """
    result = JobResult(JOB, collector.EXCHANGE.code, unit="range")
    result.timeframes = tuple(dict.fromkeys(gap.timeframe for gap in gaps))
    stop = options.stop_event or threading.Event()
    pool = open_pool(dsn, options.workers)
    try:
        with ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="repair") as executor:
            repairs = list(executor.map(lambda gap: repair_gap(pool, collector, client, gap, options, stop), gaps))
    finally:
        pool.closeall()
    for repair in repairs:
        count_repair(result, repair)
    result.duration = time.monotonic() - result.started
    if options.interrupted:
        interrupted = Interrupted(options.interrupted)
        interrupted.result = result
        raise interrupted
    return result, repairs


def repair_exchange(dsn, exchange_id, collector, client, request, options):
    """Given one exchange and its ScanRequest, repair the Gaps a scan finds, then scan again for `status`.

    Return (JobResult of job `repair`, [Repair]). Raise Interrupted as repair_gaps does.
    """
    found = scan_exchange(dsn, exchange_id, collector, request)
    result, repairs = repair_gaps(dsn, collector, client, found, options)
    if request.complete:
        scan_and_summarise(dsn, exchange_id, collector, request)
    return result, repairs


def count_repair(result, repair):
    """Given a Repair, add it to the JobResult (a failed range counts as a failed 'symbol')."""
    result.rows += repair.rows
    result.rejected += repair.rejected
    if repair.ok:
        result.symbols_ok += 1
    elif repair.error == STOPPED:
        result.symbols_not_attempted += 1
    else:
        result.symbols_failed += 1
        logger.warning("repair %s %s: %s", result.exchange, describe(repair.gap), repair.error)


STOPPED = "not attempted (the run was stopping)"


def repair_gap(pool, collector, client, gap, options, stop):
    """Given a Gap, fetch its range, store the candles and, when the answer proves it, the empty rest.

    Return a Repair; never raise for one range's failure (a block or a signal
    leaves the rest not attempted).
    """
    if stop.is_set():
        return Repair(gap, error=STOPPED)
    try:
        candles, rejected, reached = fetch_range(collector, client, gap, options, stop)
        task = PriceTask(gap.symbol, gap.timeframe, gap.previous)
        rows = write_candles(pool, collector, client, task, candles, None, options, stop) \
            if candles else UpsertCounts()
        if reached and not rejected:
            record_confirmed(pool, gap, empty_runs(gap, candles))
    except StoppedEarly:
        return Repair(gap, error=STOPPED)
    except (ExchangeBlocked, DatabaseUnusable) as error:
        stop.set()  # every other range would fail alike
        return Repair(gap, error=str(error))
    except Exception as error:
        return Repair(gap, error=failure_of(error))
    return judge_repair(gap, candles, rejected, reached, rows)


def judge_repair(gap, candles, rejected, reached, rows):
    """Given what a range's answer held, return its Repair: ok when stored whole or proven empty."""
    repair = Repair(gap, stored=len(candles), confirmed=reached and not rejected and len(candles) < gap.periods,
                    rows=rows, rejected=len(rejected))
    if rejected:
        repair.error = f"{len(rejected)} invalid candle(s) rejected, first: {rejected[0]}"
    elif not reached and len(candles) < gap.periods:
        repair.error = (f"the answer did not reach back past {moment_text(gap.start, gap.timeframe)} "
                        f"({len(candles)} candle(s) stored, nothing confirmed empty)")
    return repair


def fetch_range(collector, client, gap, options, stop):
    """Given a Gap, ask the exchange from the candle before it to its end.

    Return (valid closed candles inside the range, reasons of rejected ones,
    whether the answer reached back past the range's start). Raise StoppedEarly
    if the run stops meanwhile.
    """
    candles, rejected, reached = [], [], False
    for item in collector.fetch_candles(client, gap.symbol.symbol, gap.timeframe, gap.previous, gap.end):
        if stop.is_set():
            raise StoppedEarly
        if isinstance(item, RejectedCandle):
            rejected.append(item.reason)
        elif isinstance(item, Candle) and item.timestamp < gap.start:
            reached = True
        elif isinstance(item, Candle) and item.timestamp < gap.end:
            sort_candle(collector, item, gap.timeframe, options, candles, rejected)
    return candles, rejected, reached


def empty_runs(gap, candles):
    """Given a Gap and the candles stored in it, return the [start, end) runs of it left without a candle."""
    runs, run_start = [], gap.start
    for moment in sorted(candle.timestamp for candle in candles):
        if run_start < moment:
            runs.append((run_start, moment))
        run_start = next_start(moment, gap.timeframe)
    if run_start < gap.end:
        runs.append((run_start, gap.end))
    return runs


def record_confirmed(pool, gap, runs):
    """Given a Gap whose answer reached back past its start, replace its confirmed_empty rows by `runs`."""
    connection = pooled_connection(pool)
    key = {"symbol_id": gap.symbol.id, "timeframe": gap.timeframe}
    try:
        with database_errors("recording the confirmed empty ranges", connection), transaction(connection):
            with connection.cursor() as cursor:
                cursor.execute(statement("forget_confirmed_empty"),
                               {**key, "range_start": gap.start, "range_end": gap.end})
                for start, end in runs:
                    cursor.execute(statement("add_confirmed_empty"), {**key, "range_start": start, "range_end": end})
    finally:
        pool.putconn(connection, close=connection.closed != 0)


def repair_line(repair):
    """Given a Repair, return its report line: the range and what became of it."""
    if not repair.ok:
        return f"{describe(repair.gap)}: FAILED: {repair.error}"
    if repair.confirmed and repair.stored:
        outcome = f"stored {repair.stored}, the rest confirmed empty"
    else:
        outcome = "confirmed empty" if repair.confirmed else f"stored {repair.stored}"
    return f"{describe(repair.gap)}: {outcome}"


def repair_dict(repair):
    """Given a Repair, return its JSON-ready dict."""
    return {**gap_dict(repair.gap), "stored": repair.stored, "confirmed_empty": repair.confirmed,
            "error": repair.error}


def repair_summary(repairs):
    """Given every Repair, return the report's last line."""
    stored = sum(1 for repair in repairs if repair.ok and not repair.confirmed)
    confirmed = sum(1 for repair in repairs if repair.ok and repair.confirmed)
    failed = len(repairs) - stored - confirmed
    return (f"gaps: {len(repairs):,} range{'' if len(repairs) == 1 else 's'} repaired: {stored:,} stored, "
            f"{confirmed:,} confirmed empty, {failed:,} failed; "
            f"{sum(repair.stored for repair in repairs):,} candles stored")
