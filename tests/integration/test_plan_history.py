"""heal.plan, dry runs, predicted heals, and named migrations like a migration runner."""

from __future__ import annotations

import threading

import psycopg
import pytest

from .conftest import connect, events, extensions, migrate, scalar

SCRIPT = """CREATE SCHEMA billing;
CREATE TABLE billing.invoices (id uuid DEFAULT uuid_generate_v4(), email citext);
CREATE TABLE app.users (name text);
CREATE INDEX ON app.users USING gin (name gin_trgm_ops);
SELECT dblink_connect('x');
SELECT no_such_function(1);
"""


def plan_rows(conn, sql):
    return conn.execute(
        "SELECT statement, line, missing, fix, allowed, reason FROM heal.plan(%s)", (sql,)
    ).fetchall()


def test_plan_lists_problems_without_changing_anything(conn):
    before = extensions(conn)
    rows = plan_rows(conn, SCRIPT)
    by_missing = {r[2]: r for r in rows}
    assert by_missing["function uuid_generate_v4()"][:2] == (2, 2)
    assert "install extension uuid-ossp" in by_missing["function uuid_generate_v4()"][3]
    assert by_missing["type citext"][4] is True
    assert by_missing["schema app"][3] == "create schema app"
    assert "pg_trgm" in by_missing["operator class gin_trgm_ops for access method gin"][3]
    dblink = by_missing["function dblink_connect(unknown)"]
    assert dblink[4] is False and "deny list" in dblink[5]
    unknown = by_missing["function no_such_function(unknown)"]
    assert unknown[4] is False and "no available extension" in unknown[5]
    # billing is created by the script itself: not a problem.
    assert "schema billing" not in by_missing
    assert extensions(conn) == before
    assert scalar(conn, "SELECT count(*) FROM heal.migrations") == 0


def test_plan_finds_ordered_set_and_hypothetical_set_aggregates(conn):
    """WITHIN GROUP's sort keys are arguments of the aggregate: nothing is missing,
    and the DDL trigger says nothing either."""
    sql = ("CREATE VIEW quartiles AS SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x), "
           "percentile_disc(ARRAY[0.25, 0.75]) WITHIN GROUP (ORDER BY x), "
           "mode() WITHIN GROUP (ORDER BY x), rank(2) WITHIN GROUP (ORDER BY x), "
           "string_agg(x::text, ',' ORDER BY x) FROM generate_series(1, 9) AS x")  # fmt: skip
    assert plan_rows(conn, sql) == []
    said = []
    conn.add_notice_handler(lambda diag: said.append(diag.message_primary))
    conn.execute(sql)
    assert [m for m in said if "pgheal" in (m or "")] == []


def test_plan_follows_search_path_and_extensions_the_script_sets(conn):
    conn.execute("CREATE SCHEMA extensions")
    conn.execute("CREATE EXTENSION citext SCHEMA extensions")
    rows = plan_rows(
        conn,
        """CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
           CREATE TABLE a (id uuid DEFAULT uuid_generate_v4());
           SET search_path = public, extensions;
           CREATE TABLE b (e citext);""",
    )
    assert rows == []
    rows = plan_rows(conn, "SET search_path = public; CREATE TABLE c (e citext);")
    assert [(r[0], r[2], r[3]) for r in rows] == [
        (2, "type citext",
         "put schema extensions on the search path, add schema extensions to the database's "
         "search_path"),
    ]  # fmt: skip


def test_predicted_heals_need_no_failed_attempt(conn):
    migrate(conn, "CREATE TABLE t (id uuid DEFAULT uuid_generate_v4(), e citext);")
    rows = conn.execute(
        "SELECT event_type, detail->>'way' FROM heal.build_events "
        "WHERE event_type LIKE 'auto_heal%' ORDER BY id"
    ).fetchall()
    assert rows == [("auto_heal_attempt", "predicted"), ("auto_heal_success", "predicted")] * 2
    assert {"uuid-ossp", "citext"} <= set(extensions(conn))


def test_runtime_errors_still_heal_reactively(conn):
    """Dynamic SQL is known only when it runs: its error heals then."""
    migrate(
        conn,
        """CREATE FUNCTION make_id() RETURNS uuid LANGUAGE plpgsql AS
           $$ DECLARE id uuid; BEGIN EXECUTE 'SELECT uuid_generate_v4()' INTO id;
              RETURN id; END $$;
           DO $$ BEGIN PERFORM make_id(); END $$;""",
    )
    ways = [r[0] for r in conn.execute(
        "SELECT detail->>'way' FROM heal.build_events WHERE event_type = 'auto_heal_success'"
    )]  # fmt: skip
    assert ways == ["reactive"]


def test_dry_run_heals_reports_and_rolls_back(conn):
    before = extensions(conn)
    notices = migrate_with(conn, "CREATE TABLE t (e citext);", dry_run=True)
    assert any("dry run: 1 statements ran, 1 healed" in n for n in notices)
    assert extensions(conn) == before
    assert scalar(conn, "SELECT to_regclass('t')") is None
    assert scalar(conn, "SELECT status FROM heal.migrations") == "dry_run"
    assert "auto_heal_success" in [e[0] for e in events(conn)]


def migrate_with(conn, sql, **kwargs) -> list[str]:
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    named = ", ".join(f"{k} => %({k})s" for k in kwargs)
    conn.execute(f"CALL heal.migrate(%(sql)s, {named})", {"sql": sql, **kwargs})
    return notices


def test_named_migration_runs_once(conn):
    migrate_with(conn, "CREATE TABLE t (a int);", name="0001_init")
    notices = migrate_with(conn, "CREATE TABLE t (a int);", name="0001_init")
    assert any('migration "0001_init" was applied at' in n for n in notices)
    assert scalar(conn, "SELECT count(*) FROM heal.migrations WHERE name = '0001_init'") == 1


def test_changed_migration_is_refused_unless_forced(conn):
    migrate_with(conn, "CREATE TABLE t (a int);", name="0001_init")
    with pytest.raises(psycopg.errors.RaiseException) as info:
        migrate_with(conn, "CREATE TABLE t (a int, b int);", name="0001_init")
    assert "was applied with another checksum" in str(info.value)
    assert "force => true and name => '0001_init'" in info.value.diag.message_hint
    migrate_with(conn, "ALTER TABLE t ADD COLUMN b int;", name="0001_init", force=True)
    rows = conn.execute(
        "SELECT forced FROM heal.migrations WHERE name = '0001_init' ORDER BY id"
    ).fetchall()
    assert rows == [(False,), (True,)]


def test_failed_named_migration_can_run_again(conn):
    with pytest.raises(psycopg.errors.DivisionByZero):
        migrate_with(conn, "SELECT 1/0;", name="0002_bad")
    with pytest.raises(psycopg.errors.DivisionByZero):
        migrate_with(conn, "SELECT 1/0;", name="0002_bad")
    assert scalar(conn, "SELECT count(*) FROM heal.migrations WHERE name = '0002_bad'") == 2


def test_concurrent_runners_are_serialized(conn, dsn):
    first = connect(dsn)
    first.autocommit = False
    first.execute(
        "CALL heal.migrate('CREATE TABLE once (a int); SELECT pg_sleep(0.5);', name => 'c1')"
    )
    results: list[str] = []

    def second() -> None:
        with connect(dsn) as other:
            notices: list[str] = []
            other.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
            other.execute(
                "CALL heal.migrate('CREATE TABLE once (a int); SELECT pg_sleep(0.5);', "
                "name => 'c1')"
            )
            results.extend(notices)

    thread = threading.Thread(target=second)
    thread.start()
    first.commit()  # the second runner waited on the lock, and now sees the first's result
    thread.join()
    first.close()
    assert any('migration "c1" was applied at' in n for n in results)
    assert scalar(conn, "SELECT count(*) FROM heal.migrations WHERE name = 'c1'") == 1


def test_lock_wait_is_bounded_by_the_setting(conn, dsn):
    conn.execute("UPDATE heal.settings SET value = '100' WHERE name = 'lock_timeout_ms'")
    holder = connect(dsn)
    holder.autocommit = False
    holder.execute("CALL heal.migrate('SELECT 1', name => 'busy')")
    try:
        with pytest.raises(psycopg.errors.LockNotAvailable) as info:
            migrate_with(conn, "SELECT 1;", name="busy")
    finally:
        holder.rollback()
        holder.close()
    assert "is being run by another session" in str(info.value)
    assert "lock_timeout_ms" in info.value.diag.message_detail
