"""KIS master files: byte-exact parsing, and `wombat-collect symbols --exchange kis` end to end."""

import logging
import tracemalloc

import pytest

from tests.conftest import query, run_cli
from tests.fakes.kis_server import (
    LYING_ACTUAL_BYTES,
    FakeKis,
    build_hostile_master_zip,
    build_master_row,
    build_master_zip,
)
from tests.kis_support import EXPECTED_SYMBOLS, MASTERS, install_masters, kis_env, kis_symbols
from wombat_collect.collectors import kis, kis_master
from wombat_collect.config import load_settings
from wombat_collect.errors import ExchangeError
from wombat_collect.records import SymbolRecord

FULL_NAME = "가나다라마바사아자차카타파하거너더러머버"  # 20 two-byte characters: all 40 bytes
CUT_NAME = "A" + FULL_NAME  # 41 bytes: byte 40 is the first half of the last character


def record(symbol, name, market="KOSPI", symbol_type="STOCK"):
    return SymbolRecord(symbol=symbol, base_asset=name, quote_asset="KRW", market=market,
                        symbol_type=symbol_type, price_precision=0, quantity_precision=0)


@pytest.fixture
def fake():
    with FakeKis(rate_limit=None) as server:
        yield server


def test_parse_master_reads_tricky_kospi_rows():
    rows = [
        build_master_row("kospi", "005930", "KR7005930003", "삼성전자", "ST"),
        build_master_row("kospi", "00680K", "KR700680K016", "미래에셋증권2우B", "ST"),
        build_master_row("kospi", "F70101786", "KRF701017865", FULL_NAME, "BC"),
        build_master_row("kospi", "069500", "KR7069500007", CUT_NAME, "EF"),
        build_master_row("kospi", "580001", "KRG580001234", "신한 레버리지 ETN", "EN"),
        build_master_row("kospi", "330590", "KR7330590003", "롯데리츠", "RT"),
        build_master_row("kospi", "900140", "KYG5307W1015", "엘브이엠씨홀딩스", "FS"),
    ]
    assert kis_master.parse_master(b"".join(rows), "KOSPI") == [
        record("005930", "삼성전자"),
        record("00680K", "미래에셋증권2우B"),
        record("F70101786", FULL_NAME, symbol_type="BC"),
        record("069500", CUT_NAME[:-1], symbol_type="ETF"),
        record("580001", "신한 레버리지 ETN", symbol_type="ETN"),
        record("330590", "롯데리츠", symbol_type="REIT"),
        record("900140", "엘브이엠씨홀딩스"),
    ]


def test_parse_master_skips_wrong_length_rows_with_one_counted_warning(caplog):
    rows = [
        build_master_row("kosdaq", "035720", "KR7035720002", "카카오게임즈"),
        build_master_row("kosdaq", "111111", "KR7111111111", "짧은행", length_override=281),
        build_master_row("kosdaq", "222222", "KR7222222222", "긴행", length_override=288),
        build_master_row("kosdaq", "091990", "KR7091990002", "셀트리온헬스케어"),
    ]
    with caplog.at_level(logging.WARNING):
        records = kis_master.parse_master(b"".join(rows), "KOSDAQ")
    assert records == [record("035720", "카카오게임즈", "KOSDAQ"), record("091990", "셀트리온헬스케어", "KOSDAQ")]
    warnings = [item.getMessage() for item in caplog.records if item.levelno == logging.WARNING]
    assert warnings == ["kis KOSDAQ master: skipped 2 malformed row(s) (expected 282 bytes each)"]


def test_parse_master_accepts_crlf_line_ends():
    rows = [build_master_row("kospi", code, "KR7005930003", "삼성전자")[:-1] + b"\r\n" for code in ("005930", "005935")]
    assert [item.symbol for item in kis_master.parse_master(b"".join(rows), "KOSPI")] == ["005930", "005935"]


def test_parse_master_empty_file_is_an_empty_market():
    assert kis_master.parse_master(b"", "KONEX") == []
    assert kis_master.parse_master(b"\n", "KONEX") == []


def test_parse_master_reads_konex_rows():
    rows = [build_master_row("konex", "217320", "KR7217320001", "썬테크", "KN"),
            build_master_row("konex", "224880", "KR7224880005", "코넥스샘플", "ST")]
    assert len(rows[0]) == 246
    assert kis_master.parse_master(b"".join(rows), "KONEX") == [
        record("217320", "썬테크", "KONEX"), record("224880", "코넥스샘플", "KONEX")]


def test_parse_master_keeps_unknown_group_codes():
    row = build_master_row("kospi", "123456", "KR7123456789", "어떤증권", "SW")
    assert kis_master.parse_master(row, "KOSPI") == [record("123456", "어떤증권", symbol_type="SW")]


def test_read_member_rejects_a_file_that_is_not_a_zip():
    with pytest.raises(ExchangeError, match="kospi_code.mst.zip is not a readable zip"):
        kis_master.read_member(b"<html>maintenance</html>", "KOSPI")


def test_read_member_rejects_a_zip_without_mst_member():
    archive = build_master_zip("kospi", [b"x\n"], member_name="readme.txt")
    with pytest.raises(ExchangeError, match=r"holds no \.mst file \(only readme.txt\)"):
        kis_master.read_member(archive, "KOSPI")


def test_read_member_lying_zip_never_inflates_past_its_declared_size():
    archive = build_hostile_master_zip("kospi", "lying")
    tracemalloc.start()
    try:
        with pytest.raises(ExchangeError) as raised:
            kis_master.read_member(archive, "KOSPI")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(raised.value) == "kis: kospi_code.mst.zip is not a readable zip: Bad CRC-32 for file 'kospi_code.mst'"
    assert peak < LYING_ACTUAL_BYTES // 16  # a few chunks at most, never the 64 MiB it inflates to


@pytest.mark.parametrize(("kind", "reason"), [
    ("corrupt", "is not a readable zip: Error -3 while decompressing data: invalid block type"),
    ("encrypted", "member is encrypted; refusing"),
    ("method_99", "member uses compression method 99; only stored and deflated are accepted"),
    ("bzip2", "member uses compression method 12; only stored and deflated are accepted"),
])
def test_read_member_refuses_an_unreadable_member_in_one_line(kind, reason):
    with pytest.raises(ExchangeError) as raised:
        kis_master.read_member(build_hostile_master_zip("konex", kind), "KONEX")
    assert str(raised.value) == f"kis: konex_code.mst.zip {reason}"


def test_read_member_refuses_a_member_declaring_too_many_bytes(monkeypatch):
    monkeypatch.setattr(kis_master, "MAX_MEMBER_BYTES", 500)
    archive = build_master_zip("kospi", [build_master_row("kospi", "005930", "KR7005930003", "삼성전자")] * 2)
    with pytest.raises(ExchangeError, match=r"^kis: kospi_code.mst.zip member is 578 bytes; refusing$"):
        kis_master.read_member(archive, "KOSPI")


def test_read_member_flattens_member_names_in_its_message():
    archive = build_master_zip("kospi", [b"x\n"], member_name="read\nme<0>.txt")
    with pytest.raises(ExchangeError) as raised:
        kis_master.read_member(archive, "KOSPI")
    assert str(raised.value) == "kis: kospi_code.mst.zip holds no .mst file (only read me<0>.txt)"


def test_fetch_symbols_downloads_one_market(fake, tmp_path):
    install_masters(fake)
    client = kis.open_client(load_settings({
        "KIS_API_URL": fake.url, "KIS_MASTER_URL": fake.master_url, "KIS_APP_KEY": "k" * 36,
        "KIS_APP_SECRET": "s" * 180, "WOMBAT_STATE_DIR": str(tmp_path)}))
    assert [item.symbol for item in kis.fetch_symbols(client, "KOSDAQ")] == ["035720", "900110", "091990"]
    assert [request.path for request in fake.requests] == ["/common/master/kosdaq_code.mst.zip"]


def test_fetch_symbols_missing_file_raises_exchange_error(fake, tmp_path):
    client = kis.open_client(load_settings({
        "KIS_API_URL": fake.url, "KIS_MASTER_URL": fake.master_url, "KIS_APP_KEY": "k" * 36,
        "KIS_APP_SECRET": "s" * 180, "WOMBAT_STATE_DIR": str(tmp_path)}))
    with pytest.raises(ExchangeError, match="cannot download .*konex_code.mst.zip: HTTP 404"):
        list(kis.fetch_symbols(client, "KONEX"))


def test_symbols_stores_every_security_of_the_three_files(database, fake, tmp_path):
    install_masters(fake)
    result = run_cli("symbols", "--exchange", "kis", env=kis_env(database, fake, tmp_path))
    assert result.exit_code == 0, result.output
    assert kis_symbols(database) == EXPECTED_SYMBOLS
    assert "symbols kis: 3 markets (3 ok), 9 symbols listed, 9 rows (9 new) in" in result.stdout
    assert fake.count("/oauth2/tokenP") == 0


def test_symbols_marks_delisted_securities_inactive(database, fake, tmp_path):
    install_masters(fake)
    env = kis_env(database, fake, tmp_path)
    assert run_cli("symbols", "--exchange", "kis", env=env).exit_code == 0
    install_masters(fake, {"kospi": [row for row in MASTERS["kospi"] if row[0] != "00680K"]})
    result = run_cli("symbols", "--exchange", "kis", env=env)
    assert result.exit_code == 0, result.output
    assert kis_symbols(database) == [row if row[0] != "00680K" else row[:5] + (False,) + row[6:]
                                     for row in EXPECTED_SYMBOLS]


def test_symbols_broken_konex_file_fails_only_that_market(database, fake, tmp_path):
    install_masters(fake)
    env = kis_env(database, fake, tmp_path)
    assert run_cli("symbols", "--exchange", "kis", env=env).exit_code == 0
    konex_before = query(database, "SELECT symbol, is_active, updated_at FROM symbol WHERE market = 'KONEX'")
    fake.set_master("konex", b"PK\x03\x04 this is no zip")
    install_masters(fake, {"kospi": MASTERS["kospi"] + [("000660", "KR7000660001", "SK하이닉스", "ST")]})
    result = run_cli("symbols", "--exchange", "kis", env=env)
    assert result.exit_code == 1, result.output
    assert "KONEX: kis: konex_code.mst.zip is not a readable zip" in result.stderr
    assert query(database, "SELECT symbol, is_active, updated_at FROM symbol WHERE market = 'KONEX'") == konex_before
    assert ("000660", "SK하이닉스", "KRW", "KOSPI", "STOCK", True, 0, 0) in kis_symbols(database)


@pytest.mark.parametrize("kind", ["corrupt", "encrypted", "method_99", "lying"])
def test_symbols_hostile_konex_zip_fails_only_that_market(database, fake, tmp_path, kind):
    install_masters(fake)
    fake.set_master("konex", build_hostile_master_zip("konex", kind))
    result = run_cli("symbols", "--exchange", "kis", env=kis_env(database, fake, tmp_path))
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert [line for line in result.stderr.splitlines() if "symbols kis KONEX: kis: konex_code.mst.zip" in line] != []
    assert [row[0] for row in kis_symbols(database)] == [
        "005930", "00680K", "035720", "069500", "091990", "900110", "F70101786"]


def test_symbols_empty_konex_file_is_not_an_error(database, fake, tmp_path):
    install_masters(fake, {"kospi": MASTERS["kospi"], "kosdaq": MASTERS["kosdaq"], "konex": []})
    result = run_cli("symbols", "--exchange", "kis", env=kis_env(database, fake, tmp_path))
    assert result.exit_code == 0, result.output
    assert [row[0] for row in kis_symbols(database)] == [
        "005930", "00680K", "035720", "069500", "091990", "900110", "F70101786"]
