"""`wombat-collect check`, the database lines (wombat_collect/ops/check/database.py) against a real PostgreSQL:
the connection, the migrations, the schema, the backend's alembic_version and the role's privileges,
on a read-only session that never starts the embedded server."""

import os
import uuid
from pathlib import Path

import psycopg2
import psycopg2.extensions
import pytest

from tests.check_support import DB_PASSWORD, check, closed_port, states, target, with_password
from tests.conftest import create_database, drop_database, query, run_cli
from wombat_collect.db.handover import BACKEND_HEAD

pytest_plugins = ("tests.check_fixtures",)


def test_check_unreachable_database_is_critical_and_the_others_still_run(env, env_file):
    port = closed_port()
    env = dict(env, DATABASE_URL=f"postgresql://wombat:{DB_PASSWORD}@127.0.0.1:{port}/wombatdb")
    code, found, output = check(env, "--exchange", "upbit", env_file=env_file)
    assert code == 2
    state, message = found["connection"]
    assert state == "CRITICAL"
    assert message.startswith(f"database wombatdb as user wombat on host 127.0.0.1 port {port}: cannot connect to "
                              f"the database: connection to server at \"127.0.0.1\", port {port} failed: ")
    assert "Connection refused" in message
    assert message.endswith("; check that the server runs and accepts this user from this host (pg_hba.conf), "
                            "and the password")
    for name in ("migrations", "schema", "backend", "privileges"):
        assert found[name] == ("WARNING", "skipped: the database is unreachable")
    assert found["database"] == ("OK", f"DATABASE_URL names wombat@127.0.0.1:{port}/wombatdb")
    assert states(found)["upbit"] == states(found)["time zone"] == states(found)["timers"] == "OK"
    assert DB_PASSWORD not in output


@pytest.fixture
def powerless_role(migrated, server_dsn):
    """A login role with only CONNECT on the migrated database (TEMPORARY revoked from PUBLIC); dropped after."""
    role = f"wombat_check_{uuid.uuid4().hex[:8]}"
    database = psycopg2.extensions.parse_dsn(migrated["DATABASE_URL"])["dbname"]
    admin = psycopg2.connect(migrated["DATABASE_URL"])
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE ROLE "{role}" LOGIN PASSWORD \'{DB_PASSWORD}\'')  # noqa: S608 - test identifiers
        cursor.execute(f'REVOKE TEMPORARY ON DATABASE "{database}" FROM PUBLIC')  # noqa: S608
        cursor.execute(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"')  # noqa: S608
    yield role
    with admin.cursor() as cursor:
        cursor.execute(f'DROP OWNED BY "{role}"')  # noqa: S608 - its grants, here and on the database
        cursor.execute(f'DROP ROLE "{role}"')  # noqa: S608
    admin.close()


def test_check_role_without_privileges_is_critical(migrated, powerless_role, env_file):
    dsn = with_password(migrated["DATABASE_URL"], user=powerless_role)
    database = psycopg2.extensions.parse_dsn(dsn)["dbname"]
    code, found, output = check(dict(migrated, DATABASE_URL=dsn), "--exchange", "upbit", env_file=env_file)
    assert code == 2
    role = powerless_role
    assert found["privileges"] == ("CRITICAL", (
        f"role {role} lacks privileges wombat-collect needs; "
        f"GRANT INSERT, SELECT ON exchange TO {role}; "
        f"GRANT INSERT, SELECT, UPDATE ON pricedata TO {role}; "
        f"GRANT INSERT, SELECT, UPDATE ON realtime_prices TO {role}; "
        f"GRANT INSERT, SELECT, UPDATE ON symbol TO {role}; "
        f"GRANT INSERT, SELECT, UPDATE ON wombat_collect.backfill TO {role}; "
        f"GRANT INSERT, SELECT, UPDATE ON wombat_collect.backfill_unit TO {role}; "
        f"GRANT INSERT, SELECT, UPDATE ON wombat_collect.collect_run TO {role}; "
        f"GRANT DELETE, INSERT, SELECT, UPDATE ON wombat_collect.confirmed_empty TO {role}; "
        f"GRANT DELETE, INSERT, SELECT ON wombat_collect.fetched_range TO {role}; "
        f"GRANT INSERT, SELECT, UPDATE ON wombat_collect.gap_summary TO {role}; "
        f"GRANT SELECT ON wombat_collect.wombat_collect_migration TO {role}; "
        f"GRANT USAGE ON SEQUENCE public.exchange_id_seq TO {role}; "
        f"GRANT USAGE ON SEQUENCE public.pricedata_id_seq TO {role}; "
        f"GRANT USAGE ON SEQUENCE public.realtime_prices_id_seq TO {role}; "
        f"GRANT USAGE ON SEQUENCE public.symbol_id_seq TO {role}; "
        f"GRANT USAGE ON SEQUENCE wombat_collect.backfill_id_seq TO {role}; "
        f"GRANT USAGE ON SEQUENCE wombat_collect.backfill_unit_id_seq TO {role}; "
        f"GRANT USAGE ON SEQUENCE wombat_collect.collect_run_id_seq TO {role}; "
        f"GRANT USAGE ON SCHEMA wombat_collect TO {role}; "
        f"GRANT TEMPORARY ON DATABASE {database} TO {role}"))
    assert found["migrations"] == ("CRITICAL", "permission denied for schema wombat_collect: wombat-collect needs "
                                               "USAGE on it, and CREATE to apply its migrations (or run "
                                               "`wombat-collect db init` as the tables' owner)")
    assert states(found)["connection"] == states(found)["schema"] == "OK"
    assert DB_PASSWORD not in output


def user_tables(dsn):
    return query(dsn, "SELECT schemaname, tablename FROM pg_tables"
                      " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")


def test_check_empty_database_reports_pending_migrations_and_writes_nothing(env, env_file, tmp_path, database):
    shared_locks = tmp_path / "shared-locks"
    shared_locks.mkdir()
    shared_locks.chmod(0o1777)
    state = Path(env["WOMBAT_STATE_DIR"])
    data = tmp_path / "data"
    env = dict(env, WOMBAT_LOCK_DIR=str(shared_locks), WOMBAT_DATA_DIR=str(data))
    code, found, _ = check(env, env_file=env_file)
    assert code == 1
    assert found["migrations"] == ("WARNING", (
        "7 of 7 pending (0001 backend-schema, 0002 collect-run, 0003 realtime-prices, 0004 fetched-range, 0005 gaps, "
        "0006 own-schema, 0007 backfill); "
        "`wombat-collect db init` applies them (so does every collecting command)"))
    assert found["schema"] == ("WARNING", "table(s) exchange, symbol, pricedata, realtime_prices missing; "
                                          "the pending migrations create them")
    assert found["backend"] == ("OK", "0 of the backend's 8 tables present, no alembic_version (wombat-collect "
                                      "alone): before deploying the backend on this database, run "
                                      "`wombat-collect db hand-over`")
    role = psycopg2.extensions.parse_dsn(database)["user"]
    assert found["privileges"] == ("OK", (
        f"role {role} may read and write every table wombat-collect writes (SELECT, INSERT, UPDATE), use their "
        "sequences, create temporary tables, CREATE on the schema for the pending migrations"))
    assert found["lock directory"] == ("OK", f"{shared_locks} is usable; the first run creates "
                                             f"{shared_locks}/wombat-collect-{os.geteuid()} (mode 0700)")
    assert [name for name, state in states(found).items() if state != "OK"] == \
        ["migrations", "schema", "kis token"]
    assert user_tables(database) == []
    assert list(shared_locks.iterdir()) == list(state.iterdir()) == []
    assert not data.exists()


def test_check_embedded_database_is_never_started(env, env_file, tmp_path):
    data = tmp_path / "data"
    env = dict(env, DATABASE_URL=None, WOMBAT_DATA_DIR=str(data))
    code, found, _ = check(env, "--exchange", "upbit", env_file=env_file)
    assert code == 1
    assert found["database"] == ("WARNING", f"no DATABASE_URL or POSTGRES_SERVER: the embedded PostgreSQL under "
                                            f"{data} (for trying out; set DATABASE_URL for a service)")
    reason = f"skipped: the embedded PostgreSQL ({data}/pgdata) is not created yet; `wombat-collect db init` creates it"
    names = ("connection", "migrations", "schema", "backend", "privileges")
    assert [found[name] for name in names] == [("WARNING", reason)] * 5
    assert not data.exists()


def test_check_unreachable_database_of_a_second_server_is_named(server_dsn, env, env_file):
    """A database that does not exist on a running server: libpq's own line, the target named."""
    dsn = create_database(server_dsn)
    drop_database(server_dsn, dsn)
    code, found, output = check(dict(env, DATABASE_URL=with_password(dsn)), "--exchange", "upbit", env_file=env_file)
    name = psycopg2.extensions.parse_dsn(dsn)["dbname"]
    assert code == 2
    assert found["connection"][0] == "CRITICAL"
    assert found["connection"][1].startswith(f"{target(dsn)}: cannot connect to the database: ")
    assert f'database "{name}" does not exist' in found["connection"][1]
    assert DB_PASSWORD not in output


def test_check_backend_after_hand_over_is_ok(migrated, env_file):
    assert run_cli("db", "hand-over", env={"DATABASE_URL": migrated["DATABASE_URL"]}).exit_code == 0
    code, found, output = check(migrated, "--exchange", "upbit", env_file=env_file)
    assert code == 0, output
    assert found["backend"] == ("OK", f"8 of the backend's 8 tables present; alembic_version at {BACKEND_HEAD}")


def test_check_backend_behind_its_head_says_how_to_upgrade(migrated, env_file):
    assert run_cli("db", "hand-over", env={"DATABASE_URL": migrated["DATABASE_URL"]}).exit_code == 0
    query(migrated["DATABASE_URL"], "UPDATE alembic_version SET version_num = 'e6d6b1662d4b'; SELECT 1")
    code, found, output = check(migrated, "--exchange", "upbit", env_file=env_file)
    assert code == 0, output
    assert found["backend"] == ("OK", "8 of the backend's 8 tables present; alembic_version at e6d6b1662d4b; the "
                                      f"backend's head is {BACKEND_HEAD}: its `alembic upgrade head` brings it there")


def test_check_backend_unknown_alembic_revision_warns(migrated, env_file):
    query(migrated["DATABASE_URL"], "CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY);"
                                    " INSERT INTO alembic_version VALUES ('f00dfeed1234'); SELECT 1")
    code, found, output = check(migrated, "--exchange", "upbit", env_file=env_file)
    assert code == 1, output
    assert found["backend"] == ("WARNING", "4 of the backend's 8 tables present; alembic_version at f00dfeed1234, a "
                                           "revision this wombat-collect does not know (it knows up to "
                                           f"{BACKEND_HEAD}): a newer backend? upgrade wombat-collect")


def test_check_backend_tables_without_a_revision_warn(migrated, env_file):
    query(migrated["DATABASE_URL"], 'CREATE TABLE "user" (id UUID PRIMARY KEY); SELECT 1')
    code, found, output = check(migrated, "--exchange", "upbit", env_file=env_file)
    assert code == 1, output
    assert found["backend"] == ("WARNING", "5 of the backend's 8 tables present (user among them) but no "
                                           "alembic_version revision: stamp the revision they match in the backend "
                                           "(`alembic stamp`)")
