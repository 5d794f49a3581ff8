"""The `wombat-collect` command: parses options and orchestrates jobs, nothing more.

Flow: bin/* -> cli -> jobs -> collectors/* (HTTP) and db/* (SQL).
"""

import contextlib
import logging
import math
import sys
from datetime import date, datetime, timezone

import click

from wombat_collect import __version__
from wombat_collect.collectors import EXCHANGE_CODES
from wombat_collect.errors import EXIT_FAILED, EXIT_OK, EXIT_SIGINT, ConfigError, WombatError, describe_unexpected
from wombat_collect.timeframes import NAMES as TIMEFRAME_NAMES

EXIT_CRITICAL = 2  # `status`: monitoring-plugin CRITICAL

EXCHANGE_CHOICES = ("all", *EXCHANGE_CODES)  # the registry: collectors.EXCHANGE_CODES
MAX_DAYS_BACK = 36500  # a hundred years: more than any exchange has, less than `date` can subtract
NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2
EARLIEST_SINCE = date(1980, 1, 1)  # no candle before it passes validation (validate.EARLIEST_SANE_DATE)

logger = logging.getLogger("wombat_collect")


class App:
    """The per-invocation state: the env file and, once read, the settings."""

    def __init__(self, env_file):
        self.env_file = env_file
        self._settings = None
        self._variables = None

    def variables(self):
        """Return the merged variables of the environment and the env file, read on first use.

        Raise ConfigError if a named env file is missing, unreadable or untrusted.
        """
        if self._variables is None:
            from wombat_collect.config import read_environment

            self._variables = read_environment(self.env_file)
        return self._variables

    def settings(self):
        """Return the Settings, reading them on first use. Raise ConfigError if malformed."""
        if self._settings is None:
            from wombat_collect.config import load_settings
            from wombat_collect.db.connection import use_timeouts
            from wombat_collect.logging_setup import register_secret, register_url_secrets

            variables = self.variables()
            self._settings = load_settings(variables)
            use_timeouts(self._settings)
            for name in ("POSTGRES_PASSWORD", "KIS_APP_KEY", "KIS_APP_SECRET"):
                register_secret(variables.get(name))
            register_secret(_dsn_password(self._settings.database_url))
            register_url_secrets((variables.get("DATABASE_URL") or "").strip(), whole=False)
            register_url_secrets(self._settings.ping_url)
            register_url_secrets(self._settings.sentry_dsn)
        return self._settings


class FiniteFloatRange(click.FloatRange):
    """A click.FloatRange that also refuses nan and inf (which would wait or age forever)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class WombatGroup(click.Group):
    """A click group that turns WombatError into one log line and its exit code, and a usage error into one line.

    Anything else left over (a bug) becomes one redacted line and exit 1.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Run the command; in standalone mode show a usage error as one stderr line (exit 2), not click's four."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except NO_ARGS_IS_HELP as error:  # a bare group: show its help, as click does
            error.show()
            sys.exit(error.exit_code)
        except click.UsageError as error:
            where = error.ctx.command_path if error.ctx else (prog_name or "wombat-collect")
            click.echo(f"{where}: {' '.join(error.format_message().split())} (see {where} --help)", err=True)
            sys.exit(error.exit_code)
        except click.ClickException as error:
            error.show()
            sys.exit(error.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(EXIT_FAILED)
        sys.exit(code if isinstance(code, int) else EXIT_OK)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except WombatError as error:
            logger.error("%s", error)
            ctx.exit(error.exit_code)
        except KeyboardInterrupt:
            logger.error("interrupted")
            ctx.exit(EXIT_SIGINT)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as error:  # the last guard: one redacted line, never a traceback
            logger.error("%s", describe_unexpected(error))
            ctx.exit(EXIT_FAILED)


@click.group(cls=WombatGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--env-file", type=click.Path(dir_okay=False), help="Read settings from this .env file.")
@click.option("-v", "--verbose", count=True, help="More output (debug).")
@click.option("-q", "--quiet", count=True, help="Less output (-q warnings, -qq errors only).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.version_option(__version__, prog_name="wombat-collect")
@click.pass_context
def cli(ctx, env_file, verbose, quiet, log_format):
    """Collect Upbit and KIS market data into the wombat backend's tables."""
    from wombat_collect.logging_setup import configure_logging

    configure_logging(verbose - quiet, log_format)
    ctx.obj = App(env_file)


def exchange_option(function):
    return click.option("--exchange", type=click.Choice(EXCHANGE_CHOICES), default="all",
                        show_default=True, help="Which exchange(s).")(function)


def wait_option(function):
    """Given a command function, add the --wait SECONDS option to it."""
    return click.option("--wait", type=FiniteFloatRange(min=0), default=0, show_default=True, metavar="SECONDS",
                        help="Wait this long for a running copy of this job to finish (else exit 75).")(function)


@cli.command()
@exchange_option
@wait_option
@click.pass_context
def symbols(ctx, exchange, wait):
    """Store every listed symbol; mark delisted ones inactive."""
    from wombat_collect import jobs
    from wombat_collect.ops.runner import JobRequest, run_job

    app = ctx.obj
    collectors = load_collectors(exchange)
    settings = app.settings()
    clients = {collector.EXCHANGE.code: (collector, collector.open_client(settings)) for collector in collectors}
    request = JobRequest("symbols", tuple(clients), dict(ctx.params), wait)

    def work(code, dsn, exchange_id):
        collector, client = clients[code]
        return jobs.collect_symbols(dsn, exchange_id, collector, client)

    finish(run_job(settings, request, lambda: open_database(app, collectors), work))


@cli.command()
@exchange_option
@click.option("--market", "markets", multiple=True, metavar="M", help="Only this market (repeatable).")
@click.option("--symbol", "symbol_names", multiple=True, metavar="S", help="Only this symbol (repeatable).")
@click.option("--timeframe", "timeframe_names", multiple=True, type=click.Choice(TIMEFRAME_NAMES), metavar="TF",
              help=f"Only this timeframe (repeatable; {' '.join(TIMEFRAME_NAMES)}). Default: WOMBAT_TIMEFRAMES.")
@click.option("--days-back", type=click.IntRange(min=1, max=MAX_DAYS_BACK),
              help="The last N days, whatever is stored.")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), help="From this date (YYYY-MM-DD).")
@click.option("--full", is_flag=True, help="Everything the exchange has.")
@click.option("--include-open", is_flag=True, help="Also store the running (unfinished) candles.")
@click.option("--dry-run", is_flag=True, help="Fetch and validate, write nothing (not recorded).")
@wait_option
@click.pass_context
def prices(ctx, exchange, markets, symbol_names, timeframe_names, days_back, since, full, include_open, dry_run,
           wait):
    """Store OHLCV candles of each timeframe (incremental by default)."""
    from wombat_collect import jobs
    from wombat_collect.ops.runner import JobRequest, run_job

    app = ctx.obj
    window = parse_window(days_back, since.date() if since else None, full)
    collectors = select_collectors(load_collectors(exchange), markets, symbol_names)
    settings = app.settings()
    wanted = ordered_timeframes(timeframe_names) if timeframe_names else settings.timeframes
    offered = offered_timeframes(collectors, wanted, strict=bool(timeframe_names) and exchange != "all")
    missing = credential_problems(collectors, settings)
    clients = {collector.EXCHANGE.code: (collector, collector.open_client(settings)) for collector in collectors}
    options = {code: jobs.PriceOptions(include_open=include_open, dry_run=dry_run, workers=settings.workers)
               for code in clients}
    arguments = {**ctx.params, "timeframes": {code: list(names) for code, names in offered.items()}}
    request = JobRequest("prices", tuple(clients), arguments, wait,
                         f"{window.describe()}, timeframes {' '.join(wanted)}", dry_run)

    def work(code, dsn, exchange_id):
        collector, client = clients[code]
        if code in missing:
            return jobs.JobResult("prices", code, fatal=missing[code])
        own_markets = [market for market in markets if market in collector.MARKETS]
        own_symbols = own_symbol_names(collector, symbol_names)
        return run_prices(app, dsn, exchange_id, collector, client, own_markets, own_symbols, window,
                          offered[code], options[code], show_progress=len(clients) == 1)

    finish(run_job(settings, request, lambda: open_database(app, collectors), work, options))


@cli.command()
@exchange_option
@click.pass_context
def quotes(ctx, exchange):
    """Store the latest quote of every active symbol (realtime_prices); never waits for a lock."""
    from wombat_collect import quotes as quote_job
    from wombat_collect.jobs import JobResult
    from wombat_collect.ops.runner import JobRequest, run_job

    app = ctx.obj
    collectors = load_collectors(exchange)
    settings = app.settings()
    missing = credential_problems(collectors, settings)
    clients = {collector.EXCHANGE.code: (collector, collector.open_client(settings)) for collector in collectors}
    request = JobRequest(quote_job.JOB, tuple(clients), dict(ctx.params), window="latest quotes")

    def work(code, dsn, exchange_id):
        collector, client = clients[code]
        if code in missing:
            return JobResult(quote_job.JOB, code, fatal=missing[code])
        return quote_job.collect_quotes(dsn, exchange_id, collector, client)

    finish(run_job(settings, request, lambda: open_database(app, collectors), work))


@cli.command()
@exchange_option
@click.option("--timeframe", "timeframe_names", multiple=True, type=click.Choice(TIMEFRAME_NAMES), metavar="TF",
              help="Only this timeframe (repeatable). Default: every timeframe the exchange offers.")
@click.option("--symbol", "symbol_names", multiple=True, metavar="S", help="Only this symbol (repeatable).")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), help="Only periods from this date (YYYY-MM-DD).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--repair", is_flag=True, help="Fetch and store the missing ranges (takes the prices lock).")
@click.option("--recheck", is_flag=True, help="Also report (and with --repair ask again for) ranges confirmed empty.")
@click.pass_context
def gaps(ctx, exchange, timeframe_names, symbol_names, since, as_json, repair, recheck):
    """List missing candles inside stored series (exit 1 if any); --repair refills them."""
    from wombat_collect import gaps as gap_job

    app = ctx.obj
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
        run_repairs(app, ctx.params, collectors, requests, as_json)
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
    from wombat_collect.jobs import JobResult, PriceOptions
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


def ordered_timeframes(names):
    """Given --timeframe values, return them once each in timeframes.NAMES order."""
    return tuple(name for name in TIMEFRAME_NAMES if name in names)


def offered_timeframes(collectors, wanted, strict, job="prices", quiet=False):
    """Given collectors and wanted timeframe names, return {exchange code: the names it offers}.

    Raise click.BadParameter naming a timeframe the one exchange asked for does
    not offer when `strict`; else log one INFO line per exchange that skips some
    (none when `quiet`).
    """
    offered = {}
    for collector in collectors:
        code = collector.EXCHANGE.code
        offered[code] = tuple(name for name in wanted if name in collector.TIMEFRAMES)
        skipped = [name for name in wanted if name not in collector.TIMEFRAMES]
        if skipped and strict:
            raise click.BadParameter(f"{code} does not offer timeframe {', '.join(skipped)} "
                                     f"(it offers {' '.join(collector.TIMEFRAMES)})", param_hint="--timeframe")
        if skipped and not quiet:
            logger.info("%s %s: skipping timeframe %s (not offered by %s)", job, code, ", ".join(skipped), code)
    return offered


def credential_problems(collectors, settings):
    """Given the selected collectors, return {exchange code: what to set} for those lacking credentials.

    Raise ConfigError (nothing written) when every selected exchange lacks them.
    """
    problems = {collector.EXCHANGE.code: collector.credentials_problem(settings) for collector in collectors}
    problems = {code: problem for code, problem in problems.items() if problem}
    if problems and len(problems) == len(collectors):
        raise ConfigError("; ".join(problems.values()))
    return problems


def run_prices(app, dsn, exchange_id, collector, client, markets, symbol_names, window, timeframe_names, options,
               show_progress=True):
    """Given one exchange's collector, collect its listing if none is stored, then its prices of each timeframe.

    A terminal progress bar is shown when show_progress (one exchange at a time).
    """
    from wombat_collect import jobs

    listing = jobs.collect_listing_if_empty(dsn, exchange_id, collector, client)
    if listing is not None and listing.fatal:
        return jobs.JobResult("prices", collector.EXCHANGE.code, fatal=f"no symbols stored, and {listing.fatal}")
    targets = jobs.select_symbols(dsn, exchange_id, markets, symbol_names)
    logger.info("prices %s: %d symbols, timeframes %s, %s, %s", collector.EXCHANGE.code, len(targets),
                " ".join(timeframe_names) or "none offered", window.describe(),
                "dry run" if options.dry_run else "writing")
    tasks = jobs.plan_tasks(dsn, targets, window, timeframe_names, app.settings().backfill_days, options.now,
                            refetch_newest=collector.REBASE_ON_CHANGE)
    with progress_bar(len(tasks) if show_progress else 0, f"prices {collector.EXCHANGE.code}") as advance:
        options.progress = advance
        result = jobs.collect_prices(dsn, exchange_id, collector, client, tasks, options)
    result.timeframes = timeframe_names
    if listing is not None:
        result.errors.extend(f"listing {error}" for error in listing.errors)
    return result


@cli.command()
@exchange_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--max-age", type=FiniteFloatRange(min=0, min_open=True), default=26, show_default=True,
              metavar="HOURS", help="Critical when a job's last success is older.")
@click.option("--lag-days", type=click.IntRange(min=0), default=3, show_default=True, metavar="DAYS",
              help="Warn about active symbols this far behind their exchange's newest candle.")
@click.option("--quote-max-age", type=FiniteFloatRange(min=0, min_open=True), default=15, show_default=True,
              metavar="MINUTES", help="Critical when the newest quote is older (KIS: while KRX trades).")
@click.option("--timeframe", "timeframe_names", multiple=True, type=click.Choice(TIMEFRAME_NAMES), metavar="TF",
              help="Show only this timeframe's newest candle and lag (repeatable; default: those with candles).")
@click.pass_obj
def status(app, exchange, as_json, max_age, lag_days, quote_max_age, timeframe_names):
    """Report each job's health; exit 0 ok, 1 warning, 2 critical (monitoring-plugin codes)."""
    from wombat_collect.logging_setup import redact
    from wombat_collect.ops.status import read_report, render_json, render_text

    codes = EXCHANGE_CODES if exchange == "all" else (exchange,)
    if logging.getLogger().level == logging.INFO:
        logging.getLogger().setLevel(logging.WARNING)  # stdout is the report's (and --json's) alone
    try:
        dsn, _ = open_database(app, [collector for collector in map(_import_collector, EXCHANGE_CODES) if collector])
        report = read_report(dsn, codes, max_age, lag_days, quote_max_age, ordered_timeframes(timeframe_names))
    except WombatError as error:
        click.echo(redact(f"WOMBAT-COLLECT CRITICAL - {error}"))
        sys.exit(EXIT_CRITICAL)
    click.echo(render_json(report) if as_json else render_text(report))
    sys.exit(report.exit_code)


@cli.command()
@click.option("--source", type=click.Choice(["auto", "systemd", "cron"]), default="auto", show_default=True,
              help="Where to read the schedule: the systemd timers (when systemd runs the host), else the cron.d file.")
@click.option("--crontab", type=click.Path(dir_okay=False), envvar="WOMBAT_CRONTAB", show_envvar=True,
              default="/etc/cron.d/wombat-collect", show_default=True, help="The cron.d file to read.")
@click.option("--now", "now_text", metavar="ISO-8601", help="Next runs after this time (with its UTC offset).")
def schedule(source, crontab, now_text):
    """Show the installed schedule: each job's next run in Asia/Seoul and in the host's zone (read-only)."""
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


@cli.command()
@exchange_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--issue-token", is_flag=True,
              help="Issue (and cache) a KIS token when no valid one is cached. KIS throttles issuance and "
                   "notifies the account holder each time.")
@click.pass_obj
def check(app, exchange, as_json, issue_token):
    """Diagnose configuration, database, exchanges and host, read-only; exit 0 ok, 1 warning, 2 critical."""
    from wombat_collect.ops.check import render_json, render_text, run_checks

    codes = EXCHANGE_CODES if exchange == "all" else (exchange,)
    if logging.getLogger().level == logging.INFO:
        logging.getLogger().setLevel(logging.WARNING)  # stdout is the report's (and --json's) alone
    report = run_checks(app.env_file, app.variables, app.settings, codes, issue_token)
    click.echo(render_json(report) if as_json else render_text(report))
    sys.exit(report.exit_code)


@cli.group()
def db():
    """Database maintenance."""


@db.command("init")
@click.pass_obj
def db_init(app):
    """Apply pending migrations and create missing exchange rows (idempotent)."""
    from wombat_collect.jobs import backend_hint

    collectors = [_import_collector(code) for code in EXCHANGE_CODES]
    dsn, _ = open_database(app, [collector for collector in collectors if collector])
    logger.info("database is up to date")
    hint = backend_hint(dsn)
    if hint:
        logger.info(hint)


@db.command("hand-over")
@click.pass_obj
def db_hand_over(app):
    """Bring a database wombat-collect created to the backend's alembic head, for its migrations to take over.

    Creates the backend's missing tables and alembic_version, stamped at the head; touches no
    existing table or row. Safe to run twice; refuses (exit 2) an alembic_version it does not know.
    """
    from wombat_collect.config import mask_dsn
    from wombat_collect.db.connection import resolve_dsn
    from wombat_collect.jobs import hand_over_database

    dsn = resolve_dsn(app.settings())
    logger.debug("database %s", mask_dsn(dsn))
    logger.info("hand-over: %s", hand_over_database(dsn))


def parse_window(days_back, since, full):
    """Given the window flags, return a jobs.Window. Raise click.UsageError on a bad combination."""
    from wombat_collect.jobs import Window

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


def load_collectors(exchange):
    """Given --exchange, return the collector modules. Raise ConfigError if one is not available."""
    codes = EXCHANGE_CODES if exchange == "all" else (exchange,)
    collectors = [_import_collector(code) for code in codes]
    missing = [code for code, collector in zip(codes, collectors, strict=True) if collector is None]
    if missing:
        raise ConfigError(f"exchange {', '.join(missing)} is not available yet")
    return collectors


def select_collectors(collectors, markets, symbol_names=()):
    """Given collectors, --market and --symbol values, keep the collectors owning any of them.

    Raise click.BadParameter naming a market that no selected exchange has, or a
    symbol no selected exchange could list; click.UsageError if the two select no
    exchange together.
    """
    unknown = [market for market in markets if not any(market in collector.MARKETS for collector in collectors)]
    if unknown:
        known = sorted({market for collector in collectors for market in collector.MARKETS})
        raise click.BadParameter(f"unknown market {', '.join(unknown)} (known: {', '.join(known)})",
                                 param_hint="--market")
    malformed = [name for name in symbol_names if not any(own_symbol_names(collector, [name])
                                                          for collector in collectors)]
    if malformed:
        examples = "; ".join(f"{collector.EXCHANGE.code}: {collector.SYMBOL_EXAMPLE}" for collector in collectors)
        raise click.BadParameter(f"no selected exchange has a symbol like {', '.join(malformed)} "
                                 f"(symbols look like {examples})", param_hint="--symbol")
    chosen = [collector for collector in collectors
              if (not markets or set(markets) & set(collector.MARKETS))
              and (not symbol_names or own_symbol_names(collector, symbol_names))]
    if not chosen:
        raise click.UsageError("--market and --symbol select no exchange together")
    return chosen


def own_symbol_names(collector, symbol_names):
    """Given a collector and --symbol values, return those shaped like that exchange's symbols."""
    return [name for name in symbol_names if collector.SYMBOL_PATTERN.fullmatch(name)]


def _import_collector(code):
    from wombat_collect.collectors import load_collector

    try:
        return load_collector(code)
    except ModuleNotFoundError:
        return None


def open_database(app, collectors):
    """Given collectors, return (dsn, {exchange code: id}) of a migrated database."""
    from wombat_collect.config import mask_dsn
    from wombat_collect.db.connection import resolve_dsn
    from wombat_collect.jobs.database import prepare_database

    settings = app.settings()
    dsn = resolve_dsn(settings)
    logger.debug("database %s", mask_dsn(dsn))
    return dsn, prepare_database(dsn, collectors)


def finish(outcomes):
    """Given the exchanges' runner Outcomes, log one line each and exit with the worst exit code.

    A summary line for a finished run (INFO if it succeeded, else WARNING); an
    ERROR line naming the exchange for a run an error ended.
    """
    for outcome in outcomes:
        level = logging.INFO if outcome.exit_code == EXIT_OK else logging.WARNING
        logger.log(logging.ERROR if outcome.error is not None else level, "%s", outcome.message())
    sys.exit(max(outcome.exit_code for outcome in outcomes))


@contextlib.contextmanager
def progress_bar(length, label):
    """Given a length, yield advance(n): a click progress bar on a terminal's stderr, else a no-op."""
    if not (sys.stderr.isatty() and length):
        yield lambda count: None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        yield bar.update


def _dsn_password(dsn):
    if not dsn:
        return None
    import psycopg2.extensions

    return psycopg2.extensions.parse_dsn(dsn).get("password")


def main():
    """The console script's entry point."""
    cli(prog_name="wombat-collect")

