-- Gap detection and repair bookkeeping (wombat_collect/gaps.py); the tables
-- wombat_collect.confirmed_empty and wombat_collect.gap_summary come from migrations/0005.gaps.sql
-- (moved into schema wombat_collect by 0006.own-schema.sql).
--
-- Both scans take the timeframe's grid as %(step)s (an interval: '1 day',
-- '1 month', '300 seconds') and do the grid arithmetic in UTC. A scan first
-- counts the candles in parallel aggregate passes and walks with lag() only
-- what falls short of the periods (or trading periods) between its first and
-- newest candle: a block of about 128 periods of a series (the walk, `block_walk`,
-- is the same in both). Each returns, per
-- missing range: symbol_id, the stored
-- candle just before it (previous), its first missing period (gap_start), the
-- end of its last missing period (gap_end, exclusive) and how many periods
-- (trading periods on a trading calendar) it misses. With %(since)s a range
-- is cut to start there; ranges inside a wombat_collect.confirmed_empty row are left out
-- unless %(recheck)s.

-- fragment: block_walk
-- The walk both scans share, put in after their CTEs `blocks` (each block of a series: symbol_id,
-- first_candle, newest_candle) and `short` (the blocks to walk, the same columns): each candle
-- (following) with the stored candle before it (previous, NULL for a series' first), across
-- blocks and candle by candle inside the short blocks. Each scan unions the two itself: the Upbit
-- scan keeps the NULLs in its union, which keeps its plan a merge (it sorts with them left out).
across AS (
    -- a gap between blocks: one block's newest candle and the next one's first
    SELECT symbol_id, first_candle AS following,
           lag(newest_candle) OVER (PARTITION BY symbol_id ORDER BY first_candle) AS previous
      FROM blocks
), inside AS (
    -- each candle of a short block and the candle before it
    SELECT short.symbol_id, walked.following, walked.previous
      FROM short
     CROSS JOIN LATERAL (
           SELECT p."timestamp" AS following, lag(p."timestamp") OVER (ORDER BY p."timestamp") AS previous
             FROM pricedata p
            WHERE p.symbol_id = short.symbol_id AND p.timeframe = %(timeframe)s
              AND p."timestamp" BETWEEN short.first_candle AND short.newest_candle) AS walked
)

-- name: gaps_every_period
-- A market that trades every period (Upbit): every period between two candles is missing.
-- The series are counted in blocks of about 128 periods (%(block_seconds)s): a gap
-- between blocks shows between one block's newest and the next one's first candle,
-- and only the blocks whose count falls short are walked, candle by candle.
WITH blocks AS (
    SELECT symbol_id, min("timestamp") AS first_candle, max("timestamp") AS newest_candle, count(*) AS stored
      FROM pricedata
     WHERE timeframe = %(timeframe)s AND symbol_id = ANY(%(ids)s::integer[])
     GROUP BY symbol_id, date_part('epoch', "timestamp")::bigint / %(block_seconds)s
), short AS (
    SELECT symbol_id, first_candle, newest_candle
      FROM blocks
     WHERE stored < 1 + CASE WHEN %(months)s > 0
                             THEN ((extract(year FROM newest_candle AT TIME ZONE 'UTC')
                                    - extract(year FROM first_candle AT TIME ZONE 'UTC')) * 12
                                   + extract(month FROM newest_candle AT TIME ZONE 'UTC')
                                   - extract(month FROM first_candle AT TIME ZONE 'UTC')) / %(months)s
                             ELSE extract(epoch FROM newest_candle - first_candle) / %(seconds)s END
),
-- include: block_walk
, pairs AS (
    SELECT symbol_id, following, previous FROM across
    UNION ALL
    SELECT symbol_id, following, previous FROM inside
), holes AS (
    SELECT symbol_id, previous, following AS gap_end,
           GREATEST((previous AT TIME ZONE 'UTC' + %(step)s::interval) AT TIME ZONE 'UTC',
                    %(since)s::timestamptz) AS gap_start
      FROM pairs
     WHERE previous IS NOT NULL
       AND (previous AT TIME ZONE 'UTC' + %(step)s::interval) AT TIME ZONE 'UTC' < following
)
SELECT h.symbol_id, h.previous, h.gap_start, h.gap_end,
       (CASE WHEN %(months)s > 0
             THEN ((extract(year FROM h.gap_end AT TIME ZONE 'UTC')
                    - extract(year FROM h.gap_start AT TIME ZONE 'UTC')) * 12
                   + extract(month FROM h.gap_end AT TIME ZONE 'UTC')
                   - extract(month FROM h.gap_start AT TIME ZONE 'UTC')) / %(months)s
             ELSE extract(epoch FROM h.gap_end - h.gap_start) / %(seconds)s END)::bigint AS periods
  FROM holes h
 WHERE h.gap_start < h.gap_end
   AND (%(recheck)s OR NOT EXISTS (
        SELECT 1 FROM wombat_collect.confirmed_empty c
         WHERE c.symbol_id = h.symbol_id AND c.timeframe = %(timeframe)s
           AND c.range_start <= h.gap_start AND c.range_end >= h.gap_end))
 ORDER BY h.symbol_id, h.gap_start;

-- name: gaps_trading_calendar
-- A market with its own calendar (KRX), derived from the stored candles of all
-- of its symbols (%(calendar_ids)s): a period trades when more than half of the
-- symbols whose stored history spans it have a candle there. Only trading
-- periods can be missing; `ordinal` numbers them, so a range is a run of
-- consecutive trading periods. The counting passes are separate aggregates
-- (each runs in parallel; GROUPING SETS would not, and was slower). Only the
-- short series (fewer trading candles than trading periods) can have gaps;
-- they are counted again in blocks (%(block_seconds)s), as for every-period
-- markets, and only their short blocks are walked, so a hole in every series
-- costs one block's walk each, not the whole series'.
WITH spans AS (
    SELECT symbol_id, min("timestamp") AS first_candle, max("timestamp") AS newest_candle, count(*) AS stored
      FROM pricedata
     WHERE timeframe = %(timeframe)s AND symbol_id = ANY(%(calendar_ids)s::integer[])
     GROUP BY symbol_id
), per_period AS (
    SELECT "timestamp" AS period, count(*) AS traded
      FROM pricedata
     WHERE timeframe = %(timeframe)s AND symbol_id = ANY(%(calendar_ids)s::integer[])
     GROUP BY "timestamp"
), events AS (
    SELECT period AS moment, traded, 0 AS change FROM per_period
    UNION ALL
    SELECT first_candle, NULL, 1 FROM spans
    UNION ALL
    SELECT (newest_candle AT TIME ZONE 'UTC' + %(step)s::interval) AT TIME ZONE 'UTC', NULL, -1 FROM spans
), running AS (
    SELECT moment, traded,
           sum(change) OVER (ORDER BY moment, traded NULLS FIRST ROWS UNBOUNDED PRECEDING) AS spanning
      FROM events
), judged AS (
    SELECT moment AS period, traded * 2 > spanning AS trading FROM running WHERE traded IS NOT NULL
), calendar AS (
    SELECT period, trading, count(*) FILTER (WHERE trading) OVER (ORDER BY period) AS ordinal FROM judged
), off_days AS MATERIALIZED (
    -- our candles on days KRX did not trade, per series and block
    SELECT symbol_id, date_part('epoch', "timestamp")::bigint / %(block_seconds)s AS block, count(*) AS stored
      FROM pricedata
     WHERE timeframe = %(timeframe)s
       AND "timestamp" = ANY(ARRAY(SELECT period FROM calendar WHERE NOT trading))
       AND symbol_id = ANY(%(ids)s::integer[])
     GROUP BY symbol_id, date_part('epoch', "timestamp")::bigint / %(block_seconds)s
), series_starts AS MATERIALIZED (
    -- our series with the ordinal before their first candle (joined apart from the newest candle's:
    -- the planner, misjudging these CTEs' sizes, would otherwise join the calendar with itself first)
    SELECT s.symbol_id, s.newest_candle, s.stored, f.ordinal - f.trading::int AS before_first
      FROM spans s
      JOIN calendar f ON f.period = s.first_candle
     WHERE s.symbol_id = ANY(%(ids)s::integer[])
), short_series AS MATERIALIZED (
    -- the series holding fewer trading candles than trading periods between their first and newest
    -- candle; only these can have gaps
    SELECT s.symbol_id
      FROM series_starts s
      JOIN calendar n ON n.period = s.newest_candle
      LEFT JOIN (SELECT symbol_id, sum(stored) AS stored FROM off_days GROUP BY symbol_id) o
             ON o.symbol_id = s.symbol_id
     WHERE s.stored - coalesce(o.stored, 0) < n.ordinal - s.before_first
), blocks AS MATERIALIZED (
    -- the short series in blocks
    SELECT symbol_id, date_part('epoch', "timestamp")::bigint / %(block_seconds)s AS block,
           min("timestamp") AS first_candle, max("timestamp") AS newest_candle, count(*) AS stored
      FROM pricedata
     WHERE timeframe = %(timeframe)s AND symbol_id IN (SELECT symbol_id FROM short_series)
     GROUP BY symbol_id, date_part('epoch', "timestamp")::bigint / %(block_seconds)s
), starts AS MATERIALIZED (
    -- the blocks with the ordinal before their first candle (as series_starts)
    SELECT b.symbol_id, b.block, b.first_candle, b.newest_candle, b.stored,
           f.ordinal - f.trading::int AS before_first
      FROM blocks b
      JOIN calendar f ON f.period = b.first_candle
), short AS MATERIALIZED (
    -- the short blocks (materialized: else the planner may walk every block before it filters)
    SELECT b.symbol_id, b.first_candle, b.newest_candle
      FROM starts b
      JOIN calendar n ON n.period = b.newest_candle
      LEFT JOIN off_days o ON o.symbol_id = b.symbol_id AND o.block = b.block
     WHERE b.stored - coalesce(o.stored, 0) < n.ordinal - b.before_first
),
-- include: block_walk
, pairs AS (
    SELECT symbol_id, following, previous FROM across WHERE previous IS NOT NULL
    UNION ALL
    SELECT symbol_id, following, previous FROM inside WHERE previous IS NOT NULL
), walked AS (
    -- each pair with the trading ordinals: the last trading period missing before `following`,
    -- and the ordinal of `previous`
    SELECT r.symbol_id, r.previous, c.ordinal - c.trading::int AS last_missing, b.ordinal AS previous_ordinal
      FROM pairs r
      JOIN calendar c ON c.period = r.following
      JOIN calendar b ON b.period = r.previous
), holes AS MATERIALIZED (
    SELECT symbol_id, previous, last_missing,
           GREATEST(previous_ordinal + 1,
                    CASE WHEN %(since)s::timestamptz IS NULL THEN 1
                         ELSE coalesce((SELECT min(ordinal) FROM calendar
                                         WHERE trading AND period >= %(since)s::timestamptz), 2147483647)
                    END) AS first_missing
      FROM walked
     WHERE previous IS NOT NULL
), trading_periods AS (
    -- the trading periods by ordinal (1, 2, ...): an array lookup, where joining the calendar twice
    -- led the planner (its estimates of these CTEs are far off) to a product of the calendar with itself
    SELECT array_agg(period ORDER BY ordinal) AS periods FROM calendar WHERE trading
), ranges AS (
    SELECT h.symbol_id, h.previous, t.periods[h.first_missing::integer] AS gap_start,
           (t.periods[h.last_missing::integer] AT TIME ZONE 'UTC' + %(step)s::interval) AT TIME ZONE 'UTC' AS gap_end,
           h.last_missing - h.first_missing + 1 AS periods
      FROM holes h
     CROSS JOIN trading_periods t
     WHERE h.first_missing <= h.last_missing
)
SELECT r.symbol_id, r.previous, r.gap_start, r.gap_end, r.periods
  FROM ranges r
 WHERE %(recheck)s OR NOT EXISTS (
       SELECT 1 FROM wombat_collect.confirmed_empty c
        WHERE c.symbol_id = r.symbol_id AND c.timeframe = %(timeframe)s
          AND c.range_start <= r.gap_start AND c.range_end >= r.gap_end)
 ORDER BY r.symbol_id, r.gap_start;

-- name: forget_confirmed_empty
-- Before a range's new verdict: drop what was confirmed empty inside it.
DELETE FROM wombat_collect.confirmed_empty
 WHERE symbol_id = %(symbol_id)s AND timeframe = %(timeframe)s
   AND range_start < %(range_end)s AND range_end > %(range_start)s;

-- name: add_confirmed_empty
INSERT INTO wombat_collect.confirmed_empty AS confirmed (symbol_id, timeframe, range_start, range_end)
VALUES (%(symbol_id)s, %(timeframe)s, %(range_start)s, %(range_end)s)
ON CONFLICT (symbol_id, timeframe, range_start) DO UPDATE
   SET range_end = GREATEST(confirmed.range_end, EXCLUDED.range_end),
       confirmed_at = now();

-- name: store_gap_summary
INSERT INTO wombat_collect.gap_summary (exchange, timeframe, symbols, ranges, periods, checked_at)
VALUES (%(exchange)s, %(timeframe)s, %(symbols)s, %(ranges)s, %(periods)s, %(checked_at)s)
ON CONFLICT (exchange, timeframe) DO UPDATE
   SET symbols = EXCLUDED.symbols, ranges = EXCLUDED.ranges, periods = EXCLUDED.periods,
       checked_at = EXCLUDED.checked_at;

-- name: gap_summaries
-- What the last unfiltered `gaps` scan found for one exchange (read by `status`).
SELECT timeframe, symbols, ranges, periods, checked_at
  FROM wombat_collect.gap_summary
 WHERE exchange = %(exchange)s
 ORDER BY timeframe;

-- name: scan_settings
-- For the scan's transaction. JIT off: the scans' row estimates (joins on computed ordinals) are far
-- too high, and JIT-compiling the plan cost 650 ms on a query that ran in 40. work_mem 64 MB: the
-- block counts of 200 markets' 100 days of 1-minute candles (142,600 blocks) take about 45 MB; at
-- the default 4 MB they spilled 558 MB to disk and the Upbit scan took 9.2 x count(*), not 4.6 x
-- (benchmark_scale.py, 30 M rows). Index-only scans stay on: the KRX re-count of short series reads
-- uq_symbol_time_frame alone (a hole in every series: 15 s instead of 55 s at 30 M rows).
SELECT set_config('jit', 'off', true), set_config('work_mem', '64MB', true);
