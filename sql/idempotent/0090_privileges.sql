-- Who may do what. Objects belong to the installing superuser. heal_operator may run
-- and plan migrations and read pgheal's records; nothing it (or PUBLIC) can execute
-- writes a row it chooses. Every grant is listed here by name: a routine added later
-- is nobody's until it is listed (tests check every SECURITY DEFINER routine).

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'heal_operator') THEN
        CREATE ROLE heal_operator NOLOGIN;
    END IF;
END
$$;
COMMENT ON ROLE heal_operator IS 'Grant to roles that may run heal.migrate and read pgheal''s records.';

REVOKE ALL ON ALL ROUTINES IN SCHEMA heal FROM PUBLIC;
REVOKE ALL ON ALL ROUTINES IN SCHEMA heal FROM heal_operator;
REVOKE ALL ON ALL TABLES IN SCHEMA heal FROM PUBLIC;

GRANT USAGE ON SCHEMA heal TO heal_operator;
GRANT SELECT ON ALL TABLES IN SCHEMA heal TO heal_operator;
-- Except what only the server log, or another role, could tell: the statements,
-- details and messages of every role's errors (a failed ALTER ROLE ... PASSWORD is one;
-- "invalid input syntax for type integer: ..." carries the value), and other roles'
-- migration scripts. Reading the log by hand takes pg_read_server_files. Operators see
-- an error's kind instead (heal.error_fingerprints.pattern: literals and numbers taken
-- out), and the object it names when it names one.
REVOKE SELECT ON heal.error_events, heal.error_fingerprints, heal.migrations,
                 heal.migration_scripts FROM heal_operator;
GRANT SELECT (id, logged_at, database, user_name, application_name, session_start, sqlstate,
              fingerprint, log_file, log_offset)
    ON heal.error_events TO heal_operator;
GRANT SELECT (fingerprint, pattern, sqlstate, object, times_seen, first_seen, last_seen,
              fixed_at, fix_sql, fix_source, seen_after_fix, ineffective, refused)
    ON heal.error_fingerprints TO heal_operator;
GRANT SELECT ON heal.error_events TO pg_read_server_files;
GRANT SELECT (id, checksum, status, source, started_at, finished_at, statements, attempts,
              heals, duration_ms, error, run_by, name, forced, sqlstate, retry_of, run_by_oid,
              retry_ready_at)
    ON heal.migrations TO heal_operator;

-- What operators run: each acts with the caller's own rights (not SECURITY DEFINER).
GRANT EXECUTE ON PROCEDURE heal.migrate(text, text, boolean, boolean) TO heal_operator;
GRANT EXECUTE ON PROCEDURE heal.run_migration(text, text, boolean, boolean, jsonb)
    TO heal_operator;
GRANT EXECUTE ON FUNCTION heal.plan(text) TO heal_operator;
GRANT EXECUTE ON FUNCTION heal.last_applied(text) TO heal_operator;
GRANT EXECUTE ON PROCEDURE heal.retry_migration(bigint) TO heal_operator;
GRANT EXECUTE ON PROCEDURE heal.run_retry(bigint, jsonb) TO heal_operator;
GRANT EXECUTE ON FUNCTION heal.heal_error(text, text, name, text) TO heal_operator;
-- What those call as pgheal (SECURITY DEFINER), each checking the caller itself:
-- heal._load imports pgheal's own code; heal.apply_fix applies a fix only within the
-- policy for a role the session user is a member of; heal.refresh_extension_catalog
-- records what the server's extension scripts create; heal.record_outside records
-- only a statement that cannot run in a transaction, as the session user's;
-- heal.own_migration_sql returns the script of a migration only to the role that ran it;
-- heal.record_baseline records a migration as the session user's, which counts only for
-- runners with that user's rights; heal.errors_since returns only the errors of roles the session user is a member of;
-- heal.server_info, heal.setting_problem, heal.health_checks and heal.log_position only
-- read.
GRANT EXECUTE ON FUNCTION heal._load() TO heal_operator;
GRANT EXECUTE ON FUNCTION heal.apply_fix(name, text, text, text) TO heal_operator;
GRANT EXECUTE ON FUNCTION heal.refresh_extension_catalog(boolean) TO heal_operator;
GRANT EXECUTE ON FUNCTION heal.record_outside(text, text, text, numeric) TO heal_operator;
GRANT EXECUTE ON FUNCTION heal.record_baseline(text, text) TO heal_operator;
GRANT EXECUTE ON FUNCTION heal.own_migration_sql(bigint) TO heal_operator;
GRANT EXECUTE ON FUNCTION heal.server_info() TO heal_operator;
GRANT EXECUTE ON FUNCTION heal.setting_problem(text, text) TO heal_operator;
GRANT EXECUTE ON FUNCTION heal.health_checks() TO heal_operator;
GRANT EXECUTE ON FUNCTION heal.plain_index_pattern() TO heal_operator;
GRANT EXECUTE ON FUNCTION heal.log_position() TO heal_operator;
GRANT EXECUTE ON FUNCTION heal.errors_since(text) TO heal_operator;

-- Every role: a migration's script may switch to any role (SET ROLE), and its record
-- is still written; heal.write_records takes no arguments and writes only what
-- pgheal's own code queued in this backend, so no caller chooses a row.
GRANT USAGE ON SCHEMA heal TO PUBLIC;
GRANT EXECUTE ON FUNCTION heal.write_records() TO PUBLIC;
-- Raises the error a run returned, with the caller's rights (not SECURITY DEFINER).
GRANT EXECUTE ON FUNCTION heal.raise_failure(jsonb) TO PUBLIC;
-- Runs the caller's statements with the caller's rights (not SECURITY DEFINER): after
-- a script's SET ROLE, heal.migrate runs the rest of it through this as that role.
GRANT EXECUTE ON FUNCTION heal._run_statements(text[]) TO PUBLIC;
-- The event trigger's function is SECURITY DEFINER and cannot be called directly:
-- no grant is needed for it to fire for every role.
