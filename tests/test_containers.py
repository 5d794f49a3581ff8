"""The container files: Dockerfile, crontab/supercronic, compose*.yaml and k8s/.

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
from fnmatch import fnmatch
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg2.extensions
import pytest
import yaml

from tests.conftest import query, stored_prices
from tests.fakes.kis_server import FakeKis
from tests.fakes.upbit_server import default_market_row, make_upbit_candles
from tests.kis_support import MASTERS, expected_prices, install_masters
from tests.ops_support import DEVELOPMENT_DOC, document_code_blocks, document_section, read_crontab
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


def pod_spec(cronjob):
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def container(cronjob):
    [only] = pod_spec(cronjob)["containers"]
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


@pytest.fixture
def fake_kis():
    with FakeKis(rate_limit=None, token_throttle_seconds=None) as server:
        install_masters(server)
        from tests.fakes.kis_server import make_kis_rows

        for code in kis_codes():
            server.set_prices(code, make_kis_rows(code, DATA_START, DATA_END))
        yield server


def kis_codes():
    return sorted(code for rows in MASTERS.values() for code, _, _, _ in rows)


@pytest.fixture
def upbit_candles(fake_upbit):
    """Two markets with closed candles from DATA_START to DATA_END."""
    candles = {market: make_upbit_candles(market, DATA_START, DATA_END) for market in ("KRW-BTC", "KRW-ETH")}
    fake_upbit.set_markets([default_market_row(market) for market in candles])
    for market, rows in candles.items():
        fake_upbit.set_candles(market, rows)
    return candles


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


# --- Dockerfile ----------------------------------------------------------

def test_dockerfile_passes_hadolint():
    result = subprocess.run([linter("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=120)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_dockerfile_ignores_only_with_a_reason():
    lines = DOCKERFILE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            reason = line.split("hadolint ignore=", 1)[1].split(None, 1)[1:] or [lines[number - 1]]
            assert reason[0].strip("# ").strip(), f"line {number + 1}: an ignore without a reason"
    assert not (REPOSITORY / ".hadolint.yaml").exists(), "rules are ignored in the Dockerfile, with reasons"


def test_dockerfile_pins_an_official_slim_python_minor():
    bases = [arguments.split()[0] for keyword, arguments in dockerfile_instructions() if keyword == "FROM"]
    assert bases and all(re.fullmatch(r"python:3\.\d+-slim(-\w+)?", base) for base in bases), bases
    assert len(set(bases)) == 1, "every stage on the same base"


def test_dockerfile_installs_from_the_context_without_pip_cache():
    installs = [arguments for keyword, arguments in dockerfile_instructions()
                if keyword == "RUN" and "pip install" in arguments]
    assert installs and all("--no-cache-dir" in install for install in installs)
    assert any("'.[sentry]'" in install for install in installs)


def test_dockerfile_runs_as_a_numeric_non_root_user():
    stage = final_stage(dockerfile_instructions())
    [user] = [arguments for keyword, arguments in stage if keyword == "USER"]
    resolved = re.sub(r"\$\{(\w+)\}", lambda match: stage_arguments(stage)[match.group(1)], user)
    uid, _, gid = resolved.partition(":")
    assert uid.isdigit() and int(uid) >= 1000 and gid.isdigit(), resolved
    # The volume directory belongs to that user, mode 0700.
    assert any(keyword == "RUN" and "install -d -m 0700" in arguments and STATE_DIR in arguments
               for keyword, arguments in stage)


def test_dockerfile_sets_environment_for_the_jobs():
    environment = image_environment()
    assert environment["PYTHONUNBUFFERED"] == "1"
    assert environment["TZ"] == "Asia/Seoul"
    assert environment["WOMBAT_STATE_DIR"] == STATE_DIR
    assert environment["WOMBAT_LOCK_DIR"] == STATE_DIR
    assert environment["PATH"].startswith("/opt/wombat-collect/bin:")


def test_dockerfile_pins_supercronic_by_sha1_and_tests_the_crontab():
    instructions = dockerfile_instructions()
    arguments = {}
    for keyword, text in instructions:
        if keyword == "ARG" and "=" in text:
            name, _, value = text.partition("=")
            arguments[name] = value
    assert arguments["SUPERCRONIC_VERSION"] == SUPERCRONIC_VERSION
    assert arguments["SUPERCRONIC_SHA1_AMD64"] == SUPERCRONIC_AMD64_SHA1
    # sha1sum -c wants two spaces between the sum and the name.
    assert 'echo "${SUPERCRONIC_SHA1_AMD64}  /supercronic" | sha1sum -c -' in DOCKERFILE.read_text(encoding="utf-8")
    stage = final_stage(instructions)
    assert ("COPY", "crontab/supercronic /etc/wombat-collect/crontab") in stage
    assert ("RUN", "supercronic -test /etc/wombat-collect/crontab") in stage
    assert ("CMD", '["supercronic", "-passthrough-logs", "/etc/wombat-collect/crontab"]') in stage
    assert not [keyword for keyword, _ in stage if keyword == "ENTRYPOINT"], \
        "no ENTRYPOINT: `docker run IMAGE wombat-collect ...` replaces the command"


def test_dockerfile_healthcheck_does_not_hammer_the_database():
    options = healthcheck_options()
    assert duration_seconds(options["interval"]) >= 5 * 60
    assert duration_seconds(options["timeout"]) >= 30
    # Docker reserves exit code 2; status exits 2 when critical.
    assert healthcheck_command()[-1].endswith("|| exit 1")


def dockerignore_includes(relative_path):
    """Return whether .dockerignore lets `relative_path` into the build context (last match wins)."""
    included = True
    for raw_line in (REPOSITORY / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/").removeprefix("**/")
        parts = Path(relative_path).parts
        prefixes = ["/".join(parts[:count]) for count in range(1, len(parts) + 1)]
        if any(fnmatch(prefix, pattern) for prefix in prefixes) or fnmatch(Path(relative_path).name, pattern):
            included = negated
    return included


def test_dockerignore_sends_what_the_image_copies_and_nothing_else():
    sources = [arguments.split()[:-1] for keyword, arguments in dockerfile_instructions()
               if keyword == "COPY" and not arguments.startswith("--from")]
    for source in (path for group in sources for path in group):
        assert dockerignore_includes(source.rstrip("/") + ("/cli.py" if source.startswith("wombat_collect") else ""))
    for private in (".venv/bin/python", ".git/config", "tests/test_cli.py", ".env", "k8s/cronjob-prices.yaml"):
        assert not dockerignore_includes(private), private


# --- crontab/supercronic ---------------------------------------------------

def test_supercronic_crontab_runs_the_three_jobs_in_korean_time():
    environment, jobs = parse_supercronic()
    assert environment == {"CRON_TZ": "Asia/Seoul"}
    assert sorted(command_arguments(command) for _, command in daily_jobs(jobs)) == sorted(JOBS)
    for schedule, command in daily_jobs(jobs):
        hour, minute = JOBS[command_arguments(command)].split(":")
        assert schedule == f"{int(minute)} {int(hour)} * * *"


def test_supercronic_quotes_run_every_minute_upbit_and_during_krx_sessions_kis():
    _, jobs = parse_supercronic()
    week = (datetime(2025, 3, 3, tzinfo=SEOUL), datetime(2025, 3, 10, tzinfo=SEOUL))  # Monday to Monday
    fired = {arguments: [] for arguments in QUOTES}
    for schedule, command in jobs:
        if command_arguments(command) in QUOTES:
            fired[command_arguments(command)] += cron_instants(schedule, "Asia/Seoul", *week)
    assert len(fired["quotes --exchange upbit"]) == len(set(fired["quotes --exchange upbit"])) == 7 * 24 * 60
    kis = sorted(moment.astimezone(SEOUL) for moment in fired["quotes --exchange kis"])
    session = [(hour, minute) for hour in range(8, 19) for minute in range(60) if (8, 30) <= (hour, minute) <= (18, 0)]
    assert [(moment.weekday(), moment.hour, moment.minute) for moment in kis] == [
        (day, hour, minute) for day in range(5) for hour, minute in session]


@pytest.mark.parametrize("host_zone", HOST_ZONES)
def test_schedules_fire_the_same_commands_at_the_same_instants(host_zone):
    expected = expected_firings()
    assert len(expected) == 3 * 365
    assert supercronic_firings(host_zone) == expected
    assert systemd_firings(host_zone) == expected
    assert crond_firings(host_zone) == expected
    assert cronjob_firings(host_zone) == expected


@pytest.mark.parametrize("host_zone", QUOTES_HOST_ZONES)
def test_schedules_fire_the_same_quotes_at_the_same_instants(host_zone):
    expected = expected_quotes_firings()
    # 21 days of Upbit minutes; 15 weekdays of KIS minutes 08:30-08:59, 09:00-17:59 and 18:00.
    assert len(expected) == 21 * 24 * 60 + 15 * (30 + 9 * 60 + 1)
    window = (QUOTES_START, QUOTES_END)
    assert supercronic_firings(host_zone, select=quote_jobs, window=window) == expected
    assert systemd_quotes_firings(host_zone) == expected
    assert crond_quotes_firings(host_zone) == expected
    assert cronjob_firings(host_zone, wanted=QUOTES, window=window) == expected


def test_schedule_comparison_catches_a_missing_zone(tmp_path):
    # Without CRON_TZ and without the image's TZ, supercronic would read the
    # times in UTC: 9 hours late, which the comparison must see.
    bare = tmp_path / "supercronic"
    bare.write_text(SUPERCRONIC_CRONTAB.read_text(encoding="utf-8").replace("CRON_TZ=Asia/Seoul\n", ""))
    firings = supercronic_firings("UTC", crontab=bare, image_zone={"TZ": ""})
    assert firings != expected_firings()
    assert {moment.strftime("%H:%M") for moment, _ in firings} == {"00:00", "00:02", "09:05"}


def test_supercronic_commands_collect_everything_in_the_image_environment(
        database, fake_upbit, upbit_candles, fake_kis, tmp_path):
    env, results = run_supercronic_jobs(database, fake_upbit, fake_kis, tmp_path, quotes=True)
    assert [(command, result.returncode) for command, result in results] == [
        ("wombat-collect symbols --exchange all", 0), ("wombat-collect prices --exchange all", 0),
        ("wombat-collect prices --exchange upbit", 0), ("wombat-collect quotes --exchange upbit", 0)] + [
        ("wombat-collect quotes --exchange kis", 0)] * 3, [result.stderr[-2000:] for _, result in results]
    assert_everything_collected(database, fake_kis, upbit_candles,
                                [("quotes", "upbit", "succeeded")] + [("quotes", "kis", "succeeded")] * 3)
    assert query(database, "SELECT e.code, count(*) FROM realtime_prices r JOIN symbol s ON s.id = r.symbol_id"
                           " JOIN exchange e ON e.id = s.exchange_id GROUP BY 1 ORDER BY 1") == [
        ("kis", len(kis_codes())), ("upbit", len(upbit_candles))]
    # The KIS token cache and the locks are in the volume.
    state = Path(env["WOMBAT_STATE_DIR"])
    assert len(list((state / "kis-tokens").glob("*.json"))) == 1
    assert {path.name for path in state.glob("*.lock")} >= {"wombat-collect-prices-kis.lock"}


def test_healthcheck_command_is_healthy_when_fresh_and_unhealthy_when_stale(
        database, fake_upbit, upbit_candles, fake_kis, tmp_path):
    command = healthcheck_command()
    assert command[:2] == ["/bin/sh", "-c"]
    env, results = run_supercronic_jobs(database, fake_upbit, fake_kis, tmp_path)
    assert [result.returncode for _, result in results] == [0, 0, 0]
    fresh = run_in_workdir(command, env, tmp_path)
    assert (fresh.returncode, fresh.stdout.splitlines()[0]) == (0, "WOMBAT-COLLECT OK"), fresh.stderr
    query(database, "UPDATE wombat_collect.collect_run SET started_at = started_at - interval '30 hours',"
                    " finished_at = finished_at - interval '30 hours' RETURNING id")
    stale = run_in_workdir(command, env, tmp_path)
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert stale.stdout.startswith("WOMBAT-COLLECT CRITICAL")


def test_healthcheck_command_is_unhealthy_without_a_database(tmp_path):
    env = {**base_environment(), **image_runtime_environment(tmp_path),
           "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"}
    result = run_in_workdir(healthcheck_command(), env, tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr


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


def undefined_dependencies(project):
    """Given a merged compose mapping, return the (service, dependency) pairs naming no service."""
    services = project["services"]
    return [(name, dependency) for name, service in services.items() if not service.get("profiles")
            for dependency in service.get("depends_on", {}) if dependency not in services]


def test_compose_files_validate_against_the_compose_spec():
    result = subprocess.run([linter("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                             str(COMPOSE), str(COMPOSE_STANDALONE), str(COMPOSE_BACKEND)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_service_is_a_drop_in_for_the_scheduler_engine():
    services = compose_services(COMPOSE)
    service = services["wombat-collect"]
    assert set(service["environment"]) == BACKEND_VARIABLES
    assert service["environment"]["POSTGRES_SERVER"] == "db"
    assert service["depends_on"]["db"] == {"condition": "service_healthy", "restart": True}
    assert service["depends_on"]["wombat-collect-init"] == {"condition": "service_completed_successfully"}
    assert service["restart"] in ("always", "unless-stopped")
    assert "command" not in service, "the image's command: supercronic"
    # A daily run takes minutes; supercronic waits for it on SIGTERM.
    assert duration_seconds(service["stop_grace_period"]) >= 5 * 60
    init = services["wombat-collect-init"]
    assert init["command"] == ["wombat-collect", "db", "init"]
    assert init["environment"] == service["environment"]
    assert init["depends_on"]["db"]["condition"] == "service_healthy"


def test_compose_state_volume_holds_the_image_state_and_lock_directories():
    project = load_yaml(COMPOSE)
    mounts = dict(mount.split(":", 1)[::-1] for mount in project["services"]["wombat-collect"]["volumes"])
    environment = image_environment()
    assert mounts[environment["WOMBAT_STATE_DIR"]] == "wombat-collect-state"
    assert mounts[environment["WOMBAT_LOCK_DIR"]] == "wombat-collect-state"
    assert "wombat-collect-state" in project["volumes"]


def test_compose_standalone_defines_a_healthy_database():
    project = merge(load_yaml(COMPOSE), load_yaml(COMPOSE_STANDALONE))
    assert undefined_dependencies(project) == []
    database = project["services"]["db"]
    assert "pg_isready" in " ".join(database["healthcheck"]["test"])
    assert "profiles" not in database, "`docker compose up` starts it"


def test_compose_merged_into_the_backend_replaces_its_scheduler():
    project = merge(merge(BACKEND_COMPOSE, load_yaml(COMPOSE)), load_yaml(COMPOSE_BACKEND))
    assert undefined_dependencies(project) == []
    assert project["services"]["db"] == BACKEND_COMPOSE["services"]["db"], "the backend's own db"
    assert project["services"]["scheduler-engine"]["profiles"] == ["backend-scheduler"]
    assert project["services"]["wombat-collect-init"]["depends_on"]["prestart"] == {
        "condition": "service_completed_successfully"}
    # Without the helper file, the two schedulers would both run.
    assert "profiles" not in merge(BACKEND_COMPOSE, load_yaml(COMPOSE))["services"]["scheduler-engine"]


# --- Kubernetes ------------------------------------------------------------

@pytest.mark.parametrize("version", ["1.27.0", "1.37.0"])
def test_k8s_manifests_validate_strictly(version):
    manifests = [str(path) for path in sorted(K8S.glob("*.yaml")) if path.name != "kustomization.yaml"]
    result = subprocess.run([linter("kubernetes-validate"), "--strict", "--quiet", "-k", version, *manifests],
                            capture_output=True, text=True, timeout=300)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_k8s_kustomization_lists_every_manifest():
    kustomization = load_yaml(K8S / "kustomization.yaml")
    listed = sorted(kustomization["resources"])
    assert listed == sorted(path.name for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")
    assert [image["name"] for image in kustomization["images"]] == ["wombat-collect"]


@pytest.mark.parametrize("path", CRONJOBS, ids=lambda path: path.stem)
def test_cronjob_runs_once_at_a_time_with_bounded_retries(path):
    cronjob = load_yaml(path)
    spec = cronjob["spec"]
    assert (cronjob["apiVersion"], cronjob["kind"]) == ("batch/v1", "CronJob")
    assert spec["timeZone"] == "Asia/Seoul"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] >= 10
    assert 1 <= spec["successfulJobsHistoryLimit"] <= 5 and 1 <= spec["failedJobsHistoryLimit"] <= 5
    job = spec["jobTemplate"]["spec"]
    assert 0 <= job["backoffLimit"] <= 3
    assert 0 < job["activeDeadlineSeconds"] <= 2 * 3600
    assert pod_spec(cronjob)["restartPolicy"] == "Never"


@pytest.mark.parametrize("path", CRONJOBS, ids=lambda path: path.stem)
def test_cronjob_pod_is_locked_down(path):
    cronjob = load_yaml(path)
    pod = pod_spec(cronjob)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] >= 1000
    assert pod["automountServiceAccountToken"] is False
    for each in [container(cronjob), *pod["initContainers"]]:
        context = each["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}


@pytest.mark.parametrize("path", CRONJOBS, ids=lambda path: path.stem)
def test_cronjob_writes_only_to_mounted_volumes(path):
    cronjob = load_yaml(path)
    env = {variable["name"]: variable.get("value") for variable in container(cronjob)["env"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container(cronjob)["volumeMounts"]}
    for path in (env["WOMBAT_STATE_DIR"], env["WOMBAT_LOCK_DIR"], "/tmp"):  # noqa: S108 - a mount path
        assert moved(path, {mount: "volume" for mount in mounts}).startswith("volume"), path
    # The lock directory is made 0700 by an init container on the same volume.
    [init] = pod_spec(cronjob)["initContainers"]
    assert init["command"] == ["mkdir", "-m", "0700", env["WOMBAT_LOCK_DIR"]]
    assert {mount["name"] for mount in init["volumeMounts"]} <= set(mounts.values())
    volumes = {volume["name"] for volume in pod_spec(cronjob)["volumes"]}
    assert {mount["name"] for mount in container(cronjob)["volumeMounts"]} == volumes


@pytest.mark.parametrize("path", CRONJOBS, ids=lambda path: path.stem)
def test_cronjob_takes_secrets_from_a_secret(path):
    variables = {variable["name"]: variable for variable in container(load_yaml(path))["env"]}
    for name in ("DATABASE_URL", "KIS_APP_KEY", "KIS_APP_SECRET", "SENTRY_DSN"):
        assert variables[name]["valueFrom"]["secretKeyRef"] == {
            "name": "wombat-collect", "key": name, **({} if name == "DATABASE_URL" else {"optional": True})}
        assert "value" not in variables[name]


@pytest.mark.parametrize("path", CRONJOBS, ids=lambda path: path.stem)
def test_cronjob_resources_cover_the_measured_peak(path):
    resources = container(load_yaml(path))["resources"]

    def mebibytes(text):
        number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", text).groups()
        return int(number) * (1024 if unit == "Gi" else 1)

    assert mebibytes(resources["requests"]["memory"]) >= 1.5 * MEASURED_DAILY_PEAK_MIB
    assert mebibytes(resources["limits"]["memory"]) >= 2 * MEASURED_BACKFILL_PEAK_MIB
    assert "cpu" not in resources["limits"], "a CPU limit only throttles a rate-limited job"


def test_cronjob_for_kis_keeps_its_state_on_the_claim():
    claims = {}
    for cronjob in cronjobs():
        state = {volume["name"]: volume for volume in pod_spec(cronjob)["volumes"]}["state"]
        claims[cronjob["metadata"]["name"]] = state.get("persistentVolumeClaim", {}).get("claimName")
    # The jobs that call KIS's price APIs share the token cache; the others need no token.
    assert claims == {"wombat-collect-symbols": None, "wombat-collect-prices": "wombat-collect-state",
                      "wombat-collect-prices-upbit": None, "wombat-collect-quotes-upbit": None,
                      "wombat-collect-quotes-kis-0830": "wombat-collect-state",
                      "wombat-collect-quotes-kis-0900": "wombat-collect-state",
                      "wombat-collect-quotes-kis-1800": "wombat-collect-state"}
    assert load_yaml(K8S / "pvc-state.yaml")["metadata"]["name"] == "wombat-collect-state"


def test_cronjob_for_quotes_skips_a_missed_minute_instead_of_running_it_late():
    quotes = [cronjob for cronjob in cronjobs() if cronjob_arguments(cronjob) in QUOTES]
    assert sorted(cronjob_arguments(cronjob) for cronjob in quotes) == [
        "quotes --exchange kis"] * 3 + ["quotes --exchange upbit"]
    for cronjob in quotes:
        # Started within half a minute or not at all; no retry; stopped before it could overlap two slots.
        assert cronjob["spec"]["startingDeadlineSeconds"] <= 30
        assert cronjob["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 0
        assert cronjob["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] <= 120


def moved(value, mounts):
    """Given a path in the pod and {mountPath: directory}, return the same path under the directory."""
    for mount_path, directory in mounts.items():
        if value == mount_path or value.startswith(mount_path + "/"):
            return directory + value[len(mount_path):]
    return value


def cronjob_environment(cronjob, database, fake_kis, mounts):
    """Given a CronJob, return its container's env with the Secret's values and the mount paths moved."""
    secret = {"DATABASE_URL": database, "KIS_APP_KEY": fake_kis.app_key, "KIS_APP_SECRET": fake_kis.app_secret}
    env = {}
    for variable in container(cronjob)["env"]:
        if "valueFrom" in variable:
            key = variable["valueFrom"]["secretKeyRef"]["key"]
            if key in secret:
                env[variable["name"]] = secret[key]
        else:
            env[variable["name"]] = moved(variable["value"], mounts)
    return env


def pod_volumes(cronjob, tmp_path, claim):
    """Given a CronJob, return {volume name: directory} for a new pod: the claim, or new emptyDirs (0777, as
    the kubelet makes them)."""
    pod = tmp_path / f"pod-{len(list(tmp_path.glob('pod-*')))}"
    directories = {}
    for volume in pod_spec(cronjob)["volumes"]:
        if "persistentVolumeClaim" in volume:
            directories[volume["name"]] = str(claim)
            continue
        assert "emptyDir" in volume, volume
        directory = pod / volume["name"]
        directory.mkdir(parents=True)
        directory.chmod(0o777)
        directories[volume["name"]] = str(directory)
    return directories


def run_cronjob(cronjob, database, fake_upbit, fake_kis, tmp_path, claim):
    """Run a CronJob's init containers, then its container (argv, no shell, as the kubelet does), in a new pod's
    volumes. Return the container's CompletedProcess."""
    volumes = pod_volumes(cronjob, tmp_path, claim)
    for init in pod_spec(cronjob).get("initContainers", []):
        mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in init["volumeMounts"]}
        result = run_in_workdir([moved(argument, mounts) for argument in init["command"]], base_environment(),
                                tmp_path)
        assert result.returncode == 0, result.stderr
    mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in container(cronjob)["volumeMounts"]}
    env = {**base_environment(), "TZ": "Asia/Seoul",
           **cronjob_environment(cronjob, database, fake_kis, mounts), **exchange_environment(fake_upbit, fake_kis)}
    return run_in_workdir(container(cronjob)["command"], env, tmp_path)


def test_cronjob_commands_collect_everything(database, fake_upbit, upbit_candles, fake_kis, tmp_path):
    claim = tmp_path / "claim"
    claim.mkdir()
    daily = sorted((cronjob for cronjob in cronjobs() if cronjob_arguments(cronjob) in JOBS),
                   key=lambda cronjob: cronjob["spec"]["schedule"])  # "0 0", "2 0", "5 9"
    quotes = sorted((cronjob for cronjob in cronjobs() if cronjob_arguments(cronjob) in QUOTES),
                    key=lambda cronjob: cronjob["metadata"]["name"])
    results = [(cronjob["metadata"]["name"], run_cronjob(cronjob, database, fake_upbit, fake_kis, tmp_path, claim))
               for cronjob in daily + quotes]
    assert [(name, result.returncode) for name, result in results] == [
        ("wombat-collect-symbols", 0), ("wombat-collect-prices", 0), ("wombat-collect-prices-upbit", 0),
        ("wombat-collect-quotes-kis-0830", 0), ("wombat-collect-quotes-kis-0900", 0),
        ("wombat-collect-quotes-kis-1800", 0), ("wombat-collect-quotes-upbit", 0),
    ], [result.stderr[-2000:] for _, result in results]
    assert_everything_collected(database, fake_kis, upbit_candles,
                                [("quotes", "kis", "succeeded")] * 3 + [("quotes", "upbit", "succeeded")])
    assert query(database, "SELECT e.code, count(*) FROM realtime_prices r JOIN symbol s ON s.id = r.symbol_id"
                           " JOIN exchange e ON e.id = s.exchange_id GROUP BY 1 ORDER BY 1") == [
        ("kis", len(kis_codes())), ("upbit", len(upbit_candles))]
    # The KIS quotes pods reused the token the prices pod cached on the claim.
    assert fake_kis.tokens_issued == 1


def test_cronjob_prices_pods_share_one_kis_token_through_the_claim(database, fake_upbit, upbit_candles, fake_kis,
                                                                    tmp_path):
    [prices] = [cronjob for cronjob in cronjobs() if container(cronjob)["command"][1:] == ["prices", "--exchange",
                                                                                          "all"]]
    claim = tmp_path / "claim"
    claim.mkdir()
    first = run_cronjob(prices, database, fake_upbit, fake_kis, tmp_path, claim)
    second = run_cronjob(prices, database, fake_upbit, fake_kis, tmp_path, claim)
    assert (first.returncode, second.returncode) == (0, 0), first.stderr[-2000:] + second.stderr[-2000:]
    assert fake_kis.tokens_issued == 1
    # A pod whose state is an emptyDir would issue another one.
    other_claim = tmp_path / "other-claim"
    other_claim.mkdir()
    assert run_cronjob(prices, database, fake_upbit, fake_kis, tmp_path, other_claim).returncode == 0
    assert fake_kis.tokens_issued == 2


# --- docs/development.md "Changing the schedule": the container and Kubernetes examples -----

MOVED_JOBS = {**JOBS, "prices --exchange all": "01:30"}  # what every example of docs/development.md does
IMAGE_CRONTAB = "/etc/wombat-collect/crontab"  # where the image's supercronic reads its crontab (CMD)


def test_readme_container_crontab_line_moves_prices_to_0130(tmp_path):
    [line] = document_code_blocks(DEVELOPMENT_DOC, "Container crontab: a Compose override", "crontab")
    [(schedule, command)] = [(job["schedule"], job["command"])
                             for job in read_crontab_text(tmp_path / "line", line, with_user=False)]
    original = SUPERCRONIC_CRONTAB.read_text(encoding="utf-8").splitlines()
    wanted = f"wombat-collect {command_arguments(command)}"
    [prices] = [number for number, text in enumerate(original) if text.endswith(wanted)]
    changed = tmp_path / "supercronic.local"
    changed.write_text("\n".join(original[:prices] + [line.strip()] + original[prices + 1:]) + "\n", encoding="utf-8")
    for host_zone in ("UTC", "America/New_York"):  # croniter, in CRON_TZ
        assert supercronic_firings(host_zone, crontab=changed) == expected_firings(MOVED_JOBS)


def test_readme_compose_override_mounts_the_changed_crontab_where_supercronic_reads_it():
    [override] = [yaml.safe_load(block) for block in document_code_blocks(DEVELOPMENT_DOC,
                                                                         "Container crontab: a Compose override",
                                                                         "yaml")]
    [commands] = document_code_blocks(DEVELOPMENT_DOC, "Container crontab: a Compose override", "sh")
    project = merge(load_yaml(COMPOSE), override)
    mounts = project["services"]["wombat-collect"]["volumes"]
    [added] = [mount for mount in mounts if mount not in load_yaml(COMPOSE)["services"]["wombat-collect"]["volumes"]]
    source, target, mode = added.split(":")
    assert (target, mode) == (IMAGE_CRONTAB, "ro")
    assert ("CMD", f'["supercronic", "-passthrough-logs", "{IMAGE_CRONTAB}"]') in final_stage(dockerfile_instructions())
    assert f"cp crontab/supercronic {source}" in commands
    assert f"$PWD/{source.removeprefix('./')}:{IMAGE_CRONTAB}:ro" in commands  # the same file is tested first
    assert "-f compose.yaml -f compose.override.yaml -f compose.schedule.yaml up -d" in commands
    assert "`compose.schedule.yaml`:" in document_section(DEVELOPMENT_DOC, "Container crontab: a Compose override")
    state = [mount for mount in mounts if mount.startswith("wombat-collect-state:")]
    assert state == [f"wombat-collect-state:{STATE_DIR}"], "the state volume stays mounted"


def test_readme_kubectl_patch_moves_the_prices_cronjob_to_0130():
    [block] = document_code_blocks(DEVELOPMENT_DOC, "Kubernetes: kubectl patch", "sh")
    words = shlex.split(block)
    assert words[:3] == ["kubectl", "patch", "cronjob"] and "--type=merge" in words
    patch = json.loads(words[words.index("-p") + 1])
    [manifest] = [cronjob for cronjob in cronjobs() if cronjob["metadata"]["name"] == words[3]]
    patched = merge(manifest, patch)
    assert cronjob_arguments(patched) == "prices --exchange all"
    moved = {(moment, "prices --exchange all") for moment in
             cron_instants(patched["spec"]["schedule"], patched["spec"]["timeZone"])}
    assert moved == {firing for firing in expected_firings(MOVED_JOBS) if firing[1] == "prices --exchange all"}


def read_crontab_text(path, text, with_user):
    """Given a scratch path and crontab lines, return their jobs as read_crontab reads them."""
    path.write_text(text, encoding="utf-8")
    return read_crontab(path, with_user)[1]

