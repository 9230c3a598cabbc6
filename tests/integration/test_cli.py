"""The CLI as an operator meets it: in a terminal, through pipes, with bad input.

Every failure is one line on stderr and a documented exit code, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .conftest import connect, role_dsn, scalar
from .test_installer import pgheal

CLI = [sys.executable, "-m", "pgheal.cli"]


def _clean(result: subprocess.CompletedProcess, code: int, *words: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) <= 1, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def _role(conn, operator: bool) -> str:
    name = f"cli_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {name} LOGIN" + (" IN ROLE heal_operator" if operator else ""))
    return name


# -- one error path -----------------------------------------------------------------------


def test_a_malformed_dsn_is_one_line(dsn):
    _clean(pgheal("status", "--dsn", "host=/tmp port"), 2, "not a connection string")


def test_a_database_without_pgheal_says_install(conn, dsn):
    name = f"bare_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE DATABASE {name}")
    try:
        bare = make_conninfo(dsn, dbname=name)
        for command in (["status"], ["doctor"], ["events"], ["patterns", "list"]):
            _clean(pgheal(*command, "--dsn", bare), 2, "pgheal is not installed", "pgheal install")
    finally:
        conn.execute(f"DROP DATABASE {name}")


def test_a_role_without_heal_operator_is_told_the_grant(conn, dsn):
    nobody = _role(conn, operator=False)
    _clean(pgheal("status", "--dsn", role_dsn(dsn, nobody)), 2,
           f"GRANT heal_operator TO {nobody}")  # fmt: skip


def test_settings_changed_by_an_operator_name_who_may(conn, dsn):
    op = _role(conn, operator=True)
    _clean(pgheal("predictive", "off", "--dsn", role_dsn(dsn, op)), 2, "superuser")
    assert scalar(conn, "SELECT value FROM heal.settings WHERE name = 'predictive'") == "on"


def test_bad_input_is_one_line(dsn, tmp_path):
    _clean(pgheal("schedule", "--every", "now and then", "--dsn", dsn), 2)
    _clean(pgheal("patterns", "import", "--file", str(tmp_path / "none.json"), "--dsn", dsn), 2,
           "No such file")  # fmt: skip
    _clean(pgheal("migrate", "--dsn", dsn, str(tmp_path / "none")), 2, "no such file")
    _clean(pgheal("status", "--dsn", "host=/nonexistent/socket"), 2, "cannot connect")


def test_ctrl_c_during_a_migration_rolls_it_back_and_says_so(conn, dsn, tmp_path):
    script = tmp_path / "0001_slow.sql"
    script.write_text("CREATE TABLE before_sleep (a int);\nSELECT pg_sleep(60);\n")
    child = subprocess.Popen([*CLI, "migrate", "--dsn", dsn, str(script)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    for _ in range(300):
        if scalar(
            conn,
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE query LIKE 'CALL heal.migrate%' AND wait_event = 'PgSleep'",
        ):
            break
        time.sleep(0.1)
    else:
        child.kill()
        pytest.fail("the migration never started")
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
    _clean(subprocess.CompletedProcess(child.args, child.returncode, out, err), 130,
           "interrupted", "rolled back")  # fmt: skip
    assert scalar(conn, "SELECT to_regclass('before_sleep')") is None
    assert not scalar(conn, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'PgSleep'")


def test_output_closed_early_is_quiet(conn, dsn):
    for _ in range(200):
        conn.execute("CALL heal.migrate('SELECT 1')")
    piped = subprocess.run(
        ["bash", "-c", 'set -o pipefail; "$@" | head -n 1', "_", *CLI, "events", "--json",
         "--since", "1h", "--dsn", dsn],
        capture_output=True, text=True,
    )  # fmt: skip
    assert piped.stderr == "", piped.stderr
    assert piped.returncode == 141
    assert json.loads(piped.stdout)["event_type"]


# -- connection options, as psql's --------------------------------------------------------


def test_connection_options_before_or_after_the_command(conn, dsn):
    info = conninfo_to_dict(dsn)
    options = ["-h", info["host"], "-p", str(info["port"]), "-U", info["user"],
               "-d", info["dbname"]]  # fmt: skip
    env = {"PGHEAL_DSN": "", "PGHOST": "/nonexistent", "PGDATABASE": "nonexistent"}
    for argv in (["--json", *options, "status"], ["status", *options, "--json"],
                 [*options, "status", "--json"]):  # fmt: skip
        result = pgheal(*argv, env=env)
        assert result.returncode in (0, 1), result.stderr
        assert json.loads(result.stdout)["status"] in ("ok", "warn", "error")
    # -d after the command wins over --dsn before it
    other = pgheal("--dsn", make_conninfo(dsn, dbname="nonexistent"), "status", "-d",
                   info["dbname"], "--json")  # fmt: skip
    assert other.returncode in (0, 1), other.stderr


# -- events --follow in a terminal ----------------------------------------------------------


def test_events_follow_prints_in_a_terminal(conn, dsn):
    master, slave = pty.openpty()
    follower = subprocess.Popen([*CLI, "events", "--follow", "--count", "2", "--since", "1s",
                                 "--dsn", dsn], stdout=slave, stderr=subprocess.PIPE,
                                stdin=slave, env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    os.close(slave)
    stop = threading.Event()

    def produce() -> None:
        with connect(dsn) as producer:
            while not stop.wait(0.3):
                with contextlib.suppress(psycopg.Error):
                    producer.execute("CALL heal.migrate($m$DO $d$ BEGIN RAISE EXCEPTION "
                                     "'[/] [bold]not markup[/bold]'; END $d$$m$)")  # fmt: skip

    thread = threading.Thread(target=produce)
    thread.start()
    seen = b""
    try:
        deadline = time.monotonic() + 120
        while follower.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break
        follower.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still following: {seen.decode(errors='replace')}")
    finally:
        stop.set()
        thread.join()
        if follower.poll() is None:
            follower.kill()
        os.close(master)
    assert follower.returncode == 0, follower.stderr.read()
    text = seen.decode(errors="replace")
    assert "migration_started" in text and "migration_failed" in text, text
    assert "[/] [bold]not markup[/bold]" in text, text


# -- JSON -----------------------------------------------------------------------------------


def test_json_times_are_iso_8601_and_notices_are_kept(conn, dsn, tmp_path):
    (tmp_path / "0001_t.sql").write_text("CREATE TABLE t (e citext);\n")
    migrated = pgheal("migrate", "--json", "--dsn", dsn, str(tmp_path))
    assert migrated.returncode == 0, migrated.stderr
    [outcome] = json.loads(migrated.stdout)
    assert any("citext" in n for n in outcome["notices"]), outcome
    events = pgheal("events", "--json", "--since", "10m", "--dsn", dsn)
    for line in events.stdout.splitlines():
        datetime.fromisoformat(json.loads(line)["created_at"])
    toggled = pgheal("patterns", "disable", "999999", "--json", "--dsn", dsn)
    _clean(toggled, 2, "no learned pattern")


# -- uninstall ------------------------------------------------------------------------------


def _jobs(conn) -> list[tuple]:
    with connect(make_conninfo(conn.info.dsn, dbname="postgres")) as cron:
        return cron.execute("SELECT jobname, schedule FROM cron.job ORDER BY jobid").fetchall()


def test_a_refused_uninstall_changes_nothing(conn, dsn):
    scheduled = pgheal("schedule", "--dsn", dsn)
    assert scheduled.returncode == 0, scheduled.stderr
    jobs = _jobs(conn)
    assert any(conn.info.dbname in name for name, _ in jobs), jobs
    asked = pgheal("uninstall", "--dsn", dsn)  # no terminal: it cannot ask
    _clean(asked, 2, "--yes")
    conn.execute("CREATE VIEW public.mine AS SELECT name FROM heal.migrations")
    refused = pgheal("uninstall", "--yes", "--dsn", dsn)
    _clean(refused, 2, "depend on pgheal")
    assert _jobs(conn) == jobs
    assert scalar(conn, "SELECT to_regnamespace('heal')::text") == "heal"
    conn.execute("DROP VIEW public.mine")
    removed = pgheal("uninstall", "--yes", "--dsn", dsn)
    assert removed.returncode == 0, removed.stderr
    assert not any(conn.info.dbname in name for name, _ in _jobs(conn))
