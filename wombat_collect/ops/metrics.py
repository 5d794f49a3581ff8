"""The Prometheus node_exporter textfile (WOMBAT_METRICS_DIR/wombat_collect.prom).

Built from the collect_run table after every run, so it shows every job and
exchange, whichever process ran last. Written to a temporary file in the same
directory, then renamed over the old one: node_exporter never reads half a file
(it ignores names not ending in .prom). The label is `command`, not `job`:
Prometheus owns `job` and would rename ours to `exported_job`.
"""

import logging
import os
import tempfile

from wombat_collect.ops import history

FILE_NAME = "wombat_collect.prom"
FILE_MODE = 0o644
FINISHED_STATUSES = ("succeeded", "partial", "failed", "interrupted")
PREFIX = "wombat_collect_"
METRICS = (  # name, type, help
    ("last_run_timestamp_seconds", "gauge", "When the last finished run ended (Unix time)."),
    ("last_run_duration_seconds", "gauge", "How long the last finished run took."),
    ("last_run_status", "gauge", "1 for the status the last finished run ended with, else 0."),
    ("last_run_symbols", "gauge", "Symbols of the last finished run, by outcome."),
    ("last_run_rows", "gauge", "Rows written by the last finished run, by kind."),
    ("last_success_timestamp_seconds", "gauge", "When the last successful run ended (Unix time; 0: never)."),
    ("failures_since_success", "gauge", "Runs that did not succeed since the last success."),
    ("runs_total", "counter", "Finished runs recorded in collect_run, by status."),
    ("last_run_timeframe", "gauge", "1 for each timeframe the last finished prices run collected."),
)

logger = logging.getLogger(__name__)


def label_text(labels):
    """Given {name: value}, return `{name="value",...}` with values escaped."""
    escaped = {name: str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               for name, value in labels.items()}
    return "{" + ",".join(f'{name}="{value}"' for name, value in escaped.items()) + "}"


def number_text(value):
    """Given a number (or None), return its Prometheus text ('NaN' for None)."""
    if value is None:
        return "NaN"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def samples_of(row):
    """Given one run_metrics row, return {metric name: [(labels, value)]} for it."""
    base = {"command": row["job"], "exchange": row["exchange"]}
    return {
        "last_run_timestamp_seconds": [(base, row["finished"])],
        "last_run_duration_seconds": [(base, row["duration"])],
        "last_run_status": [({**base, "status": status}, int(row["status"] == status))
                            for status in FINISHED_STATUSES],
        "last_run_symbols": [({**base, "outcome": outcome}, row[f"symbols_{outcome}"])
                             for outcome in ("ok", "failed", "skipped")],
        "last_run_rows": [({**base, "kind": kind}, row[f"rows_{kind}"])
                          for kind in ("inserted", "updated", "unchanged", "rejected")],
        "last_success_timestamp_seconds": [(base, row["last_success"] or 0)],
        "failures_since_success": [(base, row["since_success"])],
        "last_run_timeframe": [({**base, "timeframe": name}, 1) for name in row.get("timeframes") or ()],
    }


def render(metric_rows, counts):
    """Given history.run_metrics() and history.run_counts(), return the textfile's content."""
    samples = {name: [] for name, _, _ in METRICS}
    for row in metric_rows:
        for name, values in samples_of(row).items():
            samples[name].extend(values)
    for job, exchange, status, count in counts:
        samples["runs_total"].append(({"command": job, "exchange": exchange, "status": status}, count))
    lines = []
    for name, kind, help_text in METRICS:
        lines += [f"# HELP {PREFIX}{name} {help_text}", f"# TYPE {PREFIX}{name} {kind}"]
        lines += [f"{PREFIX}{name}{label_text(labels)} {number_text(value)}" for labels, value in samples[name]]
    return "\n".join(lines) + "\n"


def write_textfile(directory, text):
    """Given a directory and the content, replace directory/wombat_collect.prom atomically.

    The mode is set on the descriptor (fchmod), never by name: a name swapped
    for a symlink in the meantime must not make us chmod the file it points to.
    """
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{FILE_NAME}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            os.fchmod(stream.fileno(), FILE_MODE)
            stream.write(text)
        os.replace(temporary, os.path.join(directory, FILE_NAME))
    except BaseException:
        remove_quietly(temporary)
        raise


def remove_quietly(path):
    """Given a path, remove it if it exists; ignore errors."""
    try:
        os.unlink(path)
    except OSError:
        pass


def refresh(directory, connection):
    """Given WOMBAT_METRICS_DIR (or None) and a connection, rewrite the textfile; only warn on failure."""
    if directory is None:
        return
    try:
        write_textfile(directory, render(history.run_metrics(connection), history.run_counts(connection)))
    except Exception as error:  # metrics must never fail a run
        logger.warning("cannot write metrics to %s: %s", directory, getattr(error, "strerror", None)
                       or type(error).__name__)
