-- wombat-collect's own tables move out of the backend's schema into their own,
-- `wombat_collect`, with their rows, indexes, constraints and grants: the
-- backend's `alembic revision --autogenerate` reads only the default schema, so
-- it no longer proposes to drop them. The backend's tables (exchange, symbol,
-- pricedata, realtime_prices) stay where they are. Every query of wombat-collect
-- names its own tables with the schema (wombat_collect.collect_run, ...).
--
-- Earlier migrations created the tables in the current schema (the first schema
-- of the search_path, normally public); on a database that has them there, they
-- move; a table already in wombat_collect stays. The ledger
-- (wombat_collect_migration) moves too: db/migrate.py looks for it in
-- wombat_collect first, then in the current schema.
CREATE SCHEMA IF NOT EXISTS wombat_collect;

DO $$
DECLARE
    own_table TEXT;
    grantee   OID;
BEGIN
    IF current_schema() = 'wombat_collect' THEN
        RAISE EXCEPTION 'the search_path resolves to schema wombat_collect (a role of that name?); '
                        'set the role''s search_path to the backend''s schema, e.g. public';
    END IF;
    FOREACH own_table IN ARRAY ARRAY['collect_run', 'fetched_range', 'confirmed_empty', 'gap_summary',
                                     'wombat_collect_migration'] LOOP
        IF to_regclass(format('%I.%I', current_schema(), own_table)) IS NOT NULL
           AND to_regclass(format('wombat_collect.%I', own_table)) IS NULL THEN
            EXECUTE format('ALTER TABLE %I.%I SET SCHEMA wombat_collect', current_schema(), own_table);
        END IF;
    END LOOP;
    -- Roles granted privileges on the moved tables keep them; they also need USAGE on the new schema.
    FOR grantee IN
        SELECT DISTINCT privilege.grantee
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'wombat_collect'
         CROSS JOIN LATERAL aclexplode(c.relacl) AS privilege
         WHERE privilege.grantee <> c.relowner
    LOOP
        IF grantee = 0 THEN
            GRANT USAGE ON SCHEMA wombat_collect TO PUBLIC;
        ELSE
            EXECUTE format('GRANT USAGE ON SCHEMA wombat_collect TO %s', grantee::regrole);
        END IF;
    END LOOP;
END
$$;
