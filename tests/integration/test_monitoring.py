"""The operators' view: heal.* views after scripted scenarios, heal.health when parts are
broken on purpose, and the status / doctor / events commands end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import psycopg
import pytest

from pgheal import schedule

from .conftest import connect, migrate
from .test_installer import pgheal
from .test_scan import app_error, scan_until


def rows(conn, query: str) -> list[dict]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return cur.execute(query).fetchall()


def test_views_after_a_healed_a_refused_and_a_failed_migration_and_a_scan(conn, dsn):
    conn.execute("SELECT heal.skip_log_backlog()")
    conn.execute("CALL heal.migrate('CREATE TABLE t (e citext)', name => '0001_ok')")
    with pytest.raises(psycopg.errors.UndefinedFunction):  # refused: dblink is denied
        conn.execute("CALL heal.migrate('SELECT dblink_connect(''x'')', name => '0002_remote')")
    with pytest.raises(psycopg.errors.UndefinedFunction):  # no known fix
        migrate(conn, "SELECT nothing_provides_this()")
    with pytest.raises(psycopg.errors.UndefinedObject):  # the server lacks the extension
        migrate(conn, "CREATE TABLE v (x vector(3))")
    app_error(dsn, "SELECT uuid_generate_v4()")
    scan_until(conn, "SELECT count(*) = 1 FROM heal.error_fingerprints WHERE fixed_at IS NOT NULL")

    heals = rows(conn, "SELECT source, failed, fix FROM heal.recent_heals ORDER BY created_at")
    assert [h["source"] for h in heals] == ["predicted", "scan"]
    assert heals[0]["failed"] == "type citext" and "install extension citext" in heals[0]["fix"]

    failures = {f["error"]: f for f in rows(conn, "SELECT * FROM heal.failures")}
    remote = failures["function dblink_connect(unknown)"]
    assert remote["kind"] == "refused by policy" and "allow_extensions" in remote["reason"]
    assert failures["function nothing_provides_this()"]["kind"] == "no known fix"
    vector = failures["type vector"]
    assert vector["kind"] == "not available on the host" and "pgvector" in vector["reason"]

    history = {h["name"]: h for h in rows(conn, "SELECT * FROM heal.migration_history")}
    assert history["0001_ok"]["status"] == "succeeded" and history["0001_ok"]["heals"] == 1
    assert history["0002_remote"]["status"] == "failed" and history["0002_remote"]["attempts"] == 1

    patterns = rows(conn, "SELECT source, pattern, times_seen FROM heal.patterns")
    assert {p["source"] for p in patterns} >= {"builtin", "catalog"}
    assert any(p["source"] == "catalog" and "uuid_generate_v4" in p["pattern"] for p in patterns)

    (today,) = rows(conn, "SELECT * FROM heal.stats")
    assert today["heals"] == 2 and today["failures"] >= 3
    assert today["heals_by_source"] == {"predicted": 1, "scan": 1}
    assert today["estimated_minutes_saved"] == 20


def test_monitoring_queries_of_the_seed_still_work(conn):
    migrate(conn, "CREATE TABLE app.t (e citext)")
    assert len(conn.execute(
        "SELECT * FROM heal.build_events WHERE event_type = 'auto_heal_success' "
        "ORDER BY created_at DESC LIMIT 10;"
    ).fetchall()) == 2  # fmt: skip
    assert conn.execute(
        "SELECT * FROM heal.universal_error_patterns "
        "WHERE category = 'auto_heal' AND auto_fixable = true;"
    ).fetchall()


def health(conn) -> dict[str, tuple[str, str]]:
    return {r[0]: (r[1], r[3]) for r in conn.execute("SELECT * FROM heal.health")}


def test_health_reports_each_part_broken_on_purpose(conn, dsn):
    schedule.unschedule(dsn, conn)  # no pg_cron run may come in between
    conn.execute("SELECT heal.skip_log_backlog()")  # nor errors other tests logged
    checks = health(conn)
    assert checks["plpython"][0] == "ok" and checks["pglast"][0] == "ok"
    assert checks["scan"][0] == "ok"  # just installed: no scan is due yet
    conn.execute("UPDATE heal.installation SET installed_at = now() - interval '1 hour'")
    assert health(conn)["scan"] == ("warn", "pgheal schedule  (or CALL heal.scan(); by hand)")
    conn.execute("CALL heal.scan()")
    assert health(conn)["scan"][0] == "ok"
    # The scan stopped running (unscheduled): overdue.
    conn.execute("UPDATE heal.scans SET started_at = now() - interval '2 hours'")
    assert health(conn)["scan"][0] == "warn"
    # Predictive healing switched off.
    conn.execute("UPDATE heal.settings SET value = 'off' WHERE name = 'predictive'")
    assert health(conn)["event_triggers"] == ("warn", "pgheal predictive on")
    # Extensions where sessions cannot see them.
    conn.execute("UPDATE heal.settings SET value = 'off' WHERE name = 'persist_search_path'")
    migrate(conn, "CREATE TABLE x (e citext)")
    status, remedy = health(conn)["policy"]
    assert status == "warn"
    conn.execute(remedy)  # as written
    assert health(conn)["policy"][0] == "ok"
    # pglast missing on the server (a new backend: the old one has it loaded).
    conn.execute("UPDATE heal.installation SET python_path = '/nonexistent'")
    with connect(dsn) as fresh:
        status, remedy = health(fresh)["pglast"]
    assert status == "error" and remedy.startswith("pgheal server-deps --target /nonexistent")


def test_status_and_doctor_commands(conn, dsn):
    status = pgheal("status", "--json", "--dsn", dsn)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["status"] == "warn" and report["last_24h"]["heals"] == 0
    assert {c["name"] for c in report["checks"]} >= {"pglast", "scan", "log_intake"}
    human = pgheal("status", "--dsn", dsn)
    assert "pgheal: warn" in human.stdout and "last 24 h: 0 heals" in human.stdout
    doctor = pgheal("doctor", "--dsn", dsn)
    assert doctor.returncode == 1  # the scan is not scheduled in pg_cron
    assert "the scan is not scheduled in pg_cron (in database postgres)" in doctor.stdout
    assert "pgheal schedule" in doctor.stdout
    conn.execute("UPDATE heal.installation SET python_path = '/nonexistent'")
    broken = pgheal("status", "--json", "--dsn", dsn)
    assert broken.returncode == 1 and json.loads(broken.stdout)["status"] == "error"


def test_events_command_and_follow(conn, dsn):
    migrate(conn, "CREATE TABLE t (e citext)")
    listed = pgheal("events", "--json", "--since", "10m", "--dsn", dsn)
    assert listed.returncode == 0, listed.stderr
    events = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [e["event_type"] for e in events][-2:] == ["auto_heal_success", "migration_succeeded"]
    bad = pgheal("events", "--since", "soon", "--dsn", dsn)
    assert bad.returncode == 2 and "--since takes a number" in bad.stderr

    follower = subprocess.Popen(
        [sys.executable, "-m", "pgheal.cli", "events", "--follow", "--count", "2", "--json",
         "--since", "1s", "--dsn", dsn],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    # Events arrive through LISTEN/NOTIFY; migrate until the follower has seen two.
    stop = threading.Event()

    def produce() -> None:
        with connect(dsn) as producer:
            while not stop.wait(0.2):
                producer.execute("CALL heal.migrate('SELECT 1')")

    thread = threading.Thread(target=produce)
    thread.start()
    try:
        out, err = follower.communicate()
    finally:
        stop.set()
        thread.join()
    assert follower.returncode == 0, err
    followed = [json.loads(line) for line in out.splitlines()]
    assert [e["event_type"] for e in followed[-2:]] == ["migration_started", "migration_succeeded"]
