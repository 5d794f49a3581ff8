"""`wombat-collect check`, the host lines (wombat_collect/ops/check/host.py): the zone data, and the systemd
timers and scheduler-engine.service through a stand-in `systemctl` on PATH."""

from pathlib import Path

import pytest

from tests.check_support import HEALTHY_UNITS, check, fake_systemctl, states
from wombat_collect.ops.check import TIMERS

pytest_plugins = ("tests.check_fixtures",)
REPOSITORY = Path(__file__).resolve().parent.parent


def test_check_missing_zone_data_is_critical(migrated, env_file, tmp_path):
    empty = tmp_path / "zoneinfo"
    empty.mkdir()
    code, found, _ = check(dict(migrated, TZDIR=str(empty)), "--exchange", "upbit", env_file=env_file)
    assert code == 2
    assert found["time zone"] == ("CRITICAL", f"no Asia/Seoul zone data in {empty} ($TZDIR): the systemd timers and "
                                              "the crontab read it; install the tzdata package")
    assert [name for name, state in states(found).items() if state != "OK"] == ["time zone"]


def test_check_active_scheduler_engine_and_disabled_timer_warn(migrated, env_file, fake_bin):
    units = HEALTHY_UNITS.replace("Id=wombat-collect-prices.timer\nLoadState=loaded\nUnitFileState=enabled\n"
                                  "ActiveState=active", "Id=wombat-collect-prices.timer\nLoadState=loaded\n"
                                  "UnitFileState=disabled\nActiveState=inactive")
    units = units.replace("LoadState=not-found\nUnitFileState=\nActiveState=inactive",
                          "LoadState=loaded\nUnitFileState=enabled\nActiveState=active")
    fake_systemctl(fake_bin, units)
    code, found, _ = check(migrated, "--exchange", "upbit", env_file=env_file)
    assert code == 1
    assert found["timers"] == ("WARNING", "wombat-collect-prices.timer disabled/inactive; systemctl enable --now "
                                          "wombat-collect-prices.timer")
    assert found["scheduler-engine"] == ("WARNING", "the backend's scheduler-engine.service is active: it and "
                                                    "wombat-collect would both collect; systemctl disable --now "
                                                    "scheduler-engine.service")


@pytest.mark.parametrize(("stdout", "stderr", "exit_code", "message"), [
    ("", "System has not been booted with systemd as init system (PID 1). Can't operate.\n"
         "Failed to connect to bus: Host is down", 1, "skipped: systemd is not running here"),
    ("Id=scheduler-engine.service\nLoadState=not-found", "", 0,
     "no wombat-collect timers installed (scheduled by cron, Compose or Kubernetes?)"),
])
def test_check_timers_without_systemd_or_units_are_ok(migrated, env_file, fake_bin, stdout, stderr, exit_code,
                                                      message):
    fake_systemctl(fake_bin, stdout, stderr, exit_code)
    code, found, _ = check(migrated, "--exchange", "upbit", env_file=env_file)
    assert code == 0
    assert found["timers"] == ("OK", message)


def test_timers_are_the_shipped_timer_units():
    assert sorted(TIMERS) == sorted(path.name for path in (REPOSITORY / "systemd").glob("*.timer"))
