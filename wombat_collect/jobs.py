"""The jobs: collect symbols, collect prices of every timeframe. Independent of the exchange.

A job takes a collector module (see collectors/__init__.py), an HttpClient and
a database DSN; it never branches on which exchange it is given.
"""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from wombat_collect.db import store
from wombat_collect.db.connection import (
    ConnectionLost,
    DatabaseTimeout,
    DatabaseUnusable,
    connect,
    connect_options,
    database_errors,
    first_line,
    transaction,
)
from wombat_collect.errors import (
    ConfigError,
    DatabaseError,
    ExchangeBlocked,
    Interrupted,
    SymbolNotFound,
    WombatError,
    describe_unexpected,
)
from wombat_collect.records import Candle, Covered, StoredSymbol, UpsertCounts
from wombat_collect.timeframes import DAILY, default_backfill_start, next_start, period_start, utc_midnight
from wombat_collect.validate import EARLIEST_SANE_DATE, candle_problem, clean_symbol, symbol_problem

CHUNK_CANDLES = 4_000  # candles per transaction of a long series (20 Upbit pages): bounded memory and size
RECONNECT_DELAYS = (0.5, 2.0)  # seconds before each new connection a symbol's write tries after losing one
TIMEOUT_STREAK = 3  # symbols in a row whose write timed out (a table-wide lock?) before the run stops

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Window:
    """Which days `prices` collects: incremental (default), days_back, since or full."""

    kind: str = "incremental"
    days: int | None = None
    since: date | None = None

    def describe(self):
        return {"incremental": "incremental", "days_back": f"last {self.days} days",
                "since": f"since {self.since}", "full": "full history"}[self.kind]


@dataclass
class JobResult:
    """What one job did for one exchange; `fatal` is set when the whole run failed."""

    job: str
    exchange: str
    symbols_ok: int = 0
    symbols_failed: int = 0
    symbols_skipped: int = 0
    symbols_not_attempted: int = 0  # left untouched because the run stopped (block, signal, database)
    rows: UpsertCounts = field(default_factory=UpsertCounts)
    rejected: int = 0
    errors: list = field(default_factory=list)
    fatal: str | None = None
    timeframes: tuple = ()  # of a prices job: the timeframes collected (each symbol once per timeframe)
    started: float = field(default_factory=time.monotonic)
    duration: float = 0.0
    groups_ok: int = 0  # symbols: listing groups stored (symbols_failed counts the failed ones)
    group_noun: str = "listing"  # symbols: what a listing group is ("market" when one per market)
    unit: str | None = None  # what symbols_ok/failed count when not symbols (repair: "range")

    @property
    def status(self):
        if self.fatal:
            return "failed"
        return "partial" if self.symbols_failed or self.errors else "succeeded"

    def summary(self):
        """Return the one-line INFO summary of this job."""
        line = self._listing_summary() if self.job == "symbols" else self._prices_summary()
        return f"{line}; FAILED: {self.fatal}" if self.fatal else line

    def _rows_summary(self):
        rows = [f"{self.rows.inserted:,} new"]
        rows += [f"{count:,} {label}" for count, label in
                 ((self.rows.updated, "updated"), (self.rows.unchanged, "unchanged"),
                  (self.rejected, "rejected")) if count]
        return f"{self.rows.total:,} rows ({', '.join(rows)}) in {self.duration:.1f}s"

    def _listing_summary(self):
        """Return `symbols kis: 3 markets (2 ok, 1 failed), 4,365 symbols listed, ...`."""
        groups = self.groups_ok + self.symbols_failed
        parts = [f"{self.groups_ok:,} ok"] + ([f"{self.symbols_failed:,} failed"] if self.symbols_failed else [])
        deactivated = f", {self.symbols_skipped:,} deactivated" if self.symbols_skipped else ""
        return (f"{self.job} {self.exchange}: {groups:,} {self.group_noun}{'' if groups == 1 else 's'} "
                f"({', '.join(parts)}), {self.symbols_ok:,} symbols listed{deactivated}, {self._rows_summary()}")

    def _prices_summary(self):
        total = self.symbols_ok + self.symbols_failed + self.symbols_skipped + self.symbols_not_attempted
        parts = [f"{self.symbols_ok:,} ok"]
        parts += [f"{count:,} {label}" for count, label in
                  ((self.symbols_failed, "failed"), (self.symbols_skipped, "skipped"),
                   (self.symbols_not_attempted, "not attempted")) if count]
        named = self.timeframes and tuple(self.timeframes) != (DAILY,)  # daily alone: as before timeframes
        what = f"{self.job} {self.exchange}" + (f" {','.join(self.timeframes)}" if named else "")
        unit = "symbols" if len(self.timeframes) < 2 else "symbol-timeframes"
        if self.unit:
            unit = f"{self.unit}{'' if total == 1 else 's'}"
        return f"{what}: {total:,} {unit} ({', '.join(parts)}), {self._rows_summary()}"


@dataclass
class SymbolOutcome:
    symbol: str
    rows: UpsertCounts = field(default_factory=UpsertCounts)
    rejected: int = 0
    error: str | None = None
    skipped: bool = False


def prepare_database(dsn, collectors):
    """Given a DSN and collector modules, migrate and create missing exchange rows.

    Return {exchange code: id}. Raise DatabaseError or SchemaError.
    """
    from wombat_collect.db.migrate import apply_migrations

    connection = connect(dsn)
    try:
        with database_errors("preparing the schema", connection):
            apply_migrations(connection)
            with transaction(connection):
                return store.ensure_exchanges(connection, [module.EXCHANGE for module in collectors])
    finally:
        connection.close()


def hand_over_database(dsn):
    """Given a DSN, apply our migrations, then bring the database to the backend's alembic head (db/handover.py).

    Return what the hand-over did, in words. Raise DatabaseError, or SchemaError (UnknownRevision:
    alembic_version is somewhere this release does not know).
    """
    from wombat_collect.db.handover import hand_over
    from wombat_collect.db.migrate import apply_migrations

    connection = connect(dsn)
    try:
        with database_errors("handing the database over to the backend's migrations", connection):
            apply_migrations(connection)
            return hand_over(connection)
    finally:
        connection.close()


def backend_hint(dsn):
    """Given a DSN of a migrated database, return a line for an operator who may deploy the backend, or None.

    None when alembic_version holds a revision: the backend's migrations already manage the database.
    """
    from wombat_collect.db.handover import backend_state

    connection = connect(dsn)
    try:
        with database_errors("reading alembic_version", connection), transaction(connection), \
                connection.cursor() as cursor:
            state = backend_state(cursor)
    finally:
        connection.close()
    if state.stamped:
        return None
    return ("no alembic_version here: before the backend's first `alembic upgrade head` on this database, run "
            "`wombat-collect db hand-over`")


def collect_symbols(dsn, exchange_id, collector, client):
    """Given a collector, store its listing: upsert listed symbols, deactivate missing ones.

    Each listing group (Upbit: all markets; KIS: one master file each) is fetched
    and written on its own: a failed group changes nothing. A listing that would
    deactivate more than half of the group's active symbols is refused. A listed
    row that fails validation is rejected and counted; the group's others are stored.
    Return a JobResult.
    """
    result = JobResult("symbols", collector.EXCHANGE.code)
    result.group_noun = "market" if all(collector.LISTING_GROUPS) else "listing"
    for group in collector.LISTING_GROUPS:
        label = group or "all markets"
        try:
            records, rejected = valid_symbols(collector.fetch_symbols(client, group))
            counts, deactivated = _store_listing(dsn, exchange_id, group, records)
        except Exception as error:
            message = failure_of(error, LISTING_STOPPERS)
            logger.error("symbols %s %s: %s", result.exchange, label, message)
            result.errors.append(f"{label}: {message}")
            result.symbols_failed += 1
            continue
        _count_listing(result, label, records, rejected, counts, deactivated)
    if result.errors and not result.groups_ok:
        result.fatal = "; ".join(result.errors)
    result.duration = time.monotonic() - result.started
    return result


def valid_symbols(records):
    """Given listed SymbolRecords, return (the valid ones, names cleaned; reasons of the rejected ones)."""
    valid, rejected = [], []
    for record in records:
        problem = symbol_problem(record)
        if problem:
            rejected.append(problem)
        else:
            valid.append(clean_symbol(record))
    return valid, rejected


def _count_listing(result, label, records, rejected, counts, deactivated):
    """Given one stored listing group, add it to the JobResult and log its line."""
    result.groups_ok += 1
    result.rows += counts
    result.symbols_ok += len(records)
    result.symbols_skipped += deactivated
    result.rejected += len(rejected)
    logger.info("symbols %s %s: %d listed, %d new, %d changed, %d deactivated",
                result.exchange, label, len(records), counts.inserted, counts.updated, deactivated)
    if rejected:
        message = f"{len(rejected)} listed row(s) rejected, first: {rejected[0]}"
        logger.warning("symbols %s %s: %s", result.exchange, label, message)
        result.errors.append(f"{label}: {message}")


def collect_listing_if_empty(dsn, exchange_id, collector, client):
    """Given an exchange with no stored symbols, collect its listing; return that JobResult.

    Return None when symbols are already stored.
    """
    connection = connect(dsn)
    try:
        with database_errors("reading the stored symbols", connection), transaction(connection):
            if store.stored_symbols(connection, exchange_id):
                return None
    finally:
        connection.close()
    logger.info("prices %s: no symbols stored yet, collecting the listing first", collector.EXCHANGE.code)
    listing = collect_symbols(dsn, exchange_id, collector, client)
    logger.info("%s", listing.summary())
    return listing


class ListingRefused(WombatError):
    """A listing would deactivate too much of what is stored: likely truncated."""


def _store_listing(dsn, exchange_id, group, records):
    """Given one listing group's records, write them in one transaction.

    Return (UpsertCounts, number deactivated). Raise ListingRefused past the guard.
    """
    connection = connect(dsn)
    try:
        with database_errors("storing the listing", connection), transaction(connection, long_running=True):
            stored = [item for item in store.stored_symbols(connection, exchange_id)
                      if group is None or item.market == group]
            listed = {record.symbol for record in records}
            active = [item for item in stored if item.is_active]
            missing = [item.id for item in active if item.symbol not in listed]
            if len(missing) * 2 > len(active):
                raise ListingRefused(
                    f"listing would deactivate {len(missing)} of {len(active)} active symbols; "
                    "refusing (truncated answer?)")
            counts = store.upsert_symbols(connection, exchange_id, records)
            deactivated = store.set_symbols_active(connection, missing, False)
        return counts, deactivated
    finally:
        connection.close()


def select_symbols(dsn, exchange_id, markets=(), symbols=()):
    """Given filters, return the active StoredSymbols to collect prices for.

    Raise ConfigError naming any --symbol the exchange does not have.
    """
    connection = connect(dsn)
    try:
        with database_errors("reading the stored symbols", connection), transaction(connection):
            stored = store.stored_symbols(connection, exchange_id)
    finally:
        connection.close()
    known = {item.symbol for item in stored}
    unknown = sorted(set(symbols) - known)
    if unknown:
        raise ConfigError(f"unknown symbol(s): {', '.join(unknown)}")
    return [item for item in stored if item.is_active
            and (not markets or item.market in markets)
            and (not symbols or item.symbol in symbols)]


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


def collect_prices(dsn, exchange_id, collector, client, tasks, options):
    """Given PriceTasks, fetch and store their candles concurrently, a task per worker.

    A long series is written in chunks (stream_series); one task's failure
    never stops the others, but a block (418) stops them all. Return a JobResult.
    """
    result = JobResult("prices", collector.EXCHANGE.code)
    stop = options.stop_event or threading.Event()
    pool = None if options.dry_run else open_pool(dsn, options.workers)
    streak = TimeoutStreak()
    try:
        with ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="collect") as executor:
            futures = {
                executor.submit(collect_symbol_prices, pool, collector, client, task, options, stop, streak): task
                for task in tasks
            }
            try:
                for future in as_completed(futures):
                    _record_outcome(result, future, futures[future].symbol, stop, options.progress)
            except BaseException:
                stop.set()  # the queued symbols then end at once instead of being fetched
                raise
    finally:
        if pool is not None:
            pool.closeall()
    result.duration = time.monotonic() - result.started
    if options.interrupted:
        interrupted = Interrupted(options.interrupted)
        interrupted.result = result  # what was written before the stop, for the run history
        raise interrupted
    return result


def open_pool(dsn, workers):
    import psycopg2
    from psycopg2.pool import ThreadedConnectionPool

    try:
        return ThreadedConnectionPool(1, workers, dsn, **connect_options(dsn))
    except psycopg2.Error as error:
        raise DatabaseError(f"cannot connect to the database: {first_line(error)}") from None


def _record_outcome(result, future, symbol, stop, progress):
    """Given a finished future, add its SymbolOutcome (or its fatal error) to the result."""
    try:
        outcome = future.result()
    except (ExchangeBlocked, DatabaseUnusable) as error:
        if not result.fatal:
            logger.error("%s", error)
            result.fatal = str(error)
        stop.set()
        result.symbols_not_attempted += 1
        return
    except StoppedEarly:
        result.symbols_not_attempted += 1
        return
    except TimeoutStreakReached as error:
        if not result.fatal:
            logger.error("prices %s: %s", result.exchange, error)
            result.fatal = str(error)
        stop.set()
        result.symbols_failed += 1
        return
    if progress:
        progress(1)
    result.rows += outcome.rows
    result.rejected += outcome.rejected
    if outcome.skipped:
        result.symbols_skipped += 1
    elif outcome.error:
        result.symbols_failed += 1
        logger.warning("prices %s %s failed: %s", result.exchange, outcome.symbol, outcome.error)
    else:
        result.symbols_ok += 1


class StoppedEarly(Exception):
    """The run is stopping (block, unusable database or signal): the symbol was left untouched."""


class TimeoutStreakReached(DatabaseError):
    """TIMEOUT_STREAK symbols in a row timed out writing: a table is likely locked; stop the run."""


class TimeoutStreak:
    """How many symbols in a row timed out writing their candles, shared by the run's workers."""

    def __init__(self, limit=TIMEOUT_STREAK):
        self.limit = limit
        self.count = 0
        self._lock = threading.Lock()

    def add(self, timed_out):
        """Given whether a symbol's write timed out, count it (a write that did not resets the count).

        Return True when this timeout makes `limit` in a row.
        """
        with self._lock:
            self.count = self.count + 1 if timed_out else 0
            return self.count == self.limit


RUN_STOPPERS = (Interrupted, StoppedEarly, ExchangeBlocked, DatabaseUnusable)  # stop the run: never one failure
LISTING_STOPPERS = (Interrupted, StoppedEarly)  # a listing group's block or database error fails that group only


def failure_of(error, stoppers=RUN_STOPPERS):
    """Given what one symbol's (prices) or one listing group's (symbols) work raised, return its failure line.

    The one place where any unexpected exception (a RecursionError, a psycopg2
    ValueError, a bug) becomes that symbol's or group's failure, so the run goes
    on and nothing leaves a traceback. Raise the error again if it stops the run
    (`stoppers`); KeyboardInterrupt and SystemExit never reach here.
    """
    if isinstance(error, stoppers):
        raise error
    if isinstance(error, WombatError):
        return str(error)
    return describe_unexpected(error)


def collect_symbol_prices(pool, collector, client, task, options, stop, streak=None):
    """Given one PriceTask, fetch its candles and write them chunk by chunk (stream_series).

    Return a SymbolOutcome. Raise ExchangeBlocked or DatabaseUnusable to stop
    the run, TimeoutStreakReached when this write's timeout makes the streak
    (the run stopped), StoppedEarly if the run is stopping.
    """
    streak = streak or TimeoutStreak()
    if stop.is_set():
        raise StoppedEarly
    label = task.symbol.symbol if task.timeframe == DAILY else f"{task.symbol.symbol} {task.timeframe}"
    try:
        rows, rejected = stream_series(pool, collector, client, task, options, stop)
        streak.add(timed_out=False)
    except SymbolNotFound as error:
        return _skip_unknown(pool, task.symbol, error)
    except DatabaseTimeout as error:
        if streak.add(timed_out=True):
            stop.set()  # before this worker takes its next symbol
            raise TimeoutStreakReached(f"stopped after {streak.limit} symbols in a row timed out: {error}") from None
        return SymbolOutcome(label, error=str(error))
    except Exception as error:
        return SymbolOutcome(label, error=failure_of(error))
    error = f"{len(rejected)} invalid candle(s) rejected, first: {rejected[0]}" if rejected else None
    return SymbolOutcome(label, rows, len(rejected), error=error)


def stream_series(pool, collector, client, task, options, stop):
    """Given a PriceTask, fetch its candles and write them in chunks of at least CHUNK_CANDLES.

    A chunk is written at a Covered marker of the collector, with the range the
    marker covers (up to the newest closed period) in the same transaction, so a
    killed run leaves only whole chunks and the fetched_range that says so. No
    range is recorded once a candle was rejected (it is not stored). A dry run
    writes nothing. Return (UpsertCounts, reasons of rejected candles).
    """
    chunk, rejected, rows = [], [], UpsertCounts()
    pending = None
    for item in collector.fetch_candles(client, task.symbol.symbol, task.timeframe, task.start, options.now):
        if stop.is_set():
            raise StoppedEarly
        if isinstance(item, Covered):
            pending = None if rejected else item
            if len(chunk) >= CHUNK_CANDLES:
                rows += _write_chunk(pool, collector, client, task, chunk, pending, options, stop)
                chunk, pending = [], None
            continue
        sort_candle(collector, item, task.timeframe, options, chunk, rejected)
    return rows + _write_chunk(pool, collector, client, task, chunk, pending, options, stop), rejected


def _write_chunk(pool, collector, client, task, candles, covered, options, stop):
    """Given a chunk of candles and the Covered marker it ends with (or None), write both. Return UpsertCounts."""
    if options.dry_run:
        return UpsertCounts(unchanged=len(candles))
    fetched = fetched_range(collector, task.timeframe, covered, options.now) if covered else None
    if not candles and fetched is None:
        return UpsertCounts()
    return write_candles(pool, collector, client, task, candles, fetched, options, stop)


def fetched_range(collector, timeframe, covered, now):
    """Given a Covered marker, return the (start, end) it proves fetched up to the newest closed period, or None."""
    current = period_start(now, timeframe)
    closed_until = next_start(current, timeframe) if collector.candle_closes_at(current, timeframe) <= now else current
    start, end = covered.start or EARLIEST_SANE_DATE, min(covered.end, closed_until)
    return (start, end) if start < end else None


def fetch_valid_candles(collector, client, task, start, options, stop):
    """Given a task and a start, return (valid candles to store, reasons of rejected ones) as one list.

    Used to re-collect a (short, KIS) series. Running candles are dropped unless
    options.include_open. Raise StoppedEarly if the run stops meanwhile.
    """
    candles, rejected = [], []
    for item in collector.fetch_candles(client, task.symbol.symbol, task.timeframe, start, options.now):
        if stop.is_set():
            raise StoppedEarly
        if isinstance(item, Covered):
            continue
        sort_candle(collector, item, task.timeframe, options, candles, rejected)
    return candles, rejected


def sort_candle(collector, item, timeframe, options, candles, rejected):
    """Given a fetched Candle or RejectedCandle, append it to `candles` if it is valid and closed
    (or options.include_open), its problem to `rejected` if it is not valid; drop a running candle."""
    problem = item.reason if not isinstance(item, Candle) else candle_problem(item, options.now, timeframe)
    if problem:
        rejected.append(problem)
    elif options.include_open or collector.candle_closes_at(item.timestamp, timeframe) <= options.now:
        candles.append(item)


def write_candles(pool, collector, client, task, candles, fetched, options, stop):
    """Given a chunk of a task's candles and its fetched range (or None), upsert them in one transaction.

    When the collector's history is adjusted (REBASE_ON_CHANGE) and the fetch
    shows a corporate action or a changed stored row, the series' whole stored
    range is fetched again in the same transaction, so every row shares one basis.
    A connection the database dropped (restart, terminated backend) rolled the
    transaction back: the write is tried again on a new connection, after each
    of RECONNECT_DELAYS. Return UpsertCounts. Raise DatabaseError on a database
    failure; DatabaseUnusable when every symbol would fail alike, as when no new
    connection can be opened after the last delay (the server is down).
    """
    retry = False
    for delay in (*RECONNECT_DELAYS, None):
        try:
            return _write_candles_once(pool, collector, client, task, candles, fetched, options, stop, retry)
        except ConnectionLost as error:
            if delay is None and isinstance(error, CannotReconnect):
                raise DatabaseUnusable(str(error)) from None
            if delay is None or stop.is_set():
                raise
            logger.warning("prices %s %s: %s; writing it again on a new connection in %.1fs",
                           collector.EXCHANGE.code, task.symbol.symbol, error, delay)
            if stop.wait(delay):
                raise StoppedEarly from None
            retry = True
    raise AssertionError("unreachable")


def _write_candles_once(pool, collector, client, task, candles, fetched, options, stop, retry=False):
    """Given a chunk of candles, write it and its fetched range in one transaction. Return UpsertCounts.

    On a retry the connection is checked first: the pool may still hold others the server dropped.
    """
    connection = _live_connection(pool) if retry else pooled_connection(pool)
    symbol_id, timeframe = task.symbol.id, task.timeframe
    try:
        with database_errors("writing its candles", connection), transaction(connection, long_running=True):
            rows, updated = store.upsert_candles(connection, symbol_id, candles, timeframe)
            if collector.REBASE_ON_CHANGE and (updated or any(c.corporate_action for c in candles)):
                oldest = store.oldest_timestamp(connection, symbol_id, timeframe)
                if task.start is not None and oldest is not None and oldest < task.start:
                    logger.info("prices %s %s %s: adjustment basis changed, re-collecting from %s",
                                collector.EXCHANGE.code, task.symbol.symbol, timeframe, f"{oldest:%Y-%m-%d}")
                    again, _ = fetch_valid_candles(collector, client, task, oldest, options, stop)
                    rows = rows + store.upsert_candles(connection, symbol_id, again, timeframe)[0]
            if fetched:
                store.add_fetched_range(connection, symbol_id, timeframe, *fetched)
        return rows
    finally:
        pool.putconn(connection, close=connection.closed != 0)


class CannotReconnect(ConnectionLost):
    """The pool could not open a new connection."""


def pooled_connection(pool):
    """Given the pool, return a connection from it. Raise CannotReconnect if a new one cannot be opened."""
    import psycopg2

    try:
        return pool.getconn()
    except psycopg2.Error as error:
        raise CannotReconnect(f"cannot connect to the database: {first_line(error)}") from None


def _skip_unknown(pool, symbol, error):
    """Given a symbol the exchange no longer knows, deactivate it; return its SymbolOutcome (skipped)."""
    try:
        _deactivate_unknown(pool, symbol, error)
    except Exception as failure:
        return SymbolOutcome(symbol.symbol, error=failure_of(failure))
    return SymbolOutcome(symbol.symbol, skipped=True)


def _live_connection(pool):
    """Given the pool, return a connection that answers, closing the dead ones it hands out first."""
    import psycopg2

    for _ in range(pool.maxconn):
        connection = pooled_connection(pool)
        try:
            store.ping(connection)
            return connection
        except psycopg2.Error:
            pool.putconn(connection, close=True)
    return pooled_connection(pool)


def _deactivate_unknown(pool, symbol, error):
    """Given a symbol the exchange no longer knows, mark it inactive (skip on a dry run).

    Raise DatabaseError if that fails.
    """
    logger.warning("%s: %s; marking it inactive", symbol.symbol, error)
    if pool is None:
        return
    connection = pooled_connection(pool)
    try:
        with database_errors("marking it inactive", connection), transaction(connection):
            store.set_symbols_active(connection, [symbol.id], False)
    finally:
        pool.putconn(connection, close=connection.closed != 0)


@dataclass
class PriceOptions:
    """How to collect prices: flags that apply to every symbol of the run."""

    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    include_open: bool = False
    dry_run: bool = False
    workers: int = 8
    progress: object = None
    stop_event: threading.Event | None = None
    interrupted: int | None = None

