"""A backfill shared by worker processes: join it, claim its units, mark them done (sql/backfill.sql).

A claim is a session advisory lock (CLAIM_LOCK_CLASS, unit id), taken and released on
one autocommit connection of the worker, so a claim never holds a transaction open and
ends with the worker's session. join_backfill takes a connection outside autocommit.
"""

from dataclasses import dataclass

from wombat_collect.db.connection import transaction
from wombat_collect.db.queries import statement
from wombat_collect.records import StoredSymbol

CLAIM_LOCK_CLASS = 0x77630002  # advisory lock (class, unit id) of a claimed unit; history.RUN_LOCK_CLASS is ...01
CLAIM_CANDIDATES = 16  # open units read per claim attempt; the first whose lock is free is taken


@dataclass(frozen=True)
class Unit:
    """One unit of a backfill: a symbol's series of one timeframe."""

    id: int
    timeframe: str
    symbol: StoredSymbol


@dataclass(frozen=True)
class Progress:
    """How far a backfill is: its units, those done, those done by one run, and whether it is finished."""

    units: int
    done: int
    done_here: int
    finished: bool


def join_backfill(connection, exchange, request, units):
    """Given a connection, an exchange, the request's text and its [(symbol id, timeframe)], return a backfill id.

    The unfinished backfill of the same request is joined, else a new one started,
    and these units added to it (those it has stay as they are), in one
    transaction: concurrent starters join one backfill and never see it without units.
    """
    with transaction(connection), connection.cursor() as cursor:
        cursor.execute(statement("start_backfill"), {"exchange": exchange, "request": request})
        started = cursor.fetchone()
        if started is None:
            cursor.execute(statement("unfinished_backfill"), {"exchange": exchange, "request": request})
            started = cursor.fetchone()
        cursor.execute(statement("add_backfill_units"), {
            "backfill_id": started[0], "symbol_ids": [symbol_id for symbol_id, _ in units],
            "timeframes": [timeframe for _, timeframe in units]})
        return started[0]


def claim_unit(connection, backfill_id, tried):
    """Given an autocommit connection, a backfill and the unit ids this worker tried, claim an open unit.

    Return the Unit, its lock held by this session, or None when no open unit is left
    unclaimed. A unit done by another worker between the read and the lock is let go.
    """
    with connection.cursor() as cursor:
        while True:
            cursor.execute(statement("claimable_units"), {"backfill_id": backfill_id, "tried": sorted(tried),
                                                          "claim_class": CLAIM_LOCK_CLASS, "limit": CLAIM_CANDIDATES})
            candidates = [Unit(unit_id, timeframe, StoredSymbol(*symbol))
                          for unit_id, timeframe, *symbol in cursor.fetchall()]
            if not candidates:
                return None
            for unit in candidates:
                if _try_claim(cursor, unit.id):
                    return unit


def _try_claim(cursor, unit_id):
    """Given a cursor and a unit id, return True if this session now holds the unit's lock and the unit is open."""
    parameters = {"claim_class": CLAIM_LOCK_CLASS, "unit_id": unit_id}
    cursor.execute(statement("try_claim_unit"), parameters)
    if not cursor.fetchone()[0]:
        return False
    cursor.execute(statement("unit_is_open"), parameters)
    if cursor.fetchone()[0]:
        return True
    cursor.execute(statement("release_unit"), parameters)
    return False


def release_unit(connection, unit_id):
    """Given the autocommit connection holding a unit's claim, let it go (the unit stays open)."""
    with connection.cursor() as cursor:
        cursor.execute(statement("release_unit"), {"claim_class": CLAIM_LOCK_CLASS, "unit_id": unit_id})


def finish_unit(connection, unit_id, run_id, rows):
    """Given the autocommit connection holding a unit's claim, the run and its UpsertCounts, mark it done, let it go.

    The update commits before the lock is released, so whoever claims the unit next sees it done.
    """
    with connection.cursor() as cursor:
        cursor.execute(statement("finish_unit"), {"unit_id": unit_id, "run_id": run_id, "inserted": rows.inserted,
                                                  "updated": rows.updated, "unchanged": rows.unchanged})
    release_unit(connection, unit_id)


def finish_backfill(connection, backfill_id):
    """Given a backfill, mark it finished if no unit is open. Return True if this call finished it."""
    with connection.cursor() as cursor:
        cursor.execute(statement("finish_backfill"), {"backfill_id": backfill_id})
        return cursor.fetchone() is not None


def backfill_progress(connection, backfill_id, run_id):
    """Given a backfill and a run id (or None), return its Progress."""
    with connection.cursor() as cursor:
        cursor.execute(statement("backfill_progress"), {"backfill_id": backfill_id, "run_id": run_id})
        return Progress(*cursor.fetchone())


def resume_point(connection, symbol_id, timeframe, since):
    """Given a series and the backfill's start, return where fetching goes on: the end of the fetched range
    holding the start, or None when the start itself was never fetched."""
    with connection.cursor() as cursor:
        cursor.execute(statement("resume_point"), {"symbol_id": symbol_id, "timeframe": timeframe, "since": since})
        row = cursor.fetchone()
        return row[0] if row else None
