"""Run migration files and folders through ``heal.migrate``, like a migration runner.

A folder is read in the layout of the tool it was written for (:mod:`pgheal.layouts`):
its migrations are applied in that tool's order and recorded in ``heal.migrations``
under their names, so a second run skips what was applied. Statements PostgreSQL
never runs inside a transaction (``CREATE INDEX CONCURRENTLY`` and the like) are run
here, at top level, between the transactional parts; so is every statement of a
migration its tool runs outside a transaction.
"""

from __future__ import annotations

import hashlib
import shlex
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import psycopg

from heal.parser import load as load_parser
from heal.script import ScriptError, split, without_concurrently

from . import history, session
from .layouts import Found, LayoutError, Migration, read_file, read_folder
from .monitor import Plain, console, print_table
from .problems import CommandError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["Migration", "Runner", "RunnerError", "discover", "parts"]


class RunnerError(CommandError):
    """The files cannot be run as given."""


@dataclass(frozen=True)
class Part:
    """A piece of a migration run in one go: a transactional chunk, or one statement
    that must run at top level (`outside` says what it is)."""

    name: str
    sql: str
    outside: str | None = None
    #: Run again although it changed since it was applied (Flyway's repeatables).
    force: bool = False

    @property
    def checksum(self) -> str:
        return hashlib.md5(self.sql.encode()).hexdigest()


@dataclass
class Outcome:
    name: str
    status: str
    statements: int = 0
    heals: int = 0
    duration_ms: float = 0
    error: str | None = None
    notices: list[str] = field(default_factory=list)


def discover(paths: list[Path], layout: str | None = None) -> Found:
    """The migrations of `paths` in order: each folder in its layout (`layout`, or as
    its files say), then files given by name. Files given by name keep their places,
    except that files of one versioned layout (Flyway's V2 and V10, say) are put in
    that layout's order, as a shell's glob does not."""
    found = Found(layout or "", [])
    named: list[tuple[Migration, tuple[str, tuple] | None]] = []
    try:
        for path in paths:
            if path.is_dir():
                folder = read_folder(path, layout)
                found.migrations += folder.migrations
                found.not_run += folder.not_run
                found.layout = found.layout or folder.layout
            elif path.is_file():
                named.append(read_file(path))
            else:
                raise RunnerError(f"no such file or folder: {path}")
    except LayoutError as exc:
        raise RunnerError(str(exc)) from None
    kinds = {order[0] if order else None for _, order in named}
    if len(kinds) == 1 and None not in kinds:
        named.sort(key=lambda item: item[1][1])
    found.migrations += [migration for migration, _ in named]
    names = [m.name for m in found.migrations]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise RunnerError(f"two migrations share a name: {', '.join(twice)}")
    return found


def parts(migration: Migration, force: bool = False) -> list[Part]:
    """The migration as heal.migrate runs it: whole, unless some statements must run
    outside a transaction; then the chunks between them, and them, in order."""
    try:
        script = split(migration.text, load_parser(), keep_outside=True)
    except ScriptError as exc:
        raise RunnerError(f"{migration.path}: {exc.message}") from None
    force = force or migration.repeatable
    if migration.transaction and not any(s.outside for s in script.statements):
        return [Part(migration.name, migration.text, force=force)]
    result: list[Part] = []
    chunk: list[str] = []

    def name() -> str:
        return migration.name if not result else f"{migration.name}.{len(result) + 1}"

    for stmt in script.statements:
        if stmt.outside is None and migration.transaction:
            chunk.append(stmt.text)
            continue
        if chunk:
            result.append(Part(name(), ";\n".join(chunk) + ";\n", force=force))
            chunk = []
        if stmt.outside is None:  # its tool runs each statement on its own
            result.append(Part(name(), stmt.text + ";\n", force=force))
        else:
            result.append(Part(name(), stmt.text, stmt.outside, force=force))
    if chunk:
        result.append(Part(name(), ";\n".join(chunk) + ";\n", force=force))
    return result


#: The record of a migration's last run; fully qualified: it may run on the user's path.
_LAST = """SELECT m.statements, m.heals, m.duration_ms FROM heal.migrations AS m
            WHERE m.name OPERATOR(pg_catalog.=) %s ORDER BY m.id DESC LIMIT 1"""


def _counts(row: tuple | None) -> tuple[int, int, float]:
    return (row[0], row[1], float(row[2] or 0)) if row else (0, 0, 0.0)


#: How heal.migrate refuses a migration that changed since it was applied.
CHANGED = "was applied with another checksum"


class Runner:
    """Applies migrations on one autocommit connection, so that each CALL is top level."""

    def __init__(
        self, conn: psycopg.Connection, out: TextIO, rerun: list[str] | None = None
    ) -> None:
        self.conn = conn
        #: The command line that ran these migrations, for advice that works as written.
        self.rerun = rerun or ["pgheal", "migrate", "..."]
        self.console = console(out)
        self.notices: list[str] = []
        self.history: history.ToolHistory | None = None
        #: Part name -> the checksum it was last applied with (None: never), looked up
        #: once per run.
        self._checksums: dict[str, str | None] = {}
        conn.add_notice_handler(self._notice)

    def _notice(self, diag: psycopg.errors.Diagnostic) -> None:
        message = (diag.message_primary or "").removeprefix("heal.migrate: ")
        self.notices.append(message)
        self.console.print(f"  {message}", markup=False)

    def applied(self, part: Part) -> bool:
        if part.name in self._checksums:
            return self._checksums[part.name] == part.checksum
        row = self.conn.execute(
            "SELECT checksum FROM heal.last_applied(%s)", (part.name,)
        ).fetchone()
        return row is not None and row[0] == part.checksum

    def _look_up(self, pieces: list[Part]) -> None:
        """What `pieces` were applied with, in one query: not a round trip a file."""
        self._checksums = dict(self.conn.execute(
            """SELECT n, (SELECT a.checksum FROM heal.last_applied(n) a)
                 FROM pg_catalog.unnest(%s::pg_catalog.text[]) AS n""",
            ([p.name for p in pieces],)).fetchall())  # fmt: skip

    def _last(self, name: str) -> tuple[int, int, float]:
        return _counts(self.conn.execute(_LAST, (name,)).fetchone())

    def run(
        self,
        migrations: list[Migration],
        dry_run: bool = False,
        layout: str | None = None,
        force: frozenset[str] = frozenset(),
    ) -> list[Outcome]:
        """Apply (or, with `dry_run`, try and roll back) each migration in order;
        stop at the first failure. What the history of `layout`'s tool lists is applied
        already; what pgheal applies is written there too. The migrations named in
        `force` run again although they changed since they were applied."""
        unknown = sorted(force - {m.name for m in migrations})
        if unknown:
            raise RunnerError(f"--force {', '.join(unknown)}: no such migration here")
        self.history = history.for_layout(self.conn, layout, migrations) if layout else None
        python = [m.name for m in migrations if m.python
                  and not (self.history is not None and self.history.applied(m))]  # fmt: skip
        if python:
            raise RunnerError(
                f"{', '.join(python)}: Alembic migrations are Python, which their own tool runs: "
                "run `pgheal run -- alembic upgrade head` to heal around it; pgheal info shows "
                "their state"
            )
        split_up = [(m, parts(m, m.name in force)) for m in migrations]
        self._look_up([p for _, pieces in split_up for p in pieces])
        outcomes: list[Outcome] = []
        with _progress(self.console, len(split_up)) as step:
            if dry_run:
                outcomes = self._dry_run(split_up)
            else:
                for migration, pieces in split_up:
                    step(migration.name, len(outcomes))
                    outcome = self._apply(migration, pieces)
                    outcomes.append(outcome)
                    if outcome.status == "failed":
                        break
        return outcomes

    def _apply(self, migration: Migration, pieces: list[Part]) -> Outcome:
        outcome = Outcome(migration.name, "skipped")
        if self.history is not None and self.history.applied(migration):
            outcome.notices.append(f"applied by {self.history.tool}")
            return outcome
        for part in pieces:
            if self.applied(part):
                continue
            self.console.print(f"{migration.name}" + (f" ({part.outside})" if part.outside else ""),
                               markup=False)  # fmt: skip
            said = len(self.notices)
            error, (statements, heals, ms) = self._run_part(part)
            outcome.notices += self.notices[said:]  # what the server said: heals, skips
            outcome.statements += statements
            outcome.heals += heals
            outcome.duration_ms += ms
            if error:
                if CHANGED in error and not part.force:
                    again = shlex.join([*self.rerun, "--force", migration.name])
                    error += f"\nto run it again anyway: {again}"
                outcome.status, outcome.error = "failed", error
                self.console.print(f"  FAILED {error}".replace("\n", "\n  "), markup=False)
                return outcome
            outcome.status = "applied"
        if self.history is not None:  # also what pgheal applied before: its row was missing
            self.history.record(migration, round(outcome.duration_ms))
        return outcome

    def _run_part(self, part: Part) -> tuple[str | None, tuple[int, int, float]]:
        """Run one part: its error, if any, and what its record says (statements, heals,
        milliseconds). A transactional part costs one round trip."""
        if part.outside is None:
            try:
                with session.users_path_pipelined(self.conn):
                    self.conn.execute(
                        "CALL heal.migrate(%s, name => %s, force => %s)",
                        (part.sql, part.name, part.force),
                    )
                    last = self.conn.execute(_LAST, (part.name,))
            except psycopg.Error as exc:
                return _describe(exc), self._last(part.name)
            return None, _counts(last.fetchone())
        started = time.monotonic()
        error = None
        try:
            with session.users_path(self.conn):
                self.conn.execute(part.sql)
        except psycopg.Error as exc:
            error = _describe(exc)
        self._record(part, started, error)
        return error, self._last(part.name)

    def _record(self, part: Part, started: float, error: str | None) -> None:
        """A statement the CLI ran at top level goes into the history like the rest."""
        self.conn.execute(
            "SELECT heal.record_outside(%s::text, %s::text, %s::text, %s::numeric)",
            (part.name, part.sql, error, round((time.monotonic() - started) * 1000, 3)),
        )

    def _dry_run(self, split_up: list[tuple[Migration, list[Part]]]) -> list[Outcome]:
        """Everything pending in one transaction, rolled back at the end."""
        outcomes: list[Outcome] = []

        class Rollback(Exception):
            pass

        try:
            with self.conn.transaction():
                for migration, pieces in split_up:
                    outcome = Outcome(migration.name, "skipped")
                    outcomes.append(outcome)
                    for part in pieces:
                        if self.applied(part):
                            continue
                        sql = part.sql
                        if part.outside:
                            sql = in_transaction(part)
                            if sql is None:
                                outcome.notices.append(f"{part.outside} not run in a dry run")
                                continue
                        self.console.print(f"{migration.name} (dry run)", markup=False)
                        try:
                            # A savepoint: a failure takes the user's path back with it.
                            with self.conn.transaction(), session.users_path(self.conn):
                                self.conn.execute(
                                    "CALL heal.migrate(%s, name => %s, force => %s)",
                                    (sql, part.name, part.force),
                                )
                        except psycopg.Error as exc:
                            outcome.status, outcome.error = "failed", _describe(exc)
                            self.console.print(f"  FAILED {outcome.error}", markup=False)
                            raise Rollback from None
                        statements, heals, ms = self._last(part.name)
                        outcome.statements += statements
                        outcome.heals += heals
                        outcome.duration_ms += ms
                        outcome.status = "dry_run"
                raise Rollback
        except Rollback:
            pass
        return outcomes

    def summary(self, outcomes: list[Outcome]) -> None:
        print_table(self.console, "migrations",
                    ("migration", "status", "statements", "heals", "ms", "error"),
                    [(o.name, o.status, o.statements, o.heals, f"{o.duration_ms:.0f}",
                      (o.error or "").split("\n")[0] or "; ".join(o.notices)) for o in outcomes],
                    right=frozenset({"statements", "heals", "ms"}))  # fmt: skip

    def plan(self, migrations: list[Migration], layout: str | None = None) -> list[tuple]:
        """heal.plan over the pending migrations as one script, rows mapped back to files."""
        tool = history.for_layout(self.conn, layout, migrations) if layout else None
        pending = [
            m for m in migrations
            if not (tool is not None and tool.applied(m)) and not all(map(self.applied, parts(m)))
        ]  # fmt: skip
        text, starts = "", []
        for m in pending:
            starts.append((text.count("\n") + 1, m.name))
            text += m.text.rstrip() + "\n;\n"
        if not text:
            return []
        with session.users_path(self.conn):  # planned for the path the migrations run on
            rows = self.conn.execute(
                "SELECT statement, line, missing, fix, allowed, reason FROM heal.plan(%s)", (text,)
            ).fetchall()
        mapped = []
        for _statement, line, missing, fix, allowed, reason in rows:
            first, name = max((s for s in starts if s[0] <= line), key=lambda s: s[0])
            mapped.append((name, line - first + 1, missing, fix, allowed, reason))
        return mapped

    def baseline(
        self, migrations: list[Migration], layout: str | None = None, to: str | None = None
    ) -> list[str]:
        """Record the migrations (up to `to`, all by default) as applied without running
        them, in pgheal's history and in their tool's; return the names recorded."""
        names = [m.name for m in migrations]
        if to is not None and to not in names:
            raise RunnerError(f"--to {to}: no such migration here")
        tool = history.for_layout(self.conn, layout, migrations) if layout else None
        if any(m.python for m in migrations):
            raise RunnerError("Alembic keeps its own history: `alembic stamp` marks revisions")
        done = []
        for migration in migrations[: names.index(to) + 1 if to else None]:
            pieces = parts(migration)
            for part in pieces:
                if not self.applied(part):
                    self.conn.execute("SELECT heal.record_baseline(%s, %s)", (part.name, part.sql))
            if tool is not None and not tool.applied(migration):
                tool.record(migration, 0)
            done.append(migration.name)
        return done

    def info(self, migrations: list[Migration], layout: str | None = None) -> list[dict]:
        """Each migration's state: applied (by pgheal or by its tool), pending, changed
        (applied with another checksum: ``--force NAME`` runs it again), or failed."""
        tool = history.for_layout(self.conn, layout, migrations) if layout else None
        rows = []
        for migration in migrations:
            states, last = [], None
            for part in parts(migration):
                row = self.conn.execute(
                    "SELECT checksum, finished_at::text FROM heal.last_applied(%s)", (part.name,)
                ).fetchone()
                failed = self.conn.execute(
                    "SELECT status = 'failed' FROM heal.migrations WHERE name = %s "
                    "AND status <> 'dry_run' ORDER BY id DESC LIMIT 1", (part.name,)
                ).fetchone()  # fmt: skip
                if row is not None and row[0] == part.checksum:
                    states.append("applied")
                    last = row[1]
                elif row is not None and not migration.repeatable:
                    states.append("changed")
                else:
                    states.append("failed" if failed and failed[0] else "pending")
            by = "pgheal"
            if (
                set(states) != {"applied"}
                and "changed" not in states
                and (tool is not None and tool.applied(migration))
            ):
                states, by = ["applied"], tool.tool
            state = next((s for s in ("changed", "failed", "pending") if s in states), "applied")
            rows.append({"migration": migration.name, "state": state, "file": str(migration.path),
                         "applied_at": last, "by": by if state == "applied" else None})  # fmt: skip
        return rows

    def print_info(self, rows: list[dict]) -> None:
        print_table(
            self.console,
            "migrations",
            ("migration", "state", "applied at", "by"),
            [(r["migration"], r["state"], r["applied_at"], r["by"]) for r in rows],
        )

    def print_plan(self, rows: list[tuple]) -> None:
        if not rows:
            self.console.print("nothing is missing")
            return
        print_table(self.console, "heal plan",
                    ("migration", "line", "missing", "fix", "allowed", "why not"),
                    [(name, line, missing, fix, "yes" if allowed else "no", reason)
                     for name, line, missing, fix, allowed, reason in rows])  # fmt: skip


@contextmanager
def _progress(con: Console | Plain, total: int) -> Iterator[Callable[[str, int], None]]:
    """On a terminal, a bar of the migrations run, naming the one running:
    ``step(name, done)`` as each starts. Elsewhere nothing, and no rich to import."""
    if not con.is_terminal:
        yield lambda name, done: None
        return
    from rich.progress import Progress

    with Progress(console=con, transient=True) as bar:
        task = bar.add_task("migrating", total=total)
        yield lambda name, done: bar.update(task, description=name, completed=done)


def in_transaction(part: Part) -> str | None:
    """The same index change without CONCURRENTLY, for a dry run (which rolls back)."""
    if part.outside not in ("CREATE INDEX CONCURRENTLY", "DROP INDEX CONCURRENTLY"):
        return None
    return without_concurrently(part.sql, load_parser())


def _describe(exc: psycopg.Error) -> str:
    diag = exc.diag
    lines = [f"[{diag.sqlstate}] {diag.message_primary}"]
    lines += [extra for extra in (diag.message_detail, diag.message_hint) if extra]
    return "\n".join(lines)
