-- confirmed_empty: ranges of a symbol's candles of one timeframe that the
-- exchange was asked for (`wombat-collect gaps --repair`) and answered with no
-- candle, its answer reaching back past the range's start: a halted KRX day, an
-- Upbit period without trades. [range_start, range_end) is half-open, in UTC, on
-- the timeframe's grid. `gaps` reports no gap lying inside one, and `--repair`
-- does not ask for it again (`--recheck` does both). Written by wombat-collect
-- itself (wombat_collect/gaps.py); the backend does not read it.
CREATE TABLE IF NOT EXISTS confirmed_empty (
    symbol_id    INTEGER      NOT NULL REFERENCES symbol (id) ON DELETE CASCADE,
    timeframe    VARCHAR(10)  NOT NULL,
    range_start  TIMESTAMPTZ  NOT NULL,
    range_end    TIMESTAMPTZ  NOT NULL,
    confirmed_at TIMESTAMPTZ  NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol_id, timeframe, range_start),
    CHECK (range_start < range_end)
);

-- gap_summary: what the last unfiltered `gaps` scan found per exchange and
-- timeframe (open gaps: ranges not confirmed empty), so `status` shows it
-- without scanning pricedata.
CREATE TABLE IF NOT EXISTS gap_summary (
    exchange    TEXT         NOT NULL,
    timeframe   VARCHAR(10)  NOT NULL,
    symbols     INTEGER      NOT NULL,
    ranges      INTEGER      NOT NULL,
    periods     BIGINT       NOT NULL,
    checked_at  TIMESTAMPTZ  NOT NULL,
    PRIMARY KEY (exchange, timeframe)
);

-- collect_run records `gaps --repair` runs as job `repair`.
ALTER TABLE collect_run DROP CONSTRAINT IF EXISTS collect_run_job_check;
ALTER TABLE collect_run ADD CONSTRAINT collect_run_job_check
    CHECK (job IN ('symbols', 'prices', 'quotes', 'repair'));
