"""The host checks: the Asia/Seoul zone data, the wombat-collect systemd timers and the backend's
scheduler-engine.service (asked of `systemctl show` through ops/systemd.py)."""

import os
from pathlib import Path

from wombat_collect.ops import systemd
from wombat_collect.ops.check.results import CRITICAL, OK, WARNING, result, skipped

ZONE = "Asia/Seoul"
TZIF_MAGIC = b"TZif"
TIMERS = ("wombat-collect-symbols.timer", "wombat-collect-prices.timer", "wombat-collect-prices-upbit.timer",
          "wombat-collect-quotes-upbit.timer", "wombat-collect-quotes-kis.timer")
BACKEND_SCHEDULER = "scheduler-engine.service"
UNIT_PROPERTIES = ("LoadState", "UnitFileState", "ActiveState", "NextElapseUSecRealtime")


def check_time_zone():
    """Return the CheckResult of the Asia/Seoul zone data the timers and the crontab rely on.

    Looked up where the C library looks ($TZDIR), else in Python's zoneinfo.TZPATH
    (which honours $PYTHONTZPATH); Python's own tzdata package does not count.
    """
    import zoneinfo

    tzdir = os.environ.get("TZDIR", "").strip()
    directories = [tzdir] if tzdir else list(zoneinfo.TZPATH)
    for directory in directories:
        path = Path(directory) / ZONE
        try:
            with open(path, "rb") as stream:
                if stream.read(len(TZIF_MAGIC)) == TZIF_MAGIC:
                    return result("time zone", OK, f"{ZONE} zone data present ({path})")
        except OSError:
            continue
    where = f"{tzdir} ($TZDIR)" if tzdir else ", ".join(directories)
    return result("time zone", CRITICAL, f"no {ZONE} zone data in {where}: the systemd timers and the crontab "
                                         "read it; install the tzdata package")


def check_systemd():
    """Return the CheckResults of the wombat-collect timers and the backend's scheduler-engine.service.

    Asked of `systemctl show` where systemctl exists and systemd runs; else both say why they were skipped.
    """
    units, reason = systemd_units()
    if units is None:
        return [skipped("timers", reason, OK), skipped("scheduler-engine", reason, OK)]
    return [timers_verdict(units), scheduler_verdict(units.get(BACKEND_SCHEDULER, {}))]


def systemd_units():
    """Return ({unit: {property: value}}, None) from `systemctl show`, or (None, why it cannot be asked)."""
    try:
        shown = systemd.show([*TIMERS, BACKEND_SCHEDULER], UNIT_PROPERTIES)
    except systemd.SystemdError as error:
        return None, "systemd is not running here" if error.systemd_absent else str(error)
    units = {unit: {name: values[-1] for name, values in properties.items()} for unit, properties in shown.items()}
    return units, None


def timers_verdict(units):
    """Given the units' properties, return the 'timers' CheckResult: installed timers enabled, with next runs."""
    installed = [name for name in TIMERS if units.get(name, {}).get("LoadState") == "loaded"]
    if not installed:
        return result("timers", OK, "no wombat-collect timers installed (scheduled by cron, Compose or Kubernetes?)")
    idle = [name for name in installed
            if units[name].get("UnitFileState") != "enabled" or units[name].get("ActiveState") != "active"]
    if idle:
        states = ", ".join(f"{name} {units[name].get('UnitFileState')}/{units[name].get('ActiveState')}"
                           for name in idle)
        return result("timers", WARNING, f"{states}; systemctl enable --now {' '.join(idle)}")
    nexts = "; ".join(f"{name.removeprefix('wombat-collect-').removesuffix('.timer')} next "
                      f"{units[name].get('NextElapseUSecRealtime') or 'n/a'}" for name in installed)
    return result("timers", OK, f"{len(installed)} enabled: {nexts}")


def scheduler_verdict(properties):
    """Given scheduler-engine.service's properties, return its CheckResult: active is a WARNING."""
    if properties.get("LoadState") != "loaded":
        return result("scheduler-engine", OK, f"{BACKEND_SCHEDULER} is not installed here")
    active = properties.get("ActiveState", "unknown")
    if active in ("active", "activating", "reloading"):
        return result("scheduler-engine", WARNING, f"the backend's {BACKEND_SCHEDULER} is {active}: it and "
                                                   "wombat-collect would both collect; systemctl disable --now "
                                                   f"{BACKEND_SCHEDULER}")
    return result("scheduler-engine", OK, f"{BACKEND_SCHEDULER} is {active}")
