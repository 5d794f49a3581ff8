-- `wombat-collect check`: read-only questions about the server, the schema and the role's privileges.
-- Used by wombat_collect/ops/check/; none of them writes, locks or creates anything.

-- name: server_facts
-- Who we are, where, and whether this session could write at all.
SELECT current_setting('server_version') AS server_version,
       pg_is_in_recovery() AS in_recovery,
       current_setting('default_transaction_read_only') = 'on' AS read_only_default,
       current_user::text AS role_name,
       current_database()::text AS database_name,
       current_schema()::text AS schema_name;

-- name: table_privileges
-- For each wanted (table, privilege) whose table exists: whether the role holds it. A name without a
-- schema is the backend's table, in the current schema; wombat_collect.* are our own. Looked up in the
-- catalog (to_regclass would fail on a schema the role may not use).
WITH wanted AS (
    SELECT name, privilege,
           CASE WHEN strpos(name, '.') > 0 THEN split_part(name, '.', 1) ELSE current_schema() END AS schema_name,
           CASE WHEN strpos(name, '.') > 0 THEN split_part(name, '.', 2) ELSE name END AS relation_name
      FROM unnest(%(tables)s::text[], %(privileges)s::text[]) AS requested(name, privilege)
)
SELECT wanted.name, wanted.privilege, has_table_privilege(c.oid, wanted.privilege) AS granted
  FROM wanted
  JOIN pg_namespace n ON n.nspname = wanted.schema_name
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = wanted.relation_name AND c.relkind IN ('r', 'p')
 ORDER BY wanted.name, wanted.privilege;

-- name: sequence_privileges
-- The sequences owned by the given tables' serial columns (an auto dependency, which identity columns lack:
-- they need no privilege on theirs), and whether the role may use them (INSERT does).
WITH wanted AS (
    SELECT name,
           CASE WHEN strpos(name, '.') > 0 THEN split_part(name, '.', 1) ELSE current_schema() END AS schema_name,
           CASE WHEN strpos(name, '.') > 0 THEN split_part(name, '.', 2) ELSE name END AS relation_name
      FROM unnest(%(tables)s::text[]) AS requested(name)
)
SELECT wanted.name AS table_name,
       quote_ident(sequence_namespace.nspname) || '.' || quote_ident(s.relname) AS sequence_name,
       has_sequence_privilege(s.oid, 'USAGE') AS granted
  FROM wanted
  JOIN pg_namespace n ON n.nspname = wanted.schema_name
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = wanted.relation_name AND c.relkind IN ('r', 'p')
  JOIN pg_depend d ON d.refobjid = c.oid AND d.refclassid = 'pg_class'::regclass
                  AND d.classid = 'pg_class'::regclass AND d.deptype = 'a'
  JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
  JOIN pg_namespace sequence_namespace ON sequence_namespace.oid = s.relnamespace
 ORDER BY wanted.name, s.relname;

-- name: schema_privileges
-- USAGE and CREATE on the current schema (CREATE applies migrations), USAGE on wombat-collect's own
-- schema (NULL while it does not exist), CREATE on the database (migration 0006 creates that schema),
-- TEMPORARY on the database (the candle upsert stages its rows in a temporary table). NULLs when no
-- schema is on the search_path.
SELECT has_schema_privilege(current_schema(), 'USAGE') AS schema_usage,
       has_schema_privilege(current_schema(), 'CREATE') AS schema_create,
       (SELECT has_schema_privilege(oid, 'USAGE') FROM pg_namespace WHERE nspname = 'wombat_collect')
           AS own_schema_usage,
       has_database_privilege(current_database(), 'CREATE') AS database_create,
       has_database_privilege(current_database(), 'TEMPORARY') AS database_temporary;
