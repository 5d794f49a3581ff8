-- name: create_migration_table
-- On a database without a ledger: created in the current schema, as before migration 0006, which
-- moves it (and the other tables of wombat-collect) into schema wombat_collect. One path for every database.
CREATE TABLE IF NOT EXISTS wombat_collect_migration (
    version     INTEGER     PRIMARY KEY,
    name        TEXT        NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- name: migration_ledger
-- Where the ledger is: 'own' (schema wombat_collect, from migration 0006 on), 'legacy' (the current
-- schema, before 0006), or NULL (none yet). Asked first: CREATE TABLE IF NOT EXISTS needs CREATE on the
-- schema even when the table exists, which a role with only DML privileges lacks.
SELECT CASE WHEN to_regclass('wombat_collect.wombat_collect_migration') IS NOT NULL THEN 'own'
            WHEN to_regclass('wombat_collect_migration') IS NOT NULL THEN 'legacy'
       END;

-- name: applied_migrations_own
SELECT version FROM wombat_collect.wombat_collect_migration ORDER BY version;

-- name: applied_migrations_legacy
SELECT version FROM wombat_collect_migration ORDER BY version;

-- name: record_migration_own
INSERT INTO wombat_collect.wombat_collect_migration (version, name) VALUES (%(version)s, %(name)s);

-- name: record_migration_legacy
INSERT INTO wombat_collect_migration (version, name) VALUES (%(version)s, %(name)s);

-- name: try_lock_migrations
-- Never waits: the caller polls, with a limit (pg_advisory_lock would wait forever).
SELECT pg_try_advisory_lock(%(key)s);

-- name: migration_lock_holder
-- The backend pid of the session holding the migration lock (no row once it is free).
-- pg_locks splits a bigint key into classid (high 32 bits) and objid (low 32 bits), objsubid 1.
SELECT l.pid
  FROM pg_locks l
 WHERE l.locktype = 'advisory'
   AND l.granted
   AND l.objsubid = 1
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.classid::bigint = (%(key)s::bigint >> 32) & 4294967295
   AND l.objid::bigint = %(key)s::bigint & 4294967295
 LIMIT 1;

-- name: unlock_migrations
SELECT pg_advisory_unlock(%(key)s);

-- name: existing_columns
-- From pg_catalog, not information_schema: the latter hides the columns of tables the role has no
-- privilege on, which would read as missing columns instead of the permission error it is.
SELECT c.relname::text AS table_name, a.attname::text AS column_name
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = current_schema()
   AND c.relkind IN ('r', 'p')
   AND c.relname = ANY(%(tables)s)
   AND a.attnum > 0
   AND NOT a.attisdropped;

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
