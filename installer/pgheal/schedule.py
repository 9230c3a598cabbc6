"""Schedule ``heal.scan()`` with pg_cron, from the database pg_cron lives in.

pg_cron runs in one database (``cron.database_name``); a scan for another database
is scheduled there with ``cron.schedule_in_database``. pg_cron 1.4 never purges
``cron.job_run_details``, so a daily job purges the rows of pgheal's own jobs.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg.conninfo import make_conninfo

JOB = "heal-autonomous-scan"
PURGE_JOB = "heal-purge-run-details"
COMMAND = "CALL heal.scan()"


@dataclass(frozen=True)
class Scheduled:
    ok: bool
    message: str


def job_name(database: str, cron_database: str) -> str:
    """One job per database: job names are unique in pg_cron."""
    return JOB if database == cron_database else f"{JOB}:{database}"


def _cron_database(conn: psycopg.Connection) -> str | None:
    row = conn.execute(
        "SELECT current_setting('cron.database_name', true), "
        "current_setting('shared_preload_libraries')"
    ).fetchone()
    if row[0] is None or "pg_cron" not in row[1]:
        return None
    return row[0]


def _not_preloaded(database: str) -> Scheduled:
    return Scheduled(
        False,
        "the scan is not scheduled: pg_cron is not loaded (shared_preload_libraries). Add "
        f"shared_preload_libraries = 'pg_cron' and cron.database_name = '{database}' to "
        "postgresql.conf, restart, then run `pgheal schedule`. Until then, run "
        "CALL heal.scan() by hand.",
    )


def schedule(dsn: str, conn: psycopg.Connection, every: str | None = None) -> Scheduled:
    """Schedule the scan of `conn`'s database; `every` defaults to heal.settings scan_schedule."""
    database = conn.info.dbname
    cron_db = _cron_database(conn)
    if cron_db is None:
        return _not_preloaded(database)
    if every is None:
        every = conn.execute(
            "SELECT value FROM heal.settings WHERE name = 'scan_schedule'"
        ).fetchone()[0]
    else:
        conn.execute("UPDATE heal.settings SET value = %s WHERE name = 'scan_schedule'", (every,))
    retention = conn.execute(
        "SELECT value::int FROM heal.settings WHERE name = 'retention_cron_days'"
    ).fetchone()[0]
    name = job_name(database, cron_db)
    with psycopg.connect(make_conninfo(dsn, dbname=cron_db), autocommit=True) as cron:
        cron.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        if database == cron_db:
            cron.execute("SELECT cron.schedule(%s, %s, %s)", (name, every, COMMAND))
        else:
            cron.execute(
                "SELECT cron.schedule_in_database(%s, %s, %s, %s)",
                (name, every, COMMAND, database),
            )
        cron.execute(
            "SELECT cron.schedule(%s, '17 3 * * *', %s)",
            (
                PURGE_JOB,
                "DELETE FROM cron.job_run_details WHERE jobid IN (SELECT jobid FROM cron.job "
                f"WHERE jobname LIKE '{JOB}%') AND end_time < now() - interval '{retention} days'",
            ),
        )
    where = "" if database == cron_db else f" (from database {cron_db})"
    return Scheduled(True, f"heal.scan() scheduled as pg_cron job {name}: '{every}' GMT{where}")


def unschedule(dsn: str, conn: psycopg.Connection) -> Scheduled:
    """Remove the scan of `conn`'s database from pg_cron (and the purge job with the last one)."""
    database = conn.info.dbname
    cron_db = _cron_database(conn)
    if cron_db is None:
        return Scheduled(True, "pg_cron is not loaded: nothing to unschedule")
    name = job_name(database, cron_db)
    with psycopg.connect(make_conninfo(dsn, dbname=cron_db), autocommit=True) as cron:
        if not cron.execute("SELECT to_regclass('cron.job')").fetchone()[0]:
            return Scheduled(True, "pg_cron is not installed: nothing to unschedule")
        found = cron.execute("SELECT count(*) FROM cron.job WHERE jobname = %s", (name,))
        if found.fetchone()[0]:
            cron.execute("SELECT cron.unschedule(%s)", (name,))
        others = cron.execute(
            "SELECT count(*) FROM cron.job WHERE jobname LIKE %s", (f"{JOB}%",)
        ).fetchone()[0]
        if (
            not others
            and cron.execute(
                "SELECT count(*) FROM cron.job WHERE jobname = %s", (PURGE_JOB,)
            ).fetchone()[0]
        ):
            cron.execute("SELECT cron.unschedule(%s)", (PURGE_JOB,))
    return Scheduled(True, f"pg_cron job {name} removed")
