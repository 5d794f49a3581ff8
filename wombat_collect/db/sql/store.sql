-- name: insert_missing_exchanges
-- Creates the exchange rows wombat-collect needs; never modifies existing ones. Only codes
-- absent from the table reach the INSERT, so an existing exchange spends no id of exchange_id_seq;
-- ON CONFLICT guards against a concurrent writer. (A template casts each value: see store.py.)
INSERT INTO exchange (code, name, country, timezone, is_active, created_at)
SELECT *
  FROM (VALUES %s) AS incoming (code, name, country, timezone, is_active, created_at)
 WHERE NOT EXISTS (SELECT 1 FROM exchange e WHERE e.code = incoming.code)
ON CONFLICT (code) DO NOTHING;

-- name: exchange_ids
SELECT code, id FROM exchange WHERE code = ANY(%(codes)s);

-- name: upsert_symbols
-- Precision and order-size columns are set on insert only: the backend may refine them.
-- Existing symbols are updated in place (only when a value differs); only symbols absent from
-- the table reach the INSERT, so no id of symbol_id_seq is spent without a row. Both parts see
-- the same snapshot: the INSERT checks the table, not the UPDATE's result. ON CONFLICT guards
-- against a concurrent writer. The rows come from execute_values with a casting template.
WITH incoming (exchange_id, symbol, base_asset, quote_asset, symbol_type, market, is_active,
               min_order_size, max_order_size, price_precision, quantity_precision,
               created_at, updated_at) AS (
    VALUES %s
), updated AS (
    UPDATE symbol AS s
       SET base_asset  = i.base_asset,
           quote_asset = i.quote_asset,
           symbol_type = i.symbol_type,
           market      = i.market,
           is_active   = i.is_active,
           updated_at  = i.updated_at
      FROM incoming i
     WHERE s.exchange_id = i.exchange_id AND s.symbol = i.symbol
       AND (s.base_asset, s.quote_asset, s.symbol_type, s.market, s.is_active)
           IS DISTINCT FROM
           (i.base_asset, i.quote_asset, i.symbol_type, i.market, i.is_active)
    RETURNING false AS inserted
), inserted AS (
    INSERT INTO symbol AS s (exchange_id, symbol, base_asset, quote_asset, symbol_type, market,
                             is_active, min_order_size, max_order_size, price_precision,
                             quantity_precision, created_at, updated_at)
    SELECT *
      FROM incoming i
     WHERE NOT EXISTS (SELECT 1 FROM symbol t WHERE t.exchange_id = i.exchange_id AND t.symbol = i.symbol)
    ON CONFLICT (exchange_id, symbol) DO UPDATE
       SET base_asset  = EXCLUDED.base_asset,
           quote_asset = EXCLUDED.quote_asset,
           symbol_type = EXCLUDED.symbol_type,
           market      = EXCLUDED.market,
           is_active   = EXCLUDED.is_active,
           updated_at  = EXCLUDED.updated_at
     WHERE (s.base_asset, s.quote_asset, s.symbol_type, s.market, s.is_active)
           IS DISTINCT FROM
           (EXCLUDED.base_asset, EXCLUDED.quote_asset, EXCLUDED.symbol_type, EXCLUDED.market,
            EXCLUDED.is_active)
    RETURNING (xmax = 0) AS inserted
)
SELECT inserted FROM updated
UNION ALL
SELECT inserted FROM inserted;

-- name: symbols_of_exchange
SELECT id, symbol, market, is_active
  FROM symbol
 WHERE exchange_id = %(exchange_id)s
 ORDER BY symbol;

-- name: set_symbols_active
UPDATE symbol
   SET is_active = %(active)s, updated_at = now()
 WHERE id = ANY(%(ids)s)
   AND is_active IS DISTINCT FROM %(active)s;

-- name: newest_timestamps
-- The newest stored candle of each symbol (NULL when it has none); uses idx_price_data_symbol_time.
SELECT wanted.id,
       (SELECT max(p."timestamp")
          FROM pricedata p
         WHERE p.symbol_id = wanted.id AND p.timeframe = %(timeframe)s) AS newest
  FROM unnest(%(ids)s::integer[]) AS wanted(id);

-- name: oldest_timestamp
SELECT min("timestamp") FROM pricedata WHERE symbol_id = %(symbol_id)s AND timeframe = %(timeframe)s;

-- name: create_candle_stage
-- A per-session staging table for COPY (created once per connection, silently). Its columns take
-- pricedata's own types, so COPY rounds values as an INSERT would and the upsert compares them
-- with the stored ones exactly. Emptied at commit (a truncation), so it stays a few pages long
-- and the planner's estimate of its rows stays small.
DO $$
BEGIN
    IF to_regclass('pg_temp.candle_stage') IS NULL THEN
        CREATE TEMPORARY TABLE candle_stage ON COMMIT DELETE ROWS AS
        SELECT symbol_id, "timestamp", timeframe, open_price, high_price, low_price, close_price,
               volume, quote_volume, created_at
          FROM pricedata
          WITH NO DATA;
    END IF;
END
$$;

-- name: empty_candle_stage
DELETE FROM candle_stage;

-- name: copy_candle_stage
COPY candle_stage (symbol_id, "timestamp", timeframe, open_price, high_price, low_price, close_price,
                   volume, quote_volume, created_at) FROM STDIN;

-- name: upsert_candles_from_stage
-- Existing candles are updated in place, unchanged ones skipped by the IS DISTINCT FROM (so
-- re-fetched days cost no dead tuples); only candles absent from the table reach the INSERT, so
-- no id of pricedata_id_seq is spent without a row. Both parts see the same snapshot: the INSERT
-- checks the table, not the UPDATE's result. ON CONFLICT guards against a concurrent writer.
-- The stage holds one symbol's candles of one timeframe; giving both as parameters lets the planner
-- probe uq_symbol_time_frame per candle instead of hashing pricedata (10x slower, benchmark_prices.py).
-- first/last are the stage's oldest and newest timestamps: not knowing the temporary stage's size,
-- the planner may still merge it with the stored series, and the bounds keep that read to the
-- staged span (without them, 3,783 rows read for 2 staged candles; benchmark_scale.py).
WITH updated AS (
    UPDATE pricedata AS p
       SET open_price   = c.open_price,
           high_price   = c.high_price,
           low_price    = c.low_price,
           close_price  = c.close_price,
           volume       = c.volume,
           quote_volume = c.quote_volume
      FROM candle_stage c
     WHERE p.symbol_id = %(symbol_id)s AND p."timestamp" = c."timestamp" AND p.timeframe = %(timeframe)s
       AND p."timestamp" BETWEEN %(first)s AND %(last)s
       AND (p.open_price, p.high_price, p.low_price, p.close_price, p.volume, p.quote_volume)
           IS DISTINCT FROM
           (c.open_price, c.high_price, c.low_price, c.close_price, c.volume, c.quote_volume)
    RETURNING p."timestamp", false AS inserted
), inserted AS (
    INSERT INTO pricedata AS p (symbol_id, "timestamp", timeframe, open_price, high_price,
                                low_price, close_price, volume, quote_volume, created_at)
    SELECT symbol_id, "timestamp", timeframe, open_price, high_price, low_price, close_price,
           volume, quote_volume, created_at
      FROM candle_stage c
     WHERE NOT EXISTS (SELECT 1 FROM pricedata t
                        WHERE t.symbol_id = %(symbol_id)s AND t."timestamp" = c."timestamp"
                          AND t.timeframe = %(timeframe)s
                          AND t."timestamp" BETWEEN %(first)s AND %(last)s)
    ON CONFLICT (symbol_id, "timestamp", timeframe) DO UPDATE
       SET open_price   = EXCLUDED.open_price,
           high_price   = EXCLUDED.high_price,
           low_price    = EXCLUDED.low_price,
           close_price  = EXCLUDED.close_price,
           volume       = EXCLUDED.volume,
           quote_volume = EXCLUDED.quote_volume
     WHERE (p.open_price, p.high_price, p.low_price, p.close_price, p.volume, p.quote_volume)
           IS DISTINCT FROM
           (EXCLUDED.open_price, EXCLUDED.high_price, EXCLUDED.low_price, EXCLUDED.close_price,
            EXCLUDED.volume, EXCLUDED.quote_volume)
    RETURNING p."timestamp", (xmax = 0) AS inserted
)
SELECT "timestamp", inserted FROM updated
UNION ALL
SELECT "timestamp", inserted FROM inserted;

-- name: ping
-- Is this pooled connection still alive? (Asked only after the server dropped one.)
SELECT 1;

-- name: set_timeout
-- lock_timeout or statement_timeout for this transaction (local) or this session.
SELECT set_config(%(name)s, %(value)s, %(local)s);

-- name: locked_tables
-- Table-wide locks other sessions hold that block writing these tables (SHARE or stronger).
SELECT c.relname, l.mode, l.pid
  FROM pg_locks l
  JOIN pg_class c ON c.oid = l.relation
 WHERE l.locktype = 'relation'
   AND l.granted
   AND l.pid <> pg_backend_pid()
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.relation = ANY(ARRAY(SELECT to_regclass(name) FROM unnest(%(tables)s::text[]) AS wanted(name)))
   AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
 ORDER BY c.relname, l.pid;
-- name: add_fetched_range
-- Merges [range_start, range_end) with the ranges it overlaps or touches, keeping them disjoint.
WITH touching AS (
    DELETE FROM wombat_collect.fetched_range
     WHERE symbol_id = %(symbol_id)s AND timeframe = %(timeframe)s
       AND range_start <= %(range_end)s AND range_end >= %(range_start)s
    RETURNING range_start, range_end
)
INSERT INTO wombat_collect.fetched_range (symbol_id, timeframe, range_start, range_end)
SELECT %(symbol_id)s, %(timeframe)s,
       LEAST(%(range_start)s::timestamptz, min(range_start)),
       GREATEST(%(range_end)s::timestamptz, max(range_end))
  FROM touching;

-- name: coverage_ends
-- The end of each symbol's oldest fetched range (its contiguous coverage from the oldest fetched period).
SELECT DISTINCT ON (symbol_id) symbol_id, range_end
  FROM wombat_collect.fetched_range
 WHERE symbol_id = ANY(%(ids)s) AND timeframe = %(timeframe)s
 ORDER BY symbol_id, range_start;

-- name: fetched_ranges
SELECT range_start, range_end
  FROM wombat_collect.fetched_range
 WHERE symbol_id = %(symbol_id)s AND timeframe = %(timeframe)s
 ORDER BY range_start;
