"""`wombat-collect schedule` (wombat_collect/ops/schedule.py) against the schedule files in the repository.

The expected next runs are computed here without the command's own parsing:
for the cron.d file with croniter on the container crontab's lines (which
tests/test_containers_crontab.py proves fire the same instants), for the timers with
`systemd-analyze calendar` on each timer's OnCalendar= values. The timers are
read through a stub `systemctl` that answers `list-timers` and `show` from the
units as systemd itself loaded them (`systemd-analyze verify`, drop-ins applied):
no systemd runs as PID 1 here or in CI.
"""

import json
import re
import shutil
import sys
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from tests.containers_support import command_arguments
from tests.ops_support import DEVELOPMENT_DOC, document_code_blocks, read_crontab, run
from tests.test_units import (
    CRONTAB,
    UNIT_DIRECTORY,
    calendar_elapses,
    effective_settings,
    needs_systemd_analyze,
    values,
)
from wombat_collect.ops.schedule import parse_cron_file

SUPERCRONIC_CRONTAB = UNIT_DIRECTORY.parent / "crontab" / "supercronic"
SEOUL = ZoneInfo("Asia/Seoul")
TIMERS = sorted(path.name for path in UNIT_DIRECTORY.glob("*.timer"))
# Reference times: mid-session on a Friday; Friday 18:00:30 (KIS quotes next on Monday) just before
# America/New_York moves to daylight saving time (9 March 2025, 02:00 local).
NOW = ["2025-03-07T12:00:00+09:00", "2025-03-07T18:00:30+09:00", "2025-03-09T15:59:59+09:00"]
HOST_ZONES = ["UTC", "America/New_York", "Asia/Kolkata"]
LINE = re.compile(r"(?P<job>[^:]+): next run (?P<seoul>\d{4}-\d\d-\d\d \d\d:\d\d) \w{3} Asia/Seoul = "
                  r"(?P<host>\d{4}-\d\d-\d\d \d\d:\d\d) \w{3} (?P<zone>\S+) \(host\); (?P<origin>.*)")
PRICES_DROP_IN = "wombat-collect-prices.timer.d/override.conf"  # what `systemctl edit` writes


def installed_units(directory):
    """Given a new directory, copy the repository's units into it as they are (the executable unchanged)."""
    directory.mkdir()
    for path in UNIT_DIRECTORY.glob("wombat-collect-*"):
        shutil.copy(path, directory / path.name)
    return directory


def schedule(*arguments, host_zone="UTC", env=None):
    """Run `wombat-collect schedule` in a host zone. Return the CompletedProcess."""
    return run({"TZ": host_zone, **(env or {})}, "schedule", *arguments)


def shown_runs(stdout, host_zone):
    """Given the command's output, return {job: (next run as aware UTC, origin)}; check the host column agrees."""
    lines = stdout.splitlines()
    assert lines[0].startswith("schedule from "), lines[0]
    shown = {}
    for line in lines[1:]:
        match = LINE.fullmatch(line)
        assert match, line
        moment = datetime.strptime(match["seoul"], "%Y-%m-%d %H:%M").replace(tzinfo=SEOUL)
        host = moment.astimezone(ZoneInfo(host_zone))
        assert (match["host"], match["zone"]) == (f"{host:%Y-%m-%d %H:%M}", host.tzname()), line
        shown.setdefault(match["job"], []).append((moment.astimezone(timezone.utc), match["origin"]))
    return shown


def croniter_next_runs(now):
    """Given an aware time, return {job arguments: next run (UTC)} of the container crontab, by croniter."""
    from croniter import croniter

    environment, jobs = read_crontab(SUPERCRONIC_CRONTAB, with_user=False)
    runs = {}
    for job in jobs:
        moment = croniter(job["schedule"], now.astimezone(ZoneInfo(environment["CRON_TZ"]))).get_next(datetime)
        arguments = command_arguments(job["command"])
        runs[arguments] = min(runs.get(arguments, moment), moment).astimezone(timezone.utc)
    return runs


# --- the cron.d file ---------------------------------------------------------

@pytest.mark.parametrize("host_zone", HOST_ZONES)
@pytest.mark.parametrize("now", NOW)
def test_schedule_reads_the_crond_file_next_runs_in_seoul_and_the_host_zone(now, host_zone):
    result = schedule("--source", "cron", "--crontab", str(CRONTAB), "--now", now, host_zone=host_zone)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines()[0].startswith(f"schedule from cron.d file {CRONTAB}; now ")
    shown = shown_runs(result.stdout, host_zone)
    assert {job: runs[0][0] for job, runs in shown.items()} == croniter_next_runs(datetime.fromisoformat(now))
    assert all(len(runs) == 1 and runs[0][1].startswith(f"{CRONTAB} line ") for runs in shown.values())


def test_schedule_lists_jobs_in_next_run_order():
    result = schedule("--crontab", str(CRONTAB), "--now", NOW[0])
    assert [line.split(":")[0] for line in result.stdout.splitlines()[1:]] == [
        "quotes --exchange kis", "quotes --exchange upbit", "symbols --exchange all", "prices --exchange all",
        "prices --exchange upbit"]


def test_schedule_auto_reads_the_crond_file_from_wombat_crontab_without_systemd():
    result = schedule("--now", NOW[0], env={"WOMBAT_CRONTAB": str(CRONTAB)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"schedule from cron.d file {CRONTAB}; now 2025-03-07 12:00 Fri Asia/Seoul = "
                                    f"2025-03-07 03:00 Fri UTC (host)\n")


def test_parse_cron_file_reads_names_steps_and_the_day_rule():
    [line] = parse_cron_file("*/20 1-3 1,15 jan-mar mon-fri root /x/wombat-collect status --json 2>&1\n", "f")
    assert line.fields == ({0, 20, 40}, {1, 2, 3}, {1, 15}, {1, 2, 3}, {1, 2, 3, 4, 5})
    assert (line.either_day, line.guards, line.job) == (True, (), "status --json")


def test_schedule_says_when_a_guard_never_lets_a_line_run(tmp_path):
    crontab = tmp_path / "wombat-collect"
    crontab.write_text('0 * * * * wombat [ "$(TZ=Asia/Seoul date +\\%H:\\%M)" = 00:30 ] && '
                       "/opt/wombat-collect/bin/wombat-collect symbols >/dev/null\n")
    result = schedule("--crontab", str(crontab), "--now", NOW[0])
    assert result.stdout.splitlines()[1] == f"symbols: next run none within 8 days; {crontab} line 1"


@pytest.mark.parametrize("arguments, message", [
    (["--now", "2025-03-07T12:00"], "has no UTC offset"),
    (["--now", "tomorrow"], "is not an ISO 8601 time"),
    (["--source", "cron", "--crontab", "/nonexistent/wombat-collect"], "no cron.d file at /nonexistent/"),
])
def test_schedule_bad_input_exits_2_with_one_line(arguments, message):
    result = schedule(*arguments)
    assert (result.returncode, result.stdout) == (2, "")
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr


def test_schedule_unreadable_crond_line_exits_2_naming_it(tmp_path):
    crontab = tmp_path / "wombat-collect"
    crontab.write_text("SHELL=/bin/sh\n0 25 * * * wombat /opt/wombat-collect/bin/wombat-collect symbols\n")
    result = schedule("--crontab", str(crontab))
    assert (result.returncode, result.stdout) == (2, "")
    assert f"{crontab} line 2: the time field '25' is out of range" in result.stderr


def test_schedule_nothing_installed_exits_1(tmp_path):
    result = schedule("--crontab", str(tmp_path / "absent"))
    assert result.returncode == 1
    assert "no wombat-collect schedule installed" in result.stderr and result.stdout == ""


# --- the systemd timers ----------------------------------------------------------

STUB_SYSTEMCTL = '''#!{python}
"""A systemctl answering list-timers and show from a JSON file of loaded units."""
import json, os, sys
units = json.load(open(os.environ["STUB_SYSTEMCTL_DATA"]))
verb = sys.argv[1]
if verb == "list-timers":
    for name, unit in sorted(units.items()):
        if name.endswith(".timer"):
            print("n/a n/a n/a n/a", name, unit["Unit"])
elif verb == "show":
    blocks = []
    for name in [argument for argument in sys.argv[2:] if not argument.startswith("-")]:
        unit = units[name]
        lines = ["Id=" + name, "ActiveState=active"]
        lines += ["TimersCalendar={{ OnCalendar=%s ; next_elapse=n/a }}" % spec for spec in unit.get("OnCalendar", [])]
        lines += ["ExecStart={{ path=%s ; argv[]=%s ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; "
                  "pid=0 ; code=(null) ; status=0/0 }}" % (line.split()[0], line) for line in unit.get("ExecStart", [])]
        blocks.append("\\n".join(lines))
    print("\\n\\n".join(blocks))
else:
    sys.exit("unexpected verb " + verb)
'''


def stub_systemctl(tmp_path, unit_directory):
    """Given units installed in a directory, put a stub systemctl serving them (as systemd loads them) on a PATH.

    Return the environment variables that make `schedule` use it.
    """
    loaded = {}
    for timer in sorted(path.name for path in unit_directory.glob("*.timer")):
        unit = (values(unit_directory / timer, "Timer", "Unit") or [timer.replace(".timer", ".service")])[0]
        settings = effective_settings(unit_directory, timer)
        loaded[timer] = {"Unit": unit, "OnCalendar": settings["OnCalendar"]}
        loaded[unit] = {"ExecStart": effective_settings(unit_directory, unit)["Command Line"]}
    stub_bin = tmp_path / "stub-bin"
    stub_bin.mkdir()
    (stub_bin / "systemctl").write_text(STUB_SYSTEMCTL.format(python=sys.executable))
    (stub_bin / "systemctl").chmod(0o755)
    (tmp_path / "units.json").write_text(json.dumps(loaded))
    analyze_directory = shutil.which("systemd-analyze").rsplit("/", 1)[0]
    return {"PATH": f"{stub_bin}:{analyze_directory}:/usr/bin:/bin",
            "STUB_SYSTEMCTL_DATA": str(tmp_path / "units.json")}


def calendar_next_runs(unit_directory, now):
    """Given installed units and an aware time, return {job arguments: (next elapse UTC, timer)} by systemd-analyze."""
    runs = {}
    for timer in TIMERS:
        unit = (values(unit_directory / timer, "Timer", "Unit") or [timer.replace(".timer", ".service")])[0]
        [exec_start] = values(UNIT_DIRECTORY / unit.replace("@upbit", "@").replace("@kis", "@"), "Service",
                              "ExecStart")
        instance = unit.partition("@")[2].removesuffix(".service")
        elapses = [calendar_elapses(expression, "UTC", 1, base=now)[0]
                   for expression in effective_settings(unit_directory, timer)["OnCalendar"]]
        runs[command_arguments(exec_start.replace("%i", instance))] = (min(elapses), timer)
    return runs


@needs_systemd_analyze
@pytest.mark.parametrize("host_zone", ["UTC", "America/New_York"])
@pytest.mark.parametrize("now", NOW[:2])
def test_schedule_reads_the_systemd_timers_next_runs(now, host_zone, tmp_path):
    units = installed_units(tmp_path / "units")
    result = schedule("--source", "systemd", "--now", now, host_zone=host_zone, env=stub_systemctl(tmp_path, units))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("schedule from systemd timers (systemctl); now ")
    shown = shown_runs(result.stdout, host_zone)
    assert {job: runs[0] for job, runs in shown.items()} == calendar_next_runs(units, datetime.fromisoformat(now))


@needs_systemd_analyze
def test_schedule_shows_the_readme_drop_in_moving_prices_to_0130(tmp_path):
    units = installed_units(tmp_path / "units")
    [drop_in] = document_code_blocks(DEVELOPMENT_DOC, "systemd timers: a drop-in", "ini")
    (units / PRICES_DROP_IN).parent.mkdir()
    (units / PRICES_DROP_IN).write_text(drop_in)
    result = schedule("--source", "systemd", "--now", NOW[0], env=stub_systemctl(tmp_path, units))
    assert result.returncode == 0, result.stderr
    assert ("prices --exchange all: next run 2025-03-08 01:30 Sat Asia/Seoul = 2025-03-07 16:30 Fri UTC (host); "
            "wombat-collect-prices.timer") in result.stdout.splitlines()


@pytest.mark.parametrize("script, message", [
    ("echo 'Failed to connect to bus: No such file or directory' >&2\nexit 1",
     "systemctl list-timers failed: Failed to connect to bus: No such file or directory"),
    (None, "no systemctl on this host"),
])
def test_schedule_systemd_source_without_a_working_systemctl_exits_2_with_one_line(tmp_path, script, message):
    stub_bin = tmp_path / "stub-bin"
    stub_bin.mkdir()
    if script is not None:
        (stub_bin / "systemctl").write_text(f"#!/bin/sh\n{script}\n")
        (stub_bin / "systemctl").chmod(0o755)
    result = schedule("--source", "systemd", "--now", NOW[0], env={"PATH": str(stub_bin)})
    assert (result.returncode, result.stdout) == (2, "")
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr
