"""The outcome bookkeeping of a job: JobResult, SymbolOutcome, PriceOptions, and failure_of.

failure_of is the one place where what a symbol's or a listing group's work
raised becomes its failure line (or stops the run: RUN_STOPPERS).
"""

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from wombat_collect.db.connection import DatabaseUnusable
from wombat_collect.errors import ExchangeBlocked, Interrupted, WombatError, describe_unexpected
from wombat_collect.records import UpsertCounts
from wombat_collect.timeframes import DAILY


@dataclass
class JobResult:
    """What one job did for one exchange; `fatal` is set when the whole run failed."""

    job: str
    exchange: str
    symbols_ok: int = 0
    symbols_failed: int = 0
    symbols_skipped: int = 0
    symbols_not_attempted: int = 0  # left untouched because the run stopped (block, signal, database)
    rows: UpsertCounts = field(default_factory=UpsertCounts)
    rejected: int = 0
    errors: list = field(default_factory=list)
    fatal: str | None = None
    timeframes: tuple = ()  # of a prices job: the timeframes collected (each symbol once per timeframe)
    started: float = field(default_factory=time.monotonic)
    duration: float = 0.0
    groups_ok: int = 0  # symbols: listing groups stored (symbols_failed counts the failed ones)
    group_noun: str = "listing"  # symbols: what a listing group is ("market" when one per market)
    unit: str | None = None  # what symbols_ok/failed count when not symbols (repair: "range")
    note: str | None = None  # appended to the summary (a backfill worker: the whole backfill's progress)

    @property
    def status(self):
        if self.fatal:
            return "failed"
        return "partial" if self.symbols_failed or self.errors else "succeeded"

    def summary(self):
        """Return the one-line INFO summary of this job."""
        line = self._listing_summary() if self.job == "symbols" else self._prices_summary()
        line = f"{line}; {self.note}" if self.note else line
        return f"{line}; FAILED: {self.fatal}" if self.fatal else line

    def _rows_summary(self):
        rows = [f"{self.rows.inserted:,} new"]
        rows += [f"{count:,} {label}" for count, label in
                 ((self.rows.updated, "updated"), (self.rows.unchanged, "unchanged"),
                  (self.rejected, "rejected")) if count]
        return f"{self.rows.total:,} rows ({', '.join(rows)}) in {self.duration:.1f}s"

    def _listing_summary(self):
        """Return `symbols kis: 3 markets (2 ok, 1 failed), 4,365 symbols listed, ...`."""
        groups = self.groups_ok + self.symbols_failed
        parts = [f"{self.groups_ok:,} ok"] + ([f"{self.symbols_failed:,} failed"] if self.symbols_failed else [])
        deactivated = f", {self.symbols_skipped:,} deactivated" if self.symbols_skipped else ""
        return (f"{self.job} {self.exchange}: {groups:,} {self.group_noun}{'' if groups == 1 else 's'} "
                f"({', '.join(parts)}), {self.symbols_ok:,} symbols listed{deactivated}, {self._rows_summary()}")

    def _prices_summary(self):
        total = self.symbols_ok + self.symbols_failed + self.symbols_skipped + self.symbols_not_attempted
        parts = [f"{self.symbols_ok:,} ok"]
        parts += [f"{count:,} {label}" for count, label in
                  ((self.symbols_failed, "failed"), (self.symbols_skipped, "skipped"),
                   (self.symbols_not_attempted, "not attempted")) if count]
        named = self.timeframes and tuple(self.timeframes) != (DAILY,)  # daily alone: as before timeframes
        what = f"{self.job} {self.exchange}" + (f" {','.join(self.timeframes)}" if named else "")
        unit = "symbols" if len(self.timeframes) < 2 else "symbol-timeframes"
        if self.unit:
            unit = f"{self.unit}{'' if total == 1 else 's'}"
        return f"{what}: {total:,} {unit} ({', '.join(parts)}), {self._rows_summary()}"


@dataclass
class SymbolOutcome:
    symbol: str
    rows: UpsertCounts = field(default_factory=UpsertCounts)
    rejected: int = 0
    error: str | None = None
    skipped: bool = False


@dataclass
class PriceOptions:
    """How to collect prices: flags that apply to every symbol of the run."""

    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    include_open: bool = False
    dry_run: bool = False
    workers: int = 8
    progress: object = None
    stop_event: threading.Event | None = None
    interrupted: int | None = None
    run_id: int | None = None  # the run's collect_run row, once recorded


class StoppedEarly(Exception):
    """The run is stopping (block, unusable database or signal): the symbol was left untouched."""


RUN_STOPPERS = (Interrupted, StoppedEarly, ExchangeBlocked, DatabaseUnusable)  # stop the run: never one failure
LISTING_STOPPERS = (Interrupted, StoppedEarly)  # a listing group's block or database error fails that group only


def failure_of(error, stoppers=RUN_STOPPERS):
    """Given what one symbol's (prices) or one listing group's (symbols) work raised, return its failure line.

    The one place where any unexpected exception (a RecursionError, a psycopg2
    ValueError, a bug) becomes that symbol's or group's failure, so the run goes
    on and nothing leaves a traceback. Raise the error again if it stops the run
    (`stoppers`); KeyboardInterrupt and SystemExit never reach here.
    """
    if isinstance(error, stoppers):
        raise error
    if isinstance(error, WombatError):
        return str(error)
    return describe_unexpected(error)
