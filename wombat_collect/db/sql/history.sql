-- Run history (wombat_collect.collect_run), job locks and the status report's queries.
-- Used by wombat_collect/ops/*.py; the table is created by migrations/0002.collect-run.sql.

-- name: try_advisory_lock
-- Session level: held until unlocked or until the connection ends (also when the process dies).
SELECT pg_try_advisory_lock(%(key)s);

-- name: try_advisory_lock_shared
-- The shared form: backfill workers (`prices --worker`) hold it together; an ordinary run's exclusive one excludes them.
SELECT pg_try_advisory_lock_shared(%(key)s);

-- name: holds_advisory_lock
-- Whether THIS session holds the bigint advisory key (pg_locks, so the check never stacks the lock).
SELECT EXISTS (
       SELECT 1
         FROM pg_locks l
        WHERE l.locktype = 'advisory'
          AND l.granted
          AND l.pid = pg_backend_pid()
          AND l.objsubid = 1
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid::bigint = (%(key)s::bigint >> 32) & 4294967295
          AND l.objid::bigint = %(key)s::bigint & 4294967295);

-- name: set_application_name
-- Names a lock connection in pg_stat_activity (`wombat-collect lock prices kis`).
SELECT set_config('application_name', %(name)s, false);

-- name: advisory_unlock
SELECT pg_advisory_unlock(%(key)s);

-- name: held_advisory_locks
-- Which of the given bigint advisory keys some session of this database holds now.
-- pg_locks splits a bigint key into classid (high 32 bits) and objid (low 32 bits), objsubid 1.
SELECT wanted.key
  FROM unnest(%(keys)s::bigint[]) AS wanted(key)
 WHERE EXISTS (
       SELECT 1
         FROM pg_locks l
        WHERE l.locktype = 'advisory'
          AND l.granted
          AND l.objsubid = 1
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid::bigint = (wanted.key >> 32) & 4294967295
          AND l.objid::bigint = wanted.key & 4294967295);

-- name: insert_run
-- The row and its liveness lock (%(run_class)s, id) in one statement: whoever sees the row
-- 'running' sees the lock held, until the session of the run ends.
WITH run AS (
    INSERT INTO wombat_collect.collect_run (job, exchange, arguments, host, pid, started_at, status)
    VALUES (%(job)s, %(exchange)s, %(arguments)s::jsonb, %(host)s, %(pid)s, now(), 'running')
    RETURNING id
)
SELECT id, pg_advisory_lock(%(run_class)s, id::int) FROM run;

-- name: finish_run
UPDATE wombat_collect.collect_run
   SET finished_at     = now(),
       status          = %(status)s,
       symbols_ok      = %(symbols_ok)s,
       symbols_failed  = %(symbols_failed)s,
       symbols_skipped = %(symbols_skipped)s,
       rows_inserted   = %(rows_inserted)s,
       rows_updated    = %(rows_updated)s,
       rows_unchanged  = %(rows_unchanged)s,
       rows_rejected   = %(rows_rejected)s,
       error_summary   = %(error_summary)s
 WHERE id = %(id)s;

-- name: mark_dead_runs
-- Called while holding the job's advisory lock: a 'running' row of the job whose liveness lock
-- (%(run_class)s, id) no session holds is a dead process's. Under the exclusive lock that is every
-- other row; under the shared one (backfill workers) the live workers' rows keep theirs.
UPDATE wombat_collect.collect_run r
   SET status = 'interrupted',
       error_summary = %(error_summary)s
 WHERE r.job = %(job)s
   AND r.exchange = %(exchange)s
   AND r.status = 'running'
   AND NOT EXISTS (
       SELECT 1
         FROM pg_locks l
        WHERE l.locktype = 'advisory'
          AND l.granted
          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND l.classid = %(run_class)s::oid
          AND l.objid = r.id::int::oid
          AND l.objsubid = 2)
RETURNING r.id, r.host, r.pid, r.started_at;

-- name: running_run
-- The run holding a job's lock, as far as the history knows (for the "busy" message).
SELECT host, pid, started_at
  FROM wombat_collect.collect_run
 WHERE job = %(job)s AND exchange = %(exchange)s AND status = 'running'
 ORDER BY started_at DESC, id DESC
 LIMIT 1;

-- name: latest_run
-- The newest run of a job and exchange whose status is one of %(statuses)s.
SELECT id, job, exchange, arguments, host, pid, started_at, finished_at, status,
       symbols_ok, symbols_failed, symbols_skipped,
       rows_inserted, rows_updated, rows_unchanged, rows_rejected, error_summary
  FROM wombat_collect.collect_run
 WHERE job = %(job)s AND exchange = %(exchange)s AND status = ANY(%(statuses)s)
 ORDER BY started_at DESC, id DESC
 LIMIT 1;

-- name: run_metrics
-- Per job and exchange: the last finished run, the last success, the runs that did not succeed since.
SELECT pair.job, pair.exchange, last.status,
       extract(epoch FROM last.finished_at)::float8                   AS finished,
       extract(epoch FROM last.finished_at - last.started_at)::float8 AS duration,
       last.symbols_ok, last.symbols_failed, last.symbols_skipped,
       last.rows_inserted, last.rows_updated, last.rows_unchanged, last.rows_rejected,
       extract(epoch FROM success.finished_at)::float8                AS last_success,
       last.arguments -> 'timeframes' -> pair.exchange                AS timeframes,
       (SELECT count(*)
          FROM wombat_collect.collect_run c
         WHERE c.job = pair.job AND c.exchange = pair.exchange
           AND c.status IN ('partial', 'failed', 'interrupted')
           AND c.started_at > coalesce(success.started_at, '-infinity'))  AS since_success
  FROM (SELECT DISTINCT job, exchange FROM wombat_collect.collect_run WHERE status <> 'running') AS pair
  LEFT JOIN LATERAL (
       SELECT * FROM wombat_collect.collect_run c
        WHERE c.job = pair.job AND c.exchange = pair.exchange AND c.status <> 'running'
        ORDER BY c.started_at DESC, c.id DESC LIMIT 1) AS last ON true
  LEFT JOIN LATERAL (
       SELECT * FROM wombat_collect.collect_run c
        WHERE c.job = pair.job AND c.exchange = pair.exchange AND c.status = 'succeeded'
        ORDER BY c.started_at DESC, c.id DESC LIMIT 1) AS success ON true
 ORDER BY pair.job, pair.exchange;

-- name: run_counts
SELECT job, exchange, status, count(*)
  FROM wombat_collect.collect_run
 WHERE status <> 'running'
 GROUP BY job, exchange, status
 ORDER BY job, exchange, status;

-- name: symbol_freshness
-- One exchange's symbols: active, inactive, the newest daily candle, active symbols
-- without any candle, and active symbols whose newest candle is more than
-- lag_days older than the exchange's newest. Uses idx_price_data_symbol_time.
WITH newest AS (
    SELECT s.is_active,
           (SELECT max(p."timestamp")
              FROM pricedata p
             WHERE p.symbol_id = s.id AND p.timeframe = %(timeframe)s) AS newest
      FROM symbol s
      JOIN exchange e ON e.id = s.exchange_id
     WHERE e.code = %(exchange)s
)
SELECT count(*) FILTER (WHERE is_active)                          AS active,
       count(*) FILTER (WHERE NOT is_active)                      AS inactive,
       (SELECT max(newest) FROM newest)                           AS newest_candle,
       count(*) FILTER (WHERE is_active AND newest IS NULL)       AS without_candles,
       count(*) FILTER (WHERE is_active AND newest < (SELECT max(newest) FROM newest)
                                              - make_interval(days => %(lag_days)s)) AS lagging
  FROM newest;

-- name: timeframe_freshness
-- The newest stored candle of the exchange's symbols per timeframe (NULL: none). Each walks
-- idx_price_data_timeframe down from the timeframe's newest row to the first of this exchange, so
-- it reads the other exchanges' newer rows of that timeframe (every one of them where this exchange
-- has none: status asks only the timeframes the exchange offers). With max() instead of the
-- ORDER BY ... LIMIT 1 the planner aggregates every row of the exchange (21.7 M at 30 M rows, 22 s).
SELECT wanted.timeframe,
       (SELECT p."timestamp"
          FROM pricedata p
         WHERE p.timeframe = wanted.timeframe
           AND p.symbol_id IN (SELECT s.id FROM symbol s JOIN exchange e ON e.id = s.exchange_id
                                WHERE e.code = %(exchange)s)
         ORDER BY p."timestamp" DESC
         LIMIT 1) AS newest
  FROM unnest(%(timeframes)s::text[]) AS wanted(timeframe);
