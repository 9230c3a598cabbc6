-- The SQL surface. PL/Python bodies are one-line stubs into the server package "heal",
-- whose sources heal._load() imports from heal.modules.

-- Import (or re-import after an upgrade) the server package in this backend.
CREATE OR REPLACE FUNCTION heal._load() RETURNS void
LANGUAGE plpython3u SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
import importlib.abc
import importlib.util
import sys

stamp = plpy.execute(
    "SELECT version || ' ' || installed_at::text AS stamp FROM heal.installation"
)[0]["stamp"]
if GD.get("heal.stamp") == stamp:
    return
sources = {r["name"]: r["source"] for r in plpy.execute("SELECT name, source FROM heal.modules")}


class HealModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in sources:
            return None
        return importlib.util.spec_from_loader(fullname, self, is_package=fullname == "heal")

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        code = compile(sources[module.__name__], "heal.modules:" + module.__name__, "exec")
        exec(code, module.__dict__)


sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "HealModules"]
sys.meta_path.insert(0, HealModules())
for name in [m for m in sys.modules if m == "heal" or m.startswith("heal.")]:
    del sys.modules[name]
GD["heal.stamp"] = stamp
$$;

CREATE OR REPLACE FUNCTION heal.server_info() RETURNS jsonb
LANGUAGE plpython3u SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
import json
plpy.execute("SELECT heal._load()")
from heal.server import server_info
return json.dumps(server_info())
$$;
COMMENT ON FUNCTION heal.server_info() IS
    'The server''s Python and pglast as pgheal sees them (checked by pgheal install).';

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
    failure jsonb;
BEGIN
    CALL heal.run_migration(sql, name, dry_run, force, failure);
    IF failure IS NOT NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = failure ->> 'sqlstate',
            MESSAGE = failure ->> 'message',
            DETAIL = failure ->> 'detail',
            HINT = failure ->> 'hint';
    END IF;
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
from heal.server import migrate
result = migrate(sql, name, bool(dry_run), bool(force))
return (json.dumps(result) if result else None,)
$$;

CREATE OR REPLACE FUNCTION heal.plan(sql text)
RETURNS TABLE (statement integer, line integer, missing text, fix text, allowed boolean,
               reason text)
LANGUAGE plpython3u
AS $$
plpy.execute("SELECT heal._load()")
from heal.server import plan_script
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
from heal.server import apply_fix
return apply_fix(role, kind, target, schema)
$$;
COMMENT ON FUNCTION heal.apply_fix(name, text, text, text) IS
    'Apply one fix for role, within heal.settings policy; returns the SQL it ran.';

CREATE OR REPLACE FUNCTION heal.refresh_extension_catalog(force boolean DEFAULT false)
RETURNS integer
LANGUAGE plpython3u SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT heal._load()")
from heal.server import refresh_extension_catalog
return refresh_extension_catalog(force)
$$;
COMMENT ON FUNCTION heal.refresh_extension_catalog(boolean) IS
    'Rebuild heal.extension_objects if the server''s available extensions changed (or force).';

CREATE OR REPLACE FUNCTION heal.rebuild_extension_catalog(fingerprint text) RETURNS integer
LANGUAGE plpython3u SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT heal._load()")
from heal.server import rebuild_extension_catalog
return rebuild_extension_catalog(fingerprint)
$$;

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

-- Write one run's record: the migration row, its events, the pattern counters.
CREATE OR REPLACE FUNCTION heal.record_migration(migration jsonb, events jsonb)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    migration_id bigint;
BEGIN
    INSERT INTO heal.migrations
           (name, checksum, forced, status, source, started_at, statements, attempts, heals,
            duration_ms, error, run_by, sql, sqlstate, retry_of)
    SELECT m.name, m.checksum, coalesce(m.forced, false), m.status,
           coalesce(m.source, 'migration'), m.started_at,
           m.statements, m.attempts, m.heals, m.duration_ms, m.error,
           CASE WHEN m.run_by IS NOT NULL AND pg_has_role(session_user, m.run_by, 'MEMBER')
                THEN m.run_by ELSE session_user END,
           m.sql, m.sqlstate, m.retry_of
      FROM jsonb_to_record(migration) AS m(
           name text, checksum text, forced boolean, status text, source text,
           started_at timestamptz,
           statements integer, attempts integer, heals integer, duration_ms numeric,
           error text, run_by name, sql text, sqlstate text, retry_of bigint)
    RETURNING id INTO migration_id;

    INSERT INTO heal.build_events
           (created_at, event_type, migration_id, statement, sqlstate, message, fix_sql,
            duration_ms, detail, source)
    SELECT e.created_at, e.event_type, migration_id, e.statement, e.sqlstate, e.message,
           e.fix_sql, e.duration_ms, e.detail,
           CASE WHEN migration ->> 'source' = 'scan' THEN 'scan' ELSE 'migration' END
      FROM jsonb_to_recordset(events) AS e(
           created_at timestamptz, event_type text, statement integer, sqlstate text,
           message text, fix_sql text, duration_ms numeric, detail jsonb);

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

    RETURN migration_id;
END
$$;

-- The autonomous scan. Not SECURITY DEFINER: it runs as the pg_cron job's owner (the
-- installing superuser), reads the server log, and retries a failed migration as the
-- role that ran it.
CREATE OR REPLACE PROCEDURE heal.scan()
LANGUAGE plpython3u
AS $$
plpy.execute("SELECT heal._load()")
from heal.scanner import scan
scan()
$$;
COMMENT ON PROCEDURE heal.scan() IS
    'Read new errors from the server log, heal what policy allows, learn from DDL people ran, '
    'retry failed migrations that can heal now, purge old records. Scheduled by pg_cron.';

-- What DDL was run, and by whom: what the scan learns from. Fails open: a problem here
-- never breaks the user's DDL.
CREATE OR REPLACE FUNCTION heal.record_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO heal.ddl_log (command_tag, object_type, object_identity, by_pgheal, role_name)
    SELECT c.command_tag, c.object_type, c.object_identity,
           coalesce(current_setting('heal.fixing', true), '') = 'on', session_user
      FROM pg_catalog.pg_event_trigger_ddl_commands() AS c
     WHERE NOT c.in_extension;
EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'pgheal: could not record DDL: %', SQLERRM;
END
$$;

DROP EVENT TRIGGER IF EXISTS heal_ddl_log;
CREATE EVENT TRIGGER heal_ddl_log ON ddl_command_end EXECUTE FUNCTION heal.record_ddl();
COMMENT ON EVENT TRIGGER heal_ddl_log IS 'pgheal: records DDL in heal.ddl_log';

CREATE OR REPLACE FUNCTION heal.skip_log_backlog() RETURNS text
LANGUAGE plpython3u
AS $$
plpy.execute("SELECT heal._load()")
from heal.scanner import skip_backlog
return skip_backlog()
$$;
COMMENT ON FUNCTION heal.skip_log_backlog() IS
    'Start log intake at the end of the current server log: the next scan reads only new '
    'errors. pgheal install does this the first time.';
