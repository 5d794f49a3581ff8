"""Crash-resume: `wombat-collect prices` SIGKILLed at seeded random points, then resumed, ends
with exactly the database of one uninterrupted run, and its history shows every killed run.
(jobs/streaming.py commits whole chunks with the fetched_range they prove; jobs/planning.py
starts the next run from those ranges.)

Each killed run must have real work in front of it, wherever it is killed. So the fake's
history is revised every two kills ("generation" g: the same markets and days, other prices,
as an exchange correcting its data or KIS re-basing adjusted prices): a run rewrites every
symbol, and the second run of a generation resumes what the first one left. After each kill
every symbol must hold exactly one generation's rows (one transaction per symbol: never a
mix, never a part). The last run resumes the last kill's generation to its end.

Kill points are drawn with random.Random(SEED) over three triggers, so both phases are hit
on fast and slow machines alike: a delay from the start (start-up: imports, migrations,
locks), after r answered candle requests (fetching, nothing of the run committed yet), and
after k symbols of the run are committed (writing), each plus a random jitter.

A trigger only aims: a kill is classified by what the run had done when it died, read once
the database has settled (the killed client's last statement may still be running on the
server): requests answered, symbols committed, its collect_run row. On a busy machine a kill
may land after the run recorded its end: that kill is its phase "finished" (its row must say
succeeded, its generation must be whole), a new generation starts, and the trigger is retried.
"""

import random
import signal
import subprocess
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest

from tests.conftest import create_database, drop_database, query, stored_prices, upbit_env
from tests.fakes.upbit_server import CANDLES_PATH, make_upbit_candles
from tests.ops_support import cli_command, process_env, wait_for_settled

SEED = 20251126
MARKETS = tuple(f"KRW-R{number:02d}" for number in range(12))
SYMBOLS = tuple(f"{market.split('-')[1]}/KRW" for market in MARKETS)
DAYS = 300
LAST_DAY = datetime.now(timezone.utc).date() - timedelta(days=1)  # closed however long the test runs
FIRST_DAY = LAST_DAY - timedelta(days=DAYS - 1)
LATENCY = 0.02
WORKERS = "2"
PAGES_PER_SYMBOL = 2  # 300 days: 200 + 100
TRIGGERS = ("start-up",) * 4 + ("fetching",) * 8 + ("writing",) * 12
KILLS_PER_GENERATION = 2
MAX_KILLS = 2 * len(TRIGGERS)  # kills landing after the run's end are retried, this many kills at most
POLL_SECONDS = 0.002
RUN_TIMEOUT = 60
COMMAND = ("prices", "--exchange", "upbit", "--since", FIRST_DAY.isoformat())
SYMBOL_ROWS = """SELECT symbol, base_asset, quote_asset, market, symbol_type, is_active, price_precision,
                        quantity_precision FROM symbol ORDER BY symbol"""


def generation_candles(generation):
    """Given a generation number, return {market: candles}: the same days, prices seeded by it."""
    return {market: make_upbit_candles(market, FIRST_DAY, LAST_DAY, seed=generation) for market in MARKETS}


def as_stored(candles_by_market):
    """Given {market: candles}, return {symbol: tuple of rows as stored_prices gives them}."""
    rows = {}
    for market, candles in candles_by_market.items():
        quote, base = market.split("-")
        rows[f"{base}/{quote}"] = tuple(
            (f"{base}/{quote}", datetime.fromisoformat(candle["candle_date_time_utc"]).replace(tzinfo=timezone.utc),
             candle["opening_price"], candle["high_price"], candle["low_price"], candle["trade_price"],
             candle["candle_acc_trade_volume"], candle["candle_acc_trade_price"], "1d")
            for candle in candles)
    return rows


def stored_by_symbol(dsn):
    """Given a DSN, return {symbol: tuple of its stored rows} (empty before the tables exist)."""
    if not query(dsn, "SELECT to_regclass('pricedata') IS NOT NULL")[0][0]:
        return {}
    grouped = defaultdict(list)
    for row in stored_prices(dsn):
        grouped[row[0]].append(row)
    return {symbol: tuple(rows) for symbol, rows in grouped.items()}


class CommitWatcher:
    """Counts, on one open connection, the symbols whose oldest candle holds a generation's values."""

    SENTINELS = """SELECT s.symbol, p.close_price, p.volume FROM pricedata p JOIN symbol s ON s.id = p.symbol_id
                    WHERE p."timestamp" = %s AND p.timeframe = '1d'"""

    def __init__(self, dsn):
        self.connection = psycopg2.connect(dsn)
        self.connection.autocommit = True
        self.expected = {}

    def expect(self, stored_rows):
        """Given a generation's {symbol: rows}, watch for its oldest row's close and volume."""
        self.expected = {symbol: (rows[0][5], rows[0][6]) for symbol, rows in stored_rows.items()}

    def committed(self):
        """Return how many symbols have the expected generation's rows committed."""
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('pricedata') IS NOT NULL AND to_regclass('symbol') IS NOT NULL")
            if not cursor.fetchone()[0]:
                return 0
            cursor.execute(self.SENTINELS, (datetime.combine(FIRST_DAY, datetime.min.time(), timezone.utc),))
            return sum(1 for symbol, close, volume in cursor.fetchall() if self.expected.get(symbol) == (close, volume))

    def close(self):
        self.connection.close()


@dataclass
class Kill:
    """One killed run: its trigger, and what it had done when SIGKILL arrived."""

    number: int
    generation: int
    trigger: str
    target: float
    jitter: float
    committed_before: int = 0
    committed_after: int = 0
    requests: int = 0
    returncode: int | None = None
    run_id: int | None = None  # the run's collect_run row, if it got as far as inserting one
    run_row: str | None = None  # that row's status right after the kill

    @property
    def committed(self):
        """Return how many symbols this run committed before it died."""
        return self.committed_after - self.committed_before

    @property
    def phase(self):
        if self.run_row == "succeeded":
            return "finished"  # the signal landed (or the run ended) after the run recorded its end
        if self.requests == 0:
            return "start-up"
        if self.committed == 0:
            return "fetching"
        return "writing" if self.committed_after < len(MARKETS) else "finishing"

    def line(self):
        return (f"kill {self.number:2d} gen {self.generation:2d} {self.trigger:>8} {self.target:7.3f}"
                f"+{self.jitter:.3f}s: {self.requests:2d} requests answered, {self.committed:2d} symbols committed "
                f"({self.committed_before}->{self.committed_after} of {len(MARKETS)}), phase {self.phase}, "
                f"exit {self.returncode}, run row {self.run_row}")


def start_run(env):
    """Given the env, start `wombat-collect prices` (output discarded: a killed run's is of no use)."""
    return subprocess.Popen(cli_command(*COMMAND), env=process_env(env), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def wait_for_trigger(process, reached, timeout=RUN_TIMEOUT):
    """Given a process and reached() -> bool, poll until it holds or the process ends."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and not reached():
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("a killed run's trigger never came")
        time.sleep(POLL_SECONDS)


def latest_run(dsn):
    """Given a DSN, return (id, status) of the newest collect_run row, or None."""
    if not query(dsn, "SELECT to_regclass('wombat_collect.collect_run') IS NOT NULL")[0][0]:
        return None
    rows = query(dsn, "SELECT id, status FROM wombat_collect.collect_run ORDER BY id DESC LIMIT 1")
    return rows[0] if rows else None


def run_to_the_end(env):
    """Given the env, run `wombat-collect prices` uninterrupted. Return (CompletedProcess, seconds)."""
    started = time.monotonic()
    completed = subprocess.run(cli_command(*COMMAND), env=process_env(env), capture_output=True, text=True,
                               timeout=RUN_TIMEOUT)
    return completed, time.monotonic() - started


def measure_start_up(server_dsn, fake):
    """Given the server and the fake (serving any generation), run uninterrupted on a scratch database.

    Return the seconds from the start to the first candle request.
    """
    scratch = create_database(server_dsn, "wombat_start_up")
    try:
        fake.clear_requests()
        started = time.monotonic()
        process = start_run(upbit_env(scratch, fake, WOMBAT_WORKERS=WORKERS))
        wait_for_trigger(process, lambda: fake.count(CANDLES_PATH) > 0)
        start_up = time.monotonic() - started
        assert process.wait(timeout=RUN_TIMEOUT) == 0
    finally:
        drop_database(server_dsn, scratch)
    return start_up


def uninterrupted_run(server_dsn, fake):
    """Given the server and the fake, run once, uninterrupted, on a fresh database.

    Return (its stored prices, its SYMBOL_ROWS).
    """
    reference = create_database(server_dsn, "wombat_reference")
    try:
        completed, _ = run_to_the_end(upbit_env(reference, fake, WOMBAT_WORKERS=WORKERS))
        assert completed.returncode == 0, completed.stderr
        return stored_prices(reference), query(reference, SYMBOL_ROWS)
    finally:
        drop_database(server_dsn, reference)


def draw_trigger(rng, trigger, before, start_up):
    """Given a trigger kind and the symbols already holding the run's generation, return (target, jitter).

    start-up: seconds after the start; fetching: candle requests answered (before
    any symbol of the run can be committed); writing: symbols committed.
    """
    if trigger == "start-up":
        return rng.uniform(0, start_up), 0.0
    if trigger == "fetching":
        return rng.randint(1, PAGES_PER_SYMBOL * int(WORKERS)), rng.uniform(0, LATENCY / 2)
    return before + rng.randint(1, len(MARKETS) - before - 1), rng.uniform(0, 2 * LATENCY)


def trigger_reached(kill, started, fake, watcher):
    """Given a Kill, its run's start time, the fake and the watcher, return reached() -> bool."""
    if kill.trigger == "start-up":
        return lambda: time.monotonic() - started >= kill.target
    if kill.trigger == "fetching":
        return lambda: fake.count(CANDLES_PATH, 200) >= kill.target
    return lambda: watcher.committed() >= kill.target


def serve_generation(fake, generation):
    """Given the fake and a generation number, serve that generation. Return its {symbol: rows}."""
    served = generation_candles(generation)
    for market, candles in served.items():
        fake.set_candles(market, candles)
    return as_stored(served)


def needs_new_generation(kills, generation, watcher):
    """Given the kills so far and the generation served, return whether to serve the next one.

    A generation gets KILLS_PER_GENERATION kills, unless a run completed it: then a run
    would have nothing of it left to write.
    """
    kills_in_generation = sum(1 for kill in kills if kill.generation == generation)
    return generation == 0 or kills_in_generation >= KILLS_PER_GENERATION or watcher.committed() == len(MARKETS)


def draw_kill(rng, number, generation, trigger, before, start_up):
    """Given the planned trigger and the symbols already holding the generation, return a new Kill."""
    if trigger == "writing" and len(MARKETS) - before < 2:
        trigger = "fetching"
    return Kill(number, generation, trigger, *draw_trigger(rng, trigger, before, start_up), committed_before=before)


def kill_one_run(env, dsn, fake, watcher, kill, earlier_run_ids):
    """Given a drawn Kill, start a run, SIGKILL it at the trigger, and record in `kill` what it had done."""
    fake.clear_requests()
    started = time.monotonic()
    process = start_run(env)
    wait_for_trigger(process, trigger_reached(kill, started, fake, watcher))
    time.sleep(kill.jitter)  # the kill point's random offset past its trigger, not a wait for anything
    process.send_signal(signal.SIGKILL)  # nothing is sent if the run has already ended: its exit code tells
    kill.returncode = process.wait(timeout=10)
    wait_for_settled(dsn, keep=[watcher.connection.get_backend_pid()], timeout=RUN_TIMEOUT)
    kill.requests = fake.count(CANDLES_PATH, 200)
    kill.committed_after = watcher.committed()
    newest = latest_run(dsn)
    if newest is not None and newest[0] not in earlier_run_ids:
        kill.run_id, kill.run_row = newest


def check_whole_generations(dsn, generations, kill):
    """Given the generations served so far, assert every stored symbol holds exactly one of them."""
    for symbol, rows in stored_by_symbol(dsn).items():
        matching = [number for number, expected in generations.items() if expected[symbol] == rows]
        assert matching, f"after {kill.line()}: {symbol} holds {len(rows)} rows matching no generation whole"
        assert len({row[1] for row in rows}) == len(rows), f"after {kill.line()}: {symbol} has duplicate days"


@pytest.mark.slow
def test_prices_killed_at_random_points_then_resumed_equals_an_uninterrupted_run(server_dsn, database, fake_upbit):
    rng = random.Random(SEED)
    fake_upbit.latency = LATENCY
    generations = {}
    serve_generation(fake_upbit, 1)  # for the run that measures the start-up
    start_up = measure_start_up(server_dsn, fake_upbit)

    env = upbit_env(database, fake_upbit, WOMBAT_WORKERS=WORKERS)
    watcher = CommitWatcher(database)
    planned = list(TRIGGERS)
    rng.shuffle(planned)
    kills, generation = [], 0
    try:
        while planned and len(kills) < MAX_KILLS:
            if needs_new_generation(kills, generation, watcher):
                generation += 1
                generations[generation] = serve_generation(fake_upbit, generation)
                watcher.expect(generations[generation])
            kill = draw_kill(rng, len(kills) + 1, generation, planned[0], watcher.committed(), start_up)
            kill_one_run(env, database, fake_upbit, watcher, kill, {earlier.run_id for earlier in kills})
            kills.append(kill)
            check_whole_generations(database, generations, kill)
            if kill.phase != "finished":
                planned.pop(0)  # a kill that landed after the run's end is retried in a new generation
    finally:
        watcher.close()
    report = "\n".join(kill.line() for kill in kills)
    print(f"\n{report}")  # shown with -s or -rP: where each kill landed

    assert not planned, f"{len(planned)} triggers still unspent after {len(kills)} kills\n{report}"
    died = [kill for kill in kills if kill.phase != "finished"]
    assert all(kill.returncode == -signal.SIGKILL for kill in died), report
    assert all(kill.run_row in (None, "running") for kill in died), report
    for kill in kills:
        if kill.phase == "finished":  # it ended by itself (0) or was killed after recording its end
            assert kill.returncode in (0, -signal.SIGKILL) and kill.committed_after == len(MARKETS), report
    phases = Counter(kill.phase for kill in died)
    assert phases["fetching"] >= 3, report  # requests answered, nothing of the run committed yet
    assert phases["writing"] >= 6, report  # part of the symbols committed
    assert len({(kill.requests, kill.committed) for kill in died}) >= 12, report
    written = [kill.committed_after for kill in died if kill.phase == "writing"]
    assert min(written) <= 3 and max(written) >= 8, report  # early and late in the writing phase
    recorded = [kill for kill in kills if kill.run_row is not None]
    interrupted = [kill for kill in recorded if kill.phase != "finished"]
    assert len(interrupted) >= 20, report

    reference_prices, reference_symbols = uninterrupted_run(server_dsn, fake_upbit)  # of the last generation
    assert reference_prices == sorted(row for rows in generations[generation].values() for row in rows)
    completed, _ = run_to_the_end(env)
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    final_prices = stored_prices(database)
    assert final_prices == reference_prices
    assert len(final_prices) == len(set((row[0], row[1]) for row in final_prices)) == len(MARKETS) * DAYS
    assert query(database, SYMBOL_ROWS) == reference_symbols
    history = query(database, "SELECT status, symbols_ok, symbols_failed, finished_at IS NULL"
                              " FROM wombat_collect.collect_run"
                              " ORDER BY id")
    succeeded = ("succeeded", len(MARKETS), 0, False)
    assert history == [succeeded if kill.phase == "finished" else ("interrupted", 0, 0, True)
                       for kill in recorded] + [succeeded], report
    assert query(database, "SELECT count(*)"
                           " FROM wombat_collect.collect_run WHERE status = 'interrupted' AND error_summary"
                           " LIKE 'process gone without recording its end (killed?)%%'") == [(len(interrupted),)]
