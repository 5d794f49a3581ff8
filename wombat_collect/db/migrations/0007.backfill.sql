-- backfill, backfill_unit: a backfill shared by worker processes (`prices --since D --worker`).
-- Written by wombat-collect itself (wombat_collect/db/backfill.py); the backend does not read them.
--
-- A backfill is what was asked (exchange, and `request`: the window, the timeframes and the
-- selection, as JSON text); its units are the (symbol, timeframe) series to collect, one row
-- each, all inserted in the transaction that creates the backfill. The partial unique index
-- lets concurrent starters of the same request join one unfinished backfill; once every unit
-- is done it is finished, and asking again starts a new one.
--
-- A unit is claimed with a session advisory lock (pg_try_advisory_lock(CLAIM_CLASS, unit id)),
-- never with a transaction held open: when the worker's session ends (exit, SIGKILL, a lost
-- host) the claim ends with it and another worker takes the unit. done_at and done_by_run
-- (the collect_run row of the worker that did it) are set once, by the worker holding the claim.
CREATE TABLE IF NOT EXISTS wombat_collect.backfill (
    id          SERIAL       PRIMARY KEY,
    exchange    TEXT         NOT NULL,
    request     TEXT         NOT NULL,
    created_at  TIMESTAMPTZ  NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ
);

CREATE UNIQUE INDEX IF NOT EXISTS backfill_unfinished_request
    ON wombat_collect.backfill (exchange, request) WHERE finished_at IS NULL;

CREATE TABLE IF NOT EXISTS wombat_collect.backfill_unit (
    id             SERIAL       PRIMARY KEY,
    backfill_id    INTEGER      NOT NULL REFERENCES wombat_collect.backfill (id) ON DELETE CASCADE,
    symbol_id      INTEGER      NOT NULL REFERENCES symbol (id) ON DELETE CASCADE,
    timeframe      VARCHAR(10)  NOT NULL,
    done_at        TIMESTAMPTZ,
    done_by_run    BIGINT       REFERENCES wombat_collect.collect_run (id) ON DELETE SET NULL,
    rows_inserted  BIGINT,
    rows_updated   BIGINT,
    rows_unchanged BIGINT,
    UNIQUE (backfill_id, symbol_id, timeframe)
);

CREATE INDEX IF NOT EXISTS backfill_unit_open
    ON wombat_collect.backfill_unit (backfill_id, id) WHERE done_at IS NULL;
