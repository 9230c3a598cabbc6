"""``heal.health``: pgheal checks its own machinery, like a linter.

Each check returns a row: name, status (``ok``, ``warn``, ``error``), what was found,
and the exact thing to do about it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

from . import PGLAST_VERSION, advice
from .db import cancelled, database_search_path, fetch, fetch_value, server_info, settings
from .logs import reading_order
from .policy import Policy
from .scanner import log_files, log_source

Row = dict[str, str | None]


def _row(name: str, status: str, detail: str, remediation: str | None = None) -> Row:
    return {"name": name, "status": status, "detail": detail, "remediation": remediation}


def plpython() -> Row:
    return _row("plpython", "ok", f"PL/Python runs Python {sys.version.split()[0]}")


def pglast() -> Row:
    info = server_info()
    path = fetch_value("SELECT python_path FROM heal.installation")
    where = info.get("pglast_path") or ""
    if info.get("pglast") == PGLAST_VERSION and where.startswith(str(path)):
        return _row("pglast", "ok", f"pglast {PGLAST_VERSION} from {where}")
    found = info.get("error") or f"pglast {info.get('pglast')} from {where}"
    return _row(
        "pglast", "error", f"the server cannot use pglast {PGLAST_VERSION}: {found}",
        f"pgheal server-deps --target {path}  (on the database host), then reconnect",
    )  # fmt: skip


def extension_catalog() -> Row:
    current = fetch_value(
        """SELECT md5(string_agg(name || ':' || version, ',' ORDER BY name, version))
             FROM pg_catalog.pg_available_extension_versions"""
    )
    built = fetch(
        "SELECT fingerprint, objects, built_at::text FROM heal.extension_catalog_builds "
        "ORDER BY id DESC LIMIT 1"
    )
    if built and built[0]["fingerprint"] == current:
        return _row("extension_catalog", "ok",
                    f"{built[0]['objects']} objects, built {built[0]['built_at']}")  # fmt: skip
    return _row(
        "extension_catalog", "warn",
        "the server's extensions changed since the catalog was built (it is rebuilt at the "
        "next heal)", "SELECT heal.refresh_extension_catalog();",
    )  # fmt: skip


def pg_cron() -> Row:
    preload = fetch_value("SELECT current_setting('shared_preload_libraries')") or ""
    if "pg_cron" in preload:
        database = fetch_value("SELECT current_setting('cron.database_name', true)")
        return _row("pg_cron", "ok", f"pg_cron is preloaded (cron.database_name = {database})")
    database = fetch_value("SELECT current_database()")
    return _row("pg_cron", "warn", "pg_cron is not preloaded: the scan cannot be scheduled",
                advice.preload_pg_cron(preload, database))  # fmt: skip


def _interval_minutes(schedule: str) -> int:
    minute = schedule.split()[0] if schedule.split() else "*"
    match = re.fullmatch(r"\*/(\d+)", minute)
    if match:
        return int(match.group(1))
    return 1 if minute == "*" else 60


def scan() -> Row:
    last = fetch(
        """SELECT status, note, started_at::text AS started,
                  extract(epoch FROM now() - started_at) / 60 AS minutes_ago
             FROM heal.scans ORDER BY id DESC LIMIT 1"""
    )
    every = _interval_minutes(settings().get("scan_schedule", "*/5 * * * *"))
    if not last:
        installed = fetch_value(
            "SELECT extract(epoch FROM now() - installed_at) / 60 FROM heal.installation"
        )
        if installed is not None and installed <= 3 * every + 1:
            # Just installed: the first scheduled run is not due yet.
            return _row("scan", "ok", f"no scan yet: pgheal was installed {installed:.0f} min "
                        f"ago, and the scan runs every {every} min once scheduled")  # fmt: skip
        return _row("scan", "warn", "the scan has never run",
                    "pgheal schedule  (or CALL heal.scan(); by hand)")  # fmt: skip
    row = last[0]
    detail = f"last scan {row['started']} ({row['minutes_ago']:.0f} min ago): {row['status']}"
    if row["note"]:
        detail += f" ({row['note']})"
    if row["status"] == "failed":
        recent = "SELECT started_at, status, note FROM heal.scans ORDER BY id DESC LIMIT 5;"
        return _row("scan", "error", detail, recent)
    if row["minutes_ago"] > 3 * every + 1:
        return _row("scan", "warn", detail + "; it is overdue: is it scheduled?",
                    "pgheal schedule")  # fmt: skip
    return _row("scan", "ok", detail)


def cron_runs() -> Row:
    """The scan job's last run as pg_cron saw it, where pg_cron lives in this database."""
    if not fetch_value("SELECT to_regclass('cron.job_run_details') IS NOT NULL"):
        where = fetch_value("SELECT current_setting('cron.database_name', true)")
        return _row("cron_runs", "ok", f"pg_cron's jobs are in database {where}: pgheal "
                    "doctor reads them there")  # fmt: skip
    database = fetch_value("SELECT current_database()")
    job = fetch(
        """SELECT jobid, jobname, schedule FROM cron.job
            WHERE jobname = 'heal-autonomous-scan' AND database = $1""",
        database,
    )
    if not job:
        return _row("cron_runs", "warn", "the scan is not scheduled in pg_cron", "pgheal schedule")
    runs = fetch(
        """SELECT status, return_message, start_time::text AS started
             FROM cron.job_run_details WHERE jobid = $1 ORDER BY runid DESC LIMIT 1""",
        job[0]["jobid"],
        types=("int8",),
    )
    if not runs:
        return _row("cron_runs", "ok", f"pg_cron job {job[0]['jobname']} "
                    f"('{job[0]['schedule']}' GMT) has not run yet")  # fmt: skip
    run = runs[0]
    if run["status"] == "failed":
        return _row("cron_runs", "error", f"the last run failed: {run['return_message']}",
                    f"SELECT * FROM cron.job_run_details WHERE jobid = {job[0]['jobid']} "
                    "ORDER BY runid DESC LIMIT 5; if pg_cron could not connect, set cron.host "
                    "and pg_hba.conf so that it can log in as the job's user")  # fmt: skip
    return _row("cron_runs", "ok", f"last run {run['started']}: {run['status']}")


def log_intake() -> Row:
    directory, fmt, why = log_source()
    if directory is None:
        return _row("log_intake", "warn", why,
                    "ALTER SYSTEM SET logging_collector = on; ALTER SYSTEM SET log_destination "
                    "= 'stderr,csvlog'; then restart the server")  # fmt: skip
    state = fetch("SELECT log_file, log_offset FROM heal.log_intake")
    if not state or state[0]["log_file"] is None:
        return _row("log_intake", "ok", f"{fmt}log in {directory}; not read yet")
    behind = (
        sum(f.size for f in log_files(directory, fmt) if f.name >= state[0]["log_file"])
        - state[0]["log_offset"]
    )
    status = "ok" if behind < 16 * 1024 * 1024 else "warn"
    remedy = None if status == "ok" else "CALL heal.scan(); or raise scan_max_bytes"
    detail = f"{fmt}log in {directory}; {max(behind, 0)} bytes not read yet"
    return _row("log_intake", status, detail, remedy)


#: Scans in a row that read nothing while bytes waited: the intake is stuck.
_IDLE_SCANS = 3


def log_progress() -> Row:
    """Whether intake keeps up: scans that read nothing while the log holds bytes they
    could have read mean it is stuck; records too large for one read (their errors are
    recorded, their statements truncated) are worth knowing about."""
    directory, fmt, _ = log_source()
    state = fetch("SELECT log_file, log_offset, file_mtime, file_inode FROM heal.log_intake")
    if directory is None:
        return _row("log_progress", "ok", "log intake is off (see log_intake)")
    if not state or state[0]["log_file"] is None:
        return _row("log_progress", "ok", "nothing read yet")
    runs = fetch(
        f"""SELECT bytes_read, extract(epoch FROM started_at) AS started FROM heal.scans
             WHERE status = 'ok' ORDER BY id DESC LIMIT {_IDLE_SCANS}"""
    )
    if len(runs) == _IDLE_SCANS and not any(r["bytes_read"] for r in runs):
        unread, before = _unread(directory, fmt or "csv", state[0], float(runs[-1]["started"]))
        # Bytes that were there before the idle scans began, or more than one scan may
        # read (a busy log is written all the time): they should have read something.
        if before or unread > Policy.from_settings(settings()).scan_max_bytes:
            where = f"{state[0]['log_file']} byte {state[0]['log_offset']}"
            return _row(
                "log_progress", "warn",
                f"the last {_IDLE_SCANS} scans read nothing, yet {unread} bytes of the log "
                f"wait past {where}: log intake is stuck",
                "see the note of the last rows of heal.scans; SELECT heal.skip_log_backlog(); "
                "starts over at the end of the log",
            )  # fmt: skip
    return _oversized_records()


def _unread(directory: str, fmt: str, state: dict, started: float) -> tuple[int, int]:
    """Unread bytes past the saved position: in all, and in log files last written before
    `started`."""
    position = (state["log_file"], state["log_offset"], state["file_mtime"], state["file_inode"])
    plan = reading_order(log_files(directory, fmt), *position)
    waiting = [(f.size - offset, f.mtime < started) for f, offset in plan if f.size > offset]
    return sum(n for n, _ in waiting), sum(n for n, old in waiting if old)


def _oversized_records() -> Row:
    """Scans of the last day that skipped records larger than scan_max_bytes."""
    notes = [
        r["note"]
        for r in fetch(
            """SELECT note FROM heal.scans WHERE started_at > now() - interval '1 day'
                  AND note LIKE '%oversized log record%'"""
        )
    ]
    if not notes:
        return _row("log_progress", "ok", "the scan keeps up with the log")
    sizes = [int(n) for note in notes
             for n in re.findall(r"skipped (\d+) bytes of an oversized", note)]  # fmt: skip
    largest = max(sizes, default=0)
    current = Policy.from_settings(settings()).scan_max_bytes
    wanted = min(2**31, -(-largest // 2**20) * 2**20)
    remedy = (
        f"UPDATE heal.settings SET value = '{wanted}' WHERE name = 'scan_max_bytes';  "
        "(only to keep such statements whole)"
        if wanted > current
        else None
    )
    return _row(
        "log_progress", "warn",
        f"{len(notes)} scans in the last 24 hours skipped log records larger than "
        f"scan_max_bytes ({current}), the largest {largest} bytes: their errors are recorded, "
        "their statements truncated",
        remedy,
    )  # fmt: skip


def event_triggers() -> Row:
    states = {
        r["evtname"]: r["evtenabled"]
        for r in fetch(
            "SELECT evtname, evtenabled FROM pg_catalog.pg_event_trigger "
            "WHERE evtname LIKE 'heal\\_%'"
        )
    }
    missing = {"heal_predict_ddl", "heal_ddl_log"} - states.keys()
    if missing:
        return _row("event_triggers", "error", f"missing: {', '.join(sorted(missing))}",
                    "pgheal install")  # fmt: skip
    if states["heal_predict_ddl"] == "D":
        return _row("event_triggers", "warn", "predictive healing of DDL is off",
                    "pgheal predictive on")  # fmt: skip
    if states["heal_ddl_log"] == "D":
        return _row("event_triggers", "warn", "DDL is not recorded: nothing to learn from",
                    "ALTER EVENT TRIGGER heal_ddl_log ENABLE;")  # fmt: skip
    return _row("event_triggers", "ok", "heal_predict_ddl and heal_ddl_log are enabled")


def policy() -> Row:
    current = Policy.from_settings(settings())
    schema = current.extension_schema
    used = fetch_value(
        """SELECT count(*) FROM pg_catalog.pg_extension e
             JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE n.nspname = $1""",
        schema,
    )
    path = database_search_path()
    if used and schema not in path:
        database = fetch_value("SELECT current_database()")
        return _row(
            "policy", "warn",
            f"{used} extensions live in schema {schema}, which is not on the database's "
            "search_path: sessions that do not set it cannot see them",
            advice.database_search_path(database, [*path, schema]),
        )  # fmt: skip
    return _row("policy", "ok", f"extensions go to schema {schema}")


def retention() -> Row:
    current = Policy.from_settings(settings())
    oldest = fetch_value(
        "SELECT extract(epoch FROM now() - min(logged_at)) / 86400 FROM heal.error_events"
    )
    if oldest is not None and oldest > current.retention_error_events_days + 1:
        return _row("retention", "warn",
                    f"heal.error_events holds rows {oldest:.0f} days old: is the scan running?",
                    "pgheal schedule")  # fmt: skip
    return _row("retention", "ok",
                f"error events kept {current.retention_error_events_days} days, build events "
                f"{current.retention_build_events_days} days")  # fmt: skip


#: How long a subscription may go without confirming a position to its publisher
#: (it does after each batch, and at least every wal_sender_timeout / 2 when idle)
#: before it lags.
NETWORK_LAG_SECONDS = 300


def network() -> Row:
    """The learning network's subscriptions are enabled, running, applying and not
    lagging; their first copy finished; no slot of pgheal's on this server is left
    without a subscriber, keeping WAL."""
    rows = fetch(
        """SELECT role, subscription, enabled, running, errors, tables_syncing,
                  extract(epoch FROM lag)::float8 AS lag FROM heal.network"""
    )
    role = rows[0]["role"] if rows else "alone"
    subs = [r for r in rows if r["subscription"] is not None]
    problems, fixes, status = [], [], "ok"

    def found(problem: str, fix: str, level: str = "error") -> None:
        nonlocal status
        problems.append(problem)
        fixes.append(fix)
        status = "error" if "error" in (status, level) else level

    if role == "member" and not subs:
        found("this database joined a hub, and its subscription to it is gone",
              "pgheal network leave --dsn MEMBER --hub HUB, then pgheal network join")  # fmt: skip
    if role == "hub":
        missing = fetch_value(
            """SELECT string_agg(n.subscription, ', ') FROM heal.network_members n
                WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_subscription s
                                   WHERE s.subname = n.subscription)"""
        )
        if missing:
            found(f"members without a subscription on this hub: {missing}",
                  "pgheal network leave --dsn HUB --member ID for each")  # fmt: skip
    for r in subs:
        name = r["subscription"]
        if not r["enabled"]:
            found(f"subscription {name} is disabled",
                  f"ALTER SUBSCRIPTION {advice.identifier(name)} ENABLE;")  # fmt: skip
        elif not r["running"]:
            cause = (f"it failed {r['errors']} times (pg_stat_subscription_stats)"
                     if r["errors"] else "its publisher is unreachable, or "
                     "max_logical_replication_workers is used up")  # fmt: skip
            found(f"subscription {name} has no worker running: {cause}",
                  "see the server log for the worker's error")  # fmt: skip
        elif r["lag"] is None or r["lag"] > NETWORK_LAG_SECONDS:
            since = "never" if r["lag"] is None else f"{r['lag'] / 60:.0f} min ago"
            found(f"subscription {name} lags: it last confirmed a position {since}",
                  "check that the publisher is up and reachable, and the server log for "
                  "what blocks applying")  # fmt: skip
        if r["tables_syncing"]:
            found(f"subscription {name}: the first copy of its table has not finished",
                  "if it stays: raise max_logical_replication_workers (and "
                  "max_sync_workers_per_subscription) and restart", "warn")  # fmt: skip
    abandoned = fetch(
        """SELECT slot_name,
                  pg_catalog.pg_size_pretty(pg_catalog.pg_wal_lsn_diff(
                      pg_catalog.pg_current_wal_lsn(), restart_lsn)) AS kept
             FROM pg_catalog.pg_replication_slots
            WHERE slot_name ~ '^pgheal_' AND NOT active
              AND database = pg_catalog.current_database()"""
    )
    if abandoned:
        found("replication slots with no subscriber connected, keeping WAL: "
              + ", ".join(f"{a['slot_name']} ({a['kept']})" for a in abandoned),
              "bring the subscriber back, or remove it: pgheal network leave (--member ID on "
              "a hub), or SELECT pg_drop_replication_slot(name)", "warn")  # fmt: skip
    if problems:
        return _row("network", status, "; ".join(problems), "; ".join(dict.fromkeys(fixes)))
    if role == "alone":
        return _row("network", "ok", "not in a learning network (pgheal network join)")
    return _row("network", "ok", f"{role}: {len(subs)} subscription{'s' if len(subs) != 1 else ''}"
                " enabled, running and in touch")  # fmt: skip


CHECKS: list[Callable[[], Row]] = [
    plpython, pglast, extension_catalog, pg_cron, scan, cron_runs, log_intake, log_progress,
    event_triggers, policy, retention, network,
]  # fmt: skip


def checks() -> list[Row]:
    """Every check; one that fails to run reports itself as an error."""
    rows = []
    for check in CHECKS:
        try:
            rows.append(check())
        except Exception as exc:
            if cancelled(exc):
                raise
            rows.append(_row(check.__name__, "error", f"the check failed: {exc}", None))
    return rows
