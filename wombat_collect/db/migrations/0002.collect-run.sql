-- collect_run: one row per run of a job (symbols, prices) for one exchange,
-- written by wombat-collect itself (wombat_collect/ops/history.py). The backend
-- does not read it; `wombat-collect status` and the metrics file do.
--
-- A run inserts its row as 'running' while holding the job's advisory lock and
-- updates it when it ends. A row still 'running' whose lock nobody holds
-- belongs to a process that died (SIGKILL, power loss); the next run of the
-- same job marks it 'interrupted'.
CREATE TABLE IF NOT EXISTS collect_run (
    id              BIGSERIAL    PRIMARY KEY,
    job             TEXT         NOT NULL CHECK (job IN ('symbols', 'prices')),
    exchange        TEXT         NOT NULL,
    arguments       JSONB        NOT NULL DEFAULT '{}'::jsonb,
    host            TEXT         NOT NULL,
    pid             INTEGER      NOT NULL,
    started_at      TIMESTAMPTZ  NOT NULL DEFAULT now(),
    finished_at     TIMESTAMPTZ,
    status          TEXT         NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'succeeded', 'partial', 'failed', 'interrupted')),
    symbols_ok      INTEGER      NOT NULL DEFAULT 0,
    symbols_failed  INTEGER      NOT NULL DEFAULT 0,
    symbols_skipped INTEGER      NOT NULL DEFAULT 0,
    rows_inserted   BIGINT       NOT NULL DEFAULT 0,
    rows_updated    BIGINT       NOT NULL DEFAULT 0,
    rows_unchanged  BIGINT       NOT NULL DEFAULT 0,
    rows_rejected   BIGINT       NOT NULL DEFAULT 0,
    error_summary   TEXT
);

CREATE INDEX IF NOT EXISTS collect_run_job_exchange_started
    ON collect_run (job, exchange, started_at DESC);
