"""Shared by the container tests (tests/test_containers_*.py): the paths and schedules they compare, parsers
of the Dockerfile, crontab/supercronic, the compose files and k8s/, what each scheduler fires, and running the
image's and the CronJobs' command lines for real.

No Docker daemon is needed (none exists here or in CI): the linters check the
files (hadolint, the compose-spec schema, kubernetes-validate --strict; they
come from the `lint` extra, which .ci/run installs: missing, they fail the test
under CI=true and skip it elsewhere), the schedules are compared with the
systemd timers and the cron.d file over a year of days (the every-minute quotes
over three weeks of minutes), and the command lines
the image and the CronJobs run are run for real against the fake exchanges and
a real PostgreSQL.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg2.extensions
import pytest
import yaml

from tests.conftest import query, stored_prices
from tests.fakes.kis_server import FakeKis
from tests.fakes.upbit_server import default_market_row, make_upbit_candles
from tests.kis_support import MASTERS, expected_prices, install_masters
from tests.ops_support import read_crontab
from tests.test_cli import expected_rows
from tests.test_units import cron_matches, guard_of, values

REPOSITORY = Path(__file__).resolve().parent.parent
DOCKERFILE = REPOSITORY / "Dockerfile"
SUPERCRONIC_CRONTAB = REPOSITORY / "crontab" / "supercronic"
CROND_FILE = REPOSITORY / "crontab" / "wombat-collect"
UNIT_DIRECTORY = REPOSITORY / "systemd"
COMPOSE = REPOSITORY / "compose.yaml"
COMPOSE_STANDALONE = REPOSITORY / "compose.override.yaml"
COMPOSE_BACKEND = REPOSITORY / "compose.backend.yaml"
K8S = REPOSITORY / "k8s"
CRONJOBS = sorted(K8S.glob("cronjob-*.yaml"))
SEOUL = ZoneInfo("Asia/Seoul")

SUPERCRONIC_VERSION = "v0.2.51"
SUPERCRONIC_AMD64_SHA1 = "1692066e350a88ff4d7d6474fe3c7a6c41ec5e89"
STATE_DIR = "/var/lib/wombat-collect"
# The jobs, as the systemd units run them: command after the executable -> Korean time.
JOBS = {"symbols --exchange all": "00:00", "prices --exchange all": "00:02", "prices --exchange upbit": "09:05"}
# The systemd units of those jobs (other units may run other jobs).
TIMER_STEMS = ["wombat-collect-symbols", "wombat-collect-prices", "wombat-collect-prices-upbit"]
HOST_ZONES = ["UTC", "America/New_York", "Asia/Kolkata"]
YEAR_START = datetime(2025, 1, 1, tzinfo=timezone.utc)
YEAR_END = datetime(2026, 1, 1, tzinfo=timezone.utc)
# Three weeks of minutes for the quotes (a year of minutes is too many), Saturday to Saturday in
# Seoul: weekends, session edges, and America/New_York's change to daylight saving time (9 March).
QUOTES_START = datetime(2025, 3, 1, tzinfo=SEOUL)
QUOTES_END = datetime(2025, 3, 22, tzinfo=SEOUL)
# A minute's schedules cost seconds per zone: UTC, and a zone that changes its offset in the window.
QUOTES_HOST_ZONES = ["UTC", "America/New_York"]
QUOTES_SERVICE = UNIT_DIRECTORY / "wombat-collect-quotes@.service"
QUOTES_TIMERS = sorted(UNIT_DIRECTORY.glob("wombat-collect-quotes-*.timer"))
# The cron.d KIS quotes line's guard: Seoul weekday <= N and HHMM within [first, last].
QUOTES_GUARD = re.compile(r'^\[ "\$\(TZ=(\S+) date \+\\%u\)" -le (\d) \] && '
                          r'\[ "\$\(TZ=\1 date \+\\%H\\%M\)" -ge (\d{4}) \] && '
                          r'\[ "\$\(TZ=\1 date \+\\%H\\%M\)" -le (\d{4}) \] && ')
# The backend's variables (reference/containers.md), plus the KIS keys.
BACKEND_VARIABLES = {"POSTGRES_SERVER", "POSTGRES_PORT", "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD",
                     "SENTRY_DSN", "KIS_APP_KEY", "KIS_APP_SECRET"}
# Peak RSS measured with /usr/bin/time -v against the fakes (docs/deployment.md, "Kubernetes"):
# the first `prices --exchange all` (365 days of 800 Upbit markets and 2,800 KIS
# stocks), and the 3,000-day Upbit backfill of docs/performance.md.
MEASURED_DAILY_PEAK_MIB = 62
MEASURED_BACKFILL_PEAK_MIB = 82
# The backend's stack as reference/containers.md describes it (junmanbo/wombat docker-compose.yml).
BACKEND_COMPOSE = {
    "services": {
        "db": {"image": "postgres:12", "healthcheck": {"test": ["CMD", "pg_isready"]}},
        "prestart": {"image": "backend", "command": "alembic upgrade head",
                     "depends_on": {"db": {"condition": "service_healthy", "restart": True}}},
        "scheduler-engine": {"image": "backend", "command": "python -m app.scheduler_engine", "restart": "always",
                             "depends_on": {"db": {"condition": "service_healthy", "restart": True},
                                            "prestart": {"condition": "service_completed_successfully"}}},
        "backend": {"image": "backend", "depends_on": {"db": {"condition": "service_healthy"}}},
    },
}


# --- helpers -------------------------------------------------------------

def linter(name):
    """Given a linter's executable name, return its path.

    Missing: fail under CI (which installs the `lint` extra), else skip with the install hint.
    """
    candidate = Path(sys.executable).parent / name
    path = str(candidate) if candidate.exists() else shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed: pip install -e '.[lint]'"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (.ci/run installs it)")
    pytest.skip(message)


def dockerfile_instructions(path=DOCKERFILE):
    """Given a Dockerfile, return [(INSTRUCTION, arguments)] with continuation lines joined."""
    instructions = []
    pending = ""
    for raw_line in path.read_text(encoding="utf-8").splitlines():
        line = raw_line.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = pending + line
        pending = ""
        keyword, _, arguments = whole.partition(" ")
        instructions.append((keyword.upper(), " ".join(arguments.split())))
    return instructions


def final_stage(instructions):
    """Given Dockerfile instructions, return those of the last stage (from its FROM on)."""
    last_from = max(index for index, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def stage_arguments(instructions):
    """Given one stage's instructions, return {ARG name: default}."""
    defaults = {}
    for keyword, arguments in instructions:
        if keyword == "ARG":
            name, _, default = arguments.partition("=")
            defaults[name] = default
    return defaults


def image_environment():
    """Return the final image's ENV settings as a dict (values as written, $PATH unexpanded)."""
    environment = {}
    for keyword, arguments in final_stage(dockerfile_instructions()):
        if keyword == "ENV":
            for assignment in shlex.split(arguments):
                name, _, value = assignment.partition("=")
                environment[name] = value
    return environment


def healthcheck_command():
    """Return the argv of the final image's HEALTHCHECK (its CMD in JSON form)."""
    [arguments] = [arguments for keyword, arguments in final_stage(dockerfile_instructions())
                   if keyword == "HEALTHCHECK"]
    options, _, command = arguments.partition(" CMD ")
    return json.loads(command)


def healthcheck_options():
    """Return the HEALTHCHECK's options, e.g. {'interval': '15m', ...}."""
    [arguments] = [arguments for keyword, arguments in final_stage(dockerfile_instructions())
                   if keyword == "HEALTHCHECK"]
    options = arguments.partition(" CMD ")[0]
    return dict(option[2:].split("=", 1) for option in options.split())


def duration_seconds(text):
    """Given a Docker/Compose duration such as '15m', '90s' or '1m30s', return seconds."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    assert parts and text, f"not a duration: {text}"
    hours, minutes, seconds = (int(part or 0) for part in parts.groups())
    return hours * 3600 + minutes * 60 + seconds


def parse_supercronic(path=SUPERCRONIC_CRONTAB):
    """Given a supercronic crontab, return ({variable: value}, [(five-field schedule, command)]) (no user field)."""
    environment, jobs = read_crontab(path, with_user=False)
    return environment, [(job["schedule"], job["command"]) for job in jobs]


QUOTES = ("quotes --exchange upbit", "quotes --exchange kis")


def daily_jobs(jobs):
    """Given parsed supercronic jobs, return those of the daily jobs (not the every-minute quotes lines)."""
    return [(schedule, command) for schedule, command in jobs if command_arguments(command) not in QUOTES]


def quote_jobs(jobs):
    """Given parsed supercronic jobs, return the quotes lines."""
    return [(schedule, command) for schedule, command in jobs if command_arguments(command) in QUOTES]


def load_yaml(path):
    with open(path, encoding="utf-8") as stream:
        return yaml.safe_load(stream)


def cronjobs():
    """Return every CronJob manifest in k8s/ as a dict."""
    return [load_yaml(path) for path in CRONJOBS]


def pod_spec(manifest):
    """Given a CronJob or a Job, return the spec of the pods it runs."""
    job = manifest["spec"]["jobTemplate"]["spec"] if manifest["kind"] == "CronJob" else manifest["spec"]
    return job["template"]["spec"]


def container(manifest):
    """Given a CronJob or a Job, return its pods' one container."""
    [only] = pod_spec(manifest)["containers"]
    return only


def cronjob_arguments(cronjob):
    """Given a CronJob, return its container's CLI arguments after `wombat-collect`, as one string."""
    return " ".join(container(cronjob)["command"][1:])


def cron_instants(schedule, zone, start=YEAR_START, end=YEAR_END):
    """Given a five-field schedule read in `zone`, return its firings in [start, end) as UTC datetimes."""
    from croniter import croniter

    iterator = croniter(schedule, start.astimezone(ZoneInfo(zone)) - timedelta(seconds=1))
    instants = []
    while True:
        moment = iterator.get_next(datetime).astimezone(timezone.utc)
        if moment >= end:
            return instants
        instants.append(moment)


def command_arguments(command):
    """Given a job's command line, return the CLI arguments after `wombat-collect`."""
    words = shlex.split(command)
    assert Path(words[0]).name == "wombat-collect", command
    return " ".join(words[1:])


# --- what each scheduler fires: {(UTC instant, arguments)} ---------------

def supercronic_firings(host_zone, crontab=SUPERCRONIC_CRONTAB, image_zone=None, select=daily_jobs,
                        window=(YEAR_START, YEAR_END)):
    """supercronic reads the schedule in CRON_TZ, else in the container's TZ (set by the image)."""
    environment, jobs = parse_supercronic(crontab)
    zone = environment.get("CRON_TZ") or (image_zone or image_environment()).get("TZ") or host_zone
    return {(moment, command_arguments(command)) for schedule, command in select(jobs)
            for moment in cron_instants(schedule, zone, *window)}


def systemd_firings(host_zone):
    """Each timer's OnCalendar (only `*-*-* HH:MM:SS [zone]` is used), read in its zone or the host's."""
    firings = set()
    for timer in (UNIT_DIRECTORY / f"{stem}.timer" for stem in TIMER_STEMS):
        [calendar] = values(timer, "Timer", "OnCalendar")
        match = re.fullmatch(r"\*-\*-\* (\d\d):(\d\d):00(?: (\S+))?", calendar)
        assert match, f"{timer.name}: unexpected OnCalendar={calendar}"
        hour, minute, zone = match.groups()
        [exec_start] = values(timer.with_suffix(".service"), "Service", "ExecStart")
        for moment in cron_instants(f"{int(minute)} {int(hour)} * * *", zone or host_zone):
            firings.add((moment, command_arguments(exec_start)))
    return firings


def crond_firings(host_zone):
    """cron reads the schedule in the host's zone; the TZ guard lets a start through only in its minute.

    The guard passes in one minute a day (the Korean wall clock shows it once:
    Asia/Seoul has no daylight saving time), so cron fires the job on a day
    exactly when its schedule matches that minute on the host's clock.
    """
    from croniter import croniter

    _, jobs = read_crontab(CROND_FILE, with_user=True)
    firings = set()
    for job in jobs:
        daily = [arguments for arguments in JOBS if f"/wombat-collect {arguments} " in job["command"] + " "]
        if not daily:
            continue  # another job (the containers run the three daily ones)
        zone, wanted = guard_of(job)
        schedule = " ".join(job[field] for field in ("minute", "hour", "day", "month", "weekday"))
        for moment in cron_instants(f"{int(wanted[3:])} {int(wanted[:2])} * * *", zone):
            if croniter.match(schedule, moment.astimezone(ZoneInfo(host_zone))):
                firings.add((moment, daily[0]))
    return firings


def cronjob_firings(host_zone, wanted=tuple(JOBS), window=(YEAR_START, YEAR_END)):
    """The CronJob controller reads `schedule` in `timeZone` (the controller's zone without it)."""
    firings = set()
    for cronjob in (cronjob for cronjob in cronjobs() if cronjob_arguments(cronjob) in wanted):
        zone = cronjob["spec"].get("timeZone") or host_zone
        firings.update((moment, cronjob_arguments(cronjob))
                       for moment in cron_instants(cronjob["spec"]["schedule"], zone, *window))
    return firings


def calendar_as_cron(expression):
    """Given a quotes timer's OnCalendar (`[Mon..Fri ]*-*-* H:M:00[ zone]`, ranges as `a..b`), return
    (five-field cron schedule, zone or None)."""
    match = re.fullmatch(r"(?:(Mon\.\.Fri) )?\*-\*-\* ([\d.*]+):([\d.*]+):00(?: (\S+))?", expression)
    assert match, f"unexpected OnCalendar={expression}"
    weekdays, hours, minutes, zone = match.groups()

    def field(text):
        return "*" if text == "*" else "-".join(str(int(part)) for part in text.split(".."))

    return f"{field(minutes)} {field(hours)} * * {'1-5' if weekdays else '*'}", zone


def systemd_quotes_firings(host_zone):
    """Each quotes timer starts its instance of the quotes service at every OnCalendar, read in its zone."""
    [exec_start] = values(QUOTES_SERVICE, "Service", "ExecStart")
    firings = set()
    for timer in QUOTES_TIMERS:
        [unit] = values(timer, "Timer", "Unit")
        arguments = command_arguments(exec_start.replace("%i", unit.split("@")[1].removesuffix(".service")))
        for expression in values(timer, "Timer", "OnCalendar"):
            schedule, zone = calendar_as_cron(expression)
            firings.update((moment, arguments)
                           for moment in cron_instants(schedule, zone or host_zone, QUOTES_START, QUOTES_END))
    return firings


def quotes_guard_passes(command, moment):
    """Given a cron.d quotes command and a UTC instant, return whether its guard lets the run start then."""
    match = QUOTES_GUARD.match(command)
    if not match:
        return True  # unguarded (Upbit)
    zone, last_weekday, first, last = match.groups()
    local = moment.astimezone(ZoneInfo(zone))
    return local.isoweekday() <= int(last_weekday) and int(first) <= int(local.strftime("%H%M")) <= int(last)


def crond_quotes_firings(host_zone):
    """cron starts a quotes line at each host minute its schedule matches; the guard lets it through or not."""
    _, jobs = read_crontab(CROND_FILE, with_user=True)
    minutes = [QUOTES_START.astimezone(timezone.utc) + timedelta(minutes=offset)
               for offset in range(int((QUOTES_END - QUOTES_START).total_seconds()) // 60)]
    firings = set()
    for job in jobs:
        arguments = re.search(r"/wombat-collect (quotes --exchange \w+)", job["command"])
        if not arguments:
            continue  # a daily job
        firings.update((moment, arguments.group(1)) for moment in minutes
                       if cron_matches(job, moment.astimezone(ZoneInfo(host_zone)))
                       and quotes_guard_passes(job["command"], moment))
    return firings


def expected_quotes_firings():
    """Upbit every minute; KIS every minute of weekdays 08:30-18:00 Seoul, both ends included."""
    firings = set()
    moment = QUOTES_START.astimezone(timezone.utc)
    while moment < QUOTES_END:
        firings.add((moment, "quotes --exchange upbit"))
        seoul = moment.astimezone(SEOUL)
        if seoul.weekday() < 5 and (8, 30) <= (seoul.hour, seoul.minute) <= (18, 0):
            firings.add((moment, "quotes --exchange kis"))
        moment += timedelta(minutes=1)
    return firings


def expected_firings(jobs=JOBS):
    """Every day of the year at each job's Korean time ({arguments: "HH:MM"}, default JOBS)."""
    firings = set()
    day = YEAR_START.astimezone(SEOUL).date()
    while True:
        for arguments, korean_time in jobs.items():
            hour, minute = (int(part) for part in korean_time.split(":"))
            moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=SEOUL).astimezone(timezone.utc)
            if YEAR_START <= moment < YEAR_END:
                firings.add((moment, arguments))
        if moment >= YEAR_END:
            return firings
        day += timedelta(days=1)


# --- running the command lines for real ------------------------------------

TODAY = datetime.now(timezone.utc).date()
DATA_START = TODAY - timedelta(days=12)
DATA_END = TODAY - timedelta(days=2)  # every candle closed, whatever the hour


def serve_fake_kis():
    """Yield a FakeKis serving the masters and the daily rows of every master code from DATA_START to DATA_END."""
    with FakeKis(rate_limit=None, token_throttle_seconds=None) as server:
        install_masters(server)
        from tests.fakes.kis_server import make_kis_rows

        for code in kis_codes():
            server.set_prices(code, make_kis_rows(code, DATA_START, DATA_END))
        yield server


def install_upbit_candles(fake_upbit):
    """Two markets with closed candles from DATA_START to DATA_END."""
    candles = {market: make_upbit_candles(market, DATA_START, DATA_END) for market in ("KRW-BTC", "KRW-ETH")}
    fake_upbit.set_markets([default_market_row(market) for market in candles])
    for market, rows in candles.items():
        fake_upbit.set_candles(market, rows)
    return candles


def kis_codes():
    return sorted(code for rows in MASTERS.values() for code, _, _, _ in rows)


def exchange_environment(fake_upbit, fake_kis):
    """The variables that point a run at the fakes instead of the real exchanges."""
    return {"UPBIT_API_URL": fake_upbit.url, "UPBIT_RATE_LIMIT": "1000", "KIS_API_URL": fake_kis.url,
            "KIS_MASTER_URL": fake_kis.master_url, "KIS_RATE_LIMIT": "1000", "WOMBAT_HTTP_TIMEOUT": "5"}


def base_environment():
    """A minimal environment like the image's: the venv's bin on PATH (where `wombat-collect` is),
    the image user's home, which does not exist (nothing may be written there)."""
    return {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8"}


def run_in_workdir(arguments, env, tmp_path):
    """Run argv in an empty working directory (the image's has no .env); return the CompletedProcess."""
    workdir = tmp_path / "workdir"
    workdir.mkdir(exist_ok=True)
    return subprocess.run(arguments, env=env, cwd=workdir, capture_output=True, text=True, timeout=300)


def compose_environment(database, fake_kis):
    """compose.yaml's environment for the service, its values taken from a test database and FakeKis."""
    parts = psycopg2.extensions.parse_dsn(database)
    actual = {"POSTGRES_SERVER": parts.get("host", "127.0.0.1"), "POSTGRES_PORT": parts.get("port", "5432"),
              "POSTGRES_DB": parts["dbname"], "POSTGRES_USER": parts.get("user", "postgres"),
              "POSTGRES_PASSWORD": parts.get("password", ""), "SENTRY_DSN": "",
              "KIS_APP_KEY": fake_kis.app_key, "KIS_APP_SECRET": fake_kis.app_secret}
    declared = compose_services(COMPOSE)["wombat-collect"]["environment"]
    assert set(declared) == set(actual)
    return actual


def image_runtime_environment(tmp_path):
    """The image's ENV, with its volume path moved to a temporary directory (0700, like the image's)."""
    state = tmp_path / "state-volume"
    state.mkdir(mode=0o700)
    environment = {name: value.replace(STATE_DIR, str(state)) for name, value in image_environment().items()
                   if name != "PATH"}
    return environment


def run_shell(command, env, tmp_path):
    """Run a command line with /bin/sh -c, as supercronic does, in the image's working directory."""
    return run_in_workdir(["/bin/sh", "-c", command], env, tmp_path)


def assert_everything_collected(database, fake_kis, upbit_candles, quote_runs=()):
    assert stored_prices(database, "upbit") == expected_rows(upbit_candles)
    assert stored_prices(database, "kis") == expected_prices(fake_kis, kis_codes(), DATA_START)
    # `--exchange all` runs the exchanges concurrently: their rows come in either order.
    assert sorted(query(database, "SELECT job, exchange, status FROM wombat_collect.collect_run")) == sorted([
        ("prices", "kis", "succeeded"), ("prices", "upbit", "succeeded"), ("prices", "upbit", "succeeded"),
        ("symbols", "kis", "succeeded"), ("symbols", "upbit", "succeeded"), *quote_runs,
    ])


def run_supercronic_jobs(database, fake_upbit, fake_kis, tmp_path, quotes=False):
    """Run crontab/supercronic's daily commands in schedule order (then, if asked, its quotes commands),
    in the image's environment, as supercronic does."""
    crontab_environment, jobs = parse_supercronic()
    env = {**base_environment(), **image_runtime_environment(tmp_path),
           **compose_environment(database, fake_kis), **exchange_environment(fake_upbit, fake_kis),
           **crontab_environment}
    results = []
    quote_jobs = [job for job in jobs if job not in daily_jobs(jobs)] if quotes else []
    for _, command in sorted(daily_jobs(jobs)) + quote_jobs:  # "0 0", "2 0", "5 9": schedule order; then quotes
        results.append((command, run_shell(command, env, tmp_path)))
    return env, results


# --- compose ---------------------------------------------------------------

def compose_services(path):
    return load_yaml(path)["services"]


def merge(base, override):
    """Given two compose mappings, return `override` merged into `base` as Compose merges files.

    Mappings merge key by key; sequences (profiles, ...) are concatenated; scalars are replaced.
    """
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base[key], value) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(override, list):
        return base + [item for item in override if item not in base]
    return override


# --- docs/development.md "Changing the schedule": the container and Kubernetes examples -----

MOVED_JOBS = {**JOBS, "prices --exchange all": "01:30"}  # what every example of docs/development.md does
IMAGE_CRONTAB = "/etc/wombat-collect/crontab"  # where the image's supercronic reads its crontab (CMD)
