"""CALL heal.migrate heals each kind of missing dependency, from psycopg and psql."""

from __future__ import annotations

import psycopg
import pytest

from .conftest import connect, events, extensions, migrate, psql, scalar
from .test_installer import pgheal


def test_missing_schema_is_created(conn):
    notices = migrate(conn, "CREATE TABLE app.items (id int PRIMARY KEY);")
    assert scalar(conn, "SELECT to_regclass('app.items')::text") == "app.items"
    assert (
        scalar(conn, "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'app'")
        == "postgres"
    )
    kinds = [e[0] for e in events(conn)]
    assert kinds == [
        "migration_started",
        "auto_heal_attempt",
        "auto_heal_success",
        "migration_succeeded",
    ]
    assert events(conn)[2][3] == "CREATE SCHEMA IF NOT EXISTS app AUTHORIZATION postgres"
    assert any("schema app -> create schema app" in n for n in notices)


def test_missing_function_installs_extension_in_extensions_schema(conn):
    migrate(conn, "CREATE TABLE t (id uuid PRIMARY KEY DEFAULT uuid_generate_v4());")
    assert extensions(conn)["uuid-ossp"] == "extensions"
    conn.execute("INSERT INTO t DEFAULT VALUES")
    assert scalar(conn, "SELECT count(*) FROM t") == 1
    fixes = [e[3] for e in events(conn) if e[0] == "auto_heal_success"]
    assert 'CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA extensions' in fixes[0]


def test_missing_type_through_psql(conn, dsn):
    result = psql(dsn, "-c", "CALL heal.migrate($$CREATE TABLE u (email citext UNIQUE);$$)")
    assert result.returncode == 0, result.stderr
    assert "type citext -> " in result.stderr
    assert extensions(conn)["citext"] == "extensions"
    conn.execute("INSERT INTO u VALUES ('Ada@Example.com')")
    # Case-insensitive in a new session too: the extension schema is on the database's path.
    with connect(dsn) as other:
        assert scalar(other, "SELECT count(*) FROM u WHERE email = 'ada@example.com'") == 1


def test_function_through_psql_file(conn, dsn, tmp_path):
    script = tmp_path / "0001.sql"
    script.write_text(
        "CREATE TABLE words (w text);\n"
        "CREATE INDEX words_trgm ON words USING gin (w gin_trgm_ops);\n"
        "CREATE TABLE names (n text, k text DEFAULT soundex('x'));\n"
    )
    # How a shell script hands a file to heal.migrate with psql.
    result = psql(dsn, "-v", f"m={script.read_text()}", input="CALL heal.migrate(:'m');")
    assert result.returncode == 0, result.stderr
    assert {"pg_trgm", "fuzzystrmatch"} <= set(extensions(conn))


@pytest.mark.parametrize(
    ("sql", "extension"),
    [
        ("CREATE TABLE h (attrs hstore);", "hstore"),
        ("CREATE TABLE tree (path ltree);", "ltree"),
        (
            "CREATE TABLE s (x text, d int GENERATED ALWAYS AS (levenshtein(x, 'a')) STORED);",
            "fuzzystrmatch",
        ),
        ("CREATE TABLE p (pw text DEFAULT crypt('secret', gen_salt('bf')));", "pgcrypto"),
        ("CREATE TABLE un (x text CHECK (unaccent(x) <> ''));", "unaccent"),
        ("CREATE TABLE sim (a text, score real DEFAULT similarity('a', 'b'));", "pg_trgm"),
    ],
)
def test_extensions_by_function_or_type(conn, sql, extension):
    migrate(conn, sql)
    assert extension in extensions(conn)


def test_extension_with_requirement_installs_dependency_first(conn):
    migrate(
        conn,
        """CREATE TABLE places (lat float8, lon float8);
           CREATE INDEX places_earth ON places USING gist (ll_to_earth(lat, lon));""",
    )
    installed = extensions(conn)
    assert installed["cube"] == "extensions" and installed["earthdistance"] == "extensions"
    fix = next(e[3] for e in events(conn) if e[0] == "auto_heal_success")
    assert fix.index("cube") < fix.index("earthdistance")


def test_object_in_another_schema_only_fixes_search_path(conn):
    conn.execute("CREATE SCHEMA extensions")
    conn.execute('CREATE EXTENSION "uuid-ossp" WITH SCHEMA extensions')
    conn.execute("CREATE EXTENSION citext WITH SCHEMA extensions")
    before = extensions(conn)
    # The way pg_dump output runs: an empty search_path.
    migrate(
        conn,
        """SELECT pg_catalog.set_config('search_path', '', false);
           CREATE TABLE public.accounts (
               id uuid DEFAULT uuid_generate_v4(), email citext);""",
    )
    assert extensions(conn) == before
    fixes = [e[3] for e in events(conn) if e[0] == "auto_heal_success"]
    assert fixes and all("CREATE EXTENSION" not in f for f in fixes)
    assert any("SET LOCAL search_path = extensions" in f for f in fixes)


def test_object_in_a_user_schema_is_found_but_not_persisted(conn, dsn):
    conn.execute("CREATE SCHEMA util")
    conn.execute(
        "CREATE FUNCTION util.slugify(t text) RETURNS text LANGUAGE sql AS $$ SELECT lower(t) $$"
    )
    migrate(conn, "SET search_path = public; CREATE TABLE posts (s text DEFAULT slugify('A'));")
    assert scalar(conn, "SELECT to_regclass('public.posts')::text") == "posts"
    setting = scalar(
        conn,
        "SELECT setconfig::text FROM pg_db_role_setting s JOIN pg_database d "
        "ON d.oid = s.setdatabase WHERE d.datname = current_database()",
    )
    assert setting is None


def test_chain_missing_schema_then_function_in_it(conn):
    conn.execute("UPDATE heal.settings SET value = 'off' WHERE name = 'predict'")
    migrate(conn, "CREATE TABLE t (id uuid DEFAULT extensions.uuid_generate_v4());")
    successes = [e for e in events(conn) if e[0] == "auto_heal_success"]
    assert [e[2] for e in successes] == ["3F000", "42883"]
    assert extensions(conn)["uuid-ossp"] == "extensions"


def test_chain_predicted_heals_in_one_step(conn):
    migrate(conn, "CREATE TABLE t (id uuid DEFAULT extensions.uuid_generate_v4());")
    successes = [e for e in events(conn) if e[0] == "auto_heal_success"]
    assert len(successes) == 1
    assert "CREATE SCHEMA IF NOT EXISTS extensions" in successes[0][3]
    assert extensions(conn)["uuid-ossp"] == "extensions"


def test_database_search_path_is_persisted_and_can_be_turned_off(conn, dsn):
    migrate(conn, "CREATE TABLE a (id uuid DEFAULT uuid_generate_v4());")
    with connect(dsn) as other:
        assert "extensions" in scalar(other, "SHOW search_path")
        assert scalar(other, "SELECT uuid_generate_v4() IS NOT NULL")
    conn.execute("ALTER DATABASE " + conn.info.dbname + " RESET search_path")
    conn.execute("UPDATE heal.settings SET value = 'off' WHERE name = 'persist_search_path'")
    migrate(conn, "CREATE TABLE b (c citext);")
    with connect(dsn) as other:
        assert "extensions" not in scalar(other, "SHOW search_path")


def test_unknown_function_fails_with_the_original_error_and_leaves_nothing(conn):
    before = extensions(conn)
    with pytest.raises(psycopg.errors.UndefinedFunction) as info:
        migrate(conn, "CREATE TABLE t (a int);\nCREATE TABLE v (x int DEFAULT no_such_fn(1));")
    diag = info.value.diag
    assert diag.message_primary == "function no_such_fn(integer) does not exist"
    assert "statement 2, line 2" in diag.message_detail
    assert "no available extension provides function no_such_fn(integer)" in diag.message_detail
    assert diag.message_hint.startswith("No function matches")
    assert scalar(conn, "SELECT to_regclass('t')") is None
    assert extensions(conn) == before
    assert scalar(conn, "SELECT status FROM heal.migrations") == "failed"


def test_later_failure_rolls_back_the_heals_too(conn):
    before = extensions(conn)
    with pytest.raises(psycopg.errors.DivisionByZero):
        migrate(conn, "CREATE TABLE t (id uuid DEFAULT uuid_generate_v4()); SELECT 1/0;")
    assert extensions(conn) == before
    assert scalar(conn, "SELECT to_regclass('t')") is None
    assert scalar(conn, "SELECT count(*) FROM pg_namespace WHERE nspname = 'extensions'") == 0
    assert (
        scalar(
            conn,
            "SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d "
            "ON d.oid = s.setdatabase WHERE d.datname = current_database()",
        )
        == 0
    )
    # The record of what happened survives the rollback.
    kinds = [e[0] for e in events(conn)]
    assert kinds[-1] == "migration_failed" and "auto_heal_success" in kinds


def test_failure_inside_a_transaction_block_is_the_callers_to_keep(conn):
    with conn.transaction(), pytest.raises(psycopg.errors.DivisionByZero):
        conn.execute("CALL heal.migrate('SELECT 1/0')")
    assert scalar(conn, "SELECT count(*) FROM heal.migrations") == 0
    conn.autocommit = False
    with pytest.raises(psycopg.errors.DivisionByZero):
        conn.execute("CALL heal.migrate('SELECT 1/0')")
    conn.rollback()
    conn.autocommit = True
    assert scalar(conn, "SELECT count(*) FROM heal.migrations") == 0


def test_success_inside_a_transaction_block_commits_with_it(conn):
    conn.autocommit = False
    conn.execute("CALL heal.migrate('CREATE TABLE t (c citext)')")
    conn.rollback()
    conn.autocommit = True
    assert "citext" not in extensions(conn)
    assert scalar(conn, "SELECT count(*) FROM heal.migrations") == 0


def test_syntax_error_reports_statement_line_and_column(conn):
    with pytest.raises(psycopg.errors.SyntaxError) as info:
        migrate(conn, "CREATE TABLE ok (a int);\n\nSELECT * FRM ok;\n")
    assert 'syntax error at or near "FRM"' in str(info.value)
    assert "(statement 2, line 3, column 10)" in str(info.value)
    assert scalar(conn, "SELECT to_regclass('ok')") is None


def test_non_transactional_statement_is_refused_before_anything_runs(conn):
    with pytest.raises(psycopg.errors.ActiveSqlTransaction) as info:
        migrate(conn, "CREATE TABLE t (a int);\nCREATE INDEX CONCURRENTLY t_a ON t (a);")
    assert "CREATE INDEX CONCURRENTLY cannot run inside heal.migrate" in str(info.value)
    assert "line 2" in str(info.value)
    assert scalar(conn, "SELECT to_regclass('t')") is None


@pytest.mark.parametrize(
    "statement",
    [
        "VACUUM",
        "CREATE DATABASE x",
        "ALTER SYSTEM SET work_mem = '8MB'",
        "REINDEX TABLE CONCURRENTLY pg_class",
        "DROP INDEX CONCURRENTLY i",
    ],
)
def test_other_non_transactional_statements(conn, statement):
    with pytest.raises(psycopg.errors.ActiveSqlTransaction):
        migrate(conn, statement)


def test_null_and_empty_input(conn):
    with pytest.raises(psycopg.errors.NullValueNotAllowed) as info:
        migrate(conn, None)
    assert "must not be NULL" in str(info.value)
    notices = migrate(conn, "  -- only a comment\n")
    assert any("nothing was run" in n for n in notices)


def test_transaction_control_and_pg_dump_meta_commands(conn):
    notices = migrate(
        conn, "\\restrict abc123\nBEGIN;\nCREATE TABLE t (a int);\nCOMMIT;\n\\unrestrict abc123\n"
    )
    assert scalar(conn, "SELECT to_regclass('t')::text") == "t"
    assert any("skipped psql meta-command \\restrict on line 1" in n for n in notices)
    assert any("skipped BEGIN" in n for n in notices)
    with pytest.raises(psycopg.errors.SyntaxError) as info:
        migrate(conn, "SELECT 1;\n\\connect other\n")
    assert "meta-command \\connect on line 2" in str(info.value)


def test_backslash_inside_a_literal_is_data(conn):
    migrate(conn, "CREATE TABLE t (s text);\nINSERT INTO t VALUES ('a\n\\echo b');")
    assert scalar(conn, "SELECT s FROM t") == "a\n\\echo b"


@pytest.mark.parametrize(
    ("setup", "sql", "check"),
    [
        ("", "CREATE TABLE app.t (a int)", "SELECT to_regclass('app.t') IS NOT NULL"),
        ("", "CREATE TABLE t (id uuid DEFAULT uuid_generate_v4())",
         "SELECT count(*) = 1 FROM pg_extension WHERE extname = 'uuid-ossp'"),
        ("", "CREATE TABLE t (h hstore)",
         "SELECT count(*) = 1 FROM pg_extension WHERE extname = 'hstore'"),
        ("CREATE SCHEMA extensions; CREATE EXTENSION citext SCHEMA extensions",
         "SET search_path = public; CREATE TABLE t (e citext)",
         "SELECT to_regclass('public.t') IS NOT NULL"),
        ("", "CREATE TABLE t (id uuid DEFAULT extensions.uuid_generate_v4())",
         "SELECT count(*) = 1 FROM pg_extension WHERE extname = 'uuid-ossp'"),
    ],
)  # fmt: skip
def test_each_fix_kind_through_psql(conn, dsn, setup, sql, check):
    if setup:
        conn.execute(setup)
    result = psql(dsn, "-c", f"CALL heal.migrate($migration${sql}$migration$)")
    assert result.returncode == 0, result.stderr
    assert "healed in" in result.stderr
    assert scalar(conn, check) is True


@pytest.mark.parametrize("switch", ["SET ROLE {role}", "SET SESSION AUTHORIZATION {role}"])
def test_a_script_that_changes_role_is_recorded_and_its_role_ends_with_it(conn, app_role,
                                                                           switch):  # fmt: skip
    conn.execute(f"GRANT heal_operator TO {app_role}")
    conn.execute("SET ROLE NONE")
    migrate(conn, switch.format(role=app_role) + "; CREATE TABLE t (id uuid DEFAULT "
            "uuid_generate_v4())")  # fmt: skip
    assert conn.execute("SELECT current_user, session_user").fetchone() == ("postgres",
                                                                            "postgres")  # fmt: skip
    assert scalar(conn, "SELECT tableowner FROM pg_tables WHERE tablename = 't'") == app_role
    assert conn.execute("SELECT status, run_by FROM heal.migrations").fetchall() == [
        ("succeeded", "postgres")
    ]
    # A role set before the call stays set after it.
    conn.execute(f"SET ROLE {app_role}")
    migrate(conn, "RESET ROLE; SELECT 1")
    assert scalar(conn, "SELECT current_user") == app_role


def test_the_whole_script_decides_where_an_extension_goes(conn):
    """A schema the script names anywhere (a qualified reference, its own CREATE
    EXTENSION ... SCHEMA) is where the first use's heal installs the extension."""
    migrate(
        conn,
        """CREATE TABLE users (email citext);
        CREATE FUNCTION is_admin(email public.citext) RETURNS boolean LANGUAGE sql
            AS 'SELECT false';
        COMMENT ON FUNCTION is_admin(email public.citext) IS 'who may do everything';""",
    )
    assert extensions(conn)["citext"] == "public"
    migrate(
        conn,
        """CREATE TABLE tags (h hstore);
        CREATE EXTENSION IF NOT EXISTS hstore SCHEMA public;""",
    )
    assert extensions(conn)["hstore"] == "public"
    migrate(conn, "CREATE TABLE ids (id uuid DEFAULT uuid_generate_v4());")  # says nothing
    assert extensions(conn)["uuid-ossp"] == "extensions"


@pytest.mark.parametrize(
    ("create", "use"),
    [
        ("CREATE TABLE t (c cube)", "SELECT * FROM t WHERE c <@ '(1,1),(0,0)'"),
        ("CREATE TABLE t (p ltree)", "SELECT * FROM t WHERE p <@ 'top.science'"),
    ],
)
def test_the_same_session_after_a_heal_finds_the_extension_s_operators(conn, dsn, tmp_path,
                                                                       create, use):  # fmt: skip
    conn.execute(f"ALTER DATABASE {conn.info.dbname} RESET search_path")
    conn.execute("UPDATE heal.settings SET value = 'off' WHERE name = 'persist_search_path'")
    migrate(conn, create)
    migrate(conn, use)  # the same session: the schema stayed on its path
    conn.execute(use)
    # pgheal migrate, across two files, on one connection.
    conn.execute("DROP TABLE t")
    (tmp_path / "0001_create.sql").write_text(create.replace(" t ", " t2 ") + ";")
    (tmp_path / "0002_use.sql").write_text(use.replace(" t ", " t2 ") + ";")
    result = pgheal("migrate", "--dsn", dsn, str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_function_named_only_in_a_string_is_said_so_not_guessed(conn):
    with pytest.raises(psycopg.errors.UndefinedFunction) as info:
        migrate(conn, "SELECT 'uuid_generate_v4'::regproc;")
    detail = info.value.diag.message_detail
    assert 'function "uuid_generate_v4" is named only inside a string' in detail
    assert "extension uuid-ossp provides a function of that name" in detail
    assert "uuid-ossp" not in extensions(conn)  # nothing guessed
    assert conn.execute("SELECT reason_kind, times FROM heal.failures").fetchall() == [
        ("no_fix", 1)
    ]


REACTIVE = "UPDATE heal.settings SET value = 'off' WHERE name = 'predict'"


def test_statements_before_a_reactive_heal_run_once(conn):
    """A chunk's statements before the one that fails stay done: sequence values,
    prepared statements and notices are taken, made and sent once."""
    conn.execute(REACTIVE)
    conn.execute("CREATE TABLE parents (id serial PRIMARY KEY, v text)")
    notices = migrate(
        conn,
        "INSERT INTO parents (v) VALUES ('a');\n"
        "PREPARE chunked_p AS SELECT 1;\n"
        "DO $$ BEGIN RAISE NOTICE 'said once'; END $$;\n"
        "INSERT INTO parents (v) VALUES ('b');\n"
        "CREATE TABLE kids (id uuid DEFAULT uuid_generate_v4(), parent int REFERENCES parents);\n"
        "INSERT INTO kids (parent) VALUES (1), (2);\n",
    )
    assert conn.execute("SELECT id, v FROM parents ORDER BY id").fetchall() == [(1, "a"), (2, "b")]
    assert scalar(conn, "SELECT count(*) FROM kids") == 2
    assert notices.count("said once") == 1
    assert scalar(conn, "SELECT count(*) FROM pg_prepared_statements WHERE name = 'chunked_p'") == 1
    healed = [e[1] for e in events(conn) if e[0] == "auto_heal_success"]
    assert healed == [5]


def test_chunks_stop_where_a_statement_fails_and_go_on_after_it(conn):
    """Failing statements far into a long script, in several chunks: each heals where it
    is, and every statement runs exactly once."""
    conn.execute(REACTIVE)
    inserts = [f"INSERT INTO log (n) VALUES ({i});" for i in range(450)]
    inserts[130] = "CREATE TABLE app1.t (id int);"
    inserts[131] = "INSERT INTO log (n, k) VALUES (131, soundex('x'));"
    inserts[299] = "CREATE TABLE app2.t (id int);"
    migrate(conn, "CREATE TABLE log (n int, k text);\n" + "\n".join(inserts))
    assert scalar(conn, "SELECT count(*) FROM log") == 448
    assert scalar(conn, "SELECT count(DISTINCT n) FROM log") == 448
    assert scalar(conn, "SELECT k FROM log WHERE n = 131") == "X000"
    healed = [e[1] for e in events(conn) if e[0] == "auto_heal_success"]
    assert healed == [132, 133, 301]


def test_a_script_that_switches_role_runs_its_chunks_as_that_role(conn, app_role):
    conn.execute(f"GRANT {app_role} TO postgres")
    migrate(conn, f"SET ROLE {app_role};\n" + "".join(
        f"CREATE TABLE owned_{i} (id int);\n" for i in range(150)))  # fmt: skip
    assert scalar(conn, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'owned\\_%' "
                  f"AND tableowner = '{app_role}'") == 150  # fmt: skip


def test_a_statement_that_fails_in_a_chunk_runs_no_more_often_than_alone(conn):
    """Its first attempt is the chunk's: a SELECT ... INTO (which PL/pgSQL's EXECUTE
    refuses once it ran it) runs alone, and a failing statement's side effects and
    notices happen once an attempt, as without chunks."""
    conn.execute(REACTIVE)
    conn.execute("CREATE SEQUENCE once")
    migrate(conn, "CREATE TABLE before_into (a int);\nSELECT nextval('once') AS v INTO taken;")
    assert scalar(conn, "SELECT v FROM taken") == 1
    notices = migrate(
        conn,
        "CREATE TABLE noted (a int);\n"
        "DO $$ BEGIN RAISE NOTICE 'tried'; PERFORM soundex('x'); END $$;",
    )
    assert notices.count("tried") == 2  # the failed attempt, and the one after the heal
    with pytest.raises(psycopg.errors.DivisionByZero):
        migrate(conn, "CREATE TABLE fails (a int);\nSELECT nextval('once') / 0;")
    assert scalar(conn, "SELECT last_value FROM once") == 2


def test_an_assert_in_a_chunk_fails_the_migration_at_its_statement(conn):
    with pytest.raises(psycopg.errors.AssertFailure) as info:
        migrate(conn, "CREATE TABLE a1 (x int);\nDO $$ BEGIN ASSERT false, 'nope'; END $$;")
    assert "failed at statement 2, line 2" in str(info.value.diag.message_detail)
    assert scalar(conn, "SELECT status FROM heal.migrations ORDER BY id DESC LIMIT 1") == "failed"


def test_a_chunked_statement_s_error_keeps_its_column(conn):
    with pytest.raises(psycopg.errors.UndefinedFunction) as info:
        migrate(conn, "CREATE TABLE a2 (x int);\nSELECT 1, nope_fn(1);")
    assert "failed at statement 2, line 2, column 11" in str(info.value.diag.message_detail)
