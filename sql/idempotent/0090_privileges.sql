-- Who may do what. Objects belong to the installing superuser; heal.migrate is for
-- members of heal_operator, never PUBLIC.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'heal_operator') THEN
        CREATE ROLE heal_operator NOLOGIN;
    END IF;
END
$$;
COMMENT ON ROLE heal_operator IS 'Grant to roles that may run heal.migrate and read pgheal''s records.';

REVOKE ALL ON ALL ROUTINES IN SCHEMA heal FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA heal FROM PUBLIC;

GRANT USAGE ON SCHEMA heal TO heal_operator;
GRANT SELECT ON ALL TABLES IN SCHEMA heal TO heal_operator;
GRANT EXECUTE ON ALL ROUTINES IN SCHEMA heal TO heal_operator;

-- The scan reads the server log and acts for every role: superusers (pg_cron) only.
REVOKE EXECUTE ON PROCEDURE heal.scan() FROM heal_operator;
REVOKE EXECUTE ON FUNCTION heal.skip_log_backlog() FROM heal_operator;

-- Event triggers fire for every role: the functions they call must be callable by all.
-- heal.heal_ddl acts only for roles the session can act as, within their policy.
GRANT EXECUTE ON FUNCTION heal.heal_ddl(text, name, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION heal.record_prediction_failure(text, text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION heal.predict_ddl() TO PUBLIC;
GRANT EXECUTE ON FUNCTION heal.plain_index_pattern() TO PUBLIC;
GRANT USAGE ON SCHEMA heal TO PUBLIC;
