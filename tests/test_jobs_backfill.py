"""Backfill workers (`prices --since D --worker`, jobs/backfill.py, db/backfill.py).

Every worker is a real `wombat-collect` process sending from its own loopback address
(WOMBAT_SOURCE_ADDRESS 127.0.0.2, 127.0.0.3, ...), against the fake Upbit, which limits
each address to 10 requests a second, as Upbit limits each IP. The series are 10-minute
candles that end at a fixed midnight, so the rows a backfill must store are known in
advance (make_upbit_minute_candles), whatever the hour the test runs at.
"""

import signal
import subprocess
from collections import Counter
from datetime import datetime, time, timedelta, timezone

import pytest

from tests.conftest import query, stored_prices, upbit_env
from tests.fakes.common import max_requests_in_window
from tests.fakes.kis_server import PRICE_PATH, FakeKis, make_kis_rows
from tests.fakes.upbit_server import CANDLE_PREFIX, FakeUpbit, GeneratedSeries, make_upbit_minute_candles
from tests.kis_support import EXPECTED_SYMBOLS, expected_prices, install_masters, kis_env, kis_prices
from tests.ops_support import cli_command, process_env, wait_for_settled, wait_until

MARKETS = tuple(f"KRW-W{number:02d}" for number in range(8))
UNIT_MINUTES = 10
TIMEFRAME = "10m"
SERIES_END = datetime.combine(datetime.now(timezone.utc).date(), time())  # naive UTC: a fixed past midnight
SINCE = SERIES_END.date() - timedelta(days=6)  # 864 candles a market: 5 pages of 200, then the pages up to now
SERIES_START = datetime.combine(SINCE, time())
ADDRESSES = tuple(f"127.0.0.{number}" for number in range(2, 6))
RUN_TIMEOUT = 120
COMMAND = ("prices", "--exchange", "upbit", "--since", SINCE.isoformat(), "--timeframe", TIMEFRAME, "--worker")
UNITS = """SELECT s.symbol, u.timeframe, u.done_at IS NOT NULL, u.done_by_run
             FROM wombat_collect.backfill_unit u JOIN symbol s ON s.id = u.symbol_id ORDER BY s.symbol"""
RUNS = "SELECT id, status, symbols_ok, rows_inserted FROM wombat_collect.collect_run WHERE job = 'prices' ORDER BY id"


def expected_rows():
    """Return every candle the backfill must store, as stored_prices gives them."""
    rows = []
    for market in MARKETS:
        quote, base = market.split("-")
        for candle in make_upbit_minute_candles(market, UNIT_MINUTES, SERIES_START, SERIES_END):
            rows.append((f"{base}/{quote}",
                         datetime.fromisoformat(candle["candle_date_time_utc"]).replace(tzinfo=timezone.utc),
                         candle["opening_price"], candle["high_price"], candle["low_price"], candle["trade_price"],
                         candle["candle_acc_trade_volume"], candle["candle_acc_trade_price"], TIMEFRAME))
    return rows


@pytest.fixture
def fake(database):
    """Return the fake Upbit serving MARKETS' 10-minute series, limited per client address."""
    with FakeUpbit(latency=0.01) as server:
        for market in MARKETS:
            server.set_generated(GeneratedSeries(market, UNIT_MINUTES, SERIES_START, SERIES_END))
        yield server


def worker_env(database, fake, address, **extra):
    """Given the database, the fake and a loopback address, return a worker's env (10 req/s, its address)."""
    return upbit_env(database, fake, UPBIT_RATE_LIMIT="10", WOMBAT_SOURCE_ADDRESS=address, WOMBAT_WORKERS="2",
                     **extra)


def start_worker(database, fake, address):
    """Given an address, start a backfill worker sending from it (text pipes)."""
    return subprocess.Popen(cli_command(*COMMAND), env=process_env(worker_env(database, fake, address)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def candle_requests(fake, status=None):
    """Return the fake's logged candle requests (of one status, if given)."""
    return [record for record in fake.requests if record.path.startswith(CANDLE_PREFIX)
            and (status is None or record.status == status)]


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_collect_backfill_workers_store_the_rows_of_one_worker(database, fake, workers):
    processes = [start_worker(database, fake, address) for address in ADDRESSES[:workers]]
    outputs = [process.communicate(timeout=RUN_TIMEOUT) for process in processes]

    assert [process.returncode for process in processes] == [0] * workers, outputs
    assert stored_prices(database) == expected_rows()
    runs = query(database, RUNS)
    assert {status for _, status, _, _ in runs} == {"succeeded"} and len(runs) == workers
    assert sum(ok for _, _, ok, _ in runs) == len(MARKETS)  # every unit by exactly one worker
    assert sum(inserted for *_, inserted in runs) == len(expected_rows())
    units = query(database, UNITS)
    assert [(symbol, timeframe, done) for symbol, timeframe, done, _ in units] == [
        (f"{market.split('-')[1]}/KRW", TIMEFRAME, True) for market in MARKETS]
    assert Counter(run for *_, run in units) == Counter({run_id: ok for run_id, _, ok, _ in runs if ok})
    assert query(database, "SELECT count(*) FILTER (WHERE finished_at IS NOT NULL), count(*)"
                           " FROM wombat_collect.backfill") == [(1, 1)]
    answered = candle_requests(fake, status=200)
    assert {record.client for record in candle_requests(fake)} <= set(ADDRESSES[:workers])
    pages = Counter((record.query["market"], record.query.get("to")) for record in answered)
    assert max(pages.values()) == 1  # no page of any unit was asked twice
    for stdout, stderr in outputs:
        assert f"; backfill 1 since {SINCE}: " in stdout
        assert "marked interrupted" not in stdout + stderr and "Traceback" not in stdout + stderr


def test_collect_backfill_finishes_without_a_killed_worker_and_a_rerun_adds_nothing(database, fake):
    fake.latency = 0.05
    killed, survivor = start_worker(database, fake, ADDRESSES[0]), start_worker(database, fake, ADDRESSES[1])
    wait_until(lambda: sum(1 for record in candle_requests(fake, 200) if record.client == ADDRESSES[0]) >= 3
               or killed.poll() is not None, timeout=RUN_TIMEOUT, interval=0.005)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=RUN_TIMEOUT)
    survivor_output = survivor.communicate(timeout=RUN_TIMEOUT)
    wait_for_settled(database)

    assert killed.returncode == -signal.SIGKILL
    assert survivor.returncode == 0, survivor_output
    assert stored_prices(database) == expected_rows()
    units = query(database, UNITS)
    assert [done for _, _, done, _ in units] == [True] * len(MARKETS)
    runs_of_pid = dict(query(database, "SELECT pid, id FROM wombat_collect.collect_run"))
    assert {run for *_, run in units} <= {runs_of_pid[killed.pid], runs_of_pid[survivor.pid]}

    rerun = subprocess.run(cli_command(*COMMAND), env=process_env(worker_env(database, fake, ADDRESSES[2])),
                           capture_output=True, text=True, timeout=RUN_TIMEOUT)

    assert rerun.returncode == 0, rerun.stderr
    assert stored_prices(database) == expected_rows()
    runs = {pid: rest for pid, *rest in query(database, "SELECT pid, status, symbols_ok, rows_inserted"
                                                         "  FROM wombat_collect.collect_run")}
    assert runs.pop(killed.pid)[0] == "interrupted"
    assert runs.pop(survivor.pid)[0] == "succeeded"
    assert list(runs.values()) == [["succeeded", len(MARKETS), 0]]  # the re-run: a new backfill, no row missing
    backfills = query(database, "SELECT id, finished_at IS NOT NULL FROM wombat_collect.backfill ORDER BY id")
    assert [finished for _, finished in backfills] == [True, True]  # the killed one's, then the re-run's
    assert (f"; backfill {backfills[1][0]} since {SINCE}: {len(MARKETS)} of {len(MARKETS)} units by this worker, "
            f"{len(MARKETS)} done, finished by this worker") in rerun.stdout
    assert f"run {runs_of_pid[killed.pid]} (pid {killed.pid} on " in rerun.stderr
    assert "ended without recording it; marked interrupted" in rerun.stderr


def test_collect_backfill_resumes_a_unit_at_the_end_of_its_fetched_range(database, fake):
    first = subprocess.run(cli_command("prices", "--exchange", "upbit", "--since", SINCE.isoformat(),
                                       "--timeframe", TIMEFRAME, "--symbol", "W00/KRW"),
                           env=process_env(worker_env(database, fake, ADDRESSES[0])), capture_output=True, text=True,
                           timeout=RUN_TIMEOUT)
    assert first.returncode == 0, first.stderr
    covered_until = query(database, "SELECT max(range_end) FROM wombat_collect.fetched_range")[0][0]
    fake.clear_requests()

    worker = subprocess.run(cli_command(*COMMAND), env=process_env(worker_env(database, fake, ADDRESSES[1])),
                            capture_output=True, text=True, timeout=RUN_TIMEOUT)

    assert worker.returncode == 0, worker.stderr
    asked = [record.query for record in candle_requests(fake, 200) if record.query["market"] == "KRW-W00"]
    assert len(asked) == 1 and "to" not in asked[0]  # its range reaches now: only the newest page is asked again
    assert covered_until >= SERIES_END.replace(tzinfo=timezone.utc)  # up to the newest closed period
    assert stored_prices(database) == expected_rows()


def test_prices_worker_needs_since():
    from tests.conftest import run_cli

    result = run_cli("prices", "--exchange", "upbit", "--days-back", "3", "--worker")

    assert result.exit_code == 2
    assert "--worker needs --since (the backfill's first day)" in result.stderr


def test_prices_worker_and_dry_run_exclude_each_other():
    from tests.conftest import run_cli

    result = run_cli("prices", "--exchange", "upbit", "--since", SINCE.isoformat(), "--worker", "--dry-run")

    assert result.exit_code == 2
    assert "--worker and --dry-run exclude each other" in result.stderr


KIS_COMMAND = ("prices", "--exchange", "kis", "--since", SINCE.isoformat(), "--timeframe", "1d", "--worker")
KIS_CODES = [row[0] for row in EXPECTED_SYMBOLS]
KIS_KEY_LIMIT = 3  # price requests a second the fake allows each app key (KIS: 20)
KIS_KEY_RATE = 2  # the KIS_RATE_LIMIT one key is paced at, below the fake's limit as the default 18 is below KIS's 20


@pytest.fixture
def fake_kis():
    """Return a FakeKis listing the MASTERS symbols, each with daily rows from SINCE, KIS_KEY_LIMIT per key."""
    with FakeKis(rate_limit=KIS_KEY_LIMIT, token_throttle_seconds=None, latency=0.01) as server:
        install_masters(server)
        for code in KIS_CODES:
            server.set_prices(code, make_kis_rows(code, SINCE, SERIES_END.date() - timedelta(days=1)))
        yield server


def key_files(directory, key, secret):
    """Given a directory and a key pair, write it as two 0600 files; return the env naming them."""
    directory.mkdir()
    (directory / "app-key").write_text(f"{key}\n")
    (directory / "app-secret").write_text(f"{secret}\n")
    for path in directory.iterdir():
        path.chmod(0o600)
    return {"KIS_APP_KEY_FILE": str(directory / "app-key"), "KIS_APP_SECRET_FILE": str(directory / "app-secret")}


def run_kis_workers(database, fake, tmp_path, key_envs, rate_limit):
    """Given one env of key files per worker and each worker's KIS_RATE_LIMIT, run them side by side, one state
    directory (one host). Return their (returncode, stdout, stderr)."""
    processes = []
    for key_env in key_envs:
        env = kis_env(database, fake, tmp_path / "state", KIS_RATE_LIMIT=str(rate_limit), **key_env)
        del env["KIS_APP_KEY"], env["KIS_APP_SECRET"]
        processes.append(subprocess.Popen(cli_command(*KIS_COMMAND), env=process_env(env), stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
    outputs = [process.communicate(timeout=RUN_TIMEOUT) for process in processes]
    return [(process.returncode, *output) for process, output in zip(processes, outputs, strict=True)]


def price_request_times(fake):
    """Return {app key: [arrival times]} of the fake's daily price requests."""
    times = {}
    for record in fake.requests:
        if record.path == PRICE_PATH:
            times.setdefault(record.headers["appkey"], []).append(record.time)
    return times


def test_collect_backfill_kis_workers_sharing_a_key_divide_its_limit(database, fake_kis, tmp_path):
    shared = key_files(tmp_path / "keys", fake_kis.app_key, fake_kis.app_secret)

    outcomes = run_kis_workers(database, fake_kis, tmp_path, [shared, shared], rate_limit=KIS_KEY_RATE / 2)

    assert [returncode for returncode, *_ in outcomes] == [0, 0], outcomes
    assert sorted(kis_prices(database)) == expected_prices(fake_kis, KIS_CODES, SINCE)
    times = price_request_times(fake_kis)
    assert list(times) == [fake_kis.app_key] and len(times[fake_kis.app_key]) >= len(KIS_CODES)
    assert max_requests_in_window(times[fake_kis.app_key]) <= KIS_KEY_LIMIT
    assert fake_kis.count(PRICE_PATH, status=500) == 0  # never refused for the rate (EGW00201)
    assert fake_kis.tokens_issued == 1  # one token for the key, shared through the state directory


def test_collect_backfill_kis_workers_with_their_own_keys_have_their_own_limits(database, fake_kis, tmp_path):
    fake_kis.add_app_key("PSsecondworkerkey" + "1" * 19, "secondworkersecret" + "1" * 162)
    first = key_files(tmp_path / "first", fake_kis.app_key, fake_kis.app_secret)
    second = key_files(tmp_path / "second", "PSsecondworkerkey" + "1" * 19, "secondworkersecret" + "1" * 162)

    outcomes = run_kis_workers(database, fake_kis, tmp_path, [first, second], rate_limit=KIS_KEY_RATE)

    assert [returncode for returncode, *_ in outcomes] == [0, 0], outcomes
    assert sorted(kis_prices(database)) == expected_prices(fake_kis, KIS_CODES, SINCE)
    times = price_request_times(fake_kis)
    assert set(times) <= {fake_kis.app_key, "PSsecondworkerkey" + "1" * 19}
    assert all(max_requests_in_window(arrivals) <= KIS_KEY_LIMIT for arrivals in times.values())
    assert fake_kis.count(PRICE_PATH, status=500) == 0
    assert fake_kis.tokens_issued == len(times)  # a token per key that asked for prices
    for _, stdout, stderr in outcomes:
        assert "fakeappsecret" not in stdout + stderr and "secondworkersecret" not in stdout + stderr


def test_collect_backfill_sigterm_lets_go_of_the_units_and_a_rerun_finishes_them(database, fake):
    fake.latency = 0.05
    worker = start_worker(database, fake, ADDRESSES[0])
    wait_until(lambda: len(candle_requests(fake, 200)) >= 3 or worker.poll() is not None, timeout=RUN_TIMEOUT,
               interval=0.005)
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=RUN_TIMEOUT)

    assert worker.returncode == 143, stderr
    assert query(database, "SELECT status FROM wombat_collect.collect_run") == [("interrupted",)]
    open_units = query(database, "SELECT count(*) FROM wombat_collect.backfill_unit WHERE done_at IS NULL")[0][0]
    assert open_units > 0
    rerun = subprocess.run(cli_command(*COMMAND), env=process_env(worker_env(database, fake, ADDRESSES[1])),
                           capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert rerun.returncode == 0, rerun.stderr
    assert f": {open_units} of {len(MARKETS)} units by this worker, {len(MARKETS)} done, finished" in rerun.stdout
    assert stored_prices(database) == expected_rows()
