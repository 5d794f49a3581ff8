"""The raw-SQL upsert layer against a real PostgreSQL."""

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from tests.conftest import ids_taken
from wombat_collect.db import store
from wombat_collect.db.migrate import apply_migrations
from wombat_collect.records import Candle, ExchangeInfo, SymbolRecord, UpsertCounts

UPBIT = ExchangeInfo("upbit", "Upbit", "KR", "Asia/Seoul")
DAY = datetime(2025, 7, 1, tzinfo=timezone.utc)


def symbol_record(name, market="KRW"):
    base, quote = name.split("/")
    return SymbolRecord(name, base, quote, market, "CRYPTO", 8, 8)


def candle(day, close="100", quote_volume="242634976840.02426000"):
    return Candle(datetime(2025, 7, day, tzinfo=timezone.utc), Decimal("90"), Decimal("110"), Decimal("80"),
                  Decimal(close), Decimal("12.5"), Decimal(quote_volume))


@pytest.fixture
def migrated(connection):
    apply_migrations(connection)
    with connection:
        exchange_id = store.ensure_exchanges(connection, [UPBIT])["upbit"]
    return connection, exchange_id


@pytest.fixture
def symbol_id(migrated):
    connection, exchange_id = migrated
    with connection:
        store.upsert_symbols(connection, exchange_id, [symbol_record("BTC/KRW")])
        return store.stored_symbols(connection, exchange_id)[0].id


def test_ensure_exchanges_never_modifies_an_existing_row(migrated):
    connection, exchange_id = migrated
    with connection, connection.cursor() as cursor:
        cursor.execute("UPDATE exchange SET name = 'Renamed', is_active = false WHERE id = %s", (exchange_id,))
    with connection:
        assert store.ensure_exchanges(connection, [UPBIT]) == {"upbit": exchange_id}
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, is_active FROM exchange")
        assert cursor.fetchall() == [("Renamed", False)]


def test_ensure_exchanges_twice_spends_no_exchange_id(migrated):
    connection, _ = migrated
    assert ids_taken(connection.dsn, "exchange") == 1
    with connection:
        assert store.ensure_exchanges(connection, [UPBIT]) == {"upbit": 1}
        assert store.ensure_exchanges(connection, [UPBIT]) == {"upbit": 1}
    assert ids_taken(connection.dsn, "exchange") == 1
    with connection:
        both = store.ensure_exchanges(connection, [UPBIT, ExchangeInfo("krx", "KRX", None, None)])
    assert (both, ids_taken(connection.dsn, "exchange")) == ({"upbit": 1, "krx": 2}, 2)


def test_upsert_symbols_spends_ids_only_for_inserted_rows(migrated):
    connection, exchange_id = migrated
    with connection:
        store.upsert_symbols(connection, exchange_id, [symbol_record("BTC/KRW"), symbol_record("ETH/KRW")])
    assert ids_taken(connection.dsn, "symbol") == 2
    with connection:
        unchanged = store.upsert_symbols(connection, exchange_id, [symbol_record("BTC/KRW"), symbol_record("ETH/KRW")])
    assert (unchanged, ids_taken(connection.dsn, "symbol")) == (UpsertCounts(0, 0, 2), 2)
    with connection:
        mixed = store.upsert_symbols(connection, exchange_id, [symbol_record("BTC/KRW", market="KRW2"),
                                                               symbol_record("ETH/KRW"), symbol_record("XRP/KRW")])
    assert (mixed, ids_taken(connection.dsn, "symbol")) == (UpsertCounts(1, 1, 1), 3)
    stored = [(item.id, item.symbol, item.market) for item in store.stored_symbols(connection, exchange_id)]
    # The first two were inserted together, in either id order (the insert does not keep the order given).
    assert [(symbol, market) for _, symbol, market in stored] == [("BTC/KRW", "KRW2"), ("ETH/KRW", "KRW"),
                                                                  ("XRP/KRW", "KRW")]
    assert sorted(identifier for identifier, _, _ in stored[:2]) == [1, 2] and stored[2][0] == 3


def test_upsert_symbols_counts_insert_update_and_no_op(migrated):
    connection, exchange_id = migrated
    with connection:
        first = store.upsert_symbols(connection, exchange_id, [symbol_record("BTC/KRW"), symbol_record("ETH/KRW")])
        again = store.upsert_symbols(connection, exchange_id, [symbol_record("BTC/KRW"), symbol_record("ETH/KRW")])
        changed = store.upsert_symbols(connection, exchange_id, [symbol_record("BTC/KRW", market="KRW2")])
    assert (first, again, changed) == (UpsertCounts(2, 0, 0), UpsertCounts(0, 0, 2), UpsertCounts(0, 1, 0))


def test_set_symbols_active_flips_only_what_differs(migrated, symbol_id):
    connection, _ = migrated
    with connection:
        assert store.set_symbols_active(connection, [symbol_id], False) == 1
        assert store.set_symbols_active(connection, [symbol_id], False) == 0
        assert store.set_symbols_active(connection, [symbol_id], True) == 1


def test_upsert_candles_counts_insert_update_and_no_op(migrated, symbol_id):
    connection, _ = migrated
    with connection:
        inserted = store.upsert_candles(connection, symbol_id, [candle(1), candle(2)])
        unchanged = store.upsert_candles(connection, symbol_id, [candle(1), candle(2)])
        updated = store.upsert_candles(connection, symbol_id, [candle(1), candle(2, close="101")])
    assert inserted == (UpsertCounts(2, 0, 0), [])
    assert unchanged == (UpsertCounts(0, 0, 2), [])
    assert updated == (UpsertCounts(0, 1, 1), [datetime(2025, 7, 2, tzinfo=timezone.utc)])


def test_upsert_candles_spends_ids_only_for_inserted_rows(migrated, symbol_id):
    connection, _ = migrated
    with connection:
        store.upsert_candles(connection, symbol_id, [candle(1), candle(2)])
    assert ids_taken(connection.dsn, "pricedata") == 2
    with connection:
        unchanged = store.upsert_candles(connection, symbol_id, [candle(1), candle(2)])
    assert (unchanged, ids_taken(connection.dsn, "pricedata")) == ((UpsertCounts(0, 0, 2), []), 2)
    with connection:
        counts, _ = store.upsert_candles(connection, symbol_id, [candle(1), candle(2, close="101"), candle(3),
                                                                 candle(4)])
    assert (counts, ids_taken(connection.dsn, "pricedata")) == (UpsertCounts(2, 1, 1), 4)
    assert query_ids(connection) == [(1, 1), (2, 2), (3, 3), (4, 4)]


def query_ids(connection):
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, extract(day FROM timestamp AT TIME ZONE 'UTC')::int FROM pricedata ORDER BY id")
        return cursor.fetchall()


def test_upsert_candles_values_rounded_on_storage_are_not_rewritten(migrated, symbol_id):
    connection, _ = migrated
    finer = candle(1, close="100.123456789", quote_volume="242634976840.024260004")
    with connection:
        store.upsert_candles(connection, symbol_id, [finer])
    before = query_versions(connection)
    with connection:
        again = store.upsert_candles(connection, symbol_id, [finer])
    assert again == (UpsertCounts(0, 0, 1), [])
    assert query_versions(connection) == before
    with connection.cursor() as cursor:
        cursor.execute("SELECT close_price::text, quote_volume::text FROM pricedata")
        assert cursor.fetchall() == [("100.12345679", "242634976840.02426000")]


def test_upsert_candles_unchanged_rows_are_not_rewritten(migrated, symbol_id):
    connection, _ = migrated
    with connection:
        store.upsert_candles(connection, symbol_id, [candle(1)])
    before = query_versions(connection)
    with connection:
        store.upsert_candles(connection, symbol_id, [candle(1)])
    assert query_versions(connection) == before


def query_versions(connection):
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, xmin::text FROM pricedata ORDER BY id")
        return cursor.fetchall()


def test_upsert_candles_round_trips_decimals_exactly(migrated, symbol_id):
    connection, _ = migrated
    with connection:
        store.upsert_candles(connection, symbol_id, [candle(1)])
    with connection.cursor() as cursor:
        cursor.execute("SELECT quote_volume, quote_volume::text, close_price FROM pricedata")
        value, text, close = cursor.fetchone()
    assert isinstance(value, Decimal) and value == Decimal("242634976840.02426000")
    assert text == "242634976840.02426000"
    assert close == Decimal("100")


def test_upsert_candles_batch_with_duplicate_keys_keeps_the_last(migrated, symbol_id):
    connection, _ = migrated
    with connection:
        counts, _ = store.upsert_candles(connection, symbol_id, [candle(1, close="100"), candle(1, close="105")])
    assert counts == UpsertCounts(1, 0, 0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT timestamp, close_price, timeframe FROM pricedata")
        assert cursor.fetchall() == [(DAY, Decimal("105"), "1d")]


def test_upsert_candles_supplies_created_at(migrated, symbol_id):
    connection, _ = migrated
    before = datetime.now(timezone.utc)
    with connection:
        store.upsert_candles(connection, symbol_id, [candle(1)])
    with connection.cursor() as cursor:
        cursor.execute("SELECT created_at FROM pricedata")
        created = cursor.fetchone()[0]
    assert before <= created <= datetime.now(timezone.utc)


def test_newest_timestamps_gives_none_for_symbols_without_candles(migrated, symbol_id):
    connection, exchange_id = migrated
    with connection:
        store.upsert_symbols(connection, exchange_id, [symbol_record("ETH/KRW")])
        other = [item.id for item in store.stored_symbols(connection, exchange_id) if item.id != symbol_id][0]
        store.upsert_candles(connection, symbol_id, [candle(1), candle(3)])
        assert store.newest_timestamps(connection, [symbol_id, other]) == {
            symbol_id: datetime(2025, 7, 3, tzinfo=timezone.utc), other: None}
        assert store.oldest_timestamp(connection, symbol_id) == DAY
