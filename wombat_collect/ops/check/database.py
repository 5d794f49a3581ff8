"""The database checks, on one read-only session: the connection, the migrations, the schema the backend's tables
need, the backend's own migrations (alembic_version) and the role's privileges. The embedded server is
checked only while it runs; `check` never starts or creates it."""

import time

from wombat_collect.ops.check.results import CRITICAL, OK, WARNING, guarded, result, skipped

CHECK_STATEMENT_TIMEOUT = "10s"  # each query of the check; they take milliseconds
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
    "wombat_collect.backfill": ("SELECT", "INSERT", "UPDATE"),  # prices --worker
    "wombat_collect.backfill_unit": ("SELECT", "INSERT", "UPDATE"),
    "wombat_collect.wombat_collect_migration": ("SELECT",),
}


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
