"""What operators look at: health checks, the event stream, the last 24 hours."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TextIO

import psycopg
from psycopg.rows import dict_row
from rich.console import Console
from rich.table import Table
from rich.text import Text

STATUS_STYLE = {"ok": "green", "warn": "yellow", "error": "red"}
EVENT_COLUMNS = ("id", "created_at", "source", "event_type", "statement", "sqlstate", "message",
                 "fix_sql")  # fmt: skip
#: The estimate heal.stats uses too: reading the error, fixing it by hand, running again.
MINUTES_PER_HEAL = 10
_SINCE = re.compile(r"^(\d+)\s*([smhd])$")


class MonitorError(Exception):
    """Bad input to a monitoring command."""


def since(text: str) -> timedelta:
    """``90s``, ``30m``, ``1h``, ``2d``."""
    match = _SINCE.match(text.strip())
    if not match:
        raise MonitorError(
            f"--since takes a number and s, m, h or d (like 30m or 2d), not {text!r}"
        )
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    return timedelta(**{unit: int(match.group(1))})


def data_row(table: Table, *cells: object) -> None:
    """A table row of data: each cell plain text, never read as markup."""
    table.add_row(*(c if isinstance(c, Text) else Text("" if c is None else str(c))
                    for c in cells))  # fmt: skip


def console(out: TextIO) -> Console:
    con = Console(file=out, highlight=False, soft_wrap=True)
    if not con.is_terminal:
        con.width = 200
    return con


def jsonable(value: Any) -> Any:
    """`value` as JSON takes it: times in ISO 8601, numbers as numbers."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (int, float, str, bool, type(None))):
        return value
    return str(value)


def health(conn: psycopg.Connection) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT name, status, detail, remediation FROM heal.health").fetchall()


def last_day(conn: psycopg.Connection) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        day = cur.execute(
            """SELECT
                 (SELECT count(*) FROM heal.build_events WHERE event_type = 'auto_heal_success'
                     AND created_at > now() - interval '24 hours') AS heals,
                 (SELECT count(*) FROM heal.build_events WHERE event_type = 'auto_heal_failed'
                     AND created_at > now() - interval '24 hours') AS failures,
                 (SELECT count(*) FROM heal.migrations
                   WHERE finished_at > now() - interval '24 hours') AS migrations,
                 (SELECT count(*) FROM heal.migrations WHERE status = 'failed'
                     AND finished_at > now() - interval '24 hours') AS failed_migrations,
                 (SELECT count(*) FROM heal.error_events
                   WHERE logged_at > now() - interval '24 hours') AS errors_seen"""
        ).fetchone()
        return {**day, "estimated_minutes_saved": day["heals"] * MINUTES_PER_HEAL}


def print_status(conn: psycopg.Connection, out: TextIO, as_json: bool) -> int:
    checks, day = health(conn), last_day(conn)
    worst = _worst(checks)
    if as_json:
        out.write(json.dumps({"status": worst, "checks": checks, "last_24h": day}) + "\n")
        return 1 if worst == "error" else 0
    con = console(out)
    con.print(Text.assemble((f"pgheal: {worst}", f"bold {STATUS_STYLE[worst]}"),
                            f" in database {conn.info.dbname}"))  # fmt: skip
    for check in checks:
        if check["status"] != "ok":
            con.print(Text.assemble("  ", (f"{check['status']:5}", STATUS_STYLE[check["status"]]),
                                    f" {check['name']}: {check['detail']}"))  # fmt: skip
    con.print(
        f"last 24 h: {day['heals']} heals, {day['failures']} not healed, {day['migrations']} "
        f"migrations ({day['failed_migrations']} failed), {day['errors_seen']} application "
        f"errors seen; about {day['estimated_minutes_saved']} person-minutes saved (estimate)"
    )
    return 1 if worst == "error" else 0


def print_doctor(conn: psycopg.Connection, out: TextIO, as_json: bool) -> int:
    checks = health(conn)
    problems = [c for c in checks if c["status"] != "ok"]
    if as_json:
        out.write(json.dumps({"checks": checks}) + "\n")
        return 1 if problems else 0
    con = console(out)
    table = Table(title="pgheal doctor")
    for column in ("check", "status", "found", "do this"):
        table.add_column(column)
    for c in checks:
        style = STATUS_STYLE[c["status"]]
        data_row(table, c["name"], Text(c["status"], style=style), c["detail"], c["remediation"])
    con.print(table)
    con.print("all checks pass" if not problems else f"{len(problems)} to look at")
    return 1 if problems else 0


def _worst(checks: list[dict[str, Any]]) -> str:
    statuses = {c["status"] for c in checks}
    return "error" if "error" in statuses else "warn" if "warn" in statuses else "ok"


def events(conn: psycopg.Connection, window: timedelta) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM heal.build_events "
            "WHERE created_at > now() - %s ORDER BY id",
            (window,),
        ).fetchall()


def follow(
    listener: psycopg.Connection, reader: psycopg.Connection, count: int | None = None
) -> Iterator[dict[str, Any]]:
    """New events as they are committed (LISTEN heal_events), `count` of them or forever.

    The listener only listens: a connection that runs queries between notifications
    would hand them to its handlers instead.
    """
    listener.execute("LISTEN heal_events")
    seen = 0
    for notify in listener.notifies():
        with reader.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                f"SELECT {', '.join(EVENT_COLUMNS)} FROM heal.build_events WHERE id = %s",
                (int(notify.payload),),
            ).fetchone()
        if row is None:
            continue
        yield row
        seen += 1
        if count is not None and seen >= count:
            return


def print_events(rows: Iterator[dict[str, Any]] | list[dict[str, Any]], out: TextIO,
                 as_json: bool, table: bool) -> None:  # fmt: skip
    if as_json:
        for row in rows:
            out.write(json.dumps(jsonable(row)) + "\n")
            out.flush()
        return
    con = console(out)
    if table:
        view = Table(title="heal.build_events")
        for column in EVENT_COLUMNS:
            view.add_column(column)
        for row in rows:
            data_row(view, *(row[c] for c in EVENT_COLUMNS))
        con.print(view)
        return
    for row in rows:
        style = "green" if row["event_type"] == "auto_heal_success" else (
            "red" if row["event_type"].endswith("failed") else "")  # fmt: skip
        # Text, never markup: messages and fixes are data, brackets and all.
        con.print(Text.assemble(
            f"{row['created_at']:%H:%M:%S} {row['source']:13} ",
            (f"{row['event_type']:19}", style), f" {row['message'] or ''}",
            f" -> {row['fix_sql']}" if row["fix_sql"] else "",
        ))  # fmt: skip
        out.flush()
