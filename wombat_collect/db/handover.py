"""Hand a database wombat-collect created over to the backend's alembic migrations.

On an empty database wombat-collect creates the backend's exchange, symbol, pricedata and
realtime_prices itself (the embedded default needs them), without alembic_version. The
backend's prestart `alembic upgrade head` would then stop at `create_exchanges` with
DuplicateTable. `hand_over()` creates the backend's other tables as they are at its head,
creates alembic_version and stamps that head, in one transaction, touching no existing
table or row; the backend's migrations then start from there. A database alembic_version
already describes is left alone; one whose revision this release does not know is refused.
"""

import logging
from dataclasses import dataclass

from wombat_collect.db.connection import transaction
from wombat_collect.db.migrate import MIGRATION_LOCK_KEY
from wombat_collect.db.queries import statement
from wombat_collect.errors import EXIT_USAGE, SchemaError

# The backend's alembic chain (app/alembic/versions), oldest first; its head last.
BACKEND_REVISIONS = (
    "e2412789c190", "9c0a54914c78", "d98dd8ec85a3", "1a31ce608336", "9a6c6a9c1889", "af343d6d024f",
    "547a8e60e106", "0576d8178e68", "217092bfa2bc", "70ecf60ef89c", "8225c4a7de6f", "9b8db78ecf16",
    "e6d6b1662d4b", "ea251db58f8e",
)
BACKEND_HEAD = BACKEND_REVISIONS[-1]
# The backend's tables at its head, in the order they can be created (foreign keys).
BACKEND_TABLES = ("user", "userapikey", "exchange", "symbol", "pricedata", "realtime_prices", "tradingstrategy",
                  "strategysymbol")
WRITTEN_BY_US = ("exchange", "symbol", "pricedata", "realtime_prices")  # db/migrations 0001 and 0003 create them

logger = logging.getLogger(__name__)


class UnknownRevision(SchemaError):
    """alembic_version names a revision this release does not know (a newer or a forked backend)."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class BackendState:
    """What a database holds of the backend: alembic_version's revisions (None: no table) and its tables."""

    revisions: tuple | None
    tables: tuple

    @property
    def stamped(self):
        """True if alembic_version holds a revision (the backend's migrations manage this database)."""
        return bool(self.revisions)

    @property
    def unknown_revisions(self):
        """The revisions in alembic_version that are not in BACKEND_REVISIONS."""
        return tuple(revision for revision in self.revisions or () if revision not in BACKEND_REVISIONS)

    @property
    def missing_tables(self):
        """The backend's tables at its head that are absent, in creation order."""
        return tuple(table for table in BACKEND_TABLES if table not in self.tables)


def backend_state(cursor):
    """Given a cursor, return the BackendState of its database (read-only)."""
    cursor.execute(statement("backend_tables_present"), {"tables": list(BACKEND_TABLES)})
    tables = tuple(row[0] for row in cursor.fetchall())
    cursor.execute(statement("alembic_version_exists"))
    if not cursor.fetchone()[0]:
        return BackendState(None, tables)
    cursor.execute(statement("alembic_revisions"))
    return BackendState(tuple(row[0] for row in cursor.fetchall()), tables)


def hand_over(connection):
    """Given a connection to a migrated database, bring it to the backend's alembic head.

    Return what was done, in words. Safe to run twice: a database whose alembic_version
    holds a known revision is left as it is. Raise UnknownRevision if it holds one this
    release does not know.
    """
    with transaction(connection), connection.cursor() as cursor:
        cursor.execute(statement("lock_hand_over"), {"key": MIGRATION_LOCK_KEY})
        state = backend_state(cursor)
        refuse_unknown(state)
        if state.stamped:
            return f"nothing to do: alembic_version is at {', '.join(state.revisions)}, the backend's migrations " \
                   "manage this database"
        created = create_backend_tables(cursor, state.missing_tables)
        cursor.execute(statement("create_alembic_version"))
        cursor.execute(statement("stamp_alembic_version"), {"revision": BACKEND_HEAD})
    made = f"created {', '.join(created)}; " if created else ""
    return f"{made}alembic_version stamped at {BACKEND_HEAD} (the backend's head): its `alembic upgrade head` " \
           "starts from there"


def refuse_unknown(state):
    """Given a BackendState, raise UnknownRevision if this release cannot tell where the backend's migrations stand.

    That is: alembic_version names a revision this release does not know, or it holds none
    while backend tables wombat-collect never creates exist (made by something else).
    """
    if state.unknown_revisions:
        raise UnknownRevision(
            f"alembic_version is at {', '.join(state.unknown_revisions)}, a revision this wombat-collect does not "
            f"know (it knows the backend up to {BACKEND_HEAD}): nothing was changed; upgrade wombat-collect, or "
            "let the backend's own migrations manage this database")
    foreign = [table for table in state.tables if table not in WRITTEN_BY_US]
    if not state.stamped and foreign:
        raise UnknownRevision(
            f"table(s) {', '.join(foreign)} exist but alembic_version holds no revision: they were not made by "
            "wombat-collect nor by the backend's migrations, so nothing was changed; stamp the revision they match "
            "(`alembic stamp <revision>` in the backend) and run the backend's `alembic upgrade head`")


def create_backend_tables(cursor, missing):
    """Given a cursor in the hand-over's transaction and the missing backend tables, create them; return their names.

    Raise SchemaError if one of the tables wombat-collect's own migrations create is missing (run them first).
    """
    ours = [table for table in missing if table in WRITTEN_BY_US]
    if ours:
        raise SchemaError(f"table(s) {', '.join(ours)} missing: apply wombat-collect's migrations first")
    if "user" in missing:
        cursor.execute(statement("uuid_extension_available"))
        if cursor.fetchone()[0]:
            cursor.execute(statement("create_uuid_extension"))
        else:
            logger.warning("extension uuid-ossp is not available on this server: the backend's revision "
                           "d98dd8ec85a3 creates it (nothing at its head uses it)")
    for table in missing:
        cursor.execute(statement(f"create_{table}"))
    return list(missing)
