"""Migrations: the backend's schema on an empty database, on a backend-created one, idempotence."""

import logging
import subprocess
import sys
import threading
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import psycopg2
import pytest

from tests.conftest import create_database, drop_database, query, run_cli, schema_dump
from tests.ops_support import wait_until
from wombat_collect.db import migrate
from wombat_collect.db.migrate import apply_migrations, available_migrations
from wombat_collect.errors import SchemaError

REFERENCE_DDL = Path(__file__).parent / "data" / "wombat-schema.sql"
BACKEND_TABLES = ("exchange", "symbol", "pricedata", "realtime_prices")
COLUMN_SHAPE = """
    SELECT table_name, column_name, data_type, character_maximum_length, numeric_precision,
           numeric_scale, is_nullable, column_default
      FROM information_schema.columns
     WHERE table_schema = 'public' AND table_name = ANY(%s)
     ORDER BY table_name, ordinal_position
"""
INDEX_SHAPE = """
    SELECT indexname, indexdef FROM pg_indexes
     WHERE schemaname = 'public' AND tablename = ANY(%s) ORDER BY 1
"""
CONSTRAINT_SHAPE = """
    SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
      FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2
"""


def load_reference(dsn):
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute(REFERENCE_DDL.read_text())
    connection.close()


@pytest.fixture
def reference_database(server_dsn):
    """A second fresh database holding the reference DDL."""
    dsn = create_database(server_dsn, "wombat_ref")
    load_reference(dsn)
    yield dsn
    drop_database(server_dsn, dsn)


def test_available_migrations_are_numbered_in_order():
    versions = [version for version, _, _ in available_migrations()]
    assert versions == sorted(versions)
    assert versions[0] == 1


def test_db_init_creates_reference_schema(database, reference_database):
    result = run_cli("db", "init", env={"DATABASE_URL": database})
    assert result.exit_code == 0, result.output
    for shape in (COLUMN_SHAPE, INDEX_SHAPE):
        tables = (list(BACKEND_TABLES),)
        assert query(database, shape, tables) == query(reference_database, shape, tables)
    ours = [row for row in query(database, CONSTRAINT_SHAPE) if row[0] in BACKEND_TABLES]
    assert ours == query(reference_database, CONSTRAINT_SHAPE)
    assert query(database, "SELECT code, name, country, timezone, is_active FROM exchange ORDER BY code") == [
        ("kis", "Korea Investment & Securities", "KR", "Asia/Seoul", True),
        ("upbit", "Upbit", "KR", "Asia/Seoul", True),
    ]  # in either id order: the insert of the missing ones does not keep the order it was given


def test_db_init_is_idempotent(database):
    assert run_cli("db", "init", env={"DATABASE_URL": database}).exit_code == 0
    before = schema_dump(database)
    exchanges = query(database, "SELECT * FROM exchange ORDER BY id")
    result = run_cli("db", "init", env={"DATABASE_URL": database})
    assert result.exit_code == 0
    assert "applied migration" not in result.output
    assert schema_dump(database) == before
    assert query(database, "SELECT * FROM exchange ORDER BY id") == exchanges


def test_db_init_keeps_backend_rows_intact(reference_database):
    created = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    with psycopg2.connect(reference_database) as connection, connection.cursor() as cursor:
        cursor.execute("INSERT INTO exchange (code, name, country, timezone, is_active, created_at) "
                       "VALUES ('upbit', 'Upbit Korea', 'KR', 'Asia/Seoul', false, %s) RETURNING id", (created,))
        exchange_id = cursor.fetchone()[0]
        cursor.execute("INSERT INTO symbol (exchange_id, symbol, base_asset, quote_asset, symbol_type, market,"
                       " is_active, price_precision, quantity_precision, created_at, updated_at)"
                       " VALUES (%s, 'BTC/KRW', 'BTC', 'KRW', 'CRYPTO', 'KRW', true, 0, 4, %s, %s) RETURNING id",
                       (exchange_id, created, created))
        symbol_id = cursor.fetchone()[0]
        cursor.execute("INSERT INTO pricedata (symbol_id, timestamp, open_price, high_price, low_price, close_price,"
                       " volume, quote_volume, timeframe, created_at) VALUES (%s, %s, 1, 2, 0.5, 1.5, 10,"
                       " 242634976840.02426000, '1d', %s)", (symbol_id, created, created))
    connection.close()
    tables = {table: query(reference_database, f"SELECT * FROM {table} ORDER BY id") for table in BACKEND_TABLES}
    before = schema_dump(reference_database)

    result = run_cli("db", "init", env={"DATABASE_URL": reference_database})

    assert result.exit_code == 0, result.output
    for table, rows in tables.items():
        if table == "exchange":
            rows = rows + [row for row in query(reference_database, "SELECT * FROM exchange WHERE code = 'kis'")]
        assert query(reference_database, f"SELECT * FROM {table} ORDER BY id") == rows
    assert query(reference_database, "SELECT quote_volume FROM pricedata") == [(Decimal("242634976840.02426000"),)]
    after = schema_dump(reference_database)
    assert "wombat_collect_migration" in after and after != before  # only our bookkeeping was added
    backend_part = [line for line in before.splitlines() if "wombat_collect" not in line]
    assert all(line in after.splitlines() for line in backend_part)


def test_apply_migrations_names_missing_columns(connection):
    with connection, connection.cursor() as cursor:
        cursor.execute("CREATE TABLE exchange (id serial primary key, code varchar(20) not null)")
    with pytest.raises(SchemaError) as raised:
        apply_migrations(connection)
    assert str(raised.value).startswith("the database lacks columns wombat-collect writes: exchange.name, ")
    assert "symbol." not in str(raised.value)


def test_db_init_reports_missing_columns_with_exit_1(database):
    with psycopg2.connect(database) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE TABLE exchange (id serial primary key, code varchar(20) not null)")
    connection.close()
    result = run_cli("db", "init", env={"DATABASE_URL": database})
    assert result.exit_code == 1
    assert "exchange.name" in result.stderr
    assert "Traceback" not in result.output


def test_db_init_concurrent_processes_both_succeed(database):
    command = [sys.executable, "-m", "wombat_collect", "db", "init"]
    env = {"DATABASE_URL": database, "WOMBAT_ENV_FILE": "/dev/null", "PATH": "/usr/bin:/bin"}
    processes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outcomes = [(process.wait(timeout=60), process.stderr.read()) for process in processes]
    assert [code for code, _ in outcomes] == [0, 0], outcomes
    assert query(database, "SELECT version FROM wombat_collect.wombat_collect_migration ORDER BY 1") == [
        (version,) for version, _, _ in available_migrations()]
    assert query(database, "SELECT count(*) FROM exchange") == [(2,)]


@pytest.fixture
def migration_lock_holder(database):
    """Return a connection of 'another session' holding the migration lock (released when the test ends)."""
    holder = psycopg2.connect(database)
    holder.autocommit = True
    with holder.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", (migrate.MIGRATION_LOCK_KEY,))
    yield holder
    holder.close()


def test_db_init_migration_lock_held_too_long_exits_1_with_one_line(database, migration_lock_holder, monkeypatch):
    monkeypatch.setattr(migrate, "MIGRATION_LOCK_WAIT_SECONDS", 0.5)
    # lock_timeout only bounds the old blocking pg_advisory_lock, so that it fails here instead of hanging.
    result = run_cli("db", "init", env={"DATABASE_URL": database + " options='-c lock_timeout=20s'"})
    assert result.exit_code == 1
    assert result.stderr.strip().endswith(
        f"the migration lock is still held by database backend pid {migration_lock_holder.get_backend_pid()} after "
        "0.5s: another wombat-collect is migrating, or a session is stuck (see pg_stat_activity)")
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"waiting up to 0.5s for the migration lock (held by database backend pid " \
           f"{migration_lock_holder.get_backend_pid()})" in result.stdout
    assert query(database, "SELECT to_regclass('wombat_collect_migration'), "
                           "to_regclass('wombat_collect.wombat_collect_migration')") == [(None, None)]


def test_apply_migrations_waits_for_the_lock_then_migrates(database, migration_lock_holder, caplog):
    outcome = {}

    def migrate_in_thread():
        connection = psycopg2.connect(database)
        try:
            outcome["applied"] = apply_migrations(connection)
        finally:
            connection.close()

    thread = threading.Thread(target=migrate_in_thread)
    with caplog.at_level(logging.INFO, logger="wombat_collect.db.migrate"):
        thread.start()
        wait_until(lambda: any("waiting up to 60s for the migration lock" in record.getMessage()
                               for record in caplog.records))
        with migration_lock_holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", (migrate.MIGRATION_LOCK_KEY,))
        thread.join(timeout=60)
    assert outcome["applied"] == [version for version, _, _ in available_migrations()]


def test_apply_migrations_verifies_an_existing_realtime_prices(reference_database):
    with psycopg2.connect(reference_database) as connection, connection.cursor() as cursor:
        cursor.execute("ALTER TABLE realtime_prices DROP COLUMN change_rate")
    connection.close()
    connection = psycopg2.connect(reference_database)
    try:
        with pytest.raises(SchemaError) as raised:
            apply_migrations(connection)
    finally:
        connection.close()
    assert str(raised.value) == "the database lacks columns wombat-collect writes: realtime_prices.change_rate"


def test_apply_migrations_keeps_a_backend_realtime_prices_and_its_rows(reference_database):
    created = datetime(2025, 12, 9, tzinfo=timezone.utc)
    with psycopg2.connect(reference_database) as connection, connection.cursor() as cursor:
        cursor.execute("INSERT INTO exchange (code, name, is_active, created_at) VALUES ('kis', 'KIS', true, %s)"
                       " RETURNING id", (created,))
        cursor.execute("INSERT INTO symbol (exchange_id, symbol, symbol_type, is_active, price_precision,"
                       " quantity_precision, created_at, updated_at) VALUES (%s, '005930', 'STOCK', true, 0, 0, %s, %s)"
                       " RETURNING id", (cursor.fetchone()[0], created, created))
        cursor.execute("INSERT INTO realtime_prices (symbol_id, current_price, change_rate, updated_at)"
                       " VALUES (%s, 71500, 6.4410, %s)", (cursor.fetchone()[0], created))
    connection.close()
    before = query(reference_database, "SELECT * FROM realtime_prices")

    assert run_cli("db", "init", env={"DATABASE_URL": reference_database}).exit_code == 0

    assert query(reference_database, "SELECT * FROM realtime_prices") == before
    assert query(reference_database, "SELECT version, name"
                                     " FROM wombat_collect.wombat_collect_migration WHERE version = 3") == [
        (3, "realtime-prices")]


OWN_TABLES = ["backfill", "backfill_unit", "collect_run", "confirmed_empty", "fetched_range", "gap_summary",
              "wombat_collect_migration"]
TABLES_BY_SCHEMA = """
    SELECT schemaname, array_agg(tablename::text ORDER BY tablename) FROM pg_tables
     WHERE schemaname NOT IN ('pg_catalog', 'information_schema') GROUP BY schemaname ORDER BY schemaname
"""


def apply_earlier_release(dsn, last_version=5):
    """Given an empty database, migrate it as the release before migration 0006 did: every table in public."""
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute(migrate.statement("create_migration_table"))
        for version, name, path in available_migrations()[:last_version]:
            cursor.execute(path.read_text(encoding="utf-8"))
            cursor.execute("INSERT INTO wombat_collect_migration (version, name) VALUES (%s, %s)", (version, name))
    connection.close()


def test_db_init_keeps_only_the_backend_tables_in_public(database):
    result = run_cli("db", "init", env={"DATABASE_URL": database})
    assert result.exit_code == 0, result.output
    assert query(database, TABLES_BY_SCHEMA) == [
        ("public", ["exchange", "pricedata", "realtime_prices", "symbol"]),
        ("wombat_collect", OWN_TABLES)]


def test_apply_migrations_moves_an_earlier_release_tables_with_their_rows(database):
    apply_earlier_release(database)
    query(database, "INSERT INTO exchange (code, name, country, timezone, is_active, created_at)"
                    " VALUES ('upbit', 'Upbit', 'KR', 'Asia/Seoul', true, '2026-01-01T00:00Z');"
                    "INSERT INTO symbol (exchange_id, symbol, base_asset, quote_asset, symbol_type, market, is_active,"
                    " price_precision, quantity_precision, created_at, updated_at) VALUES (1, 'BTC/KRW', 'BTC', 'KRW',"
                    " 'CRYPTO', 'KRW', true, 8, 8, '2026-01-01T00:00Z', '2026-01-01T00:00Z');"
                    "INSERT INTO collect_run (job, exchange, host, pid, status)"
                    " VALUES ('prices', 'upbit', 'h', 1, 'failed');"
                    "INSERT INTO fetched_range VALUES (1, '1d', '2026-01-01T00:00Z', '2026-01-03T00:00Z');"
                    "INSERT INTO confirmed_empty (symbol_id, timeframe, range_start, range_end)"
                    " VALUES (1, '1d', '2025-12-01T00:00Z', '2025-12-02T00:00Z');"
                    "INSERT INTO gap_summary VALUES ('upbit', '1d', 1, 2, 3, '2026-01-04T00:00Z'); SELECT 1")
    connection = psycopg2.connect(database)
    applied = apply_migrations(connection)
    connection.close()
    assert applied == list(range(6, len(available_migrations()) + 1))  # 0006 moves them, later ones follow
    assert query(database, TABLES_BY_SCHEMA) == [
        ("public", ["exchange", "pricedata", "realtime_prices", "symbol"]),
        ("wombat_collect", OWN_TABLES)]
    assert query(database, "SELECT id, job, status FROM wombat_collect.collect_run") == [(1, "prices", "failed")]
    assert query(database, "SELECT nextval('wombat_collect.collect_run_id_seq')") == [(2,)]
    assert query(database, "SELECT timeframe, range_end FROM wombat_collect.fetched_range") == [
        ("1d", datetime(2026, 1, 3, tzinfo=timezone.utc))]
    assert query(database, "SELECT range_start FROM wombat_collect.confirmed_empty") == [
        (datetime(2025, 12, 1, tzinfo=timezone.utc),)]
    assert query(database, "SELECT periods FROM wombat_collect.gap_summary") == [(3,)]
    assert query(database, "SELECT version FROM wombat_collect.wombat_collect_migration ORDER BY 1") == [
        (version,) for version in range(1, len(available_migrations()) + 1)]


def test_apply_migrations_gives_roles_of_moved_tables_usage_on_the_schema(database, server_dsn):
    apply_earlier_release(database)
    role = "wombat_reader_migrate"
    query(database, f'DROP ROLE IF EXISTS "{role}"; CREATE ROLE "{role}";'  # noqa: S608 - test identifier
                    f' GRANT SELECT ON collect_run TO "{role}"; SELECT 1')
    try:
        connection = psycopg2.connect(database)
        apply_migrations(connection)
        connection.close()
        assert query(database, "SELECT has_schema_privilege(%s, 'wombat_collect', 'USAGE'),"
                               " has_table_privilege(%s, 'wombat_collect.collect_run', 'SELECT'),"
                               " has_table_privilege(%s, 'wombat_collect.fetched_range', 'SELECT')",
                     (role, role, role)) == [(True, True, False)]
    finally:
        query(database, f'DROP OWNED BY "{role}"; DROP ROLE "{role}"; SELECT 1')  # noqa: S608


def test_apply_migrations_continues_an_earlier_release_stopped_before_0005(database):
    apply_earlier_release(database, last_version=4)
    connection = psycopg2.connect(database)
    applied = apply_migrations(connection)
    connection.close()
    assert applied == list(range(5, len(available_migrations()) + 1))
    assert query(database, TABLES_BY_SCHEMA)[1] == ("wombat_collect", OWN_TABLES)
    assert query(database, "SELECT version FROM wombat_collect.wombat_collect_migration ORDER BY 1") == [
        (version,) for version in range(1, len(available_migrations()) + 1)]


def test_db_init_refuses_a_search_path_starting_at_the_own_schema_with_exit_1(database):
    dsn = database + " options='-c search_path=wombat_collect,public'"
    result = run_cli("db", "init", env={"DATABASE_URL": dsn})
    assert result.exit_code == 1
    assert "the search_path resolves to schema wombat_collect" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert query(database, "SELECT version FROM wombat_collect_migration ORDER BY 1") == [
        (version,) for version in range(1, 6)]
