"""Healing around another migration tool: the server side of ``pgheal run``.

The tool runs in sessions of its own, where pgheal cannot step in. When it fails,
``pgheal run`` asks here for the errors logged in this database since the run began
(read from the server log as the scan reads it), and for a fix of each within the
policy of the role that hit it, applied through ``heal.apply_fix`` and recorded like
any other heal (source ``run``). Then it runs the tool again.
"""

from __future__ import annotations

import json
import time
from typing import Any

import plpy

from . import records
from .catalog import DatabaseCatalog
from .db import OwnPath, caller, cancelled, fetch, fetch_value, settings
from .errors import is_cancel
from .fingerprint import fingerprint
from .fixes import apply_plan_as, plan_error, spi_message
from .policy import Policy
from .scanner import log_files, log_source, read_since, wanted

#: The most of a message, and of the tool's name, a run's record keeps.
_MAX_TEXT = 10_000


def log_position() -> str | None:
    """Body of ``heal.log_position()`` (SECURITY DEFINER): where the server log ends now,
    as ``heal.errors_since`` takes it; NULL when the log cannot be read."""
    with OwnPath():
        directory, fmt, _why = log_source()
        if directory is None:
            return None
        files = log_files(directory, fmt)
        if not files:
            return None
        newest = max(files, key=lambda f: (f.mtime, f.name))
        return json.dumps([newest.name, newest.size, newest.mtime, newest.inode])


def errors_since(position: str | None) -> list[dict[str, Any]]:
    """Body of ``heal.errors_since(position)`` (SECURITY DEFINER): the ERRORs logged in
    this database since `position`, by roles the session user is a member of (its own,
    for most), SQLSTATE and message only: what that role's own clients were told."""
    with OwnPath():
        directory, fmt, _why = log_source()
        if directory is None or position is None:
            return []
        try:
            name, offset, mtime, inode = json.loads(position)
            start = (str(name), int(offset), float(mtime), int(inode))
        except (ValueError, TypeError, OverflowError):
            plpy.error("heal.errors_since: not a position heal.log_position() returned",
                       sqlstate="22023")  # fmt: skip
        if start[0] not in {f.name for f in log_files(directory, fmt)} or start[1] < 0:
            return []  # rotated away: nothing of this run is left to read
        database = fetch_value("SELECT pg_catalog.current_database()")

        got = read_since(directory, fmt, start, Policy.from_settings(settings()),
                         wanted(database, fmt))  # fmt: skip
        users = {r.user for _, r in got.records if r.user}
        mine = {
            row["u"] for row in fetch(
                """SELECT u FROM pg_catalog.unnest($1::text[]) u
                     JOIN pg_catalog.pg_roles r ON r.rolname OPERATOR(pg_catalog.=) u
                    WHERE pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER')""",
                sorted(users), types=("text[]",),
            )
        } if users else set()  # fmt: skip
        return [
            {"logged_at": r.logged_at, "user_name": r.user, "sqlstate": r.sqlstate,
             "message": r.message}
            for _, r in got.records if r.user in mine
        ]  # fmt: skip


def heal_error(
    sqlstate: str | None, message: str | None, role: str | None, tool: str | None
) -> dict[str, Any]:
    """Body of ``heal.heal_error(sqlstate, message, role, tool)``: fix what one error a
    tool hit is missing, within the policy of `role` (the current user by default; the
    session user must be a member of it, as for heal.apply_fix); record it."""
    if sqlstate is None or message is None:
        plpy.error("heal.heal_error: sqlstate and message must not be NULL", sqlstate="22004")
    if is_cancel(sqlstate):
        return {"fixed": False, "fix": None, "reason": "a cancel is never healed"}
    with OwnPath():
        return _heal(sqlstate, message[:_MAX_TEXT], role, (tool or "")[:_MAX_TEXT] or None)


def _heal(sqlstate: str, message: str, role: str | None, tool: str | None) -> dict[str, Any]:
    started, started_at = time.monotonic(), records.now()
    who = caller(role)
    if not fetch_value("SELECT pg_catalog.pg_has_role(session_user, $1, 'MEMBER')", who.role,
                       types=("name",)):  # fmt: skip
        plpy.error(f'heal.heal_error: session user is not a member of role "{who.role}"',
                   sqlstate="42501")  # fmt: skip
    fp = fingerprint(sqlstate, message)
    fixes, reason, source, fix_sql = [], None, None, None
    if fp.missing is None and not fetch_value(
        "SELECT count(*) FROM heal.learned_patterns WHERE fingerprint = $1 AND enabled", fp.id
    ):
        reason = "the error names no missing dependency pgheal knows how to provide"
    else:
        policy = Policy.from_settings(settings())
        planned, source = plan_error(fp, DatabaseCatalog(), policy, who)
        # A session's search_path is the tool's own: only what lasts helps it.
        fixes = [f for f in planned.fixes if f.kind != "search_path"]
        reason = planned.refused or planned.reason
        if not reason and not fixes:
            reason = (f"{fp.missing.describe() if fp.missing else 'it'} exists in a schema "
                      "that is not on the tool's search_path: add the schema to the role's "
                      "search_path")  # fmt: skip
    if not reason:
        try:
            with plpy.subtransaction():
                fix_sql = apply_plan_as(who.role, fixes, planned, fp.missing)
        except plpy.SPIError as exc:
            if cancelled(exc):
                raise
            reason = spi_message(exc)
    detail = {"fingerprint": fp.id, "way": "run", "tool": tool, "role": who.role,
              "source": source, "pattern": fp.pattern,
              "missing": fp.missing.describe() if fp.missing else message}  # fmt: skip
    events = [records.event("auto_heal_attempt", sqlstate=sqlstate, message=message,
                            detail=detail)]  # fmt: skip
    if reason:
        events.append(records.event("auto_heal_failed", sqlstate=sqlstate, message=message,
                                    detail={**detail, "reason": reason}))  # fmt: skip
    else:
        events.append(records.event(
            "auto_heal_success", sqlstate=sqlstate, message=message, fix_sql=fix_sql,
            duration_ms=round((time.monotonic() - started) * 1000, 3),
            detail={**detail, "fixes": ", ".join(f.describe() for f in fixes)},
        ))  # fmt: skip
    records.submit(
        {"sql": "", "name": None, "checksum": records.checksum(message), "forced": False,
         "status": "failed" if reason else "succeeded", "source": "run",
         "started_at": started_at, "statements": 0, "attempts": 1,
         "heals": 0 if reason else 1, "error": reason, "sqlstate": sqlstate,
         "duration_ms": round((time.monotonic() - started) * 1000, 3), "retry_of": None,
         "run_by": who.role},
        events,
    )  # fmt: skip
    return {"fixed": not reason, "fix": fix_sql, "reason": reason}
