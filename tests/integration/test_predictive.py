"""Predictive healing for every client: the ddl_command_start trigger, through plain psql
and plain psycopg (no heal.migrate)."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from pgheal import deploy, serverdeps

from .conftest import connect, extensions, migrate, psql, role_dsn, scalar
from .test_installer import pgheal


def trigger_events(conn) -> list[tuple]:
    return conn.execute(
        "SELECT event_type, message, fix_sql FROM heal.build_events "
        "WHERE source = 'event_trigger' ORDER BY id"
    ).fetchall()


@pytest.mark.parametrize(
    ("setup", "ddl", "check"),
    [
        ("", "CREATE TABLE app.t (a int);", "SELECT to_regclass('app.t') IS NOT NULL"),
        ("", "CREATE TABLE t (id uuid DEFAULT uuid_generate_v4());",
         "SELECT count(*) = 1 FROM pg_extension WHERE extname = 'uuid-ossp'"),
        ("", "CREATE TABLE t (e citext);", "SELECT to_regclass('t') IS NOT NULL"),
        ("CREATE TABLE w (a text)", "CREATE INDEX w_trgm ON w USING gin (a gin_trgm_ops);",
         "SELECT to_regclass('w_trgm') IS NOT NULL"),
        ("", "CREATE TABLE c (a text CHECK (levenshtein(a, 'x') < 5));",
         "SELECT to_regclass('c') IS NOT NULL"),
        ("", "CREATE FUNCTION best(a text) RETURNS real LANGUAGE sql AS "
             "$$ SELECT similarity(a, 'x') $$;",
         "SELECT to_regprocedure('best(text)') IS NOT NULL"),
        ("CREATE SCHEMA extensions; CREATE EXTENSION hstore SCHEMA extensions",
         "SET search_path = public; CREATE TABLE h (a hstore);",
         "SELECT to_regclass('public.h') IS NOT NULL"),
    ],
)  # fmt: skip
def test_each_fix_kind_through_plain_psql(conn, dsn, setup, ddl, check):
    if setup:
        conn.execute(setup)
    result = psql(dsn, "-c", ddl)
    assert result.returncode == 0, result.stderr
    assert "pgheal: " in result.stderr  # the NOTICE of what was healed
    assert scalar(conn, check) is True
    assert [e[0] for e in trigger_events(conn)].count("auto_heal_success") >= 1


def test_plain_psycopg_client(conn, dsn):
    with connect(dsn) as app:
        app.execute("CREATE TABLE users (id uuid DEFAULT uuid_generate_v4(), email citext)")
        app.execute("INSERT INTO users (email) VALUES ('Ada@Example.com')")
        assert scalar(app, "SELECT count(*) FROM users WHERE email = 'ada@example.com'") == 1
    assert {"uuid-ossp", "citext"} <= set(extensions(conn))


def test_ddl_whose_needs_are_met_runs_untouched(conn, dsn):
    result = psql(dsn, "-c", "CREATE TABLE plain (id int PRIMARY KEY, name text);"
                             "CREATE INDEX ON plain (name);")  # fmt: skip
    assert result.returncode == 0 and "pgheal" not in result.stderr
    assert trigger_events(conn) == []


def test_a_connection_tells_apart_statements_of_one_shape(conn, dsn):
    """What the trigger keeps per statement shape, after the first DDL that needed nothing,
    does not hide a dependency a later statement of the same shape misses."""
    script = """
        CREATE TABLE t1 (a text DEFAULT lower('x'));
        CREATE TABLE t2 (a citext DEFAULT lower('x'));
        CREATE FUNCTION f1() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM t1 $$;
        CREATE FUNCTION f2() RETURNS real LANGUAGE sql AS $$ SELECT similarity('a', 'b') $$;
        CREATE FUNCTION f3() RETURNS real LANGUAGE sql AS $$ SELECT similarity('c', 'd') $$;
        CREATE TABLE t5 (a text);
        CREATE TABLE t6 (a hstore);
        CREATE TABLE t3 (a int DEFAULT abs(1));
        CREATE TABLE t4 (a int DEFAULT abs(1, 2));
    """
    result = psql(dsn, "-f", "-", input=script)
    assert "citext" in result.stderr and "pg_trgm" in result.stderr
    # Two arguments make another shape: analysed, found missing, and failing as without pgheal.
    assert "pgheal: function abs(unknown, unknown) not healed" in result.stderr
    assert "function abs(integer, integer) does not exist" in result.stderr
    assert {"citext", "pg_trgm", "hstore"} <= set(extensions(conn))
    assert scalar(conn, "SELECT count(*) FROM pg_proc WHERE proname ~ '^f[123]$'") == 3
    assert [e[0] for e in trigger_events(conn)] == ["auto_heal_success"] * 3


def test_a_schema_a_statement_of_a_known_shape_names_is_looked_for_each_time(conn, dsn):
    """The trigger keeps the verdict of DDL that names a schema (``app.t``) per shape; the
    schema dropped or rolled back since, a statement of that shape still gets it."""
    with connect(dsn) as app:  # one backend: its verdicts are kept
        app.execute("CREATE SCHEMA app")
        app.execute("CREATE TABLE app.a (x int, y text)")  # needs nothing: kept
        app.execute("CREATE VIEW app.va AS SELECT x FROM app.a WHERE y IS NOT NULL")
        conn.execute("DROP SCHEMA app CASCADE")  # in another session
        app.execute("CREATE TABLE app.b (x int, y text)")  # the same shape
        app.execute("CREATE VIEW app.vb AS SELECT x FROM app.b WHERE y IS NOT NULL")
        with app.transaction(force_rollback=True):
            app.execute("DROP SCHEMA app CASCADE")
            app.execute("CREATE TABLE app.c (x int, y text)")
        app.execute("CREATE TABLE app.c (x int, y text)")  # app is back: needs nothing
        with app.transaction(force_rollback=True):
            app.execute("CREATE SCHEMA w")
            app.execute("CREATE TABLE w.d (x int, y text)")
        app.execute("CREATE TABLE w.d (x int, y text)")  # w was rolled back
    assert scalar(conn, "SELECT count(*) FROM pg_class WHERE relname IN "
                        "('b', 'vb', 'c', 'd')") == 4  # fmt: skip
    made = [e[2] for e in trigger_events(conn) if e[0] == "auto_heal_success"]
    assert [m.split(" AUTHORIZATION")[0] for m in made] == [
        "CREATE SCHEMA IF NOT EXISTS app",
        "CREATE SCHEMA IF NOT EXISTS w",
    ]


@pytest.mark.parametrize(
    ("index", "calls_python"),
    [
        ("CREATE INDEX w_a ON w (a);", False),
        ('create unique index if not exists "W_b" on "w"("b" DESC NULLS LAST, a)', False),
        ("CREATE INDEX ON w USING hash (a)", False),
        ("CREATE INDEX ON w USING gin (c)", True),  # its default may be an extension's
        ("CREATE INDEX w_lower ON w (lower(a))", True),
        ("CREATE INDEX w_ops ON w (a text_pattern_ops)", True),
        ("CREATE INDEX w_part ON w (a) WHERE b > 0", True),
        ("CREATE INDEX w_app ON public.w (a)", False),
        ("CREATE INDEX w_q ON public . w USING hash (a)", False),
        ("CREATE INDEX w_qq ON public.w USING gin (c)", True),
        ("CREATE INDEX w_a2 ON w (a); CREATE TABLE w2 (x text)", True),
    ],
)
def test_plain_column_indexes_need_no_analysis(conn, dsn, index, calls_python):
    """The wrapper lets an index on plain columns through without calling into Python."""
    conn.execute("CREATE TABLE w (a text, b int, c int[])")
    with connect(dsn) as app:
        app.execute("SET track_functions = 'all'")
        with app.transaction():  # the calls counted in this transaction
            app.execute(index)
            calls = python_calls(app)
    assert sum(calls.values()) >= 1 if calls_python else calls == {}


def python_calls(session) -> dict[str, int]:
    """The trigger's calls into Python in this transaction (track_functions = all)."""
    return dict(
        session.execute(
            "SELECT f, pg_stat_get_xact_function_calls(f::regprocedure) FROM unnest(ARRAY["
            "'heal.heal_ddl(text, name, text)', 'heal.ddl_verdict(text, name, text)']) AS f "
            "WHERE pg_stat_get_xact_function_calls(f::regprocedure) IS NOT NULL"
        ).fetchall()
    )


def calls_after_the_first(session, statements: list[str]) -> dict[str, int]:
    """The trigger's calls into Python for `statements` but the first, which loads
    pgheal and takes the full analysis: those run in one transaction."""
    session.execute("SET track_functions = 'all'")
    session.execute(statements[0])
    session.execute("SELECT pg_stat_force_next_flush()")  # its calls not counted below
    session.execute("SELECT 1")
    with session.transaction():
        for statement in statements[1:]:
            session.execute(statement)
        return python_calls(session)


@pytest.mark.parametrize("schema", ["app", '"Odd""Name"'])
def test_ddl_of_a_known_shape_is_judged_without_the_full_analysis(conn, dsn, schema):
    """After the first DDL of a shape, the rest of that shape take the verdict this
    backend keeps (the schemas they name looked up each time), not heal.heal_ddl."""
    conn.execute(f"CREATE SCHEMA {schema}")
    with connect(dsn) as app:
        tables = [f"CREATE TABLE {schema}.a{i} (x int DEFAULT abs(-{i}), y text)"
                  for i in range(21)]  # fmt: skip
        calls = calls_after_the_first(app, tables)
        conn.execute(f"DROP SCHEMA {schema} CASCADE")  # in another session
        app.execute(f"CREATE TABLE {schema}.b (x int DEFAULT abs(-1), y text)")
    assert calls["heal.ddl_verdict(text, name, text)"] == 20
    # heal.heal_ddl only once a second, to see an upgrade of the modules
    assert calls.get("heal.heal_ddl(text, name, text)", 0) <= 2
    made = [e[2] for e in trigger_events(conn) if e[0] == "auto_heal_success"]
    assert [m.split(" AUTHORIZATION")[0] for m in made] == [
        f"CREATE SCHEMA IF NOT EXISTS {schema}"]  # fmt: skip


def test_an_index_that_needs_an_operator_class_still_heals(conn, dsn):
    conn.execute("CREATE TABLE w (a text)")
    result = psql(dsn, "-c", "CREATE INDEX w_trgm ON w USING gist (a gist_trgm_ops)")
    assert result.returncode == 0, result.stderr
    assert "pg_trgm" in extensions(conn)


@pytest.mark.parametrize("answer", ["['\"app\"']", "('a', 'b')", "42", "None"])
def test_a_verdict_of_another_shape_leaves_the_ddl_to_the_full_analysis(conn, answer):
    """Modules loaded before an upgrade answer in their own shape until the next load
    (at most a second later): the trigger then takes the full analysis, and the DDL
    runs, healed as ever."""
    conn.execute("CREATE TABLE warm (a int)")  # pgheal's modules loaded in this backend
    conn.execute("DO LANGUAGE plpython3u $$import time\n"
                 f"GD['heal.verdict'] = lambda query, role, path: {answer}\n"
                 "GD['heal.checked'] = time.monotonic() + 3600 $$")  # fmt: skip
    conn.execute("CREATE TABLE app_t (a int)")
    conn.execute("CREATE TABLE app_u (e citext)")
    assert "citext" in extensions(conn)


def test_a_failure_inside_the_analysis_leaves_the_ddl_working(conn, dsn):
    conn.execute("UPDATE heal.modules SET code = NULL, "
                 "source = 'raise RuntimeError(\"injected\")' "
                 "WHERE name = 'heal.analyze'")  # fmt: skip
    conn.execute("UPDATE heal.installation SET installed_at = clock_timestamp()")  # reload
    result = psql(dsn, "-c", "CREATE TABLE fine (a int);")
    assert result.returncode == 0, result.stderr
    assert "WARNING:  pgheal: predictive healing failed" in result.stderr
    assert "injected" in result.stderr
    assert scalar(conn, "SELECT to_regclass('fine')::text") == "fine"
    assert scalar(conn, "SELECT count(*) FROM heal.build_events WHERE source = 'event_trigger' "
                        "AND event_type = 'auto_heal_failed'") == 1  # fmt: skip
    # A DDL that needed a fix fails as it would without pgheal.
    failed = psql(dsn, "-c", "CREATE TABLE t (e citext);")
    assert failed.returncode != 0 and 'type "citext" does not exist' in failed.stderr


def test_recursion_guard_and_nothing_inside_heal_migrate(conn, dsn):
    result = psql(dsn, "-c", "CREATE TABLE p (a cube);")  # cube's own script runs DDL
    assert result.returncode == 0, result.stderr
    assert [e[0] for e in trigger_events(conn)] == ["auto_heal_success"]
    conn.execute("CALL heal.migrate('CREATE TABLE q (e citext)')")
    assert [e[0] for e in trigger_events(conn)] == ["auto_heal_success"]
    assert scalar(conn, "SELECT count(*) FROM heal.build_events WHERE source = 'migration' "
                        "AND event_type = 'auto_heal_success'") == 1  # fmt: skip


def test_non_superuser_cannot_get_an_untrusted_extension(conn, dsn, app_role):
    conn.execute(f"GRANT CREATE ON DATABASE {conn.info.dbname} TO {app_role}")
    as_role = role_dsn(dsn, app_role)
    result = psql(as_role, "-c", "CREATE VIEW slow AS SELECT * FROM pg_stat_statements(true);")
    assert result.returncode != 0
    assert "pg_stat_statements" not in extensions(conn)
    # The failed statement takes its event with it; the NOTICE says why.
    assert 'not healed: extension "pg_stat_statements" is not trusted' in result.stderr
    trusted = psql(as_role, "-c", "CREATE TABLE mine (e citext);")  # trusted: allowed
    assert trusted.returncode == 0, trusted.stderr


def test_no_schema_without_create_on_the_database(conn, dsn, app_role):
    conn.execute(f"REVOKE CREATE ON DATABASE {conn.info.dbname} FROM PUBLIC")
    as_role = role_dsn(dsn, app_role)
    result = psql(as_role, "-c", "CREATE TABLE private.notes (a int);")
    assert result.returncode != 0 and 'schema "private" does not exist' in result.stderr
    assert scalar(conn, "SELECT count(*) FROM pg_namespace WHERE nspname = 'private'") == 0


def test_switch_off_and_on(conn, dsn):
    result = pgheal("predictive", "off", "--dsn", dsn)
    assert result.returncode == 0, result.stderr
    assert scalar(conn, "SELECT evtenabled FROM pg_event_trigger "
                        "WHERE evtname = 'heal_predict_ddl'") == "D"  # fmt: skip
    failed = psql(dsn, "-c", "CREATE TABLE t (e citext);")
    assert failed.returncode != 0
    # An upgrade keeps the choice.
    deploy.install(conn, serverdeps.default_path())
    assert scalar(conn, "SELECT evtenabled FROM pg_event_trigger "
                        "WHERE evtname = 'heal_predict_ddl'") == "D"  # fmt: skip
    assert pgheal("predictive", "on", "--dsn", dsn).returncode == 0
    assert psql(dsn, "-c", "CREATE TABLE t (e citext);").returncode == 0


def test_triggers_survive_upgrade_and_go_with_uninstall(conn):
    deploy.install(conn, serverdeps.default_path())
    names = {r[0] for r in conn.execute("SELECT evtname FROM pg_event_trigger")}
    assert {"heal_predict_ddl", "heal_ddl_log"} <= names
    deploy.uninstall(conn)
    assert scalar(conn, "SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'heal%'") == 0
    with pytest.raises(psycopg.errors.UndefinedObject):
        conn.execute("CREATE TABLE t (e citext)")


PLPGSQL_UUID = ("CREATE FUNCTION mk() RETURNS uuid LANGUAGE plpgsql AS "
                "'BEGIN RETURN extensions.uuid_generate_v4(); END'")  # fmt: skip


def test_a_plpgsql_body_is_healed_before_its_first_call_through_heal_migrate(conn):
    migrate(conn, PLPGSQL_UUID)
    assert "uuid-ossp" in extensions(conn)
    assert scalar(conn, "SELECT mk() IS NOT NULL")


def test_a_plpgsql_body_is_healed_before_its_first_call_through_psql(conn, dsn):
    made = psql(dsn, "-c", PLPGSQL_UUID)
    assert made.returncode == 0, made.stderr
    called = psql(dsn, "-c", "SELECT mk() IS NOT NULL")
    assert called.returncode == 0 and "t" in called.stdout, called.stderr


def test_a_body_naming_what_nothing_provides_says_nothing(conn, dsn):
    made = psql(dsn, "-c", "CREATE FUNCTION later() RETURNS int LANGUAGE plpgsql AS "
                "'BEGIN RETURN defined_afterwards(); END'")  # fmt: skip
    assert made.returncode == 0 and "pgheal" not in made.stderr, made.stderr
    assert scalar(conn, "SELECT count(*) FROM heal.build_events") == 0


PG_DUMP_STYLE = ("SELECT pg_catalog.set_config('search_path', 'app', false);\n"
                 "CREATE TABLE t (a int);")  # fmt: skip


def test_pg_dump_s_empty_path_then_create_through_psql(conn, dsn):
    made = psql(dsn, "-c", PG_DUMP_STYLE)
    assert made.returncode == 0, made.stderr
    assert scalar(conn, "SELECT to_regclass('app.t') IS NOT NULL")


def test_pg_dump_s_empty_path_then_create_through_heal_migrate(conn):
    migrate(conn, PG_DUMP_STYLE)
    assert scalar(conn, "SELECT to_regclass('app.t') IS NOT NULL")


@pytest.mark.parametrize(
    ("allow", "ddl", "check"),
    [
        ("", "ALTER TEXT SEARCH DICTIONARY xsyn (RULES = 'xsyn_sample', KEEPORIG = false)",
         "SELECT 'dict_xsyn' = ANY(ARRAY(SELECT extname FROM pg_extension))"),
        ("", "CREATE TEXT SEARCH CONFIGURATION fr (COPY = simple); ALTER TEXT SEARCH "
         "CONFIGURATION fr ALTER MAPPING FOR word WITH unaccent, simple",
         "SELECT 'unaccent' = ANY(ARRAY(SELECT extname FROM pg_extension))"),
        ("file_fdw", "CREATE SERVER files FOREIGN DATA WRAPPER file_fdw",
         "SELECT count(*) = 1 FROM pg_foreign_server WHERE srvname = 'files'"),
        ("jsonb_plpython3u", "CREATE FUNCTION roundtrip(val jsonb) RETURNS jsonb TRANSFORM FOR "
         "TYPE jsonb LANGUAGE plpython3u AS 'return val'", "SELECT roundtrip('[1]') = '[1]'"),
        ("", "GRANT USAGE ON SCHEMA reports TO PUBLIC",
         "SELECT has_schema_privilege('public', 'reports', 'USAGE')"),
        ("", "REVOKE ALL ON FUNCTION citext_pattern_lt FROM PUBLIC",
         "SELECT 'citext' = ANY(ARRAY(SELECT extname FROM pg_extension))"),
        ("", "GRANT EXECUTE ON FUNCTION levenshtein(text, text) TO PUBLIC",
         "SELECT 'fuzzystrmatch' = ANY(ARRAY(SELECT extname FROM pg_extension))"),
        ("", "COMMENT ON TYPE citext IS 'case-insensitive'",
         "SELECT obj_description('extensions.citext'::regtype) = 'case-insensitive'"),
        ("", "COMMENT ON SCHEMA billing IS 'invoices'",
         "SELECT obj_description('billing'::regnamespace) = 'invoices'"),
        ("", "COMMENT ON FUNCTION uuid_generate_v4() IS 'random ids'",
         "SELECT obj_description('extensions.uuid_generate_v4'::regproc) = 'random ids'"),
        ("", "CREATE SCHEMA s; REVOKE ALL ON TYPE s.citext FROM PUBLIC",
         "SELECT NOT has_type_privilege('public', 's.citext', 'USAGE')"),
        ("", "GRANT USAGE ON TYPE cube TO PUBLIC",
         "SELECT has_type_privilege('public', 'extensions.cube', 'USAGE')"),
        ("file_fdw", "GRANT USAGE ON FOREIGN DATA WRAPPER file_fdw TO PUBLIC",
         "SELECT has_foreign_data_wrapper_privilege('public', 'file_fdw', 'USAGE')"),
        ("", "COMMENT ON EXTENSION pg_trgm IS 'trigrams'",
         "SELECT obj_description(oid, 'pg_extension') = 'trigrams' FROM pg_extension "
         "WHERE extname = 'pg_trgm'"),
        ("", "ALTER EXTENSION hstore UPDATE",
         "SELECT 'hstore' = ANY(ARRAY(SELECT extname FROM pg_extension))"),
        ("", "ALTER EXTENSION isn SET SCHEMA public",
         "SELECT extnamespace = 'public'::regnamespace FROM pg_extension WHERE extname = 'isn'"),
    ],
)  # fmt: skip
def test_every_ddl_kind_heal_migrate_heals_through_psql(conn, dsn, allow, ddl, check):
    if allow:
        conn.execute("UPDATE heal.settings SET value = %s WHERE name = 'allow_extensions'",
                     (allow,))  # fmt: skip
    made = psql(dsn, "-c", ddl)
    assert made.returncode == 0, made.stderr
    assert scalar(conn, check)


def test_statements_on_extensions_through_heal_migrate(conn):
    migrate(conn, "CREATE SCHEMA s; REVOKE ALL ON TYPE s.citext FROM PUBLIC;"
            " COMMENT ON EXTENSION pg_trgm IS 'trigrams';")  # fmt: skip
    assert scalar(conn, "SELECT extnamespace::regnamespace::text FROM pg_extension "
                  "WHERE extname = 'citext'") == "s"  # fmt: skip
    assert "pg_trgm" in extensions(conn)


def test_what_a_statement_on_extensions_does_not_need_is_left_alone(conn, dsn):
    gone = psql(dsn, "-c", "DROP EXTENSION IF EXISTS isn")
    assert gone.returncode == 0 and "pgheal" not in gone.stderr, gone.stderr
    # Installing what a statement removes fixes nothing: the drop fails as it would.
    dropped = psql(dsn, "-c", "DROP EXTENSION isn")
    assert dropped.returncode == 1 and 'extension "isn" does not exist' in dropped.stderr
    unknown = psql(dsn, "-c", "COMMENT ON EXTENSION no_such_extension IS 'x'")
    assert unknown.returncode == 1 and 'extension "no_such_extension" does not exist' in (
        unknown.stderr)  # fmt: skip
    assert "isn" not in extensions(conn)
    assert scalar(conn, "SELECT count(*) FROM heal.build_events") == 0  # said, not recorded


@pytest.mark.parametrize(
    ("ddl", "extension"),
    [
        ("CREATE TABLE g (i int, t text); CREATE INDEX ON g USING gin (i, t)", "btree_gin"),
        ("CREATE TABLE booking (room int, during tsrange,"
         " EXCLUDE USING gist (room WITH =, during WITH &&))", "btree_gist"),
    ],
)  # fmt: skip
def test_a_missing_default_operator_class_through_psql(conn, dsn, ddl, extension):
    made = psql(dsn, "-c", ddl)
    assert made.returncode == 0, made.stderr
    assert extension in extensions(conn)


def test_an_index_on_an_existing_table_s_column_through_psql(conn, dsn):
    conn.execute("CREATE TABLE g (i int, a int[])")
    arrays = psql(dsn, "-c", "CREATE INDEX ON g USING gin (a)")  # core has it: nothing to do
    assert arrays.returncode == 0 and "pgheal" not in arrays.stderr, arrays.stderr
    made = psql(dsn, "-c", "CREATE INDEX ON g USING gin (i)")
    assert made.returncode == 0, made.stderr
    assert "btree_gin" in extensions(conn)


def test_an_index_of_a_known_shape_still_has_its_columns_looked_at(conn, dsn):
    """A GIN index's verdict is kept by its shape, and its columns' types are asked of
    the catalog each time, in SQL: on jsonb or an array, pg_catalog's default operator
    classes serve; of the very same shape on an int column, btree_gin is needed."""
    conn.execute("CREATE SCHEMA app")
    for i in range(21):
        conn.execute(f"CREATE TABLE app.g{i} (i int, a int[], j jsonb)")
    with connect(dsn) as app:
        indexes = [f"CREATE INDEX ON app.g{i} USING gin ({'aj'[i % 2]})" for i in range(21)]
        calls = calls_after_the_first(app, indexes)
        assert "btree_gin" not in extensions(conn)
        app.execute("CREATE INDEX g1_i ON app.g1 USING gin (i)")
    assert calls["heal.ddl_verdict(text, name, text)"] == 20
    assert calls.get("heal.heal_ddl(text, name, text)", 0) <= 2
    assert "btree_gin" in extensions(conn)
    assert scalar(conn, "SELECT to_regclass('app.g1_i')::text") == "app.g1_i"


def test_ddl_of_a_role_renamed_since_set_role_still_runs(conn, dsn):
    """SET ROLE keeps the name it was given; a rename from another session leaves the
    setting naming no role. The trigger's catalog query for a GIN index of a known
    shape must not fail on it: the DDL runs (the full analysis, which cannot name the
    role either, says why in a WARNING)."""
    role = f"renamed_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {role}; GRANT CREATE ON SCHEMA public TO {role}")
    with connect(dsn) as session:
        session.execute(f"SET ROLE {role}")
        session.execute("CREATE TABLE warm (j jsonb)")
        session.execute("CREATE INDEX ON warm USING gin (j)")  # its shape, judged in full
        conn.execute(f"ALTER ROLE {role} RENAME TO {role}_now")
        session.execute("CREATE TABLE later (j jsonb)")
        session.execute("CREATE INDEX later_j ON later USING gin (j)")
        assert scalar(session, "SELECT to_regclass('later_j')::text") == "later_j"


def test_grants_and_comments_on_what_exists_need_nothing(conn, dsn):
    conn.execute("CREATE FUNCTION mine(int) RETURNS int LANGUAGE sql AS 'SELECT 1'")
    for ddl in ("GRANT EXECUTE ON FUNCTION mine TO PUBLIC", "REVOKE ALL ON FUNCTION mine(int) "
                "FROM PUBLIC", "COMMENT ON FUNCTION mine IS 'mine'", "GRANT SELECT ON "
                "pg_class TO PUBLIC"):  # fmt: skip
        done = psql(dsn, "-c", ddl)
        assert done.returncode == 0 and "pgheal" not in done.stderr, done.stderr
    assert scalar(conn, "SELECT count(*) FROM heal.build_events") == 0


def test_create_extension_without_cascade_gets_what_it_requires_through_psql(conn, dsn):
    made = psql(dsn, "-c", "CREATE EXTENSION earthdistance")
    assert made.returncode == 0, made.stderr
    assert {"cube", "earthdistance"} <= set(extensions(conn))


def test_create_extension_without_cascade_through_heal_migrate(conn):
    migrate(conn, "CREATE EXTENSION earthdistance;")
    assert {"cube", "earthdistance"} <= set(extensions(conn))


def test_create_extension_requires_within_the_policy(conn, dsn):
    conn.execute("UPDATE heal.settings SET value = 'cube' WHERE name = 'deny_extensions'")
    made = psql(dsn, "-c", "CREATE EXTENSION earthdistance")
    assert made.returncode == 1 and "deny list" in made.stderr, made.stderr
    assert "cube" not in extensions(conn)
