"""The `wombat-collect` command: parses the options, then makes one call per command into commands/.

Flow: bin/* -> cli -> commands -> jobs, quotes, gaps, ops -> collectors/* (HTTP) and db/* (SQL).
"""

import logging
import math
import sys

import click

from wombat_collect import __version__
from wombat_collect.collectors import EXCHANGE_CODES
from wombat_collect.commands import collect, database, reports
from wombat_collect.commands import gaps as gap_command
from wombat_collect.commands.common import App
from wombat_collect.errors import EXIT_FAILED, EXIT_OK, EXIT_SIGINT, WombatError, describe_unexpected
from wombat_collect.timeframes import NAMES as TIMEFRAME_NAMES

EXCHANGE_CHOICES = ("all", *EXCHANGE_CODES)  # the registry: collectors.EXCHANGE_CODES
MAX_DAYS_BACK = 36500  # a hundred years: more than any exchange has, less than `date` can subtract
NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2

logger = logging.getLogger("wombat_collect")


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
    collect.run_symbols(ctx.obj, ctx.params, exchange, wait)


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
@click.option("--worker", is_flag=True,
              help="With --since: join (or start) the backfill of this window shared by workers on any host.")
@wait_option
@click.pass_context
def prices(ctx, exchange, markets, symbol_names, timeframe_names, days_back, since, full, include_open, dry_run,
           worker, wait):
    """Store OHLCV candles of each timeframe (incremental by default)."""
    collect.run_prices(ctx.obj, ctx.params, exchange, markets, symbol_names, timeframe_names, days_back, since, full,
                       include_open, dry_run, wait, worker)


@cli.command()
@exchange_option
@click.pass_context
def quotes(ctx, exchange):
    """Store the latest quote of every active symbol (realtime_prices); never waits for a lock."""
    collect.run_quotes(ctx.obj, ctx.params, exchange)


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
    gap_command.run_gaps(ctx.obj, ctx.params, exchange, timeframe_names, symbol_names, since, as_json, repair, recheck)


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
    reports.run_status(app, exchange, as_json, max_age, lag_days, quote_max_age, timeframe_names)


@cli.command()
@click.option("--source", type=click.Choice(["auto", "systemd", "cron"]), default="auto", show_default=True,
              help="Where to read the schedule: the systemd timers (when systemd runs the host), else the cron.d file.")
@click.option("--crontab", type=click.Path(dir_okay=False), envvar="WOMBAT_CRONTAB", show_envvar=True,
              default="/etc/cron.d/wombat-collect", show_default=True, help="The cron.d file to read.")
@click.option("--now", "now_text", metavar="ISO-8601", help="Next runs after this time (with its UTC offset).")
def schedule(source, crontab, now_text):
    """Show the installed schedule: each job's next run in Asia/Seoul and in the host's zone (read-only)."""
    reports.run_schedule(source, crontab, now_text)


@cli.command()
@exchange_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--issue-token", is_flag=True,
              help="Issue (and cache) a KIS token when no valid one is cached. KIS throttles issuance and "
                   "notifies the account holder each time.")
@click.pass_obj
def check(app, exchange, as_json, issue_token):
    """Diagnose configuration, database, exchanges and host, read-only; exit 0 ok, 1 warning, 2 critical."""
    reports.run_check(app, exchange, as_json, issue_token)


@cli.group()
def db():
    """Database maintenance."""


@db.command("init")
@click.pass_obj
def db_init(app):
    """Apply pending migrations and create missing exchange rows (idempotent)."""
    database.run_db_init(app)


@db.command("hand-over")
@click.pass_obj
def db_hand_over(app):
    """Bring a database wombat-collect created to the backend's alembic head, for its migrations to take over.

    Creates the backend's missing tables and alembic_version, stamped at the head; touches no
    existing table or row. Safe to run twice; refuses (exit 2) an alembic_version it does not know.
    """
    database.run_db_hand_over(app)


def main():
    """The console script's entry point."""
    cli(prog_name="wombat-collect")

