"""Schedule ``heal.scan()`` with pg_cron, from the database pg_cron lives in.

pg_cron runs in one database (``cron.database_name``); a scan for another database
is scheduled there with ``cron.schedule_in_database``. Two jobs of pgheal's own go
with the first scan and leave with the last: pg_cron 1.4 never purges
``cron.job_run_details``, so one purges the rows of pgheal's jobs daily; and pg_cron
keeps a job whose database was dropped (it then fails at every run, and would scan
a new database of that name), so another removes such jobs every minute.
DROP DATABASE fires no event trigger: that minute is as soon as anything can know.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
from psycopg.rows import dict_row

from heal import advice

from . import session

JOB = "heal-autonomous-scan"
PURGE_JOB = "heal-purge-run-details"
JANITOR_JOB = "heal-drop-orphaned-jobs"
#: Jobs that belong to one database: its scan, and the retries the scan schedules
#: there (heal.scanner.RETRY_JOB).
DATABASE_JOBS = (f"{JOB}%", "heal-retry:%")
COMMAND = "CALL heal.scan()"
#: Where a scan job names the database it was scheduled for: pg_cron knows a
#: database by name only, and a database dropped and made again under that name (by
#: its owner, say) must not get a superuser's scan.
OID_MARK = "/* pgheal database oid {oid} */"
_SCAN = """DO $$BEGIN
IF (SELECT d.oid FROM pg_catalog.pg_database d
     WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
   OPERATOR(pg_catalog.<>) {oid}::pg_catalog.oid THEN
    RAISE EXCEPTION 'pgheal: database % is not the one this scan was scheduled for (it was '
        'dropped, and this one has its name): run pgheal unschedule --orphans',
        pg_catalog.current_database();
END IF;
END$$; CALL heal.scan() {mark}"""
#: pgheal's jobs whose database no longer exists, or exists under a new oid (run by
#: the janitor, and by ``pgheal unschedule --orphans``); then pgheal's own two, once
#: no scan is left. On pgheal's own path: pg_cron's database may be anybody's.
JANITOR_COMMAND = f"""SET search_path = pg_catalog, pg_temp;
SELECT cron.unschedule(j.jobid) FROM cron.job j
 WHERE (j.jobname LIKE '{DATABASE_JOBS[0]}' OR j.jobname LIKE '{DATABASE_JOBS[1]}')
   AND NOT EXISTS (SELECT FROM pg_database d WHERE d.datname = j.database
                      AND (j.command NOT LIKE '%pgheal database oid%'
                           OR j.command LIKE '%pgheal database oid ' || d.oid || ' */%'));
SELECT cron.unschedule(j.jobid) FROM cron.job j
 WHERE j.jobname IN ('{PURGE_JOB}', '{JANITOR_JOB}')
   AND NOT EXISTS (SELECT FROM cron.job s WHERE s.jobname LIKE '{DATABASE_JOBS[0]}')"""


def scan_command(oid: int) -> str:
    """The scan's job command for the database of oid `oid`: it refuses to run anywhere else."""
    return _SCAN.format(oid=int(oid), mark=OID_MARK.format(oid=int(oid)))


@dataclass(frozen=True)
class Scheduled:
    ok: bool
    message: str
    removed: list[str] = field(default_factory=list)


def job_name(database: str, cron_database: str) -> str:
    """One job per database: job names are unique in pg_cron."""
    return JOB if database == cron_database else f"{JOB}:{database}"


def cron_database(conn: psycopg.Connection) -> str | None:
    """The database pg_cron lives in, if the server preloads it."""
    row = conn.execute(
        "SELECT current_setting('cron.database_name', true), "
        "current_setting('shared_preload_libraries')"
    ).fetchone()
    if row[0] is None or "pg_cron" not in row[1]:
        return None
    return row[0]


@contextmanager
def cron_connection(dsn: str, cron_db: str) -> Iterator[psycopg.Connection]:
    """A connection to pg_cron's database, as the same user."""
    with psycopg.connect(session.own_conninfo(dsn, dbname=cron_db), autocommit=True) as cron:
        yield cron


def _not_preloaded(conn: psycopg.Connection) -> Scheduled:
    preloaded = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()[0]
    return Scheduled(
        False,
        "the scan is not scheduled: pg_cron is not loaded (shared_preload_libraries). "
        f"{advice.preload_pg_cron(preloaded, conn.info.dbname)}. Until then, run "
        "CALL heal.scan() by hand.",
    )


def schedule(dsn: str, conn: psycopg.Connection, every: str | None = None) -> Scheduled:
    """Schedule the scan of `conn`'s database; `every` defaults to heal.settings scan_schedule."""
    database = conn.info.dbname
    cron_db = cron_database(conn)
    if cron_db is None:
        return _not_preloaded(conn)
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
    oid = conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()")
    command = scan_command(oid.fetchone()[0])
    with cron_connection(dsn, cron_db) as cron:
        cron.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        if database == cron_db:
            cron.execute("SELECT cron.schedule(%s, %s, %s)", (name, every, command))
        else:
            cron.execute(
                "SELECT cron.schedule_in_database(%s, %s, %s, %s)",
                (name, every, command, database),
            )
        cron.execute(
            "SELECT cron.schedule(%s, '17 3 * * *', %s)",
            (
                PURGE_JOB,
                "DELETE FROM cron.job_run_details WHERE jobid IN (SELECT jobid FROM cron.job "
                f"WHERE jobname LIKE 'heal-%') AND end_time < now() - interval '{retention} days'",
            ),
        )
        cron.execute("SELECT cron.schedule(%s, '* * * * *', %s)", (JANITOR_JOB, JANITOR_COMMAND))
    where = "" if database == cron_db else f" (from database {cron_db})"
    return Scheduled(True, f"heal.scan() scheduled as pg_cron job {name}: '{every}' GMT{where}")


def unschedule(dsn: str, conn: psycopg.Connection) -> Scheduled:
    """Remove the jobs of `conn`'s database from pg_cron (its scan and its retries), and
    pgheal's own two with the last scan."""
    database = conn.info.dbname

    def work(cron: psycopg.Connection, cron_db: str) -> Scheduled:
        removed = _unschedule(
            cron,
            f"""SELECT jobid, jobname FROM cron.job j
                 WHERE j.database = %s AND (j.jobname LIKE %s
                       OR (j.jobname = %s AND {_BY_SUPERUSER})) ORDER BY jobname""",
            (database, f"heal-retry:{_like(database)}:%", job_name(database, cron_db)),
        )
        removed += _unschedule_own(cron)
        if not removed:
            return Scheduled(True, f"no pg_cron job of database {database}: nothing to unschedule")
        return Scheduled(True, f"pg_cron jobs removed: {', '.join(removed)}", removed)

    return _in_cron(dsn, conn, work)


def unschedule_orphans(dsn: str, conn: psycopg.Connection) -> Scheduled:
    """Remove pgheal's jobs whose database is gone, or has no pgheal any more."""

    def work(cron: psycopg.Connection, _cron_db: str) -> Scheduled:
        found = orphans(dsn, cron)
        removed = _unschedule(
            cron, "SELECT jobid, jobname FROM cron.job WHERE jobid = ANY(%s) ORDER BY jobname",
            ([o.jobid for o in found],),
        )  # fmt: skip
        removed += _unschedule_own(cron)
        if not removed:
            return Scheduled(True, "no orphaned pgheal job in pg_cron")
        why = "; ".join(f"{o.job} ({o.why})" for o in found)
        return Scheduled(True, f"orphaned pg_cron jobs removed: {why}", removed)

    return _in_cron(dsn, conn, work)


def _in_cron(
    dsn: str, conn: psycopg.Connection, work: Callable[[psycopg.Connection, str], Scheduled]
) -> Scheduled:
    """Run `work` in pg_cron's database; say so where pg_cron is not there to change."""
    cron_db = cron_database(conn)
    if cron_db is None:
        return Scheduled(True, "pg_cron is not loaded: nothing to unschedule")
    with cron_connection(dsn, cron_db) as cron:
        if not cron.execute("SELECT to_regclass('cron.job')").fetchone()[0]:
            return Scheduled(True, "pg_cron is not installed: nothing to unschedule")
        return work(cron, cron_db)


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _unschedule(cron: psycopg.Connection, query: str, params: tuple) -> list[str]:
    jobs = cron.execute(query, params).fetchall()
    for jobid, _ in jobs:
        cron.execute("SELECT cron.unschedule(%s)", (jobid,))
    return [name for _, name in jobs]


def _unschedule_own(cron: psycopg.Connection) -> list[str]:
    """pgheal's purge and janitor jobs, once no scan is scheduled."""
    return _unschedule(
        cron,
        f"""SELECT jobid, jobname FROM cron.job j WHERE jobname IN (%s, %s) AND {_BY_SUPERUSER}
              AND NOT EXISTS (SELECT FROM cron.job WHERE jobname LIKE %s) ORDER BY jobname""",
        (PURGE_JOB, JANITOR_JOB, DATABASE_JOBS[0]),
    )


#: pgheal's scans are scheduled by a superuser: a job of that name any other role made
#: (pg_cron's names are unique per user only) is not pgheal's to remove.
_BY_SUPERUSER = """EXISTS (SELECT FROM pg_catalog.pg_roles r
                            WHERE r.rolname = j.username AND r.rolsuper)"""


@dataclass(frozen=True)
class Orphan:
    job: str
    database: str
    why: str
    jobid: int = 0


def orphans(dsn: str, cron: psycopg.Connection) -> list[Orphan]:
    """pgheal's jobs (scans, retries) whose database was dropped, or no longer has pgheal
    (checked by connecting there; a database this user cannot connect to is left alone)."""
    with cron.cursor(row_factory=dict_row) as cur:
        jobs = cur.execute(
            f"""SELECT j.jobid, j.jobname, j.database, d.oid IS NOT NULL AS exists,
                       j.command NOT LIKE '%%pgheal database oid%%'
                       OR j.command LIKE '%%pgheal database oid ' || d.oid || ' */%%' AS same,
                       j.jobname LIKE %s AS retry
                  FROM cron.job j LEFT JOIN pg_database d ON d.datname = j.database
                 WHERE (j.jobname LIKE %s AND {_BY_SUPERUSER}) OR j.jobname LIKE %s
                 ORDER BY j.jobname""",
            (DATABASE_JOBS[1], *DATABASE_JOBS),
        ).fetchall()
    found, installed = [], {}
    for job in jobs:
        if not job["exists"] or not job["same"]:
            why = "its database was dropped" + (
                "" if not job["exists"] else " (the one of that name now is another)"
            )
            found.append(Orphan(job["jobname"], job["database"], why, job["jobid"]))
            continue
        if job["retry"]:
            continue  # a retry is its role's job: removed only with its database
        if job["database"] not in installed:
            installed[job["database"]] = _has_pgheal(dsn, job["database"])
        if installed[job["database"]] is False:
            why = f"pgheal is not installed in database {job['database']}"
            found.append(Orphan(job["jobname"], job["database"], why, job["jobid"]))
    return found


def _has_pgheal(dsn: str, database: str) -> bool | None:
    try:
        with psycopg.connect(session.own_conninfo(dsn, dbname=database), autocommit=True) as other:
            return bool(other.execute(
                "SELECT pg_catalog.to_regproc('heal.scan') IS NOT NULL").fetchone()[0])  # fmt: skip
    except psycopg.Error:
        return None  # not ours to judge


@dataclass
class CronState:
    """What pg_cron knows of this database's scan, read where pg_cron lives."""

    database: str
    job: dict | None = None
    last_run: dict | None = None
    orphans: list[Orphan] = field(default_factory=list)
    problem: str | None = None
    #: Whether this user sees every job (pg_cron shows a role only its own).
    sees_all: bool = True
    #: pg_cron's settings are a superuser's (and pg_read_all_settings') to read.
    hidden: bool = False


def cron_state(dsn: str, conn: psycopg.Connection) -> CronState | None:
    """pg_cron's jobs and run details for `conn`'s database; None without pg_cron."""
    try:
        cron_db = cron_database(conn)
    except psycopg.errors.InsufficientPrivilege:
        return CronState("(not visible to this role)", hidden=True)
    if cron_db is None:
        return None
    state = CronState(cron_db)
    try:
        with cron_connection(dsn, cron_db) as cron:
            if not cron.execute("SELECT to_regclass('cron.job')").fetchone()[0]:
                return state
            state.sees_all = bool(cron.execute(
                "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user"
            ).fetchone()[0])  # fmt: skip
            with cron.cursor(row_factory=dict_row) as cur:
                state.job = cur.execute(
                    "SELECT jobid, jobname, schedule, database, username, active FROM cron.job "
                    "WHERE jobname = %s",
                    (job_name(conn.info.dbname, cron_db),),
                ).fetchone()
                if state.job is not None:
                    state.last_run = cur.execute(
                        """SELECT status, return_message, start_time, end_time
                             FROM cron.job_run_details WHERE jobid = %s
                            ORDER BY runid DESC LIMIT 1""",
                        (state.job["jobid"],),
                    ).fetchone()
            state.orphans = orphans(dsn, cron)
    except psycopg.Error as exc:
        state.problem = str(exc).strip().splitlines()[0]
    return state
