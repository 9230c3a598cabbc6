"""The trust boundary: no role gains through pgheal what it could not do by hand.

Each test is an attack that worked before the boundary was built, tried through every
route that reaches the same code (heal.migrate, heal.plan, the DDL trigger, the scan).
"""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest

from pgheal import around, deploy, serverdeps
from pgheal.cluster import Cluster
from tests.integration.conftest import connect, extensions, psql, role_dsn, scalar
from tests.integration.test_history import TOOLS, migrations_of
from tests.integration.test_installer import pgheal
from tests.integration.test_layouts import tree


def _role(conn, *, operator: bool = True, create_db: bool = False, prefix: str = "r") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {name} LOGIN" + (" IN ROLE heal_operator" if operator else ""))
    conn.execute(f"GRANT CREATE ON SCHEMA public TO {name}")
    if create_db:
        conn.execute(f"GRANT CREATE ON DATABASE {conn.info.dbname} TO {name}")
    return name


def _superuser(conn, role: str) -> bool:
    return bool(scalar(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,)))


def _db_path(conn) -> str | None:
    return scalar(
        conn,
        """SELECT s FROM pg_db_role_setting r, unnest(r.setconfig) s
            WHERE r.setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
              AND r.setrole = 0 AND s LIKE 'search_path=%'""",
    )


@pytest.fixture
def no_create(conn):
    conn.execute(f"REVOKE CREATE ON DATABASE {conn.info.dbname} FROM PUBLIC")
    return conn


# -- 1. stored SQL never runs in a privileged session on another role's behalf -----------------

ESCALATION = """
DO $$ BEGIN
  IF session_user = '{role}' THEN
    RAISE EXCEPTION USING ERRCODE = '42883', MESSAGE = 'function plan(text) does not exist';
  END IF;
END $$;
RESET ROLE;
ALTER ROLE {role} SUPERUSER;
"""


def test_a_failed_migration_is_never_retried_in_the_scans_session(conn, dsn):
    op = _role(conn, prefix="op")
    with connect(role_dsn(dsn, op)) as session, pytest.raises(psycopg.Error) as failed:
        session.execute("CALL heal.migrate(%s)", (ESCALATION.format(role=op),))
    assert failed.value.diag.sqlstate == "42883"
    migration = scalar(conn, "SELECT id FROM heal.migrations WHERE run_by = %s", (op,))
    conn.execute("CALL heal.scan()")
    conn.execute("CALL heal.scan()")
    assert not _superuser(conn, op)
    assert scalar(conn, "SELECT count(*) FROM heal.migrations") == 1  # nothing ran here
    assert scalar(conn, "SELECT retry_ready_at IS NOT NULL FROM heal.migrations") is True
    # A superuser's session may not run it either: that is the attack itself.
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
        conn.execute("CALL heal.retry_migration(%s)", (migration,))
    assert f'run by role "{op}"' in refused.value.diag.message_primary
    assert not _superuser(conn, op)
    # Nor a session that switched to that role: RESET ROLE, or RESET SESSION
    # AUTHORIZATION, would lead back to the superuser who logged in.
    for switch in (f"SET ROLE {op}", f"SET SESSION AUTHORIZATION {op}"):
        with connect(dsn) as admin:
            admin.execute(switch)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                admin.execute("CALL heal.retry_migration(%s)", (migration,))
    # Its own session may: and then the script runs with that role's rights only.
    with connect(role_dsn(dsn, op)) as session, pytest.raises(psycopg.Error) as again:
        session.execute("CALL heal.retry_migration(%s)", (migration,))
    assert again.value.diag.sqlstate == "42883"  # its own session: the script fails again
    assert not _superuser(conn, op)


def test_a_dropped_or_renamed_role_gets_no_retry(conn, dsn):
    op = _role(conn, prefix="gone")
    with connect(role_dsn(dsn, op)) as session, pytest.raises(psycopg.Error):
        session.execute("CALL heal.migrate('CREATE VIEW v AS SELECT plan(''x'')')")
    conn.execute(f"ALTER ROLE {op} RENAME TO {op}_x")
    conn.execute(f"CREATE ROLE {op} LOGIN SUPERUSER")  # the old name, another role
    conn.execute("CALL heal.scan()")
    assert scalar(conn, "SELECT retry_ready_at FROM heal.migrations") is None
    migration = scalar(conn, "SELECT max(id) FROM heal.migrations")
    with (
        connect(role_dsn(dsn, op)) as impostor,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        impostor.execute("CALL heal.retry_migration(%s)", (migration,))
    assert scalar(conn, "SELECT to_regclass('public.v')") is None


def test_the_scan_never_acts_with_its_own_rights_for_a_role_that_is_gone(conn, dsn):
    role = _role(conn, operator=False, prefix="app")
    conn.execute("SELECT heal.skip_log_backlog()")
    with connect(role_dsn(dsn, role)) as app, pytest.raises(psycopg.Error):
        app.execute("SELECT uuid_generate_v4()")
    conn.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")
    for _ in range(300):  # the collector writes the log asynchronously
        conn.execute("CALL heal.scan()")
        if scalar(conn, "SELECT count(*) FROM heal.error_events"):
            break
        time.sleep(0.1)
    assert "uuid-ossp" not in extensions(conn)
    assert f'role "{role}" no longer exists' in scalar(
        conn, "SELECT refused FROM heal.error_fingerprints"
    )


# -- 3. a trojan on a privileged caller's search path ----------------------------------------

TROJAN = """
CREATE SCHEMA tools AUTHORIZATION {role};
SET ROLE {role};
CREATE FUNCTION tools.uuid_generate_v4() RETURNS uuid LANGUAGE plpgsql AS $$
BEGIN
  ALTER ROLE {role} SUPERUSER;
  RETURN '00000000-0000-0000-0000-000000000000';
END $$;
CREATE TYPE tools.citext AS (x text);
RESET ROLE;
"""


def _through(conn, dsn: str, route: str, ddl: str, never: str) -> bool:
    """Send `ddl` (creating table t) through `route`, then insert a row into t: the
    default runs. For heal.plan, check that no fix names schema `never` instead, and
    return False: nothing ran."""
    if route == "plan":
        rows = conn.execute("SELECT fix FROM heal.plan(%s)", (ddl,)).fetchall()
        assert rows and all(never not in (fix or "") for (fix,) in rows), rows
        return False
    if route == "migrate":
        conn.execute("CALL heal.migrate(%s)", (ddl,))
    else:
        result = psql(dsn, "-c", ddl)
        assert result.returncode == 0, result.stderr
    conn.execute("INSERT INTO t DEFAULT VALUES")
    return True


@pytest.mark.parametrize("route", ["migrate", "trigger", "plan"])
def test_a_schema_another_role_controls_never_goes_on_the_path(conn, dsn, route):
    mallory = _role(conn, operator=False, prefix="mallory")
    conn.execute(TROJAN.format(role=mallory))
    ddl = "CREATE TABLE t (id uuid DEFAULT uuid_generate_v4(), e citext)"
    if not _through(conn, dsn, route, ddl, never="tools"):
        return
    assert not _superuser(conn, mallory)
    assert {"uuid-ossp", "citext"} <= set(extensions(conn))
    conn.execute("SET search_path = pg_catalog")  # names shown with the schema they are in
    default = scalar(
        conn,
        "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'public.t'::regclass",
    )
    assert default == "extensions.uuid_generate_v4()"
    column = (
        "SELECT atttypid::regtype::text FROM pg_attribute WHERE attrelid = 'public.t'::regclass"
    )
    assert scalar(conn, column + " AND attname = 'e'") == "extensions.citext"


@pytest.mark.parametrize(
    ("plant", "use"),
    [
        ("CREATE FUNCTION tools.helper_fn(int) RETURNS int LANGUAGE sql AS 'SELECT 1'",
         "SELECT helper_fn(1)"),
        ("CREATE FUNCTION tools.cmp(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true';"
         " CREATE OPERATOR tools.<~> (LEFTARG = text, RIGHTARG = text, FUNCTION = tools.cmp)",
         "SELECT 'a'::text <~> 'b'::text"),
        ("CREATE AGGREGATE tools.agg_x(int) (SFUNC = int4pl, STYPE = int)",
         "SELECT agg_x(1)"),
        ("CREATE TEXT SEARCH CONFIGURATION tools.cfg_x (COPY = simple)",
         "SELECT to_tsvector('cfg_x', 'x')"),
    ],
)  # fmt: skip
def test_nothing_else_provides_it_refuses_and_names_the_schema(conn, plant, use):
    mallory = _role(conn, operator=False, prefix="mallory")
    conn.execute(f"CREATE SCHEMA tools AUTHORIZATION {mallory}")
    conn.execute(f"SET ROLE {mallory}")
    conn.execute(plant)
    conn.execute("RESET ROLE")
    with pytest.raises(psycopg.Error) as refused:
        conn.execute("CALL heal.migrate(%s)", (use,))
    detail = refused.value.diag.message_detail
    assert 'schema "tools" is not trusted' in detail and f'"{mallory}"' in detail
    assert "tools" not in scalar(conn, "SELECT current_setting('search_path')")


# -- 4. extensions never go into a schema someone else prepared --------------------------------


def test_an_extension_schema_made_by_someone_else_receives_nothing(conn, dsn):
    mallory = _role(conn, operator=False, create_db=True, prefix="mallory")
    with connect(role_dsn(dsn, mallory)) as m:
        m.execute("CREATE SCHEMA extensions")
        m.execute("CREATE FUNCTION extensions.lower(varchar) RETURNS text LANGUAGE sql "
                  "AS 'SELECT ''pwned''::text'")  # fmt: skip
    before = _db_path(conn)
    for route in ("migrate", "trigger"):
        if route == "migrate":
            with pytest.raises(psycopg.Error) as refused:
                conn.execute("CALL heal.migrate('CREATE TABLE m (e citext)')")
            assert 'schema "extensions" is not trusted' in refused.value.diag.message_detail
        else:
            result = psql(dsn, "-c", "CREATE TABLE m (e citext)")
            assert result.returncode != 0
            assert 'schema "extensions" is not trusted' in result.stderr
    assert "citext" not in extensions(conn)
    assert _db_path(conn) == before


# -- 6. the database's search_path: only its owner could change it by hand --------------------


def test_a_role_without_privileges_never_changes_the_databases_path(no_create, dsn):
    conn = no_create
    conn.execute("CALL heal.migrate('CREATE TABLE x (e citext)')")  # extensions exists now
    conn.execute(f'ALTER DATABASE "{conn.info.dbname}" SET search_path = "$user", public')
    nobody = _role(conn, operator=False, prefix="nobody")
    result = psql(role_dsn(dsn, nobody), "-c", "CREATE TEMP TABLE m (e citext)")
    assert result.returncode == 0, result.stderr  # healed for its own session only
    assert _db_path(conn) == 'search_path="$user", public'


# -- 7. cancels win --------------------------------------------------------------------------


def _locked(dsn: str, table: str, seconds: float) -> threading.Thread:
    """Hold an exclusive lock on `table` for `seconds`, from another session."""
    ready = threading.Event()

    def hold() -> None:
        with connect(dsn) as other, other.transaction():
            other.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            ready.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold)
    thread.start()
    ready.wait()
    return thread


def test_a_timeout_during_static_analysis_ends_the_migration(conn, dsn):
    holder = _locked(dsn, "heal.extension_objects", 1.5)
    try:
        conn.execute("SET statement_timeout = '300ms'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            # What the script creates is looked up in heal.extension_objects: blocked.
            conn.execute("CALL heal.migrate('CREATE EXTENSION IF NOT EXISTS hstore; "
                         "CREATE TABLE c (e citext)')")  # fmt: skip
    finally:
        holder.join()
        conn.execute("RESET statement_timeout")
    assert scalar(conn, "SELECT to_regclass('public.c')") is None


def test_a_cancel_during_a_statement_is_not_recorded_as_a_failure_to_heal(conn, dsn):
    pid = conn.info.backend_pid

    def cancel() -> None:
        time.sleep(0.5)
        with connect(dsn) as other:
            other.execute("SELECT pg_cancel_backend(%s)", (pid,))

    thread = threading.Thread(target=cancel)
    thread.start()
    with pytest.raises(psycopg.errors.QueryCanceled):
        conn.execute("CALL heal.migrate('CREATE TABLE d (a int); SELECT pg_sleep(5)')")
    thread.join()
    assert scalar(conn, "SELECT to_regclass('public.d')") is None
    # Not caught: nothing ran after it, no failure was recorded and committed.
    assert scalar(conn, "SELECT count(*) FROM heal.migrations") == 0


def test_a_timeout_inside_the_ddl_trigger_ends_the_ddl(conn, dsn):
    holder = _locked(dsn, "heal.settings", 1.5)
    try:
        result = psql(dsn, "-c", "SET statement_timeout = '300ms'", "-c",
                      "CREATE TABLE e (v citext)")  # fmt: skip
    finally:
        holder.join()
    assert result.returncode != 0
    assert "canceling statement due to statement timeout" in result.stderr
    assert "predictive healing failed" not in result.stderr
    assert scalar(conn, "SELECT to_regclass('public.e')") is None


# -- 8. identifiers are parsed, never split by hand --------------------------------------------


def test_quoted_names_on_the_databases_path_survive_a_persisted_heal(conn):
    conn.execute('CREATE SCHEMA "my,schema"')
    conn.execute(f'ALTER DATABASE "{conn.info.dbname}" SET search_path = "my,schema", public')
    conn.execute('SET search_path = "my,schema", public')
    conn.execute("CALL heal.migrate('CREATE TABLE q (id uuid DEFAULT uuid_generate_v4())')")
    assert _db_path(conn) == 'search_path="my,schema", public, extensions'


# -- 9. non-superuser operators: PostgreSQL's errors, and a record -----------------------------


def test_an_operator_gets_postgresql_errors_and_a_record(conn, dsn):
    conn.execute(
        """INSERT INTO heal.learned_patterns (fingerprint, pattern, message, fix_kind, fix_target)
           VALUES ('x', 'function %(%) does not exist', 'm', 'create_schema', 's')"""
    )
    op = _role(conn, create_db=True, prefix="op")
    with connect(role_dsn(dsn, op)) as session:
        with pytest.raises(psycopg.errors.UndefinedFunction) as failed:
            session.execute("CALL heal.migrate('SELECT no_such_fn()')")
        text = str(failed.value)
        assert "spiexceptions" not in text and "Traceback" not in text
        session.execute("CALL heal.migrate('CREATE TABLE ok (id uuid DEFAULT uuid_generate_v4())')")
    rows = conn.execute(
        "SELECT status, run_by FROM heal.migrations WHERE run_by = %s ORDER BY id", (op,)
    ).fetchall()
    assert rows == [("failed", op), ("succeeded", op)]


def test_a_script_that_switches_role_is_still_recorded_as_its_caller(conn, dsn):
    op = _role(conn, prefix="op")
    other = _role(conn, operator=False, prefix="other")
    conn.execute(f"GRANT {other} TO {op}")
    with connect(role_dsn(dsn, op)) as session:
        session.execute("CALL heal.migrate(%s)", (f"SET ROLE {other}; CREATE TABLE s (a int)",))
    assert scalar(conn, "SELECT run_by FROM heal.migrations") == op


# -- 10. records are pgheal's ------------------------------------------------------------------

#: SECURITY DEFINER routines that a role other than pgheal's owner may execute, and why
#: (README, "Security model").
DEFINER_GRANTS = {
    "PUBLIC": {"write_records()"},
    "heal_operator": {
        "write_records()", "_load()", "apply_fix(name,text,text,text)",
        "refresh_extension_catalog(boolean)", "record_outside(text,text,text,numeric)",
        "server_info()", "setting_problem(text,text)", "health_checks()",
        "own_migration_sql(bigint)", "log_position()", "errors_since(text)",
        "record_baseline(text,text)",
    },
}  # fmt: skip


def _definers_executable_by(conn, role: str) -> set[str]:
    grantee = "public" if role == "PUBLIC" else role
    rows = conn.execute(
        """SELECT p.proname || '(' || coalesce(array_to_string(
                      ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) t), ','),
                  '') || ')'
             FROM pg_proc p
            WHERE p.pronamespace = 'heal'::regnamespace AND p.prosecdef
              AND has_function_privilege(%s, p.oid, 'EXECUTE')""",
        (grantee,),
    ).fetchall()
    return {r[0].replace(", ", ",") for r in rows}


@pytest.mark.parametrize("role", ["PUBLIC", "heal_operator"])
def test_security_definer_routines_only_where_the_readme_says_why(conn, role):
    assert _definers_executable_by(conn, role) == DEFINER_GRANTS[role]


def test_nobody_writes_records_it_chooses(conn, dsn):
    nobody = _role(conn, operator=False, prefix="nobody")
    op = _role(conn, prefix="op")
    for who in (nobody, op):
        with connect(role_dsn(dsn, who)) as session:
            for call in (
                "SELECT heal.record_migration('{}'::jsonb, '[]'::jsonb)",
                "SELECT heal.heal_ddl('CREATE TABLE x (e citext)', current_user, 'public')",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    session.execute(call)
            assert scalar(session, "SELECT heal.write_records()") is None
    with connect(role_dsn(dsn, op)) as session, pytest.raises(psycopg.Error):
        session.execute(
            "SELECT heal.record_outside('0001_x', 'CREATE TABLE forged (a int)', NULL, 1)"
        )
    assert scalar(conn, "SELECT count(*) FROM heal.build_events") == 0
    assert scalar(conn, "SELECT count(*) FROM heal.migrations") == 0


REMOTE = "CREATE VIEW remote AS SELECT dblink_get_connections()"


def test_pg_cron_retries_a_migration_as_its_own_role():
    """Where pg_cron lives in the database, the scan has it log in as the role and retry."""
    with (
        Cluster(port=5435) as own,
        psycopg.connect(own.dsn(), autocommit=True) as conn,
    ):
        deploy.install(conn, serverdeps.default_path())
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        op = _role(conn, prefix="op")
        op_dsn = own.dsn().replace("postgres@", f"{op}@")
        with psycopg.connect(op_dsn, autocommit=True) as session, pytest.raises(psycopg.Error):
            session.execute(
                "CALL heal.migrate('CREATE VIEW remote AS SELECT dblink_get_connections()')"
            )
        conn.execute("UPDATE heal.settings SET value = 'dblink' WHERE name = 'allow_extensions'")
        conn.execute("CALL heal.scan()")
        migration = scalar(conn, "SELECT id FROM heal.migrations")
        job = conn.execute(
            "SELECT username, command FROM cron.job WHERE jobname = %s",
            (f"heal-retry:postgres:{migration}",),
        ).fetchone()
        assert job == (op, f"CALL heal.retry_migration({migration})")
        for _ in range(90 * 4):  # pg_cron runs it within the minute
            if scalar(conn, "SELECT count(*) FROM heal.migrations WHERE retry_of IS NOT NULL"):
                break
            time.sleep(0.25)
        retried = conn.execute(
            "SELECT status, run_by, source FROM heal.migrations WHERE retry_of = %s", (migration,)
        ).fetchone()
        assert retried == ("succeeded", op, "retry")
        assert scalar(conn, "SELECT viewowner FROM pg_views WHERE viewname = 'remote'") == op
        conn.execute("CALL heal.scan()")
        assert scalar(conn, "SELECT count(*) FROM cron.job WHERE jobname LIKE 'heal-retry:%'") == 0


def test_the_trigger_s_verdicts_are_read_by_pgheal_alone(conn, dsn):
    """heal.ddl_verdict runs as whoever calls it, on their path, with no definer's rights
    of its own: only heal.predict_ddl (as pgheal) may call it."""
    for who in (_role(conn, operator=False, prefix="nobody"), _role(conn, prefix="op")):
        verdict = "heal.ddl_verdict(text, name, text)"
        assert not scalar(conn, "SELECT has_function_privilege(%s, %s, 'EXECUTE')", (who, verdict))
        with (
            connect(role_dsn(dsn, who)) as session,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            session.execute(
                "SELECT heal.ddl_verdict('CREATE TABLE x (a int)', current_user, 'public')"
            )


def test_a_session_cannot_pass_its_ddl_off_as_pgheals(conn):
    conn.execute("CALL heal.migrate('CREATE TABLE healed (e citext)')")  # pgheal's own
    conn.execute("SELECT set_config('heal.fixing', 'on', false)")
    conn.execute("CREATE EXTENSION hstore")  # a person's, whatever the setting says
    rows = dict(conn.execute("SELECT object_identity, by_pgheal FROM heal.ddl_log "
                             "WHERE command_tag = 'CREATE EXTENSION'").fetchall())  # fmt: skip
    assert rows == {"citext": True, "hstore": False}


# -- the DDL trigger runs as pgheal with the session's search_path -----------------------------


@pytest.mark.parametrize(
    ("plant", "ddl"),
    [
        # plain_index_pattern()'s replace(), called for every CREATE INDEX
        ("CREATE FUNCTION evil.replace(text, text, text) RETURNS text LANGUAGE plpgsql AS "
         "$$BEGIN EXECUTE 'ALTER ROLE {role} SUPERUSER'; RETURN pg_catalog.replace($1, $2, $3); "
         "END$$", "CREATE INDEX ON evil.t (a)"),
        # the trigger function's own variable types, resolved in a session's first DDL
        ("CREATE FUNCTION evil.pwn(v pg_catalog.text) RETURNS boolean LANGUAGE plpgsql AS "
         "$$BEGIN EXECUTE 'ALTER ROLE {role} SUPERUSER'; RETURN true; END$$; "
         "CREATE DOMAIN evil.text AS pg_catalog.text CHECK (evil.pwn(VALUE)); "
         "CREATE DOMAIN evil.name AS pg_catalog.name CHECK (evil.pwn(VALUE::pg_catalog.text))",
         "CREATE TABLE evil.t2 (a int)"),
        # the catalog query for a GIN index of a shape the backend knows: its functions
        # and operators, and the casts it names
        ("CREATE FUNCTION evil.pwn() RETURNS boolean LANGUAGE plpgsql AS "
         "$$BEGIN EXECUTE 'ALTER ROLE {role} SUPERUSER'; RETURN true; END$$; "
         "CREATE FUNCTION evil.cardinality(anyarray) RETURNS int LANGUAGE sql "
         "AS 'SELECT 1 WHERE evil.pwn()'; "
         "CREATE FUNCTION evil.count(anyelement) RETURNS int LANGUAGE sql "
         "AS 'SELECT 1 WHERE evil.pwn()'; "
         "CREATE FUNCTION evil.to_regclass(text) RETURNS oid LANGUAGE sql "
         "AS 'SELECT 0::oid WHERE evil.pwn()'; "
         "CREATE FUNCTION evil.eq(name, name) RETURNS boolean LANGUAGE sql "
         "AS 'SELECT evil.pwn()'; "
         "CREATE OPERATOR evil.= (LEFTARG = name, RIGHTARG = name, FUNCTION = evil.eq); "
         "CREATE FUNCTION evil.oideq(oid, oid) RETURNS boolean LANGUAGE sql "
         "AS 'SELECT evil.pwn()'; "
         "CREATE OPERATOR evil.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = evil.oideq); "
         "CREATE FUNCTION evil.has_schema_privilege(name, oid, text) RETURNS boolean "
         "LANGUAGE sql AS 'SELECT evil.pwn()'; "
         "CREATE FUNCTION evil.pg_my_temp_schema() RETURNS oid LANGUAGE sql "
         "AS 'SELECT 0::oid WHERE evil.pwn()'; "
         "CREATE FUNCTION evil.unnest(anyarray) RETURNS SETOF name LANGUAGE sql "
         "AS 'SELECT NULL::name WHERE evil.pwn()'; "
         "CREATE TABLE evil.g1 (j jsonb); CREATE TABLE evil.g2 (j jsonb)",
         ("CREATE INDEX ON evil.g1 USING gin (j)", "CREATE INDEX ON evil.g2 USING gin (j)",
          "CREATE INDEX ON g1 USING gin (j)", "CREATE INDEX ON g2 USING gin (j)")),
    ],
)  # fmt: skip
def test_names_first_on_a_roles_path_never_run_as_pgheal(conn, dsn, plant, ddl):
    mallory = _role(conn, operator=False, create_db=True, prefix="mallory")
    with connect(role_dsn(dsn, mallory)) as m:
        m.execute("CREATE SCHEMA evil; CREATE TABLE evil.t (a int)")
        m.execute(plant.format(role=mallory))
    with connect(role_dsn(dsn, mallory)) as m:  # a new session: the trigger compiles anew
        m.execute("SET search_path = evil, pg_catalog")
        for statement in (ddl,) if isinstance(ddl, str) else ddl:
            m.execute(statement)
    assert not _superuser(conn, mallory)


@pytest.mark.parametrize("shadow", ["owner's name", "own schema", "temporary"])
def test_an_index_s_table_is_the_one_the_role_s_own_lookup_finds(conn, dsn, shadow):
    """The trigger judges a GIN index by the columns of the table the server will find
    for the role running it: "$user" on the path is that role, not pgheal's owner
    (whose rights the trigger asks with), and the session's temporary table comes first.
    Here that table's int column needs btree_gin, and a jsonb table of the same name
    elsewhere must not hide it, whoever made that one."""
    bob = _role(conn, operator=False, create_db=True, prefix="bob")
    owner = scalar(conn, "SELECT pg_get_userbyid(proowner) FROM pg_proc "
                   "WHERE oid = 'heal.predict_ddl'::regproc")  # fmt: skip
    conn.execute("CREATE TABLE public.events (payload jsonb)")
    if shadow == "owner's name":  # another role's schema, on bob's path as "$user" was not
        mallory = _role(conn, operator=False, create_db=True, prefix="mallory")
        conn.execute("DROP TABLE public.events")
        with connect(role_dsn(dsn, mallory)) as m:
            m.execute(f'CREATE SCHEMA "{owner}"; CREATE TABLE "{owner}".events (payload jsonb)')
    with connect(role_dsn(dsn, bob)) as b:
        if shadow == "owner's name":
            b.execute("CREATE TABLE public.events (payload int)")
        elif shadow == "own schema":
            b.execute(f"CREATE SCHEMA {bob}; CREATE TABLE {bob}.events (payload int)")
        b.execute("CREATE TABLE public.warm (j jsonb)")
    with connect(role_dsn(dsn, bob)) as b:  # a new session, on the default path
        if shadow == "temporary":
            b.execute("CREATE TEMPORARY TABLE events (payload int)")
        b.execute("CREATE INDEX ON warm USING gin (j)")  # the shape, judged in full
        b.execute("CREATE INDEX events_payload ON events USING gin (payload)")
        assert scalar(b, "SELECT count(*) FROM pg_indexes WHERE indexname = 'events_payload'")
    assert "btree_gin" in extensions(conn)


def test_an_index_s_table_is_never_one_in_a_schema_the_role_may_not_use(conn, dsn):
    """The server passes over a schema on the path that the role has no USAGE on; so
    does pgheal's full analysis, the trigger's (which judges as pgheal) and heal.plan's:
    a jsonb table of the same name there must not hide the int column that needs
    btree_gin."""
    bob = _role(conn, create_db=True, prefix="bob")
    conn.execute("CREATE SCHEMA hidden; CREATE TABLE hidden.events (payload jsonb)")
    with connect(role_dsn(dsn, bob)) as b:
        b.execute("CREATE TABLE public.events (payload int)")
    with connect(role_dsn(dsn, bob)) as b:
        b.execute("SET search_path = hidden, public")
        planned = b.execute(
            "SELECT missing, fix FROM heal.plan('CREATE INDEX ON events USING gin (payload)')"
        ).fetchall()
        assert any("btree_gin" in (fix or "") for _, fix in planned), planned
        b.execute("CREATE INDEX events_payload ON events USING gin (payload)")
        assert scalar(b, "SELECT count(*) FROM pg_indexes WHERE indexname = 'events_payload' "
                         "AND schemaname = 'public'")  # fmt: skip
    assert "btree_gin" in extensions(conn)


# -- history written by a less privileged role -------------------------------------------------


def test_a_lesser_roles_history_never_makes_a_superuser_skip_or_refuse(conn, dsn):
    op = _role(conn, prefix="op")
    with connect(role_dsn(dsn, op)) as session:
        session.execute("SELECT heal.record_outside('0200_idx', "
                        "'CREATE INDEX CONCURRENTLY i ON t (a)', NULL, -1e30)")  # fmt: skip
        session.execute("CALL heal.migrate('SELECT 1', name => '0001_init')")
        assert scalar(session, "SELECT count(*) FROM heal.last_applied('0001_init')") == 1
    assert scalar(conn, "SELECT count(*) FROM heal.last_applied('0200_idx')") == 0
    assert scalar(conn, "SELECT min(duration_ms) FROM heal.migrations") >= 0
    conn.execute("CALL heal.migrate('CREATE TABLE t (a int)', name => '0001_init')")
    assert scalar(conn, "SELECT to_regclass('public.t')::text") == "t"
    # The superuser's own record counts for everyone.
    with connect(role_dsn(dsn, op)) as session:
        assert scalar(session, "SELECT run_by FROM heal.last_applied('0001_init')") == "postgres"


# -- error text any role can write into the log -------------------------------------------------

FORGED = """DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '42883',
    MESSAGE = 'function strpos(foo[, text) does not exist'; END $$"""


def test_a_made_up_error_never_stops_the_scan_or_hides_the_real_error(conn, dsn):
    nobody = _role(conn, operator=False, prefix="nobody")
    conn.execute("SELECT heal.skip_log_backlog()")
    with connect(role_dsn(dsn, nobody)) as app:
        with pytest.raises(psycopg.Error):
            app.execute(FORGED)
        with pytest.raises(psycopg.Error):
            app.execute("SELECT 1/0")
    for _ in range(300):
        conn.execute("CALL heal.scan()")
        if scalar(conn, "SELECT count(*) FROM heal.error_events") >= 2:
            break
        time.sleep(0.1)
    assert scalar(conn, "SELECT count(*) FROM heal.error_events") == 2
    conn.execute("CALL heal.scan()")
    assert scalar(conn, "SELECT status FROM heal.scans ORDER BY id DESC LIMIT 1") == "ok"
    with pytest.raises(psycopg.errors.UndefinedFunction) as failed:
        conn.execute("CALL heal.migrate(%s)", (FORGED,))
    assert failed.value.diag.message_primary == "function strpos(foo[, text) does not exist"


# -- what only the log, or another role, could tell ----------------------------------------------


def test_operators_read_neither_the_logs_statements_nor_other_roles_scripts(conn, dsn):
    conn.execute("SELECT heal.skip_log_backlog()")
    with pytest.raises(psycopg.Error):
        conn.execute("ALTER ROLE postgres PASSWORD 'S3cr3t' VALID UNTIL 'not-a-date'")
    for _ in range(300):
        conn.execute("CALL heal.scan()")
        if scalar(conn, "SELECT count(*) FROM heal.error_events"):
            break
        time.sleep(0.1)
    conn.execute("CALL heal.migrate('SELECT 1 AS secret_value', name => 'mine')")
    op = _role(conn, prefix="op")
    reader = _role(conn, operator=False, prefix="reader")
    conn.execute(f"GRANT pg_read_server_files TO {reader}")
    with connect(role_dsn(dsn, op)) as session:
        for query in ("SELECT statement FROM heal.error_events",
                      "SELECT message FROM heal.error_events",
                      "SELECT message FROM heal.error_fingerprints",
                      "SELECT sql FROM heal.migration_scripts"):  # fmt: skip
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                session.execute(query)
        assert scalar(session, "SELECT count(*) FROM heal.error_events") == 1
        seen = session.execute("SELECT error FROM heal.failures").fetchall()
        assert seen and not any("not-a-date" in error for (error,) in seen), seen
        assert (
            scalar(session, "SELECT heal.own_migration_sql(max(id)) FROM heal.migrations") is None
        )
    with connect(role_dsn(dsn, reader)) as session:  # who could read the log by hand
        assert "S3cr3t" in scalar(session, "SELECT statement FROM heal.error_events")


# -- fixes asked of heal.apply_fix directly ------------------------------------------------------


def test_an_extension_always_goes_into_a_named_schema(conn, dsn):
    conn.execute("CALL heal.migrate('CREATE TABLE x (e citext)')")  # extensions exists now
    op = _role(conn, create_db=True, prefix="op")
    with connect(role_dsn(dsn, op)) as session:
        session.execute("SELECT heal.apply_fix(current_user, 'create_extension', 'pg_trgm', NULL)")
    assert extensions(conn)["pg_trgm"] == "extensions"


def test_the_sessions_own_objects_are_never_a_missing_schema(conn, dsn):
    result = psql(dsn, "-c", "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    assert result.returncode == 0, result.stderr
    assert scalar(conn, "SELECT count(*) FROM heal.build_events") == 0


# -- pgheal's own queries never run on a path another role controls ---------------------------

PAYLOAD = """LANGUAGE plpgsql AS $$ BEGIN
  IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'ALTER ROLE {role} SUPERUSER';
  END IF;
  RETURN {result};
END $$"""


def _scan_once_the_log_has(conn, count: int) -> None:
    for _ in range(300):
        conn.execute("CALL heal.scan()")
        if scalar(conn, "SELECT count(*) FROM heal.error_events") >= count:
            return
        time.sleep(0.1)


def test_the_database_owners_search_path_never_reaches_the_scan(conn, dsn):
    owner = _role(conn, operator=False, prefix="owner")
    conn.execute(f'ALTER DATABASE "{conn.info.dbname}" OWNER TO {owner}')
    with connect(role_dsn(dsn, owner)) as m:
        m.execute("CREATE SCHEMA evil; GRANT USAGE ON SCHEMA evil TO PUBLIC")
        m.execute("CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz "
                  + PAYLOAD.format(role=owner, result="pg_catalog.now()"))  # fmt: skip
        m.execute(f'ALTER DATABASE "{conn.info.dbname}" SET search_path = evil, pg_catalog, public')
    with connect(dsn) as admin:  # a new session: the database's path, as pg_cron's would be
        admin.execute("CALL heal.scan()")
        admin.execute("SELECT * FROM heal.plan('SELECT lower(''a'')')")
        admin.execute("CALL heal.migrate('SELECT lower(''a'')')")
    assert not _superuser(conn, owner)


def test_overloads_a_role_put_first_never_run_as_pgheals_caller(conn, dsn):
    app = _role(conn, operator=False, create_db=True, prefix="app")
    with connect(role_dsn(dsn, app)) as m:
        # "$user" is postgres for the superuser: a schema of that name comes first.
        m.execute("CREATE SCHEMA postgres; GRANT USAGE ON SCHEMA postgres TO PUBLIC")
        m.execute("CREATE FUNCTION postgres.cardinality(text[]) RETURNS int "
                  + PAYLOAD.format(role=app, result="1"))  # fmt: skip
        m.execute("CREATE FUNCTION postgres.unnest(text[]) RETURNS SETOF text "
                  + PAYLOAD.format(role=app, result="NEXT 'x'"))  # fmt: skip
        ne = PAYLOAD.format(role=app, result="$1 OPERATOR(pg_catalog.<>) $2::oid")
        m.execute("CREATE FUNCTION postgres.ne(oid, integer) RETURNS boolean " + ne)
        m.execute("CREATE OPERATOR postgres.<> (LEFTARG = oid, RIGHTARG = integer, "
                  "FUNCTION = postgres.ne)")  # fmt: skip
    conn.execute("SELECT heal.skip_log_backlog()")
    conn.execute(f"ALTER DATABASE \"{conn.info.dbname}\" SET work_mem = '8MB'")
    with connect(role_dsn(dsn, app)) as m:
        for call in ("SELECT no_such_fn_a(1)", "SELECT no_such_fn_b(1)"):
            with pytest.raises(psycopg.Error):
                m.execute(call)
    with connect(dsn) as admin:
        _scan_once_the_log_has(admin, 2)
        admin.execute("SELECT * FROM heal.plan('SELECT lower(''a'')')")
        admin.execute("CALL heal.migrate('SELECT length(''x'')')")
        with pytest.raises(psycopg.Error):
            admin.execute("CALL heal.migrate('SELECT no_such_fn_c(1)')")
    assert not _superuser(conn, app)


def test_install_refuses_a_heal_schema_someone_else_made(conn, dsn):
    owner = _role(conn, operator=False, prefix="owner")
    database = f"pre_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE DATABASE {database} OWNER {owner}")
    try:
        other = dsn.replace(f"dbname={conn.info.dbname}", f"dbname={database}")
        with connect(role_dsn(other, owner)) as m:
            m.execute("CREATE SCHEMA heal")
        with connect(other) as admin, pytest.raises(deploy.InstallError) as refused:
            deploy.install(admin, serverdeps.default_path())
        assert f'owned by role "{owner}"' in str(refused.value)
    finally:
        conn.execute(f"DROP DATABASE {database} WITH (FORCE)")


# -- round three: temporary schemas, switched roles, made-up messages, floods -----------------

TEMP_TROJAN = """CREATE FUNCTION pg_temp.uuid_generate_v4() RETURNS uuid LANGUAGE plpgsql AS $f$
BEGIN
  IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'ALTER ROLE {role} SUPERUSER';
  END IF;
  RETURN pg_catalog.gen_random_uuid();
END $f$"""


@pytest.mark.parametrize("route", ["migrate", "trigger", "plan"])
def test_another_sessions_temporary_schema_is_never_trusted(conn, dsn, route):
    mallory = _role(conn, operator=False, prefix="mallory")
    with connect(role_dsn(dsn, mallory)) as session:  # held open: its pg_temp_N lives on
        session.execute(TEMP_TROJAN.format(role=mallory))
        temp = scalar(session, "SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema()")
        ddl = "CREATE TABLE t (id uuid DEFAULT uuid_generate_v4())"
        if not _through(conn, dsn, route, ddl, never=temp):
            return
    assert not _superuser(conn, mallory)
    assert "uuid-ossp" in extensions(conn)
    assert temp not in scalar(conn, "SELECT current_setting('search_path')")


SWITCHED = """CREATE SCHEMA {role}_s AUTHORIZATION {role};
CREATE SCHEMA {role}_types AUTHORIZATION {role};
SET ROLE {role};
CREATE TYPE {role}_types.mood AS ENUM ('ok');
CREATE FUNCTION {role}_types.lower(varchar) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'ALTER ROLE {role} SUPERUSER';
  END IF;
  RETURN pg_catalog.lower($1::text);
END $f$;
RESET ROLE;"""


@pytest.mark.parametrize("switch", ["SET ROLE", "SET SESSION AUTHORIZATION"])
@pytest.mark.parametrize("route", ["trigger", "migrate"])
def test_a_switched_session_never_gets_a_schema_only_that_role_trusts(conn, dsn, switch, route):
    alice = _role(conn, operator=True, create_db=True, prefix="alice")
    conn.execute(SWITCHED.format(role=alice))
    ddl = f"CREATE TABLE {alice}_s.t2 (m mood)"
    with connect(dsn) as admin:
        admin.execute(f"{switch} {alice}")
        with pytest.raises(psycopg.Error) as refused:
            admin.execute(ddl if route == "trigger" else f"CALL heal.migrate('{ddl}')")
        assert refused.value.diag.sqlstate == "42704"  # type "mood" does not exist
        admin.execute("RESET ROLE" if switch == "SET ROLE" else "RESET SESSION AUTHORIZATION")
        assert f"{alice}_types" not in scalar(admin, "SELECT current_setting('search_path')")
        admin.execute("SELECT lower('X'::varchar)")
    assert not _superuser(conn, alice)
    # In a session of its own, the role's own schema serves it: it can do that by hand.
    with connect(role_dsn(dsn, alice)) as own:
        own.execute(ddl)
        assert f"{alice}_types" in scalar(own, "SELECT current_setting('search_path')")


def test_a_made_up_message_costs_no_time_a_cancel_cannot_reach(conn, dsn):
    op = _role(conn, prefix="op")
    poison = ("DO $x$ BEGIN RAISE EXCEPTION USING ERRCODE = '42883', MESSAGE = "
              "'operator does not exist: ' || repeat('+ ', 60000) || E'\\nx'; END $x$")  # fmt: skip
    with connect(role_dsn(dsn, op)) as session:
        session.execute("SET statement_timeout = '20s'")
        with pytest.raises(psycopg.Error) as failed:
            session.execute("CALL heal.migrate(%s)", (poison,))
        assert failed.value.diag.sqlstate == "42883"  # the script's own error, not a timeout


def test_the_extension_schema_is_made_only_for_a_role_that_could(no_create, dsn):
    op = _role(no_create, prefix="op")
    with connect(role_dsn(dsn, op)) as session, pytest.raises(psycopg.Error) as refused:
        session.execute("SELECT heal.apply_fix(%s, 'create_schema', 'extensions', NULL)", (op,))
    assert "no CREATE privilege" in refused.value.diag.message_primary
    assert scalar(no_create, "SELECT to_regnamespace('extensions')") is None


def test_ddl_cannot_fill_pgheals_records(conn, dsn):
    nobody = _role(conn, operator=False, prefix="nobody")
    calls = ", ".join(f"zz_missing_{i}()" for i in range(50))
    ddl = ("SET check_function_bodies = off; CREATE OR REPLACE FUNCTION pg_temp.f() "
           f"RETURNS int LANGUAGE sql AS $b$ SELECT {calls} $b$")  # fmt: skip
    before = scalar(conn, "SELECT count(*) FROM heal.build_events")
    with connect(role_dsn(dsn, nobody)) as session:
        session.execute(ddl)
        first = scalar(conn, "SELECT count(*) FROM heal.build_events") - before
        for _ in range(3):
            session.execute(ddl)
        again = scalar(conn, "SELECT count(*) FROM heal.build_events") - before
    # Nothing provides them: said in a NOTICE, never recorded (the statement succeeds,
    # with check_function_bodies off, and its events would stay).
    assert first == 0 and again == 0


# -- other tools' history tables, found on the session's path ---------------------------------

ELEVATE = """CREATE FUNCTION public.elevate_{role}() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN IF current_user <> '{role}' THEN EXECUTE 'ALTER ROLE {role} SUPERUSER'; END IF;
RETURN NULL; END $f$"""


def _history_table(ddl: str) -> str:
    """The table a TOOLS entry's DDL makes (the first CREATE TABLE's name)."""
    import re

    return re.search(r"CREATE TABLE ([\w.\"]+)", ddl)[1].replace('"', "")


def _plant(conn, layout: str, mallory: str, how: str) -> None:
    """Make `layout`'s history table with a trap in it: mallory owns it, mallory put a
    trigger on a superuser's table, or mallory's view stands in its place."""
    ddl = TOOLS[layout][0]
    table = _history_table(ddl)
    conn.execute(ELEVATE.format(role=mallory))
    conn.execute(f"ALTER FUNCTION public.elevate_{mallory}() OWNER TO {mallory}")
    trigger = (f"CREATE TRIGGER zz AFTER INSERT OR UPDATE OR DELETE ON {table} "
               f"FOR EACH STATEMENT EXECUTE FUNCTION public.elevate_{mallory}()")  # fmt: skip
    if how == "owned":
        conn.execute(f"SET ROLE {mallory}")
        conn.execute(ddl)
        conn.execute(trigger)
    elif how == "trigger":
        conn.execute(ddl)
        conn.execute(f"GRANT TRIGGER ON {table} TO {mallory}")
        if "." in table:
            conn.execute(f"GRANT USAGE ON SCHEMA {table.split('.')[0]} TO {mallory}")
        conn.execute(f"SET ROLE {mallory}")
        conn.execute(trigger)
    else:  # a view over a function that runs as whoever reads it
        conn.execute(ddl)
        conn.execute(f"ALTER TABLE {table} RENAME TO real_history")
        conn.execute(f"""CREATE FUNCTION public.rows_{mallory}() RETURNS SETOF {
                         table.rsplit('.', 1)[0] + '.' if '.' in table else ''}real_history
                         LANGUAGE plpgsql AS $f$ BEGIN
                         EXECUTE 'ALTER ROLE {mallory} SUPERUSER';
                         RETURN QUERY SELECT * FROM {
                         table.rsplit('.', 1)[0] + '.' if '.' in table else ''}real_history;
                         END $f$""")  # fmt: skip
        conn.execute(f"ALTER FUNCTION public.rows_{mallory}() OWNER TO {mallory}")
        conn.execute(f"CREATE VIEW {table} AS SELECT * FROM public.rows_{mallory}()")
        conn.execute(f"ALTER VIEW {table} OWNER TO postgres")
    conn.execute("RESET ROLE")


@pytest.mark.parametrize("how", ["owned", "trigger", "view"])
@pytest.mark.parametrize("layout", TOOLS)
def test_a_tools_history_table_someone_else_planted_is_refused(conn, dsn, tmp_path, layout, how):
    mallory = _role(conn, operator=False, create_db=True, prefix="mallory")
    _plant(conn, layout, mallory, how)
    folder = migrations_of(layout, tree(tmp_path / layout, TOOLS[layout][1]))
    for command in ("info", "migrate"):
        result = pgheal(command, "--dsn", dsn, str(folder))
        assert result.returncode == 2, result.stdout + result.stderr
        reason = {"owned": f"its owner {mallory}", "trigger": "trigger zz",
                  "view": "not a plain table"}[how]  # fmt: skip
        assert "not read or written as migration history" in result.stderr
        assert reason in result.stderr, result.stderr
    assert not _superuser(conn, mallory)
    assert scalar(conn, "SELECT to_regclass('keep')") is None  # nothing ran


def test_a_roles_own_history_table_is_its_own_to_use(conn, dsn, tmp_path):
    app = _role(conn, prefix="app")
    with connect(role_dsn(dsn, app)) as session:
        session.execute(TOOLS["golang-migrate"][0])
    folder = tree(tmp_path / "golang", TOOLS["golang-migrate"][1])
    conn.execute(f"SET ROLE {app}")
    conn.execute("CREATE TABLE keep (n int)")
    conn.execute("RESET ROLE")
    result = pgheal("migrate", "--dsn", role_dsn(dsn, app), str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    assert scalar(conn, "SELECT array_agg(version) FROM schema_migrations") == [2]


def test_a_planted_prisma_table_is_never_resolved_by_pgheal_run(conn, dsn):
    mallory = _role(conn, operator=False, prefix="mallory")
    _plant(conn, "prisma", mallory, "owned")
    conn.execute(f"SET ROLE {mallory}")
    conn.execute("INSERT INTO _prisma_migrations (id, checksum, migration_name) "
                 "VALUES ('b', 'y', '20240102000000_failed')")  # fmt: skip
    conn.execute("RESET ROLE")
    notes = around.unblock(conn, ["npx", "prisma", "migrate", "deploy"])
    assert any("not read or written as migration history" in n for n in notes), notes
    assert not _superuser(conn, mallory)
    assert scalar(conn, "SELECT count(*) FROM _prisma_migrations "
                        "WHERE rolled_back_at IS NOT NULL") == 0  # fmt: skip


#: An operator oid = regclass: pg_catalog has no exact match, so on a path with public
#: on it this one wins wherever a query compares an oid with a regclass.
OID_OPERATOR = """
CREATE FUNCTION public.oideq_{r}(oid, regclass) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
  IF current_user <> '{r}' THEN
    BEGIN EXECUTE 'ALTER ROLE {r} SUPERUSER'; EXCEPTION WHEN others THEN NULL; END;
  END IF;
  RETURN $1 = $2::oid;
END $f$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = public.oideq_{r});
"""


@pytest.mark.parametrize("route", ["flyway", "golang-migrate", "prisma", "run"])
def test_no_operator_on_the_sessions_path_runs_while_history_is_read(conn, dsn, tmp_path, route):
    mallory = _role(conn, operator=False, prefix="mallory")
    with connect(role_dsn(dsn, mallory)) as m:
        m.execute(OID_OPERATOR.format(r=mallory))
    try:
        layout = "prisma" if route == "run" else route
        conn.execute(TOOLS[layout][0])  # the superuser's own table, as the tool made it
        conn.execute("CREATE TABLE keep (n int)")  # what the tool applied
        if route == "run":
            around.unblock(conn, ["npx", "prisma", "migrate", "deploy"])
        else:
            folder = migrations_of(layout, tree(tmp_path / layout, TOOLS[layout][1]))
            for command in ("info", "migrate"):
                result = pgheal(command, "--dsn", dsn, str(folder))
                assert result.returncode == 0, result.stdout + result.stderr
        assert not _superuser(conn, mallory)
    finally:
        conn.execute("DROP OPERATOR IF EXISTS public.= (oid, regclass)")


EVIL = """CREATE FUNCTION public.evil_{r}() RETURNS {ret} LANGUAGE plpgsql AS $f$
BEGIN IF current_user <> '{r}' THEN EXECUTE 'ALTER ROLE {r} SUPERUSER'; END IF;
RETURN {val}; END $f$"""


@pytest.mark.parametrize(
    ("how", "reason"),
    [("default", "function public.evil_"), ("check", "function public.evil_"),
     ("index", "function public.evil2_"), ("domain", "type "), ("child", "child tables")],
)  # fmt: skip
def test_a_history_table_taken_over_keeps_nothing_of_its_maker(conn, dsn, tmp_path, how, reason):
    """mallory made the table and what is in it; an admin then took the table over."""
    mallory = _role(conn, operator=False, prefix="mallory")
    table = "flyway_schema_history"
    ret, val = ("timestamp", "now()") if how == "default" else ("boolean", "true")
    with connect(role_dsn(dsn, mallory)) as m:
        m.execute(EVIL.format(r=mallory, ret=ret, val=val))
        m.execute(f"""CREATE FUNCTION public.evil2_{mallory}(text) RETURNS text LANGUAGE plpgsql
                      IMMUTABLE AS $f$ BEGIN PERFORM public.evil_{mallory}(); RETURN $1; END $f$""")
        m.execute(TOOLS["flyway"][0])
        if how == "default":
            m.execute(f"ALTER TABLE {table} ALTER installed_on SET DEFAULT public.evil_{mallory}()")
        elif how == "check":
            m.execute(f"ALTER TABLE {table} ADD CHECK (public.evil_{mallory}())")
        elif how == "index":
            m.execute(f"CREATE INDEX ON {table} (public.evil2_{mallory}(script))")
        elif how == "domain":
            m.execute(f"CREATE DOMAIN public.d_{mallory} AS text CHECK (public.evil_{mallory}())")
            m.execute(f"ALTER TABLE {table} ALTER script TYPE public.d_{mallory}")
        else:  # a row, in a child table, saying V1.1 is applied
            m.execute(f"CREATE TABLE public.kid_{mallory} () INHERITS ({table})")
            m.execute(f"INSERT INTO public.kid_{mallory} VALUES (7, '1.1', 'second note', "
                      "'SQL', 'V1_1__second_note.sql', 1, 'x', now(), 3, true)")  # fmt: skip
    conn.execute(f"ALTER TABLE {table} OWNER TO postgres")
    folder = tree(tmp_path / "flyway", TOOLS["flyway"][1])
    result = pgheal("migrate", "--dsn", dsn, str(folder))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not read or written as migration history" in result.stderr
    assert reason in result.stderr, result.stderr
    assert not _superuser(conn, mallory)
