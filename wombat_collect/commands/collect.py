"""The collecting commands: `symbols`, `prices` (its window, one exchange's run) and `quotes`."""

import logging
from datetime import date, datetime, timezone

import click

from wombat_collect.commands.common import (
    credential_problems,
    finish,
    load_collectors,
    offered_timeframes,
    open_database,
    ordered_timeframes,
    own_symbol_names,
    progress_bar,
    select_collectors,
)

EARLIEST_SINCE = date(1980, 1, 1)  # no candle before it passes validation (validate.EARLIEST_SANE_DATE)

logger = logging.getLogger("wombat_collect")


def run_symbols(app, params, exchange, wait):
    """Given the App and the parsed options, run the symbols job for each exchange; exit."""
    from wombat_collect.jobs.symbols import collect_symbols
    from wombat_collect.ops.runner import JobRequest, run_job

    collectors = load_collectors(exchange)
    settings = app.settings()
    clients = {collector.EXCHANGE.code: (collector, collector.open_client(settings)) for collector in collectors}
    request = JobRequest("symbols", tuple(clients), dict(params), wait)

    def work(code, dsn, exchange_id):
        collector, client = clients[code]
        return collect_symbols(dsn, exchange_id, collector, client)

    finish(run_job(settings, request, lambda: open_database(app, collectors), work))


def run_prices(app, params, exchange, markets, symbol_names, timeframe_names, days_back, since, full,
               include_open, dry_run, wait, worker=False):
    """Given the App and the parsed options, run the prices job for each exchange; exit.

    A --worker takes the job's locks in shared mode, beside the other backfill workers.
    """
    from wombat_collect.jobs.results import JobResult, PriceOptions
    from wombat_collect.ops.runner import JobRequest, run_job

    window = parse_window(days_back, since.date() if since else None, full)
    check_worker(worker, window, dry_run)
    collectors = select_collectors(load_collectors(exchange), markets, symbol_names)
    settings = app.settings()
    wanted = ordered_timeframes(timeframe_names) if timeframe_names else settings.timeframes
    offered = offered_timeframes(collectors, wanted, strict=bool(timeframe_names) and exchange != "all")
    missing = credential_problems(collectors, settings)
    clients = {collector.EXCHANGE.code: (collector, collector.open_client(settings)) for collector in collectors}
    options = {code: PriceOptions(include_open=include_open, dry_run=dry_run, workers=settings.workers)
               for code in clients}
    arguments = {**params, "timeframes": {code: list(names) for code, names in offered.items()}}
    request = JobRequest("prices", tuple(clients), arguments, wait,
                         f"{window.describe()}, timeframes {' '.join(wanted)}{', backfill worker' if worker else ''}",
                         dry_run, shared_lock=worker)

    def work(code, dsn, exchange_id):
        collector, client = clients[code]
        if code in missing:
            return JobResult("prices", code, fatal=missing[code])
        own_markets = [market for market in markets if market in collector.MARKETS]
        own_symbols = own_symbol_names(collector, symbol_names)
        if worker:
            return collect_exchange_backfill(dsn, exchange_id, collector, client, own_markets, own_symbols, window,
                                             offered[code], options[code])
        return collect_exchange_prices(app, dsn, exchange_id, collector, client, own_markets, own_symbols, window,
                                       offered[code], options[code], show_progress=len(clients) == 1)

    finish(run_job(settings, request, lambda: open_database(app, collectors), work, options))


def collect_exchange_prices(app, dsn, exchange_id, collector, client, markets, symbol_names, window,
                            timeframe_names, options, show_progress=True):
    """Given one exchange's collector, collect its listing if none is stored, then its prices of each timeframe.

    A terminal progress bar is shown when show_progress (one exchange at a time).
    """
    from wombat_collect.jobs.planning import plan_tasks
    from wombat_collect.jobs.prices import collect_prices

    listing, targets = listing_and_targets(dsn, exchange_id, collector, client, markets, symbol_names)
    if listing is not None and listing.fatal:
        return listing
    logger.info("prices %s: %d symbols, timeframes %s, %s, %s", collector.EXCHANGE.code, len(targets),
                " ".join(timeframe_names) or "none offered", window.describe(),
                "dry run" if options.dry_run else "writing")
    tasks = plan_tasks(dsn, targets, window, timeframe_names, app.settings().backfill_days, options.now,
                       refetch_newest=collector.REBASE_ON_CHANGE)
    with progress_bar(len(tasks) if show_progress else 0, f"prices {collector.EXCHANGE.code}") as advance:
        options.progress = advance
        result = collect_prices(dsn, exchange_id, collector, client, tasks, options)
    return with_listing(result, timeframe_names, listing)


def listing_and_targets(dsn, exchange_id, collector, client, markets, symbol_names):
    """Given one exchange's collector and the selection, collect its listing if none is stored.

    Return (the listing's JobResult or None, the selected StoredSymbols); when the
    listing failed, (a failed prices JobResult, []).
    """
    from wombat_collect.jobs.results import JobResult
    from wombat_collect.jobs.symbols import collect_listing_if_empty, select_symbols

    listing = collect_listing_if_empty(dsn, exchange_id, collector, client)
    if listing is not None and listing.fatal:
        return JobResult("prices", collector.EXCHANGE.code, fatal=f"no symbols stored, and {listing.fatal}"), []
    return listing, select_symbols(dsn, exchange_id, markets, symbol_names)


def with_listing(result, timeframe_names, listing):
    """Given a prices JobResult, its timeframes and the listing's JobResult (or None), return it with both noted."""
    result.timeframes = timeframe_names
    if listing is not None:
        result.errors.extend(f"listing {error}" for error in listing.errors)
    return result


def collect_exchange_backfill(dsn, exchange_id, collector, client, markets, symbol_names, window, timeframe_names,
                              options):
    """Given one exchange's collector and a --since window, collect its listing if none is stored, then work
    on the shared backfill of that window (jobs/backfill.py) as one of its workers."""
    from wombat_collect.jobs.backfill import backfill_request, collect_backfill

    listing, targets = listing_and_targets(dsn, exchange_id, collector, client, markets, symbol_names)
    if listing is not None and listing.fatal:
        return listing
    request = backfill_request(window.since, timeframe_names, markets, symbol_names)
    result = collect_backfill(dsn, collector, client, targets, timeframe_names, request, window.since, options)
    return with_listing(result, timeframe_names, listing)


def check_worker(worker, window, dry_run):
    """Given --worker, the Window and --dry-run, raise click.UsageError if a worker lacks --since or is a dry run."""
    if worker and window.kind != "since":
        raise click.UsageError("--worker needs --since (the backfill's first day)")
    if worker and dry_run:
        raise click.UsageError("--worker and --dry-run exclude each other")


def parse_window(days_back, since, full):
    """Given the window flags, return a jobs.Window. Raise click.UsageError on a bad combination."""
    from wombat_collect.jobs.planning import Window

    chosen = [name for name, value in (("--days-back", days_back), ("--since", since), ("--full", full))
              if value]
    if len(chosen) > 1:
        raise click.UsageError(f"{' and '.join(chosen)} exclude each other")
    if since and since > datetime.now(timezone.utc).date():
        raise click.BadParameter(f"{since} is in the future", param_hint="--since")
    if since and since < EARLIEST_SINCE:
        raise click.BadParameter(f"{since} is before {EARLIEST_SINCE} (use --full for all history)",
                                 param_hint="--since")
    if days_back:
        return Window("days_back", days=days_back)
    if since:
        return Window("since", since=since)
    return Window("full") if full else Window()


def run_quotes(app, params, exchange):
    """Given the App and the parsed options, store the latest quotes of each exchange; exit."""
    from wombat_collect import quotes as quote_job
    from wombat_collect.jobs.results import JobResult
    from wombat_collect.ops.runner import JobRequest, run_job

    collectors = load_collectors(exchange)
    settings = app.settings()
    missing = credential_problems(collectors, settings)
    clients = {collector.EXCHANGE.code: (collector, collector.open_client(settings)) for collector in collectors}
    request = JobRequest(quote_job.JOB, tuple(clients), dict(params), window="latest quotes")

    def work(code, dsn, exchange_id):
        collector, client = clients[code]
        if code in missing:
            return JobResult(quote_job.JOB, code, fatal=missing[code])
        return quote_job.collect_quotes(dsn, exchange_id, collector, client)

    finish(run_job(settings, request, lambda: open_database(app, collectors), work))
