"""The database a job writes to: migrated, exchange rows created, handed over to the backend."""

from wombat_collect.db import store
from wombat_collect.db.connection import connect, database_errors, transaction


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
