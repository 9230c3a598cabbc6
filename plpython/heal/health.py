"""``heal.health``: pgheal checks its own machinery, like a linter.

Each check returns a row: name, status (``ok``, ``warn``, ``error``), what was found,
and the exact thing to do about it.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable

from . import PGLAST_VERSION
from .db import database_search_path, fetch, fetch_value, server_info, settings
from .policy import Policy
from .scanner import log_source

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
    return _row(
        "pg_cron", "warn", "pg_cron is not preloaded: the scan cannot be scheduled",
        "add shared_preload_libraries = 'pg_cron' to postgresql.conf, restart, then run "
        "pgheal schedule",
    )  # fmt: skip


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
        return _row("scan", "warn", "the scan has never run",
                    "pgheal schedule  (or CALL heal.scan(); by hand)")  # fmt: skip
    row = last[0]
    detail = f"last scan {row['started']} ({row['minutes_ago']:.0f} min ago): {row['status']}"
    if row["note"]:
        detail += f" ({row['note']})"
    if row["status"] == "failed":
        return _row("scan", "error", detail, "see heal.scans and the server log")
    if row["minutes_ago"] > 3 * every + 1:
        return _row("scan", "warn", detail + "; it is overdue: is it scheduled?",
                    "pgheal schedule")  # fmt: skip
    return _row("scan", "ok", detail)


def cron_runs() -> Row:
    """The scan job's last run as pg_cron saw it, where pg_cron lives in this database."""
    if not fetch_value("SELECT to_regclass('cron.job_run_details') IS NOT NULL"):
        return _row("cron_runs", "ok", "pg_cron's run details are in another database")
    runs = fetch(
        """SELECT d.status, d.return_message, d.start_time::text AS started
             FROM cron.job_run_details d JOIN cron.job j ON j.jobid = d.jobid
            WHERE j.jobname LIKE 'heal-autonomous-scan%' ORDER BY d.runid DESC LIMIT 1"""
    )
    if not runs:
        return _row("cron_runs", "warn", "pg_cron has not run the scan yet", "pgheal schedule")
    run = runs[0]
    if run["status"] == "failed":
        return _row("cron_runs", "error", f"the last run failed: {run['return_message']}",
                    "check cron.host and the job's owner in cron.job")  # fmt: skip
    return _row("cron_runs", "ok", f"last run {run['started']}: {run['status']}")


def log_intake() -> Row:
    directory, fmt, why = log_source()
    if directory is None:
        return _row("log_intake", "warn", why,
                    "ALTER SYSTEM SET logging_collector = on; ALTER SYSTEM SET log_destination "
                    "= 'stderr,csvlog'; then restart the server")  # fmt: skip
    state = fetch("SELECT log_file, log_offset FROM heal.log_intake")
    suffix = ".json" if fmt == "json" else ".csv"
    files = sorted(
        (os.stat(os.path.join(directory, f)).st_mtime, f)
        for f in os.listdir(directory)
        if f.endswith(suffix)
    )
    if not state or state[0]["log_file"] is None:
        return _row("log_intake", "ok", f"{fmt}log in {directory}; not read yet")
    behind = (
        sum(
            os.path.getsize(os.path.join(directory, f))
            for _, f in files
            if f >= state[0]["log_file"]
        )
        - state[0]["log_offset"]
    )
    status = "ok" if behind < 16 * 1024 * 1024 else "warn"
    remedy = None if status == "ok" else "CALL heal.scan(); or raise scan_max_bytes"
    detail = f"{fmt}log in {directory}; {max(behind, 0)} bytes not read yet"
    return _row("log_intake", status, detail, remedy)


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
    if used and schema not in database_search_path():
        database = fetch_value("SELECT current_database()")
        return _row(
            "policy", "warn",
            f"{used} extensions live in schema {schema}, which is not on the database's "
            "search_path: sessions that do not set it cannot see them",
            f'ALTER DATABASE {database} SET search_path = "$user", public, {schema};',
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


CHECKS: list[Callable[[], Row]] = [
    plpython, pglast, extension_catalog, pg_cron, scan, cron_runs, log_intake, event_triggers,
    policy, retention,
]  # fmt: skip


def checks() -> list[Row]:
    """Every check; one that fails to run reports itself as an error."""
    rows = []
    for check in CHECKS:
        try:
            rows.append(check())
        except Exception as exc:
            rows.append(_row(check.__name__, "error", f"the check failed: {exc}", None))
    return rows
