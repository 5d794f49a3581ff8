-- The wombat backend's market-data tables, exactly as its own migrations leave
-- them (see tests/data/wombat-schema.sql). Where the backend already created a
-- table it is left as it is: wombat-collect only verifies afterwards that the
-- columns it writes exist (wombat_collect/db/migrate.py).
DO $$
BEGIN
    IF to_regclass('exchange') IS NULL THEN
        CREATE TABLE exchange (
            id          SERIAL PRIMARY KEY,
            code        VARCHAR(20)  NOT NULL,
            name        VARCHAR(100) NOT NULL,
            country     VARCHAR(50),
            timezone    VARCHAR(50),
            is_active   BOOLEAN      NOT NULL,
            created_at  TIMESTAMPTZ  NOT NULL
        );
        CREATE UNIQUE INDEX ix_exchange_code ON exchange (code);
    END IF;

    IF to_regclass('symbol') IS NULL THEN
        CREATE TABLE symbol (
            exchange_id        INTEGER      NOT NULL REFERENCES exchange (id),
            symbol             VARCHAR(50)  NOT NULL,
            base_asset         VARCHAR(100),
            quote_asset        VARCHAR(20),
            symbol_type        VARCHAR(20)  NOT NULL,
            market             VARCHAR(20),
            is_active          BOOLEAN      NOT NULL,
            min_order_size     NUMERIC(20,8),
            max_order_size     NUMERIC(20,8),
            price_precision    INTEGER      NOT NULL,
            quantity_precision INTEGER      NOT NULL,
            id                 SERIAL PRIMARY KEY,
            created_at         TIMESTAMPTZ  NOT NULL,
            updated_at         TIMESTAMPTZ  NOT NULL,
            CONSTRAINT uq_exchange_symbol UNIQUE (exchange_id, symbol)
        );
    END IF;

    IF to_regclass('pricedata') IS NULL THEN
        CREATE TABLE pricedata (
            symbol_id    INTEGER       NOT NULL REFERENCES symbol (id),
            "timestamp"  TIMESTAMPTZ   NOT NULL,
            open_price   NUMERIC(20,8) NOT NULL,
            high_price   NUMERIC(20,8) NOT NULL,
            low_price    NUMERIC(20,8) NOT NULL,
            close_price  NUMERIC(20,8) NOT NULL,
            volume       NUMERIC(30,8) NOT NULL,
            quote_volume NUMERIC(30,8),
            timeframe    VARCHAR(10)   NOT NULL,
            id           SERIAL PRIMARY KEY,
            created_at   TIMESTAMPTZ   NOT NULL,
            CONSTRAINT uq_symbol_time_frame UNIQUE (symbol_id, "timestamp", timeframe)
        );
        CREATE INDEX idx_price_data_symbol_time ON pricedata (symbol_id, "timestamp" DESC);
        CREATE INDEX idx_price_data_timeframe   ON pricedata (timeframe, "timestamp" DESC);
    END IF;
END
$$;
