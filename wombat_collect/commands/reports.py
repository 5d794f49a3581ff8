"""The read-only commands: `status`, `check` and `schedule`."""

import logging
import sys
from datetime import datetime, timezone

import click

from wombat_collect.collectors import EXCHANGE_CODES
from wombat_collect.commands.common import import_collector, open_database, ordered_timeframes
from wombat_collect.errors import WombatError

EXIT_CRITICAL = 2  # `status`: monitoring-plugin CRITICAL


def run_status(app, exchange, as_json, max_age, lag_days, quote_max_age, timeframe_names):
    """Given the App and the parsed options, print each job's health; exit 0 ok, 1 warning, 2 critical."""
    from wombat_collect.logging_setup import redact
    from wombat_collect.ops.status import read_report, render_json, render_text

    codes = EXCHANGE_CODES if exchange == "all" else (exchange,)
    if logging.getLogger().level == logging.INFO:
        logging.getLogger().setLevel(logging.WARNING)  # stdout is the report's (and --json's) alone
    try:
        collectors = [collector for collector in map(import_collector, EXCHANGE_CODES) if collector]
        dsn, _ = open_database(app, collectors)
        offered = {collector.EXCHANGE.code: tuple(collector.TIMEFRAMES) for collector in collectors}
        report = read_report(dsn, codes, max_age, lag_days, quote_max_age, ordered_timeframes(timeframe_names),
                             offered)
    except WombatError as error:
        click.echo(redact(f"WOMBAT-COLLECT CRITICAL - {error}"))
        sys.exit(EXIT_CRITICAL)
    click.echo(render_json(report) if as_json else render_text(report))
    sys.exit(report.exit_code)


def run_check(app, exchange, as_json, issue_token):
    """Given the App and the parsed options, print the diagnosis; exit 0 ok, 1 warning, 2 critical."""
    from wombat_collect.ops.check import render_json, render_text, run_checks

    codes = EXCHANGE_CODES if exchange == "all" else (exchange,)
    if logging.getLogger().level == logging.INFO:
        logging.getLogger().setLevel(logging.WARNING)  # stdout is the report's (and --json's) alone
    report = run_checks(app.env_file, app.variables, app.settings, codes, issue_token)
    click.echo(render_json(report) if as_json else render_text(report))
    sys.exit(report.exit_code)


def run_schedule(source, crontab, now_text):
    """Given the parsed options, print the installed schedule's next runs."""
    from wombat_collect.ops.schedule import read_schedule, render

    click.echo(render(read_schedule(source, crontab, parse_now(now_text))))


def parse_now(text):
    """Given --now (ISO 8601 with an offset, or None for the current time), return an aware datetime.

    Raise click.BadParameter if it is not ISO 8601 or has no offset.
    """
    if text is None:
        return datetime.now(timezone.utc)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time", param_hint="--now") from None
    if moment.utcoffset() is None:
        raise click.BadParameter(f"{text!r} has no UTC offset (e.g. +09:00)", param_hint="--now")
    return moment
