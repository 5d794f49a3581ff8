"""db/backfill.py on a real server: joining a shared backfill, claiming its units across sessions, marking them
done, and where a unit's series goes on. Each session stands for one worker process."""

from datetime import datetime, timezone

import psycopg2
import pytest

from tests.conftest import query
from tests.ops_support import wait_for_settled
from wombat_collect.db import backfill, store
from wombat_collect.db.migrate import apply_migrations
from wombat_collect.records import ExchangeInfo, SymbolRecord, UpsertCounts

UPBIT = ExchangeInfo("upbit", "Upbit", "KR", "Asia/Seoul")
REQUEST = '{"since": "2025-01-01"}'
SINCE = datetime(2025, 1, 1, tzinfo=timezone.utc)


@pytest.fixture
def symbol_ids(connection):
    """Return the ids of three stored symbols (A/KRW, B/KRW, C/KRW) of a migrated database."""
    apply_migrations(connection)
    with connection:
        exchange_id = store.ensure_exchanges(connection, [UPBIT])["upbit"]
        store.upsert_symbols(connection, exchange_id, [SymbolRecord(f"{name}/KRW", name, "KRW", "KRW", "CRYPTO", 8, 8)
                                                       for name in "ABC"])
        return [item.id for item in store.stored_symbols(connection, exchange_id)]


@pytest.fixture
def sessions(database):
    """Return two autocommit sessions, two workers' claim connections."""
    opened = [psycopg2.connect(database) for _ in range(2)]
    for session in opened:
        session.autocommit = True
    yield opened
    for session in opened:
        session.close()


def test_join_backfill_joins_the_unfinished_one_and_adds_its_units(connection, symbol_ids):
    first = backfill.join_backfill(connection, "upbit", REQUEST, [(symbol_ids[0], "1m")])
    joined = backfill.join_backfill(connection, "upbit", REQUEST, [(symbol_ids[0], "1m"), (symbol_ids[1], "1m")])
    other = backfill.join_backfill(connection, "upbit", '{"since": "2025-02-01"}', [(symbol_ids[2], "1m")])

    assert joined == first and other != first
    assert query(connection.dsn, "SELECT backfill_id, symbol_id FROM wombat_collect.backfill_unit ORDER BY id") == [
        (first, symbol_ids[0]), (first, symbol_ids[1]), (other, symbol_ids[2])]


def test_join_backfill_after_it_finished_starts_a_new_one(connection, symbol_ids, sessions):
    first = backfill.join_backfill(connection, "upbit", REQUEST, [(symbol_ids[0], "1m")])
    unit = backfill.claim_unit(sessions[0], first, set())
    backfill.finish_unit(sessions[0], unit.id, None, UpsertCounts(3, 0, 0))
    assert backfill.finish_backfill(sessions[0], first) is True

    assert backfill.join_backfill(connection, "upbit", REQUEST, [(symbol_ids[0], "1m")]) != first
    assert backfill.finish_backfill(sessions[0], first) is False  # finished once


def test_claim_unit_skips_what_another_session_holds_and_what_it_tried(connection, symbol_ids, sessions):
    backfill_id = backfill.join_backfill(connection, "upbit", REQUEST, [(item, "1m") for item in symbol_ids[:2]])
    first, second = sessions

    held = backfill.claim_unit(first, backfill_id, set())
    other = backfill.claim_unit(second, backfill_id, set())
    assert (held.symbol.symbol, other.symbol.symbol) == ("A/KRW", "B/KRW")
    assert backfill.claim_unit(second, backfill_id, {other.id}) is None  # A is held, B was tried

    backfill.release_unit(first, held.id)  # a failed unit: let go, still open
    assert backfill.claim_unit(second, backfill_id, {other.id}) == held


def test_claim_unit_never_returns_a_done_unit_and_a_dead_session_frees_its_claim(database, connection, symbol_ids,
                                                                                  sessions):
    backfill_id = backfill.join_backfill(connection, "upbit", REQUEST, [(item, "1m") for item in symbol_ids[:2]])
    done = backfill.claim_unit(sessions[0], backfill_id, set())
    backfill.finish_unit(sessions[0], done.id, None, UpsertCounts(5, 1, 2))
    dying = psycopg2.connect(database)
    dying.autocommit = True
    lost = backfill.claim_unit(dying, backfill_id, set())
    assert backfill.claim_unit(sessions[1], backfill_id, set()) is None  # A done, B held by the dying session

    dying.close()
    wait_for_settled(database, keep=[session.get_backend_pid() for session in (*sessions, connection)])

    assert backfill.claim_unit(sessions[1], backfill_id, set()) == lost
    assert query(database, "SELECT done_at IS NOT NULL, rows_inserted, rows_updated, rows_unchanged"
                           " FROM wombat_collect.backfill_unit ORDER BY id") == [
        (True, 5, 1, 2), (False, None, None, None)]
    assert backfill.backfill_progress(sessions[1], backfill_id, None) == backfill.Progress(2, 1, 0, False)


def test_resume_point_is_the_end_of_the_fetched_range_holding_the_start(connection, symbol_ids, sessions):
    with connection:
        store.add_fetched_range(connection, symbol_ids[0], "1m", datetime(2024, 12, 1, tzinfo=timezone.utc),
                                datetime(2025, 1, 3, tzinfo=timezone.utc))
        store.add_fetched_range(connection, symbol_ids[1], "1m", datetime(2025, 1, 2, tzinfo=timezone.utc),
                                datetime(2025, 1, 3, tzinfo=timezone.utc))

    assert backfill.resume_point(sessions[0], symbol_ids[0], "1m", SINCE) == datetime(2025, 1, 3, tzinfo=timezone.utc)
    assert backfill.resume_point(sessions[0], symbol_ids[1], "1m", SINCE) is None  # its start was never fetched
    assert backfill.resume_point(sessions[0], symbol_ids[0], "5m", SINCE) is None
