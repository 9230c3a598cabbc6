-- The SQL surface. PL/Python bodies are one-line stubs into the server package "heal",
-- whose sources heal._load() imports from heal.modules.

-- Import (or re-import after an upgrade) the server package in this backend.
CREATE OR REPLACE FUNCTION heal._load() RETURNS void
LANGUAGE plpython3u SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
import importlib.machinery
import importlib.util
import sys

import marshal

stamp = plpy.execute(
    "SELECT version || ' ' || installed_at::text AS stamp FROM heal.installation"
)[0]["stamp"]
if GD.get("heal.stamp") == stamp:
    return
tag = importlib.util.MAGIC_NUMBER.hex()
codes = {}
modules = plpy.prepare(
    """SELECT name, code_tag, CASE WHEN code_tag = $1 THEN code END AS code,
              CASE WHEN code_tag = $1 AND code IS NOT NULL THEN NULL ELSE source END AS source
         FROM heal.modules""",
    ["text"],
)
for r in plpy.execute(modules, [tag]):
    if r["code"] is not None and r["code_tag"] == tag:
        codes[r["name"]] = marshal.loads(r["code"])
    else:  # compiled by another Python, or not at all: compile here
        codes[r["name"]] = compile(r["source"], "heal.modules:" + r["name"], "exec")


class HealModules:
    """A meta path finder and loader for the modules of heal.modules."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in codes:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=fullname == "heal")

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        exec(codes[module.__name__], module.__dict__)


sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "HealModules"]
sys.meta_path.insert(0, HealModules())
for name in [m for m in sys.modules if m == "heal" or m.startswith("heal.")]:
    del sys.modules[name]
GD["heal.stamp"] = stamp
$$;

CREATE OR REPLACE FUNCTION heal.compile_modules() RETURNS integer
LANGUAGE plpython3u SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
import importlib.util
import marshal
rows = plpy.execute("SELECT name, source FROM heal.modules")
update = plpy.prepare(
    "UPDATE heal.modules SET code = $2, code_tag = $3 WHERE name = $1", ["text", "bytea", "text"]
)
tag = importlib.util.MAGIC_NUMBER.hex()
for r in rows:
    code = compile(r["source"], "heal.modules:" + r["name"], "exec")
    plpy.execute(update, [r["name"], marshal.dumps(code), tag])
return len(rows)
$$;
COMMENT ON FUNCTION heal.compile_modules() IS
    'Compile the server package with the server''s Python (pgheal install does), so new '
    'backends load it without compiling.';

CREATE OR REPLACE FUNCTION heal.server_info() RETURNS jsonb
LANGUAGE plpython3u SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
import json
plpy.execute("SELECT heal._load()")
from heal.db import server_info
return json.dumps(server_info())
$$;
COMMENT ON FUNCTION heal.server_info() IS
    'The server''s Python and pglast as pgheal sees them (checked by pgheal install).';

-- Internal: raise the error a run returned (sqlstate, message, detail, hint), so that
-- the client sees PostgreSQL's own message and SQLSTATE, without a Python exception name.
CREATE OR REPLACE FUNCTION heal.raise_failure(failure jsonb) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF failure IS NOT NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = failure ->> 'sqlstate',
            MESSAGE = failure ->> 'message',
            DETAIL = failure ->> 'detail',
            HINT = failure ->> 'hint';
    END IF;
END
$$;

-- Internal: run statements one by one, each in a subtransaction of its own, until one
-- fails: its place in the array (the statements before it stay done) and its error,
-- or failed = 0 when all ran. heal.migrate runs a script a chunk at a time through
-- it. With the caller's rights, on the caller's search_path: no SET clause, which
-- would undo what a statement sets when the call returns. An ASSERT's failure is an
-- error of the statement too; a cancel is not caught.
CREATE OR REPLACE FUNCTION heal._run_statements(
    statements text[], OUT failed integer, OUT error_code text, OUT error_message text,
    OUT error_detail text, OUT error_hint text
)
LANGUAGE plpgsql
AS $$
DECLARE
    query text;
BEGIN
    failed := 0;
    FOREACH query IN ARRAY statements LOOP
        failed := failed OPERATOR(pg_catalog.+) 1;
        BEGIN
            EXECUTE query;
        EXCEPTION WHEN OTHERS OR assert_failure THEN
            GET STACKED DIAGNOSTICS error_code = RETURNED_SQLSTATE,
                                    error_message = MESSAGE_TEXT,
                                    error_detail = PG_EXCEPTION_DETAIL,
                                    error_hint = PG_EXCEPTION_HINT;
            RETURN;
        END;
    END LOOP;
    failed := 0;
END
$$;
COMMENT ON FUNCTION heal._run_statements(text[]) IS
    'Internal: run statements in turn until one fails (heal.migrate''s chunks).';

-- Runs the migration with the caller's rights; fixes go through heal.apply_fix.
-- No SET clauses: a procedure with one cannot commit, and the failure record must.
-- The work is done in PL/Python; the error is raised here so that the client sees
-- PostgreSQL's own message and SQLSTATE, without a Python exception name.
CREATE OR REPLACE PROCEDURE heal.migrate(
    sql text,
    name text DEFAULT NULL,
    dry_run boolean DEFAULT false,
    force boolean DEFAULT false
)
LANGUAGE plpgsql
AS $$
DECLARE
    failure pg_catalog.jsonb;  -- qualified: this runs on the caller's search_path
BEGIN
    CALL heal.run_migration(sql, name, dry_run, force, failure);
    PERFORM heal.raise_failure(failure);
END
$$;
COMMENT ON PROCEDURE heal.migrate(text, text, boolean, boolean) IS
    'Run a migration script atomically, healing missing dependencies. name: record it in '
    'heal.migrations and skip it once applied; dry_run: heal, report, roll everything back; '
    'force: run a named migration again although it changed.';

CREATE OR REPLACE PROCEDURE heal.run_migration(
    sql text, name text, dry_run boolean, force boolean, INOUT failure jsonb DEFAULT NULL
)
LANGUAGE plpython3u
AS $$
import json
plpy.execute("SELECT heal._load()")
from heal.migrate import migrate
result = migrate(sql, name, bool(dry_run), bool(force))
return (json.dumps(result) if result else None,)
$$;

-- The last successful run of a named migration that counts for the current user: one
-- recorded by a role with this user's rights (itself, a member of it, a superuser).
-- A history row a less privileged role wrote never makes a more privileged runner
-- skip a migration, or refuse it as changed.
-- PL/pgSQL, not SQL: a SQL function with a SET clause is planned at every call, and
-- every named heal.migrate asks.
CREATE OR REPLACE FUNCTION heal.last_applied(name text)
RETURNS TABLE (checksum text, finished_at timestamptz, run_by name)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    SELECT m.checksum, m.finished_at, m.run_by
      FROM heal.migrations m
      JOIN pg_roles r ON r.oid = coalesce(m.run_by_oid,
                                          (SELECT o.oid FROM pg_roles o WHERE o.rolname = m.run_by))
     WHERE m.name = last_applied.name AND m.status = 'succeeded'
       AND pg_has_role(r.oid, current_user, 'USAGE')
     ORDER BY m.id DESC LIMIT 1;
END
$$;
COMMENT ON FUNCTION heal.last_applied(text) IS
    'The last successful run of migration name, among those recorded by a role with the '
    'current user''s rights: what pgheal migrate and heal.migrate(name => ...) go by.';

-- The script of a migration, for the role that logged in and ran it (its retry);
-- heal_operator reads every other column of heal.migrations, not other roles' scripts.
CREATE OR REPLACE FUNCTION heal.own_migration_sql(id bigint) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(s.sql, '' ORDER BY s.part)
      FROM heal.migrations m JOIN heal.migration_scripts s ON s.migration_id = m.id
     WHERE m.id = own_migration_sql.id
       AND m.run_by_oid = (SELECT a.usesysid FROM pg_stat_activity a
                            WHERE a.pid = pg_backend_pid())
$$;
COMMENT ON FUNCTION heal.own_migration_sql(bigint) IS
    'Internal: the script of migration id, only to a session logged in as the role that ran it.';

-- Retry a failed migration, in a session of the role that ran it (pg_cron logs in as
-- that role when the scan schedules it); any other session is refused.
CREATE OR REPLACE PROCEDURE heal.retry_migration(id bigint)
LANGUAGE plpgsql
AS $$
DECLARE
    failure pg_catalog.jsonb;  -- qualified: this runs on the caller's search_path
BEGIN
    CALL heal.run_retry(id, failure);
    PERFORM heal.raise_failure(failure);
END
$$;
COMMENT ON PROCEDURE heal.retry_migration(bigint) IS
    'Run failed migration id again, healing what policy allows now; only in a session of '
    'the role that ran it (the scan schedules this with pg_cron as that role).';

CREATE OR REPLACE PROCEDURE heal.run_retry(id bigint, INOUT failure jsonb DEFAULT NULL)
LANGUAGE plpython3u
AS $$
import json
plpy.execute("SELECT heal._load()")
from heal.migrate import retry
result = retry(id)
return (json.dumps(result) if result else None,)
$$;

CREATE OR REPLACE FUNCTION heal.plan(sql text)
RETURNS TABLE (statement integer, line integer, missing text, fix text, allowed boolean,
               reason text)
LANGUAGE plpython3u
AS $$
plpy.execute("SELECT heal._load()")
from heal.catalog import plan_script
return plan_script(sql)
$$;
COMMENT ON FUNCTION heal.plan(text) IS
    'What the script will miss, found by static analysis, and the fix pgheal would apply; '
    'runs and changes nothing.';

CREATE OR REPLACE FUNCTION heal.apply_fix(role name, kind text, target text, schema text)
RETURNS text
LANGUAGE plpython3u SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT heal._load()")
from heal.fixes import apply_fix
return apply_fix(role, kind, target, schema)
$$;
COMMENT ON FUNCTION heal.apply_fix(name, text, text, text) IS
    'Apply one fix for role, within heal.settings policy; returns the SQL it ran.';

CREATE OR REPLACE FUNCTION heal.refresh_extension_catalog(force boolean DEFAULT false)
RETURNS integer
LANGUAGE plpython3u SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT heal._load()")
from heal.catalog import refresh_extension_catalog
return refresh_extension_catalog(force)
$$;
COMMENT ON FUNCTION heal.refresh_extension_catalog(boolean) IS
    'Rebuild heal.extension_objects if the server''s available extensions changed (or force).';

-- heal.settings values are checked when they change, not when a migration needs them.
CREATE OR REPLACE FUNCTION heal.setting_problem(name text, value text) RETURNS text
LANGUAGE plpython3u SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT heal._load()")
from heal.policy import setting_problem
return setting_problem(name, value)
$$;

CREATE OR REPLACE FUNCTION heal.check_setting() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    problem text := heal.setting_problem(NEW.name, NEW.value);
BEGIN
    IF problem IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = problem,
            HINT = 'See the description column of heal.settings.';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER settings_check BEFORE INSERT OR UPDATE ON heal.settings
    FOR EACH ROW EXECUTE FUNCTION heal.check_setting();

-- The one writer of heal.build_events: every route (a migration's record, the scan,
-- the DDL trigger) hands its events here as JSON, with the counters they move.
-- Internal: called by pgheal's SECURITY DEFINER routines only.
CREATE OR REPLACE FUNCTION heal.write_events(events jsonb, source text, migration_id bigint)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO heal.build_events
           (created_at, event_type, migration_id, statement, sqlstate, message, fix_sql,
            duration_ms, detail, source, fingerprint, reason_kind)
    SELECT coalesce(e.created_at, clock_timestamp()), e.event_type, write_events.migration_id,
           e.statement, e.sqlstate, e.message, e.fix_sql, e.duration_ms, e.detail,
           write_events.source, e.fingerprint, e.reason_kind
      FROM jsonb_to_recordset(events) AS e(
           created_at timestamptz, event_type text, statement integer, sqlstate text,
           message text, fix_sql text, duration_ms numeric, detail jsonb, fingerprint text,
           reason_kind text);
    -- Most runs move no counter (nothing healed, no pattern tried): two updates spared.
    IF NOT (events @? '$[*].detail.pattern' OR events @? '$[*].detail.learned') THEN
        RETURN;
    END IF;
    IF (SELECT m.status FROM heal.migrations m WHERE m.id = write_events.migration_id)
       = 'dry_run' THEN
        RETURN;  -- rolled back on purpose: nothing was healed, nothing counts
    END IF;

    -- A kind counts as seen when pgheal tried it, as fixed when that healed.
    UPDATE heal.universal_error_patterns p
       SET times_seen  = p.times_seen + c.seen,
           times_fixed = p.times_fixed + c.fixed,
           first_seen  = coalesce(p.first_seen, c.first_seen),
           last_seen   = greatest(p.last_seen, c.last_seen)
      FROM (SELECT e.detail ->> 'pattern' AS pattern,
                   count(*) FILTER (WHERE e.event_type = 'auto_heal_attempt') AS seen,
                   count(*) FILTER (WHERE e.event_type = 'auto_heal_success') AS fixed,
                   min(e.created_at) AS first_seen,
                   max(e.created_at) AS last_seen
              FROM jsonb_to_recordset(events) AS e(
                   created_at timestamptz, event_type text, detail jsonb)
             WHERE e.detail ->> 'pattern' IS NOT NULL
             GROUP BY 1) c
     WHERE p.pattern = c.pattern;

    -- A learned pattern counts as applied when a fix it planned healed something.
    UPDATE heal.learned_patterns l
       SET applied = l.applied + c.healed
      FROM (SELECT (e.detail ->> 'learned')::integer AS id, count(*) AS healed
              FROM jsonb_to_recordset(events) AS e(event_type text, detail jsonb)
             WHERE e.event_type = 'auto_heal_success' AND e.detail ? 'learned'
             GROUP BY 1) c
     WHERE l.id = c.id;
END
$$;
COMMENT ON FUNCTION heal.write_events(jsonb, text, bigint) IS
    'Internal: the one writer of heal.build_events and the counters its events move.';

-- Write one run's record: the migration row, its events, the pattern counters.
-- Internal: only heal.write_records (and the scan, as pgheal) call it; no role that
-- runs migrations may, or it could write any record it likes.
CREATE OR REPLACE FUNCTION heal.record_migration(migration jsonb, events jsonb)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    migration_id bigint;
BEGIN
    INSERT INTO heal.migrations
           (name, checksum, forced, status, source, started_at, statements, attempts, heals,
            duration_ms, error, run_by, sqlstate, retry_of, run_by_oid)
    SELECT m.name, m.checksum, coalesce(m.forced, false), m.status,
           coalesce(m.source, 'migration'), m.started_at,
           m.statements, m.attempts, m.heals, m.duration_ms, m.error,
           CASE WHEN m.run_by IS NOT NULL AND (pg_has_role(session_user, m.run_by, 'MEMBER')
                     OR pg_has_role(login.id, m.run_by, 'MEMBER'))
                THEN m.run_by ELSE session_user END,
           m.sqlstate, m.retry_of,
           (SELECT r.oid FROM pg_roles r WHERE r.rolname =
                CASE WHEN m.run_by IS NOT NULL AND (pg_has_role(session_user, m.run_by, 'MEMBER')
                          OR pg_has_role(login.id, m.run_by, 'MEMBER'))
                     THEN m.run_by ELSE session_user END)
      FROM jsonb_to_record(migration) AS m(
           name text, checksum text, forced boolean, status text, source text,
           started_at timestamptz,
           statements integer, attempts integer, heals integer, duration_ms numeric,
           error text, run_by name, sqlstate text, retry_of bigint),
           -- The user the session logged in as: a superuser's SET SESSION AUTHORIZATION
           -- (in the script) does not change whose run it is.
           (SELECT a.usesysid AS id FROM pg_stat_activity a WHERE a.pid = pg_backend_pid()) login
    RETURNING id INTO migration_id;

    PERFORM heal.write_events(
        events, CASE WHEN migration ->> 'source' IN ('scan', 'run') THEN migration ->> 'source'
                     ELSE 'migration' END,
        migration_id);
    RETURN migration_id;
END
$$;

-- The one door from a migration run to its record: no arguments, it writes what
-- pgheal's own code queued in this backend's memory (heal.records), as pgheal, so a
-- script that switched role is still recorded and no caller chooses the rows.
CREATE OR REPLACE FUNCTION heal.write_records() RETURNS bigint
LANGUAGE plpython3u SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
import sys
records = sys.modules.get("heal.records")
return records.write_pending() if records is not None else None
$$;
COMMENT ON FUNCTION heal.write_records() IS
    'Internal: writes the record heal.migrate queued in this backend; callable by every '
    'role because it writes nothing a caller chooses.';

-- A statement the CLI ran at top level (it cannot run inside heal.migrate) goes into
-- the history like the rest. Only such statements are accepted, recorded as the
-- session user's, with source cli.
CREATE OR REPLACE FUNCTION heal.record_outside(name text, sql text, error text,
                                               duration_ms numeric)
RETURNS bigint
LANGUAGE plpython3u SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT heal._load()")
from heal.records import record_outside
return record_outside(name, sql, error, duration_ms)
$$;
COMMENT ON FUNCTION heal.record_outside(text, text, text, numeric) IS
    'Record a statement that cannot run inside a transaction, run at top level by '
    'pgheal migrate; refuses any other statement.';

-- pgheal baseline: a migration applied already (by hand, by another tool) is recorded
-- as the session user's, without running it; it counts only for runners with that
-- user's rights (heal.last_applied).
CREATE OR REPLACE FUNCTION heal.record_baseline(name text, sql text) RETURNS bigint
LANGUAGE plpython3u SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT heal._load()")
from heal.records import record_baseline
return record_baseline(name, sql)
$$;
COMMENT ON FUNCTION heal.record_baseline(text, text) IS
    'Record migration name (script sql) as applied without running it, as the session '
    'user''s (source baseline). pgheal baseline calls it.';

-- pgheal run: healing around another migration tool. Where the server log ends now,
-- and the errors logged since, in this database, by roles the session user is a member
-- of (SQLSTATE and message only: what those roles' clients were told). SECURITY
-- DEFINER because reading the server log takes pg_read_server_files.
CREATE OR REPLACE FUNCTION heal.log_position() RETURNS text
LANGUAGE plpython3u SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT heal._load()")
from heal.around import log_position
return log_position()
$$;
COMMENT ON FUNCTION heal.log_position() IS
    'Where the server log ends now, for heal.errors_since; NULL when it cannot be read.';

CREATE OR REPLACE FUNCTION heal.errors_since(since text)
RETURNS TABLE (logged_at timestamptz, user_name text, sqlstate text, message text)
LANGUAGE plpython3u SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT heal._load()")
from heal.around import errors_since
return errors_since(since)
$$;
COMMENT ON FUNCTION heal.errors_since(text) IS
    'The errors logged in this database since a position (heal.log_position) by roles the '
    'session user is a member of: SQLSTATE and message.';

-- Heal one error a tool hit, within the policy of role (the current user by default),
-- and record it with source run. With the caller's rights: the fix goes through
-- heal.apply_fix, which checks the policy again for the role.
CREATE OR REPLACE FUNCTION heal.heal_error(sqlstate text, message text, role name DEFAULT NULL,
                                           tool text DEFAULT NULL)
RETURNS TABLE (fixed boolean, fix text, reason text)
LANGUAGE plpython3u
AS $$
plpy.execute("SELECT heal._load()")
from heal.around import heal_error
return [heal_error(sqlstate, message, role, tool)]
$$;
COMMENT ON FUNCTION heal.heal_error(text, text, name, text) IS
    'Fix what an error a migration tool hit is missing, within the policy of role (the '
    'current user by default), and record it (source run). pgheal run calls it.';

-- The autonomous scan. Not SECURITY DEFINER: it runs as the pg_cron job's owner (the
-- installing superuser) and reads the server log; on its own search_path, whatever the
-- database's is (a role that owns the database sets that). It never runs a migration.
CREATE OR REPLACE PROCEDURE heal.scan()
LANGUAGE plpython3u SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT heal._load()")
from heal.scanner import scan
scan()
$$;
COMMENT ON PROCEDURE heal.scan() IS
    'Read new errors from the server log, heal what policy allows, learn from DDL people ran, '
    'retry failed migrations that can heal now, purge old records. Scheduled by pg_cron.';

-- Predictive healing for DDL from any client (heal_predict_ddl, ddl_command_start).
-- Internal: only heal.predict_ddl (SECURITY DEFINER, called by the event trigger, which
-- no role can call directly) calls it. The fixes it may cause are the policy's for the
-- role running the DDL, checked again by heal.apply_fix.
CREATE OR REPLACE FUNCTION heal.heal_ddl(query text, role name, search_path text) RETURNS text
LANGUAGE plpython3u SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
# Runs for every DDL statement, so it protects the statement itself (no PL/pgSQL
# exception block, whose subtransaction would cost more than the analysis): any
# failure is recorded and becomes a WARNING, and the DDL runs as without pgheal.
# A cancel (SQLSTATE class 57) is not a failure of pgheal's: it ends the DDL.
import time
try:
    now = time.monotonic()
    if GD.get("heal.checked", 0) < now - 1:  # an upgrade of the modules, once a second
        plpy.execute("SELECT heal._load()")
        from heal.trigger import heal_ddl, verdict
        GD["heal.heal_ddl"] = heal_ddl
        GD["heal.verdict"] = verdict
        GD["heal.checked"] = now
    return GD["heal.heal_ddl"](query, role, search_path)
except Exception as exc:
    if str(getattr(exc, "sqlstate", None) or "").startswith("57"):
        raise
    message = str(exc.args[0]) if exc.args else repr(exc)
    plpy.warning("pgheal: predictive healing failed (%s); the statement runs as it would "
                 "without pgheal" % message)
    # Recorded a bounded number of times per backend: a role must not fill pgheal's
    # records by running DDL that fails to be analysed.
    GD["heal.failed_analyses"] = GD.get("heal.failed_analyses", 0) + 1
    if GD["heal.failed_analyses"] > 20:
        return None
    try:
        plan = plpy.prepare(
            """INSERT INTO heal.build_events (event_type, message, detail, source)
               VALUES ('auto_heal_failed', 'predictive healing failed: ' || $1,
                       jsonb_build_object('reason', $1, 'role', $2::text),
                       'event_trigger')""",
            ["text", "name"])
        plpy.execute(plan, [message, role])
    except Exception as failed:
        if str(getattr(failed, "sqlstate", None) or "").startswith("57"):
            raise
    return None
$$;

-- Internal: what this backend knows already of the DDL heal.predict_ddl is given, asking
-- nothing (heal.trigger.verdict). NULLs: not known. Else it needs nothing if the
-- schemas named exist and, when index_table is not NULL, pg_catalog's default operator
-- classes for index_am serve index_columns of the table of that name found first in
-- index_path (the schemas the role's own lookup searches, "$user" its name, pg_temp
-- the session's): heal.predict_ddl asks, in SQL (a query from PL/Python is a
-- subtransaction, dearer with every table the transaction created). It runs no SQL, so
-- it needs neither a SET clause (a GUC saved and restored for every DDL) nor the
-- definer's rights (it runs with heal.predict_ddl's).
-- What is not known, or is once a second (to see an upgrade of the modules), goes to
-- heal.heal_ddl, which loads and judges as pgheal.
DROP FUNCTION IF EXISTS heal.ddl_verdict(text, name, text);
CREATE FUNCTION heal.ddl_verdict(query text, role name, search_path text, OUT schemas text[],
                                 OUT index_table name, OUT index_columns name[],
                                 OUT index_am name, OUT index_path name[])
LANGUAGE plpython3u
AS $$
# A row of NULLs, never a NULL row: heal.predict_ddl reads the fields of a record.
import time
unknown = (None, None, None, None, None)
try:
    if GD.get("heal.checked", 0) < time.monotonic() - 1:
        return unknown
    found = GD["heal.verdict"](query, role, search_path)
    # Of the shape this function returns, or not known: modules loaded before an
    # upgrade may answer in an older one until the next load.
    return found if isinstance(found, tuple) and len(found) == 5 else unknown
except Exception:  # the full analysis says what went wrong, and records it
    return unknown
$$;

-- CREATE INDEX on plain columns: names without quotes inside, the table's qualified or
-- not, columns with at most ASC/DESC and NULLS FIRST/LAST, an access method of the
-- core; one statement.
-- Matched case-insensitively (~*); heal.predict_ddl lets such DDL through at once.
-- No SET clause, so that the planner inlines it and folds it to a constant: it runs for
-- every CREATE INDEX. Its only names are schema-qualified, so no path can change it.
CREATE OR REPLACE FUNCTION heal.plain_index_pattern() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT pg_catalog.replace(pg_catalog.replace(
        '^\s*create\s+(unique\s+)?index\s+(concurrently\s+)?(if\s+not\s+exists\s+)?(NAME\s+)?'
        'on\s+(only\s+)?(NAME\s*\.\s*)?NAME\s*(using\s+(btree|hash)\s*)?'
        '\(\s*COLUMN(\s*,\s*COLUMN)*\s*\)\s*;?\s*$',
        'COLUMN', 'NAME(\s+(asc|desc))?(\s+nulls\s+(first|last))?'),
        'NAME', '(\w+|"[^"]+")');
$$;

-- PL/Python cannot be an event trigger: this PL/pgSQL wrapper calls it. It stays out
-- of heal.migrate (which heals on its own) and of the commands of an extension script
-- pgheal itself runs (heal.apply_fix sets heal.fixing). An index on plain columns
-- (no expression, operator class or collation; btree or hash, which have a
-- default operator class for nearly every type) cannot need anything, and is the
-- commonest DDL after CREATE TABLE: it is let through without a call into Python; so is
-- one on a table a schema qualifies (a missing schema means a missing table, which no
-- fix provides).
-- GIN, GiST, SP-GiST and BRIN are looked into: their defaults for plain types are in
-- extensions (btree_gin, btree_gist).
-- SECURITY DEFINER so that heal.heal_ddl needs no grant to PUBLIC (an event trigger
-- function cannot be called directly). No SET clause: it reads the session's
-- search_path. So it runs with the session's path, as pgheal: every name in it (types,
-- functions, operators) is schema-qualified, or a role could put its own first. The
-- DDL's role is the one SET ROLE chose, else the session's.
CREATE OR REPLACE FUNCTION heal.predict_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
AS $$
DECLARE
    query pg_catalog.text := pg_catalog.current_query();
    role pg_catalog.name := pg_catalog.current_setting('role');
    needed pg_catalog.text;
    verdict record;
    known pg_catalog.bool;
    schema pg_catalog.text;
BEGIN
    IF pg_catalog.current_setting('heal.fixing', true) OPERATOR(pg_catalog.=) 'on'
       OR pg_catalog.current_setting('heal.migrating', true) OPERATOR(pg_catalog.=) 'on'
       OR TG_TAG OPERATOR(pg_catalog.=) 'CREATE INDEX'
          AND query OPERATOR(pg_catalog.~*) heal.plain_index_pattern()
    THEN
        RETURN;
    END IF;
    IF role OPERATOR(pg_catalog.=) 'none' THEN
        role := session_user;
    END IF;
    verdict := heal.ddl_verdict(query, role, pg_catalog.current_setting('search_path'));
    IF verdict.schemas IS NOT NULL THEN
        known := true;
        FOREACH schema IN ARRAY verdict.schemas LOOP
            IF pg_catalog.to_regnamespace(schema) IS NULL THEN
                known := false;
                EXIT;
            END IF;
        END LOOP;
        -- Each indexed column's type is pg_catalog's, and needs no default operator
        -- class for the access method or has one of pg_catalog's (what neither a
        -- session nor a rollback can take away); else the full analysis looks, as for
        -- a type of an extension's, or a cast, that heal.snapshot reads.
        IF known AND verdict.index_table IS NOT NULL THEN
            known := pg_catalog.cardinality(verdict.index_columns) OPERATOR(pg_catalog.=) (
                SELECT pg_catalog.count(*)
                  FROM pg_catalog.pg_attribute a
                  JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid
                  JOIN pg_catalog.pg_am m ON m.amname OPERATOR(pg_catalog.=) verdict.index_am
                 WHERE a.attrelid OPERATOR(pg_catalog.=) (
                       -- The table the server finds for the role: the first schema of
                       -- index_path holding it that the role may use, as it searches.
                       SELECT c.oid
                         FROM pg_catalog.unnest(verdict.index_path) WITH ORDINALITY
                              AS p(nspname, place)
                         JOIN pg_catalog.pg_namespace n
                           ON n.nspname OPERATOR(pg_catalog.=) p.nspname
                              OR p.nspname OPERATOR(pg_catalog.=) 'pg_temp'
                                 AND n.oid OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()
                         JOIN pg_catalog.pg_class c
                           ON c.relnamespace OPERATOR(pg_catalog.=) n.oid
                              AND c.relname OPERATOR(pg_catalog.=) verdict.index_table
                        WHERE n.oid OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()
                              -- By oid: a role renamed since the session's SET ROLE
                              -- (which keeps the old name) finds nothing, and the
                              -- full analysis says so in a WARNING; the DDL runs.
                              OR pg_catalog.has_schema_privilege(
                                  (SELECT r.oid FROM pg_catalog.pg_roles r
                                    WHERE r.rolname OPERATOR(pg_catalog.=) role),
                                  n.oid, 'USAGE')
                        ORDER BY p.place LIMIT 1)
                   AND a.attname OPERATOR(pg_catalog.=) ANY (verdict.index_columns)
                   AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
                   AND t.typnamespace OPERATOR(pg_catalog.=) 'pg_catalog'::pg_catalog.regnamespace
                   AND (t.typtype OPERATOR(pg_catalog.<>) 'b'
                        OR t.typcategory OPERATOR(pg_catalog.=) 'A'
                        OR EXISTS (
                            SELECT FROM pg_catalog.pg_opclass o
                             WHERE o.opcmethod OPERATOR(pg_catalog.=) m.oid AND o.opcdefault
                               AND o.opcnamespace OPERATOR(pg_catalog.=) t.typnamespace
                               AND o.opcintype OPERATOR(pg_catalog.=) ANY (ARRAY[t.oid,
                                   'pg_catalog.anyelement'::pg_catalog.regtype::pg_catalog.oid,
                                   'pg_catalog.anynonarray'::pg_catalog.regtype::pg_catalog.oid]))));
        END IF;
        IF known THEN
            RETURN;
        END IF;
    END IF;
    needed := heal.heal_ddl(query, role, pg_catalog.current_setting('search_path'));
    IF needed IS NOT NULL THEN
        -- For the session, not just this statement: what follows in it (queries,
        -- operators, citext comparisons) needs the schema too.
        PERFORM pg_catalog.set_config('search_path', needed, false);
    END IF;
END
$$;

-- Internal: whether the DDL running now is a fix heal.apply_fix applies, asked of the
-- backend's memory (a setting could be set by any session, to hide its own DDL).
CREATE OR REPLACE FUNCTION heal.fixing_now() RETURNS boolean
LANGUAGE plpython3u SET search_path = pg_catalog, pg_temp
AS $$
import sys
fixes = sys.modules.get("heal.fixes")
return bool(fixes is not None and fixes.applying())
$$;

-- What DDL was run, and by whom: what the scan learns from. Fails open too.
CREATE OR REPLACE FUNCTION heal.record_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO heal.ddl_log (command_tag, object_type, object_identity, by_pgheal, role_name)
    SELECT c.command_tag, c.object_type, c.object_identity,
           heal.fixing_now(), session_user
      FROM pg_catalog.pg_event_trigger_ddl_commands() AS c
     WHERE NOT c.in_extension;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'pgheal: could not record DDL: %', SQLERRM;
END
$$;

-- The predictive trigger is on or off as heal.settings predictive says.
CREATE OR REPLACE FUNCTION heal.apply_predictive() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.value::boolean THEN
        ALTER EVENT TRIGGER heal_predict_ddl ENABLE;
    ELSE
        ALTER EVENT TRIGGER heal_predict_ddl DISABLE;
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER settings_predictive AFTER INSERT OR UPDATE ON heal.settings
    FOR EACH ROW WHEN (NEW.name = 'predictive') EXECUTE FUNCTION heal.apply_predictive();

CREATE OR REPLACE FUNCTION heal.skip_log_backlog() RETURNS text
LANGUAGE plpython3u SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT heal._load()")
from heal.scanner import skip_backlog
return skip_backlog()
$$;
COMMENT ON FUNCTION heal.skip_log_backlog() IS
    'Start log intake at the end of the current server log: the next scan reads only new '
    'errors. pgheal install does this the first time.';
