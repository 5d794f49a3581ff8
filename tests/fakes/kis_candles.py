"""The fake KIS host's daily and period candles: deterministic daily rows on KRX ticks, their
weekly, monthly and yearly aggregates, split adjustment, the output1 snapshot and the price query."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Iterable

from tests.fakes.common import stable_seed
from tests.fakes.kis_protocol import MARKET_DIV_CODES, PERIOD_CODES, Reject, rest_error

PRICE_KEYS = ("stck_oprc", "stck_hgpr", "stck_lwpr", "stck_clpr")
ROW_KEYS = (
    "stck_bsop_date",
    "stck_clpr",
    "stck_oprc",
    "stck_hgpr",
    "stck_lwpr",
    "acml_vol",
    "acml_tr_pbmn",
    "flng_cls_code",
    "prtt_rate",
    "mod_yn",
    "prdy_vrss_sign",
    "prdy_vrss",
    "revl_issu_reas",
)
SIGN_UP, SIGN_FLAT, SIGN_DOWN = "2", "3", "5"
SPLIT_FLNG_CLS_CODE = "01"
KRX_TICKS = ((2_000, 1), (5_000, 5), (20_000, 10), (50_000, 50), (200_000, 100), (500_000, 500))
KRX_TOP_TICK = 1_000
BASE_PRICES = (3_150, 12_400, 70_000, 152_000, 410_000)


def krx_tick(price: int) -> int:
    """Given a price in won, return the KRX tick size for it."""
    for limit, tick in KRX_TICKS:
        if price < limit:
            return tick
    return KRX_TOP_TICK


def _on_tick(value: float) -> int:
    """Given a raw positive price, return the nearest valid KRX price (at least one tick)."""
    tick = krx_tick(max(int(value), 1))
    return max(tick, int(round(value / tick)) * tick)


def _sign(change: int | Decimal) -> str:
    """Given a change from the previous close, return prdy_vrss_sign (2 up, 3 flat, 5 down)."""
    return SIGN_UP if change > 0 else SIGN_DOWN if change < 0 else SIGN_FLAT


def _kis_row(day: date, prices: tuple[int, int, int, int], volume: int, previous_close: int) -> dict[str, str]:
    """Given a day, (open, high, low, close), a volume and the previous close, return a row."""
    open_price, high, low, close = prices
    return {
        "stck_bsop_date": day.strftime("%Y%m%d"),
        "stck_clpr": str(close),
        "stck_oprc": str(open_price),
        "stck_hgpr": str(high),
        "stck_lwpr": str(low),
        "acml_vol": str(volume),
        "acml_tr_pbmn": str(volume * (open_price + high + low + close) // 4),
        "flng_cls_code": "00",
        "prtt_rate": "0.00",
        "mod_yn": "N",
        "prdy_vrss_sign": _sign(close - previous_close),
        "prdy_vrss": str(close - previous_close),
        "revl_issu_reas": "",
    }


def _day_prices(previous_close: int, rng: random.Random) -> tuple[int, int, int, int]:
    """Given the previous close, return (open, high, low, close) on KRX ticks with
    low <= open, close <= high."""
    open_price = _on_tick(previous_close * rng.uniform(0.98, 1.02))
    close = _on_tick(open_price * rng.uniform(0.95, 1.05))
    high = max(_on_tick(max(open_price, close) * rng.uniform(1.0, 1.03)), open_price, close)
    low = min(_on_tick(min(open_price, close) * rng.uniform(0.97, 1.0)), open_price, close)
    return open_price, high, low, close


def make_kis_rows(
    code: str,
    start: date,
    end: date,
    seed: int = 0,
    holidays: Iterable[date] = (),
    base_price: int | None = None,
) -> list[dict[str, str]]:
    """Given a code and an inclusive date range, return deterministic daily rows, oldest
    first, for weekdays that are not in ``holidays``; prices are whole won on KRX ticks."""
    rng = random.Random(stable_seed(seed, code))
    skipped = set(holidays)
    previous_close = _on_tick(base_price or rng.choice(BASE_PRICES))
    rows = []
    for offset in range((end - start).days + 1):
        day = start + timedelta(days=offset)
        if day.weekday() >= 5 or day in skipped:
            continue
        prices = _day_prices(previous_close, rng)
        rows.append(_kis_row(day, prices, rng.randint(10_000, 5_000_000), previous_close))
        previous_close = prices[3]
    return rows


def period_key(day: str, period: str) -> tuple[int, ...]:
    """Given a YYYYMMDD day and a period code (D, W, M, Y), return the key of the period holding it."""
    moment = datetime.strptime(day, "%Y%m%d").date()
    if period == "W":
        return tuple((moment - timedelta(days=moment.weekday())).timetuple()[:3])
    return {"D": (moment.year, moment.month, moment.day), "M": (moment.year, moment.month), "Y": (moment.year,)}[
        period
    ]


def period_rows(rows: list[dict[str, str]], period: str) -> list[dict[str, str]]:
    """Given daily rows oldest first and a period code, return one row per period, oldest first,
    dated on the period's last trading day in ``rows`` (see the docstring of tests/fakes/kis_server.py)."""
    if period == "D":
        return rows
    groups: dict[tuple[int, ...], list[dict[str, str]]] = {}
    for row in rows:
        groups.setdefault(period_key(row["stck_bsop_date"], period), []).append(row)
    result = []
    for days in groups.values():
        first, last = days[0], days[-1]
        merged = dict(last)
        merged["stck_oprc"] = first["stck_oprc"]
        merged["stck_hgpr"] = str(max(int(row["stck_hgpr"]) for row in days))
        merged["stck_lwpr"] = str(min(int(row["stck_lwpr"]) for row in days))
        merged["acml_vol"] = str(sum(int(row["acml_vol"]) for row in days))
        merged["acml_tr_pbmn"] = str(sum(int(row["acml_tr_pbmn"]) for row in days))
        result.append(merged)
    return result


def _split_factor(day: str, splits: list[tuple[str, Decimal]]) -> Decimal:
    """Given a YYYYMMDD day and splits, return the product of ratios of splits after that day."""
    factor = Decimal(1)
    for split_day, ratio in splits:
        if day < split_day:
            factor *= ratio
    return factor


def _scaled_row(row: dict[str, str], factor: Decimal) -> dict[str, str]:
    """Given a row and a split factor, return a copy with prices divided (whole won) and the
    volume multiplied by the factor."""
    scaled = dict(row)
    for key in (*PRICE_KEYS, "prdy_vrss"):
        scaled[key] = str((Decimal(row[key]) / factor).quantize(Decimal(1), ROUND_HALF_UP))
    scaled["acml_vol"] = str((Decimal(row["acml_vol"]) * factor).quantize(Decimal(1), ROUND_HALF_UP))
    return scaled


def adjusted_rows(rows: list[dict[str, str]], splits: list[tuple[str, Decimal]]) -> list[dict[str, str]]:
    """Given original rows oldest first and splits as (YYYYMMDD, ratio), return the adjusted
    series: rows before each split scaled, changes recomputed up to the last split day."""
    if not splits:
        return [dict(row) for row in rows]
    last_split = max(day for day, _ in splits)
    result: list[dict[str, str]] = []
    for row in rows:
        factor = _split_factor(row["stck_bsop_date"], splits)
        adjusted = _scaled_row(row, factor) if factor != 1 else dict(row)
        if result and row["stck_bsop_date"] <= last_split:
            change = int(adjusted["stck_clpr"]) - int(result[-1]["stck_clpr"])
            adjusted["prdy_vrss"], adjusted["prdy_vrss_sign"] = str(change), _sign(change)
        result.append(adjusted)
    return result


def output1_snapshot(code: str, name: str, series: list[dict[str, str]]) -> dict[str, str]:
    """Given a code, its name and its series oldest first, return the output1 snapshot
    (``stck_prpr`` "0" and zeros when the series is empty, as for an unknown code)."""
    if not series:
        zero_keys = (
            "prdy_vrss",
            "prdy_ctrt",
            "stck_prdy_clpr",
            "acml_vol",
            "acml_tr_pbmn",
            "stck_prpr",
            "stck_oprc",
            "stck_hgpr",
            "stck_lwpr",
        )
        return {"prdy_vrss_sign": "0", "hts_kor_isnm": "", "stck_shrn_iscd": code, **{key: "0" for key in zero_keys}}
    last = series[-1]
    previous_close = Decimal(last["stck_clpr"]) - Decimal(last["prdy_vrss"])
    rate = (
        (Decimal(last["prdy_vrss"]) * 100 / previous_close).quantize(Decimal("0.01"))
        if previous_close
        else Decimal("0.00")
    )
    return {
        "prdy_vrss": last["prdy_vrss"],
        "prdy_vrss_sign": last["prdy_vrss_sign"],
        "prdy_ctrt": str(rate),
        "stck_prdy_clpr": str(previous_close),
        "acml_vol": last["acml_vol"],
        "acml_tr_pbmn": last["acml_tr_pbmn"],
        "hts_kor_isnm": name,
        "stck_prpr": last["stck_clpr"],
        "stck_shrn_iscd": code,
        "stck_oprc": last["stck_oprc"],
        "stck_hgpr": last["stck_hgpr"],
        "stck_lwpr": last["stck_lwpr"],
    }


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class PriceQuery:
    """The validated query of one daily price request."""

    code: str
    start: str
    end: str
    adjusted: bool
    period: str = "D"


def _valid_day(text: str | None) -> bool:
    """Given a query value, return whether it is a real YYYYMMDD date."""
    try:
        return text is not None and len(text) == 8 and bool(datetime.strptime(text, "%Y%m%d"))
    except ValueError:
        return False


def parse_price_query(query: dict[str, str]) -> PriceQuery:
    """Given the query of a daily price request, return it validated. Raise Reject with
    OPSQ2001 (HTTP 200, rt_cd "1") naming the first bad parameter."""
    upper = {name.upper(): value for name, value in query.items()}
    checks = (
        ("FID_COND_MRKT_DIV_CODE", lambda value: value in MARKET_DIV_CODES),
        ("FID_INPUT_ISCD", bool),
        ("FID_INPUT_DATE_1", _valid_day),
        ("FID_INPUT_DATE_2", _valid_day),
        ("FID_PERIOD_DIV_CODE", lambda value: value in PERIOD_CODES),
        ("FID_ORG_ADJ_PRC", lambda value: value in ("0", "1")),
    )
    for name, is_valid in checks:
        if not is_valid(upper.get(name)):
            raise Reject(rest_error(200, "OPSQ2001", field=name))
    return PriceQuery(
        upper["FID_INPUT_ISCD"], upper["FID_INPUT_DATE_1"], upper["FID_INPUT_DATE_2"], upper["FID_ORG_ADJ_PRC"] == "0",
        upper["FID_PERIOD_DIV_CODE"],
    )

