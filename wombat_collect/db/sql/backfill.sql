-- A backfill shared by worker processes (wombat_collect.backfill, backfill_unit): joining
-- it, claiming its units, marking them done. Used by wombat_collect/db/backfill.py; the
-- tables are created by migrations/0007.backfill.sql. A claim is the session advisory lock
-- (%(claim_class)s, unit id), two int4 keys, so pg_locks shows it as classid/objid, objsubid 2.

-- name: start_backfill
-- Concurrent starters of the same request: one inserts, the others wait on the unique index
-- until it commits and then insert nothing (the caller then reads the unfinished one).
INSERT INTO wombat_collect.backfill (exchange, request)
VALUES (%(exchange)s, %(request)s)
ON CONFLICT (exchange, request) WHERE finished_at IS NULL DO NOTHING
RETURNING id;

-- name: unfinished_backfill
SELECT id
  FROM wombat_collect.backfill
 WHERE exchange = %(exchange)s AND request = %(request)s AND finished_at IS NULL;

-- name: add_backfill_units
-- Every worker adds the units it sees (a listing another worker was still collecting may have
-- had fewer symbols), so the backfill holds the union of what its workers were asked.
INSERT INTO wombat_collect.backfill_unit (backfill_id, symbol_id, timeframe)
SELECT %(backfill_id)s, unit.symbol_id, unit.timeframe
  FROM unnest(%(symbol_ids)s::int[], %(timeframes)s::text[]) AS unit(symbol_id, timeframe)
ON CONFLICT (backfill_id, symbol_id, timeframe) DO NOTHING;

-- name: claimable_units
-- Open units no session has claimed, except those this worker tried already, oldest first.
-- Only a candidate list: pg_try_advisory_lock decides, and done_at is read again after it.
SELECT u.id, u.timeframe, s.id, s.symbol, s.market, s.is_active
  FROM wombat_collect.backfill_unit u
  JOIN symbol s ON s.id = u.symbol_id
 WHERE u.backfill_id = %(backfill_id)s
   AND u.done_at IS NULL
   AND u.id <> ALL (%(tried)s::int[])
   AND NOT EXISTS (
       SELECT 1
         FROM pg_locks l
        WHERE l.locktype = 'advisory'
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid = %(claim_class)s::oid
          AND l.objid = u.id::oid
          AND l.objsubid = 2)
 ORDER BY u.id
 LIMIT %(limit)s;

-- name: try_claim_unit
SELECT pg_try_advisory_lock(%(claim_class)s, %(unit_id)s);

-- name: release_unit
SELECT pg_advisory_unlock(%(claim_class)s, %(unit_id)s);

-- name: unit_is_open
SELECT done_at IS NULL FROM wombat_collect.backfill_unit WHERE id = %(unit_id)s;

-- name: finish_unit
UPDATE wombat_collect.backfill_unit
   SET done_at = now(), done_by_run = %(run_id)s,
       rows_inserted = %(inserted)s, rows_updated = %(updated)s, rows_unchanged = %(unchanged)s
 WHERE id = %(unit_id)s AND done_at IS NULL;

-- name: finish_backfill
-- Finished once no unit is open; returns nothing while one is (or when another worker finished it).
UPDATE wombat_collect.backfill b
   SET finished_at = now()
 WHERE b.id = %(backfill_id)s
   AND b.finished_at IS NULL
   AND NOT EXISTS (SELECT 1 FROM wombat_collect.backfill_unit u WHERE u.backfill_id = b.id AND u.done_at IS NULL)
RETURNING b.finished_at;

-- name: backfill_progress
-- How many units there are, are done, were done by the given run; and whether the backfill is finished.
SELECT count(*)                                              AS units,
       count(*) FILTER (WHERE u.done_at IS NOT NULL)         AS done,
       count(*) FILTER (WHERE u.done_by_run = %(run_id)s)    AS done_here,
       (SELECT finished_at IS NOT NULL FROM wombat_collect.backfill WHERE id = %(backfill_id)s) AS finished
  FROM wombat_collect.backfill_unit u
 WHERE u.backfill_id = %(backfill_id)s;

-- name: resume_point
-- Where a unit's series goes on: the end of the fetched range that holds the backfill's start.
SELECT range_end
  FROM wombat_collect.fetched_range
 WHERE symbol_id = %(symbol_id)s AND timeframe = %(timeframe)s
   AND range_start <= %(since)s AND range_end > %(since)s;
