"""KIS symbol master files: download, unzip in memory, parse fixed-width cp949 rows.

Facts: ../shared/reference/kis-api.md ("Symbol master files"). Rows are fixed
width in BYTES, so every field is sliced from the raw bytes first and decoded
after; a 40-byte name may end in the first half of a two-byte character.
"""

import io
import logging
import zipfile
import zlib

from wombat_collect.errors import ExchangeError
from wombat_collect.http_text import flatten
from wombat_collect.records import SymbolRecord

MASTER_FILES = {"KOSPI": "kospi_code.mst.zip", "KOSDAQ": "kosdaq_code.mst.zip", "KONEX": "konex_code.mst.zip"}
ROW_LENGTHS = {"KOSPI": 288, "KOSDAQ": 282, "KONEX": 245}  # bytes, newline excluded
MEMBER_SUFFIX = ".mst"
MAX_ZIP_BYTES = 32 * 1024 * 1024  # the largest master zip downloaded; real ones are under 1 MB
MAX_MEMBER_BYTES = 32 * 1024 * 1024  # the most bytes unzipped from a member, whatever it declares
READ_CHUNK_BYTES = 256 * 1024  # a member is unzipped this much at a time
ACCEPTED_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
ENCRYPTED_FLAG = 0x1  # general purpose bit 0
UNREADABLE_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
                         RuntimeError, NotImplementedError)
ENCODING = "cp949"
SHORT_CODE = slice(0, 9)  # 005930, 00680K, F70101786 (left aligned, space padded)
NAME = slice(21, 61)  # Korean name, 40 bytes, space padded, may be cut mid-character
GROUP_CODE = slice(61, 63)  # 그룹코드, the first tail field in all three layouts
QUOTE_ASSET = "KRW"
PRICE_PRECISION = 0  # KRX prices are whole won
QUANTITY_PRECISION = 0  # shares trade in whole units
SYMBOL_TYPES = {  # 그룹코드 -> symbol_type; any other code is stored as itself
    "ST": "STOCK",
    "FS": "STOCK",  # foreign stock
    "KN": "STOCK",  # KONEX stock (the official KONEX layout's only group code)
    "EF": "ETF",
    "EN": "ETN",
    "RT": "REIT",
}

logger = logging.getLogger(__name__)


def master_url(base_url, market):
    """Given the master base URL and a market (KOSPI, KOSDAQ, KONEX), return its zip's URL."""
    return f"{base_url.rstrip('/')}/{MASTER_FILES[market]}"


def read_member(zip_bytes, market):
    """Given a downloaded zip, return the bytes of its `.mst` member, unzipped MAX_MEMBER_BYTES at most.

    Raise ExchangeError (one line) if it is not a zip, holds no `.mst` member, or
    the member is too big, encrypted, compressed other than stored or deflated,
    or corrupt.
    """
    file_name = MASTER_FILES[market]
    try:
        with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
            members = [item for item in archive.infolist() if item.filename.lower().endswith(MEMBER_SUFFIX)]
            if not members:
                names = flatten(", ".join(archive.namelist())) or "nothing"
                raise ExchangeError(f"kis: {file_name} holds no {MEMBER_SUFFIX} file (only {names})")
            check_member(members[0], file_name)
            return unzip_capped(archive, members[0], file_name)
    except UNREADABLE_ZIP_ERRORS as error:
        reason = flatten(error) or type(error).__name__
        raise ExchangeError(f"kis: {file_name} is not a readable zip: {reason}") from None


def check_member(member, file_name):
    """Given a zip member, raise ExchangeError if it declares too many bytes, is encrypted or not stored/deflated."""
    if member.file_size > MAX_MEMBER_BYTES:
        raise ExchangeError(f"kis: {file_name} member is {member.file_size:,} bytes; refusing")
    if member.flag_bits & ENCRYPTED_FLAG:
        raise ExchangeError(f"kis: {file_name} member is encrypted; refusing")
    if member.compress_type not in ACCEPTED_METHODS:
        raise ExchangeError(f"kis: {file_name} member uses compression method {member.compress_type}; "
                            f"only {' and '.join(ACCEPTED_METHODS.values())} are accepted")


def unzip_capped(archive, member, file_name):
    """Given an open zip and a member, return its bytes read in chunks. Raise ExchangeError past MAX_MEMBER_BYTES."""
    chunks, size = [], 0
    with archive.open(member) as stream:
        while chunk := stream.read(READ_CHUNK_BYTES):
            size += len(chunk)
            if size > MAX_MEMBER_BYTES:
                raise ExchangeError(f"kis: {file_name} member unzips to more than {MAX_MEMBER_BYTES:,} bytes; "
                                    "refusing")
            chunks.append(chunk)
    return b"".join(chunks)


def parse_master(content, market):
    """Given the `.mst` bytes of a market, return its SymbolRecords in file order.

    Rows that do not have the market's length (or lack a code or group code) are
    skipped with one warning that counts them. An empty file yields no records.
    """
    records, skipped = [], 0
    for line in content.split(b"\n"):
        row = line[:-1] if line.endswith(b"\r") else line
        if not row.strip():
            continue
        record = parse_row(row, market)
        if record is None:
            skipped += 1
        else:
            records.append(record)
    if skipped:
        logger.warning("kis %s master: skipped %d malformed row(s) (expected %d bytes each)",
                       market, skipped, ROW_LENGTHS[market])
    return records


def parse_row(row, market):
    """Given one row's bytes (no newline) and its market, return a SymbolRecord, or None if malformed."""
    if len(row) != ROW_LENGTHS[market]:
        return None
    code = decode_field(row[SHORT_CODE])
    group_code = decode_field(row[GROUP_CODE])
    if not code or not group_code or " " in code:
        return None
    return SymbolRecord(
        symbol=code, base_asset=decode_field(row[NAME]) or code, quote_asset=QUOTE_ASSET, market=market,
        symbol_type=SYMBOL_TYPES.get(group_code, group_code), price_precision=PRICE_PRECISION,
        quantity_precision=QUANTITY_PRECISION,
    )


def decode_field(raw):
    """Given a field's bytes, return its trimmed cp949 text; a character cut at the field's end is dropped."""
    return raw.decode(ENCODING, errors="ignore").strip()
