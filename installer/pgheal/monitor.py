"""What operators look at: health checks, the event stream, the last 24 hours."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TextIO

import psycopg
from psycopg.rows import dict_row

from . import schedule
from .problems import CommandError

if TYPE_CHECKING:  # rich is imported where it draws: off a terminal, most output needs none
    from rich.console import Console

STATUS_STYLE = {"ok": "green", "warn": "yellow", "error": "red"}
EVENT_COLUMNS = ("id", "created_at", "source", "event_type", "statement", "sqlstate", "message",
                 "fix_sql")  # fmt: skip
#: The estimate heal.stats uses too: reading the error, fixing it by hand, running again.
MINUTES_PER_HEAL = 10
_SINCE = re.compile(r"^(\d+)\s*([smhd])$")


class MonitorError(CommandError):
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


def print_table(
    con: Console | Plain,
    title: str,
    columns: tuple[str, ...],
    rows: Iterable[tuple[object, ...]],
    right: frozenset[str] = frozenset(),
) -> None:
    """A table of data (each cell plain text, never read as markup; `right`, the columns
    aligned right). On a terminal, drawn by rich; elsewhere (a log, a pipe, CI), as
    psql's aligned format: each row on one line, whole, and written in a fraction of
    the time rich takes to measure and draw a box (a millisecond a row), which for a
    run of hundreds of migrations was a tenth of the command's time."""
    rows = list(rows)
    if con.is_terminal:
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title)
        for column in columns:
            table.add_column(column, justify="right" if column in right else "left")
        for row in rows:
            table.add_row(*(c if isinstance(c, Text) else Text(_printable(_plain_cell(c)))
                            for c in row))  # fmt: skip
        con.print(table)
        return
    lines = [[_one_line(_plain_cell(c)) for c in row] for row in rows]
    widths = [max([len(column), *(len(row[i]) for row in lines)]) for i, column in
              enumerate(columns)]  # fmt: skip

    def line(row: list[str]) -> str:
        cut = zip(row, widths, columns, strict=True)
        return " | ".join(
            c.rjust(w) if column in right else c.ljust(w) for c, w, column in cut
        ).rstrip()

    con.file.write("\n".join([
        title, line(list(columns)), "-+-".join("-" * w for w in widths),
        *(line(row) for row in lines), f"({len(lines)} row{'s' if len(lines) != 1 else ''})",
    ]) + "\n")  # fmt: skip


def _plain_cell(cell: object) -> str:
    """A cell's text: a rich Text's without its styles (it has ``plain``), None empty."""
    return "" if cell is None else str(getattr(cell, "plain", cell))


def _one_line(cell: str) -> str:
    """A cell on one line, as text: white space runs made one space, and any other
    character a terminal would act on (an escape sequence in an error message) shown
    as its code, never written to a log as it is."""
    return _printable(" ".join(cell.split()))


def _printable(text: str) -> str:
    """`text` with every character a terminal would act on but line ends and tabs (an
    escape sequence in a server's message, which any role whose error reaches the log
    can write) shown as its code, as Python writes it in a string."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch in "\n\t" else _code(ch) for ch in text)


def _code(ch: str) -> str:
    point = ord(ch)
    return (f"\\x{point:02x}" if point < 0x100 else f"\\u{point:04x}" if point < 0x10000
            else f"\\U{point:08x}")  # fmt: skip


class Plain:
    """The console off a terminal (a log, a pipe, CI): a plain string printed without
    markup is written as it is, but for the characters a terminal acts on
    (:func:`_printable`), without rich, which takes a third of a millisecond a line to
    render one and a tenth of a second to import. Anything else (markup, a renderable)
    is rendered by a rich Console made at its first use, as wide as a log line, and
    written the same way. Each print is flushed: a log shows the migration running."""

    is_terminal = False

    def __init__(self, out: TextIO) -> None:
        self.file = out
        self._rich: Console | None = None

    def print(self, *objects: Any, markup: bool | None = None, **options: Any) -> None:
        if markup is False and not options and all(type(o) is str for o in objects):
            self.file.write(_printable(" ".join(objects)) + "\n")
        else:
            with self.rich.capture() as captured:
                self.rich.print(*objects, markup=markup, **options)
            self.file.write(_printable(captured.get()))
        self.file.flush()

    @property
    def rich(self) -> Console:
        if self._rich is None:
            from rich.console import Console

            self._rich = Console(file=self.file, highlight=False, soft_wrap=True, width=200,
                                 emoji=False)  # fmt: skip
        return self._rich

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # never while made or copied, before _rich exists
            raise AttributeError(name)
        return getattr(self.rich, name)


def console(out: TextIO) -> Console | Plain:
    """Where a command writes for people: rich's Console on a terminal (or with
    FORCE_COLOR, as rich reads it), else :class:`Plain`. On a terminal too, a string
    printed without markup is data, written as :func:`_printable` makes it; the cells
    of a table and the fields of an event or a check are made so where they are drawn."""
    if not (os.environ.get("FORCE_COLOR") or (hasattr(out, "isatty") and out.isatty())):
        return Plain(out)
    from rich.console import Console

    class Terminal(Console):
        def print(self, *objects: Any, markup: bool | None = None, **options: Any) -> None:
            if markup is False:
                objects = tuple(_printable(o) if type(o) is str else o for o in objects)
            super().print(*objects, markup=markup, **options)

    return Terminal(file=out, highlight=False, soft_wrap=True, emoji=False)


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


def health(conn: psycopg.Connection, dsn: str | None = None) -> list[dict[str, Any]]:
    """heal.health's checks; with `dsn`, pg_cron's own view of the scan too, read in the
    database pg_cron lives in (which heal.health cannot see from here)."""
    with conn.cursor(row_factory=dict_row) as cur:
        checks = cur.execute("SELECT name, status, detail, remediation FROM heal.health").fetchall()
    state = schedule.cron_state(dsn, conn) if dsn is not None else None
    if state is None:
        return checks
    mine = {row["name"]: row for row in cron_checks(state)}
    merged = [mine.pop(c["name"], c) for c in checks]
    return merged + list(mine.values())


def _check(name: str, status: str, detail: str, remediation: str | None = None) -> dict:
    return {"name": name, "status": status, "detail": detail, "remediation": remediation}


def cron_checks(state: schedule.CronState) -> list[dict[str, Any]]:
    """The scan's job and its last run as pg_cron has them, and pgheal's orphaned jobs."""
    where = f"in database {state.database}"
    if state.hidden:
        seen = "pg_cron's settings and jobs are visible to superusers only: run pgheal doctor as "
        return [_check("cron_runs", "ok", seen + "a superuser to check the scan's job")]
    if state.problem is not None:
        return [_check("cron_runs", "warn", f"cannot read pg_cron's jobs {where}: "
                       f"{state.problem}", "run pgheal doctor as a superuser")]  # fmt: skip
    job, run = state.job, state.last_run
    if job is None and not state.sees_all:
        runs = _check("cron_runs", "ok", "pg_cron shows a role only its own jobs: run pgheal "
                      "doctor as a superuser to see the scan's")  # fmt: skip
    elif job is None:
        runs = _check("cron_runs", "warn", f"the scan is not scheduled in pg_cron ({where})",
                      "pgheal schedule")  # fmt: skip
    elif not job["active"]:
        runs = _check("cron_runs", "warn", f"pg_cron job {job['jobname']} is inactive ({where})",
                      f"psql -d {state.database} -c 'SELECT cron.alter_job({job['jobid']}, "
                      "active => true)'")  # fmt: skip
    elif run is None:
        runs = _check("cron_runs", "ok", f"pg_cron job {job['jobname']} ('{job['schedule']}' "
                      "GMT) has not run yet")  # fmt: skip
    elif run["status"] == "failed":
        message = (run["return_message"] or "").strip()
        runs = _check(
            "cron_runs", "error",
            f"the last run of pg_cron job {job['jobname']} failed at {run['start_time']}: "
            f"{message}",
            f"see cron.job_run_details {where} (jobid {job['jobid']}); if pg_cron could not "
            f"connect, set cron.host and pg_hba.conf so that it can log in as "
            f"{job['username']}",
        )  # fmt: skip
    else:
        runs = _check("cron_runs", "ok", f"pg_cron job {job['jobname']}: last run "
                      f"{run['start_time']}, {run['status']}")  # fmt: skip
    if state.orphans:
        listed = "; ".join(f"{o.job} ({o.why})" for o in state.orphans)
        jobs = _check("cron_jobs", "warn", f"{len(state.orphans)} pgheal jobs {where} have no "
                      f"database to scan: {listed}", "pgheal unschedule --orphans")  # fmt: skip
    else:
        jobs = _check("cron_jobs", "ok", f"no orphaned pgheal job {where}")
    return [runs, jobs]


def last_day(conn: psycopg.Connection) -> dict[str, Any]:
    """The last 24 hours, counted from the rows the views count (heal.recent_heals,
    heal.unhealed)."""
    with conn.cursor(row_factory=dict_row) as cur:
        day = cur.execute(
            """SELECT
                 (SELECT count(*) FROM heal.recent_heals
                   WHERE created_at > now() - interval '24 hours') AS heals,
                 (SELECT count(*) FROM heal.unhealed
                   WHERE occurred_at > now() - interval '24 hours') AS failures,
                 (SELECT count(*) FROM heal.migrations
                   WHERE finished_at > now() - interval '24 hours'
                     AND status <> 'dry_run') AS migrations,
                 (SELECT count(*) FROM heal.migrations WHERE status = 'failed'
                     AND finished_at > now() - interval '24 hours') AS failed_migrations,
                 (SELECT count(*) FROM heal.error_events
                   WHERE logged_at > now() - interval '24 hours') AS errors_seen"""
        ).fetchone()
        return {**day, "estimated_minutes_saved": day["heals"] * MINUTES_PER_HEAL}


def print_status(conn: psycopg.Connection, dsn: str, out: TextIO, as_json: bool) -> int:
    checks, day = health(conn, dsn), last_day(conn)
    worst = _worst(checks)
    if as_json:
        out.write(json.dumps(jsonable({"status": worst, "checks": checks, "last_24h": day}))
                  + "\n")  # fmt: skip
        return 1 if worst == "error" else 0
    from rich.text import Text

    con = console(out)
    con.print(Text.assemble((f"pgheal: {worst}", f"bold {STATUS_STYLE[worst]}"),
                            f" in database {conn.info.dbname}"))  # fmt: skip
    for check in checks:
        if check["status"] != "ok":
            said = _printable(f" {check['name']}: {check['detail']}")
            con.print(Text.assemble("  ", (f"{check['status']:5}", STATUS_STYLE[check["status"]]),
                                    said))  # fmt: skip
    con.print(
        f"last 24 h: {day['heals']} heals, {day['failures']} not healed, {day['migrations']} "
        f"migrations ({day['failed_migrations']} failed), {day['errors_seen']} application "
        f"errors seen; about {day['estimated_minutes_saved']} person-minutes saved (estimate)"
    )
    return 1 if worst == "error" else 0


def print_doctor(conn: psycopg.Connection, dsn: str, out: TextIO, as_json: bool) -> int:
    checks = health(conn, dsn)
    problems = [c for c in checks if c["status"] != "ok"]
    if as_json:
        out.write(json.dumps(jsonable({"checks": checks})) + "\n")
        return 1 if problems else 0
    from rich.text import Text

    con = console(out)
    print_table(con, "pgheal doctor", ("check", "status", "found", "do this"), [
        (c["name"], Text(c["status"], style=STATUS_STYLE[c["status"]]), c["detail"],
         c["remediation"]) for c in checks])  # fmt: skip
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
    from rich.text import Text

    con = console(out)
    if table:
        print_table(con, "heal.build_events", EVENT_COLUMNS,
                    [tuple(row[c] for c in EVENT_COLUMNS) for row in rows])  # fmt: skip
        return
    for row in rows:
        style = "green" if row["event_type"] == "auto_heal_success" else (
            "red" if row["event_type"].endswith("failed") else "")  # fmt: skip
        # Text, never markup: messages and fixes are data, brackets and all.
        con.print(Text.assemble(
            f"{row['created_at']:%H:%M:%S} {row['source']:13} ",
            (f"{row['event_type']:19}", style), _printable(f" {row['message'] or ''}"),
            _printable(f" -> {row['fix_sql']}") if row["fix_sql"] else "",
        ))  # fmt: skip
        out.flush()
