"""Numbered .sql migrations, applied in order under an advisory lock, then verified."""

import logging
import re
from pathlib import Path

from wombat_collect.db.connection import transaction
from wombat_collect.db.queries import statement
from wombat_collect.errors import DatabaseError, SchemaError
from wombat_collect.waiting import wait_for

MIGRATION_DIRECTORY = Path(__file__).with_name("migrations")
MIGRATION_NAME = re.compile(r"^(\d{4})\.([\w-]+)\.sql$")
MIGRATION_LOCK_KEY = 0x776F6D6261740001  # "wombat" + 1, shared by every wombat-collect process
MIGRATION_LOCK_WAIT_SECONDS = 60  # migrations take about a second; a longer hold is a stuck session

# The columns wombat-collect writes or reads; a backend-created database must have them.
REQUIRED_COLUMNS = {
    "exchange": ("id", "code", "name", "country", "timezone", "is_active", "created_at"),
    "symbol": (
        "id", "exchange_id", "symbol", "base_asset", "quote_asset", "symbol_type", "market",
        "is_active", "min_order_size", "max_order_size", "price_precision",
        "quantity_precision", "created_at", "updated_at",
    ),
    "pricedata": (
        "id", "symbol_id", "timestamp", "timeframe", "open_price", "high_price", "low_price",
        "close_price", "volume", "quote_volume", "created_at",
    ),
    "realtime_prices": (
        "id", "symbol_id", "current_price", "bid_price", "ask_price", "volume_24h", "change_rate", "updated_at",
    ),
}
# The unique keys that the upserts' ON CONFLICT clauses name.
REQUIRED_UNIQUE_KEYS = {
    "exchange": ("code",),
    "symbol": ("exchange_id", "symbol"),
    "pricedata": ("symbol_id", "timeframe", "timestamp"),
    "realtime_prices": ("symbol_id",),
}

logger = logging.getLogger(__name__)


def available_migrations(directory=MIGRATION_DIRECTORY):
    """Given a directory, return [(version, name, path)] of its migrations, in order."""
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        if match:
            migrations.append((int(match.group(1)), match.group(2), path))
    return migrations


def apply_migrations(connection):
    """Given a connection, apply pending migrations and verify the schema.

    Each migration runs in its own transaction; an advisory lock keeps two
    processes from migrating at once. Return the list of versions applied.
    Raise SchemaError if the tables lack columns or keys wombat-collect needs.
    """
    connection.autocommit = True
    lock_migrations(connection)
    try:
        applied = _apply_pending(connection)
        verify_schema(connection)
    finally:
        unlock_migrations(connection)
    return applied


def unlock_migrations(connection):
    """Given the connection holding the migration lock, release it and leave the connection out of autocommit.

    After a failed migration the connection is still in its aborted transaction: roll that back first,
    so that the migration's own error is the one raised.
    """
    if connection.closed:
        return  # the server went away: the lock went with the session
    connection.rollback()
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(statement("unlock_migrations"), {"key": MIGRATION_LOCK_KEY})
    connection.autocommit = False


def lock_migrations(connection):
    """Given an autocommit connection, take the migration lock, polling for MIGRATION_LOCK_WAIT_SECONDS at most.

    Raise DatabaseError naming the holding session if it is still held then.
    """
    if try_lock_migrations(connection):
        return
    logger.info("waiting up to %gs for the migration lock (held by database backend pid %s)",
                MIGRATION_LOCK_WAIT_SECONDS, migration_lock_holder(connection))
    if not wait_for(lambda: try_lock_migrations(connection), MIGRATION_LOCK_WAIT_SECONDS):
        raise DatabaseError(f"the migration lock is still held by database backend pid "
                            f"{migration_lock_holder(connection)} after {MIGRATION_LOCK_WAIT_SECONDS:g}s: another "
                            "wombat-collect is migrating, or a session is stuck (see pg_stat_activity)")


def try_lock_migrations(connection):
    """Given an autocommit connection, return True if it took the migration lock at once."""
    with connection.cursor() as cursor:
        cursor.execute(statement("try_lock_migrations"), {"key": MIGRATION_LOCK_KEY})
        return cursor.fetchone()[0]


def migration_lock_holder(connection):
    """Given a connection, return the backend pid holding the migration lock, or 'unknown'."""
    with connection.cursor() as cursor:
        cursor.execute(statement("migration_lock_holder"), {"key": MIGRATION_LOCK_KEY})
        row = cursor.fetchone()
    return row[0] if row else "unknown"


def _apply_pending(connection):
    with connection.cursor() as cursor:
        if migration_ledger(cursor) is None:
            cursor.execute(statement("create_migration_table"))
        done = applied_versions(cursor)
    applied = []
    for version, name, path in available_migrations():
        if version in done:
            continue
        connection.autocommit = False
        with transaction(connection):  # one transaction per migration
            with connection.cursor() as cursor:
                cursor.execute(path.read_text(encoding="utf-8"))
                # 0006 moves the ledger into schema wombat_collect: ask where it is after each migration.
                cursor.execute(statement(f"record_migration_{migration_ledger(cursor)}"),
                               {"version": version, "name": name})
        connection.autocommit = True
        logger.info("applied migration %04d %s", version, name)
        applied.append(version)
    return applied


def migration_ledger(cursor):
    """Given a cursor, return where the migration ledger is: 'own' (schema wombat_collect), 'legacy'
    (the current schema, before migration 0006) or None (no ledger yet)."""
    cursor.execute(statement("migration_ledger"))
    return cursor.fetchone()[0]


def applied_versions(cursor):
    """Given a cursor, return the set of migration versions the ledger records (empty without a ledger)."""
    ledger = migration_ledger(cursor)
    if ledger is None:
        return set()
    cursor.execute(statement(f"applied_migrations_{ledger}"))
    return {row[0] for row in cursor.fetchall()}


def verify_schema(connection):
    """Given a connection, check the columns and unique keys wombat-collect relies on.

    Raise SchemaError naming every missing column or key.
    """
    tables = list(REQUIRED_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(statement("existing_columns"), {"tables": tables})
        present = {(table, column) for table, column in cursor.fetchall()}
        cursor.execute(statement("unique_keys"), {"tables": tables})
        keys = {(table, tuple(columns)) for table, columns in cursor.fetchall()}
    missing = [
        f"{table}.{column}"
        for table, columns in REQUIRED_COLUMNS.items()
        for column in columns
        if (table, column) not in present
    ]
    if missing:
        raise SchemaError(f"the database lacks columns wombat-collect writes: {', '.join(missing)}")
    for table, columns in REQUIRED_UNIQUE_KEYS.items():
        if (table, tuple(sorted(columns))) not in keys:
            raise SchemaError(f"table {table} lacks a unique key on ({', '.join(columns)})")
