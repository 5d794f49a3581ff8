"""Helpers for the ops tests: CLI subprocesses, waiting, a loopback ping server, slow fakes, crontab files,
the documents' examples."""

import gzip
import json
import os
import re
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.conftest import query
from tests.fakes.upbit_server import CANDLES_PATH, make_upbit_candles

REPOSITORY = Path(__file__).resolve().parent.parent
DEVELOPMENT_DOC = REPOSITORY / "docs" / "development.md"  # "Changing the schedule", "Adding a job"
CRON_FIELDS = ("minute", "hour", "day", "month", "weekday")
TODAY = datetime.now(timezone.utc).date()
SLOW = {"WOMBAT_WORKERS": "1"}
HELD = {"WOMBAT_HTTP_TIMEOUT": "60"}  # a client whose requests the fake holds waits for them, not the 5 s default
DAYS_BACK = ("--days-back", "5")
RUN_COLUMNS = ("job, exchange, arguments, status, symbols_ok, symbols_failed, symbols_skipped, rows_inserted,"
               " rows_updated, rows_unchanged, rows_rejected, error_summary")


def cli_command(*arguments):
    """Given CLI arguments, return the command running `wombat-collect` with this Python."""
    return [sys.executable, "-m", "wombat_collect", *arguments]


def process_env(env):
    """Given extra variables, return a full environment for a CLI subprocess."""
    return dict(os.environ, WOMBAT_ENV_FILE="/dev/null", JOURNAL_STREAM="", **env)


def spawn(env, *arguments):
    """Given extra variables and CLI arguments, start `wombat-collect` as a subprocess (text pipes)."""
    return subprocess.Popen(cli_command(*arguments), env=process_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run(env, *arguments, timeout=60):
    """Given extra variables and CLI arguments, run `wombat-collect` to its end. Return CompletedProcess."""
    return subprocess.run(cli_command(*arguments), env=process_env(env), capture_output=True, text=True,
                          timeout=timeout)


def wait_until(predicate, timeout=30.0, interval=0.02):
    """Given a predicate, poll it until true. Raise AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")
        time.sleep(interval)


def wait_for_settled(dsn, keep=(), timeout=30.0):
    """Given a DSN, wait until no session but ours (and the backend pids in `keep`) is on its database.

    A SIGKILLed client's last statement (a COMMIT, a run's end) may still be running on its
    server backend; the backend exits once that statement is done. Read what it left after this.
    """
    others = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
              " AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND NOT pid = ANY(%s)")
    wait_until(lambda: query(dsn, others, (list(keep),))[0][0] == 0, timeout=timeout, interval=0.005)


def has_open(process, path):
    """Given a running process and a file path, return whether the process holds the file open."""
    descriptors = f"/proc/{process.pid}/fd"
    try:
        names = os.listdir(descriptors)
    except FileNotFoundError:
        return False
    for name in names:
        try:
            if os.readlink(f"{descriptors}/{name}") == os.path.realpath(path):
                return True
        except OSError:
            continue  # closed meanwhile
    return False


def holds_candles(fake):
    """Given a FakeUpbit, keep its candle requests unanswered until fake.release(): a run stays mid-run."""
    fake.hold(lambda request: request.path == CANDLES_PATH)


def table_exists(dsn, name):
    return query(dsn, "SELECT to_regclass(%s) IS NOT NULL", (name,))[0][0]


def runs(dsn):
    """Given a DSN, return every collect_run row (RUN_COLUMNS) in id order."""
    return query(dsn, f"SELECT {RUN_COLUMNS} FROM wombat_collect.collect_run ORDER BY id")  # noqa: S608 - constant


def running_count(dsn):
    """Given a DSN, return how many collect_run rows are 'running' (0 before the table exists)."""
    if not table_exists(dsn, "wombat_collect.collect_run"):
        return 0
    return query(dsn, "SELECT count(*) FROM wombat_collect.collect_run WHERE status = 'running'")[0][0]


def stored_count(dsn):
    """Given a DSN, return how many pricedata rows there are (0 before the table exists)."""
    if not table_exists(dsn, "pricedata"):
        return 0
    return query(dsn, "SELECT count(*) FROM pricedata")[0][0]


def slow_markets(fake, count=4, latency=0.5, start=TODAY - timedelta(days=10)):
    """Given a FakeUpbit, serve `count` KRW markets with history since `start`, each answer delayed.

    With WOMBAT_WORKERS=1 and --days-back under 200 (one page a symbol) a run lasts
    about (count + 1) * latency seconds and costs next to no CPU.
    """
    candles = {f"KRW-S{number:02d}": make_upbit_candles(f"KRW-S{number:02d}", start, TODAY) for number in range(count)}
    for market, rows in candles.items():
        fake.set_candles(market, rows)
    fake.latency = latency
    return candles


class PingServer:
    """A loopback HTTP server that records every request: (method, path, query, body) and answers 200.

    `status` answers every request with that code instead; `statuses` per path
    ({"/start": 503}). A path in `hang` is recorded, then left unanswered until
    the server closes (a monitor that times out).
    """

    def __init__(self, status=200, statuses=None, hang=()):
        self.requests = []
        self.status = status
        self.statuses = dict(statuses or {})
        self.hang = set(hang)
        self.closing = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                path, _, query_string = self.path.partition("?")
                server.requests.append((self.command, path, query_string, body.decode("utf-8", "replace")))
                if path in server.hang:
                    server.closing.wait()
                    return
                self.send_response(server.statuses.get(path, server.status))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST  # noqa: N815

            def log_message(self, *arguments):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def paths(self):
        return [path for _, path, _, _ in self.requests]


def closed_port_url():
    """Return an http URL on a loopback port nobody listens on."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/ping/abcdef-secret-key"


def envelope_items(body):
    """Given a Sentry envelope body, return its items' payloads decoded from JSON (where they are JSON)."""
    lines = body.split("\n")
    items = []
    for header, payload in zip(lines[1::2], lines[2::2], strict=False):
        try:
            items.append((json.loads(header).get("type"), json.loads(payload)))
        except ValueError:
            continue
    return items


def read_crontab(path, with_user):
    """Given a crontab file, return ({variable: value}, [job, ...]), as cron and supercronic read it.

    `NAME=value` lines set variables; every other line that is not blank or a
    comment is a job: five time fields, the user when `with_user` (a cron.d
    file), then the command. Each job is a dict of the five fields by name,
    `schedule` (the five joined by spaces), `user` (None without) and `command`.
    """
    environment, jobs = {}, []
    for raw_line in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        assignment = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)", line)
        if assignment:
            environment[assignment.group(1)] = assignment.group(2)
            continue
        words = line.split(None, 6 if with_user else 5)
        job = dict(zip(CRON_FIELDS, words[:5], strict=True))
        jobs.append({**job, "schedule": " ".join(words[:5]), "user": words[5] if with_user else None,
                     "command": words[-1]})
    return environment, jobs


def document_section(document, heading):
    """Given a Markdown document and a heading's text (without the #s), return the section under it, up to the
    next heading of the same or a higher level. Fail if there is no such heading."""
    lines = document.read_text(encoding="utf-8").splitlines()
    starts = [index for index, line in enumerate(lines) if re.fullmatch(rf"(#+) {re.escape(heading)}", line)]
    assert len(starts) == 1, f"{document.name} has {len(starts)} headings {heading!r}"
    level = len(lines[starts[0]].split()[0])
    section = []
    for line in lines[starts[0] + 1:]:
        match = re.match(r"(#+) ", line)
        if match and len(match.group(1)) <= level and not in_code_block(section):
            break
        section.append(line)
    return "\n".join(section)


def in_code_block(lines):
    """Given the lines so far, return whether they end inside a ``` fence."""
    return sum(1 for line in lines if line.startswith("```")) % 2 == 1


def document_code_blocks(document, heading, language):
    """Given a Markdown document, a heading and a fence language (```sh, ```ini, ...), return the contents of
    the section's blocks."""
    return re.findall(rf"^```{re.escape(language)}\n(.*?)^```$", document_section(document, heading),
                      re.MULTILINE | re.DOTALL)
