"""`wombat-collect status`: the health of each job and exchange, from the database alone.

States and exit codes follow the monitoring-plugin convention (Nagios,
Icinga; usable as a systemd ExecCondition):
    0 ok
    1 warning   never run; last run partial or interrupted; active symbols lagging
    2 critical  last run failed; no success within --max-age hours (or never);
                the newest quote older than --quote-max-age minutes
A 'running' row whose advisory lock nobody holds is a dead run: shown as interrupted.

Quotes are judged only where `quotes` has run for the exchange (a deployment
without the quotes timers gets no warning): the age of the newest quote, not
of the last success, and for KIS only while KRX trades (weekdays 08:30-18:00
Asia/Seoul, once the session is --quote-max-age minutes old). That is the
status report's judgement only: the command collects whenever it is run.
"""

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from wombat_collect.db import store
from wombat_collect.db.connection import connect, database_errors
from wombat_collect.db.queries import statement
from wombat_collect.ops import history, locks
from wombat_collect.records import DAILY
from wombat_collect.timeframes import NAMES as TIMEFRAME_NAMES
from wombat_collect.timeframes import period_start, periods_between

JOBS = ("symbols", "prices")
QUOTES_JOB = "quotes"  # judged by its quotes' age, and only where it has run
DEFAULT_QUOTE_MAX_AGE_MINUTES = 15.0  # KRX after-hours trades in 10-minute single-price auctions
MARKET_HOURS = {"kis": ("08:30", "18:00")}  # Asia/Seoul, weekdays; an exchange not named trades always
STATES = ("ok", "warning", "critical")  # index = exit code
DEFAULT_MAX_AGE_HOURS = 26.0
DEFAULT_LAG_DAYS = 3
SEOUL = timezone(timedelta(hours=9), "KST")
TIME_FORMAT = "%Y-%m-%d %H:%M"
DEAD_SUMMARY = "process gone without recording its end (killed?)"


@dataclass
class JobHealth:
    """One job of one exchange: its last run, last finished run, last success, and verdict."""

    job: str
    exchange: str
    last_run: history.Run | None
    last_finished: history.Run | None
    last_success: history.Run | None
    running: bool = False
    problems: list = field(default_factory=list)  # [(state, text)]


@dataclass
class ExchangeHealth:
    """One exchange: its symbols and candles, and its jobs."""

    exchange: str
    active: int
    inactive: int
    newest_candle: datetime | None
    without_candles: int
    lagging: int
    jobs: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    newest_quote: datetime | None = None
    quotes_judged: bool = False  # quotes has run for this exchange
    timeframes: list = field(default_factory=list)  # [TimeframeHealth]
    gaps: list = field(default_factory=list)  # the last complete `gaps` scan: dicts per timeframe (gap_summary)


@dataclass(frozen=True)
class TimeframeHealth:
    """One timeframe of an exchange: its newest stored candle and how many closed periods it lags."""

    timeframe: str
    newest_candle: datetime | None
    lag_periods: int | None


@dataclass
class StatusReport:
    """The whole report; `state` is the worst of all problems."""

    checked_at: datetime
    max_age_hours: float
    lag_days: int
    exchanges: list
    quote_max_age_minutes: float = DEFAULT_QUOTE_MAX_AGE_MINUTES

    def problems(self):
        """Return every (state, 'exchange job: text') of the report, worst first."""
        found = [(state, f"{item.exchange}: {text}") for item in self.exchanges for state, text in item.problems]
        found += [(state, f"{job.exchange} {job.job}: {text}") for item in self.exchanges
                  for job in item.jobs for state, text in job.problems]
        return sorted(found, key=lambda problem: -STATES.index(problem[0]))

    @property
    def state(self):
        problems = self.problems()
        return problems[0][0] if problems else "ok"

    @property
    def exit_code(self):
        return STATES.index(self.state)


def read_report(dsn, exchanges, max_age_hours=DEFAULT_MAX_AGE_HOURS, lag_days=DEFAULT_LAG_DAYS,
                quote_max_age_minutes=DEFAULT_QUOTE_MAX_AGE_MINUTES, timeframes=(), offered=None):
    """Given a DSN and exchange codes, return the StatusReport. Raise DatabaseError if the database fails.

    `timeframes` limits the per-timeframe lines to those (empty: every timeframe with candles);
    `offered` ({code: timeframe names}, None: every name) is where an unfiltered report looks.
    """
    connection = connect(dsn, autocommit=True)
    try:
        with database_errors("reading the status", connection):
            return build_report(connection, exchanges, max_age_hours, lag_days,
                                quote_max_age_minutes=quote_max_age_minutes, timeframes=timeframes,
                                offered=offered)
    finally:
        connection.close()


def build_report(connection, exchanges, max_age_hours=DEFAULT_MAX_AGE_HOURS, lag_days=DEFAULT_LAG_DAYS, now=None,
                 quote_max_age_minutes=DEFAULT_QUOTE_MAX_AGE_MINUTES, timeframes=(), offered=None):
    """Given a connection and exchange codes, return the StatusReport (reads only).

    Without `timeframes`, each exchange's per-timeframe lines come from the timeframes `offered`
    names for it ({code: names}; None or a code it lacks: every timeframe).
    """
    now = now or datetime.now(timezone.utc)
    keys = {(job, code): locks.advisory_key(job, code) for job in (*JOBS, QUOTES_JOB) for code in exchanges}
    alive = history.held_keys(connection, keys.values())
    report = StatusReport(now, max_age_hours, lag_days, [], quote_max_age_minutes)
    for code in exchanges:
        item = exchange_health(connection, code, lag_days)
        item.timeframes = timeframe_health(connection, code, timeframes or (offered or {}).get(code), now,
                                           shown_if_stored=not timeframes)
        item.gaps = store.gap_summaries(connection, code)
        for job in JOBS:
            health = job_health(connection, job, code, keys[job, code] in alive)
            health.problems = judge_job(health, now, max_age_hours)
            item.jobs.append(health)
        add_quotes_health(connection, item, keys[QUOTES_JOB, code] in alive, now, quote_max_age_minutes)
        report.exchanges.append(item)
    return report


def add_quotes_health(connection, item, lock_held, now, max_age_minutes):
    """Given an ExchangeHealth, add the quotes job and the newest quote's age, if quotes has ever run there."""
    health = job_health(connection, QUOTES_JOB, item.exchange, lock_held)
    if health.last_run is None:
        return
    health.problems = judge_job(health, now, None)
    item.jobs.append(health)
    item.quotes_judged = True
    with connection.cursor() as cursor:
        cursor.execute(statement("newest_quotes"), {"codes": [item.exchange]})
        row = cursor.fetchone()
    item.newest_quote = row[1] if row else None
    item.problems += judge_quotes(item.exchange, item.newest_quote, now, max_age_minutes)


def judge_quotes(exchange, newest, now, max_age_minutes):
    """Given an exchange's newest quote time (or None), return its problems [(state, text)].

    Critical when older than max_age_minutes while the exchange trades (and
    has traded for that long); a warning when there is none at all.
    """
    if newest is None:
        return [("warning", "no quotes stored")]
    opened = trading_since(exchange, now)
    limit = timedelta(minutes=max_age_minutes)
    age = now - newest
    if opened is None or now - opened < limit or age <= limit:
        return []
    return [("critical", f"newest quote {age.total_seconds() / 60:.1f} min old (max age {max_age_minutes:g} min)")]


def trading_since(exchange, now):
    """Given an exchange code and a time, return when its current session opened, or None if it is closed.

    Exchanges without MARKET_HOURS trade always (their session opened at the epoch).
    """
    hours = MARKET_HOURS.get(exchange)
    if hours is None:
        return datetime.min.replace(tzinfo=timezone.utc)
    local = now.astimezone(SEOUL)
    opens, closes = (local.replace(hour=int(text[:2]), minute=int(text[3:]), second=0, microsecond=0)
                     for text in hours)
    return opens if local.weekday() < 5 and opens <= local <= closes else None


def exchange_health(connection, exchange, lag_days):
    """Given an exchange code, return its ExchangeHealth (symbols, newest candle, lagging symbols)."""
    with connection.cursor() as cursor:
        cursor.execute(statement("symbol_freshness"),
                       {"exchange": exchange, "lag_days": lag_days, "timeframe": DAILY})
        active, inactive, newest, without_candles, lagging = cursor.fetchone()
    item = ExchangeHealth(exchange, active, inactive, newest, without_candles, lagging)
    if lagging:
        item.problems.append(("warning", f"{lagging} active symbol(s) lag the newest candle "
                                         f"({newest:%Y-%m-%d}) by more than {lag_days} days"))
    return item


def timeframe_health(connection, exchange, timeframes, now, shown_if_stored=False):
    """Given an exchange and timeframes (empty: all), return a TimeframeHealth per timeframe to show.

    Each timeframe is shown; with `shown_if_stored` only those with candles. The lag
    counts the closed periods after the newest candle: 0 when it is the last closed period.
    """
    wanted = [name for name in TIMEFRAME_NAMES if name in (timeframes or TIMEFRAME_NAMES)]
    with connection.cursor() as cursor:
        cursor.execute(statement("timeframe_freshness"), {"exchange": exchange, "timeframes": wanted})
        newest = dict(cursor.fetchall())
    shown = [name for name in wanted if newest.get(name) or not shown_if_stored]
    return [TimeframeHealth(name, newest.get(name), lag_periods(newest.get(name), name, now)) for name in shown]


def lag_periods(newest, timeframe, now):
    """Given the newest candle's start (or None), its timeframe and the time, return the closed periods it lags."""
    if newest is None:
        return None
    return max(periods_between(newest, period_start(now, timeframe), timeframe) - 1, 0)


def job_health(connection, job, exchange, lock_held):
    """Given a job and whether its advisory lock is held now, return its JobHealth.

    A 'running' last run without its lock is a dead run: it is shown interrupted.
    """
    last, finished, success = history.latest_runs(connection, job, exchange)
    running = bool(last and last.status == "running" and lock_held)
    if last and last.status == "running" and not lock_held:
        last = finished = dataclasses.replace(last, status="interrupted", error_summary=DEAD_SUMMARY)
    return JobHealth(job, exchange, last, finished, success, running)


def judge_job(health, now, max_age_hours):
    """Given a JobHealth, return its problems [(state, text)]; none when healthy.

    max_age_hours None skips the age of the last success (quotes are judged by their own age).
    """
    finished, success = health.last_finished, health.last_success
    if finished is None:
        return [("warning", "first run in progress" if health.running else "never run")]
    problems = []
    if finished.status == "failed":
        problems.append(("critical", f"last run failed: {finished.error_summary or 'no reason recorded'}"))
    elif finished.status in ("partial", "interrupted"):
        detail = f"{finished.symbols_failed} symbol(s) failed" if finished.status == "partial" \
            else finished.error_summary or "stopped"
        problems.append(("warning", f"last run {finished.status}: {detail}"))
    if success is None:
        problems.append(("critical", "never succeeded"))
    elif max_age_hours is not None and success.finished_at < now - timedelta(hours=max_age_hours):
        age = (now - success.finished_at).total_seconds() / 3600
        problems.append(("critical", f"last success {age:.1f} h ago (max age {max_age_hours:g} h)"))
    return problems


def job_state(health):
    """Given a JobHealth, return its worst state."""
    return max((state for state, _ in health.problems), key=STATES.index, default="ok")


def local_time(moment):
    """Given an aware datetime (or None), return it as ISO 8601 in Asia/Seoul, or None."""
    return moment.astimezone(SEOUL).isoformat(timespec="seconds") if moment else None


def run_dict(run):
    """Given a Run (or None), return it as JSON-ready dict (or None)."""
    if run is None:
        return None
    data = dataclasses.asdict(run)
    data.update(started_at=local_time(run.started_at), finished_at=local_time(run.finished_at),
                duration_seconds=round(run.duration, 3) if run.duration is not None else None)
    return data


def report_dict(report):
    """Given a StatusReport, return the JSON-ready dict `status --json` prints."""
    return {
        "state": report.state, "exit_code": report.exit_code, "checked_at": local_time(report.checked_at),
        "max_age_hours": report.max_age_hours, "lag_days": report.lag_days,
        "quote_max_age_minutes": report.quote_max_age_minutes,
        "problems": [f"{state.upper()}: {text}" for state, text in report.problems()],
        "exchanges": [exchange_dict(item) for item in report.exchanges],
    }


def exchange_dict(item):
    """Given an ExchangeHealth, return its JSON-ready dict."""
    return {
        "exchange": item.exchange,
        "symbols": {"active": item.active, "inactive": item.inactive,
                    "without_candles": item.without_candles, "lagging": item.lagging},
        "newest_candle": f"{item.newest_candle.astimezone(timezone.utc):%Y-%m-%d}" if item.newest_candle else None,
        "newest_quote": local_time(item.newest_quote),
        "timeframes": [{"timeframe": health.timeframe, "newest_candle": utc_text(health.newest_candle),
                        "lag_periods": health.lag_periods} for health in item.timeframes],
        "gaps": [{**summary, "checked_at": local_time(summary["checked_at"])} for summary in item.gaps],
        "jobs": [{"job": health.job, "state": job_state(health), "running": health.running,
                  "problems": [text for _, text in health.problems],
                  "last_run": run_dict(health.last_run), "last_success": run_dict(health.last_success)}
                 for health in item.jobs],
    }


def render_json(report):
    """Given a StatusReport, return it as indented JSON text."""
    return json.dumps(report_dict(report), indent=2, ensure_ascii=False)


TABLE_HEADER = ("exchange", "job", "state", "last run", "result", "took", "symbols ok/failed/skipped",
                "rows new/changed/same", "last success")


def render_text(report):
    """Given a StatusReport, return the human report: a plugin-style first line, a table, symbol lines."""
    problems = report.problems()
    headline = f"WOMBAT-COLLECT {report.state.upper()}"
    if problems:
        headline += " - " + "; ".join(text for _, text in problems)
    rows = [TABLE_HEADER] + [table_row(health, report.checked_at) for item in report.exchanges
                             for health in item.jobs]
    widths = [max(len(row[index]) for row in rows) for index in range(len(TABLE_HEADER))]
    table = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines = [symbols_line(item, report.lag_days) for item in report.exchanges]
    lines += [quotes_line(item, report.checked_at) for item in report.exchanges if item.quotes_judged]
    lines += [timeframes_line(item) for item in report.exchanges if item.timeframes]
    lines += [gaps_line(item) for item in report.exchanges if item.gaps]
    return "\n".join([headline, *table, *lines])


def table_row(health, now):
    """Given a JobHealth, return its table cells."""
    cells = [health.exchange, health.job, job_state(health)]
    run = health.last_finished
    if run is None:
        return tuple(cells + ["running" if health.running else "never run"] + [""] * 5)
    took = f"{run.duration:.1f}s" if run.duration is not None else "?"
    success = health.last_success
    since = (f"{success.finished_at.astimezone(SEOUL):{TIME_FORMAT}} "
             f"({(now - success.finished_at).total_seconds() / 3600:.1f} h ago)" if success else "never")
    result = f"{run.status}, running again" if health.running else run.status
    return tuple(cells + [f"{run.started_at.astimezone(SEOUL):{TIME_FORMAT} %Z}", result, took,
                          f"{run.symbols_ok}/{run.symbols_failed}/{run.symbols_skipped}",
                          f"{run.rows_inserted}/{run.rows_updated}/{run.rows_unchanged}", since])


def symbols_line(item, lag_days):
    """Given an ExchangeHealth, return its one-line symbol and candle summary."""
    newest = f"{item.newest_candle.astimezone(timezone.utc):%Y-%m-%d}" if item.newest_candle else "none"
    return (f"{item.exchange}: {item.active} active, {item.inactive} inactive symbols; newest candle {newest}; "
            f"{item.lagging} lagging more than {lag_days} days; {item.without_candles} without candles")


def quotes_line(item, now):
    """Given an ExchangeHealth whose quotes are judged, return its one-line newest-quote summary."""
    if item.newest_quote is None:
        return f"{item.exchange}: no quotes stored"
    age = (now - item.newest_quote).total_seconds() / 60
    hours = MARKET_HOURS.get(item.exchange)
    when = f" (judged weekdays {hours[0]}-{hours[1]} Asia/Seoul)" if hours else ""
    return (f"{item.exchange}: newest quote {item.newest_quote.astimezone(SEOUL):{TIME_FORMAT} %Z} "
            f"({age:.1f} min ago){when}")


def utc_text(moment):
    """Given an aware datetime (or None), return `YYYY-MM-DD HH:MM` in UTC, or None."""
    return f"{moment.astimezone(timezone.utc):%Y-%m-%d %H:%M}" if moment else None


def timeframes_line(item):
    """Given an ExchangeHealth, return its one-line per-timeframe summary (newest candle, lag in periods)."""
    parts = [f"{health.timeframe} newest {utc_text(health.newest_candle)} UTC, lag {health.lag_periods}"
             if health.newest_candle else f"{health.timeframe} no candles" for health in item.timeframes]
    return f"{item.exchange} timeframes: {'; '.join(parts)}"


def gaps_line(item):
    """Given an ExchangeHealth with a stored gap summary, return its one line: open gaps per timeframe."""
    parts = [f"{summary['timeframe']} {summary['ranges']} in {summary['symbols']} symbol(s) "
             f"({summary['periods']} periods)" if summary["ranges"] else f"{summary['timeframe']} none"
             for summary in item.gaps]
    checked = max(summary["checked_at"] for summary in item.gaps)
    return (f"{item.exchange} open gaps (wombat-collect gaps, {checked.astimezone(SEOUL):{TIME_FORMAT} %Z}): "
            f"{'; '.join(parts)}")
