"""db hand-over: a database wombat-collect created, handed to the backend's alembic; both orders of deployment.

The tests marked by backend_or_skip run the backend's real migration chain and initial_data.py
(tests/backend_support.py says where they come from).
"""

from datetime import date

import pytest

from tests.backend_support import FIRST_SUPERUSER, alembic, autogenerate_operations, backend_or_skip, run_backend
from tests.conftest import create_database, drop_database, query, run_cli, stored_prices, upbit_env
from tests.fakes.upbit_server import make_upbit_candles
from wombat_collect.db.handover import BACKEND_HEAD

BACKEND_TABLES = ["exchange", "pricedata", "realtime_prices", "strategysymbol", "symbol", "tradingstrategy", "user",
                  "userapikey"]
PUBLIC_TABLES = "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
# The catalog of the default schema, order-free: columns by name (the reference DDL, which migration 0001
# follows, puts exchange.id first, the backend's chain sixth), indexes, constraints, sequences, extensions.
CATALOG = """
    SELECT 'column', table_name || '.' || column_name || ' ' || data_type || ' ' || coalesce(character_maximum_length,
           numeric_precision, 0) || ',' || coalesce(numeric_scale, 0) || ' ' || is_nullable || ' ' ||
           coalesce(column_default, '')
      FROM information_schema.columns WHERE table_schema = 'public'
    UNION ALL SELECT 'index', indexdef FROM pg_indexes WHERE schemaname = 'public'
    UNION ALL SELECT 'constraint', conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
      FROM pg_constraint WHERE connamespace = 'public'::regnamespace
    UNION ALL SELECT 'sequence', sequencename || ' ' || data_type::text || ' ' || max_value
      FROM pg_sequences WHERE schemaname = 'public'
    UNION ALL SELECT 'extension', extname::text FROM pg_extension
    ORDER BY 1, 2
"""
COLLECTED = ("SELECT 'exchange', count(*) FROM exchange UNION ALL SELECT 'symbol', count(*) FROM symbol"
             " UNION ALL SELECT 'pricedata', count(*) FROM pricedata"
             " UNION ALL SELECT 'fetched_range', count(*) FROM wombat_collect.fetched_range"
             " UNION ALL SELECT 'collect_run', count(*) FROM wombat_collect.collect_run")


@pytest.fixture
def collected(database, fake_upbit):
    """A database where wombat-collect came first: two Upbit markets, ten days of candles each."""
    for market in ("KRW-BTC", "KRW-ETH"):
        fake_upbit.set_candles(market, make_upbit_candles(market, date(2025, 5, 1), date(2025, 5, 10)))
    result = run_cli("prices", "--exchange", "upbit", "--since", "2025-05-01", env=upbit_env(database, fake_upbit))
    assert result.exit_code == 0, result.output
    assert query(database, "SELECT count(*) FROM pricedata") == [(20,)]
    return database


def snapshot(dsn):
    """Given a DSN, return every collected row: candles, symbols, exchanges, and our own bookkeeping counts."""
    return (stored_prices(dsn), query(dsn, "SELECT * FROM symbol ORDER BY id"),
            query(dsn, "SELECT * FROM exchange ORDER BY id"), query(dsn, COLLECTED))


def hand_over(dsn):
    return run_cli("db", "hand-over", env={"DATABASE_URL": dsn})


def test_db_hand_over_creates_the_backend_tables_and_stamps_its_head(collected):
    before = snapshot(collected)
    result = hand_over(collected)
    assert result.exit_code == 0, result.output
    assert (f"hand-over: created user, userapikey, tradingstrategy, strategysymbol; alembic_version stamped at "
            f"{BACKEND_HEAD} (the backend's head): its `alembic upgrade head` starts from there") in result.stdout
    assert query(collected, "SELECT version_num FROM alembic_version") == [(BACKEND_HEAD,)]
    assert query(collected, PUBLIC_TABLES) == [("alembic_version",)] + [(table,) for table in BACKEND_TABLES]
    assert snapshot(collected) == before


def test_db_hand_over_twice_changes_nothing_the_second_time(collected):
    assert hand_over(collected).exit_code == 0
    catalog = query(collected, CATALOG)
    again = hand_over(collected)
    assert again.exit_code == 0, again.output
    assert (f"hand-over: nothing to do: alembic_version is at {BACKEND_HEAD}, the backend's migrations manage this "
            "database") in again.stdout
    assert query(collected, CATALOG) == catalog
    assert query(collected, "SELECT version_num FROM alembic_version") == [(BACKEND_HEAD,)]


def test_db_hand_over_on_an_empty_database_migrates_first(database):
    result = hand_over(database)
    assert result.exit_code == 0, result.output
    assert query(database, PUBLIC_TABLES) == [("alembic_version",)] + [(table,) for table in BACKEND_TABLES]
    assert query(database, "SELECT count(*) FROM exchange") == [(0,)]  # only a collecting command creates them


def test_db_hand_over_refuses_an_unknown_revision_with_exit_2(collected):
    query(collected, "CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY);"
                     " INSERT INTO alembic_version VALUES ('f00dfeed1234'); SELECT 1")
    catalog = query(collected, CATALOG)
    result = hand_over(collected)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.strip().endswith(
        "alembic_version is at f00dfeed1234, a revision this wombat-collect does not know (it knows the backend up to "
        f"{BACKEND_HEAD}): nothing was changed; upgrade wombat-collect, or let the backend's own migrations manage "
        "this database")
    assert "Traceback" not in result.output
    assert query(collected, CATALOG) == catalog


def test_db_hand_over_refuses_backend_tables_without_a_revision_with_exit_2(collected):
    query(collected, 'CREATE TABLE "user" (id UUID PRIMARY KEY); SELECT 1')
    result = hand_over(collected)
    assert result.exit_code == 2
    assert result.stderr.strip().endswith(
        "table(s) user exist but alembic_version holds no revision: they were not made by wombat-collect nor by the "
        "backend's migrations, so nothing was changed; stamp the revision they match (`alembic stamp <revision>` in "
        "the backend) and run the backend's `alembic upgrade head`")
    assert query(collected, "SELECT to_regclass('alembic_version'), to_regclass('userapikey')") == [(None, None)]


def test_db_init_hints_the_hand_over_only_while_alembic_version_is_absent(database):
    first = run_cli("db", "init", env={"DATABASE_URL": database})
    assert first.exit_code == 0, first.output
    hint = ("no alembic_version here: before the backend's first `alembic upgrade head` on this database, run "
            "`wombat-collect db hand-over`")
    assert hint in first.stdout
    assert hand_over(database).exit_code == 0
    second = run_cli("db", "init", env={"DATABASE_URL": database})
    assert second.exit_code == 0, second.output
    assert hint not in second.stdout


def test_db_hand_over_then_the_backend_upgrade_head_and_initial_data_succeed(collected):
    backend = backend_or_skip(collected)
    before = snapshot(collected)
    assert hand_over(collected).exit_code == 0
    upgraded = alembic(backend, collected, "upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr[-3000:]
    initial = run_backend(backend, collected, "app/initial_data.py")
    assert initial.returncode == 0, initial.stderr[-3000:]
    assert query(collected, 'SELECT email, is_superuser FROM "user"') == [(FIRST_SUPERUSER, True)]
    assert query(collected, "SELECT version_num FROM alembic_version") == [(BACKEND_HEAD,)]
    assert snapshot(collected) == before


def test_db_hand_over_without_it_the_backend_upgrade_head_stops_at_create_exchanges(collected):
    backend = backend_or_skip(collected)
    upgraded = alembic(backend, collected, "upgrade", "head")
    assert upgraded.returncode == 1
    assert 'relation "exchange" already exists' in upgraded.stderr
    assert "Running upgrade 9a6c6a9c1889 -> af343d6d024f, create_exchanges" in upgraded.stderr
    assert query(collected, "SELECT to_regclass('alembic_version'), to_regclass('\"user\"')") == [(None, None)]


@pytest.fixture
def backend_first(server_dsn, database):
    """A database the backend's migrations made (alembic upgrade head), then wombat-collect's db init."""
    backend = backend_or_skip(database)
    dsn = create_database(server_dsn, "wombat_backend_first")
    upgraded = alembic(backend, dsn, "upgrade", "head")
    assert upgraded.returncode == 0, upgraded.stderr[-3000:]
    yield backend, dsn
    drop_database(server_dsn, dsn)


def test_db_init_on_a_backend_first_database_leaves_alembic_version_alone(backend_first, fake_upbit):
    _, dsn = backend_first
    fake_upbit.set_candles("KRW-BTC", make_upbit_candles("KRW-BTC", date(2025, 5, 1), date(2025, 5, 3)))
    result = run_cli("prices", "--exchange", "upbit", "--since", "2025-05-01", env=upbit_env(dsn, fake_upbit))
    assert result.exit_code == 0, result.output
    assert query(dsn, "SELECT version_num FROM alembic_version") == [(BACKEND_HEAD,)]
    assert query(dsn, "SELECT count(*) FROM pricedata") == [(3,)]
    again = hand_over(dsn)
    assert again.exit_code == 0
    assert "nothing to do" in again.stdout


def test_db_hand_over_leaves_the_catalog_of_a_backend_first_database(backend_first, collected):
    backend, dsn = backend_first
    assert run_cli("db", "init", env={"DATABASE_URL": dsn}).exit_code == 0
    assert hand_over(collected).exit_code == 0
    assert query(collected, CATALOG) == query(dsn, CATALOG)


def test_db_hand_over_autogenerate_proposes_nothing_of_ours(backend_first, collected):
    backend, dsn = backend_first
    assert run_cli("db", "init", env={"DATABASE_URL": dsn}).exit_code == 0
    assert hand_over(collected).exit_code == 0
    proposed = autogenerate_operations(backend, collected)
    # The backend's models and its migrations disagree on pricedata's two DESC indexes: its autogenerate
    # proposes the same on a database only its migrations made.
    assert proposed == autogenerate_operations(backend, dsn)
    assert [operation for operation in proposed if operation[0] == "remove_table"] == []
    assert {name for _, name in proposed} <= {"idx_price_data_symbol_time", "idx_price_data_timeframe"}
