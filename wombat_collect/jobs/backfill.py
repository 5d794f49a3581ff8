"""A backfill shared by worker processes (`prices --since D --worker`), on any number of hosts.

A unit is one (symbol, timeframe) series from the backfill's start. A worker joins
the unfinished backfill of its request (starting it, with its units, when there is
none); its collecting threads then claim unit after unit (db/backfill.py: a session
advisory lock each, on one connection of this process), collect it as any prices
task (jobs/prices.py), resumed at the end of the fetched range that holds the start,
and mark it done, until no unit is left to claim. A unit that failed stays open for
another worker or a re-run; this worker does not try it again.
"""

import json
import logging
import threading

from wombat_collect.db import backfill as units_table
from wombat_collect.db.connection import connect, database_errors
from wombat_collect.db.queries import statement
from wombat_collect.jobs.planning import PriceTask
from wombat_collect.jobs.prices import collect_symbol_prices, run_collection
from wombat_collect.jobs.results import SymbolOutcome
from wombat_collect.timeframes import utc_midnight

CLAIMS_APPLICATION_NAME = "wombat-collect backfill {backfill_id} {exchange}"  # pg_stat_activity: whose claims

logger = logging.getLogger("wombat_collect.jobs")  # the one logger name of every jobs module


def backfill_request(since, timeframes, markets=(), symbol_names=()):
    """Given what a worker was asked, return the text that names its backfill (workers asking alike share one)."""
    return json.dumps({"since": since.isoformat(), "timeframes": sorted(timeframes),
                       "markets": sorted(markets), "symbols": sorted(symbol_names)}, sort_keys=True)


def collect_backfill(dsn, collector, client, targets, timeframes, request, since, options):
    """Given the selected StoredSymbols, timeframes, the request's text and its start date, work on its backfill.

    Return the JobResult of the units this worker collected, with a note on the
    whole backfill's progress. Raise DatabaseError if the backfill cannot be joined.
    """
    exchange = collector.EXCHANGE.code
    backfill_id = join(dsn, exchange, request, [(item.id, name) for item in targets for name in timeframes])
    claims = UnitClaims(dsn, backfill_id, exchange)
    try:
        logger.info("prices %s: backfill %d since %s, claiming its units", exchange, backfill_id, since)

        def submit_workers(executor, pool, stop, streak, record):
            return [executor.submit(collect_claimed_units, pool, collector, client, claims, utc_midnight(since),
                                    options, stop, streak, record)
                    for _ in range(options.workers)]

        result = run_collection(dsn, collector, options, submit_workers)
        result.note = claims.conclude(options.run_id, since)
        return result
    finally:
        claims.close()


def join(dsn, exchange, request, units):
    """Given an exchange, a request's text and its [(symbol id, timeframe)], return the id of its unfinished backfill.

    Raise DatabaseError if it cannot be read or started.
    """
    connection = connect(dsn)
    try:
        with database_errors("joining the backfill", connection):
            return units_table.join_backfill(connection, exchange, request, units)
    finally:
        connection.close()


def collect_claimed_units(pool, collector, client, claims, start, options, stop, streak, record):
    """Given this process's UnitClaims, collect unit after unit until none is left to claim or the run stops.

    Each unit's SymbolOutcome goes to record(); a unit done (or skipped: its
    symbol went inactive) is marked done, a failed one let go. Raise what stops
    the run (collect_symbol_prices), the unit let go first.
    """
    while not stop.is_set():
        unit = claims.claim()
        if unit is None:
            return None
        if not unit.symbol.is_active:  # delisted since the backfill started
            outcome = SymbolOutcome(unit.symbol.symbol, skipped=True)
            claims.finish(unit, outcome, options.run_id)
            record(outcome)
            continue
        try:
            task = PriceTask(unit.symbol, unit.timeframe, claims.resume_point(unit, start))
            outcome = collect_symbol_prices(pool, collector, client, task, options, stop, streak)
        except BaseException:
            claims.release(unit)
            raise
        if outcome.error:
            claims.release(unit)
        else:
            claims.finish(unit, outcome, options.run_id)
        record(outcome)
    return None


class UnitClaims:
    """This process's claims on one backfill's units: the session holding them and the units it tried.

    The session is one autocommit connection, shared by the collecting threads under a mutex.
    """

    def __init__(self, dsn, backfill_id, exchange):
        self.backfill_id = backfill_id
        self.tried = set()
        self._mutex = threading.Lock()
        self.connection = connect(dsn, autocommit=True)
        with database_errors("naming the backfill session", self.connection), self.connection.cursor() as cursor:
            cursor.execute(statement("set_application_name"),
                           {"name": CLAIMS_APPLICATION_NAME.format(backfill_id=backfill_id, exchange=exchange)})

    def claim(self):
        """Return an open Unit this process now holds and has not tried before, or None when none is left."""
        with self._mutex, database_errors("claiming a backfill unit", self.connection):
            unit = units_table.claim_unit(self.connection, self.backfill_id, self.tried)
            if unit is not None:
                self.tried.add(unit.id)
            return unit

    def resume_point(self, unit, start):
        """Given a claimed Unit and the backfill's first moment, return where its series goes on."""
        with self._mutex, database_errors("reading the unit's fetched range", self.connection):
            return units_table.resume_point(self.connection, unit.symbol.id, unit.timeframe, start) or start

    def finish(self, unit, outcome, run_id):
        """Given a claimed Unit, its SymbolOutcome and the run's id, mark it done and let it go."""
        with self._mutex, database_errors("marking a backfill unit done", self.connection):
            units_table.finish_unit(self.connection, unit.id, run_id, outcome.rows)

    def release(self, unit):
        """Given a claimed Unit, let it go undone (another worker or a re-run takes it)."""
        with self._mutex, database_errors("letting a backfill unit go", self.connection):
            units_table.release_unit(self.connection, unit.id)

    def conclude(self, run_id, since):
        """Given this worker's run id, finish the backfill if no unit is open; return the line on its progress."""
        with self._mutex, database_errors("reading the backfill's progress", self.connection):
            finished_here = units_table.finish_backfill(self.connection, self.backfill_id)
            progress = units_table.backfill_progress(self.connection, self.backfill_id, run_id)
        state = "finished" if progress.finished else f"{progress.units - progress.done:,} open"
        if finished_here:
            state += " by this worker"
        return (f"backfill {self.backfill_id} since {since}: {progress.done_here:,} of {progress.units:,} units "
                f"by this worker, {progress.done:,} done, {state}")

    def close(self):
        """Close the session, which lets go of every claim still held."""
        self.connection.close()
