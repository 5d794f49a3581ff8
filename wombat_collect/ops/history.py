"""The run history: one `collect_run` row per run of a job for one exchange.

Every function takes an open autocommit connection (the runner's lock
connection, so a row is only ever 'running' while its advisory lock is held).
Text that reaches the table goes through logging_setup.redact first.
"""

import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime

from wombat_collect.db.queries import statement
from wombat_collect.logging_setup import redact

MAX_SUMMARY_LENGTH = 2000
RUN_LOCK_CLASS = 0x77630001  # advisory lock (class, run id) its session holds while the run lives
DEAD_RUN_SUMMARY = "process gone without recording its end (killed?); noticed by pid {pid} on {host}"


@dataclass(frozen=True)
class Run:
    """A `collect_run` row."""

    id: int
    job: str
    exchange: str
    arguments: dict
    host: str
    pid: int
    started_at: datetime
    finished_at: datetime | None
    status: str
    symbols_ok: int
    symbols_failed: int
    symbols_skipped: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_rejected: int
    error_summary: str | None

    @property
    def duration(self):
        """Return the run's length in seconds, or None while it has no end."""
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


def arguments_json(arguments):
    """Given the CLI parameters, return them as JSON text (dates as ISO strings), secrets masked."""
    plain = {name: list(value) if isinstance(value, tuple) else value for name, value in arguments.items()}
    return redact(json.dumps(plain, sort_keys=True, default=str))


def short_summary(text):
    """Given an error text, return it masked, on one line and at most MAX_SUMMARY_LENGTH long."""
    if not text:
        return None
    line = " ".join(redact(str(text)).split())
    return line[:MAX_SUMMARY_LENGTH]


def failed_symbols(result):
    """Given a JobResult, return 'N symbol(s) failed' when some did, else None."""
    return f"{result.symbols_failed} symbol(s) failed" if result.symbols_failed else None


def start_run(connection, job, exchange, arguments):
    """Given a job, an exchange and the CLI parameters, insert a 'running' row. Return its id.

    The connection's session holds the row's liveness lock (RUN_LOCK_CLASS, id) from then on.
    """
    parameters = {"job": job, "exchange": exchange, "arguments": arguments_json(arguments),
                  "host": socket.gethostname(), "pid": os.getpid(), "run_class": RUN_LOCK_CLASS}
    with connection.cursor() as cursor:
        cursor.execute(statement("insert_run"), parameters)
        return cursor.fetchone()[0]


def finish_run(connection, run_id, status, result):
    """Given a run id, its final status and JobResult, record how the run ended."""
    parameters = {
        "id": run_id, "status": status,
        "symbols_ok": result.symbols_ok, "symbols_failed": result.symbols_failed,
        "symbols_skipped": result.symbols_skipped,
        "rows_inserted": result.rows.inserted, "rows_updated": result.rows.updated,
        "rows_unchanged": result.rows.unchanged, "rows_rejected": result.rejected,
        "error_summary": short_summary(result.fatal or "; ".join(result.errors) or failed_symbols(result)),
    }
    with connection.cursor() as cursor:
        cursor.execute(statement("finish_run"), parameters)


def mark_dead_runs(connection, job, exchange):
    """Given a job whose advisory lock we hold, mark its 'running' rows whose session is gone interrupted.

    Return [(id, host, pid, started_at)] of the rows marked.
    """
    summary = DEAD_RUN_SUMMARY.format(pid=os.getpid(), host=socket.gethostname())
    parameters = {"job": job, "exchange": exchange, "error_summary": summary, "run_class": RUN_LOCK_CLASS}
    with connection.cursor() as cursor:
        cursor.execute(statement("mark_dead_runs"), parameters)
        return cursor.fetchall()


def latest_runs(connection, job, exchange):
    """Given a job and an exchange, return (last run, last finished run, last success); None if none."""
    finished = ["succeeded", "partial", "failed", "interrupted"]
    runs = []
    with connection.cursor() as cursor:
        for statuses in (["running", *finished], finished, ["succeeded"]):
            cursor.execute(statement("latest_run"), {"job": job, "exchange": exchange, "statuses": statuses})
            row = cursor.fetchone()
            runs.append(Run(*row) if row else None)
    return tuple(runs)


def held_keys(connection, keys):
    """Given advisory lock keys, return the set of those some session holds now."""
    with connection.cursor() as cursor:
        cursor.execute(statement("held_advisory_locks"), {"keys": list(keys)})
        return {key for (key,) in cursor.fetchall()}


def run_metrics(connection):
    """Return one dict per job and exchange: its last finished run, last success and failures since."""
    with connection.cursor() as cursor:
        cursor.execute(statement("run_metrics"))
        names = [column.name for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def run_counts(connection):
    """Return [(job, exchange, status, number of finished runs)]."""
    with connection.cursor() as cursor:
        cursor.execute(statement("run_counts"))
        return cursor.fetchall()
