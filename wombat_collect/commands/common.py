"""What every command shares: the App (settings, secrets), the collectors selected, the database, the exit.

Flow: cli -> commands -> jobs, quotes, gaps, ops -> collectors/* and db/*.
"""

import contextlib
import logging
import sys

import click

from wombat_collect.collectors import EXCHANGE_CODES
from wombat_collect.errors import EXIT_OK, ConfigError
from wombat_collect.timeframes import NAMES as TIMEFRAME_NAMES

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
            for secret in (variables.get("POSTGRES_PASSWORD"), self._settings.kis_app_key,
                           self._settings.kis_app_secret):
                register_secret(secret)
            register_secret(_dsn_password(self._settings.database_url))
            register_url_secrets((variables.get("DATABASE_URL") or "").strip(), whole=False)
            register_url_secrets(self._settings.ping_url)
            register_url_secrets(self._settings.sentry_dsn)
        return self._settings


def _dsn_password(dsn):
    if not dsn:
        return None
    import psycopg2.extensions

    return psycopg2.extensions.parse_dsn(dsn).get("password")


def load_collectors(exchange):
    """Given --exchange, return the collector modules. Raise ConfigError if one is not available."""
    codes = EXCHANGE_CODES if exchange == "all" else (exchange,)
    collectors = [import_collector(code) for code in codes]
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


def import_collector(code):
    """Given an exchange code, return its collector module, or None if it is not available."""
    from wombat_collect.collectors import load_collector

    try:
        return load_collector(code)
    except ModuleNotFoundError:
        return None


def credential_problems(collectors, settings):
    """Given the selected collectors, return {exchange code: what to set} for those lacking credentials.

    Raise ConfigError (nothing written) when every selected exchange lacks them.
    """
    problems = {collector.EXCHANGE.code: collector.credentials_problem(settings) for collector in collectors}
    problems = {code: problem for code, problem in problems.items() if problem}
    if problems and len(problems) == len(collectors):
        raise ConfigError("; ".join(problems.values()))
    return problems


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
