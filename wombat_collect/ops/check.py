"""`wombat-collect check`: the seed's manual troubleshooting as one read-only command.

Each check returns one CheckResult (name, state, message): what was found and,
where something is wrong, what to do. States and the exit code follow `status`
(0 ok, 1 warning, 2 critical: the worst check). Read-only: no migration is
applied, nothing is written to the database (the session is read-only) or to
disk (no lock file, no state directory, no embedded server started), except
the KIS token cache with --issue-token. Every check is bounded: the database by
connect_timeout and CHECK_STATEMENT_TIMEOUT, HTTP by the shared client's
timeouts, host commands by COMMAND_TIMEOUT_SECONDS. A check that cannot run
says so ("skipped: ...") and the others still run.
"""

import json
import logging
import os
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path

from wombat_collect.errors import WombatError, describe_unexpected
from wombat_collect.ops.status import SEOUL, STATES, local_time

OK, WARNING, CRITICAL = STATES
CHECK_STATEMENT_TIMEOUT = "10s"  # each query of the check; they take milliseconds
COMMAND_TIMEOUT_SECONDS = 10.0  # systemctl
TOKEN_LOCK_WAIT_SECONDS = 30.0  # --issue-token: how long to wait for another process's issuance
SKEW_WARNING_SECONDS = 5.0
SKEW_CRITICAL_SECONDS = 60.0
DATE_RESOLUTION_SECONDS = 1.0  # an HTTP Date header is cut to the whole second
ZONE = "Asia/Seoul"
TZIF_MAGIC = b"TZif"
UPBIT_PROBE = ("/v1/market/all", "market")  # the listing without details: one small public request
KIS_MASTER_PROBE_MARKET = "KONEX"  # the smallest master zip
TIMERS = ("wombat-collect-symbols.timer", "wombat-collect-prices.timer", "wombat-collect-prices-upbit.timer",
          "wombat-collect-quotes-upbit.timer", "wombat-collect-quotes-kis.timer")
BACKEND_SCHEDULER = "scheduler-engine.service"
SYSTEMD_ABSENT = ("not been booted with systemd", "Failed to connect to bus", "System has not been booted")
DATABASE_CHECKS = ("migrations", "schema", "backend", "privileges")
OWN_SCHEMA = "wombat_collect"  # migration 0006: our own tables, out of the backend's schema
# What each table needs (connection.NEEDED_PRIVILEGES says it in words for the error messages).
TABLE_PRIVILEGES = {
    "exchange": ("SELECT", "INSERT"),
    "symbol": ("SELECT", "INSERT", "UPDATE"),
    "pricedata": ("SELECT", "INSERT", "UPDATE"),
    "realtime_prices": ("SELECT", "INSERT", "UPDATE"),
    "wombat_collect.collect_run": ("SELECT", "INSERT", "UPDATE"),
    "wombat_collect.fetched_range": ("SELECT", "INSERT", "DELETE"),
    "wombat_collect.confirmed_empty": ("SELECT", "INSERT", "UPDATE", "DELETE"),  # gaps --repair
    "wombat_collect.gap_summary": ("SELECT", "INSERT", "UPDATE"),  # gaps
    "wombat_collect.wombat_collect_migration": ("SELECT",),
}

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict: its name, ok/warning/critical, and one line saying what was found and what to do."""

    name: str
    state: str
    message: str


@dataclass
class CheckReport:
    """Every check's result, in order; `state` is the worst of them."""

    checked_at: datetime
    results: list = field(default_factory=list)

    @property
    def state(self):
        return max((result.state for result in self.results), key=STATES.index, default=OK)

    @property
    def exit_code(self):
        return STATES.index(self.state)


def result(name, state, message):
    """Given a check's name, state and message, return its CheckResult, the message on one line, secrets masked."""
    from wombat_collect.http import flatten

    return CheckResult(name, state, flatten(message))


def skipped(name, reason, state=WARNING):
    """Given a check's name and why it cannot run, return its 'skipped' CheckResult."""
    return result(name, state, f"skipped: {reason}")


def guarded(name, check, *arguments):
    """Given a check function and its arguments, return its result(s) as a list; an error becomes a CRITICAL line.

    A WombatError or database error says what went wrong; anything else is one
    redacted line, so one broken check never stops the others.
    """
    import psycopg2

    from wombat_collect.db.connection import describe_error

    try:
        found = check(*arguments)
    except WombatError as error:
        return [result(name, CRITICAL, str(error))]
    except psycopg2.Error as error:
        return [result(name, CRITICAL, describe_error(error))]
    except Exception as error:  # the last guard: one line, the other checks still run
        return [result(name, CRITICAL, describe_unexpected(error))]
    return found if isinstance(found, list) else [found]


def run_checks(env_file, read_variables, load_settings, exchanges, issue_token=False):
    """Given --env-file, the CLI's variable and settings loaders, exchange codes and --issue-token, return the report.

    read_variables() and load_settings() raise ConfigError on a bad env file or value.
    """
    report = CheckReport(datetime.now(timezone.utc))
    settings_box = []
    report.results += guarded("configuration", check_configuration, load_settings, settings_box)
    report.results += guarded("env file", check_env_file, env_file)
    if not settings_box:
        names = ["database", "connection", *DATABASE_CHECKS, *exchange_check_names(exchanges), "lock directory",
                 "state directory"]
        report.results += [skipped(name, "the configuration is invalid") for name in names]
    else:
        settings = settings_box[0]
        report.results += guarded("database", check_database_choice, read_variables, settings)
        report.results += database_checks(settings)
        report.results += exchange_checks(settings, exchanges, issue_token)
        report.results += guarded("lock directory", check_lock_directory, settings)
        report.results += guarded("state directory", check_state_directory, settings)
    report.results += guarded("time zone", check_time_zone)
    report.results += guarded("timers", check_systemd)
    return report


# --------------------------------------------------------------------------- configuration


def check_configuration(load_settings, settings_box):
    """Given the settings loader, return the configuration's CheckResult; put the Settings in settings_box."""
    from wombat_collect.errors import ConfigError

    try:
        settings = load_settings()
    except ConfigError as error:
        return result("configuration", CRITICAL, f"{error}; fix it in the environment or the env file")
    settings_box.append(settings)
    return result("configuration", OK, f"every variable parses (timeframes {' '.join(settings.timeframes)}, "
                                       f"{settings.workers} workers, HTTP timeout {settings.http_timeout:g} s)")


def check_env_file(env_file):
    """Given --env-file (or None), return the CheckResult of the env file that is read: which, whose, what mode."""
    from wombat_collect.config import env_file_path, untrusted_reason

    path, implicit = env_file_path(env_file, os.environ)
    if path is None:
        return result("env file", OK, "none (no --env-file, WOMBAT_ENV_FILE or ./.env): the environment only")
    try:
        status = os.stat(path)
    except OSError as error:
        return result("env file", CRITICAL, f"{path}: {error.strerror}; fix the path (--env-file, WOMBAT_ENV_FILE)")
    distrust = untrusted_reason(status)
    mode = stat.S_IMODE(status.st_mode)
    if distrust:
        what = "ignored" if implicit else "refused"
        return result("env file", WARNING if implicit else CRITICAL,
                      f"{path} is {what}: it is {distrust}; chown it to this user or root, chmod 600 {path}")
    if not os.access(path, os.R_OK):
        return result("env file", CRITICAL, f"{path} (mode {mode:04o}) cannot be read by this user")
    if stat.S_ISREG(status.st_mode) and mode & stat.S_IROTH:
        return result("env file", WARNING, f"{path} has mode {mode:04o}: every user may read its secrets; "
                                           f"chmod 600 {path} (640 with a group, as for cron)")
    return result("env file", OK, f"{path}, owner uid {status.st_uid}, mode {mode:04o}")


def check_database_choice(read_variables, settings):
    """Given the variable loader and Settings, return which database will be used and how it was chosen."""
    from wombat_collect.config import mask_dsn

    variables = read_variables()
    if (variables.get("DATABASE_URL") or "").strip():
        ignored = " (POSTGRES_SERVER is set too, and ignored)" if (variables.get("POSTGRES_SERVER") or "").strip() \
            else ""
        return result("database", OK, f"DATABASE_URL names {mask_dsn(settings.database_url)}{ignored}")
    if settings.database_url:
        return result("database", OK, f"POSTGRES_SERVER and friends name {mask_dsn(settings.database_url)}")
    return result("database", WARNING, f"no DATABASE_URL or POSTGRES_SERVER: the embedded PostgreSQL under "
                                       f"{settings.data_dir} (for trying out; set DATABASE_URL for a service)")


# --------------------------------------------------------------------------- database


def database_checks(settings):
    """Given Settings, return the connection, migration, schema and privilege CheckResults (read-only session)."""
    dsn, reason = database_to_check(settings)
    if dsn is None:
        return [skipped(name, reason) for name in ("connection", *DATABASE_CHECKS)]
    connection, found = open_read_only(dsn)
    if connection is None:
        return [found, *(skipped(name, "the database is unreachable") for name in DATABASE_CHECKS)]
    try:
        pending = []
        results = [found, *guarded("migrations", check_migrations, connection, pending)]
        results += guarded("schema", check_schema, connection, pending)
        results += guarded("backend", check_backend, connection)
        results += guarded("privileges", check_privileges, connection, pending)
        return results
    finally:
        connection.close()


def database_to_check(settings):
    """Given Settings, return (the DSN to check, None), or (None, why there is none) for an embedded server.

    The embedded server is checked only while it runs: `check` never starts or creates it.
    Raise ConfigError if the embedded server is needed but not installed.
    """
    from wombat_collect.db.connection import EMBEDDED_PGDATA, running_embedded_dsn

    if settings.database_url:
        return settings.database_url, None
    dsn = running_embedded_dsn(settings.data_dir)
    if dsn is not None:
        return dsn, None
    pgdata = settings.data_dir / EMBEDDED_PGDATA
    if not pgdata.exists():
        return None, f"the embedded PostgreSQL ({pgdata}) is not created yet; `wombat-collect db init` creates it"
    return None, f"the embedded PostgreSQL ({pgdata}) is not running; check never starts it, other commands do"


def open_read_only(dsn):
    """Given a DSN, return (a read-only autocommit connection, its 'connection' CheckResult), or (None, CRITICAL).

    The CRITICAL line names host, port, database and user (never the password) and libpq's error.
    """
    import psycopg2

    from wombat_collect.db.connection import connect, describe_error
    from wombat_collect.errors import DatabaseError

    started = time.monotonic()
    try:
        connection = connect(dsn, autocommit=True)
    except DatabaseError as error:
        return None, result("connection", CRITICAL, f"{describe_target(dsn)}: {error}; check that the server runs "
                                                    "and accepts this user from this host (pg_hba.conf), and the "
                                                    "password")
    seconds = time.monotonic() - started
    try:
        found = server_verdict(connection, dsn, seconds)
        connection.set_session(readonly=True)  # belt and braces: nothing the check sends can write
    except psycopg2.Error as error:
        connection.close()
        return None, result("connection", CRITICAL, f"{describe_target(dsn)}: {describe_error(error)}")
    return connection, found


def describe_target(dsn):
    """Given a DSN, return 'database D as user U on host H port P' (never the password)."""
    import psycopg2.extensions

    try:
        parts = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError:
        return "the database (unparsable DSN)"
    return (f"database {parts.get('dbname', '(default)')} as user {parts.get('user', '(default)')} "
            f"on host {parts.get('host', 'localhost')} port {parts.get('port', '5432')}")


def server_verdict(connection, dsn, seconds):
    """Given a fresh connection, return the 'connection' CheckResult: the server version and whether it can write."""
    from wombat_collect.db.queries import statement

    with connection.cursor() as cursor:
        cursor.execute(statement("set_timeout"), {"name": "statement_timeout", "value": CHECK_STATEMENT_TIMEOUT,
                                                  "local": False})
        cursor.execute(statement("server_facts"))
        version, in_recovery, read_only_default, _, _, schema = cursor.fetchone()
    found = f"{describe_target(dsn)}: PostgreSQL {version}, answered in {seconds:.2f} s"
    if in_recovery:
        return result("connection", CRITICAL, f"{found}, but it is a read-only standby; DATABASE_URL must name "
                                              "the primary server")
    if read_only_default:
        return result("connection", CRITICAL, f"{found}, but sessions are read-only (default_transaction_read_only"
                                              "=on); turn it off for this role or database")
    if schema is None:
        return result("connection", CRITICAL, f"{found}, but no schema of the search_path exists; set search_path")
    return result("connection", OK, f"{found}, schema {schema}")


def check_migrations(connection, pending):
    """Given a connection, return the migrations' CheckResult; put the pending (version, name)s in `pending`."""
    from wombat_collect.db.migrate import applied_versions, available_migrations

    with connection.cursor() as cursor:
        applied = applied_versions(cursor)
    known = available_migrations()
    pending += [(version, name) for version, name, _ in known if version not in applied]
    unknown = sorted(applied - {version for version, _, _ in known})
    if pending:
        names = ", ".join(f"{version:04d} {name}" for version, name in pending)
        return result("migrations", WARNING, f"{len(pending)} of {len(known)} pending ({names}); "
                                             "`wombat-collect db init` applies them (so does every collecting command)")
    if unknown:
        return result("migrations", WARNING, f"all {len(known)} applied, and {', '.join(map(str, unknown))} that "
                                             "this version does not know: is an older wombat-collect running?")
    return result("migrations", OK, f"all {len(known)} applied")


def check_schema(connection, pending):
    """Given a connection and the pending migrations, return the CheckResult of the backend's tables we write.

    Missing tables are a WARNING while migrations are pending (they create them);
    a table lacking a column or unique key we write is CRITICAL (every run would stop).
    """
    from wombat_collect.db.migrate import REQUIRED_COLUMNS, REQUIRED_UNIQUE_KEYS
    from wombat_collect.db.queries import statement

    tables = list(REQUIRED_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(statement("existing_columns"), {"tables": tables})
        present = set(cursor.fetchall())
        cursor.execute(statement("unique_keys"), {"tables": tables})
        keys = {(table, tuple(columns)) for table, columns in cursor.fetchall()}
    existing = {table for table, _ in present}
    absent = [table for table in tables if table not in existing]
    problems = [f"{table}.{column}" for table in existing for column in REQUIRED_COLUMNS[table]
                if (table, column) not in present]
    problems = [f"lacks column(s) {', '.join(sorted(problems))}"] if problems else []
    problems += [f"table {table} lacks a unique key on ({', '.join(columns)})"
                 for table, columns in REQUIRED_UNIQUE_KEYS.items()
                 if table in existing and (table, tuple(sorted(columns))) not in keys]
    if problems:
        return result("schema", CRITICAL, f"{'; '.join(problems)}: every run stops on this; the backend's "
                                          "migrations (alembic upgrade head) add them")
    if absent and pending:
        return result("schema", WARNING, f"table(s) {', '.join(absent)} missing; the pending migrations create them")
    if absent:
        return result("schema", CRITICAL, f"table(s) {', '.join(absent)} missing though every migration is "
                                          "applied (dropped?); restore them from the backend's migrations")
    return result("schema", OK, f"{', '.join(tables)} have the columns and unique keys wombat-collect writes")


def check_backend(connection):
    """Given a connection, return the CheckResult of the backend's migrations: its tables and alembic_version.

    OK when alembic_version is at a revision this release knows, or absent with none of the
    backend's own tables (wombat-collect alone; the line says to run `db hand-over` before the
    backend is deployed). WARNING when the revision is unknown, or backend tables exist without one.
    """
    from wombat_collect.db.handover import BACKEND_HEAD, BACKEND_TABLES, WRITTEN_BY_US, backend_state

    with connection.cursor() as cursor:
        state = backend_state(cursor)
    present = f"{len(state.tables)} of the backend's {len(BACKEND_TABLES)} tables present"
    if state.unknown_revisions:
        return result("backend", WARNING, f"{present}; alembic_version at {', '.join(state.unknown_revisions)}, a "
                                          f"revision this wombat-collect does not know (it knows up to {BACKEND_HEAD}):"
                                          " a newer backend? upgrade wombat-collect")
    if state.stamped:
        behind = "" if BACKEND_HEAD in state.revisions else f"; the backend's head is {BACKEND_HEAD}: its " \
                                                              "`alembic upgrade head` brings it there"
        return result("backend", OK, f"{present}; alembic_version at {', '.join(state.revisions)}{behind}")
    foreign = [table for table in state.tables if table not in WRITTEN_BY_US]
    if foreign:
        return result("backend", WARNING, f"{present} ({', '.join(foreign)} among them) but no alembic_version "
                                          "revision: stamp the revision they match in the backend (`alembic stamp`)")
    return result("backend", OK, f"{present}, no alembic_version (wombat-collect alone): before deploying the "
                                 "backend on this database, run `wombat-collect db hand-over`")


def check_privileges(connection, pending):
    """Given a connection and the pending migrations, return the CheckResult of the role's privileges.

    Asked with has_table_privilege and the like, never by writing: what each
    table needs (TABLE_PRIVILEGES), USAGE on serial sequences and the schema,
    TEMPORARY on the database, and CREATE on the schema while migrations are pending.
    A CRITICAL line lists the GRANTs to run.
    """
    role, grants = missing_grants(connection, bool(pending))
    if grants:
        return result("privileges", CRITICAL, f"role {role} lacks privileges wombat-collect needs; {'; '.join(grants)}")
    create = ", CREATE on the schema for the pending migrations" if pending else ""
    return result("privileges", OK, f"role {role} may read and write every table wombat-collect writes "
                                    f"(SELECT, INSERT, UPDATE), use their sequences, create temporary tables{create}")


def missing_grants(connection, needs_create):
    """Given a connection and whether migrations are pending, return (the role, the GRANTs it lacks)."""
    from wombat_collect.db.queries import statement

    tables = [table for table, privileges in TABLE_PRIVILEGES.items() for _ in privileges]
    privileges = [privilege for wanted in TABLE_PRIVILEGES.values() for privilege in wanted]
    with connection.cursor() as cursor:
        cursor.execute(statement("server_facts"))
        role, database, schema = cursor.fetchone()[3:]
        cursor.execute(statement("table_privileges"), {"tables": tables, "privileges": privileges})
        missing = {}
        for table, privilege, granted in cursor.fetchall():
            if not granted:
                missing.setdefault(table, []).append(privilege)
        cursor.execute(statement("sequence_privileges"), {"tables": list(TABLE_PRIVILEGES)})
        sequences = [name for _, name, granted in cursor.fetchall() if not granted]
        cursor.execute(statement("schema_privileges"))
        schema_usage, schema_create, own_schema_usage, database_create, temporary = cursor.fetchone()
    grants = [f"GRANT {', '.join(sorted(wanted))} ON {table} TO {role}" for table, wanted in sorted(missing.items())]
    grants += [f"GRANT USAGE ON SEQUENCE {name} TO {role}" for name in sequences]
    grants += [] if schema_usage else [f"GRANT USAGE ON SCHEMA {schema} TO {role}"]
    grants += [] if own_schema_usage in (True, None) else [f"GRANT USAGE ON SCHEMA {OWN_SCHEMA} TO {role}"]
    grants += [] if temporary else [f"GRANT TEMPORARY ON DATABASE {database} TO {role}"]
    owner_hint = "(or run `wombat-collect db init` as the owner)"
    if needs_create and not schema_create:
        grants.append(f"GRANT CREATE ON SCHEMA {schema} TO {role} {owner_hint}")
    if needs_create and own_schema_usage is None and not database_create:
        grants.append(f"GRANT CREATE ON DATABASE {database} TO {role} {owner_hint}")
    return role, grants


# --------------------------------------------------------------------------- exchanges


def exchange_check_names(exchanges):
    """Given exchange codes, return the names of their checks, in order."""
    names = {"upbit": ("upbit", "upbit clock"), "kis": ("kis master", "kis clock", "kis token")}
    return [name for code in exchanges for name in names[code]]


def exchange_checks(settings, exchanges, issue_token):
    """Given Settings, exchange codes and --issue-token, return each exchange's reachability, clock and token."""
    results = []
    if "upbit" in exchanges:
        results += probe_checks("upbit", upbit_probe, settings)
    if "kis" in exchanges:
        results += probe_checks("kis master", kis_master_probe, settings)
        results += guarded("kis token", check_kis_token, settings, issue_token)
    return results


def probe_checks(name, probe, settings):
    """Given a check name and probe(settings) -> (Answer, seconds, host time, URL), return reachability and clock."""
    from wombat_collect.http import snippet

    exchange = name.split()[0]
    clock = f"{exchange} clock"
    try:
        answer, seconds, host_time, url = probe(settings)
    except WombatError as error:
        return [result(name, CRITICAL, f"{str(error).removeprefix(f'{name}: ')}; check the network, DNS, a proxy "
                                       "or firewall, and the URL variable"), skipped(clock, f"{name} did not answer")]
    if answer.status != 200:
        found = result(name, CRITICAL, f"{url} answered HTTP {answer.status} in {seconds:.2f} s: {snippet(answer.text)}"
                                       "; is the URL variable right?")
    else:
        found = result(name, OK, f"{url} answered HTTP 200 in {seconds:.2f} s")
    return [found, clock_skew(clock, name, answer.date, host_time)]


def timed_probe(client, path, group):
    """Given an HttpClient, a path and its pacer group, return (Answer, seconds, host time at mid-request, URL)."""
    from wombat_collect.http import display_url

    started, started_clock = time.monotonic(), time.time()
    answer = client.probe(path, group)
    seconds = time.monotonic() - started
    return answer, seconds, started_clock + seconds / 2, display_url(client.base_url + path)


def upbit_probe(settings):
    """Given Settings, return timed_probe of Upbit's market listing."""
    from wombat_collect.collectors import upbit

    return timed_probe(upbit.open_client(settings), *UPBIT_PROBE)


def kis_master_probe(settings):
    """Given Settings, return timed_probe of the smallest KIS master zip on the master-file host."""
    from wombat_collect.collectors import kis
    from wombat_collect.collectors.kis_master import MASTER_FILES
    from wombat_collect.http import HttpClient
    from wombat_collect.ratelimit import RateLimiter

    limiters = {kis.MASTER_GROUP: RateLimiter(kis.MASTER_DOWNLOAD_RATE)}
    client = HttpClient("kis master", settings.kis_master_url, limiters, kis.classify, settings.http_timeout)
    return timed_probe(client, f"/{MASTER_FILES[KIS_MASTER_PROBE_MARKET]}", kis.MASTER_GROUP)


def clock_skew(name, exchange, date_header, host_time):
    """Given an answer's Date header and the host's time when it was sent, return the clock CheckResult.

    Positive skew: the host clock is behind. WARNING above SKEW_WARNING_SECONDS,
    CRITICAL above SKEW_CRITICAL_SECONDS. The Date header is cut to the second:
    its middle is compared.
    """
    try:
        server_time = parsedate_to_datetime(date_header).timestamp() + DATE_RESOLUTION_SECONDS / 2
    except (TypeError, ValueError, IndexError):
        return skipped(name, f"{exchange} sent no readable Date header")
    skew = server_time - host_time
    found = (f"host clock ({datetime.fromtimestamp(host_time, SEOUL):%Y-%m-%d %H:%M:%S %Z}) is {abs(skew):.1f} s "
             f"{'behind' if skew > 0 else 'ahead of'} {exchange}'s (HTTP Date)")
    if abs(skew) <= SKEW_WARNING_SECONDS:
        return result(name, OK, f"{found}, within {SKEW_WARNING_SECONDS:g} s")
    limit = SKEW_CRITICAL_SECONDS if abs(skew) > SKEW_CRITICAL_SECONDS else SKEW_WARNING_SECONDS
    return result(name, CRITICAL if limit == SKEW_CRITICAL_SECONDS else WARNING,
                  f"{found}, more than {limit:g} s; synchronise it (timedatectl set-ntp true, or chrony)")


def check_kis_token(settings, issue_token):
    """Given Settings, return the KIS credentials' CheckResult: the cached token and its expiry.

    Only with issue_token is a token issued (when none valid is cached) and cached:
    KIS throttles issuance and notifies the account holder each time.
    """
    from wombat_collect.collectors import kis
    from wombat_collect.collectors.kis_token import KST, cache_path, read_cache

    problem = kis.credentials_problem(settings)
    if problem:
        return result("kis token", WARNING, f"{problem} (the listing needs none); set them in the env file")
    if issue_token:
        token = kis.open_token_cache(settings, lock_wait=TOKEN_LOCK_WAIT_SECONDS).token()
        return result("kis token", OK, f"the KIS key works: token valid until "
                                       f"{token.expires_at.astimezone(KST):%Y-%m-%d %H:%M %Z}")
    path = cache_path(settings.state_dir, settings.kis_api_url, settings.kis_app_key)
    token = read_cache(path)
    if token is not None and datetime.now(timezone.utc) < token.renew_at:
        return result("kis token", OK, f"cached token valid until {token.expires_at.astimezone(KST):%Y-%m-%d %H:%M %Z}"
                                       f" ({path})")
    found = (f"cached token expired at {token.expires_at.astimezone(KST):%Y-%m-%d %H:%M %Z}" if token
             else f"no cached token in {path.parent}")
    return result("kis token", WARNING, f"{found}: the KIS key is unverified until the next KIS run issues one; "
                                        "to verify it now: wombat-collect check --exchange kis --issue-token "
                                        "(KIS throttles issuance and notifies the account holder)")


# --------------------------------------------------------------------------- host


def check_time_zone():
    """Return the CheckResult of the Asia/Seoul zone data the timers and the crontab rely on.

    Looked up where the C library looks ($TZDIR), else in Python's zoneinfo.TZPATH
    (which honours $PYTHONTZPATH); Python's own tzdata package does not count.
    """
    import zoneinfo

    tzdir = os.environ.get("TZDIR", "").strip()
    directories = [tzdir] if tzdir else list(zoneinfo.TZPATH)
    for directory in directories:
        path = Path(directory) / ZONE
        try:
            with open(path, "rb") as stream:
                if stream.read(len(TZIF_MAGIC)) == TZIF_MAGIC:
                    return result("time zone", OK, f"{ZONE} zone data present ({path})")
        except OSError:
            continue
    where = f"{tzdir} ($TZDIR)" if tzdir else ", ".join(directories)
    return result("time zone", CRITICAL, f"no {ZONE} zone data in {where}: the systemd timers and the crontab "
                                         "read it; install the tzdata package")


def check_lock_directory(settings):
    """Given Settings, return the lock directory's CheckResult (locks.check_lock_dir's rules; nothing created)."""
    from wombat_collect.ops.locks import check_lock_dir

    directory = check_lock_dir(settings.lock_dir, create=False)
    if not os.path.lexists(directory):
        return result("lock directory", OK, f"{settings.lock_dir} is usable; the first run creates {directory} "
                                            "(mode 0700)")
    return result("lock directory", OK, f"{directory} is writable by this user")


def check_state_directory(settings):
    """Given Settings, return the state directory's CheckResult: it exists with mode 0700 and is writable."""
    path = settings.state_dir
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return result("state directory", OK, f"{path} does not exist yet; the first KIS token creates it (mode 0700)")
    mode = stat.S_IMODE(status.st_mode)
    if not stat.S_ISDIR(status.st_mode):
        return result("state directory", CRITICAL, f"{path} is not a directory; remove it or set WOMBAT_STATE_DIR")
    if not os.access(path, os.W_OK | os.X_OK):
        return result("state directory", CRITICAL, f"{path} (owner uid {status.st_uid}, mode {mode:04o}) is not "
                                                   "writable by this user; chown it, or set WOMBAT_STATE_DIR")
    if mode != 0o700:
        return result("state directory", WARNING, f"{path} has mode {mode:04o}, not 0700 (it holds the KIS token "
                                                  f"cache); chmod 700 {path}")
    return result("state directory", OK, f"{path}, mode 0700")


def check_systemd():
    """Return the CheckResults of the wombat-collect timers and the backend's scheduler-engine.service.

    Asked of `systemctl show` where systemctl exists and systemd runs; else both say why they were skipped.
    """
    units, reason = systemd_units()
    if units is None:
        return [skipped("timers", reason, OK), skipped("scheduler-engine", reason, OK)]
    return [timers_verdict(units), scheduler_verdict(units.get(BACKEND_SCHEDULER, {}))]


def systemd_units():
    """Return ({unit: {property: value}}, None) from `systemctl show`, or (None, why it cannot be asked)."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return None, "no systemctl on this host"
    command = [systemctl, "show", "--property=Id,LoadState,UnitFileState,ActiveState,NextElapseUSecRealtime",
               "--", *TIMERS, BACKEND_SCHEDULER]
    try:
        done = subprocess.run(command, capture_output=True, text=True,  # noqa: S603 - a fixed argument list
                              timeout=COMMAND_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        return None, f"systemctl did not answer within {COMMAND_TIMEOUT_SECONDS:g} s"
    except OSError as error:
        return None, f"cannot run systemctl: {error.strerror}"
    if done.returncode != 0:
        text = " ".join((done.stderr or done.stdout).split())
        absent = any(phrase in text for phrase in SYSTEMD_ABSENT)
        return None, "systemd is not running here" if absent else f"systemctl failed: {text[:120]}"
    return parse_units(done.stdout), None


def parse_units(text):
    """Given `systemctl show` output (blank-line separated blocks of Key=value), return {Id: {Key: value}}."""
    units = {}
    for block in text.strip().split("\n\n"):
        properties = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if properties.get("Id"):
            units[properties["Id"]] = properties
    return units


def timers_verdict(units):
    """Given the units' properties, return the 'timers' CheckResult: installed timers enabled, with next runs."""
    installed = [name for name in TIMERS if units.get(name, {}).get("LoadState") == "loaded"]
    if not installed:
        return result("timers", OK, "no wombat-collect timers installed (scheduled by cron, Compose or Kubernetes?)")
    idle = [name for name in installed
            if units[name].get("UnitFileState") != "enabled" or units[name].get("ActiveState") != "active"]
    if idle:
        states = ", ".join(f"{name} {units[name].get('UnitFileState')}/{units[name].get('ActiveState')}"
                           for name in idle)
        return result("timers", WARNING, f"{states}; systemctl enable --now {' '.join(idle)}")
    nexts = "; ".join(f"{name.removeprefix('wombat-collect-').removesuffix('.timer')} next "
                      f"{units[name].get('NextElapseUSecRealtime') or 'n/a'}" for name in installed)
    return result("timers", OK, f"{len(installed)} enabled: {nexts}")


def scheduler_verdict(properties):
    """Given scheduler-engine.service's properties, return its CheckResult: active is a WARNING."""
    if properties.get("LoadState") != "loaded":
        return result("scheduler-engine", OK, f"{BACKEND_SCHEDULER} is not installed here")
    active = properties.get("ActiveState", "unknown")
    if active in ("active", "activating", "reloading"):
        return result("scheduler-engine", WARNING, f"the backend's {BACKEND_SCHEDULER} is {active}: it and "
                                                   "wombat-collect would both collect; systemctl disable --now "
                                                   f"{BACKEND_SCHEDULER}")
    return result("scheduler-engine", OK, f"{BACKEND_SCHEDULER} is {active}")


# --------------------------------------------------------------------------- output


def render_text(report):
    """Given a CheckReport, return one line per check: `STATE name: message`."""
    return "\n".join(f"{item.state.upper()} {item.name}: {item.message}" for item in report.results)


def report_dict(report):
    """Given a CheckReport, return the JSON-ready dict `check --json` prints (shaped like `status --json`)."""
    return {
        "state": report.state, "exit_code": report.exit_code, "checked_at": local_time(report.checked_at),
        "problems": [f"{item.state.upper()}: {item.name}: {item.message}" for item in report.results
                     if item.state != OK],
        "checks": [{"name": item.name, "state": item.state, "message": item.message} for item in report.results],
    }


def render_json(report):
    """Given a CheckReport, return it as indented JSON text."""
    return json.dumps(report_dict(report), indent=2, ensure_ascii=False)
