"""`wombat-collect check` as a whole (wombat_collect/ops/check/__init__.py and report.py): one line per
check, exit code = worst state, and the --json shape."""

import json
import os
import re

import psycopg2.extensions

from tests.check_support import DB_PASSWORD, HEALTHY_TIMERS, NAMES, check, states, target
from tests.conftest import run_cli

pytest_plugins = ("tests.check_fixtures",)


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
    assert message["migrations"] == "all 7 applied"
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
