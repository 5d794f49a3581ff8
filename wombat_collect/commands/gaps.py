"""The `gaps` command: list the missing candles of stored series, or repair them (--repair)."""

import logging
import sys
from datetime import datetime, timezone

import click

from wombat_collect.commands.common import (
    credential_problems,
    finish,
    load_collectors,
    offered_timeframes,
    open_database,
    ordered_timeframes,
    own_symbol_names,
    select_collectors,
)
from wombat_collect.errors import EXIT_FAILED, EXIT_OK
from wombat_collect.timeframes import NAMES as TIMEFRAME_NAMES


def run_gaps(app, params, exchange, timeframe_names, symbol_names, since, as_json, repair, recheck):
    """Given the App and the parsed options, report (or with `repair` refill) the gaps; exit 1 if any remain."""
    from wombat_collect import gaps as gap_job

    if since and since.date() > datetime.now(timezone.utc).date():
        raise click.BadParameter(f"{since.date()} is in the future", param_hint="--since")
    collectors = select_collectors(load_collectors(exchange), (), symbol_names)
    wanted = ordered_timeframes(timeframe_names) if timeframe_names else TIMEFRAME_NAMES
    offered = offered_timeframes(collectors, wanted, strict=bool(timeframe_names) and exchange != "all", job="gaps",
                                 quiet=not timeframe_names)
    requests = {collector.EXCHANGE.code: gap_job.ScanRequest(
        offered[collector.EXCHANGE.code], tuple(own_symbol_names(collector, symbol_names)),
        since.replace(tzinfo=timezone.utc) if since else None, recheck) for collector in collectors}
    if as_json and logging.getLogger().level == logging.INFO:
        logging.getLogger().setLevel(logging.WARNING)  # stdout is the JSON's alone
    if repair:
        run_repairs(app, params, collectors, requests, as_json)
    dsn, exchange_ids = open_database(app, collectors)
    found = gap_job.scan_exchanges(dsn, exchange_ids, collectors, requests)
    show_gaps(found, {code: request.timeframes for code, request in requests.items()}, as_json)
    sys.exit(EXIT_FAILED if found else EXIT_OK)


def show_gaps(found, scanned, as_json):
    """Given every Gap and {exchange: timeframes scanned}, print the report (text or JSON)."""
    import json

    from wombat_collect import gaps as gap_job

    summary = gap_job.summary_line(found, scanned)
    if as_json:
        click.echo(json.dumps({"gaps": [gap_job.gap_dict(gap) for gap in found], "summary": summary,
                               "scanned": {code: list(names) for code, names in scanned.items()}}, indent=2))
        return
    for gap in found:
        click.echo(gap_job.describe(gap))
    click.echo(summary)


def run_repairs(app, params, collectors, requests, as_json):
    """Given the exchanges' ScanRequests, repair their gaps under the prices lock (job `repair`); exit.

    Exit 0 when every range was stored or confirmed empty, else the worst exchange's code.
    """
    from wombat_collect import gaps as gap_job
    from wombat_collect.jobs.results import JobResult, PriceOptions
    from wombat_collect.ops.runner import JobRequest, run_job

    settings = app.settings()
    missing = credential_problems(collectors, settings)
    clients = {collector.EXCHANGE.code: (collector, collector.open_client(settings)) for collector in collectors}
    options = {code: PriceOptions(workers=settings.workers) for code in clients}
    repairs = {}
    request = JobRequest(gap_job.JOB, tuple(clients), dict(params), window="missing ranges",
                         lock_job=gap_job.LOCK_JOB)

    def work(code, dsn, exchange_id):
        collector, client = clients[code]
        if code in missing:
            return JobResult(gap_job.JOB, code, fatal=missing[code])
        result, repairs[code] = gap_job.repair_exchange(dsn, exchange_id, collector, client, requests[code],
                                                        options[code])
        return result

    outcomes = run_job(settings, request, lambda: open_database(app, collectors), work, options)
    show_repairs([repair for code in clients for repair in repairs.get(code, [])], as_json)
    finish(outcomes)


def show_repairs(repairs, as_json):
    """Given every Repair, print the report (text or JSON)."""
    import json

    from wombat_collect import gaps as gap_job

    summary = gap_job.repair_summary(repairs)
    if as_json:
        click.echo(json.dumps({"repairs": [gap_job.repair_dict(repair) for repair in repairs], "summary": summary},
                              indent=2))
        return
    for repair in repairs:
        click.echo(gap_job.repair_line(repair))
    click.echo(summary)
