"""ops/runner.py: every exchange of a job locked before any work, prices run concurrently,
signals stop both, a lost advisory lock is taken again or stops that exchange with one line.

Through the real CLI (subprocesses where a signal or a held request is needed) against the
fakes and a real PostgreSQL. Timing is judged by what the fakes recorded, never by wall time.
"""

import signal
import threading
from datetime import timedelta

import psycopg2
import pytest

from tests.conftest import query, run_cli, stored_prices
from tests.fakes.kis_server import PRICE_PATH, FakeKis
from tests.fakes.upbit_server import CANDLES_PATH, MARKETS_PATH, make_upbit_candles
from tests.kis_support import PRICE_END, both_env, install_masters, install_prices, kis_prices
from tests.ops_support import TODAY, run, spawn, wait_until
from wombat_collect.ops.locks import advisory_key

UPBIT_MARKETS = ("KRW-BTC", "KRW-ETH")
KIS_CODES = ("005930", "035720")
RUN_ROWS = "SELECT job, exchange, status, error_summary FROM wombat_collect.collect_run ORDER BY exchange"


@pytest.fixture
def fake_kis():
    with FakeKis(rate_limit=None) as server:
        yield server


@pytest.fixture
def both(database, fake_upbit, fake_kis, tmp_path):
    """Both fakes serving two symbols each; return the env of a run against them."""
    for market in UPBIT_MARKETS:
        fake_upbit.set_candles(market, make_upbit_candles(market, TODAY - timedelta(days=30), TODAY))
    install_masters(fake_kis, {"kospi": [("005930", "KR7005930003", "삼성전자", "ST")],
                               "kosdaq": [("035720", "KR7035720002", "카카오게임즈", "ST")], "konex": []})
    install_prices(fake_kis, KIS_CODES, end=PRICE_END)
    return both_env(database, fake_upbit, fake_kis, tmp_path / "state", WOMBAT_WORKERS="1")


def is_candles(request):
    return request.path in (CANDLES_PATH, PRICE_PATH)


def request_span(fake, path):
    """Given a fake and a path, return (first, last) arrival time of its requests there."""
    times = [record.time for record in fake.requests if record.path == path]
    return min(times), max(times)


def test_run_job_runs_the_exchanges_of_prices_concurrently(database, fake_upbit, fake_kis, both):
    """Each exchange's first price request is held until the other exchange asked too: one after
    the other, the first would wait out the 20 s hold alone and the spans would not overlap."""
    upbit_asked, kis_asked = threading.Event(), threading.Event()
    fake_upbit.gate(lambda request: request.path == CANDLES_PATH and not upbit_asked.set(), kis_asked, 20)
    fake_kis.gate(lambda request: request.path == PRICE_PATH and not kis_asked.set(), upbit_asked, 20)
    result = run_cli("prices", "--exchange", "all", "--since", "2024-06-01", env=both)
    assert result.exit_code == 0, result.output
    upbit_first, upbit_last = request_span(fake_upbit, CANDLES_PATH)
    kis_first, kis_last = request_span(fake_kis, PRICE_PATH)
    assert upbit_first <= kis_last and kis_first <= upbit_last
    assert query(database, RUN_ROWS) == [("prices", "kis", "succeeded", None), ("prices", "upbit", "succeeded", None)]
    assert len(kis_prices(database)) > 0 and len(stored_prices(database)) > 0


def test_run_job_names_the_exchange_in_every_log_line(database, fake_upbit, fake_kis, both):
    fake_upbit.inject("500", count=1)
    fake_kis.inject("500", count=1, match=lambda request: request.path == PRICE_PATH)
    result = run_cli("prices", "--exchange", "all", "--since", "2024-06-01", env=both)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if " applied migration " not in line]
    assert lines and all(" upbit" in line or " kis" in line for line in lines), lines


def test_run_job_lock_held_for_one_exchange_exits_75_and_nothing_runs(database, fake_upbit, fake_kis, both):
    run_cli("db", "init", env=both)
    holder = psycopg2.connect(database)
    holder.autocommit = True
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", (advisory_key("prices", "kis"),))
        result = run_cli("prices", "--exchange", "all", env=both)
    finally:
        holder.close()
    assert result.exit_code == 75, result.output
    assert "prices kis is already running" in result.stderr
    assert (fake_upbit.count(), fake_kis.count()) == (0, 0)
    assert query(database, "SELECT count(*) FROM wombat_collect.collect_run") == [(0,)]
    assert query(database, "SELECT count(*) FROM symbol") == [(0,)]


def test_run_job_sigterm_stops_both_exchanges_and_records_them_interrupted(database, fake_upbit, fake_kis, both):
    release = threading.Event()
    fake_upbit.gate(is_candles, release, 20)
    fake_kis.gate(is_candles, release, 20)
    process = spawn(both, "prices", "--exchange", "all", "--since", "2024-06-01")
    try:
        wait_until(lambda: fake_upbit.held(is_candles) and fake_kis.held(is_candles))
        process.send_signal(signal.SIGTERM)
        wait_until(lambda: query(database, "SELECT count(*)"
                                           " FROM wombat_collect.collect_run WHERE status = 'running'") == [(2,)])
    finally:
        release.set()
    assert process.wait(timeout=60) == 143, process.stderr.read()
    assert query(database, RUN_ROWS) == [("prices", "kis", "interrupted", "interrupted by SIGTERM"),
                                         ("prices", "upbit", "interrupted", "interrupted by SIGTERM")]


def terminate_lock_connection(dsn, job, exchange):
    """Given a job and an exchange, terminate the backend holding its advisory lock; wait until it is gone."""
    name = f"wombat-collect lock {job} {exchange}"
    wait_until(lambda: query(dsn, "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                             (name,)) == [(1,)])
    query(dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (name,))
    wait_until(lambda: query(dsn, "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                             (name,)) == [(0,)])


def listing_held_while(fake_upbit, both, action):
    """Run `symbols --exchange all` (upbit first, then kis) with the Upbit listing held until action() ran."""
    release = threading.Event()
    fake_upbit.gate(lambda request: request.path == MARKETS_PATH, release, 30)
    process = spawn(both, "symbols", "--exchange", "all")
    try:
        wait_until(lambda: fake_upbit.held(lambda request: request.path == MARKETS_PATH))
        action()
    finally:
        release.set()
    code = process.wait(timeout=60)
    return code, process.stdout.read(), process.stderr.read()


def test_ensure_lock_takes_a_lock_lost_between_exchanges_again(database, fake_upbit, both):
    code, _, stderr = listing_held_while(fake_upbit, both,
                                         lambda: terminate_lock_connection(database, "symbols", "kis"))
    assert code == 0, stderr
    assert "WARNING symbols kis: lost its database lock (lost the database connection" in stderr
    assert stderr.rstrip().endswith("; took it again")
    assert query(database, RUN_ROWS) == [("symbols", "kis", "succeeded", None), ("symbols", "upbit", "succeeded", None)]


def test_ensure_lock_stops_the_exchange_whose_lock_another_run_took(database, fake_upbit, fake_kis, both):
    thief = psycopg2.connect(database)
    thief.autocommit = True

    def steal():
        terminate_lock_connection(database, "symbols", "kis")
        with thief.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", (advisory_key("symbols", "kis"),))

    try:
        code, _, stderr = listing_held_while(fake_upbit, both, steal)
    finally:
        thief.close()
    assert code == 1, stderr
    assert stderr.strip().splitlines()[-1].endswith(
        "symbols kis: lost its database lock (lost the database connection (server closed the connection "
        "unexpectedly)) and another run holds it now")
    assert "ERROR symbols kis: lost its database lock (lost the database connection" in stderr
    assert query(database, RUN_ROWS) == [("symbols", "upbit", "succeeded", None)]
    assert fake_kis.count() == 0


def test_run_job_prices_all_from_a_shell_exits_with_the_worst_result(database, fake_upbit, fake_kis, both):
    fake_kis.inject("500", count=100, match=lambda request: request.query.get("FID_INPUT_ISCD") == "035720")
    completed = run(both, "prices", "--exchange", "all", "--since", "2024-06-01")
    assert completed.returncode == 1, completed.stderr
    assert "prices upbit: 2 symbols (2 ok)" in completed.stdout
    assert "prices kis: 2 symbols (1 ok, 1 failed)" in completed.stderr
