"""Helpers shared by the KIS tests: master files, price series, the env of a CLI run."""

from datetime import date, datetime, timezone
from decimal import Decimal

from tests.conftest import query, stored_prices
from tests.fakes.kis_server import build_master_row, build_master_zip, make_kis_rows

# market -> rows of (short code, standard code, Korean name, group code)
MASTERS = {
    "kospi": [
        ("005930", "KR7005930003", "삼성전자", "ST"),
        ("00680K", "KR700680K016", "미래에셋증권2우B", "ST"),
        ("069500", "KR7069500007", "KODEX 200", "EF"),
        ("F70101786", "KRF701017865", "미래에셋맵스아시아퍼시픽부동산공모1호", "BC"),
    ],
    "kosdaq": [
        ("035720", "KR7035720002", "카카오게임즈", "ST"),
        ("900110", "HK0000057197", "이스트아시아홀딩스", "FS"),
        ("091990", "KR7091990002", "셀트리온헬스케어", "ST"),
    ],
    "konex": [
        ("217320", "KR7217320001", "썬테크", "KN"),
        ("224880", "KR7224880005", "코넥스샘플", "ST"),
    ],
}
EXPECTED_SYMBOLS = [  # (symbol, base_asset, quote_asset, market, symbol_type, is_active, price/quantity precision)
    ("005930", "삼성전자", "KRW", "KOSPI", "STOCK", True, 0, 0),
    ("00680K", "미래에셋증권2우B", "KRW", "KOSPI", "STOCK", True, 0, 0),
    ("035720", "카카오게임즈", "KRW", "KOSDAQ", "STOCK", True, 0, 0),
    ("069500", "KODEX 200", "KRW", "KOSPI", "ETF", True, 0, 0),
    ("091990", "셀트리온헬스케어", "KRW", "KOSDAQ", "STOCK", True, 0, 0),
    ("217320", "썬테크", "KRW", "KONEX", "STOCK", True, 0, 0),
    ("224880", "코넥스샘플", "KRW", "KONEX", "STOCK", True, 0, 0),
    ("900110", "이스트아시아홀딩스", "KRW", "KOSDAQ", "STOCK", True, 0, 0),
    ("F70101786", "미래에셋맵스아시아퍼시픽부동산공모1호", "KRW", "KOSPI", "BC", True, 0, 0),
]
SYMBOL_ROWS = """
    SELECT symbol, base_asset, quote_asset, market, symbol_type, is_active, price_precision, quantity_precision
      FROM symbol WHERE exchange_id = (SELECT id FROM exchange WHERE code = 'kis') ORDER BY symbol
"""
PRICE_START = date(2024, 1, 2)
PRICE_END = date(2024, 6, 28)


def install_masters(fake, masters=None):
    """Given a FakeKis and {market: rows} (default MASTERS), serve those master files."""
    for market, rows in (masters or MASTERS).items():
        fake.set_master(market, build_master_zip(market, [build_master_row(market, *row) for row in rows]))


def install_prices(fake, codes, end=PRICE_END):
    """Given a FakeKis and codes, give each code deterministic daily rows from PRICE_START to `end`."""
    for code in codes:
        fake.set_prices(code, make_kis_rows(code, PRICE_START, end))


def kis_env(database, fake, state_dir, **extra):
    """Given a DSN, a FakeKis and a state directory, return the env of a CLI run against them."""
    env = {"DATABASE_URL": database, "KIS_API_URL": fake.url, "KIS_MASTER_URL": fake.master_url,
           "KIS_APP_KEY": fake.app_key, "KIS_APP_SECRET": fake.app_secret, "WOMBAT_STATE_DIR": str(state_dir),
           "KIS_RATE_LIMIT": "200", "KIS_TOKEN_RETRY_WAIT": "0.2", "WOMBAT_HTTP_TIMEOUT": "5"}
    env.update(extra)
    return env


def expected_prices(fake, codes, since, adjusted=True):
    """Given a FakeKis, codes and a first date, return the rows a run should store, as stored_prices gives them."""
    rows = []
    for code in codes:
        for row in fake.series(code, adjusted):
            day = datetime.strptime(row["stck_bsop_date"], "%Y%m%d").replace(tzinfo=timezone.utc)
            if day.date() >= since:
                rows.append((code, day, *(Decimal(row[key]) for key in (
                    "stck_oprc", "stck_hgpr", "stck_lwpr", "stck_clpr", "acml_vol", "acml_tr_pbmn")), "1d"))
    return sorted(rows, key=lambda row: (row[0], row[1]))


def kis_prices(database):
    """Given a DSN, return every stored KIS candle as comparable tuples."""
    return stored_prices(database, "kis")


def kis_symbols(database):
    """Given a DSN, return every stored KIS symbol as comparable tuples."""
    return query(database, SYMBOL_ROWS)


def both_env(database, upbit, kis, state_dir, **extra):
    """Given a DSN, a FakeUpbit, a FakeKis and a state directory, return the env of a `--exchange all` run."""
    return kis_env(database, kis, state_dir, **{"UPBIT_API_URL": upbit.url, "UPBIT_RATE_LIMIT": "1000", **extra})
