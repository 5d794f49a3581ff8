-- `wombat-collect db hand-over` (wombat_collect/db/handover.py): bring a database that wombat-collect
-- created (exchange, symbol, pricedata, realtime_prices, without alembic_version) to the backend's
-- alembic head, so that its prestart `alembic upgrade head` finds nothing to do instead of stopping
-- at `create_exchanges` with DuplicateTable. The tables below are the backend's, as its migrations
-- leave them at head ea251db58f8e (column order, types, keys and names as there); they are created
-- only where absent, and no existing table or row is touched.

-- name: lock_hand_over
-- The migration lock, for this transaction: no migration of ours runs beside a hand-over.
SELECT pg_advisory_xact_lock(%(key)s);

-- name: alembic_revisions
-- The revisions alembic_version holds (none when the table is absent or empty).
SELECT version_num::text FROM alembic_version ORDER BY version_num;

-- name: alembic_version_exists
SELECT to_regclass('alembic_version') IS NOT NULL;

-- name: backend_tables_present
-- Which of the backend's tables at head exist in the current schema.
SELECT c.relname::text
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
 WHERE c.relkind IN ('r', 'p') AND c.relname = ANY(%(tables)s)
 ORDER BY c.relname;

-- name: uuid_extension_available
-- Revision d98dd8ec85a3 creates uuid-ossp (nothing at head uses it); some servers lack the package.
SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'uuid-ossp');

-- name: create_uuid_extension
CREATE EXTENSION IF NOT EXISTS "uuid-ossp";

-- name: create_user
CREATE TABLE "user" (
    email           VARCHAR(255) NOT NULL,
    is_active       BOOLEAN      NOT NULL,
    is_superuser    BOOLEAN      NOT NULL,
    full_name       VARCHAR(255),
    hashed_password VARCHAR      NOT NULL,
    id              UUID         NOT NULL,
    CONSTRAINT user_pkey PRIMARY KEY (id)
);
CREATE UNIQUE INDEX ix_user_email ON "user" (email);

-- name: create_userapikey
CREATE TABLE userapikey (
    exchange_type        VARCHAR(20)   NOT NULL,
    encrypted_api_key    VARCHAR(1000) NOT NULL,
    encrypted_api_secret VARCHAR(1000) NOT NULL,
    account_number       VARCHAR(100),
    is_demo              BOOLEAN       NOT NULL,
    is_active            BOOLEAN       NOT NULL,
    nickname             VARCHAR(100),
    id                   SERIAL        NOT NULL,
    user_id              UUID          NOT NULL,
    created_at           TIMESTAMPTZ   NOT NULL,
    updated_at           TIMESTAMPTZ   NOT NULL,
    CONSTRAINT userapikey_pkey PRIMARY KEY (id),
    CONSTRAINT uq_user_exchange_demo_active UNIQUE (user_id, exchange_type, is_demo, is_active),
    CONSTRAINT userapikey_user_id_fkey FOREIGN KEY (user_id) REFERENCES "user" (id) ON DELETE CASCADE
);

-- name: create_tradingstrategy
CREATE TABLE tradingstrategy (
    name          VARCHAR(200) NOT NULL,
    strategy_type VARCHAR(50)  NOT NULL,
    description   VARCHAR,
    config        JSON         NOT NULL,
    is_active     BOOLEAN      NOT NULL,
    id            SERIAL       NOT NULL,
    user_id       UUID         NOT NULL,
    created_at    TIMESTAMPTZ  NOT NULL,
    updated_at    TIMESTAMPTZ  NOT NULL,
    CONSTRAINT tradingstrategy_pkey PRIMARY KEY (id),
    CONSTRAINT tradingstrategy_user_id_fkey FOREIGN KEY (user_id) REFERENCES "user" (id) ON DELETE CASCADE
);

-- name: create_strategysymbol
CREATE TABLE strategysymbol (
    strategy_id      INTEGER      NOT NULL,
    symbol_id        INTEGER      NOT NULL,
    allocation_ratio NUMERIC(5,4) NOT NULL,
    is_active        BOOLEAN      NOT NULL,
    id               SERIAL       NOT NULL,
    created_at       TIMESTAMPTZ  NOT NULL,
    CONSTRAINT strategysymbol_pkey PRIMARY KEY (id),
    CONSTRAINT uq_strategy_symbol UNIQUE (strategy_id, symbol_id),
    CONSTRAINT strategysymbol_strategy_id_fkey FOREIGN KEY (strategy_id) REFERENCES tradingstrategy (id),
    CONSTRAINT strategysymbol_symbol_id_fkey FOREIGN KEY (symbol_id) REFERENCES symbol (id)
);

-- name: create_alembic_version
-- As alembic creates it.
CREATE TABLE IF NOT EXISTS alembic_version (
    version_num VARCHAR(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

-- name: stamp_alembic_version
INSERT INTO alembic_version (version_num) VALUES (%(revision)s);
