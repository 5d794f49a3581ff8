"""Run history: one collect_run row per job and exchange run, whatever way the run ends."""

import os
import signal
import socket
from datetime import date, timedelta

import psycopg2
import pytest

from tests.conftest import query, run_cli, upbit_env
from tests.fakes.upbit_server import make_upbit_candles
from tests.ops_support import (
    DAYS_BACK,
    HELD,
    SLOW,
    TODAY,
    PingServer,
    holds_candles,
    run,
    running_count,
    runs,
    slow_markets,
    spawn,
    stored_count,
    wait_for_settled,
    wait_until,
)
from wombat_collect.config import mask_dsn
from wombat_collect.jobs.results import JobResult, PriceOptions
from wombat_collect.logging_setup import register_secret
from wombat_collect.ops import history
from wombat_collect.ops.signals import SignalGuard
from wombat_collect.records import UpsertCounts

PRICES_ARGUMENTS = {"exchange": "upbit", "markets": [], "symbol_names": [], "days_back": 5, "since": None,
                    "full": False, "include_open": False, "dry_run": False, "worker": False, "wait": 0.0,
                    "timeframe_names": [], "timeframes": {"upbit": ["1d"]}}  # timeframes: what each exchange collected


@pytest.fixture
def two_markets(fake_upbit):
    """Two markets with six days of closed candles each."""
    for market in ("KRW-BTC", "BTC-ETH"):
        fake_upbit.set_candles(market, make_upbit_candles(market, TODAY - timedelta(days=6), TODAY))
    return fake_upbit


def test_prices_success_records_a_succeeded_run(database, two_markets):
    result = run_cli("prices", "--exchange", "upbit", *DAYS_BACK, env=upbit_env(database, two_markets))
    assert result.exit_code == 0, result.output
    assert runs(database) == [("prices", "upbit", PRICES_ARGUMENTS, "succeeded", 2, 0, 0, 10, 0, 0, 0, None)]
    host, pid, ended_in_order = query(database, "SELECT host, pid, finished_at >= started_at"
                                                " FROM wombat_collect.collect_run")[0]
    assert (host, pid, ended_in_order) == (socket.gethostname(), os.getpid(), True)


def test_symbols_records_its_run(database, two_markets):
    assert run_cli("symbols", "--exchange", "upbit", env=upbit_env(database, two_markets)).exit_code == 0
    assert runs(database) == [("symbols", "upbit", {"exchange": "upbit", "wait": 0.0}, "succeeded",
                               2, 0, 0, 2, 0, 0, 0, None)]


def test_prices_one_symbol_failing_records_partial(database, two_markets):
    candles = make_upbit_candles("BTC-ETH", TODAY - timedelta(days=6), TODAY)
    candles[-2] = dict(candles[-2], low_price=candles[-2]["high_price"] * 2)  # low above high: rejected
    two_markets.set_candles("BTC-ETH", candles)
    result = run_cli("prices", "--exchange", "upbit", *DAYS_BACK, env=upbit_env(database, two_markets))
    assert result.exit_code == 1
    assert runs(database) == [("prices", "upbit", PRICES_ARGUMENTS, "partial", 1, 1, 0, 9, 0, 0, 1,
                                "1 symbol(s) failed")]


def test_prices_blocked_records_failed_with_the_reason(database, two_markets):
    env = upbit_env(database, two_markets)
    assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
    two_markets.set_blocked(True)
    assert run_cli("prices", "--exchange", "upbit", *DAYS_BACK, env=env).exit_code == 1
    row = runs(database)[1]
    assert row[:11] == ("prices", "upbit", PRICES_ARGUMENTS, "failed", 0, 0, 0, 0, 0, 0, 0)
    assert "418" in row[11] and "blocked" in row[11]


def test_prices_error_raised_mid_run_records_failed_and_keeps_its_exit_code(database, two_markets):
    env = upbit_env(database, two_markets)
    assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
    result = run_cli("prices", "--exchange", "upbit", "--symbol", "NOPE/KRW", env=env)
    assert result.exit_code == 2
    assert result.stderr.strip().endswith("unknown symbol(s): NOPE/KRW")
    assert runs(database)[1][3:] == ("failed", 0, 0, 0, 0, 0, 0, 0, "unknown symbol(s): NOPE/KRW")


def test_prices_dry_run_records_nothing(database, two_markets):
    assert run_cli("prices", "--exchange", "upbit", "--dry-run", env=upbit_env(database, two_markets)).exit_code == 0
    assert runs(database) == []


@pytest.mark.parametrize("signal_number, exit_code, name", [
    (signal.SIGTERM, 143, "SIGTERM"),
    (signal.SIGINT, 130, "SIGINT"),
])
def test_prices_signal_records_interrupted_with_what_was_written(database, fake_upbit, signal_number, exit_code,
                                                                  name):
    slow_markets(fake_upbit, count=6, latency=0.3)
    process = spawn(upbit_env(database, fake_upbit, **SLOW), "prices", "--exchange", "upbit", *DAYS_BACK)
    wait_until(lambda: stored_count(database) > 0)
    process.send_signal(signal_number)
    assert process.wait(timeout=20) == exit_code
    assert process.stderr.read().strip().endswith(f"interrupted by {name}")
    written = stored_count(database)
    assert 0 < written < 6 * 5
    assert query(database, "SELECT status, rows_inserted, error_summary, finished_at IS NOT NULL"
                           " FROM wombat_collect.collect_run") \
        == [("interrupted", written, f"interrupted by {name}", True)]


def test_prices_after_sigkill_marks_the_dead_run_interrupted(database, fake_upbit):
    slow_markets(fake_upbit, count=4, latency=0)
    holds_candles(fake_upbit)  # it is mid-run when killed, however fast the machine
    env = upbit_env(database, fake_upbit, **SLOW, **HELD)
    process = spawn(env, "prices", "--exchange", "upbit", *DAYS_BACK)
    wait_until(lambda: running_count(database) == 1)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    fake_upbit.release()
    assert query(database, "SELECT status FROM wombat_collect.collect_run") == [("running",)]
    completed = run(env, "prices", "--exchange", "upbit", *DAYS_BACK)
    assert completed.returncode == 0, completed.stderr
    assert f"run 1 (pid {process.pid} on {socket.gethostname()}, started " in completed.stderr
    assert query(database, "SELECT id, status, finished_at IS NULL, error_summary"
                           " FROM wombat_collect.collect_run ORDER BY id") == [
        (1, "interrupted", True, "process gone without recording its end (killed?); noticed by pid "
                                 f"{completed_pid(database)} on {socket.gethostname()}"),
        (2, "succeeded", False, None),
    ]


def completed_pid(dsn):
    return query(dsn, "SELECT pid FROM wombat_collect.collect_run WHERE id = 2")[0][0]


def test_prices_banner_names_window_zones_and_masked_database(database, two_markets):
    password_dsn = database.replace("user=postgres", "user=postgres password=Banner-Pass-77")
    result = run_cli("prices", "--exchange", "upbit", "--since", (TODAY - timedelta(days=3)).isoformat(),
                     env=upbit_env(password_dsn, two_markets))
    assert result.exit_code == 0, result.output
    banner = next(line for line in result.stdout.splitlines() if "prices upbit: start on" in line)
    assert f"start on {socket.gethostname()} pid {os.getpid()}; since {TODAY - timedelta(days=3)}, timeframes 1d; " \
        in banner
    assert " Asia/Seoul = " in banner and f"(host); database {mask_dsn(database)}" in banner
    assert "Banner-Pass-77" not in result.output


def test_prices_secrets_stay_out_of_history_metrics_pings_and_logs(database, two_markets, tmp_path):
    secrets = {"password": "Db-Secret-Pass-1", "key": "Kis-App-Key-2", "secret": "Kis-App-Secret-3"}
    dsn = database.replace("user=postgres", f"user=postgres password={secrets['password']}")
    assert run_cli("symbols", "--exchange", "upbit", env=upbit_env(database, two_markets)).exit_code == 0
    two_markets.set_blocked(True)
    with PingServer() as pings:
        env = upbit_env(dsn, two_markets, KIS_APP_KEY=secrets["key"], KIS_APP_SECRET=secrets["secret"],
                        WOMBAT_METRICS_DIR=str(tmp_path), WOMBAT_PING_URL=pings.url)
        completed = run(env, "-v", "prices", "--exchange", "upbit")
    assert completed.returncode == 1
    seen = [completed.stdout, completed.stderr, (tmp_path / "wombat_collect.prom").read_text(),
            str(query(database, "SELECT * FROM wombat_collect.collect_run")), str(pings.requests)]
    assert len(pings.requests) == 2
    for secret in secrets.values():
        assert all(secret not in text for text in seen), secret


def test_finish_run_masks_registered_secrets_in_the_summary(connection):
    register_secret("Leaky-Token-99")
    assert run_cli("db", "init", env={"DATABASE_URL": connection.dsn}).exit_code == 0
    connection.autocommit = True
    run_id = history.start_run(connection, "prices", "upbit", {"note": "Leaky-Token-99", "since": date(2025, 1, 2)})
    result = JobResult("prices", "upbit", symbols_ok=3, rows=UpsertCounts(1, 2, 3), fatal="boom Leaky-Token-99\nmore")
    history.finish_run(connection, run_id, "failed", result)
    with connection.cursor() as cursor:
        cursor.execute("SELECT arguments, status, symbols_ok, rows_inserted, rows_updated, rows_unchanged,"
                       " error_summary FROM wombat_collect.collect_run")
        assert cursor.fetchall() == [({"note": "***", "since": "2025-01-02"}, "failed", 3, 1, 2, 3, "boom *** more")]


def test_symbols_sigterm_records_interrupted(database, fake_upbit):
    slow_markets(fake_upbit, count=2, latency=0)
    fake_upbit.hold(lambda request: True)  # the listing stays unanswered until the process has ended
    process = spawn(upbit_env(database, fake_upbit, **HELD), "symbols", "--exchange", "upbit")
    wait_until(lambda: running_count(database) == 1 and fake_upbit.count() == 1)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=50) == 143  # its HTTP timeout is 60 s: it did not wait for an answer
    assert [request.status for request in fake_upbit.requests] == [None]  # still unanswered when it ended
    fake_upbit.release()
    assert runs(database) == [("symbols", "upbit", {"exchange": "upbit", "wait": 0.0}, "interrupted",
                               0, 0, 0, 0, 0, 0, 0, "interrupted by SIGTERM")]
    assert query(database, "SELECT count(*) FROM symbol") == [(0,)]


def test_signal_guard_attach_gives_each_exchange_its_own_stop_event():
    upbit, kis = PriceOptions(), PriceOptions()
    guard = SignalGuard()
    guard.attach(upbit)
    guard.attach(kis)
    upbit.stop_event.set()  # what collect_prices does on a 418
    assert not kis.stop_event.is_set() and kis.interrupted is None
    guard.handle(signal.SIGTERM, None)
    assert kis.stop_event.is_set() and (upbit.interrupted, kis.interrupted) == (signal.SIGTERM, signal.SIGTERM)


def test_mark_dead_runs_leaves_the_rows_of_live_sessions(database):
    assert run_cli("db", "init", env={"DATABASE_URL": database}).exit_code == 0
    live, dying, marker = (psycopg2.connect(database) for _ in range(3))
    for session in (live, dying, marker):
        session.autocommit = True
    try:
        live_run = history.start_run(live, "prices", "upbit", {"worker": True})
        dead_run = history.start_run(dying, "prices", "upbit", {"worker": True})
        dying.close()
        wait_for_settled(database, keep=[live.get_backend_pid(), marker.get_backend_pid()])

        marked = history.mark_dead_runs(marker, "prices", "upbit")

        assert [run_id for run_id, *_ in marked] == [dead_run]
        assert query(database, "SELECT id, status FROM wombat_collect.collect_run ORDER BY id") == [
            (live_run, "running"), (dead_run, "interrupted")]
    finally:
        live.close()
        marker.close()
