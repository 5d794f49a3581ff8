-- fetched_range: which time ranges of a symbol's candles of one timeframe were
-- fetched completely from the exchange, written by wombat-collect itself
-- (wombat_collect/jobs.py) in the same transaction as the candles of that range.
--
-- [range_start, range_end) is half-open, in UTC, on the timeframe's grid: every
-- candle the exchange had in it is stored, and a period in it without a row had
-- no candle (no trade; Upbit leaves such minutes out). range_end never passes
-- the newest closed period. Ranges of one (symbol_id, timeframe) are kept
-- merged: they neither overlap nor touch, so the gaps between them are the
-- parts never fetched, and an incremental run starts at the end of the oldest
-- one. The backend does not read this table.
CREATE TABLE IF NOT EXISTS fetched_range (
    symbol_id   INTEGER      NOT NULL REFERENCES symbol (id) ON DELETE CASCADE,
    timeframe   VARCHAR(10)  NOT NULL,
    range_start TIMESTAMPTZ  NOT NULL,
    range_end   TIMESTAMPTZ  NOT NULL,
    PRIMARY KEY (symbol_id, timeframe, range_start),
    CHECK (range_start < range_end)
);
