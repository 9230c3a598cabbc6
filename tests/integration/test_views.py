"""The monitoring views after scripted scenarios, row by row: one row per error however
it was spelled, reasons as data, counters that count only what happened, and heal.stats
made of the same rows as heal.failures."""

from __future__ import annotations

import psycopg
import pytest

from .conftest import psql, scalar
from .test_scan import app_error, scan_until

DBLINK = "SELECT dblink_connect('x')"
REFUSAL = (
    'extension "dblink" is on the deny list (heal.settings deny_extensions): it reaches '
    "files, the network or server internals. To allow it, as a superuser: UPDATE "
    "heal.settings SET value = concat_ws(',', nullif(value, ''), 'dblink') "
    "WHERE name = 'allow_extensions'"
)


def rows(conn, query: str) -> list[tuple]:
    return conn.execute(query).fetchall()


@pytest.fixture
def fresh(conn):
    conn.execute("SELECT heal.skip_log_backlog()")
    return conn


def test_one_failure_however_spelled_and_stats_from_the_same_rows(fresh, dsn):
    conn = fresh
    for name in ("0001_a", "0002_b"):  # refused twice through heal.migrate
        with pytest.raises(psycopg.errors.UndefinedFunction):
            conn.execute("CALL heal.migrate(%s, name => %s)", (DBLINK, name))
    view = psql(dsn, "-c", f"CREATE VIEW v AS {DBLINK}")  # the trigger refuses, psql fails
    assert view.returncode == 1 and "not healed" in view.stderr
    app_error(dsn, DBLINK)  # an application, twice: read from the log
    app_error(dsn, DBLINK)
    # pgheal's own error (a bad setting) is not an application's failure.
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute("UPDATE heal.settings SET value = 'many' WHERE name = 'max_attempts'")
    # A dry run heals and rolls back: nothing happened, nothing counts.
    conn.execute("CALL heal.migrate('CREATE TABLE d (e citext)', dry_run => true)")
    app_error(dsn, "SELECT levenshtein('a', 'b')")  # healed by the scan
    scan_until(conn, "SELECT count(*) FROM heal.error_fingerprints WHERE fixed_at IS NOT NULL")

    assert rows(conn, "SELECT message FROM heal.error_events ORDER BY id") == [
        ("function dblink_connect(unknown) does not exist",),  # psql's CREATE VIEW
        ("function dblink_connect(unknown) does not exist",),
        ("function dblink_connect(unknown) does not exist",),
        ("function levenshtein(unknown, unknown) does not exist",),
    ]
    assert rows(
        conn, "SELECT error, sqlstate, kind, reason_kind, reason, times, sources FROM heal.failures"
    ) == [
        (
            "function dblink_connect(unknown)",
            "42883",
            "refused by policy",
            "refused",
            REFUSAL,
            5,
            ["migration", "scan"],
        ),
    ]
    assert rows(conn, "SELECT source, failed, duration_ms IS NOT NULL FROM heal.recent_heals") == [
        ("scan", "function levenshtein(unknown, unknown)", True),
    ]
    (day,) = rows(conn, "SELECT heals, heals_by_source, failures, distinct_failures, "
                        "estimated_minutes_saved FROM heal.stats")  # fmt: skip
    assert day == (1, {"scan": 1}, 5, 1, 10)
    # The same rows, whichever way they are counted.
    assert scalar(conn, "SELECT sum(times) FROM heal.failures") == scalar(
        conn, "SELECT sum(failures) FROM heal.stats"
    )
    # Every failure recorded carries a kind the views know.
    assert not scalar(conn, "SELECT count(*) FROM heal.build_events e WHERE e.event_type = "
                            "'auto_heal_failed' AND NOT EXISTS (SELECT FROM heal.reason_kinds k "
                            "WHERE k.kind = e.reason_kind)")  # fmt: skip


def test_each_reason_kind_is_data(fresh, dsn):
    conn = fresh
    with pytest.raises(psycopg.errors.UndefinedFunction):
        conn.execute("CALL heal.migrate('SELECT nothing_provides_this()')")
    with pytest.raises(psycopg.errors.UndefinedObject):
        conn.execute("CALL heal.migrate('CREATE TABLE v (x vector(3))')")
    conn.execute(
        "UPDATE heal.settings SET value = 'create_extension' WHERE name = 'disabled_fixes'"
    )
    with pytest.raises(psycopg.errors.UndefinedFunction):
        conn.execute("CALL heal.migrate('SELECT uuid_generate_v4()')")
    conn.execute("UPDATE heal.settings SET value = '3' WHERE name = 'min_occurrences'")
    app_error(dsn, "SELECT gen_random_uuid_v9()")  # nothing provides it: no fix
    app_error(dsn, "SELECT levenshtein('a', 'b')")  # seen once of three: waiting
    scan_until(conn, "SELECT count(*) = 2 FROM heal.error_fingerprints")
    assert rows(
        conn, "SELECT error, kind, reason_kind, times FROM heal.failures ORDER BY error"
    ) == [
        ("function gen_random_uuid_v9()", "waiting", "waiting", 1),
        ("function levenshtein(unknown, unknown)", "waiting", "waiting", 1),
        ("function nothing_provides_this()", "no known fix", "no_fix", 1),
        ("function uuid_generate_v4()", "refused by policy", "refused", 1),
        ("type vector", "not available on the host", "unavailable", 1),
    ]
    assert rows(conn, "SELECT kind, label FROM heal.reason_kinds ORDER BY position") == [
        ("refused", "refused by policy"), ("unavailable", "not available on the host"),
        ("no_fix", "no known fix"), ("fix_failed", "fix failed"),
        ("not_helped", "fix did not help"), ("ineffective", "fix ineffective"),
        ("network_suggested", "network suggests a fix"), ("waiting", "waiting"),
    ]  # fmt: skip


def test_a_fix_made_by_hand_is_learned_not_counted_as_pgheals(fresh, dsn):
    conn = fresh
    conn.execute(
        "UPDATE heal.settings SET value = 'create_extension' WHERE name = 'disabled_fixes'"
    )
    app_error(dsn, "SELECT levenshtein('kitten', 'sitting')")
    scan_until(conn, "SELECT count(*) = 1 FROM heal.error_fingerprints WHERE refused IS NOT NULL")
    assert scalar(conn, "SELECT count(*) FROM heal.failures") == 1
    conn.execute("CREATE EXTENSION fuzzystrmatch")  # what the person did
    conn.execute("CALL heal.scan()")
    conn.execute("CALL heal.scan()")  # and again: nothing more to do
    assert rows(conn, "SELECT fix_kind, fix_target, applied FROM heal.learned_patterns") == [
        ("create_extension", "fuzzystrmatch", 0),
    ]
    assert rows(conn, "SELECT fix_source, fix_sql, refused FROM heal.error_fingerprints") == [
        ("person", None, None),
    ]
    assert rows(conn, "SELECT source, times_seen, times_fixed FROM heal.patterns "
                      "WHERE source = 'learned'") == [("learned", 1, 0)]  # fmt: skip
    assert rows(conn, "SELECT * FROM heal.failures") == []
    assert rows(conn, "SELECT * FROM heal.recent_heals") == []
    assert rows(conn, "SELECT * FROM heal.stats") == []  # closed, and not by pgheal


def test_trigger_fix_sql_names_each_schema_once(conn, dsn):
    conn.execute(f"ALTER DATABASE {conn.info.dbname} SET search_path = \"$user\", public, "
                 "extensions")  # fmt: skip
    made = psql(dsn, "-c", "CREATE TABLE t (id uuid DEFAULT uuid_generate_v4(), e citext)")
    assert made.returncode == 0, made.stderr
    for (fix_sql,) in rows(conn, "SELECT fix_sql FROM heal.build_events WHERE fix_sql IS NOT NULL"):
        for line in fix_sql.splitlines():
            if "search_path =" in line:
                names = [n.strip() for n in line.split("search_path =")[1].split(",")]
                assert len(names) == len(set(names)), fix_sql
