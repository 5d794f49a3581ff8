"""FakeKis: a fake KIS Open API host (token, daily prices, multi-price quotes) that also serves
the master files.

Follows shared/reference/kis-api.md. Choices where the reference is silent or uncertain:

- One server plays both the API host and the master-file host: ``master_url`` is
  ``f"{url}/common/master"``. Master downloads need no auth and are not rate limited;
  a market whose zip was not set answers 404 (text/html). The "empty" fault on a master file
  answers a zip holding an empty ``.mst`` member.
- Error codes other than EGW00103/121/123/133/201 are plausible picks, not confirmed:
  EGW00102/EGW00104 (app key / secret missing), EGW00105 (wrong secret), EGW00205 (no
  ``Bearer`` authorization), EGW00208 (custtype not P), OPSQ0002 (tr_id missing or wrong),
  OPSQ2001 (a bad query parameter; answered with HTTP 200 and rt_cd "1", so a client must
  check rt_cd even on 200), MCA00124 (unknown path, HTTP 404), EGW00002 (the "500" fault).
- Check order on the price endpoint: rate limit (per ``appkey`` header value) -> app key and
  secret -> authorization/token -> tr_id, custtype -> query parameters.
- Token issuance is throttled per app key by ``token_throttle_seconds`` measured with ``now``;
  ``token_reuse_seconds`` (default None = off) models "asking again within ~6 h returns the
  same token". ``tokens_issued`` counts successful tokenP answers (a reused token counts).
  ``reject_tokens`` (default None) set to "EGW00121" or "EGW00123" rejects every token on use;
  ``token_fields`` (default empty) overrides fields of the tokenP answer (e.g. a huge ``expires_in``).
- ``FID_PERIOD_DIV_CODE`` D, W, M and Y are modelled (others answer OPSQ2001). A W/M/Y row
  aggregates the daily rows of its week (Monday to Sunday), month or year: open of the first
  day, highest high, lowest low, close and change of the last day, summed volume and value;
  it is dated on the period's **last trading day in the series** (as the one real monthly
  answer found does), so the running period is a partial row dated mid-period. The date
  range filters on that date. FID_COND_MRKT_DIV_CODE
  may be J, NX or UN; all serve the same rows. Query names are matched case-insensitively.
- ``pad_empty=True`` appends ``PAD_EMPTY_COUNT`` ``{}`` entries to a page holding fewer than
  100 rows (a page never exceeds 100 entries); ``duplicate_rows=True`` repeats the newest row
  of each page right after it (the oldest row is then cut to keep 100).
- Splits (``apply_split``): the row on the split day gets ``mod_yn`` "Y" and a non-"00"
  ``flng_cls_code`` (default "01"; the reference lists no split code); the original series
  (FID_ORG_ADJ_PRC=1) is otherwise unchanged. The adjusted series (0) divides prices of rows
  before the split day by the ratio (rounded half-up to whole won), multiplies their volumes,
  keeps traded values, and recomputes ``prdy_vrss``/``prdy_vrss_sign`` from adjusted closes.
- Multi-price quotes (``intstock-multprice``, tr_id FHKST11300006): the same header and rate
  checks as daily prices; pairs ``FID_COND_MRKT_DIV_CODE_n``/``FID_INPUT_ISCD_n`` for n = 1..30
  (a gap, more than 30, or a division code other than J/NX/UN: OPSQ2001). ``output`` holds one
  row per code that has a quote (``set_quote``) or daily rows (then derived from the newest row:
  price = close, bid = close, ask = close + one tick), in the order asked; other codes are left
  out. Field names are those of the reference plus, as seen in the official sample's column
  list, ``inter_kor_isnm``, ``inter2_prdy_vrss``, ``prdy_vrss_sign``, ``inter2_oprc``,
  ``inter2_hgpr``, ``inter2_lwpr`` and ``acml_tr_pbmn``. ``virtual=True`` plays the virtual
  host, which lacks this TR: MCA00124 (HTTP 404).
- The KONEX tail layout (38 fields, 184 bytes) is the official sample's (그룹코드 first, no
  그룹사코드); the reference only gives its total.
"""

from __future__ import annotations

import io
import random
import secrets
import struct
import threading
import zipfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable, Iterable

from tests.fakes.common import (
    HTML_CONTENT_TYPE,
    KST,
    Admission,
    FakeService,
    Request,
    Response,
    SlidingWindowLimiter,
    json_response,
    stable_seed,
)

# --------------------------------------------------------------------------- constants

DEFAULT_APP_KEY = "PSfakeappkey" + "0" * 24
DEFAULT_APP_SECRET = "fakeappsecret" + "0" * 167
DEFAULT_RATE_LIMIT = 18
DEFAULT_TOKEN_THROTTLE_SECONDS = 60
DEFAULT_TOKEN_LIFETIME_SECONDS = 86400
TOKEN_EXPIRY_FORMAT = "%Y-%m-%d %H:%M:%S"

TOKEN_PATH = "/oauth2/tokenP"
REVOKE_PATH = "/oauth2/revokeP"
PRICE_PATH = "/uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice"
MASTER_PREFIX = "/common/master/"
QUOTES_PATH = "/uapi/domestic-stock/v1/quotations/intstock-multprice"
PRICE_TR_ID = "FHKST03010100"
QUOTES_TR_ID = "FHKST11300006"
MAX_QUOTE_CODES = 30
CUSTOMER_TYPE = "P"

MAX_ROWS = 100
PAD_EMPTY_COUNT = 2
MARKET_DIV_CODES = frozenset({"J", "NX", "UN"})
PERIOD_CODES = frozenset({"D", "W", "M", "Y"})
OK_CODE = "MCA00000"
OK_MESSAGE = "정상처리 되었습니다." + " " * 42
REVOKE_MESSAGE = "접근토큰 폐기에 성공하였습니다"

MESSAGES = {
    "EGW00002": "서버 에러가 발생했습니다.",
    "EGW00101": "유효하지 않은 요청입니다.",
    "EGW00102": "AppKey는 필수입니다.",
    "EGW00103": "유효하지 않은 AppKey입니다.",
    "EGW00104": "AppSecret는 필수입니다.",
    "EGW00105": "유효하지 않은 AppSecret입니다.",
    "EGW00121": "유효하지 않은 token 입니다.",
    "EGW00123": "기간이 만료된 token 입니다.",
    "EGW00133": "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)",
    "EGW00201": "초당 거래건수를 초과하였습니다.",
    "EGW00205": "credentials_type이 유효하지 않습니다.(Bearer)",
    "EGW00208": "고객유형(custtype)이 유효하지 않습니다.",
    "OPSQ0002": "없는 서비스 코드 입니다",
    "OPSQ2001": "ERROR : INPUT_FIELD_NAME {field}",
    "MCA00124": "해당 서비스를 찾을수 없습니다",
}
NOT_FOUND_HTML = b"<html><head><title>404 Not Found</title></head><body><h1>404 Not Found</h1></body></html>"

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

# --------------------------------------------------------------------------- master layout

MASTER_MARKETS = ("kospi", "kosdaq", "konex")
MASTER_ENCODING = "cp949"
SHORT_CODE_WIDTH = 9
STANDARD_CODE_WIDTH = 12
NAME_WIDTH = 40
HEAD_WIDTH = SHORT_CODE_WIDTH + STANDARD_CODE_WIDTH + NAME_WIDTH  # 61
ROW_LENGTHS = {"kospi": 288, "kosdaq": 282, "konex": 245}

_SECTOR_FLAGS = (
    "KRX자동차",
    "KRX반도체",
    "KRX바이오",
    "KRX은행",
    "SPAC",
    "KRX에너지화학",
    "KRX철강",
    "단기과열",
    "KRX미디어통신",
    "KRX건설",
)
_TRADING_FIELDS = (
    "기준가",
    "매매수량단위",
    "시간외수량단위",
    "거래정지",
    "정리매매",
    "관리종목",
    "시장경고",
    "경고예고",
    "불성실공시",
    "우회상장",
    "락구분",
    "액면변경",
    "증자구분",
    "증거금비율",
    "신용가능",
    "신용기간",
    "전일거래량",
    "액면가",
    "상장일자",
    "상장주수",
    "자본금",
    "결산월",
    "공모가",
    "우선주",
    "공매도과열",
    "이상급등",
    "KRX300",
)
_FINANCIAL_FIELDS = ("매출액", "영업이익", "경상이익", "당기순이익", "ROE", "기준년월", "시가총액")
_TRADING_WIDTHS = (9, 5, 5, 1, 1, 1, 2, 1, 1, 1, 2, 2, 2, 3, 1, 3, 12, 12, 8, 15, 21, 2, 7, 1, 1, 1, 1)
_FINANCIAL_WIDTHS = (9, 9, 9, 5, 9, 8, 9)
_LOAN_FLAGS = ("회사신용한도초과", "담보대출가능", "대주가능")

TAIL_FIELD_NAMES = {
    "kospi": (
        "그룹코드",
        "시가총액규모",
        "지수업종대분류",
        "지수업종중분류",
        "지수업종소분류",
        "제조업",
        "저유동성",
        "지배구조지수종목",
        "KOSPI200섹터업종",
        "KOSPI100",
        "KOSPI50",
        "KRX",
        "ETP",
        "ELW발행",
        "KRX100",
        *_SECTOR_FLAGS,
        "Non1",
        "KRX증권",
        "KRX선박",
        "KRX섹터_보험",
        "KRX섹터_운송",
        "SRI",
        *_TRADING_FIELDS,
        "KOSPI",
        *_FINANCIAL_FIELDS,
        "그룹사코드",
        *_LOAN_FLAGS,
    ),
    "kosdaq": (
        "그룹코드",
        "시가총액규모",
        "지수업종대분류",
        "지수업종중분류",
        "지수업종소분류",
        "벤처기업",
        "저유동성",
        "KRX",
        "ETP",
        "KRX100",
        *_SECTOR_FLAGS,
        "투자주의환기",
        "KRX증권",
        "KRX선박",
        "KRX섹터_보험",
        "KRX섹터_운송",
        "KOSDAQ150",
        *_TRADING_FIELDS,
        *_FINANCIAL_FIELDS,
        "그룹사코드",
        *_LOAN_FLAGS,
    ),
    "konex": ("그룹코드", *_TRADING_FIELDS, *_FINANCIAL_FIELDS, *_LOAN_FLAGS),
}
TAIL_FIELD_WIDTHS = {
    "kospi": (2, 1, 4, 4, 4, *(1,) * 26, *_TRADING_WIDTHS, 1, *_FINANCIAL_WIDTHS, 3, 1, 1, 1),
    "kosdaq": (2, 1, 4, 4, 4, *(1,) * 21, *_TRADING_WIDTHS, *_FINANCIAL_WIDTHS, 3, 1, 1, 1),
    "konex": (2, *_TRADING_WIDTHS, *_FINANCIAL_WIDTHS, 1, 1, 1),
}
TAIL_FIELD_DEFAULTS: dict[str, str | int] = {
    "시가총액규모": "0",
    "지수업종대분류": "0000",
    "지수업종중분류": "0000",
    "지수업종소분류": "0000",
    "KOSPI200섹터업종": "0",
    "ETP": "0",
    "단기과열": "0",
    "기준가": 10_000,
    "매매수량단위": 1,
    "시간외수량단위": 1,
    "시장경고": "00",
    "락구분": "00",
    "액면변경": "00",
    "증자구분": "00",
    "증거금비율": 40,
    "신용기간": 90,
    "전일거래량": 123_456,
    "액면가": 500,
    "상장일자": "20000104",
    "상장주수": 10_000,
    "자본금": 5_000_000_000,
    "결산월": "12",
    "공모가": 0,
    "우선주": "0",
    "매출액": 0,
    "영업이익": 0,
    "경상이익": 0,
    "당기순이익": 0,
    "ROE": 0,
    "기준년월": "20250331",
    "시가총액": 100,
    "그룹사코드": "000",
}
FLAG_DEFAULT = "N"
FIELD_ALIASES = {
    "trading_halt": "거래정지",
    "liquidation_trading": "정리매매",
    "administrative_issue": "관리종목",
    "listing_date": "상장일자",
    "listed_shares": "상장주수",
    "base_price": "기준가",
    "par_value": "액면가",
    "market_cap": "시가총액",
}


TAIL_LAYOUTS = {
    market: tuple(zip(TAIL_FIELD_NAMES[market], TAIL_FIELD_WIDTHS[market], strict=True)) for market in MASTER_MARKETS
}


def _check_layouts() -> None:
    """Check the layout tables against the reference: field counts, unique names, row lengths."""
    for market in MASTER_MARKETS:
        names, widths = TAIL_FIELD_NAMES[market], TAIL_FIELD_WIDTHS[market]
        assert len(names) == len(widths) == len(set(names)), market
        assert HEAD_WIDTH + sum(widths) == ROW_LENGTHS[market], market
    assert len(TAIL_FIELD_NAMES["kospi"]) == 70 and len(TAIL_FIELD_NAMES["kosdaq"]) == 64
    assert len(TAIL_FIELD_NAMES["konex"]) == 38


_check_layouts()


def master_field_slices(market: str) -> dict[str, slice]:
    """Given a master market, return each field's byte slice in a row (newline excluded):
    "단축코드", "표준코드", "한글명", then the tail fields by their reference names."""
    _master_market(market)
    slices = {
        "단축코드": slice(0, SHORT_CODE_WIDTH),
        "표준코드": slice(SHORT_CODE_WIDTH, SHORT_CODE_WIDTH + STANDARD_CODE_WIDTH),
        "한글명": slice(SHORT_CODE_WIDTH + STANDARD_CODE_WIDTH, HEAD_WIDTH),
    }
    offset = HEAD_WIDTH
    for name, width in TAIL_LAYOUTS[market]:
        slices[name] = slice(offset, offset + width)
        offset += width
    return slices


def _master_market(market: str) -> str:
    """Given a market name, return it if it is a master market; raise ValueError otherwise."""
    if market not in MASTER_MARKETS:
        raise ValueError(f"unknown master market {market!r}; expected one of {MASTER_MARKETS}")
    return market


def _field_bytes(name: str, width: int, value: str | int | bool | bytes) -> bytes:
    """Given a field, its width and a value, return exactly ``width`` bytes: bool -> Y/N,
    int -> zero padded, str/bytes -> left justified with spaces. Raise ValueError if too long."""
    if isinstance(value, bool):
        value = "Y" if value else "N"
    if isinstance(value, int):
        encoded = str(value).zfill(width).encode("ascii")
    elif isinstance(value, bytes):
        encoded = value.ljust(width, b" ")
    else:
        encoded = value.encode(MASTER_ENCODING).ljust(width, b" ")
    if len(encoded) != width:
        raise ValueError(f"{name}: {value!r} does not fit {width} bytes")
    return encoded


def _name_bytes(name: str) -> bytes:
    """Given a Korean name, return it in cp949 as exactly 40 bytes: space padded, or cut at
    byte 40 even when that splits a two-byte character (as real files do)."""
    return name.encode(MASTER_ENCODING)[:NAME_WIDTH].ljust(NAME_WIDTH, b" ")


def _tail_values(market: str, group_code: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Given a market, a group code and overrides (reference names or FIELD_ALIASES), return
    the value of every tail field. Raise ValueError for a field the market does not have."""
    names = TAIL_FIELD_NAMES[market]
    values: dict[str, Any] = {name: TAIL_FIELD_DEFAULTS.get(name, FLAG_DEFAULT) for name in names}
    values["그룹코드"] = group_code
    for key, value in fields.items():
        name = FIELD_ALIASES.get(key, key)
        if name not in values:
            raise ValueError(f"{market} rows have no field {key!r}")
        values[name] = value
    return values


def build_master_row(
    market: str,
    short_code: str,
    standard_code: str,
    name: str,
    group_code: str = "ST",
    *,
    length_override: int | None = None,
    **fields: str | int | bool | bytes,
) -> bytes:
    """Given a market ("kospi", "kosdaq", "konex"), codes, a Korean name, a group code and
    tail overrides (e.g. ``거래정지="Y"`` or ``trading_halt=True``, ``상장일자="20240102"`` or
    ``listing_date=...``), return one fixed-width cp949 row ending with b"\\n".

    ``length_override`` pads with spaces or cuts the row (before the newline) to that many
    bytes to make a deliberately bad row. Raise ValueError for values that do not fit.
    """
    _master_market(market)
    values = _tail_values(market, group_code, fields)
    row = (
        _field_bytes("단축코드", SHORT_CODE_WIDTH, short_code)
        + _field_bytes("표준코드", STANDARD_CODE_WIDTH, standard_code)
        + _name_bytes(name)
        + b"".join(_field_bytes(field, width, values[field]) for field, width in TAIL_LAYOUTS[market])
    )
    assert len(row) == ROW_LENGTHS[market], (market, len(row))
    if length_override is not None:
        row = row[:length_override].ljust(length_override, b" ")
    return row + b"\n"


def build_master_zip(market: str, rows: Iterable[bytes], member_name: str | None = None) -> bytes:
    """Given a market and rows (each ending with b"\\n"), return zip bytes holding one
    ``<market>_code.mst`` member (or ``member_name``) with the rows concatenated."""
    _master_market(market)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member_name or f"{market}_code.mst", b"".join(rows))
    return buffer.getvalue()


HOSTILE_ZIP_KINDS = ("lying", "corrupt", "encrypted", "method_99", "bzip2")
LYING_DECLARED_BYTES = 1_000
LYING_ACTUAL_BYTES = 64 * 1024 * 1024
LOCAL_HEADER = b"PK\x03\x04"
CENTRAL_HEADER = b"PK\x01\x02"
LOCAL_HEADER_BYTES = 30
# (local header offset, central header offset) of the fields a hostile zip rewrites
FLAGS_OFFSETS = (6, 8)
METHOD_OFFSETS = (8, 10)
UNCOMPRESSED_SIZE_OFFSETS = (22, 24)


def build_hostile_master_zip(market: str, kind: str) -> bytes:
    """Given a market and a kind, return a master zip that must not be trusted:

    - "lying": declares LYING_DECLARED_BYTES but inflates to LYING_ACTUAL_BYTES (a zip bomb);
    - "corrupt": a deflated member whose compressed bytes are garbage;
    - "encrypted": the encryption flag set;
    - "method_99": compression method 99 (AES), which zipfile cannot read;
    - "bzip2": a real bzip2 member (readable, but neither stored nor deflated).
    """
    member = f"{_master_market(market)}_code.mst"
    if kind == "bzip2":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_BZIP2) as archive:
            archive.writestr(member, build_master_row(market, "005930", "KR7005930003", "삼성전자"))
        return buffer.getvalue()
    content = bytes(LYING_ACTUAL_BYTES) if kind == "lying" else build_master_row(market, "005930", "KR7005930003", "x")
    data = bytearray(build_master_zip(market, [content]))
    if kind == "lying":
        _patch(data, UNCOMPRESSED_SIZE_OFFSETS, struct.pack("<I", LYING_DECLARED_BYTES))
    elif kind == "corrupt":
        name_length, extra_length = struct.unpack_from("<HH", data, 26)
        start = LOCAL_HEADER_BYTES + name_length + extra_length
        compressed = struct.unpack_from("<I", data, 18)[0]
        data[start : start + compressed] = b"\xff" * compressed
    elif kind == "encrypted":
        _patch(data, FLAGS_OFFSETS, struct.pack("<H", struct.unpack_from("<H", data, 6)[0] | 0x1))
    elif kind == "method_99":
        _patch(data, METHOD_OFFSETS, struct.pack("<H", 99))
    else:
        raise ValueError(f"unknown hostile zip kind {kind!r}; expected one of {HOSTILE_ZIP_KINDS}")
    return bytes(data)


def _patch(data: bytearray, offsets: tuple[int, int], value: bytes) -> None:
    """Given zip bytes with one member, write `value` at a field's offset in its local and central headers."""
    local_offset, central_offset = offsets
    for start in (data.index(LOCAL_HEADER) + local_offset, data.rindex(CENTRAL_HEADER) + central_offset):
        data[start : start + len(value)] = value


def master_file_name(market: str) -> str:
    """Given a market, return its download file name, e.g. ``kospi_code.mst.zip``."""
    return f"{_master_market(market)}_code.mst.zip"


# --------------------------------------------------------------------------- price rows


def _krx_tick(price: int) -> int:
    """Given a price in won, return the KRX tick size for it."""
    for limit, tick in KRX_TICKS:
        if price < limit:
            return tick
    return KRX_TOP_TICK


def _on_tick(value: float) -> int:
    """Given a raw positive price, return the nearest valid KRX price (at least one tick)."""
    tick = _krx_tick(max(int(value), 1))
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
    dated on the period's last trading day in ``rows`` (see the module docstring)."""
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


def _output1(code: str, name: str, series: list[dict[str, str]]) -> dict[str, str]:
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


class _Reject(Exception):
    """Raised inside a route to answer with ``response`` instead."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def rest_error(status: int, msg_cd: str, **format_fields: str) -> Response:
    """Given a status and a message code, return a KIS REST error answer (rt_cd "1")."""
    message = MESSAGES[msg_cd].format(**format_fields)
    return json_response(status, {"rt_cd": "1", "msg_cd": msg_cd, "msg1": message})


def oauth_error(error_code: str) -> Response:
    """Given an error code, return the token endpoint's HTTP 403 error answer."""
    return json_response(403, {"error_code": error_code, "error_description": MESSAGES[error_code]})


@dataclass
class IssuedToken:
    """A token the fake issued."""

    token: str
    app_key: str
    issued_at: datetime
    expires_at: datetime
    expired: bool = False
    revoked: bool = False


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
    """Given the query of a daily price request, return it validated. Raise _Reject with
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
            raise _Reject(rest_error(200, "OPSQ2001", field=name))
    return PriceQuery(
        upper["FID_INPUT_ISCD"], upper["FID_INPUT_DATE_1"], upper["FID_INPUT_DATE_2"], upper["FID_ORG_ADJ_PRC"] == "0",
        upper["FID_PERIOD_DIV_CODE"],
    )


def parse_quote_codes(query: dict[str, str]) -> list[str]:
    """Given the query of a multi-price request, return its codes in order. Raise _Reject with
    OPSQ2001 when the numbers are not 1..n (n <= 30), a code is empty or a division code is bad."""
    upper = {name.upper(): value for name, value in query.items()}
    prefix = "FID_INPUT_ISCD_"
    numbers = sorted(int(name[len(prefix):]) for name in upper
                     if name.startswith(prefix) and name[len(prefix):].isdigit())
    if not numbers or numbers != list(range(1, len(numbers) + 1)) or len(numbers) > MAX_QUOTE_CODES:
        raise _Reject(rest_error(200, "OPSQ2001", field=prefix + "1"))
    for number in numbers:
        if not upper[f"{prefix}{number}"] or upper.get(f"FID_COND_MRKT_DIV_CODE_{number}") not in MARKET_DIV_CODES:
            raise _Reject(rest_error(200, "OPSQ2001", field=f"{prefix}{number}"))
    return [upper[f"{prefix}{number}"] for number in numbers]


def _blank_quote(code: str) -> dict[str, str]:
    """Given a code, return a multi-price row of zeros (to be filled by ``set_quote``)."""
    keys = ("inter2_prpr", "inter2_prdy_vrss", "prdy_ctrt", "acml_vol", "inter2_oprc", "inter2_hgpr",
            "inter2_lwpr", "inter2_askp", "inter2_bidp", "acml_tr_pbmn", "inter2_prdy_clpr")
    return {"inter_shrn_iscd": code, "inter_kor_isnm": "", "prdy_vrss_sign": SIGN_FLAT, **{key: "0" for key in keys}}


def _quote_from_series(code: str, name: str, series: list[dict[str, str]]) -> dict[str, str]:
    """Given a code, its name and its original daily rows oldest first, return the multi-price row
    of the newest day: price = close, bid = close, ask = close + one tick, change in percent (2 dp)."""
    snapshot = _output1(code, name, series)
    close = int(snapshot["stck_prpr"])
    return {
        "inter_shrn_iscd": code, "inter_kor_isnm": name, "inter2_prpr": snapshot["stck_prpr"],
        "inter2_prdy_vrss": snapshot["prdy_vrss"], "prdy_vrss_sign": snapshot["prdy_vrss_sign"],
        "prdy_ctrt": snapshot["prdy_ctrt"], "acml_vol": snapshot["acml_vol"], "inter2_oprc": snapshot["stck_oprc"],
        "inter2_hgpr": snapshot["stck_hgpr"], "inter2_lwpr": snapshot["stck_lwpr"],
        "inter2_askp": str(close + _krx_tick(close)), "inter2_bidp": str(close),
        "acml_tr_pbmn": snapshot["acml_tr_pbmn"], "inter2_prdy_clpr": snapshot["stck_prdy_clpr"],
    }


def _utc_now() -> datetime:
    """Return the current time, timezone aware."""
    return datetime.now(timezone.utc)


# --------------------------------------------------------------------------- the fake


class FakeKis(FakeService):
    """A fake KIS API host plus master-file host on loopback. See the module docstring."""

    MALFORMED_BODY = b'{"output1":{"stck_prpr":"70000"},"output2":[{"stck_bsop_date": '
    HUGE_NUMBER_FIELD = "stck_clpr"  # only in output2 rows (output1 has stck_oprc too)

    def __init__(
        self,
        app_key: str = DEFAULT_APP_KEY,
        app_secret: str = DEFAULT_APP_SECRET,
        latency: float = 0.0,
        rate_limit: int | None = DEFAULT_RATE_LIMIT,
        token_throttle_seconds: float | None = DEFAULT_TOKEN_THROTTLE_SECONDS,
        token_lifetime_seconds: float = DEFAULT_TOKEN_LIFETIME_SECONDS,
        token_reuse_seconds: float | None = None,
        prices: dict[str, list[dict[str, str]]] | None = None,
        names: dict[str, str] | None = None,
        now: Callable[[], datetime] | None = None,
        pad_empty: bool = False,
        duplicate_rows: bool = False,
        virtual: bool = False,
    ) -> None:
        super().__init__(latency)
        self.virtual = virtual
        self._quotes: dict[str, dict[str, str]] = {}
        self.app_key = app_key
        self.app_secret = app_secret
        self.token_throttle_seconds = token_throttle_seconds
        self.token_lifetime_seconds = token_lifetime_seconds
        self.token_reuse_seconds = token_reuse_seconds
        self.pad_empty = pad_empty
        self.duplicate_rows = duplicate_rows
        self.now = now or _utc_now
        self.tokens_issued = 0
        self.reject_tokens: str | None = None
        self.token_fields: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._limiter = SlidingWindowLimiter(rate_limit, 1.0)
        self._tokens: dict[str, IssuedToken] = {}
        self._last_issue: dict[str, IssuedToken] = {}
        self._prices: dict[str, list[dict[str, str]]] = {}
        self._splits: dict[str, list[tuple[str, Decimal]]] = {}
        self._names = dict(names or {})
        self._masters: dict[str, bytes] = {}
        for code, rows in (prices or {}).items():
            self.set_prices(code, rows)

    # ---- mutators

    @property
    def master_url(self) -> str:
        """Return the master-file base URL, e.g. ``http://127.0.0.1:PORT/common/master``."""
        return self.url + MASTER_PREFIX.rstrip("/")

    @property
    def tokens(self) -> list[IssuedToken]:
        """Return the tokens issued so far, oldest first."""
        with self._lock:
            return list(self._tokens.values())

    def set_prices(self, code: str, rows: list[dict[str, str]], name: str | None = None) -> None:
        """Given a code and its original rows (any order), replace them and forget its splits."""
        with self._lock:
            self._prices[code] = sorted((dict(row) for row in rows), key=lambda row: row["stck_bsop_date"])
            self._splits.pop(code, None)
            if name is not None:
                self._names[code] = name

    def apply_split(
        self, code: str, on_date: date | str, ratio: int | str | Decimal, flng_cls_code: str = SPLIT_FLNG_CLS_CODE
    ) -> None:
        """Given a code, the split day (date or YYYYMMDD) and a ratio (e.g. 50 for 1 -> 50
        shares), mark that day's row and adjust the adjusted series. Raise KeyError if the
        code has no row on that day."""
        day = on_date.strftime("%Y%m%d") if isinstance(on_date, date) else on_date
        with self._lock:
            row = next((row for row in self._prices.get(code, []) if row["stck_bsop_date"] == day), None)
            if row is None:
                raise KeyError(f"{code} has no row on {day}")
            row.update(flng_cls_code=flng_cls_code, mod_yn="Y")
            self._splits.setdefault(code, []).append((day, Decimal(ratio)))

    def set_quote(self, code: str, **fields: str) -> dict[str, str]:
        """Given a code and multi-price fields, set its quote row: the derived one (or a blank
        one) with those fields replaced (a field set to ``...`` is removed). Return it."""
        with self._lock:
            row = {**(self._quotes.get(code) or self.quote(code) or _blank_quote(code)), **fields}
            self._quotes[code] = {key: value for key, value in row.items() if value is not ...}
            return dict(self._quotes[code])

    def quote(self, code: str) -> dict[str, str] | None:
        """Given a code, return its multi-price row, or None if it has no quote and no daily rows."""
        with self._lock:
            if code in self._quotes:
                return dict(self._quotes[code])
            series = self.series(code, adjusted=False)
            return _quote_from_series(code, self._names.get(code, ""), series) if series else None

    def set_master(self, market: str, zip_bytes: bytes | None) -> None:
        """Given a master market and zip bytes (None removes it), serve them."""
        with self._lock:
            if zip_bytes is None:
                self._masters.pop(_master_market(market), None)
            else:
                self._masters[_master_market(market)] = zip_bytes

    def expire_tokens(self) -> None:
        """Make every token issued so far expired (EGW00123 on use)."""
        with self._lock:
            for token in self._tokens.values():
                token.expired = True

    def series(self, code: str, adjusted: bool = True) -> list[dict[str, str]]:
        """Given a code, return copies of its adjusted or original rows, oldest first."""
        with self._lock:
            rows = self._prices.get(code, [])
            if adjusted:
                return adjusted_rows(rows, self._splits.get(code, []))
            return [dict(row) for row in rows]

    # ---- admission

    def _admit(self, request: Request) -> Admission:
        """Given a request, reject price requests above the per-app-key rate with EGW00201."""
        if request.path not in (PRICE_PATH, QUOTES_PATH):
            return Admission()
        accepted, _ = self._limiter.acquire(request.header("appkey", ""))
        return Admission() if accepted else Admission(rest_error(500, "EGW00201"))

    # ---- routes

    def _route(self, request: Request, stuck_cursor: bool) -> Response:
        """Given an admitted request, return the normal answer for its route."""
        routes = {
            ("POST", TOKEN_PATH): self._answer_token,
            ("POST", REVOKE_PATH): self._answer_revoke,
            ("GET", PRICE_PATH): lambda req: self._answer_prices(req, stuck_cursor),
            ("GET", QUOTES_PATH): self._answer_quotes,
        }
        try:
            if request.method == "GET" and request.path.startswith(MASTER_PREFIX):
                return self._answer_master(request.path[len(MASTER_PREFIX) :])
            answer = routes.get((request.method, request.path))
            return answer(request) if answer else rest_error(404, "MCA00124")
        except _Reject as rejection:
            return rejection.response

    def _internal_error(self) -> Response:
        """Return an HTTP 500 in the KIS REST error shape."""
        return rest_error(500, "EGW00002")

    def _empty_response(self, request: Request) -> Response:
        """Given a request, return a well-formed empty answer: no rows for prices, an empty
        ``.mst`` member for a master file, ``{}`` otherwise."""
        if request.path == PRICE_PATH:
            code = {name.upper(): value for name, value in request.query.items()}.get("FID_INPUT_ISCD", "")
            return self._price_answer(code, self.series(code), [])
        market = request.path[len(MASTER_PREFIX) :].split("_", 1)[0]
        if request.path.startswith(MASTER_PREFIX) and market in MASTER_MARKETS:
            return Response(200, build_master_zip(market, []), "application/zip")
        return json_response(200, {})

    def _error_with_message(self, request: Request, message: str) -> Response:
        """Given a request and a message, return an HTTP 400 error carrying it: the token
        endpoint's shape on ``/oauth2/tokenP``, the REST shape (rt_cd "1") elsewhere."""
        if request.path == TOKEN_PATH:
            return json_response(400, {"error_code": "EGW00101", "error_description": message})
        return json_response(400, {"rt_cd": "1", "msg_cd": "OPSQ0002", "msg1": message})

    # ---- tokens

    def _check_app_credentials(self, app_key: Any, app_secret: Any) -> None:
        """Given an app key and secret, raise _Reject (403 token shape) if missing or wrong."""
        for value, valid, missing_code, wrong_code in (
            (app_key, self.app_key, "EGW00102", "EGW00103"),
            (app_secret, self.app_secret, "EGW00104", "EGW00105"),
        ):
            if not value:
                raise _Reject(oauth_error(missing_code))
            if value != valid:
                raise _Reject(oauth_error(wrong_code))

    def _answer_token(self, request: Request) -> Response:
        """Given a tokenP request, issue (or reuse) a token, or answer a 403 error."""
        body = request.json()
        if not isinstance(body, dict):
            return oauth_error("EGW00101")
        self._check_app_credentials(body.get("appkey"), body.get("appsecret"))
        if body.get("grant_type") != "client_credentials":
            return oauth_error("EGW00101")
        with self._lock:
            token = self._issue(body["appkey"], self.now())
            self.tokens_issued += 1
        return json_response(
            200,
            {
                "access_token": token.token,
                "access_token_token_expired": token.expires_at.astimezone(KST).strftime(TOKEN_EXPIRY_FORMAT),
                "token_type": "Bearer",
                "expires_in": int((token.expires_at - token.issued_at).total_seconds()),
                **self.token_fields,
            },
        )

    def _issue(self, app_key: str, now: datetime) -> IssuedToken:
        """Given an app key and the time, return a new or reused token (caller holds the
        lock). Raise _Reject with EGW00133 within the throttle time of the last issuance."""
        last = self._last_issue.get(app_key)
        if last is not None:
            age = (now - last.issued_at).total_seconds()
            if self.token_throttle_seconds and age < self.token_throttle_seconds:
                raise _Reject(oauth_error("EGW00133"))
            reusable = not (last.expired or last.revoked or now >= last.expires_at)
            if self.token_reuse_seconds and age < self.token_reuse_seconds and reusable:
                return last
        lifetime = timedelta(seconds=self.token_lifetime_seconds)
        token = IssuedToken("eyJ0eXAiOiJKV1Qi." + secrets.token_urlsafe(96), app_key, now, now + lifetime)
        self._tokens[token.token] = token
        self._last_issue[app_key] = token
        return token

    def _answer_revoke(self, request: Request) -> Response:
        """Given a revokeP request, revoke its token (unknown tokens are accepted too)."""
        body = request.json()
        if not isinstance(body, dict):
            return oauth_error("EGW00101")
        self._check_app_credentials(body.get("appkey"), body.get("appsecret"))
        with self._lock:
            token = self._tokens.get(str(body.get("token")))
            if token is not None:
                token.revoked = True
        return json_response(200, {"code": 200, "message": REVOKE_MESSAGE})

    # ---- daily prices

    def _check_price_headers(self, request: Request, tr_id: str = PRICE_TR_ID) -> None:
        """Given a price (or quotes) request and its tr_id, raise _Reject (HTTP 500, rt_cd "1") for a missing or wrong
        app key, secret, authorization, token, tr_id or custtype."""
        for header, valid, missing_code, wrong_code in (
            ("appkey", self.app_key, "EGW00102", "EGW00103"),
            ("appsecret", self.app_secret, "EGW00104", "EGW00105"),
        ):
            value = request.header(header)
            if not value or value != valid:
                raise _Reject(rest_error(500, missing_code if not value else wrong_code))
        self._check_token(request.header("authorization") or "")
        if request.header("tr_id") != tr_id:
            raise _Reject(rest_error(500, "OPSQ0002"))
        if request.header("custtype") != CUSTOMER_TYPE:
            raise _Reject(rest_error(500, "EGW00208"))

    def _check_token(self, authorization: str) -> None:
        """Given an authorization header value, raise _Reject unless it is ``Bearer`` with a
        live token of this fake: EGW00205 (not Bearer), EGW00121 (unknown or revoked),
        EGW00123 (expired)."""
        scheme, _, token_text = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token_text.strip():
            raise _Reject(rest_error(500, "EGW00205"))
        with self._lock:
            token = self._tokens.get(token_text.strip())
            if self.reject_tokens:
                raise _Reject(rest_error(500, self.reject_tokens))
            if token is None or token.revoked:
                raise _Reject(rest_error(500, "EGW00121"))
            if token.expired or self.now() >= token.expires_at:
                raise _Reject(rest_error(500, "EGW00123"))

    def _answer_prices(self, request: Request, stuck_cursor: bool) -> Response:
        """Given a daily price request, return its page: rows within the inclusive date range,
        newest first, at most 100 (``stuck_cursor`` ignores FID_INPUT_DATE_2)."""
        self._check_price_headers(request)
        query = parse_price_query(request.query)
        series = period_rows(self.series(query.code, query.adjusted), query.period)
        end = "99991231" if stuck_cursor else query.end
        window = [row for row in series if query.start <= row["stck_bsop_date"] <= end]
        return self._price_answer(query.code, series, self._page(window))

    def _creeping_response(self, request: Request) -> Response:
        """Given a price request, answer 100 copies of the newest row in range (the cursor then
        moves back one day per page); other requests normally."""
        if request.path != PRICE_PATH:
            return self._route(request, stuck_cursor=False)
        try:
            self._check_price_headers(request)
            query = parse_price_query(request.query)
        except _Reject as rejection:
            return rejection.response
        series = self.series(query.code, query.adjusted)
        window = [row for row in series if query.start <= row["stck_bsop_date"] <= query.end]
        return self._price_answer(query.code, series, self._page(window[-1:]) * MAX_ROWS)

    def _page(self, window: list[dict[str, str]]) -> list[dict[str, str]]:
        """Given the rows in range oldest first, return the page as answered: newest first,
        at most 100, with duplicates and ``{}`` padding when configured."""
        page: list[dict[str, str]] = [{key: row[key] for key in ROW_KEYS if key in row} for row in reversed(window)][
            :MAX_ROWS
        ]
        if self.duplicate_rows and page:
            page = (page[:1] + [dict(page[0])] + page[1:])[:MAX_ROWS]
        if self.pad_empty and len(page) < MAX_ROWS:
            page += [{} for _ in range(min(PAD_EMPTY_COUNT, MAX_ROWS - len(page)))]
        return page

    def _price_answer(self, code: str, series: list[dict[str, str]], page: list[dict[str, str]]) -> Response:
        """Given a code, its full series and a page of rows, return the HTTP 200 answer."""
        with self._lock:
            name = self._names.get(code, "")
        body = {
            "output1": _output1(code, name, series),
            "output2": page,
            "rt_cd": "0",
            "msg_cd": OK_CODE,
            "msg1": OK_MESSAGE,
        }
        return json_response(200, body, **{"tr_id": PRICE_TR_ID, "tr_cont": "", "gt_uid": secrets.token_hex(16)})

    # ---- multi-price quotes

    def _answer_quotes(self, request: Request) -> Response:
        """Given a multi-price request, return the quote rows of its codes (those that have one)."""
        if self.virtual:
            return rest_error(404, "MCA00124")
        self._check_price_headers(request, QUOTES_TR_ID)
        codes = parse_quote_codes(request.query)
        rows = [row for row in map(self.quote, codes) if row is not None]
        body = {"rt_cd": "0", "msg_cd": OK_CODE, "msg1": OK_MESSAGE, "output": rows}
        return json_response(200, body, **{"tr_id": QUOTES_TR_ID, "tr_cont": "", "gt_uid": secrets.token_hex(16)})

    # ---- master files

    def _answer_master(self, file_name: str) -> Response:
        """Given a master file name, return its zip, or 404 if unknown or not set."""
        with self._lock:
            for market, zip_bytes in self._masters.items():
                if file_name == master_file_name(market):
                    return Response(200, zip_bytes, "application/zip")
        return Response(404, NOT_FOUND_HTML, HTML_CONTENT_TYPE)
