"""The fake KIS host's multi-price quotes (intstock-multprice): the query's codes and the quote rows."""

from __future__ import annotations

from tests.fakes.kis_candles import SIGN_FLAT, krx_tick, output1_snapshot
from tests.fakes.kis_protocol import MARKET_DIV_CODES, MAX_QUOTE_CODES, Reject, rest_error


def parse_quote_codes(query: dict[str, str]) -> list[str]:
    """Given the query of a multi-price request, return its codes in order. Raise Reject with
    OPSQ2001 when the numbers are not 1..n (n <= 30), a code is empty or a division code is bad."""
    upper = {name.upper(): value for name, value in query.items()}
    prefix = "FID_INPUT_ISCD_"
    numbers = sorted(int(name[len(prefix):]) for name in upper
                     if name.startswith(prefix) and name[len(prefix):].isdigit())
    if not numbers or numbers != list(range(1, len(numbers) + 1)) or len(numbers) > MAX_QUOTE_CODES:
        raise Reject(rest_error(200, "OPSQ2001", field=prefix + "1"))
    for number in numbers:
        if not upper[f"{prefix}{number}"] or upper.get(f"FID_COND_MRKT_DIV_CODE_{number}") not in MARKET_DIV_CODES:
            raise Reject(rest_error(200, "OPSQ2001", field=f"{prefix}{number}"))
    return [upper[f"{prefix}{number}"] for number in numbers]


def blank_quote(code: str) -> dict[str, str]:
    """Given a code, return a multi-price row of zeros (to be filled by ``set_quote``)."""
    keys = ("inter2_prpr", "inter2_prdy_vrss", "prdy_ctrt", "acml_vol", "inter2_oprc", "inter2_hgpr",
            "inter2_lwpr", "inter2_askp", "inter2_bidp", "acml_tr_pbmn", "inter2_prdy_clpr")
    return {"inter_shrn_iscd": code, "inter_kor_isnm": "", "prdy_vrss_sign": SIGN_FLAT, **{key: "0" for key in keys}}


def quote_from_series(code: str, name: str, series: list[dict[str, str]]) -> dict[str, str]:
    """Given a code, its name and its original daily rows oldest first, return the multi-price row
    of the newest day: price = close, bid = close, ask = close + one tick, change in percent (2 dp)."""
    snapshot = output1_snapshot(code, name, series)
    close = int(snapshot["stck_prpr"])
    return {
        "inter_shrn_iscd": code, "inter_kor_isnm": name, "inter2_prpr": snapshot["stck_prpr"],
        "inter2_prdy_vrss": snapshot["prdy_vrss"], "prdy_vrss_sign": snapshot["prdy_vrss_sign"],
        "prdy_ctrt": snapshot["prdy_ctrt"], "acml_vol": snapshot["acml_vol"], "inter2_oprc": snapshot["stck_oprc"],
        "inter2_hgpr": snapshot["stck_hgpr"], "inter2_lwpr": snapshot["stck_lwpr"],
        "inter2_askp": str(close + krx_tick(close)), "inter2_bidp": str(close),
        "acml_tr_pbmn": snapshot["acml_tr_pbmn"], "inter2_prdy_clpr": snapshot["stck_prdy_clpr"],
    }
