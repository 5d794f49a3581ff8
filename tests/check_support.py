"""Helpers of the `wombat-collect check` tests (tests/test_check_*.py): the CLI run parsed into
{name: (state, message)}, a stand-in `systemctl`, the DSN helpers, the healthy units and the check names.
Their fixtures are in tests/check_fixtures.py."""

import re
import socket

import psycopg2.extensions

from tests.conftest import run_cli
from wombat_collect.ops.check import TIMERS

DB_PASSWORD = "check-db-secret-4711"  # noqa: S105 - the test's own, must never be shown
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
