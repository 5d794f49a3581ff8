-- realtime_prices: the latest quote per symbol (wombat_collect/quotes.py, db/store.py upsert_quotes).
-- The table is the backend's (migration e6d6b1662d4b); wombat-collect creates it only when absent
-- (migrations/0003.realtime-prices.sql).

-- name: upsert_quotes
-- One statement per exchange and run: the rows travel as parallel arrays. An unchanged quote
-- (same prices, volume and change rate) is not rewritten, so it keeps its updated_at and costs
-- no dead tuple; only symbols in the arrays are touched, others keep their rows. Existing rows
-- are updated in place; only symbols without a row reach the INSERT, so no id of
-- realtime_prices_id_seq is spent without a row (at one quote a minute per symbol, spending one
-- per quote would exhaust the int4 sequence in about two years). Both parts see the same
-- snapshot: the INSERT checks the table, not the UPDATE's result; ON CONFLICT guards against a
-- concurrent writer. The arrays carry realtime_prices' column types, so values are rounded as
-- an INSERT rounds them before they are compared with the stored ones.
WITH incoming (symbol_id, current_price, bid_price, ask_price, volume_24h, change_rate, updated_at) AS (
    SELECT symbol_id, current_price::numeric(20,8), bid_price::numeric(20,8), ask_price::numeric(20,8),
           volume_24h::numeric(20,8), change_rate::numeric(8,4), updated_at
      FROM unnest(%(symbol_ids)s::integer[], %(current_prices)s::numeric[], %(bid_prices)s::numeric[],
                  %(ask_prices)s::numeric[], %(volumes)s::numeric[], %(change_rates)s::numeric[],
                  %(updated_ats)s::timestamptz[])
           AS given (symbol_id, current_price, bid_price, ask_price, volume_24h, change_rate, updated_at)
), updated AS (
    UPDATE realtime_prices AS r
       SET current_price = i.current_price,
           bid_price     = i.bid_price,
           ask_price     = i.ask_price,
           volume_24h    = i.volume_24h,
           change_rate   = i.change_rate,
           updated_at    = i.updated_at
      FROM incoming i
     WHERE r.symbol_id = i.symbol_id
       AND (r.current_price, r.bid_price, r.ask_price, r.volume_24h, r.change_rate)
           IS DISTINCT FROM
           (i.current_price, i.bid_price, i.ask_price, i.volume_24h, i.change_rate)
    RETURNING false AS inserted
), inserted AS (
    INSERT INTO realtime_prices AS r (symbol_id, current_price, bid_price, ask_price, volume_24h,
                                      change_rate, updated_at)
    SELECT *
      FROM incoming i
     WHERE NOT EXISTS (SELECT 1 FROM realtime_prices t WHERE t.symbol_id = i.symbol_id)
    ON CONFLICT (symbol_id) DO UPDATE
       SET current_price = EXCLUDED.current_price,
           bid_price     = EXCLUDED.bid_price,
           ask_price     = EXCLUDED.ask_price,
           volume_24h    = EXCLUDED.volume_24h,
           change_rate   = EXCLUDED.change_rate,
           updated_at    = EXCLUDED.updated_at
     WHERE (r.current_price, r.bid_price, r.ask_price, r.volume_24h, r.change_rate)
           IS DISTINCT FROM
           (EXCLUDED.current_price, EXCLUDED.bid_price, EXCLUDED.ask_price, EXCLUDED.volume_24h,
            EXCLUDED.change_rate)
    RETURNING (xmax = 0) AS inserted
)
SELECT inserted FROM updated
UNION ALL
SELECT inserted FROM inserted;

-- name: newest_quotes
-- The newest realtime_prices.updated_at of each given exchange (NULL when it has none).
SELECT e.code,
       (SELECT max(r.updated_at)
          FROM realtime_prices r
          JOIN symbol s ON s.id = r.symbol_id
         WHERE s.exchange_id = e.id) AS newest
  FROM exchange e
 WHERE e.code = ANY(%(codes)s);
