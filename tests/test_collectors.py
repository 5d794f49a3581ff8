"""The collector contract (wombat_collect/collectors/__init__.py) against every registered exchange.

Parametrised over EXCHANGE_CODES, the registry itself: a third exchange is
checked as soon as it is registered, and fails here until its module exposes
every CONTRACT name with the right kind and it has a fake below (CONTRACT_FAKES)
on which listing, paging back to a start date, the closed-candle rule and an
unknown symbol behave as the contract says.
"""

import contextlib
import inspect
import re
import types
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tests.fakes.kis_server import FakeKis, make_kis_rows
from tests.fakes.upbit_server import FakeUpbit, default_market_row, make_upbit_candles
from tests.kis_support import install_masters
from tests.ops_support import DEVELOPMENT_DOC, document_section
from wombat_collect.collectors import CONTRACT, EXCHANGE_CODES, load_collector
from wombat_collect.config import load_settings
from wombat_collect.errors import SymbolNotFound
from wombat_collect.records import Candle, Covered, ExchangeInfo, SymbolRecord
from wombat_collect.timeframes import NAMES as TIMEFRAME_NAMES
from wombat_collect.timeframes import next_start, period_start, utc_midnight

TODAY = datetime.now(timezone.utc).date()
HISTORY_START = TODAY - timedelta(days=400)  # more than two pages of any exchange (Upbit 200, KIS 100 rows)
PAGING_START = TODAY - timedelta(days=250)  # the start date asked for: at least two pages back
SAMPLE_MOMENT = datetime(2025, 2, 28, 13, 47, tzinfo=timezone.utc)  # inside a period of every timeframe

KIND_CHECKS = {  # CONTRACT kind -> whether a module attribute is of that kind
    "ExchangeInfo": lambda value: isinstance(value, ExchangeInfo),
    "tuple": lambda value: isinstance(value, tuple),
    "pattern": lambda value: isinstance(value, re.Pattern),
    "str": lambda value: isinstance(value, str),
    "bool": lambda value: isinstance(value, bool),
    "dict": lambda value: isinstance(value, dict),
    "function": lambda value: inspect.isfunction(value) and not inspect.isgeneratorfunction(value),
    "generator": inspect.isgeneratorfunction,
}


@dataclass
class ContractFake:
    """A running fake exchange set up for the contract: a client on it, one listed symbol with daily
    history from HISTORY_START to today, the trade dates it serves, and a symbol it does not know."""

    client: object
    symbol: str
    served_days: list
    unknown_symbol: str


@contextlib.contextmanager
def upbit_contract_fake(tmp_path):
    """Given a temporary directory, yield a ContractFake on FakeUpbit (KRW-BTC, every day)."""
    rows = make_upbit_candles("KRW-BTC", HISTORY_START, TODAY)
    with FakeUpbit(rate_limit=None, markets=[default_market_row("KRW-BTC")], candles={"KRW-BTC": rows}) as fake:
        settings = load_settings({"UPBIT_API_URL": fake.url, "UPBIT_RATE_LIMIT": "1000", "WOMBAT_HTTP_TIMEOUT": "5"})
        days = [date.fromisoformat(row["candle_date_time_utc"][:10]) for row in rows]
        yield ContractFake(load_collector("upbit").open_client(settings), "BTC/KRW", days, "NOPE/KRW")


@contextlib.contextmanager
def kis_contract_fake(tmp_path):
    """Given a temporary directory (the token cache), yield a ContractFake on FakeKis (005930, weekdays)."""
    rows = make_kis_rows("005930", HISTORY_START, TODAY)
    with FakeKis(rate_limit=None, token_throttle_seconds=None) as fake:
        install_masters(fake)
        fake.set_prices("005930", rows)
        settings = load_settings({
            "KIS_API_URL": fake.url, "KIS_MASTER_URL": fake.master_url, "KIS_APP_KEY": fake.app_key,
            "KIS_APP_SECRET": fake.app_secret, "WOMBAT_STATE_DIR": str(tmp_path), "KIS_RATE_LIMIT": "200",
            "WOMBAT_HTTP_TIMEOUT": "5"})
        days = [datetime.strptime(row["stck_bsop_date"], "%Y%m%d").date() for row in rows]
        yield ContractFake(load_collector("kis").open_client(settings), "005930", days, "999999")


CONTRACT_FAKES = {"upbit": upbit_contract_fake, "kis": kis_contract_fake}  # exchange code -> its ContractFake


def contract_problems(module):
    """Given a collector module, return one line per CONTRACT name it lacks or has of the wrong kind."""
    problems = []
    for part in CONTRACT:
        if not hasattr(module, part.name):
            problems.append(f"{part.name} is missing")
        elif not KIND_CHECKS[part.kind](getattr(module, part.name)):
            problems.append(f"{part.name} is not a {part.kind}")
    return problems


@pytest.fixture(params=EXCHANGE_CODES)
def exchange(request, tmp_path):
    """Yield (exchange code, its collector module, its ContractFake) for every registered exchange."""
    code = request.param
    assert code in CONTRACT_FAKES, f"no contract fake for {code}: add one to CONTRACT_FAKES in {__name__}"
    with CONTRACT_FAKES[code](tmp_path) as fake:
        yield code, load_collector(code), fake


def daily_candles(items):
    """Given what fetch_candles yielded, return its Candles' dates, oldest first."""
    return sorted(item.timestamp.date() for item in items if isinstance(item, Candle))


# --- the contract itself ---------------------------------------------------

def test_contract_kinds_are_all_checkable():
    assert {part.kind for part in CONTRACT} <= set(KIND_CHECKS)
    assert len({part.name for part in CONTRACT}) == len(CONTRACT)


def test_contract_fakes_cover_exactly_the_registered_exchanges():
    assert sorted(CONTRACT_FAKES) == sorted(EXCHANGE_CODES)


def test_contract_problems_names_what_a_module_forgot():
    forgetful = types.ModuleType("forgetful")
    for part in CONTRACT:
        setattr(forgetful, part.name, getattr(load_collector("upbit"), part.name))
    del forgetful.fetch_quotes
    forgetful.fetch_candles = lambda client, symbol, timeframe, start=None, end=None: iter(())  # not a generator
    forgetful.MARKETS = ["KRW"]  # a list, not a tuple
    assert contract_problems(forgetful) == ["MARKETS is not a tuple", "fetch_candles is not a generator",
                                            "fetch_quotes is missing"]


@pytest.mark.parametrize("code", EXCHANGE_CODES)
def test_collector_exposes_every_contract_name_with_its_kind(code):
    module = load_collector(code)
    assert contract_problems(module) == []
    assert module.EXCHANGE.code == code
    assert module.SYMBOL_PATTERN.fullmatch(module.SYMBOL_EXAMPLE)
    assert set(module.TIMEFRAMES) <= set(TIMEFRAME_NAMES) and "1d" in module.TIMEFRAMES
    assert all(group is None or group in module.MARKETS for group in module.LISTING_GROUPS)


# --- behaviours against each exchange's fake ---------------------------------

def test_fetch_symbols_lists_the_fakes_symbol_in_one_of_its_markets(exchange):
    _, module, fake = exchange
    records = [record for group in module.LISTING_GROUPS for record in module.fetch_symbols(fake.client, group)]
    assert records and all(isinstance(record, SymbolRecord) for record in records)
    assert fake.symbol in [record.symbol for record in records]
    assert all(record.market in module.MARKETS and module.SYMBOL_PATTERN.fullmatch(record.symbol)
               for record in records)


def test_fetch_candles_pages_back_to_the_start_date(exchange):
    _, module, fake = exchange
    start = utc_midnight(PAGING_START)
    items = list(module.fetch_candles(fake.client, fake.symbol, "1d", start))
    assert daily_candles(items) == [day for day in fake.served_days if day >= PAGING_START]
    candles = [item for item in items if isinstance(item, Candle)]
    assert all(candle.timestamp.tzinfo is not None and candle.timestamp == utc_midnight(candle.timestamp.date())
               for candle in candles)
    assert all(isinstance(candle.close, Decimal) for candle in candles)
    covered = [item for item in items if isinstance(item, Covered)]
    assert covered and isinstance(items[-1], Covered), "a Covered marker ends the series"
    assert min(marker.start for marker in covered) <= start


def test_fetch_daily_candles_yields_the_same_candles_without_markers(exchange):
    _, module, fake = exchange
    candles = list(module.fetch_daily_candles(fake.client, fake.symbol, PAGING_START))
    assert all(isinstance(candle, Candle) for candle in candles)
    assert daily_candles(candles) == [day for day in fake.served_days if day >= PAGING_START]


def test_candle_closes_at_after_its_start_and_by_the_next_period(exchange):
    _, module, fake = exchange
    for timeframe in module.TIMEFRAMES:
        start = period_start(SAMPLE_MOMENT, timeframe)
        assert start < module.candle_closes_at(start, timeframe) <= next_start(start, timeframe), timeframe
    # Every served candle before yesterday is final now; the next period's is not.
    now = datetime.now(timezone.utc)
    assert all(module.candle_closes_at(utc_midnight(day), "1d") <= now
               for day in fake.served_days if day < TODAY - timedelta(days=1))
    assert module.candle_closes_at(next_start(period_start(now, "1d"), "1d"), "1d") > now


def test_fetch_candles_of_an_unknown_symbol_raises_not_found_or_yields_no_candle(exchange):
    _, module, fake = exchange
    try:
        items = list(module.fetch_candles(fake.client, fake.unknown_symbol, "1d", utc_midnight(PAGING_START)))
    except SymbolNotFound:
        return
    assert daily_candles(items) == []


def test_readme_adding_an_exchange_shows_the_contract_as_it_is():
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in document_section(DEVELOPMENT_DOC, "Adding an exchange").splitlines() if line.startswith("| `")]
    assert rows == [[f"`{part.name}`", part.kind, part.returns, part.raises] for part in CONTRACT]
