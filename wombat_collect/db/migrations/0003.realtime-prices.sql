-- realtime_prices: the latest quote per symbol, exactly as the backend's migration
-- e6d6b1662d4b ("create realtime_prices table") creates it (see tests/data/wombat-schema.sql).
-- A backend that already created it keeps it as it is; wombat_collect/db/migrate.py then
-- verifies the columns and the unique key `wombat-collect quotes` writes.
DO $$
BEGIN
    IF to_regclass('realtime_prices') IS NULL THEN
        CREATE TABLE realtime_prices (
            symbol_id     INTEGER       NOT NULL REFERENCES symbol (id),
            current_price NUMERIC(20,8) NOT NULL,
            bid_price     NUMERIC(20,8),
            ask_price     NUMERIC(20,8),
            volume_24h    NUMERIC(20,8),
            change_rate   NUMERIC(8,4),
            id            SERIAL PRIMARY KEY,
            updated_at    TIMESTAMPTZ   NOT NULL,
            CONSTRAINT uq_realtime_price_symbol UNIQUE (symbol_id)
        );
    END IF;
END
$$;

-- collect_run records `quotes` runs too.
ALTER TABLE collect_run DROP CONSTRAINT IF EXISTS collect_run_job_check;
ALTER TABLE collect_run ADD CONSTRAINT collect_run_job_check CHECK (job IN ('symbols', 'prices', 'quotes'));
