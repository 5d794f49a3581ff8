"""`wombat-collect check`: one line per check, exit code = worst state, read-only, against a real
PostgreSQL, the fake exchanges on loopback and a stand-in `systemctl` on PATH."""

import json
import os
import re
import socket
import uuid
from pathlib import Path

import psycopg2
import psycopg2.extensions
import pytest

from tests.conftest import create_database, drop_database, query, run_cli
from tests.fakes.kis_server import FakeKis, build_master_zip
from tests.fakes.upbit_server import FakeUpbit
from wombat_collect.db.handover import BACKEND_HEAD
from wombat_collect.ops.check import TIMERS

DB_PASSWORD = "check-db-secret-4711"  # noqa: S105 - the test's own, must never be shown
REPOSITORY = Path(__file__).resolve().parent.parent
NAMES = ["configuration", "env file", "database", "connection", "migrations", "schema", "backend", "privileges",
         "upbit", "upbit clock", "kis master", "kis clock", "kis token", "lock directory", "state directory",
         "time zone", "timers", "scheduler-engine"]
HEALTHY_UNITS = "\n\n".join(
    [f"Id={name}\nLoadState=loaded\nUnitFileState=enabled\nActiveState=active\n"
     f"NextElapseUSecRealtime=Fri 2025-11-28 00:0{index}:00 KST" for index, name in enumerate(TIMERS)]
    + ["Id=scheduler-engine.service\nLoadState=not-found\nUnitFileState=\nActiveState=inactive\n"
       "NextElapseUSecRealtime="])
HEALTHY_TIMERS = ("5 enabled: symbols next Fri 2025-11-28 00:00:00 KST; prices next Fri 2025-11-28 00:01:00 KST; "
                  "prices-upbit next Fri 2025-11-28 00:02:00 KST; quotes-upbit next Fri 2025-11-28 00:03:00 KST; "
                  "quotes-kis next Fri 2025-11-28 00:04:00 KST")


def with_password(dsn, password=DB_PASSWORD, **changes):
    """Given a DSN, return it with a password (and other parts changed); trust auth ignores the password."""
    parts = psycopg2.extensions.parse_dsn(dsn)
    parts.update(password=password, **changes)
    return psycopg2.extensions.make_dsn(**parts)


def closed_port():
    """Return a loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fake_systemctl(directory, stdout=HEALTHY_UNITS, stderr="", exit_code=0):
    """Given a directory, put a `systemctl` there that prints `stdout`/`stderr` and exits `exit_code`."""
    (directory / "show.out").write_text(stdout + "\n")
    (directory / "show.err").write_text(stderr)
    script = directory / "systemctl"
    script.write_text(f'#!/bin/sh\ncat "{directory}/show.out"\ncat "{directory}/show.err" >&2\nexit {exit_code}\n')
    script.chmod(0o755)


@pytest.fixture
def fake_bin(tmp_path):
    """A directory first on PATH holding a `systemctl` that reports every timer enabled."""
    directory = tmp_path / "bin"
    directory.mkdir()
    fake_systemctl(directory)
    return directory


@pytest.fixture
def fake_kis():
    """A FakeKis serving the KONEX master file (the one `check` asks for)."""
    with FakeKis() as server:
        server.set_master("konex", build_master_zip("konex", []))
        yield server


@pytest.fixture
def fake_upbit():
    with FakeUpbit(rate_limit=None) as server:
        yield server


@pytest.fixture
def env_file(tmp_path, fake_kis):
    """An env file of mode 0600 holding the KIS secret."""
    path = tmp_path / "wombat.env"
    path.write_text(f"KIS_APP_SECRET={fake_kis.app_secret}\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def env(database, fake_upbit, fake_kis, fake_bin, tmp_path):
    """The environment of a healthy setup: a database, both fakes, a 0700 state directory, timers enabled."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    return {"DATABASE_URL": with_password(database), "UPBIT_API_URL": fake_upbit.url, "UPBIT_RATE_LIMIT": "1000",
            "KIS_API_URL": fake_kis.url, "KIS_MASTER_URL": fake_kis.master_url, "KIS_APP_KEY": fake_kis.app_key,
            "WOMBAT_STATE_DIR": str(state), "WOMBAT_HTTP_TIMEOUT": "5", "KIS_TOKEN_RETRY_WAIT": "0.2",
            "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}", "TZDIR": None, "POSTGRES_SERVER": None}


@pytest.fixture
def migrated(env):
    """The healthy environment after `db init`."""
    assert run_cli("db", "init", env=env).exit_code == 0
    return env


def check(env, *arguments, env_file=None):
    """Given the environment and `check` arguments, run it; return (exit code, {name: (state, message)}, stdout)."""
    prefix = ("--env-file", str(env_file)) if env_file else ()
    outcome = run_cli(*prefix, "check", *arguments, env=env)
    lines = outcome.stdout.splitlines()
    found = {}
    for line in lines:
        match = re.fullmatch(r"(OK|WARNING|CRITICAL) ([a-z -]+): (.*)", line)
        assert match, f"not a check line: {line!r}"
        found[match.group(2)] = (match.group(1), match.group(3))
    assert len(found) == len(lines)
    return outcome.exit_code, found, outcome.stdout + outcome.stderr


def states(found):
    return {name: state for name, (state, _) in found.items()}


def target(dsn):
    parts = psycopg2.extensions.parse_dsn(dsn)
    return (f"database {parts['dbname']} as user {parts.get('user', '(default)')} on host "
            f"{parts.get('host', 'localhost')} port {parts.get('port', '5432')}")


def test_check_healthy_setup_exits_0_with_every_line_ok(migrated, env_file, fake_kis):
    code, _, _ = check(migrated, "--exchange", "kis", "--issue-token", env_file=env_file)
    assert (code, fake_kis.tokens_issued) == (0, 1)
    code, found, output = check(migrated, env_file=env_file)
    assert code == 0, output
    assert list(found) == NAMES
    assert set(states(found).values()) == {"OK"}
    assert fake_kis.tokens_issued == 1  # the cached token was used, no new one
    state_dir = migrated["WOMBAT_STATE_DIR"]
    message = {name: text for name, (_, text) in found.items()}
    assert message["configuration"] == "every variable parses (timeframes 1d, 8 workers, HTTP timeout 5 s)"
    assert message["env file"] == f"{env_file}, owner uid {os.geteuid()}, mode 0600"
    parts = psycopg2.extensions.parse_dsn(migrated["DATABASE_URL"])
    assert message["database"] == \
        f"DATABASE_URL names {parts['user']}@{parts['host']}:{parts.get('port', '5432')}/{parts['dbname']}"
    assert re.fullmatch(re.escape(target(migrated["DATABASE_URL"])) + r": PostgreSQL \d+\.\d+.*, answered in "
                        r"\d+\.\d\d s, schema public", message["connection"])
    assert message["migrations"] == "all 6 applied"
    assert message["schema"] == \
        "exchange, symbol, pricedata, realtime_prices have the columns and unique keys wombat-collect writes"
    assert message["backend"] == ("4 of the backend's 8 tables present, no alembic_version (wombat-collect alone): "
                                  "before deploying the backend on this database, run `wombat-collect db hand-over`")
    assert message["privileges"] == (f"role {parts['user']} may read and write every table wombat-collect writes "
                                     "(SELECT, INSERT, UPDATE), use their sequences, create temporary tables")
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1/market/all answered HTTP 200 in \d+\.\d\d s", message["upbit"])
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/common/master/konex_code\.mst\.zip answered HTTP 200 in "
                        r"\d+\.\d\d s", message["kis master"])
    for name, host in (("upbit clock", "upbit"), ("kis clock", "kis master")):
        assert re.fullmatch(rf"host clock \(\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d KST\) is \d+\.\d s (behind|ahead of) "
                            rf"{host}'s \(HTTP Date\), within 5 s", message[name])
    assert re.fullmatch(rf"cached token valid until \d{{4}}-\d\d-\d\d \d\d:\d\d KST \({re.escape(state_dir)}"
                        r"/kis-tokens/127\.0\.0\.1_\d+-[0-9a-f]{16}\.json\)", message["kis token"])
    assert message["lock directory"] == f"{os.environ['WOMBAT_LOCK_DIR']} is writable by this user"
    assert message["state directory"] == f"{state_dir}, mode 0700"
    assert message["time zone"] == "Asia/Seoul zone data present (/usr/share/zoneinfo/Asia/Seoul)"
    assert message["timers"] == HEALTHY_TIMERS
    assert message["scheduler-engine"] == "scheduler-engine.service is not installed here"
    assert DB_PASSWORD not in output and fake_kis.app_secret not in output


def test_check_issue_token_issues_one_and_reports_its_expiry(migrated, env_file, fake_kis):
    code, found, _ = check(migrated, "--exchange", "kis", "--issue-token", env_file=env_file)
    assert code == 0
    assert re.fullmatch(r"the KIS key works: token valid until \d{4}-\d\d-\d\d \d\d:\d\d KST", found["kis token"][1])
    assert fake_kis.tokens_issued == 1
    assert list((Path(migrated["WOMBAT_STATE_DIR"]) / "kis-tokens").glob("*.json"))


def test_check_without_cached_token_warns_and_issues_none(migrated, env_file, fake_kis):
    code, found, _ = check(migrated, "--exchange", "kis", env_file=env_file)
    assert code == 1
    assert states(found)["kis token"] == "WARNING"
    assert found["kis token"][1] == (
        f"no cached token in {migrated['WOMBAT_STATE_DIR']}/kis-tokens: the KIS key is unverified until the next KIS "
        "run issues one; to verify it now: wombat-collect check --exchange kis --issue-token (KIS throttles "
        "issuance and notifies the account holder)")
    assert [name for name, state in states(found).items() if state != "OK"] == ["kis token"]
    assert fake_kis.tokens_issued == 0
    assert list(Path(migrated["WOMBAT_STATE_DIR"]).iterdir()) == []
    assert "upbit" not in found


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
        f"GRANT INSERT, SELECT, UPDATE ON wombat_collect.collect_run TO {role}; "
        f"GRANT DELETE, INSERT, SELECT, UPDATE ON wombat_collect.confirmed_empty TO {role}; "
        f"GRANT DELETE, INSERT, SELECT ON wombat_collect.fetched_range TO {role}; "
        f"GRANT INSERT, SELECT, UPDATE ON wombat_collect.gap_summary TO {role}; "
        f"GRANT SELECT ON wombat_collect.wombat_collect_migration TO {role}; "
        f"GRANT USAGE ON SEQUENCE public.exchange_id_seq TO {role}; "
        f"GRANT USAGE ON SEQUENCE public.pricedata_id_seq TO {role}; "
        f"GRANT USAGE ON SEQUENCE public.realtime_prices_id_seq TO {role}; "
        f"GRANT USAGE ON SEQUENCE public.symbol_id_seq TO {role}; "
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
        "6 of 6 pending (0001 backend-schema, 0002 collect-run, 0003 realtime-prices, 0004 fetched-range, 0005 gaps, "
        "0006 own-schema); "
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


def test_check_missing_zone_data_is_critical(migrated, env_file, tmp_path):
    empty = tmp_path / "zoneinfo"
    empty.mkdir()
    code, found, _ = check(dict(migrated, TZDIR=str(empty)), "--exchange", "upbit", env_file=env_file)
    assert code == 2
    assert found["time zone"] == ("CRITICAL", f"no Asia/Seoul zone data in {empty} ($TZDIR): the systemd timers and "
                                              "the crontab read it; install the tzdata package")
    assert [name for name, state in states(found).items() if state != "OK"] == ["time zone"]


def test_check_unreachable_exchange_is_critical(migrated, env_file):
    port = closed_port()
    code, found, _ = check(dict(migrated, UPBIT_API_URL=f"http://127.0.0.1:{port}"), "--exchange", "upbit",
                           env_file=env_file)
    assert code == 2
    assert found["upbit"] == ("CRITICAL", f"cannot reach http://127.0.0.1:{port}: connection refused; check the "
                                          "network, DNS, a proxy or firewall, and the URL variable")
    assert found["upbit clock"] == ("WARNING", "skipped: upbit did not answer")
    assert [name for name, state in states(found).items() if state != "OK"] == ["upbit", "upbit clock"]


@pytest.mark.parametrize(("offset", "state", "direction", "limit"), [
    (30, "WARNING", "behind", 5), (-30, "WARNING", "ahead of", 5), (120, "CRITICAL", "behind", 60)])
def test_check_skewed_date_header(migrated, env_file, fake_upbit, offset, state, direction, limit):
    fake_upbit.clock_offset = offset
    code, found, _ = check(migrated, "--exchange", "upbit", env_file=env_file)
    assert code == ("WARNING", "CRITICAL").index(state) + 1
    found_state, message = found["upbit clock"]
    match = re.fullmatch(rf"host clock \(.* KST\) is (\d+\.\d) s {direction} upbit's \(HTTP Date\), more than "
                         rf"{limit} s; synchronise it \(timedatectl set-ntp true, or chrony\)", message)
    assert found_state == state and match, message
    assert abs(float(match.group(1)) - abs(offset)) < 2


def test_check_json_has_the_status_shape(migrated, env_file):
    text = run_cli("--env-file", str(env_file), "check", "--exchange", "kis", env=migrated)
    plain = run_cli("--env-file", str(env_file), "check", "--exchange", "kis", "--json", env=migrated)
    assert plain.exit_code == text.exit_code == 1
    report = json.loads(plain.stdout)
    assert set(report) == {"state", "exit_code", "checked_at", "problems", "checks"}
    assert (report["state"], report["exit_code"]) == ("warning", 1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+09:00", report["checked_at"])
    assert [set(item) for item in report["checks"]] == [{"name", "state", "message"}] * len(report["checks"])
    lines = [f"{item['state'].upper()} {item['name']}: {item['message']}" for item in report["checks"]]
    assert [line.split(":")[0] for line in lines] == [line.split(":")[0] for line in text.stdout.splitlines()]
    assert report["problems"] == [f"WARNING: kis token: {item['message']}" for item in report["checks"]
                                  if item["name"] == "kis token"]


def test_check_invalid_configuration_skips_what_depends_on_it(env, env_file):
    code, found, _ = check(dict(env, WOMBAT_WORKERS="many"), "--exchange", "upbit", env_file=env_file)
    assert code == 2
    assert found["configuration"] == ("CRITICAL", "WOMBAT_WORKERS must be a whole number, not 'many'; fix it in "
                                                  "the environment or the env file")
    for name in ("database", "connection", "migrations", "schema", "backend", "privileges", "upbit", "upbit clock",
                 "lock directory", "state directory"):
        assert found[name] == ("WARNING", "skipped: the configuration is invalid")
    assert states(found)["time zone"] == states(found)["env file"] == "OK"


def test_check_world_readable_env_file_warns(migrated, env_file):
    env_file.chmod(0o644)
    code, found, _ = check(migrated, "--exchange", "upbit", env_file=env_file)
    assert code == 1
    assert found["env file"] == ("WARNING", f"{env_file} has mode 0644: every user may read its secrets; chmod 600 "
                                            f"{env_file} (640 with a group, as for cron)")


def test_check_open_state_directory_warns(migrated, env_file):
    Path(migrated["WOMBAT_STATE_DIR"]).chmod(0o755)
    code, found, _ = check(migrated, "--exchange", "upbit", env_file=env_file)
    assert code == 1
    state_dir = migrated["WOMBAT_STATE_DIR"]
    assert found["state directory"] == ("WARNING", f"{state_dir} has mode 0755, not 0700 (it holds the KIS token "
                                                   f"cache); chmod 700 {state_dir}")


def test_check_missing_lock_directory_is_critical(migrated, env_file, tmp_path):
    missing = tmp_path / "no-such-dir"
    code, found, _ = check(dict(migrated, WOMBAT_LOCK_DIR=str(missing)), "--exchange", "upbit", env_file=env_file)
    assert code == 2
    assert found["lock directory"] == ("CRITICAL", f"lock directory {missing} does not exist (set WOMBAT_LOCK_DIR)")
    assert not missing.exists()


def test_check_active_scheduler_engine_and_disabled_timer_warn(migrated, env_file, fake_bin):
    units = HEALTHY_UNITS.replace("Id=wombat-collect-prices.timer\nLoadState=loaded\nUnitFileState=enabled\n"
                                  "ActiveState=active", "Id=wombat-collect-prices.timer\nLoadState=loaded\n"
                                  "UnitFileState=disabled\nActiveState=inactive")
    units = units.replace("LoadState=not-found\nUnitFileState=\nActiveState=inactive",
                          "LoadState=loaded\nUnitFileState=enabled\nActiveState=active")
    fake_systemctl(fake_bin, units)
    code, found, _ = check(migrated, "--exchange", "upbit", env_file=env_file)
    assert code == 1
    assert found["timers"] == ("WARNING", "wombat-collect-prices.timer disabled/inactive; systemctl enable --now "
                                          "wombat-collect-prices.timer")
    assert found["scheduler-engine"] == ("WARNING", "the backend's scheduler-engine.service is active: it and "
                                                    "wombat-collect would both collect; systemctl disable --now "
                                                    "scheduler-engine.service")


@pytest.mark.parametrize(("stdout", "stderr", "exit_code", "message"), [
    ("", "System has not been booted with systemd as init system (PID 1). Can't operate.\n"
         "Failed to connect to bus: Host is down", 1, "skipped: systemd is not running here"),
    ("Id=scheduler-engine.service\nLoadState=not-found", "", 0,
     "no wombat-collect timers installed (scheduled by cron, Compose or Kubernetes?)"),
])
def test_check_timers_without_systemd_or_units_are_ok(migrated, env_file, fake_bin, stdout, stderr, exit_code,
                                                      message):
    fake_systemctl(fake_bin, stdout, stderr, exit_code)
    code, found, _ = check(migrated, "--exchange", "upbit", env_file=env_file)
    assert code == 0
    assert found["timers"] == ("OK", message)


def test_timers_are_the_shipped_timer_units():
    assert sorted(TIMERS) == sorted(path.name for path in (REPOSITORY / "systemd").glob("*.timer"))


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
