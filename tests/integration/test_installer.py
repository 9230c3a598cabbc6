"""pgheal install / uninstall / migrate / demo, end to end against the cluster."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest

from pgheal import cli, deploy, serverdeps

from .conftest import connect, extensions, migrate, scalar


def pgheal(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pgheal.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_install_is_idempotent(conn):
    before = conn.execute(
        "SELECT count(*) FROM pg_proc WHERE pronamespace = 'heal'::regnamespace"
    ).fetchone()
    report = deploy.install(conn, serverdeps.default_path())
    assert report.scripts_applied == []
    assert report.upgraded_from == report.version
    after = conn.execute(
        "SELECT count(*) FROM pg_proc WHERE pronamespace = 'heal'::regnamespace"
    ).fetchone()
    assert before == after
    migrate(conn, "CREATE TABLE t (e citext);")  # still works after the upgrade


def test_settings_survive_an_upgrade(conn):
    conn.execute("UPDATE heal.settings SET value = '3' WHERE name = 'max_attempts'")
    deploy.install(conn, serverdeps.default_path())
    assert scalar(conn, "SELECT value FROM heal.settings WHERE name = 'max_attempts'") == "3"


def test_uninstall_removes_pgheal_and_keeps_what_it_healed(conn):
    migrate(conn, "CREATE TABLE t (e citext);")
    notes = deploy.uninstall(conn)
    assert scalar(conn, "SELECT to_regnamespace('heal')") is None
    assert "citext" in extensions(conn)
    assert scalar(conn, "SELECT to_regclass('t')::text") == "t"
    # The history is kept; the template database still has pgheal: the shared role
    # stays, and says why.
    assert notes[1:] == [
        "the migration history (1 runs) is kept in schema heal_history: the next pgheal "
        "install adopts it (uninstall --drop-history removes it)",
        "role heal_operator was kept: pgheal is still installed in another database",
    ]
    assert deploy.uninstall(conn)[0].endswith("nothing to remove")
    report = deploy.install(conn, serverdeps.default_path())  # and it comes back cleanly
    assert report.adopted == "adopted the migration history kept in schema heal_history: 1 runs"
    assert scalar(conn, "SELECT count(*) FROM heal.migrations") == 1


def test_uninstall_refuses_to_drop_user_objects(conn):
    conn.execute("CREATE VIEW my_heals AS SELECT id FROM heal.build_events")
    with pytest.raises(deploy.InstallError, match="view my_heals"):
        deploy.uninstall(conn)
    assert scalar(conn, "SELECT to_regnamespace('heal')::text") == "heal"


def test_install_stops_when_the_server_python_lacks_pglast(conn, tmp_path):
    with pytest.raises(deploy.InstallError) as info:
        deploy.install(conn, tmp_path / "empty")
    message = str(info.value)
    assert "cannot import pglast 8.8" in message and "pgheal server-deps --target" in message
    assert scalar(conn, "SELECT python_path FROM heal.installation") == str(
        serverdeps.default_path()
    )  # the failed upgrade left the installation as it was


@pytest.mark.skipif(os.geteuid() != 0, reason="the server runs as this user: it reads what we do")
def test_a_python_path_the_server_cannot_read_is_told_the_command_that_opens_it(conn):
    closed = Path(tempfile.mkdtemp())  # mode 0700, root's: the server's OS user cannot enter
    try:
        site = closed / "site"
        shutil.copytree(serverdeps.default_path(), site)
        with pytest.raises(deploy.InstallError) as info:
            deploy.install(conn, site)
        message = str(info.value)
        assert f"the server runs as OS user postgres, which cannot read {site}" in message
        command = message.split("`")[1]
        assert command == f"chmod o+x {closed}"
        subprocess.run(shlex.split(command), check=True)  # as written
        assert deploy.install(conn, site).pglast == serverdeps.PGLAST_VERSION
    finally:
        shutil.rmtree(closed)


def test_install_needs_a_superuser(conn, dsn):
    conn.execute("CREATE ROLE plain LOGIN")
    plain_dsn = dsn.replace("user=postgres", "user=plain")
    with (
        psycopg.connect(plain_dsn, autocommit=True) as plain,
        pytest.raises(deploy.InstallError, match="is not a superuser"),
    ):
        deploy.install(plain, serverdeps.default_path())


def test_cli_migrate_files_reports_heals_and_exit_codes(conn, dsn, tmp_path):
    good = tmp_path / "0001_users.sql"
    good.write_text("CREATE TABLE users (id uuid DEFAULT uuid_generate_v4());\n")
    bad = tmp_path / "0002_bad.sql"
    bad.write_text("CREATE TABLE oops (x int DEFAULT no_such_function());\n")
    ok = pgheal("migrate", "--dsn", dsn, str(good))
    assert ok.returncode == 0, ok.stderr
    assert "function uuid_generate_v4() -> create schema extensions, install extension" in ok.stdout
    assert "0001_users" in ok.stdout and "applied" in ok.stdout
    failed = pgheal("migrate", str(bad), env={"PGHEAL_DSN": dsn})
    assert failed.returncode == 1
    assert "[42883] function no_such_function() does not exist" in failed.stdout
    missing = pgheal("migrate", "--dsn", dsn, str(tmp_path / "nope.sql"))
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr


def test_cli_reads_libpq_environment(conn, dsn, tmp_path):
    script = tmp_path / "m.sql"
    script.write_text("CREATE TABLE env_t (a int);")
    params = dict(p.split("=", 1) for p in dsn.split())
    env = {"PGHOST": params["host"], "PGPORT": params["port"],
           "PGDATABASE": params["dbname"], "PGUSER": params["user"], "PGHEAL_DSN": ""}  # fmt: skip
    result = pgheal("migrate", str(script), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert scalar(conn, "SELECT to_regclass('env_t')::text") == "env_t"


def test_cli_install_and_uninstall(conn, dsn):
    result = pgheal("install", "--dsn", dsn)
    assert result.returncode == 0, result.stderr
    assert "upgraded from 0.1.0" in result.stdout
    result = pgheal("uninstall", "--yes", "--dsn", dsn)
    assert result.returncode == 0, result.stderr
    assert scalar(conn, "SELECT to_regnamespace('heal')") is None
    bad = pgheal("install", "--dsn", dsn, "--python-path", "/nonexistent")
    assert bad.returncode == 2 and "cannot import pglast" in bad.stderr


def test_cli_reports_connection_failure():
    result = pgheal("install", "--dsn", "host=/nonexistent dbname=x")
    assert result.returncode == 2 and "cannot connect" in result.stderr


def test_demo_heals_and_cleans_up():
    result = pgheal("demo")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "schema app -> create schema app" in out
    assert "type citext -> " in out and "function uuid_generate_v4() -> " in out
    assert "auto_heal_success" in out
    assert "stopped and removed the throwaway cluster" in out


def test_demo_keep_prints_uri_and_stop_command():
    result = pgheal("demo", "--keep")
    assert result.returncode == 0, result.stdout + result.stderr
    uri = next(line.split("'")[1] for line in result.stdout.splitlines() if "postgresql://" in line)
    stop = result.stdout.splitlines()[-1].strip()
    with connect(uri) as demo:
        assert scalar(demo, "SELECT count(*) FROM app.users") == 1
    subprocess.run(stop, shell=True, check=True, capture_output=True)


def test_every_command_speaks_json(conn, dsn, tmp_path):
    """Each of the CLI's commands, with --json: stdout is JSON (one document, or one per
    line for events), whatever else the command shows goes to stderr."""
    (tmp_path / "0001_t.sql").write_text("CREATE TABLE t (e citext);")
    folder, patterns = str(tmp_path), tmp_path / "patterns.json"
    calls = {
        "install": ["install", "--no-schedule"],
        "schedule": ["schedule"],
        "unschedule": ["unschedule"],
        "predictive": ["predictive", "on"],
        "patterns": ["patterns", "export", "--file", str(patterns)],
        "plan": ["plan", folder],
        "migrate": ["migrate", folder],
        "info": ["info", folder],
        "baseline": ["baseline", folder],
        "run": ["run", "--", "true"],
        "status": ["status"],
        "doctor": ["doctor"],
        "events": ["events", "--since", "10m"],
        "network": ["network", "status"],
        "server-deps": ["server-deps"],
        "demo": ["demo"],
        "uninstall": ["uninstall", "--yes"],
    }
    commands = set(cli.parser()._subparsers._group_actions[0].choices)
    assert set(calls) == commands  # a new command needs its --json here
    for command, args in calls.items():
        result = pgheal("--json", "--dsn", dsn, *args)  # before the command: any command
        assert result.returncode in (0, 1), (command, result.stderr)
        # pgheal run leaves stdout to the tool it runs: its own report is on stderr.
        out = result.stderr if command == "run" else result.stdout
        lines = [line for line in out.splitlines() if line.strip()]
        documents = [json.loads(line) for line in lines] if command == "events" else [
            json.loads(out)]  # fmt: skip
        assert documents, command
    installed = json.loads(pgheal("install", "--json", "--no-schedule", "--dsn", dsn).stdout)
    assert installed["version"] == "0.1.0" and installed["extension_objects"] > 1000
    assert installed["database"] == conn.info.dbname and installed["scheduled"] is None
    switched = json.loads(pgheal("predictive", "off", "--json", "--dsn", dsn).stdout)
    assert switched["state"] == "off"
    assert json.loads(pgheal("patterns", "list", "--json", "--dsn", dsn).stdout) == []
    for action in ("import", "enable", "disable"):  # --json for every action, errors too
        extra = ["--file", str(patterns)] if action == "import" else ["1"]
        said = pgheal("patterns", action, *extra, "--json", "--dsn", dsn)
        assert said.returncode in (0, 2), said.stderr
        if said.returncode == 0:
            assert json.loads(said.stdout)
    demo = json.loads(pgheal("demo", "--json").stdout)
    assert demo["ok"] is True and demo["outcomes"][0]["heals"] >= 3
    removed = json.loads(pgheal("uninstall", "--yes", "--json", "--dsn", dsn).stdout)
    assert removed["message"] == f"pgheal removed from database {conn.info.dbname}"
