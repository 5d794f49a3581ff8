-- name: create_migration_table
CREATE TABLE IF NOT EXISTS wombat_collect_migration (
    version     INTEGER     PRIMARY KEY,
    name        TEXT        NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- name: applied_migrations
SELECT version FROM wombat_collect_migration ORDER BY version;

-- name: record_migration
INSERT INTO wombat_collect_migration (version, name) VALUES (%(version)s, %(name)s);

-- name: lock_migrations
SELECT pg_advisory_lock(%(key)s);

-- name: unlock_migrations
SELECT pg_advisory_unlock(%(key)s);

-- name: existing_columns
SELECT table_name, column_name
  FROM information_schema.columns
 WHERE table_schema = current_schema()
   AND table_name = ANY(%(tables)s);

-- name: unique_keys
-- Each unique index of the given tables, as its table and sorted column list.
SELECT t.relname AS table_name,
       array_agg(a.attname::text ORDER BY a.attname) AS columns
  FROM pg_index i
  JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
  JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(i.indkey)
 WHERE i.indisunique
   AND n.nspname = current_schema()
   AND t.relname = ANY(%(tables)s)
 GROUP BY t.relname, i.indexrelid;
