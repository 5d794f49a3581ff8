"""crontab/supercronic, the container's schedule: its jobs in Korean time, the same firings as the systemd timers,
the cron.d file and the CronJobs over a year of days (the quotes over three weeks of minutes), its command lines
run for real in the image's environment, and the container crontab example of docs/development.md."""

from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import query
from tests.containers_support import (
    HOST_ZONES,
    JOBS,
    MOVED_JOBS,
    QUOTES,
    QUOTES_END,
    QUOTES_HOST_ZONES,
    QUOTES_START,
    SEOUL,
    SUPERCRONIC_CRONTAB,
    assert_everything_collected,
    command_arguments,
    cron_instants,
    crond_firings,
    crond_quotes_firings,
    cronjob_firings,
    daily_jobs,
    expected_firings,
    expected_quotes_firings,
    install_upbit_candles,
    kis_codes,
    parse_supercronic,
    quote_jobs,
    run_supercronic_jobs,
    serve_fake_kis,
    supercronic_firings,
    systemd_firings,
    systemd_quotes_firings,
)
from tests.ops_support import DEVELOPMENT_DOC, document_code_blocks, read_crontab


@pytest.fixture
def fake_kis():
    yield from serve_fake_kis()


@pytest.fixture
def upbit_candles(fake_upbit):
    return install_upbit_candles(fake_upbit)


# --- crontab/supercronic ---------------------------------------------------

def test_supercronic_crontab_runs_the_three_jobs_in_korean_time():
    environment, jobs = parse_supercronic()
    assert environment == {"CRON_TZ": "Asia/Seoul"}
    assert sorted(command_arguments(command) for _, command in daily_jobs(jobs)) == sorted(JOBS)
    for schedule, command in daily_jobs(jobs):
        hour, minute = JOBS[command_arguments(command)].split(":")
        assert schedule == f"{int(minute)} {int(hour)} * * *"


def test_supercronic_quotes_run_every_minute_upbit_and_during_krx_sessions_kis():
    _, jobs = parse_supercronic()
    week = (datetime(2025, 3, 3, tzinfo=SEOUL), datetime(2025, 3, 10, tzinfo=SEOUL))  # Monday to Monday
    fired = {arguments: [] for arguments in QUOTES}
    for schedule, command in jobs:
        if command_arguments(command) in QUOTES:
            fired[command_arguments(command)] += cron_instants(schedule, "Asia/Seoul", *week)
    assert len(fired["quotes --exchange upbit"]) == len(set(fired["quotes --exchange upbit"])) == 7 * 24 * 60
    kis = sorted(moment.astimezone(SEOUL) for moment in fired["quotes --exchange kis"])
    session = [(hour, minute) for hour in range(8, 19) for minute in range(60) if (8, 30) <= (hour, minute) <= (18, 0)]
    assert [(moment.weekday(), moment.hour, moment.minute) for moment in kis] == [
        (day, hour, minute) for day in range(5) for hour, minute in session]


@pytest.mark.parametrize("host_zone", HOST_ZONES)
def test_schedules_fire_the_same_commands_at_the_same_instants(host_zone):
    expected = expected_firings()
    assert len(expected) == 3 * 365
    assert supercronic_firings(host_zone) == expected
    assert systemd_firings(host_zone) == expected
    assert crond_firings(host_zone) == expected
    assert cronjob_firings(host_zone) == expected


@pytest.mark.parametrize("host_zone", QUOTES_HOST_ZONES)
def test_schedules_fire_the_same_quotes_at_the_same_instants(host_zone):
    expected = expected_quotes_firings()
    # 21 days of Upbit minutes; 15 weekdays of KIS minutes 08:30-08:59, 09:00-17:59 and 18:00.
    assert len(expected) == 21 * 24 * 60 + 15 * (30 + 9 * 60 + 1)
    window = (QUOTES_START, QUOTES_END)
    assert supercronic_firings(host_zone, select=quote_jobs, window=window) == expected
    assert systemd_quotes_firings(host_zone) == expected
    assert crond_quotes_firings(host_zone) == expected
    assert cronjob_firings(host_zone, wanted=QUOTES, window=window) == expected


def test_schedule_comparison_catches_a_missing_zone(tmp_path):
    # Without CRON_TZ and without the image's TZ, supercronic would read the
    # times in UTC: 9 hours late, which the comparison must see.
    bare = tmp_path / "supercronic"
    bare.write_text(SUPERCRONIC_CRONTAB.read_text(encoding="utf-8").replace("CRON_TZ=Asia/Seoul\n", ""))
    firings = supercronic_firings("UTC", crontab=bare, image_zone={"TZ": ""})
    assert firings != expected_firings()
    assert {moment.strftime("%H:%M") for moment, _ in firings} == {"00:00", "00:02", "09:05"}


def test_supercronic_commands_collect_everything_in_the_image_environment(
        database, fake_upbit, upbit_candles, fake_kis, tmp_path):
    env, results = run_supercronic_jobs(database, fake_upbit, fake_kis, tmp_path, quotes=True)
    assert [(command, result.returncode) for command, result in results] == [
        ("wombat-collect symbols --exchange all", 0), ("wombat-collect prices --exchange all", 0),
        ("wombat-collect prices --exchange upbit", 0), ("wombat-collect quotes --exchange upbit", 0)] + [
        ("wombat-collect quotes --exchange kis", 0)] * 3, [result.stderr[-2000:] for _, result in results]
    assert_everything_collected(database, fake_kis, upbit_candles,
                                [("quotes", "upbit", "succeeded")] + [("quotes", "kis", "succeeded")] * 3)
    assert query(database, "SELECT e.code, count(*) FROM realtime_prices r JOIN symbol s ON s.id = r.symbol_id"
                           " JOIN exchange e ON e.id = s.exchange_id GROUP BY 1 ORDER BY 1") == [
        ("kis", len(kis_codes())), ("upbit", len(upbit_candles))]
    # The KIS token cache and the locks are in the volume.
    state = Path(env["WOMBAT_STATE_DIR"])
    assert len(list((state / "kis-tokens").glob("*.json"))) == 1
    assert {path.name for path in state.glob("*.lock")} >= {"wombat-collect-prices-kis.lock"}


def test_readme_container_crontab_line_moves_prices_to_0130(tmp_path):
    [line] = document_code_blocks(DEVELOPMENT_DOC, "Container crontab: a Compose override", "crontab")
    [(schedule, command)] = [(job["schedule"], job["command"])
                             for job in read_crontab_text(tmp_path / "line", line, with_user=False)]
    original = SUPERCRONIC_CRONTAB.read_text(encoding="utf-8").splitlines()
    wanted = f"wombat-collect {command_arguments(command)}"
    [prices] = [number for number, text in enumerate(original) if text.endswith(wanted)]
    changed = tmp_path / "supercronic.local"
    changed.write_text("\n".join(original[:prices] + [line.strip()] + original[prices + 1:]) + "\n", encoding="utf-8")
    for host_zone in ("UTC", "America/New_York"):  # croniter, in CRON_TZ
        assert supercronic_firings(host_zone, crontab=changed) == expected_firings(MOVED_JOBS)


def read_crontab_text(path, text, with_user):
    """Given a scratch path and crontab lines, return their jobs as read_crontab reads them."""
    path.write_text(text, encoding="utf-8")
    return read_crontab(path, with_user)[1]
