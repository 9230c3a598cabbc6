"""Every dependency kind heals through heal.migrate, with the right fix for each."""

from __future__ import annotations

import threading

import psycopg
import pytest

from .conftest import connect, events, extensions, migrate, scalar


def successes(conn) -> list[tuple]:
    return [e for e in events(conn) if e[0] == "auto_heal_success"]


@pytest.mark.parametrize(
    ("sql", "extension"),
    [
        # operators
        ("CREATE TABLE w (a text); CREATE VIEW similar_w AS SELECT a FROM w WHERE a % 'x';",
         "pg_trgm"),
        ("CREATE TABLE n (a int[]); CREATE VIEW both_n AS SELECT a & ARRAY[1] AS c FROM n;",
         "intarray"),
        # types: column, cast, domain, array
        ("CREATE TABLE t (e citext[]);", "citext"),
        ("CREATE VIEW v AS SELECT 'a=>1'::hstore AS h;", "hstore"),
        ("CREATE DOMAIN email AS citext CHECK (value LIKE '%@%');", "citext"),
        ("CREATE TABLE cubes (c cube);", "cube"),
        # operator classes, default operator classes, access methods
        ("CREATE TABLE d (a text); CREATE INDEX ON d USING gist (a gist_trgm_ops);", "pg_trgm"),
        ("CREATE TABLE booking (room int, during tsrange,"
         " EXCLUDE USING gist (room WITH =, during WITH &&));", "btree_gist"),
        ("CREATE TABLE b (a int, b int); CREATE INDEX ON b USING bloom (a, b);", "bloom"),
        # tablesample methods, text search templates
        ("CREATE TABLE s (a int);"
         " CREATE VIEW sample AS SELECT * FROM s TABLESAMPLE system_rows(5);", "tsm_system_rows"),
        ("CREATE TEXT SEARCH DICTIONARY intdict (TEMPLATE = intdict_template);", "dict_int"),
        # aggregates and procedures-style functions
        ("CREATE VIEW x AS SELECT xpath_string('<a>1</a>', '/a') AS v;", "xml2"),
    ],
)  # fmt: skip
def test_dependency_kinds(conn, sql, extension):
    migrate(conn, sql)
    assert extension in extensions(conn)
    assert successes(conn)


def test_operator_found_in_another_schema(conn):
    conn.execute("CREATE SCHEMA extensions")
    conn.execute("CREATE EXTENSION hstore WITH SCHEMA extensions")
    migrate(
        conn,
        """SET search_path = public;
           CREATE TABLE h (attrs extensions.hstore);
           CREATE VIEW hv AS SELECT attrs -> 'colour' AS colour FROM h;""",
    )
    assert set(extensions(conn)) == {"plpgsql", "plpython3u", "hstore"}
    assert "SET LOCAL search_path" in successes(conn)[0][3]


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE VIEW app.v AS SELECT 1 AS one;",
        "CREATE FUNCTION app.f() RETURNS int LANGUAGE sql AS 'SELECT 1';",
        "CREATE TYPE app.mood AS ENUM ('ok');",
        "CREATE SEQUENCE app.seq;",
        "CREATE TABLE t (a int); ALTER TABLE t SET SCHEMA app;",
        "GRANT USAGE ON SCHEMA app TO PUBLIC;",
        "COMMENT ON SCHEMA app IS 'the app';",
    ],
)
def test_missing_schema_wherever_a_schema_is_named(conn, sql):
    migrate(conn, sql)
    assert scalar(conn, "SELECT count(*) FROM pg_namespace WHERE nspname = 'app'") == 1
    assert successes(conn)[0][2] == "3F000"


def test_identical_policy_is_skipped(conn):
    conn.execute("CREATE TABLE docs (owner name, body text)")
    conn.execute("ALTER TABLE docs ENABLE ROW LEVEL SECURITY")
    conn.execute("CREATE POLICY own ON docs FOR SELECT USING (owner = current_user)")
    migrate(conn, "CREATE POLICY own ON docs FOR SELECT USING (owner = current_user);")
    assert scalar(conn, "SELECT count(*) FROM pg_policy WHERE polname = 'own'") == 1
    assert "existing policy is identical" in str(
        scalar(conn, "SELECT detail FROM heal.build_events WHERE event_type = 'auto_heal_success'")
    )


def test_different_policy_fails_showing_both(conn):
    conn.execute("CREATE TABLE docs (owner name, body text)")
    conn.execute("CREATE POLICY own ON docs FOR SELECT USING (owner = current_user)")
    with pytest.raises(psycopg.errors.DuplicateObject) as info:
        migrate(conn, "CREATE POLICY own ON docs FOR ALL USING (true);")
    detail = info.value.diag.message_detail
    assert "existing: AS PERMISSIVE FOR SELECT TO public USING ((owner = CURRENT_USER))" in detail
    assert "this migration: AS PERMISSIVE FOR ALL TO public USING (true)" in detail
    assert scalar(conn, "SELECT count(*) FROM pg_policy WHERE polname LIKE 'pgheal_probe%'") == 0


def test_grant_to_a_missing_role_only_when_the_policy_lists_it(conn):
    conn.execute("CREATE TABLE t (a int)")
    with pytest.raises(psycopg.errors.UndefinedObject) as info:
        migrate(conn, "GRANT SELECT ON t TO report_reader;")
    assert "grant_roles" in info.value.diag.message_detail
    assert scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname = 'report_reader'") == 0
    conn.execute("UPDATE heal.settings SET value = 'report_reader' WHERE name = 'grant_roles'")
    migrate(conn, "GRANT SELECT ON t TO report_reader;")
    assert scalar(conn, "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'report_reader'") is False
    assert scalar(conn, "SELECT has_table_privilege('report_reader', 't', 'SELECT')") is True


def test_lock_timeout_is_retried_with_backoff(conn, dsn):
    conn.execute("CREATE TABLE busy (a int)")
    holder = connect(dsn)
    holder.autocommit = False
    holder.execute("LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")
    # Released while heal.migrate backs off (its retries span several seconds).
    timer = threading.Timer(0.8, holder.rollback)
    timer.start()
    try:
        migrate(conn, "SET lock_timeout = '200ms'; ALTER TABLE busy ADD COLUMN b int;")
    finally:
        timer.join()
        holder.close()
    kinds = [(e[0], e[2]) for e in events(conn)]
    assert ("auto_heal_attempt", "55P03") in kinds
    assert ("auto_heal_success", "55P03") in kinds
    assert scalar(conn, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'busy'::regclass "
                        "AND attname = 'b'") == 1  # fmt: skip


def test_lock_timeout_gives_up_after_max_attempts(conn, dsn):
    conn.execute("CREATE TABLE busy (a int)")
    conn.execute("UPDATE heal.settings SET value = '2' WHERE name = 'max_attempts'")
    conn.execute("UPDATE heal.settings SET value = '10' WHERE name = 'retry_delay_ms'")
    with connect(dsn) as holder:
        holder.autocommit = False
        holder.execute("LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(psycopg.errors.LockNotAvailable) as info:
            migrate(conn, "SET lock_timeout = '50ms'; ALTER TABLE busy ADD COLUMN b int;")
        holder.rollback()
    assert "still lock_not_available after 2 retries" in info.value.diag.message_detail


def test_ambiguous_provider_names_both(conn):
    # No two contrib extensions share a function name: record two that would.
    conn.execute(
        """INSERT INTO heal.extension_objects (extension, kind, name, args, min_args, max_args)
           VALUES ('cube', 'function', 'shared_fn', '{int4}', 1, 1),
                  ('seg', 'function', 'shared_fn', '{int4}', 1, 1)"""
    )
    before = extensions(conn)
    with pytest.raises(psycopg.errors.UndefinedFunction) as info:
        migrate(conn, "SELECT shared_fn(1);")
    assert "provided by several extensions (cube, seg)" in info.value.diag.message_detail
    assert extensions(conn) == before


def test_argument_types_decide_between_providers(conn):
    conn.execute(
        """INSERT INTO heal.extension_objects (extension, kind, name, args, min_args, max_args)
           VALUES ('cube', 'function', 'shared_fn', '{text}', 1, 1),
                  ('seg', 'function', 'shared_fn', '{int4}', 1, 1)"""
    )
    with pytest.raises(psycopg.errors.UndefinedFunction) as info:
        migrate(conn, "SELECT shared_fn(1);")  # seg gets installed, but the function is a fake
    assert "CREATE EXTENSION IF NOT EXISTS seg WITH SCHEMA" in info.value.diag.message_detail


def test_well_known_extension_the_server_lacks(conn):
    with pytest.raises(psycopg.errors.UndefinedObject) as info:
        migrate(conn, "CREATE TABLE items (embedding vector(3));")
    detail = info.value.diag.message_detail
    assert "extension vector (OS package postgresql-15-pgvector)" in detail


def test_wrong_argument_types_install_nothing(conn):
    before = extensions(conn)
    with pytest.raises(psycopg.errors.UndefinedFunction):
        migrate(conn, "SELECT replace(1, 2, 3);")
    assert extensions(conn) == before


def test_a_relation_an_extension_provides(conn):
    conn.execute(
        "UPDATE heal.settings SET value = 'pg_buffercache' WHERE name = 'allow_extensions'"
    )
    migrate(conn, "CREATE VIEW buffers AS SELECT count(*) AS n FROM pg_buffercache;")
    assert "pg_buffercache" in extensions(conn)
    assert scalar(conn, "SELECT n > 0 FROM buffers")
    # Found where the extension is, in a schema not on the path.
    migrate(conn, "SET search_path = public; SELECT count(*) FROM pg_buffercache;")


def test_a_user_s_table_elsewhere_is_never_taken_for_a_missing_one(conn):
    conn.execute("CREATE SCHEMA archive")
    conn.execute("CREATE TABLE archive.users (id int)")
    with pytest.raises(psycopg.errors.UndefinedTable) as info:
        migrate(conn, "DELETE FROM users;")
    assert "no available extension provides relation users" in info.value.diag.message_detail
    assert scalar(conn, "SELECT count(*) FROM pg_extension") == 2  # nothing installed


@pytest.mark.parametrize(
    ("extension", "sql"),
    [
        ("jsonb_plpython3u", "CREATE FUNCTION roundtrip(val jsonb) RETURNS jsonb TRANSFORM FOR "
         "TYPE jsonb LANGUAGE plpython3u AS 'return val';"),
        ("file_fdw", "CREATE SERVER files FOREIGN DATA WRAPPER file_fdw;"),
    ],
)  # fmt: skip
def test_a_transform_and_a_foreign_data_wrapper_an_extension_provides(conn, extension, sql):
    with pytest.raises(psycopg.errors.UndefinedObject) as info:  # deny-listed by default
        migrate(conn, sql)
    assert "deny list" in info.value.diag.message_detail
    conn.execute("UPDATE heal.settings SET value = %s WHERE name = 'allow_extensions'",
                 (extension,))  # fmt: skip
    migrate(conn, sql)
    assert extension in extensions(conn)
