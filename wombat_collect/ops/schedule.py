"""The installed schedule: each wombat-collect job's next run, from the systemd timers or the cron.d file.

Read-only. The systemd timers are read through `systemctl` (`list-timers` for
the wombat-collect timers, `show` for their OnCalendar= expressions and their
services' ExecStart=, drop-ins applied), and their next elapse is systemd's own
arithmetic (`systemd-analyze calendar --base-time`). The cron.d file is parsed
here: the five time fields (read in the host's zone, as Debian's cron does) and
the `TZ=Asia/Seoul date` guards in front of each command. The schedule decides
when; nothing here knows a job's time of day.
"""

import os
import re
import shlex
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from wombat_collect.errors import ConfigError, WombatError
from wombat_collect.ops import systemd

SEOUL = ZoneInfo("Asia/Seoul")
TIMER_PATTERN = "wombat-collect-*"
DEFAULT_CRONTAB = "/etc/cron.d/wombat-collect"
SYSTEMD_BOOTED_MARKER = "/run/systemd/system"  # exists when systemd is PID 1 (sd_booted)
CRON_HORIZON = timedelta(days=8)  # a weekday schedule's next run is always within this
EXECUTABLE_NAME = "wombat-collect"
FIELD_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))  # minute, hour, day of month, month, day of week
FIELD_NAMES = {3: ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
               4: ("sun", "mon", "tue", "wed", "thu", "fri", "sat")}
GUARD = re.compile(r'\[ "\$\(TZ=(?P<zone>[^\s)]+) date \+(?P<format>[^)\s]+)\)" '
                   r'(?P<operator>=|!=|-eq|-ne|-lt|-le|-gt|-ge) (?P<value>\S+) \] && ')
COMPARISONS = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b,
               "-eq": lambda a, b: int(a) == int(b), "-ne": lambda a, b: int(a) != int(b),
               "-lt": lambda a, b: int(a) < int(b), "-le": lambda a, b: int(a) <= int(b),
               "-gt": lambda a, b: int(a) > int(b), "-ge": lambda a, b: int(a) >= int(b)}
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\s*=.*")


class ScheduleUnavailable(WombatError):
    """No schedule could be read: neither systemd timers nor the cron.d file."""


@dataclass(frozen=True)
class Entry:
    """One scheduled job: its CLI arguments, where it is scheduled, and its next run (aware UTC, or None)."""

    job: str
    origin: str
    next_run: datetime | None
    note: str = ""


@dataclass(frozen=True)
class Schedule:
    """What `wombat-collect schedule` shows: where it was read, the reference time, the entries."""

    source: str
    now: datetime
    entries: list


@dataclass(frozen=True)
class CronLine:
    """One job line of a cron.d file: its five time fields (sets of numbers), whether a day matches by
    day of month OR day of week (both restricted), its guards ((zone, format, operator, value), ...), its job."""

    number: int
    fields: tuple
    either_day: bool
    guards: tuple
    job: str


def systemd_available(marker=SYSTEMD_BOOTED_MARKER):
    """Return whether systemd runs this host (booted with it) and `systemctl` is on the PATH."""
    return os.path.isdir(marker) and shutil.which(systemd.SYSTEMCTL) is not None


def read_schedule(source, crontab, now):
    """Given the source (auto, systemd or cron), the cron.d path and an aware reference time, return a Schedule.

    auto reads the systemd timers when systemd runs the host and has wombat-collect
    timers, else the cron.d file. Raise ConfigError if the chosen source cannot be
    read, ScheduleUnavailable if auto finds neither.
    """
    if source == "systemd" or (source == "auto" and systemd_available()):
        timers = systemd.list_timers(f"{TIMER_PATTERN}.timer")
        if timers or source == "systemd":
            return Schedule("systemd timers (systemctl)", now, timer_entries(timers, now))
    if not os.path.exists(crontab):
        if source == "cron":
            raise ConfigError(f"no cron.d file at {crontab} (set --crontab or WOMBAT_CRONTAB)")
        raise ScheduleUnavailable(f"no wombat-collect schedule installed: no systemd timers {TIMER_PATTERN}.timer "
                                  f"and no cron.d file at {crontab}")
    return Schedule(f"cron.d file {crontab}", now, cron_entries(crontab, now))


# --- systemd ---------------------------------------------------------------

def timer_entries(timers, now):
    """Given [(timer, unit)], return an Entry per timer: its service's job and its next OnCalendar elapse."""
    if not timers:
        return []
    calendars = systemd.show([timer for timer, _ in timers], ["TimersCalendar", "ActiveState"])
    services = systemd.show([unit for _, unit in timers], ["ExecStart"])
    entries = []
    for timer, unit in timers:
        shown = calendars.get(timer, {})
        expressions = [match.group(1) for value in shown.get("TimersCalendar", [])
                       for match in [re.search(r"OnCalendar=(.*?) ; next_elapse=", value)] if match]
        state = (shown.get("ActiveState") or ["unknown"])[0]
        note = "" if state == "active" else f"timer {state}: it fires only when started (systemctl enable --now)"
        job = service_job(services.get(unit, {}).get("ExecStart", []), unit)
        entries.append(Entry(job, timer, next_elapse(expressions, now), note))
    return entries


def service_job(exec_starts, unit):
    """Given a service's ExecStart= values as `systemctl show` prints them, return the wombat-collect arguments."""
    for value in exec_starts:
        match = re.search(r"argv\[\]=(.*?) ;", value)
        if match:
            instance = unit.partition("@")[2].removesuffix(".service")
            return job_arguments(match.group(1).replace("%i", instance)) or f"(runs {match.group(1)})"
    return f"(no ExecStart= in {unit})"


def next_elapse(expressions, now):
    """Given OnCalendar= expressions and an aware time, return the first elapse after it (UTC), or None.

    Computed by `systemd-analyze calendar --base-time` in UTC, so systemd's own
    calendar arithmetic decides.
    """
    if not expressions:
        return None
    output = systemd.run(["systemd-analyze", "calendar", "--iterations=1", f"--base-time=@{int(now.timestamp())}",
                          *expressions], env={**os.environ, "TZ": "UTC"})
    stamps = re.findall(r"Next elapse: \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", output)
    moments = [datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc) for stamp in stamps]
    return min(moments, default=None)


# --- cron.d ----------------------------------------------------------------

def cron_entries(path, now):
    """Given a cron.d file and an aware time, return an Entry per wombat-collect line with its next run."""
    with open(path, encoding="utf-8") as stream:
        lines = parse_cron_file(stream.read(), path)
    return [Entry(line.job, f"{path} line {line.number}", next_cron_run(line, now)) for line in lines]


def parse_cron_file(text, path):
    """Given a cron.d file's text, return a CronLine per line that runs wombat-collect.

    Raise ConfigError naming the line if its fields or guards cannot be read.
    """
    lines = []
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#") or ASSIGNMENT.fullmatch(line):
            continue
        words = line.split(None, 6)
        if len(words) < 7:
            raise ConfigError(f"{path} line {number}: not five time fields, a user and a command")
        fields = tuple(field_values(word, index, path, number) for index, word in enumerate(words[:5]))
        guards, command = split_guards(words[6])
        job = job_arguments(command.replace("\\%", "%"))
        if job:
            either_day = not (words[2].startswith("*") or words[4].startswith("*"))
            lines.append(CronLine(number, fields, either_day, guards, job))
    return lines


def field_values(text, index, path, number):
    """Given one cron time field and its position, return the set of numbers it matches.

    Raise ConfigError if it is not `*`, numbers, names, ranges, steps or lists of them.
    """
    low, high = FIELD_BOUNDS[index]
    names = FIELD_NAMES.get(index, ())
    matched = set()
    for part in text.lower().split(","):
        span, _, step = part.partition("/")
        ends = [low, high] if span == "*" else span.split("-")
        try:
            first, last = (names.index(end) + (index == 3) if end in names else int(end) for end in
                           (ends if len(ends) == 2 else ends * 2))
            matched.update(range(first, last + 1, int(step) if step else 1))
        except ValueError:
            raise ConfigError(f"{path} line {number}: cannot read the time field {text!r}") from None
    if not matched or min(matched) < low or max(matched) > high:
        raise ConfigError(f"{path} line {number}: the time field {text!r} is out of range")
    return {value % 7 for value in matched} if index == 4 else matched


def split_guards(command):
    """Given a cron command, return ((zone, format, operator, value) per leading date guard, the rest)."""
    guards = []
    while match := GUARD.match(command):
        guards.append((match["zone"], match["format"].replace("\\%", "%"), match["operator"], match["value"]))
        command = command[match.end():]
    return tuple(guards), command


def job_arguments(command):
    """Given a command line, return the arguments after the wombat-collect executable (up to a redirection),
    or "" if it does not run wombat-collect."""
    try:
        words = shlex.split(command)
    except ValueError:
        return ""
    if not words or os.path.basename(words[0]) != EXECUTABLE_NAME:
        return ""
    arguments = []
    for word in words[1:]:
        if re.match(r"\d*[<>&|;]", word):
            break
        arguments.append(word)
    return " ".join(arguments)


def cron_fires(line, moment):
    """Given a CronLine and an aware minute, return whether cron starts it then and its guards let it run.

    The time fields are read on the host's clock (the process's local zone);
    day of month and day of week match either when both are restricted (cron's rule).
    """
    minutes, hours, days, months, weekdays = line.fields
    local = moment.astimezone()
    day_matches, weekday_matches = local.day in days, local.isoweekday() % 7 in weekdays
    calendar = (day_matches or weekday_matches) if line.either_day else (day_matches and weekday_matches)
    if not (calendar and local.minute in minutes and local.hour in hours and local.month in months):
        return False
    return all(guard_passes(guard, moment) for guard in line.guards)


def guard_passes(guard, moment):
    """Given a (zone, date format, test operator, value) guard and an aware time, return whether `[ ... ]` is true."""
    zone, date_format, operator, value = guard
    try:
        return COMPARISONS[operator](moment.astimezone(ZoneInfo(zone)).strftime(date_format), value)
    except ValueError:
        return False  # test(1) fails on a non-number


def next_cron_run(line, now):
    """Given a CronLine and an aware time, return the first minute after it at which the line runs (UTC), or None."""
    moment = now.astimezone(timezone.utc).replace(second=0, microsecond=0) + timedelta(minutes=1)
    end = moment + CRON_HORIZON
    while moment < end:
        if cron_fires(line, moment):
            return moment
        moment += timedelta(minutes=1)
    return None


# --- output ----------------------------------------------------------------

def render(schedule):
    """Given a Schedule, return its text: a header line, then one line per job in next-run order."""
    lines = [f"schedule from {schedule.source}; now {both_zones(schedule.now)}"]
    for entry in sorted(schedule.entries, key=lambda entry: (entry.next_run is None, entry.next_run, entry.job)):
        when = both_zones(entry.next_run) if entry.next_run else f"none within {CRON_HORIZON.days} days"
        note = f" ({entry.note})" if entry.note else ""
        lines.append(f"{entry.job}: next run {when}; {entry.origin}{note}")
    if not schedule.entries:
        lines.append("no wombat-collect job is scheduled there")
    return "\n".join(lines)


def both_zones(moment):
    """Given an aware time, return it as the run banner shows times: Asia/Seoul, then the host's zone."""
    seoul, local = moment.astimezone(SEOUL), moment.astimezone()
    return f"{seoul:%Y-%m-%d %H:%M %a} Asia/Seoul = {local:%Y-%m-%d %H:%M %a} {local.tzname()} (host)"
