"""The systemd units in systemd/ and the cron.d file in crontab/.

The units must pass `systemd-analyze verify`, score at most 1.5 in
`systemd-analyze security --offline=true`, and fire at 00:00, 00:02 and 09:05
Korean time (15:00 and 15:02 UTC the day before, 00:05 UTC) whatever the host's
zone; the quotes timers every minute (Upbit) and every minute of weekdays
08:30-18:00 Korean time (KIS). The cron.d file must fire at the same instants on any host zone, run as
user wombat and mail only stderr. Tests that need systemd-analyze (or faketime)
are skipped where it is missing.
"""

import os
import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.ops_support import DEVELOPMENT_DOC, document_code_blocks, read_crontab

REPOSITORY = Path(__file__).resolve().parent.parent
UNIT_DIRECTORY = REPOSITORY / "systemd"
CRONTAB = REPOSITORY / "crontab" / "wombat-collect"
EXECUTABLE = "/opt/wombat-collect/bin/wombat-collect"
SECURITY_THRESHOLD = 1.5
SEOUL = ZoneInfo("Asia/Seoul")

# unit stem -> (command after the executable, Korean time, UTC time of day)
JOBS = {
    "wombat-collect-symbols": ("symbols --exchange all", "00:00", "15:00"),
    "wombat-collect-prices": ("prices --exchange all", "00:02", "15:02"),
    "wombat-collect-prices-upbit": ("prices --exchange upbit", "09:05", "00:05"),
}
QUOTES_SERVICE = "wombat-collect-quotes@.service"  # a template: %i is the exchange
QUOTE_TIMERS = {  # timer -> (service instance it starts, command after the executable)
    "wombat-collect-quotes-upbit.timer": ("wombat-collect-quotes@upbit.service", "quotes --exchange upbit"),
    "wombat-collect-quotes-kis.timer": ("wombat-collect-quotes@kis.service", "quotes --exchange kis"),
}
SERVICES = sorted([f"{stem}.service" for stem in JOBS] + [QUOTES_SERVICE])
TIMERS = sorted([f"{stem}.timer" for stem in JOBS] + list(QUOTE_TIMERS))
BASE_MONDAY = datetime(2025, 3, 3, tzinfo=SEOUL)  # a Monday 00:00 in Seoul
METRICS_DROP_IN = "metrics.conf"  # installed as wombat-collect-.service.d/metrics.conf (every service)
PREFIX_DROP_IN_DIRECTORY = "wombat-collect-.service.d"
TEXTFILE_DIRECTORY = "/var/lib/node_exporter/textfile_collector"
MEASURED_PEAK_RSS_MIB = 82  # docs/performance.md's largest measured peak (500 Upbit markets x 3,000 days)
MEMORY_HEADROOM = 2  # MemoryMax= at least this many times the measured peak

# Host zones with whole-hour, half-hour and 45-minute offsets, with and
# without daylight saving time; days of DST changes in the US and the EU.
HOST_ZONES = ["UTC", "Asia/Seoul", "America/New_York", "Europe/Berlin", "Asia/Kolkata",
              "Asia/Kathmandu", "Australia/Adelaide"]
UTC_DAYS = ["2025-01-15", "2025-03-09", "2025-03-30", "2025-10-26", "2025-11-02"]

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)"
)


# --- helpers -------------------------------------------------------------

def read_unit(path):
    """Given a unit file, return {section: [(key, value), ...]} in file order.

    Keys may repeat (After=, SystemCallFilter=), hence lists, not configparser.
    """
    sections = {}
    current = None
    for raw_line in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw_line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def values(path, section, key):
    """Return every value of `key` in `section` of the unit file at `path`."""
    return [value for name, value in read_unit(path).get(section, []) if name == key]


def run(arguments, **options):
    """Run a command with a timeout; return the CompletedProcess (text, both streams)."""
    return subprocess.run(arguments, capture_output=True, text=True, timeout=60, **options)


def security_score(unit_path):
    """Return the overall exposure of a unit file from `systemd-analyze security --offline`."""
    result = run([SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(unit_path)])
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, f"no score in output:\n{result.stdout}\n{result.stderr}"
    return float(match.group(1))


def utc_elapses(expression, host_zone):
    """Return the next two elapses of an OnCalendar expression, as UTC datetimes.

    Computed by `systemd-analyze calendar` with TZ=host_zone: for a non-UTC host
    it prints the UTC form on an extra "(in UTC)" line.
    """
    result = run([SYSTEMD_ANALYZE, "calendar", "--iterations=2", expression],
                 env={**os.environ, "TZ": host_zone})
    assert result.returncode == 0, result.stderr
    stamps = re.findall(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC$", result.stdout, re.MULTILINE)
    assert len(stamps) == 2, result.stdout
    return [datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
            for stamp in stamps]


def loadable(unit):
    """Given a unit file name, return a name systemd can load: a template's `upbit` instance."""
    return unit.replace("@.", "@upbit.")


def install_units(directory, drop_in=False):
    """Copy the units into directory (the executable replaced by `true`), with the metrics drop-in if asked."""
    true = shutil.which("true")
    for name in SERVICES + TIMERS:
        text = (UNIT_DIRECTORY / name).read_text(encoding="utf-8").replace(EXECUTABLE, true)
        (directory / name).write_text(text, encoding="utf-8")
    if drop_in:
        (directory / PREFIX_DROP_IN_DIRECTORY).mkdir()
        shutil.copy(UNIT_DIRECTORY / METRICS_DROP_IN, directory / PREFIX_DROP_IN_DIRECTORY / METRICS_DROP_IN)
    return directory


def effective_settings(directory, unit):
    """Return {setting: [values]} of a unit as systemd loaded it (drop-ins applied), from verify's debug dump."""
    result = run([SYSTEMD_ANALYZE, "verify", f"./{unit}"], cwd=directory,
                 env={**os.environ, "SYSTEMD_LOG_LEVEL": "debug"})
    settings, inside = {}, False
    for line in (result.stdout + result.stderr).splitlines():
        if line.startswith("\t-> Unit "):
            inside = line == f"\t-> Unit {unit}:"
        elif inside and line.startswith("\t\t") and ": " in line:
            key, _, value = line.strip().partition(": ")
            settings.setdefault(key, []).append(value)
    assert settings, f"no dump of {unit} in:\n{result.stdout}{result.stderr}"
    return settings


def cron_field_values(field, low, high):
    """Given one cron time field and its bounds, return the set of numbers it matches."""
    matched = set()
    for part in field.split(","):
        span, _, step = part.partition("/")
        if span == "*":
            first, last = low, high
        elif "-" in span:
            first, last = (int(number) for number in span.split("-"))
        else:
            first = last = int(span)
        matched.update(range(first, last + 1, int(step) if step else 1))
    return matched


def cron_matches(job, local_time):
    """Return whether cron starts `job` at `local_time` (host wall clock, vixie rules)."""
    weekdays = {day % 7 for day in cron_field_values(job["weekday"], 0, 7)}
    day_matches = local_time.day in cron_field_values(job["day"], 1, 31)
    weekday_matches = (local_time.isoweekday() % 7) in weekdays
    if job["day"] != "*" and job["weekday"] != "*":
        calendar_matches = day_matches or weekday_matches
    else:
        calendar_matches = day_matches and weekday_matches
    return (calendar_matches
            and local_time.minute in cron_field_values(job["minute"], 0, 59)
            and local_time.hour in cron_field_values(job["hour"], 0, 23)
            and local_time.month in cron_field_values(job["month"], 1, 12))


GUARD = re.compile(r'^\[ "\$\(TZ=(\S+) date \+\\%H:\\%M\)" = (\d\d:\d\d) \] && ')


def guard_of(job):
    """Return (zone, 'HH:MM') of a job's wall-clock guard. Fail if it has none."""
    match = GUARD.match(job["command"])
    assert match, f"no TZ guard at the start of: {job['command']}"
    return match.group(1), match.group(2)


def job_stem(job):
    """Return the unit stem (the timer's, for quotes) whose command the cron job runs."""
    commands = {**{stem: arguments for stem, (arguments, _, _) in JOBS.items()},
                **{timer.removesuffix(".timer"): arguments for timer, (_, arguments) in QUOTE_TIMERS.items()}}
    for stem, arguments in commands.items():
        if f"{EXECUTABLE} {arguments} " in job["command"] + " ":
            return stem
    raise AssertionError(f"cron job runs no known command: {job['command']}")


def daily_jobs(jobs):
    """Given parsed cron jobs, return those of the daily jobs (not the quotes lines)."""
    return [job for job in jobs if job_stem(job) in JOBS]


def cron_command_for_shell(command):
    """Return the command as cron hands it to the shell: "\\%" becomes "%".

    An unescaped "%" would end the command (the rest is stdin): fail on one.
    """
    assert not re.search(r"(?<!\\)%", command), f"unescaped % in: {command}"
    return command.replace("\\%", "%")


def utc_minutes_of_day(utc_day):
    """Yield every minute of one UTC day as an aware datetime."""
    start = datetime.fromisoformat(utc_day).replace(tzinfo=timezone.utc)
    for offset in range(24 * 60):
        yield start + timedelta(minutes=offset)


def simulated_firings(job, host_zone, utc_day):
    """Return the UTC 'HH:MM's of `utc_day` at which cron on a `host_zone` host runs the job."""
    zone, wanted = guard_of(job)
    host = ZoneInfo(host_zone)
    return {
        moment.strftime("%H:%M")
        for moment in utc_minutes_of_day(utc_day)
        if cron_matches(job, moment.astimezone(host))
        and moment.astimezone(ZoneInfo(zone)).strftime("%H:%M") == wanted
    }


# --- systemd units -------------------------------------------------------

def test_unit_directory_holds_one_service_and_timer_per_job_and_the_metrics_drop_in():
    assert sorted(path.name for path in UNIT_DIRECTORY.iterdir()) == sorted(SERVICES + TIMERS + [METRICS_DROP_IN])


@pytest.mark.parametrize("service", SERVICES)
def test_service_memory_max_leaves_headroom_over_the_measured_peak(service):
    (limit,) = values(UNIT_DIRECTORY / service, "Service", "MemoryMax")
    match = re.fullmatch(r"(\d+)M", limit)
    assert match, f"MemoryMax={limit}: write it in M"
    assert int(match.group(1)) >= MEMORY_HEADROOM * MEASURED_PEAK_RSS_MIB


@needs_systemd_analyze
@pytest.mark.parametrize("service", SERVICES)
def test_service_memory_max_is_what_systemd_applies(service, tmp_path):
    (limit,) = values(UNIT_DIRECTORY / service, "Service", "MemoryMax")
    settings = effective_settings(install_units(tmp_path), loadable(service))
    assert settings["MemoryMax"] == [str(int(limit.rstrip("M")) * 1024 * 1024)]


def test_metrics_drop_in_opens_exactly_the_metrics_directory():
    path = UNIT_DIRECTORY / METRICS_DROP_IN
    assert values(path, "Service", "Environment") == [f"WOMBAT_METRICS_DIR={TEXTFILE_DIRECTORY}"]
    assert values(path, "Service", "ReadWritePaths") == [f"-{TEXTFILE_DIRECTORY}"]
    assert values(path, "Service", "SupplementaryGroups") == ["wombat-metrics"]
    assert list(read_unit(path)) == ["Service"]
    assert f"/etc/systemd/system/{PREFIX_DROP_IN_DIRECTORY}/{METRICS_DROP_IN}" in path.read_text(encoding="utf-8")


def test_quotes_service_execstart_runs_quotes_of_its_instance():
    assert values(UNIT_DIRECTORY / QUOTES_SERVICE, "Service", "ExecStart") == [
        f"{EXECUTABLE} quotes --exchange %i"]


def test_quotes_service_is_not_ordered_after_the_daily_units():
    # An After= on symbols or prices would make a quotes run wait while they run.
    after = " ".join(values(UNIT_DIRECTORY / QUOTES_SERVICE, "Unit", "After")).split()
    assert after == ["network-online.target"]


@pytest.mark.parametrize("stem", sorted(JOBS))
def test_service_execstart_runs_the_job(stem):
    arguments, _, _ = JOBS[stem]
    assert values(UNIT_DIRECTORY / f"{stem}.service", "Service", "ExecStart") == [
        f"{EXECUTABLE} {arguments}"
    ]


@pytest.mark.parametrize("service", SERVICES)
def test_service_is_a_niced_networked_oneshot(service):
    path = UNIT_DIRECTORY / service
    assert values(path, "Service", "Type") == ["oneshot"]
    assert "network-online.target" in " ".join(values(path, "Unit", "Wants"))
    assert "network-online.target" in " ".join(values(path, "Unit", "After"))
    assert values(path, "Service", "Nice") == ["19"]
    assert values(path, "Service", "IOSchedulingClass") == ["best-effort"]
    assert values(path, "Service", "IOSchedulingPriority") == ["7"]
    assert values(path, "Service", "SuccessExitStatus") == ["75"]
    assert values(path, "Service", "EnvironmentFile") == ["/etc/wombat-collect/wombat-collect.env"]
    assert len(values(path, "Service", "TimeoutStartSec")) == 1
    assert values(path, "Install", "WantedBy") == []


@pytest.mark.parametrize("service", SERVICES)
def test_service_shares_user_state_and_lock_directory(service):
    path = UNIT_DIRECTORY / service
    assert values(path, "Service", "DynamicUser") == ["yes"]
    assert values(path, "Service", "User") == ["wombat-collect"]
    assert values(path, "Service", "StateDirectory") == ["wombat-collect"]
    assert values(path, "Service", "Environment") == [
        "WOMBAT_STATE_DIR=%S/wombat-collect WOMBAT_LOCK_DIR=%S/wombat-collect"
    ]
    # A per-unit RuntimeDirectory would hide the units' locks from each other.
    assert values(path, "Service", "RuntimeDirectory") == []


def test_services_share_one_sandbox_block():
    marker = "# --- configuration"
    tails = {
        service: (UNIT_DIRECTORY / service).read_text(encoding="utf-8").split(marker, 1)[1]
        for service in SERVICES
    }
    assert len(set(tails.values())) == 1, "the [Service] settings after the marker differ"


def test_prices_services_run_after_symbols():
    assert "wombat-collect-symbols.service" in " ".join(
        values(UNIT_DIRECTORY / "wombat-collect-prices.service", "Unit", "After"))
    upbit_after = " ".join(
        values(UNIT_DIRECTORY / "wombat-collect-prices-upbit.service", "Unit", "After")).split()
    assert {"wombat-collect-symbols.service", "wombat-collect-prices.service"} <= set(upbit_after)


@needs_systemd_analyze
@pytest.mark.parametrize("drop_in", [False, True], ids=["plain", "metrics-drop-in"])
@pytest.mark.parametrize("unit", SERVICES + TIMERS)
def test_unit_passes_systemd_analyze_verify(unit, drop_in, tmp_path):
    result = run([SYSTEMD_ANALYZE, "verify", f"./{loadable(unit)}"], cwd=install_units(tmp_path, drop_in))
    # verify exits 0 on unknown keys and bad values too; it only warns.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_systemd_analyze
@pytest.mark.parametrize("service", SERVICES)
def test_service_with_the_metrics_drop_in_may_write_the_metrics_directory(service, tmp_path):
    settings = effective_settings(install_units(tmp_path, drop_in=True), loadable(service))
    assert settings["DropIn Path"] == [str(tmp_path / PREFIX_DROP_IN_DIRECTORY / METRICS_DROP_IN)]
    assert f"WOMBAT_METRICS_DIR={TEXTFILE_DIRECTORY}" in settings["Environment"]
    assert settings["ReadWritePaths"] == [f"-{TEXTFILE_DIRECTORY}"]
    assert settings["SupplementaryGroups"] == ["wombat-metrics"]
    assert settings["ProtectSystem"] == ["strict"]  # everything else stays read-only


@needs_systemd_analyze
@pytest.mark.parametrize("drop_in", [False, True], ids=["plain", "metrics-drop-in"])
@pytest.mark.parametrize("service", SERVICES)
def test_service_security_score_is_at_most_threshold(service, drop_in, tmp_path):
    assert security_score(install_units(tmp_path, drop_in) / service) <= SECURITY_THRESHOLD


@pytest.mark.parametrize("stem", sorted(JOBS))
def test_timer_runs_its_service_persistently_and_precisely(stem):
    path = UNIT_DIRECTORY / f"{stem}.timer"
    _, korean_time, _ = JOBS[stem]
    assert values(path, "Timer", "OnCalendar") == [f"*-*-* {korean_time}:00 Asia/Seoul"]
    assert values(path, "Timer", "Persistent") == ["true"]
    assert values(path, "Timer", "AccuracySec") == ["1s"]
    assert values(path, "Timer", "Unit") == []  # defaults to the service of the same name
    assert values(path, "Install", "WantedBy") == ["timers.target"]


@pytest.mark.parametrize("timer", sorted(QUOTE_TIMERS))
def test_quotes_timer_starts_its_instance_every_minute_without_catching_up(timer):
    path = UNIT_DIRECTORY / timer
    instance, _ = QUOTE_TIMERS[timer]
    assert values(path, "Timer", "Unit") == [instance]
    assert values(path, "Timer", "Persistent") == ["false"]  # a missed minute's quote is worth nothing later
    assert values(path, "Timer", "AccuracySec") == ["1s"]
    assert values(path, "Timer", "RandomizedDelaySec") == []
    assert values(path, "Install", "WantedBy") == ["timers.target"]


def test_timer_random_delay_keeps_symbols_ahead_of_prices():
    def seconds(text):
        match = re.fullmatch(r"(\d+)s", text)
        assert match, f"RandomizedDelaySec={text}: write it in seconds"
        return int(match.group(1))

    delays = {stem: seconds(values(UNIT_DIRECTORY / f"{stem}.timer", "Timer",
                                   "RandomizedDelaySec")[0]) for stem in JOBS}
    # symbols fires within [00:00, 00:00 + delay] and prices from 00:02 on:
    # a delay under the 2-minute gap keeps symbols first (under a minute, to
    # leave it time to finish its quick run).
    assert all(0 < delay < 60 for delay in delays.values()), delays


@needs_systemd_analyze
@pytest.mark.parametrize("host_zone", ["UTC", "America/New_York", "Asia/Kolkata"])
@pytest.mark.parametrize("stem", sorted(JOBS))
def test_timer_calendar_fires_at_utc_time_of_day(stem, host_zone):
    _, _, utc_time = JOBS[stem]
    expression = values(UNIT_DIRECTORY / f"{stem}.timer", "Timer", "OnCalendar")[0]
    first, second = utc_elapses(expression, host_zone)
    assert first.strftime("%H:%M:%S") == f"{utc_time}:00"
    assert second - first == timedelta(days=1)


def calendar_elapses(expression, host_zone, iterations, base=BASE_MONDAY):
    """Return the next `iterations` elapses of an OnCalendar expression after `base`, as UTC datetimes."""
    result = run([SYSTEMD_ANALYZE, "calendar", f"--iterations={iterations}",
                  f"--base-time=@{int(base.timestamp())}", expression], env={**os.environ, "TZ": host_zone})
    assert result.returncode == 0, result.stderr
    # In a UTC host zone the elapses are printed in UTC; otherwise an extra "(in UTC)" line has it.
    stamps = re.findall(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC$", result.stdout, re.MULTILINE)
    assert len(stamps) == iterations, result.stdout
    return [datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc) for stamp in stamps]


def seoul_minutes(first, last):
    """Given two Seoul datetimes, return every minute from the first to the last, both included."""
    return [first + timedelta(minutes=offset) for offset in range(int((last - first).total_seconds()) // 60 + 1)]


@needs_systemd_analyze
@pytest.mark.parametrize("host_zone", ["UTC", "America/New_York"])
def test_quotes_kis_timer_calendar_fires_every_minute_of_krx_sessions_only(host_zone):
    # From Friday 17:30 to Monday 09:30 Seoul: the end of a week's sessions, the weekend, the next start.
    # Monday 08:30 Seoul is Sunday 23:30 UTC: a weekday read in the host's zone would show.
    friday, window_end = datetime(2025, 3, 7, 17, 30, tzinfo=SEOUL), datetime(2025, 3, 10, 9, 30, tzinfo=SEOUL)
    fired = []
    for expression in values(UNIT_DIRECTORY / "wombat-collect-quotes-kis.timer", "Timer", "OnCalendar"):
        assert expression.endswith(" Asia/Seoul"), expression
        elapses = calendar_elapses(expression, host_zone, 64, base=friday - timedelta(minutes=1))
        assert elapses[-1] > window_end  # enough iterations to pass the window
        fired += [moment.astimezone(SEOUL) for moment in elapses if moment <= window_end]
    expected = (seoul_minutes(friday, datetime(2025, 3, 7, 18, 0, tzinfo=SEOUL))
                + seoul_minutes(datetime(2025, 3, 10, 8, 30, tzinfo=SEOUL), window_end))
    assert sorted(fired) == expected  # each minute once: the expressions do not overlap


@needs_systemd_analyze
def test_quotes_upbit_timer_calendar_fires_every_minute_in_a_utc_host_zone():
    (expression,) = values(UNIT_DIRECTORY / "wombat-collect-quotes-upbit.timer", "Timer", "OnCalendar")
    elapses = calendar_elapses(expression, "UTC", 120)
    assert all(later - earlier == timedelta(minutes=1) for earlier, later in zip(elapses, elapses[1:], strict=False))
    assert elapses[0] == BASE_MONDAY + timedelta(minutes=1) and elapses[0].second == 0


# --- crontab -------------------------------------------------------------

def test_crontab_file_is_usable_in_cron_d():
    # Debian's cron ignores /etc/cron.d files whose names contain a dot;
    # cron drops a last line without a newline.
    assert re.fullmatch(r"[A-Za-z0-9_-]+", CRONTAB.name)
    assert CRONTAB.read_text(encoding="utf-8").endswith("\n")


def test_crontab_sets_shell_path_mail_and_configuration():
    environment, _ = read_crontab(CRONTAB, with_user=True)
    assert environment["SHELL"] == "/bin/sh"
    assert {"/usr/bin", "/bin"} <= set(environment["PATH"].split(":"))
    assert environment["MAILTO"]
    assert environment["WOMBAT_ENV_FILE"] == "/etc/wombat-collect/wombat-collect.env"
    assert environment["WOMBAT_STATE_DIR"] == "/var/lib/wombat-collect"
    assert environment["WOMBAT_LOCK_DIR"] == "/var/lib/wombat-collect"  # never a directory others can write
    # CRON_TZ would work on cronie only and silently not on Debian.
    assert "CRON_TZ" not in environment


def test_crontab_has_one_line_per_job():
    _, jobs = read_crontab(CRONTAB, with_user=True)
    assert sorted(job_stem(job) for job in jobs) == sorted(
        list(JOBS) + [timer.removesuffix(".timer") for timer in QUOTE_TIMERS])


def test_crontab_lines_run_as_wombat_and_discard_only_stdout():
    _, jobs = read_crontab(CRONTAB, with_user=True)
    for job in jobs:
        assert job["user"] == "wombat"
        assert job["command"].endswith(" >/dev/null"), job["command"]
        assert "2>" not in job["command"] and "&>" not in job["command"], job["command"]


@pytest.mark.parametrize("utc_day", UTC_DAYS)
@pytest.mark.parametrize("host_zone", HOST_ZONES)
def test_crontab_fires_once_at_korean_time_on_any_host_zone(host_zone, utc_day):
    _, jobs = read_crontab(CRONTAB, with_user=True)
    for job in daily_jobs(jobs):
        _, korean_time, utc_time = JOBS[job_stem(job)]
        assert guard_of(job) == ("Asia/Seoul", korean_time)
        assert simulated_firings(job, host_zone, utc_day) == {utc_time}, job["command"]


def test_crontab_simulation_catches_a_wrong_schedule():
    # The same guard behind an hourly "0" minute never fires at 00:02 KST.
    job = {"minute": "0", "hour": "*", "day": "*", "month": "*", "weekday": "*", "user": "wombat",
           "command": '[ "$(TZ=Asia/Seoul date +\\%H:\\%M)" = 00:02 ] && true >/dev/null'}
    assert simulated_firings(job, "UTC", "2025-01-15") == set()
    # An hourly job with an hour-only guard runs half an hour late on an Indian host.
    job["command"] = job["command"].replace("00:02", "00:00")
    assert simulated_firings(job, "UTC", "2025-01-15") == {"15:00"}
    assert simulated_firings(job, "Asia/Kolkata", "2025-01-15") == set()


def make_stub_bin(directory):
    """Create a `date` that reports $FAKE_EPOCH and a stub CLI that logs its arguments."""
    real_date = shutil.which("date")
    if real_date is None:
        pytest.skip("no date command")
    probe = run([real_date, "-d", "@0", "+%H:%M"], env={**os.environ, "TZ": "Asia/Seoul"})
    if probe.stdout.strip() != "09:00":
        pytest.skip("date does not understand -d @EPOCH (needs GNU date)")
    directory.mkdir()
    (directory / "date").write_text(f'#!/bin/sh\nexec {real_date} -d "@$FAKE_EPOCH" "$@"\n')
    (directory / "wombat-collect").write_text(
        '#!/bin/sh\necho "$FAKE_EPOCH $*" >> "$STUB_LOG"\n'
        'echo "INFO collected"\necho "WARNING 1 symbol failed" >&2\n'
    )
    for path in directory.iterdir():
        path.chmod(0o755)


def test_crontab_commands_fire_in_a_real_shell(tmp_path):
    environment, jobs = read_crontab(CRONTAB, with_user=True)
    stub_bin = tmp_path / "bin"
    make_stub_bin(stub_bin)
    log = tmp_path / "runs.log"
    for job in daily_jobs(jobs):
        command = cron_command_for_shell(job["command"]).replace(
            EXECUTABLE, str(stub_bin / "wombat-collect"))
        for moment in utc_minutes_of_day("2025-01-15"):
            if not cron_matches(job, moment):  # the host is on UTC
                continue
            env = {"PATH": f"{stub_bin}:{environment['PATH']}", "STUB_LOG": str(log),
                   "FAKE_EPOCH": str(int(moment.timestamp()) + 10)}
            result = run([environment["SHELL"], "-c", command], env=env)
            # Cron mails any output: stdout must be gone, stderr must stay.
            assert result.stdout == ""
            fired = result.stderr == "WARNING 1 symbol failed\n"
            assert fired or result.stderr == "", result.stderr
    runs = sorted(log.read_text().splitlines())
    assert [(datetime.fromtimestamp(int(line.split()[0]), timezone.utc).strftime("%H:%M"),
             line.split(None, 1)[1]) for line in runs] == [
        ("00:05", "prices --exchange upbit"),
        ("15:00", "symbols --exchange all"),
        ("15:02", "prices --exchange all"),
    ]


def test_crontab_quotes_upbit_line_runs_every_minute_unguarded():
    _, jobs = read_crontab(CRONTAB, with_user=True)
    (job,) = [job for job in jobs if job_stem(job) == "wombat-collect-quotes-upbit"]
    assert [job[field] for field in ("minute", "hour", "day", "month", "weekday")] == ["*"] * 5
    assert job["command"] == f"{EXECUTABLE} quotes --exchange upbit >/dev/null"


# Seoul wall-clock instants (20 s into the minute) -> whether the KIS quotes line runs then.
KIS_QUOTES_INSTANTS = {
    "2025-03-07 08:29": False, "2025-03-07 08:30": True, "2025-03-07 12:00": True,  # a Friday
    "2025-03-07 18:00": True, "2025-03-07 18:01": False, "2025-03-07 23:59": False,
    "2025-03-08 10:00": False, "2025-03-09 12:00": False,  # Saturday, Sunday
    "2025-03-10 08:30": True, "2025-03-10 00:00": False,  # Monday 08:30 Seoul is Sunday 23:30 UTC
}


def test_crontab_quotes_kis_line_fires_only_during_krx_sessions_in_a_real_shell(tmp_path):
    environment, jobs = read_crontab(CRONTAB, with_user=True)
    (job,) = [job for job in jobs if job_stem(job) == "wombat-collect-quotes-kis"]
    assert [job[field] for field in ("minute", "hour", "day", "month", "weekday")] == ["*"] * 5
    stub_bin = tmp_path / "bin"
    make_stub_bin(stub_bin)
    command = cron_command_for_shell(job["command"]).replace(EXECUTABLE, str(stub_bin / "wombat-collect"))
    fired = {}
    for instant in KIS_QUOTES_INSTANTS:
        moment = datetime.strptime(instant, "%Y-%m-%d %H:%M").replace(second=20, tzinfo=SEOUL)
        env = {"PATH": f"{stub_bin}:{environment['PATH']}", "STUB_LOG": str(tmp_path / "runs.log"),
               "FAKE_EPOCH": str(int(moment.timestamp())), "TZ": "UTC"}
        result = run([environment["SHELL"], "-c", command], env=env)
        assert result.stdout == ""
        fired[instant] = result.stderr == "WARNING 1 symbol failed\n"
    assert fired == KIS_QUOTES_INSTANTS


def outer_faketime_offset():
    """Given this process's environment, return the seconds an outer `faketime -f +Ns` adds (0 if none).

    An inner faketime replaces the outer one's FAKETIME, and both count from the real clock
    (tests/run_at_dates.sh runs this file under one), so the inner offset must include the outer.
    """
    match = re.fullmatch(r"([+-]\d+)s?", os.environ.get("FAKETIME", ""))
    return int(match.group(1)) if match else 0


@pytest.mark.skipif(shutil.which("faketime") is None, reason="faketime is not installed")
@pytest.mark.parametrize("utc_time, fires", [("15:00:20", True), ("15:15:20", False),
                                             ("00:00:20", False)])
def test_crontab_symbols_guard_under_faketime(utc_time, fires):
    _, jobs = read_crontab(CRONTAB, with_user=True)
    job = next(job for job in jobs if job_stem(job) == "wombat-collect-symbols")
    guard = cron_command_for_shell(job["command"]).split(" && ", 1)[0]
    day = datetime.now(timezone.utc).date() + timedelta(days=2)
    target = datetime.fromisoformat(f"{day}T{utc_time}+00:00")
    # A relative offset: libfaketime reads absolute times in each process's TZ,
    # and the guard runs date with TZ=Asia/Seoul.
    offset = int(target.timestamp() - datetime.now(timezone.utc).timestamp()) + outer_faketime_offset()
    result = run(["faketime", "-f", f"{offset:+d}s", "/bin/sh", "-c", f"{guard} && echo fired"])
    assert (result.stdout == "fired\n") is fires, result.stdout + result.stderr


# --- docs/development.md "Changing the schedule": the systemd drop-in and the cron.d line ------

DROP_IN_HEADING = "systemd timers: a drop-in"
MOVED_PRICES_UTC = "16:30"  # 01:30 Asia/Seoul, the day before in UTC


def install_prices_drop_in(directory, text):
    """Given installed units and a drop-in's text, install it as `systemctl edit wombat-collect-prices.timer` does."""
    drop_in_directory = directory / "wombat-collect-prices.timer.d"
    drop_in_directory.mkdir()
    (drop_in_directory / "override.conf").write_text(text, encoding="utf-8")
    return directory


def test_readme_drop_in_is_made_with_systemctl_edit_of_the_prices_timer():
    assert ("systemctl edit wombat-collect-prices.timer"
            in document_code_blocks(DEVELOPMENT_DOC, DROP_IN_HEADING, "sh")[0])


@needs_systemd_analyze
@pytest.mark.parametrize("host_zone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_readme_drop_in_moves_the_prices_timer_to_0130_seoul(host_zone, tmp_path):
    [drop_in] = document_code_blocks(DEVELOPMENT_DOC, DROP_IN_HEADING, "ini")
    directory = install_prices_drop_in(install_units(tmp_path), drop_in)
    result = run([SYSTEMD_ANALYZE, "verify", "./wombat-collect-prices.timer"], cwd=directory)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    [expression] = effective_settings(directory, "wombat-collect-prices.timer")["OnCalendar"]  # the reset worked
    first, second = calendar_elapses(expression, host_zone, 2)
    assert (first.strftime("%H:%M:%S"), second - first) == (f"{MOVED_PRICES_UTC}:00", timedelta(days=1))


@needs_systemd_analyze
def test_readme_drop_in_without_the_empty_oncalendar_would_keep_0002_too(tmp_path):
    [drop_in] = document_code_blocks(DEVELOPMENT_DOC, DROP_IN_HEADING, "ini")
    directory = install_prices_drop_in(install_units(tmp_path), drop_in.replace("OnCalendar=\n", "", 1))
    assert sorted(effective_settings(directory, "wombat-collect-prices.timer")["OnCalendar"]) == [
        "*-*-* 00:02:00 Asia/Seoul", "*-*-* 01:30:00 Asia/Seoul"]


def test_readme_crond_line_moves_prices_to_0130_seoul_on_any_host_zone(tmp_path):
    from croniter import croniter

    [line] = document_code_blocks(DEVELOPMENT_DOC, "cron.d: the guarded line", "crontab")
    (tmp_path / "wombat-collect").write_text(line, encoding="utf-8")
    _, [job] = read_crontab(tmp_path / "wombat-collect", with_user=True)
    [original] = [each for each in read_crontab(CRONTAB, with_user=True)[1] if job_stem(each) == job_stem(job)]
    assert job_stem(job) == "wombat-collect-prices"
    assert job["user"] == original["user"]
    assert job["command"].split(" && ", 1)[1] == original["command"].split(" && ", 1)[1]
    assert guard_of(job) == ("Asia/Seoul", "01:30")
    for host_zone in HOST_ZONES:
        for utc_day in UTC_DAYS:  # croniter reads the fields on the host's clock; the guard on Seoul's
            fired = {moment.strftime("%H:%M") for moment in utc_minutes_of_day(utc_day)
                     if croniter.match(job["schedule"], moment.astimezone(ZoneInfo(host_zone)))
                     and moment.astimezone(SEOUL).strftime("%H:%M") == "01:30"}
            assert fired == {MOVED_PRICES_UTC}, (host_zone, utc_day)
            assert simulated_firings(job, host_zone, utc_day) == {MOVED_PRICES_UTC}
