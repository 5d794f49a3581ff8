"""`wombat-collect check`: the seed's manual troubleshooting as one read-only command.

Each check returns one CheckResult (name, state, message; results.py): what was
found and, where something is wrong, what to do. States and the exit code follow
`status` (0 ok, 1 warning, 2 critical: the worst check). Read-only: no migration
is applied, nothing is written to the database (the session is read-only) or to
disk (no lock file, no state directory, no embedded server started), except the
KIS token cache with --issue-token. Every check is bounded: the database by
connect_timeout and CHECK_STATEMENT_TIMEOUT, HTTP by the shared client's
timeouts, host commands by ops/systemd.py's COMMAND_TIMEOUT_SECONDS. A check that
cannot run says so ("skipped: ...") and the others still run.

The checks by concern: configuration.py (settings, env file, database choice,
lock and state directories), database.py, exchanges.py (reachability, clock,
KIS token), host.py (zone data, systemd timers, scheduler-engine); report.py
renders the report as text or JSON.
"""

from datetime import datetime, timezone

from wombat_collect.ops.check.configuration import (
    check_configuration,
    check_database_choice,
    check_env_file,
    check_lock_directory,
    check_state_directory,
)
from wombat_collect.ops.check.database import DATABASE_CHECKS, database_checks
from wombat_collect.ops.check.exchanges import exchange_check_names, exchange_checks
from wombat_collect.ops.check.host import TIMERS, check_systemd, check_time_zone
from wombat_collect.ops.check.report import render_json, render_text
from wombat_collect.ops.check.results import CheckReport, CheckResult, guarded, skipped

__all__ = ["TIMERS", "CheckReport", "CheckResult", "render_json", "render_text", "run_checks"]


def run_checks(env_file, read_variables, load_settings, exchanges, issue_token=False):
    """Given --env-file, the CLI's variable and settings loaders, exchange codes and --issue-token, return the report.

    read_variables() and load_settings() raise ConfigError on a bad env file or value.
    """
    report = CheckReport(datetime.now(timezone.utc))
    settings_box = []
    report.results += guarded("configuration", check_configuration, load_settings, settings_box)
    report.results += guarded("env file", check_env_file, env_file)
    if not settings_box:
        names = ["database", "connection", *DATABASE_CHECKS, *exchange_check_names(exchanges), "lock directory",
                 "state directory"]
        report.results += [skipped(name, "the configuration is invalid") for name in names]
    else:
        settings = settings_box[0]
        report.results += guarded("database", check_database_choice, read_variables, settings)
        report.results += database_checks(settings)
        report.results += exchange_checks(settings, exchanges, issue_token)
        report.results += guarded("lock directory", check_lock_directory, settings)
        report.results += guarded("state directory", check_state_directory, settings)
    report.results += guarded("time zone", check_time_zone)
    report.results += guarded("timers", check_systemd)
    return report
