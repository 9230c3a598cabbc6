"""heal.scan(): errors from applications, read from the server log, healed and learned from."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

from pgheal import deploy, schedule, serverdeps
from pgheal.cluster import Cluster

from .conftest import connect, extensions, migrate, psql, role_dsn, scalar


@pytest.fixture
def fresh_log(conn):
    """Read only what this test logs: skip what the server log holds so far."""
    conn.execute("SELECT heal.skip_log_backlog()")
    return conn


def app_error(dsn: str, sql: str, user: str | None = None) -> str:
    """An application's failing query, through plain psycopg (no heal.migrate)."""
    with connect(role_dsn(dsn, user) if user else dsn) as app, pytest.raises(psycopg.Error) as info:
        app.execute(sql)
    return info.value.diag.sqlstate


def scan_until(conn, condition: str, scans: int = 600) -> None:
    """The collector writes the log asynchronously: scan until `condition` holds."""
    for _ in range(scans):
        conn.execute("CALL heal.scan()")
        if scalar(conn, condition):
            return
        time.sleep(0.1)
    raise AssertionError(f"never true after {scans} scans: {condition}")


def test_scan_heals_what_an_application_ran_into(fresh_log, dsn):
    conn = fresh_log
    for _ in range(3):
        assert app_error(dsn, "SELECT uuid_generate_v4()") == "42883"
    scan_until(conn, "SELECT count(*) = 3 FROM heal.error_events")
    assert scalar(conn, "SELECT count(*) FROM heal.build_events WHERE source = 'scan' "
                        "AND event_type = 'auto_heal_success'") == 1  # fmt: skip
    assert extensions(conn)["uuid-ossp"] == "extensions"
    with connect(dsn) as app:  # a new session: the database's search_path has extensions
        assert scalar(app, "SELECT uuid_generate_v4() IS NOT NULL") is True
    row = conn.execute(
        "SELECT times_seen, fix_source, fixed_at IS NOT NULL FROM heal.error_fingerprints"
    ).fetchone()
    assert row == (3, "catalog", True)
    pattern = conn.execute(
        "SELECT times_seen >= 3, objects FROM heal.universal_error_patterns "
        "WHERE pattern = 'function %(%) does not exist'"
    ).fetchone()
    assert pattern == (True, ["function uuid_generate_v4()"])
    event = conn.execute(
        "SELECT user_name, sqlstate, statement FROM heal.error_events LIMIT 1"
    ).fetchone()
    assert event == ("postgres", "42883", "SELECT uuid_generate_v4()")
    summary = conn.execute("SELECT status, fixes FROM heal.scans WHERE fixes > 0").fetchone()
    assert summary == ("ok", 1)


def test_errors_are_counted_exactly_whatever_the_batches(fresh_log, dsn, conn):
    conn.execute("UPDATE heal.settings SET value = '700' WHERE name = 'scan_max_events'")
    conn.execute("UPDATE heal.settings SET value = '1000000' WHERE name = 'min_occurrences'")
    other = psycopg.conninfo.make_conninfo(dsn, dbname="postgres")
    errors = [f"SELECT absent_{i % 3}({i})" for i in range(1500)]
    failing = "".join(f"{sql};\n" for sql in errors)
    for where in (dsn, other):  # the other database's are not this one's to take in
        assert psql(where, "-v", "ON_ERROR_STOP=0", "-f", "-", input=failing).returncode == 0
    scan_until(conn, "SELECT count(*) = 1500 FROM heal.error_events")
    counts = conn.execute(
        "SELECT object, times_seen FROM heal.error_fingerprints ORDER BY object"
    ).fetchall()
    assert counts == [(f"function absent_{i}(integer)", 500) for i in range(3)]
    pattern = conn.execute(
        "SELECT times_seen, objects FROM heal.universal_error_patterns "
        "WHERE pattern = 'function %(%) does not exist'"
    ).fetchone()
    assert pattern[0] == 1500
    assert sorted(pattern[1]) == [f"function absent_{i}(integer)" for i in range(3)]
    taken = conn.execute("SELECT statement FROM heal.error_events ORDER BY id").fetchall()
    assert [t[0] for t in taken] == [f"{sql};" for sql in errors]  # in order, each once
    scans = conn.execute("SELECT max(events), sum(events) FROM heal.scans").fetchone()
    assert scans == (700, 1500)


def test_nothing_is_read_twice(fresh_log, dsn):
    conn = fresh_log
    app_error(dsn, "SELECT no_such_thing_here()")
    scan_until(conn, "SELECT count(*) = 1 FROM heal.error_events")
    conn.execute("CALL heal.scan()")
    conn.execute("CALL heal.scan()")
    assert scalar(conn, "SELECT count(*) FROM heal.error_events") == 1
    assert scalar(conn, "SELECT refused FROM heal.error_fingerprints") == (
        "no available extension provides function no_such_thing_here()"
    )


def test_refused_by_policy_leaves_everything_and_says_why(fresh_log, dsn):
    conn = fresh_log
    role = f"app_{uuid.uuid4().hex[:6]}"
    conn.execute(f"CREATE ROLE {role} LOGIN")
    conn.execute(f"REVOKE CREATE ON DATABASE {conn.info.dbname} FROM PUBLIC")
    before = extensions(conn)
    app_error(dsn, "SELECT uuid_generate_v4()", user=role)
    scan_until(conn, "SELECT count(*) = 1 FROM heal.error_events")
    assert extensions(conn) == before
    refused = scalar(conn, "SELECT refused FROM heal.error_fingerprints")
    assert f'role "{role}" has no CREATE privilege on this database' in refused
    reason = scalar(
        conn,
        "SELECT detail->>'reason' FROM heal.build_events "
        "WHERE event_type = 'auto_heal_failed' AND source = 'scan'",
    )
    assert reason == refused


def test_other_databases_errors_are_not_recorded(fresh_log, dsn):
    conn = fresh_log
    other = dsn.replace(f"dbname={conn.info.dbname}", "dbname=postgres")
    app_error(other, "SELECT uuid_generate_v4()")
    app_error(dsn, "SELECT 1/0")
    scan_until(conn, "SELECT count(*) >= 1 FROM heal.error_events")
    assert [r[0] for r in conn.execute("SELECT database FROM heal.error_events")] == [
        conn.info.dbname
    ]


def test_overlapping_scans_skip(fresh_log, dsn):
    conn = fresh_log
    with connect(dsn) as other:
        other.execute("SELECT pg_advisory_lock(hashtext('heal.scan'))")
        conn.execute("CALL heal.scan()")
        other.execute("SELECT pg_advisory_unlock(hashtext('heal.scan'))")
    assert conn.execute("SELECT status, note FROM heal.scans").fetchone() == (
        "skipped",
        "another scan is running; skipped",
    )


def test_failed_migration_is_retried_once_it_can_heal(fresh_log):
    conn = fresh_log
    with pytest.raises(psycopg.errors.UndefinedFunction):
        conn.execute("CALL heal.migrate('CREATE VIEW remote AS SELECT dblink_get_connections()', "
                     "name => '0007_remote')")  # fmt: skip
    conn.execute("CALL heal.scan()")
    assert scalar(conn, "SELECT retry_ready_at FROM heal.migrations") is None  # still refused
    conn.execute("UPDATE heal.settings SET value = 'dblink' WHERE name = 'allow_extensions'")
    conn.execute("CALL heal.scan()")
    # The scan marks it; its own role retries it in its own session (pg_cron does, where
    # pg_cron lives in this database): never the scan's session.
    assert scalar(conn, "SELECT retry_ready_at IS NOT NULL FROM heal.migrations") is True
    assert scalar(conn, "SELECT retried FROM heal.scans ORDER BY id DESC LIMIT 1") == 1
    migration = scalar(conn, "SELECT id FROM heal.migrations")
    conn.execute("CALL heal.retry_migration(%s)", (migration,))
    rows = conn.execute(
        "SELECT name, status, source, retry_of IS NOT NULL FROM heal.migrations ORDER BY id"
    ).fetchall()
    assert rows == [("0007_remote", "failed", "migration", False),
                    ("0007_remote", "succeeded", "retry", True)]  # fmt: skip
    assert scalar(conn, "SELECT to_regclass('public.remote')::text") == "remote"
    conn.execute("CALL heal.scan()")
    assert scalar(conn, "SELECT count(*) FROM heal.migrations") == 2  # nothing left to retry


def test_learning_loop_then_seeding_another_database(fresh_log, dsn, heal_proc):
    conn = fresh_log
    # The scan may not install extensions here: a person has to.
    conn.execute(
        "UPDATE heal.settings SET value = 'create_extension' WHERE name = 'disabled_fixes'"
    )
    app_error(dsn, "SELECT levenshtein('kitten', 'sitting')")
    scan_until(conn, "SELECT count(*) = 1 FROM heal.error_fingerprints WHERE refused IS NOT NULL")
    conn.execute("CREATE EXTENSION fuzzystrmatch")  # what the person did
    conn.execute("CALL heal.scan()")
    learned = conn.execute(
        "SELECT fix_kind, fix_target, confidence, learned_from FROM heal.learned_patterns"
    ).fetchone()
    assert learned == ("create_extension", "fuzzystrmatch", 1, "CREATE EXTENSION by postgres")
    assert scalar(conn, "SELECT source FROM heal.universal_error_patterns "
                        "WHERE category = 'learned'") == "learned"  # fmt: skip
    exported = subprocess_pgheal("patterns", "export", "--dsn", dsn)
    # A fresh database: the same error is healed by the learned pattern.
    name = f"seeded_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE DATABASE {name} TEMPLATE {heal_proc.template_dbname}")
    try:
        fresh_dsn = dsn.replace(f"dbname={conn.info.dbname}", f"dbname={name}")
        with connect(fresh_dsn) as fresh:
            fresh.execute("SELECT heal.skip_log_backlog()")
        result = subprocess_pgheal("patterns", "import", "--dsn", fresh_dsn, stdin=exported)
        assert "imported 1 patterns" in result
        app_error(fresh_dsn, "SELECT levenshtein('kitten', 'sitting')")
        with connect(fresh_dsn) as fresh:
            scan_until(fresh, "SELECT count(*) = 1 FROM heal.error_fingerprints "
                              "WHERE fixed_at IS NOT NULL")  # fmt: skip
            assert scalar(fresh, "SELECT fix_source FROM heal.error_fingerprints") == "learned"
            assert scalar(fresh, "SELECT applied FROM heal.learned_patterns") == 1
            assert "fuzzystrmatch" in extensions(fresh)
    finally:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def subprocess_pgheal(*args: str, stdin: str | None = None) -> str:
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "pgheal.cli", *args], input=stdin,
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_patterns_can_be_listed_and_disabled(conn, dsn):
    conn.execute(
        "INSERT INTO heal.learned_patterns (fingerprint, pattern, sqlstate, message, fix_kind, "
        "fix_target) VALUES ('f', 'p', '42883', 'function f() does not exist', "
        "'create_extension', 'seg')"
    )
    listed = subprocess_pgheal("patterns", "list", "--dsn", dsn)
    assert "create_extension seg" in listed and " on " in listed
    pattern_id = scalar(conn, "SELECT id FROM heal.learned_patterns")
    subprocess_pgheal("patterns", "disable", str(pattern_id), "--dsn", dsn)
    assert scalar(conn, "SELECT enabled FROM heal.learned_patterns") is False


def test_a_fix_that_does_not_stop_the_errors_is_marked_ineffective(fresh_log, dsn):
    conn = fresh_log
    app_error(dsn, "SELECT no_fix_for_this(1)")
    scan_until(conn, "SELECT count(*) = 1 FROM heal.error_fingerprints")
    # As if a fix had been applied: the error still comes, from a session begun after it
    # (csvlog gives session starts to the second).
    conn.execute("UPDATE heal.error_fingerprints SET fixed_at = now() - interval '3 s', "
                 "fix_sql = 'CREATE EXTENSION x', fix_source = 'catalog'")  # fmt: skip
    app_error(dsn, "SELECT no_fix_for_this(1)")
    scan_until(conn, "SELECT ineffective FROM heal.error_fingerprints")
    assert scalar(conn, "SELECT count(*) FROM heal.build_events WHERE source = 'scan' AND "
                        "detail->>'reason' LIKE '%ineffective%'") == 1  # fmt: skip


def test_old_records_are_purged(fresh_log):
    conn = fresh_log
    conn.execute(
        "INSERT INTO heal.error_events (logged_at, message, fingerprint, log_file, log_offset) "
        "VALUES (now() - interval '40 days', 'old', 'x', 'f', 0)"
    )
    conn.execute("INSERT INTO heal.build_events (created_at, event_type) "
                 "VALUES (now() - interval '100 days', 'migration_started')")  # fmt: skip
    conn.execute("CALL heal.scan()")
    assert scalar(conn, "SELECT count(*) FROM heal.error_events") == 0
    assert scalar(conn, "SELECT count(*) FROM heal.build_events") == 0
    assert scalar(conn, "SELECT purged FROM heal.scans") == 2


def test_scheduled_with_pg_cron_from_the_cron_database(conn, dsn):
    result = schedule.schedule(dsn, conn, "* * * * *")
    assert result.ok, result.message
    name = f"heal-autonomous-scan:{conn.info.dbname}"
    cron_dsn = dsn.replace(f"dbname={conn.info.dbname}", "dbname=postgres")
    try:
        with connect(cron_dsn) as cron:
            job = cron.execute(
                "SELECT schedule, command, database FROM cron.job WHERE jobname = %s", (name,)
            ).fetchone()
            oid = scalar(conn, "SELECT oid FROM pg_database WHERE datname = current_database()")
            assert job == ("* * * * *", schedule.scan_command(oid), conn.info.dbname)
            assert scalar(cron, "SELECT count(*) FROM cron.job "
                                "WHERE jobname = 'heal-purge-run-details'") == 1  # fmt: skip
        # pg_cron runs it within the minute.
        for _ in range(90 * 4):
            if scalar(conn, "SELECT count(*) FROM heal.scans"):
                break
            time.sleep(0.25)
        assert scalar(conn, "SELECT status FROM heal.scans LIMIT 1") == "ok"
    finally:
        schedule.unschedule(dsn, conn)
    with connect(cron_dsn) as cron:
        assert scalar(cron, "SELECT count(*) FROM cron.job WHERE jobname LIKE 'heal-%'") == 0


def test_without_pg_cron_install_works_and_says_why_not_scheduled():
    with (
        Cluster(port=5433, pg_cron=False, csvlog=False) as bare,
        psycopg.connect(bare.dsn(), autocommit=True) as conn,
    ):
        deploy.install(conn, serverdeps.default_path())
        result = schedule.schedule(bare.dsn(), conn)
        assert not result.ok
        assert "pg_cron is not loaded (shared_preload_libraries)" in result.message
        conn.execute("CALL heal.scan()")  # by hand
        assert conn.execute("SELECT status, note FROM heal.scans").fetchone() == (
            "ok", "log intake is off: set logging_collector = on and add csvlog (or jsonlog) "
            "to log_destination in postgresql.conf, then restart",
        )  # fmt: skip
        migrate(conn, "CREATE TABLE t (e citext);")
        health = dict(conn.execute("SELECT name, status FROM heal.health").fetchall())
        assert health["pg_cron"] == "warn" and health["log_intake"] == "warn"


def test_work_per_scan_is_bounded_and_fixes_wait_for_min_occurrences(fresh_log, dsn):
    conn = fresh_log
    conn.execute("UPDATE heal.settings SET value = '2' WHERE name = 'scan_max_events'")
    conn.execute("UPDATE heal.settings SET value = '3' WHERE name = 'min_occurrences'")
    for _ in range(3):
        app_error(dsn, "SELECT uuid_generate_v4()")
    scan_until(conn, "SELECT count(*) = 3 FROM heal.error_events")
    assert scalar(conn, "SELECT max(events) FROM heal.scans") <= 2  # at most 2 a scan
    assert extensions(conn)["uuid-ossp"] == "extensions"
    # The fix came with the scan that saw the error the third time, not before.
    runs = conn.execute(
        "SELECT sum(events) OVER (ORDER BY id), fixes FROM heal.scans ORDER BY id"
    ).fetchall()
    first_fix = next(seen for seen, fixes in runs if fixes)
    assert first_fix == 3
    assert all(not fixes for seen, fixes in runs if seen < 3)
