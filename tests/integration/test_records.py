"""What heal.migrate records, and the monitoring queries operators run."""

from __future__ import annotations

import math

import psycopg
import pytest

from .conftest import connect, migrate, scalar

DEMO = """CREATE TABLE app.users (
    id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    email citext NOT NULL UNIQUE);"""


def test_monitoring_queries_run_verbatim(conn):
    migrate(conn, DEMO)
    recent = conn.execute(
        "SELECT * FROM heal.build_events WHERE event_type = 'auto_heal_success' "
        "ORDER BY created_at DESC LIMIT 10;"
    ).fetchall()
    assert len(recent) == 3
    patterns = conn.execute(
        "SELECT pattern, times_seen, times_fixed FROM heal.universal_error_patterns "
        "WHERE category = 'auto_heal' AND auto_fixable = true;"
    ).fetchall()
    counts = {p: (seen, fixed) for p, seen, fixed in patterns}
    assert counts['schema "%" does not exist'] == (1, 1)
    assert counts['type "%" does not exist'] == (1, 1)
    assert counts["function %(%) does not exist"] == (1, 1)
    assert len(patterns) >= 7


def test_each_event_is_notified_once_with_its_id(conn, dsn):
    """pgheal events --follow hears of every event, in order, however many one
    statement writes (a run's record writes all of its events at once)."""
    with connect(dsn) as listener:
        listener.execute("LISTEN heal_events")
        migrate(conn, DEMO)
        ids = [r[0] for r in conn.execute("SELECT id FROM heal.build_events ORDER BY id")]
        heard = [int(n.payload) for n in listener.notifies(timeout=5, stop_after=len(ids))]
    assert len(ids) >= 5  # started, three heals, succeeded (and their attempts)
    assert heard == ids


def test_migration_row_and_event_columns(conn):
    migrate(conn, DEMO)
    row = conn.execute(
        "SELECT status, statements, attempts, heals, run_by, checksum = md5(%s), "
        "finished_at >= started_at FROM heal.migrations",
        (DEMO,),
    ).fetchone()
    assert row == ("succeeded", 1, 3, 3, "postgres", True, True)
    success = conn.execute(
        "SELECT migration_id IS NOT NULL, statement, sqlstate, message, fix_sql, "
        "duration_ms >= 0, detail->>'missing', detail->>'way' FROM heal.build_events "
        "WHERE event_type = 'auto_heal_success' ORDER BY id LIMIT 1"
    ).fetchone()
    assert success == (
        True, 1, "3F000", "schema app is missing",
        "CREATE SCHEMA IF NOT EXISTS app AUTHORIZATION postgres", True, "schema app", "predicted",
    )  # fmt: skip


def test_reactive_heal_event_columns(conn):
    conn.execute("UPDATE heal.settings SET value = 'off' WHERE name = 'predict'")
    migrate(conn, DEMO)
    success = conn.execute(
        "SELECT sqlstate, message, detail->>'way' FROM heal.build_events "
        "WHERE event_type = 'auto_heal_success' ORDER BY id LIMIT 1"
    ).fetchone()
    assert success == ("3F000", 'schema "app" does not exist', "reactive")


def test_failed_and_unfixable_counted(conn):
    with pytest.raises(psycopg.errors.UndefinedFunction):
        migrate(conn, "SELECT nope_fn();")
    assert (
        scalar(
            conn,
            "SELECT times_seen - times_fixed FROM heal.universal_error_patterns "
            "WHERE pattern = 'function %(%) does not exist'",
        )
        == 1
    )
    kinds = [r[0] for r in conn.execute("SELECT event_type FROM heal.build_events ORDER BY id")]
    assert kinds == ["migration_started", "auto_heal_attempt", "auto_heal_failed",
                     "migration_failed"]  # fmt: skip


def test_syntax_error_is_recorded_durably(conn):
    with pytest.raises(psycopg.errors.SyntaxError):
        migrate(conn, "SELEC 1;")
    assert scalar(conn, "SELECT status FROM heal.migrations") == "failed"


def test_a_clean_migration_logs_no_heal(conn):
    migrate(conn, "CREATE TABLE t (a int); INSERT INTO t VALUES (1);")
    kinds = [r[0] for r in conn.execute("SELECT event_type FROM heal.build_events ORDER BY id")]
    assert kinds == ["migration_started", "migration_succeeded"]


def test_parser_survives_many_calls_in_one_backend(conn):
    pid = scalar(conn, "SELECT pg_backend_pid()")
    for i in range(150):
        migrate(conn, f"CREATE TABLE t{i} (a int); DROP TABLE t{i};")
        with pytest.raises(psycopg.errors.SyntaxError):
            migrate(conn, f"CREATE TABLE t{i} (a int")
    big = "\n".join(f"SELECT {i}, 'é{i}';" for i in range(5000))
    migrate(conn, big)
    assert scalar(conn, "SELECT pg_backend_pid()") == pid
    assert scalar(conn, "SELECT count(*) FROM heal.migrations") == 301


def test_concurrent_backends_parse_safely(conn, dsn):
    others = [connect(dsn) for _ in range(3)]
    try:
        for round_ in range(20):
            for i, other in enumerate(others):
                migrate(other, f"CREATE TABLE c{round_}_{i} (a int);")
        assert scalar(conn, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'c%\\_%'") == 60
    finally:
        for other in others:
            other.close()


def _peak_mb(pid: int) -> float:
    """The backend's peak resident memory (VmHWM), in MB."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def test_a_large_script_costs_a_small_multiple_of_itself(dsn):
    sql = "CREATE TABLE seed (a int, b text);\n" + "".join(
        f"INSERT INTO seed VALUES ({i}, 'row {i} of the seed data, as a dump writes it');\n"
        for i in range(100_000)
    )
    size_mb = len(sql.encode()) / 2**20
    with connect(dsn) as session:
        session.execute("CALL heal.migrate('SELECT 1')")  # pgheal and its parser loaded
        pid = scalar(session, "SELECT pg_backend_pid()")
        before = _peak_mb(pid)
        session.execute("CALL heal.migrate(%s, name => 'seed')", (sql,))
        grown = _peak_mb(pid) - before
    assert grown <= 3 * size_mb + 64, f"{grown:.0f} MB for a {size_mb:.1f} MB script"
    with connect(dsn) as session:
        assert scalar(session, "SELECT count(*) FROM seed") == 100_000
        stored = session.execute(
            "SELECT count(*), string_agg(s.sql, '' ORDER BY s.part) = %s, "
            "       md5(string_agg(s.sql, '' ORDER BY s.part)) = m.checksum "
            "  FROM heal.migrations m JOIN heal.migration_scripts s ON s.migration_id = m.id "
            " WHERE m.name = 'seed' GROUP BY m.checksum",
            (sql,),
        ).fetchone()
    assert stored == (math.ceil(len(sql) / 2**20), True, True)


def test_a_script_of_many_characters_is_stored_whole(conn):
    sql = "SELECT 'é€𝄞';\n" * 200_000  # several parts, multibyte characters at their edges
    migrate(conn, sql)
    assert scalar(
        conn,
        "SELECT string_agg(sql, '' ORDER BY part) = %s AND count(*) > 1 "
        "FROM heal.migration_scripts",
        (sql,),
    )
