"""collect_prices (jobs/prices.py): its loop, and its timeframes with the clock pinned."""

from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import query, upbit_env
from tests.fakes.upbit_server import CANDLES_PATH, make_upbit_candles

DAYS = 300
LAST_DAY = datetime.now(timezone.utc).date() - timedelta(days=1)  # closed however long the test runs
FIRST_DAY = LAST_DAY - timedelta(days=DAYS - 1)


def test_collect_prices_stops_the_queued_symbols_when_its_loop_fails(database, fake_upbit):
    """Anything escaping the loop over finished symbols sets the stop event, so the queued
    symbols end at once instead of each being fetched while the executor shuts down. Every
    candle request after the first is held until the stop event is set (5 s at most: without
    the stop, the 38 queued symbols would be fetched, slowly, and counted)."""
    import itertools
    import threading

    from wombat_collect import jobs
    from wombat_collect.collectors import upbit
    from wombat_collect.config import load_settings

    for number in range(40):
        fake_upbit.set_candles(f"KRW-Q{number:02d}", make_upbit_candles(f"KRW-Q{number:02d}", FIRST_DAY, LAST_DAY))
    env = upbit_env(database, fake_upbit)
    from tests.conftest import run_cli

    assert run_cli("symbols", "--exchange", "upbit", env=env).exit_code == 0
    exchange_id = query(database, "SELECT id FROM exchange WHERE code = 'upbit'")[0][0]
    targets = jobs.select_symbols(database, exchange_id)
    stop, release, arrivals = threading.Event(), threading.Event(), itertools.count()
    fake_upbit.gate(lambda request: request.path == CANDLES_PATH and next(arrivals) > 0, release, 5)
    threading.Thread(target=lambda: release.set() if stop.wait(30) else None, daemon=True).start()
    fake_upbit.clear_requests()

    def broken_progress(count):
        raise RuntimeError("a bug in the loop")

    options = jobs.PriceOptions(workers=2, stop_event=stop, progress=broken_progress)
    client = upbit.open_client(load_settings({"UPBIT_API_URL": fake_upbit.url, "UPBIT_RATE_LIMIT": "1000"}))
    with pytest.raises(RuntimeError, match="a bug in the loop"):
        start = datetime(LAST_DAY.year, LAST_DAY.month, LAST_DAY.day, tzinfo=timezone.utc) - timedelta(days=3)
        jobs.collect_prices(database, exchange_id, upbit, client,
                            [jobs.PriceTask(item, "1d", start) for item in targets], options)
    assert fake_upbit.count(path=CANDLES_PATH) <= 1 + options.workers


# --------------------------------------------------------------------------- timeframes (the clock pinned)

def collect_upbit_at(dsn, fake, timeframes, now, window=None):
    """Given a DSN, a FakeUpbit, timeframes, a pinned `now` and a Window (None: incremental),
    run one prices job of all markets."""
    from wombat_collect import jobs
    from wombat_collect.collectors import upbit
    from wombat_collect.config import load_settings

    client = upbit.open_client(load_settings({"UPBIT_API_URL": fake.url, "UPBIT_RATE_LIMIT": "1000"}))
    exchange_id = jobs.prepare_database(dsn, [upbit])["upbit"]
    if not jobs.select_symbols(dsn, exchange_id):
        jobs.collect_symbols(dsn, exchange_id, upbit, client)
    targets = jobs.select_symbols(dsn, exchange_id)
    options = jobs.PriceOptions(now=now, workers=2)
    tasks = jobs.plan_tasks(dsn, targets, window or jobs.Window(), timeframes, 365, now)
    return jobs.collect_prices(dsn, exchange_id, upbit, client, tasks, options)


def test_collect_prices_leaves_a_running_week_and_minute_out_then_stores_them_once_closed(database, fake_upbit):
    from tests.fakes.upbit_server import make_upbit_minute_candles, make_upbit_period_candles

    minutes = make_upbit_minute_candles("KRW-BTC", 1, datetime(2026, 11, 25, 10, 0), datetime(2026, 11, 25, 10, 31))
    weeks = make_upbit_period_candles("KRW-BTC", [datetime(2026, 11, day).date() for day in (2, 9, 16, 23)])
    fake_upbit.set_candles("KRW-BTC", minutes, "minutes/1")  # 10:00 .. 10:30, the last running at 10:30:20
    fake_upbit.set_candles("KRW-BTC", weeks, "weeks")  # the week of Monday 23 November runs until the 30th
    running_at = datetime(2026, 11, 25, 10, 30, 20, tzinfo=timezone.utc)
    result = collect_upbit_at(database, fake_upbit, ("1m", "1w"), running_at)
    assert result.status == "succeeded", result.errors
    stored = query(database, "SELECT timeframe, min(timestamp), max(timestamp), count(*) FROM pricedata"
                             " GROUP BY 1 ORDER BY 1")
    utc = timezone.utc
    assert stored == [("1m", datetime(2026, 11, 25, 10, 0, tzinfo=utc), datetime(2026, 11, 25, 10, 29, tzinfo=utc), 30),
                      ("1w", datetime(2026, 11, 2, tzinfo=utc), datetime(2026, 11, 16, tzinfo=utc), 3)]
    assert query(database, "SELECT timeframe, range_end FROM wombat_collect.fetched_range ORDER BY 1") == [
        ("1m", datetime(2026, 11, 25, 10, 30, tzinfo=utc)), ("1w", datetime(2026, 11, 23, tzinfo=utc))]
    closed_at = datetime(2026, 11, 30, 0, 0, 5, tzinfo=utc)
    assert collect_upbit_at(database, fake_upbit, ("1m", "1w"), closed_at).status == "succeeded"
    stored = query(database, "SELECT timeframe, min(timestamp), max(timestamp), count(*) FROM pricedata"
                             " GROUP BY 1 ORDER BY 1")
    assert stored == [("1m", datetime(2026, 11, 25, 10, 0, tzinfo=utc), datetime(2026, 11, 25, 10, 30, tzinfo=utc), 31),
                      ("1w", datetime(2026, 11, 2, tzinfo=utc), datetime(2026, 11, 23, tzinfo=utc), 4)]


@pytest.mark.parametrize(("now", "weeks"), [
    (datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc), [(datetime(2026, 11, 16, tzinfo=timezone.utc),)]),
    (datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc), []),  # Thursday: 3 days back is this week's Monday
    (datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc), []),
], ids=["Wednesday", "Thursday", "Sunday"])
def test_collect_prices_days_back_stores_only_the_closed_weeks_it_reaches(database, fake_upbit, now, weeks):
    from tests.fakes.upbit_server import make_upbit_period_candles
    from wombat_collect.jobs import Window

    mondays = [datetime(2026, 11, day).date() for day in (2, 9, 16, 23)]
    fake_upbit.set_candles("KRW-BTC", make_upbit_period_candles("KRW-BTC", mondays), "weeks")
    result = collect_upbit_at(database, fake_upbit, ("1w",), now, Window("days_back", days=3))
    assert result.status == "succeeded", result.errors
    assert query(database, "SELECT timestamp FROM pricedata WHERE timeframe = '1w' ORDER BY 1") == weeks
    ranges = query(database, "SELECT range_start, range_end FROM wombat_collect.fetched_range")
    assert ranges == ([(weeks[0][0], datetime(2026, 11, 23, tzinfo=timezone.utc))] if weeks else [])
