"""``pgheal run -- COMMAND ...``: heal around any migration tool.

The tool runs as it always does, in sessions of its own; pgheal cannot step into
them, so it waits for the tool to fail. Then it takes the errors the tool's roles
hit in this database since the run began, from the server log (the intake the scan
uses, ``heal.errors_since``) and from the tool's own output, asks ``heal.heal_error``
for a fix of each within the policy of the role that hit it, and runs the tool again
if anything was fixed. This covers what the DDL trigger cannot see coming: DML in a
migration (``INSERT ... gen_random_bytes(16)``), DO blocks, functions called at run
time. The tool's output and exit code pass through unchanged.

A tool that records a failed migration may refuse to run again until someone says
what happened; where that record says nothing was applied, it is cleared here as the
tool's own command would (golang-migrate's dirty flag, Prisma's failed row), and
otherwise explained.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import psycopg

from heal.errors import HEALABLE_SQLSTATES, PATTERNS, classify

from . import history, session
from .problems import CommandError

#: How long the server's logging collector is given to write the tool's errors.
LOG_WAIT_SECONDS = 3.0
#: How much of the tool's output is kept to look for errors in.
OUTPUT_KEPT = 1 << 20


@dataclass(frozen=True)
class ToolError:
    """An error the tool hit: from the server log (with the role), or from its output."""

    sqlstate: str
    message: str
    role: str | None = None


@dataclass
class Heal:
    error: ToolError
    fixed: bool
    fix: str | None
    reason: str | None


@dataclass
class Outcome:
    """What ``pgheal run`` did: the tool's last exit code, how often it ran, the heals."""

    exit_code: int = 0
    runs: int = 0
    heals: list[Heal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def run(
    conn: psycopg.Connection,
    command: list[str],
    attempts: int = 5,
    stdout: BinaryIO | None = None,
    stderr: BinaryIO | None = None,
) -> Outcome:
    """Run `command`; while it fails on errors pgheal can heal, heal them and run it again,
    at most `attempts` times more."""
    outcome = Outcome()
    tool = " ".join(command)[:200]
    tried: set[tuple[str, str]] = set()
    while True:
        position = conn.execute("SELECT heal.log_position()").fetchone()[0]
        outcome.exit_code, output = _run_once(command, stdout, stderr)
        outcome.runs += 1
        if outcome.exit_code == 0:
            return outcome
        found = _errors(conn, position, output)
        errors = [e for e in found if (e.sqlstate, e.message) not in tried]
        if not errors:
            outcome.notes.append(
                "the tool failed on nothing pgheal can heal"
                if not tried else "the tool failed again on nothing pgheal has not tried"
            )  # fmt: skip
            return outcome
        if outcome.runs > attempts:
            outcome.notes.append(f"gave up after {attempts} runs again (--attempts)")
            return outcome
        fixed = False
        for error in errors:
            tried.add((error.sqlstate, error.message))
            with session.users_path(conn):  # planned for the path the tool's session has
                row = conn.execute(
                    "SELECT fixed, fix, reason FROM heal.heal_error(%s, %s, %s, %s)",
                    (error.sqlstate, error.message, error.role, tool),
                ).fetchone()
            outcome.heals.append(Heal(error, *row))
            fixed = fixed or row[0]
        if not fixed:
            return outcome
        outcome.notes += unblock(conn, command)


def _run_once(
    command: list[str], stdout: BinaryIO | None, stderr: BinaryIO | None
) -> tuple[int, str]:
    """Run the tool once, its output passed through as it comes; return its exit code
    and what it printed (the first MB)."""
    kept: list[bytes] = []
    size = [0]
    lock = threading.Lock()

    def copy(source: BinaryIO, target: BinaryIO) -> None:
        for chunk in iter(lambda: source.read1(65536), b""):
            target.write(chunk)
            target.flush()
            with lock:
                if size[0] < OUTPUT_KEPT:
                    kept.append(chunk)
                    size[0] += len(chunk)

    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise RunError(f"no such command: {command[0]}") from None
    except PermissionError:
        raise RunError(f"cannot run {command[0]}: permission denied") from None
    threads = [
        threading.Thread(target=copy, args=(process.stdout, stdout or sys.stdout.buffer)),
        threading.Thread(target=copy, args=(process.stderr, stderr or sys.stderr.buffer)),
    ]
    for thread in threads:
        thread.start()
    code = process.wait()
    for thread in threads:
        thread.join()
    return code, b"".join(kept).decode(errors="replace")


class RunError(CommandError):
    """The tool cannot be run at all."""


def _errors(conn: psycopg.Connection, position: str | None, output: str) -> list[ToolError]:
    """The errors of this run: the server log's (waiting a moment for the logging
    collector to write them), then those only the tool's output shows."""
    found: list[ToolError] = []
    if position is not None:
        deadline = time.monotonic() + LOG_WAIT_SECONDS
        while True:
            rows = conn.execute(
                "SELECT sqlstate, message, user_name FROM heal.errors_since(%s)", (position,)
            ).fetchall()
            found = [ToolError(s, m, u) for s, m, u in rows if s in HEALABLE_SQLSTATES]
            if found or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
    seen = {(e.sqlstate, e.message) for e in found}
    for sqlstate, message in errors_in_output(output):
        if (sqlstate, message) not in seen:
            seen.add((sqlstate, message))
            found.append(ToolError(sqlstate, message))
    return found


# -- errors as tools print them ----------------------------------------------------------------

#: Where each kind of message starts: its first words, as the server words it.
_STARTS = re.compile(
    r'function |procedure |schema "|type "|operator does not exist: |operator class "|'
    r"data type |access method |tablesample method |text search |role \""
)
_SQLSTATE = re.compile(r"\bSQLSTATE[ :=]+([0-9A-Z]{5})\b")
#: Where a message may end inside a line: the tools append positions and codes.
_ENDS = re.compile(r'does not exist|"|(?= \(| at character| at or near|$)')


def errors_in_output(text: str) -> list[tuple[str, str]]:
    """(SQLSTATE, message) of the errors pgheal knows, however a tool printed them:
    ``ERROR:  function f() does not exist`` (psql), ``pq: ...`` (Go), ``psycopg2.errors.
    UndefinedFunction: ...`` (Python), ``... (SQLSTATE 42883)``."""
    found: list[tuple[str, str]] = []
    for line in text.splitlines():
        stated = _SQLSTATE.search(line)
        states = [stated[1]] if stated else sorted({state for state, _, _ in PATTERNS.values()})
        for start in _STARTS.finditer(line):
            ends = sorted({m.end() for m in _ENDS.finditer(line, start.start() + 1)})
            for end in ends:
                message = line[start.start() : end].strip()
                hit = next((s for s in states if classify(s, message) is not None), None)
                if hit is not None:
                    if (hit, message) not in found:
                        found.append((hit, message))
                    break
    return found


# -- tool states that block a run again -------------------------------------------------------


def unblock(conn: psycopg.Connection, command: list[str]) -> list[str]:
    """Clear the failed-migration records that make a tool refuse to run again, where
    they say the failed migration left nothing behind; explain the others."""
    notes = []
    for clear in (lambda: _golang_migrate_dirty(conn, command), lambda: _prisma_failed(conn)):
        try:
            notes += clear()
        except history.HistoryError as exc:
            notes.append(str(exc))
        except psycopg.Error as exc:
            notes.append(f"could not look at the tool's history: {exc.diag.message_primary}")
    return notes


def _golang_migrate_dirty(conn: psycopg.Connection, command: list[str]) -> list[str]:
    """golang-migrate marks the version it was applying dirty and refuses to go on. Its
    PostgreSQL driver runs a file as one statement, undone whole when it fails (unless
    x-multi-statement splits it): the version before is where the database stands."""
    table = history.resolve(conn, "schema_migrations")
    if table is None or not history.has_column(conn, table, "dirty"):
        return []
    with history.guarded(conn, (table,)):
        row = conn.execute(f"SELECT version, dirty FROM {table} LIMIT 1").fetchone()
    if row is None or not row[1]:
        return []
    version = int(row[0])
    folder = _golang_source(command)
    if folder is None or any("x-multi-statement" in arg for arg in command):
        return [
            f"golang-migrate left version {version} dirty: when the database is as the "
            "version before, run `migrate force <that version>`, then pgheal run again"
        ]
    versions = [int(m[1]) for p in folder.glob("*.up.sql") if (m := re.match(r"(\d+)_", p.name))]
    before = max((v for v in versions if v < version), default=None)
    with history.guarded(conn, (table,)):
        if before is None:
            conn.execute(f"DELETE FROM {table}")
        else:
            conn.execute(f"UPDATE {table} SET version = %s, dirty = false", (before,))
    forced = before if before is not None else -1
    return [
        f"golang-migrate's dirty version {version} cleared (as `migrate force {forced}` "
        "does): its file was undone whole"
    ]


def _golang_source(command: list[str]) -> Path | None:
    """The migrations folder of a golang-migrate command line (-path, -source file://)."""
    for index, arg in enumerate(command):
        for flag in ("-path", "--path", "-source", "--source"):
            value = None
            if arg == flag and index + 1 < len(command):
                value = command[index + 1]
            elif arg.startswith(flag + "="):
                value = arg.split("=", 1)[1]
            if value is not None:
                path = Path(value.removeprefix("file://"))
                return path if path.is_dir() else None
    return None


def _prisma_failed(conn: psycopg.Connection) -> list[str]:
    """``prisma migrate deploy`` refuses to go on after a failed migration (P3009) until it
    is resolved. Prisma sends a migration.sql as one script, which PostgreSQL undoes whole
    when it fails: resolving it as rolled back is what ``prisma migrate resolve
    --rolled-back`` does."""
    table = history.resolve(conn, "_prisma_migrations")
    if table is None:
        return []
    with history.guarded(conn, (table,)):
        rows = conn.execute(
            f"""UPDATE {table} SET rolled_back_at = now()
                 WHERE finished_at IS NULL AND rolled_back_at IS NULL RETURNING migration_name"""
        ).fetchall()
    return [f"Prisma's failed migration {name} resolved as rolled back "
            "(as `prisma migrate resolve --rolled-back` does)" for (name,) in rows]  # fmt: skip
