"""The fake KIS master files (kospi/kosdaq/konex_code.mst.zip): the fixed-width row layouts of the
reference, rows and zips built from them, and hostile zips."""

from __future__ import annotations

import io
import struct
import zipfile
from typing import Any, Iterable

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
    master_market(market)
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


def master_market(market: str) -> str:
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
    master_market(market)
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
    master_market(market)
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
    member = f"{master_market(market)}_code.mst"
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
    return f"{master_market(market)}_code.mst.zip"


# --------------------------------------------------------------------------- price rows
