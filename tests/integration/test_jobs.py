"""pg_cron's jobs as pgheal leaves them: a fresh install is all ok; jobs follow their
database (uninstall, DROP DATABASE); orphans are named and removed; the history
outlives an uninstall and comes back with the next install."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
from psycopg.conninfo import make_conninfo

from pgheal import schedule

from .conftest import connect, scalar
from .test_installer import pgheal


def cron_jobs(conn, like: str = "heal-%") -> list[tuple[str, str]]:
    """(jobname, database) of pgheal's jobs, read in pg_cron's database."""
    with connect(make_conninfo(_dsn(conn), dbname="postgres")) as cron:
        return cron.execute(
            "SELECT jobname, database FROM cron.job WHERE jobname LIKE %s ORDER BY jobname",
            (like,),
        ).fetchall()


def _dsn(conn) -> str:
    info = conn.info
    return f"host={info.host} port={info.port} user={info.user} dbname={info.dbname}"


@pytest.fixture
def installed(conn) -> Iterator[str]:
    """A new database with pgheal installed by the CLI, as a newcomer does: scheduled."""
    name = f"jobs_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE DATABASE {name}")
    dsn = make_conninfo(_dsn(conn), dbname=name)
    done = pgheal("install", "--dsn", dsn)
    assert done.returncode == 0, done.stderr
    yield dsn
    conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    pgheal("unschedule", "--orphans", "--dsn", _dsn(conn))


def test_a_fresh_install_is_all_ok(conn, installed):
    doctor = pgheal("doctor", "--json", "--dsn", installed)
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert doctor.returncode == 0, checks
    assert {c["status"] for c in checks.values()} == {"ok"}, checks
    name = installed.split("dbname=")[1].split()[0]
    assert checks["cron_runs"]["detail"].startswith(
        f"pg_cron job heal-autonomous-scan:{name} ('*/5 * * * *' GMT) has not run yet"
    )
    assert checks["cron_jobs"]["detail"] == "no orphaned pgheal job in database postgres"
    human = pgheal("doctor", "--dsn", installed)
    assert human.returncode == 0 and "all checks pass" in human.stdout, human.stdout
    status = pgheal("status", "--dsn", installed)
    assert status.returncode == 0 and "pgheal: ok" in status.stdout, status.stdout


def test_doctor_reads_pg_cron_s_last_run_where_pg_cron_lives(conn, installed):
    name = installed.split("dbname=")[1].split()[0]
    with connect(make_conninfo(installed, dbname="postgres")) as cron:
        jobid = cron.execute("SELECT jobid FROM cron.job WHERE jobname = %s",
                             (f"heal-autonomous-scan:{name}",)).fetchone()[0]  # fmt: skip
        cron.execute(
            """INSERT INTO cron.job_run_details (jobid, runid, job_pid, database, username,
                      command, status, return_message, start_time, end_time)
               VALUES (%s, nextval('cron.runid_seq'), 1, %s, 'postgres', 'CALL heal.scan()',
                       'failed', 'connection failed', now(), now())""",
            (jobid, name),
        )
    doctor = pgheal("doctor", "--json", "--dsn", installed)
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert doctor.returncode == 1
    assert checks["cron_runs"]["status"] == "error"
    assert "failed" in checks["cron_runs"]["detail"]
    assert "connection failed" in checks["cron_runs"]["detail"]
    assert "cron.host" in checks["cron_runs"]["remediation"]


def test_jobs_follow_their_database(conn, installed):
    name = installed.split("dbname=")[1].split()[0]
    assert (f"heal-autonomous-scan:{name}", name) in cron_jobs(conn)
    assert {j for j, _ in cron_jobs(conn)} >= {schedule.PURGE_JOB, schedule.JANITOR_JOB}
    # A retry the scan scheduled there belongs to that database too.
    with connect(make_conninfo(installed, dbname="postgres")) as cron:
        cron.execute("SELECT cron.schedule_in_database(%s, '* * * * *', 'SELECT 1', %s)",
                     (f"heal-retry:{name}:7", name))  # fmt: skip
    conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
    # Before pg_cron's janitor gets to them, doctor (from any pgheal database) names them.
    doctor = pgheal("doctor", "--json", "--dsn", _dsn(conn))
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["cron_jobs"]["status"] == "warn"
    detail = checks["cron_jobs"]["detail"]
    assert f"heal-autonomous-scan:{name} (its database was dropped)" in detail
    assert checks["cron_jobs"]["remediation"] == "pgheal unschedule --orphans"
    # pg_cron's janitor removes them within a minute.
    for _ in range(150):
        if not [j for j in cron_jobs(conn) if j[1] == name]:
            break
        time.sleep(1)
    assert [j for j in cron_jobs(conn) if j[1] == name] == []


def test_unschedule_orphans_removes_jobs_of_dropped_databases_and_of_uninstalled_ones(
    conn, installed
):
    name = installed.split("dbname=")[1].split()[0]
    other = f"gone_{uuid.uuid4().hex[:8]}"
    with connect(make_conninfo(installed, dbname="postgres")) as cron:
        # A job left over from a database that no longer exists.
        conn.execute(f"CREATE DATABASE {other}")
        cron.execute("SELECT cron.schedule_in_database(%s, '*/5 * * * *', %s, %s)",
                     (f"heal-autonomous-scan:{other}", schedule.COMMAND, other))  # fmt: skip
        conn.execute(f"DROP DATABASE {other}")
    # pgheal dropped by hand (not uninstalled): its job scans nothing now.
    with connect(installed) as db:
        db.execute("DROP SCHEMA heal CASCADE")
    removed = pgheal("unschedule", "--orphans", "--json", "--dsn", _dsn(conn))
    assert removed.returncode == 0, removed.stderr
    said = json.loads(removed.stdout)
    scans = [job for job in said["removed"] if job.startswith(schedule.JOB)]
    assert sorted(scans) == sorted([f"heal-autonomous-scan:{name}",
                                    f"heal-autonomous-scan:{other}"])  # fmt: skip
    # With the last scan gone, pgheal's own two jobs go too.
    assert set(said["removed"]) - set(scans) <= {schedule.PURGE_JOB, schedule.JANITOR_JOB}
    assert "its database was dropped" in said["message"]
    assert f"pgheal is not installed in database {name}" in said["message"]
    assert [j for j in cron_jobs(conn) if j[1] in (name, other)] == []


def test_uninstall_removes_the_database_s_jobs_and_keeps_its_history(conn, installed, tmp_path):
    name = installed.split("dbname=")[1].split()[0]
    (tmp_path / "0001_users.sql").write_text("CREATE TABLE users (id uuid DEFAULT "
                                             "uuid_generate_v4(), e citext);")  # fmt: skip
    (tmp_path / "0002_more.sql").write_text("ALTER TABLE users ADD COLUMN n int;")
    first = pgheal("migrate", "--dsn", installed, str(tmp_path))
    assert first.returncode == 0, first.stderr
    with connect(make_conninfo(installed, dbname="postgres")) as cron:
        cron.execute("SELECT cron.schedule_in_database(%s, '* * * * *', 'SELECT 1', %s)",
                     (f"heal-retry:{name}:1", name))  # fmt: skip
    gone = pgheal("uninstall", "--yes", "--json", "--dsn", installed)
    assert gone.returncode == 0, gone.stderr
    said = json.loads(gone.stdout)
    mine = [job for job in said["jobs_removed"] if name in job]
    assert sorted(mine) == [f"heal-autonomous-scan:{name}", f"heal-retry:{name}:1"]
    assert [j for j in cron_jobs(conn) if j[1] == name] == []
    assert any("kept in schema heal_history" in n for n in said["notes"]), said
    with connect(installed) as db:
        assert scalar(db, "SELECT to_regnamespace('heal')") is None
        assert scalar(db, "SELECT count(*) FROM heal_history.migrations") == 2
        # Nobody but a superuser may touch what the next install adopts.
        assert scalar(db, "SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a "
                          "WHERE c.oid = 'heal_history.migrations'::regclass "
                          "AND a.grantee <> c.relowner") == 0  # fmt: skip
    again = pgheal("install", "--dsn", installed)
    assert again.returncode == 0, again.stderr
    assert "adopted the migration history kept in schema heal_history: 2 runs" in again.stdout
    rerun = pgheal("migrate", "--json", "--dsn", installed, str(tmp_path))
    assert rerun.returncode == 0, rerun.stderr
    assert {o["status"] for o in json.loads(rerun.stdout)} == {"skipped"}, rerun.stdout
    with connect(installed) as db:
        assert scalar(db, "SELECT to_regnamespace('heal_history')") is None
        assert scalar(db, "SELECT count(*) FROM heal.migration_scripts") == 2
    dropped = pgheal("uninstall", "--yes", "--drop-history", "--dsn", installed)
    assert dropped.returncode == 0, dropped.stderr
    with connect(installed) as db:
        assert scalar(db, "SELECT to_regnamespace('heal_history')") is None


def test_a_kept_history_someone_else_could_write_is_not_adopted(conn, installed):
    assert pgheal("uninstall", "--yes", "--dsn", installed).returncode == 0
    with connect(installed) as db:
        role = f"forger_{uuid.uuid4().hex[:8]}"
        db.execute(f"CREATE ROLE {role}")
        db.execute(f"GRANT INSERT ON heal_history.migrations TO {role}")
    refused = pgheal("install", "--dsn", installed)
    assert refused.returncode == 2
    assert 'schema "heal_history" holds a kept migration history' in refused.stderr
    with connect(installed) as db:
        assert scalar(db, "SELECT to_regnamespace('heal')") is None  # nothing half-done
        db.execute(f"REVOKE ALL ON heal_history.migrations FROM {role}")
        db.execute(f"DROP ROLE {role}")
    assert pgheal("install", "--dsn", installed).returncode == 0
