"""``CALL heal.migrate``: run a script statement by statement, heal, record.

``heal.migrate`` runs as the caller; every change it makes on the caller's behalf goes
through ``heal.apply_fix``. A failure's record is committed when the CALL may commit.
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import plpy

from . import parser, reasons, records
from .analyze import Analysis, Found
from .catalog import DatabaseCatalog, predict
from .db import (
    OWN_PATH,
    OwnPath,
    caller,
    cancelled,
    database_search_path,
    fetch,
    fetch_value,
    leave_for_own_path,
    load_parser,
    session_search_path,
    settings,
    take_own_path,
)
from .errors import (
    ANY_ARGS,
    DUPLICATE_OBJECT,
    HEALABLE_SQLSTATES,
    PATTERNS,
    TRANSIENT_SQLSTATES,
    Missing,
    classify,
    named_in_string,
    plausible,
)
from .fingerprint import fingerprint, of_missing
from .fixes import apply_fix_as, fix_error_kind, learned_plan, spi_message
from .planner import Fix, consult_network, plan
from .policy import Caller, Policy, SettingError
from .script import Lines, ScriptError, Statement, Statements, policy_probe, split
from .searchpath import appended, join_path, split_path


@dataclass
class PgError:
    """An error as PostgreSQL reported it, and where in the script it happened."""

    sqlstate: str
    message: str
    detail: str | None = None
    hint: str | None = None
    statement: Statement | None = None
    position: int = 0

    @classmethod
    def from_spi(cls, exc: Exception, stmt: Statement) -> PgError:
        data = getattr(exc, "spidata", None) or (None,) * 10
        return cls(
            sqlstate=getattr(exc, "sqlstate", None) or "XX000",
            message=str(exc.args[0]) if exc.args else str(exc),
            detail=data[1],
            hint=data[2],
            statement=stmt,
            position=data[4] or 0,
        )

    def where(self, script: str) -> str:
        stmt = self.statement
        if stmt is None:
            return ""
        if not self.position:
            return f"statement {stmt.number}, line {stmt.line}"
        line, column = (stmt.lines or Lines(script)).at(stmt.offset + self.position - 1)
        return f"statement {stmt.number}, line {line}, column {column}"


class MigrationFailed(Exception):
    def __init__(self, error: PgError, note: str | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.note = note


@dataclass
class Run:
    """One call of heal.migrate: what happened, recorded when it ends."""

    sql: str
    name: str | None = None
    dry_run: bool = False
    forced: bool = False
    source: str = "migration"
    retry_of: int | None = None
    #: Whether a failure's record may be committed (not inside a scan's transaction).
    commit: bool = True
    #: The role that called heal.migrate, as it was then: what the record names.
    run_by: str | None = None
    started: float = field(default_factory=time.monotonic)
    started_at: str = field(default_factory=records.now)
    events: list[dict] = field(default_factory=list)
    statements: int = 0
    heals: int = 0
    attempts: int = 0

    def event(self, event_type: str, **fields: Any) -> dict:
        row = records.event(event_type, **fields)
        self.events.append(row)
        return row

    @functools.cached_property
    def checksum(self) -> str:
        return records.checksum(self.sql)

    def summary(self) -> dict[str, Any]:
        return {"heals": self.heals, "statements": self.statements, "name": self.name}

    def elapsed_ms(self) -> float:
        return round((time.monotonic() - self.started) * 1000, 3)

    def record(self, status: str, error: str | None = None, sqlstate: str | None = None) -> int:
        migration = {
            "sql": self.sql,
            "sqlstate": sqlstate,
            "retry_of": self.retry_of,
            "checksum": self.checksum,
            "name": self.name,
            "forced": self.forced,
            "status": status,
            "started_at": self.started_at,
            "statements": self.statements,
            "attempts": self.attempts,
            "heals": self.heals,
            "error": error,
            "duration_ms": self.elapsed_ms(),
            "source": self.source,
            "run_by": self.run_by,
        }
        return records.submit(migration, self.events)


def _failure(sqlstate: str, message: str, detail: str, hint: str) -> dict[str, str]:
    """What heal.migrate raises: PL/pgSQL raises it, so the message keeps no Python prefix."""
    return {"sqlstate": sqlstate, "message": message, "detail": detail, "hint": hint}


ROLLED_BACK_HINT = "The migration was rolled back; heal.build_events has each step."
#: How many statements, and how much of the script, heal.migrate gives the server at
#: once (see :meth:`Healer.run_statements`).
CHUNK_STATEMENTS, CHUNK_BYTES = 100, 1 << 16


def _position(stmt: Statement, sqlstate: str) -> int:
    """Where in `stmt` the server places the error it failed with, which PL/pgSQL's
    diagnostics do not say: preparing the statement analyses it again without running
    it, so an error found there (a missing function, type, relation) says where."""
    try:
        plpy.prepare(stmt.text)
    except plpy.SPIError as exc:
        if cancelled(exc):
            raise
        if exc.sqlstate == sqlstate:
            return PgError.from_spi(exc, stmt).position
    return 0


class _SessionPath:
    """Run the script's statements on the session's search_path (:attr:`OwnPath.saved`);
    pgheal's own path again afterwards, keeping what the script set in `own`."""

    def __init__(self, own: OwnPath) -> None:
        self.own = own

    def __enter__(self) -> None:
        if self.own.saved != OWN_PATH:
            fetch_value("SELECT pg_catalog.set_config('search_path', $1, true)", self.own.saved)

    def __exit__(self, *exc: object) -> None:
        self.own.saved = leave_for_own_path()


class _DryRun(Exception):
    """Raised to roll back a dry run once everything has run."""


def migrate(
    sql: str | None,
    name: str | None = None,
    dry_run: bool = False,
    force: bool = False,
    *,
    source: str = "migration",
    retry_of: int | None = None,
) -> dict[str, str] | None:
    """Body of ``CALL heal.migrate(...)``: run, heal, record; return the error to raise.

    The scan calls it too (`source` ``scan``, `retry_of` the failed run it retries).
    """
    if sql is None:
        return _failure(
            "22004",
            "heal.migrate: sql must not be NULL",
            "Nothing was run.",
            "Pass the migration script as text: CALL heal.migrate($$ ... $$)",
        )
    if name is not None and not name.strip():
        return _failure(
            "22023", "heal.migrate: name must not be empty", "Nothing was run.",
            "Name the migration, e.g. name => '0001_init', or leave name out.",
        )  # fmt: skip
    with OwnPath() as own:
        return _checked(sql, name, dry_run, force, source, retry_of, own)


def _checked(
    sql: str,
    name: str | None,
    dry_run: bool,
    force: bool,
    source: str,
    retry_of: int | None,
    own: OwnPath,
) -> dict[str, str] | None:
    """:func:`migrate` with its arguments checked, on pgheal's own search_path."""
    try:
        policy = Policy.from_settings(settings())
    except SettingError as exc:
        return _failure("22023", str(exc), "Nothing was run.", "Fix the value in heal.settings.")
    who = caller()
    run = Run(
        sql, name=name, dry_run=dry_run, forced=force, source=source, retry_of=retry_of,
        commit=source != "scan", run_by=who.role,
    )  # fmt: skip
    roles = _Roles("on")
    try:
        return _migrate(run, policy, who, own)
    except plpy.SPIError as exc:
        if cancelled(exc):
            raise
        # pgheal's own bookkeeping failed (a privilege the script took away, say):
        # say so as PostgreSQL would rather than with a traceback. Nothing is
        # committed here: the error rolls back the whole call, the migration included.
        return _failure(exc.sqlstate or "XX000", f"heal.migrate: {spi_message(exc)}",
                        "The migration was rolled back.", ROLLED_BACK_HINT)  # fmt: skip
    finally:
        try:
            roles.restore()
        except plpy.SPIError as exc:  # an aborted call reverts them anyway; a cancel wins
            if cancelled(exc):
                raise
            fetch_value(_MIGRATING, "off")


#: Sets ``heal.migrating`` (the DDL trigger stays out of a run, which heals on its own).
_MIGRATING = "SELECT pg_catalog.set_config('heal.migrating', $1, true)"
#: The session's roles, read in the query that sets ``heal.migrating``: a call begins and
#: ends with one query each for both.
_ROLES = """SELECT pg_catalog.set_config('heal.migrating', $1, true) AS migrating,
                  pg_catalog.current_setting('session_authorization') AS session,
                  pg_catalog.current_setting('role') AS role"""


class _Roles:
    """The session's role as the call found it: a script's SET ROLE or SET SESSION
    AUTHORIZATION ends with the script, as a function's SET clause would. Made with
    ``heal.migrating`` on, and :meth:`restore` turns it off."""

    def __init__(self, migrating: str) -> None:
        row = fetch(_ROLES, migrating)[0]
        self.session, self.role = row["session"], row["role"]

    def restore(self) -> None:
        now = _Roles("off")
        if now.session != self.session:  # resets the role too
            fetch_value("SELECT pg_catalog.set_config('session_authorization', $1, false)",
                        self.session)  # fmt: skip
        if (now.session, now.role) != (self.session, self.role):
            fetch_value("SELECT pg_catalog.set_config('role', $1, false)", self.role)


def _migrate(run: Run, policy: Policy, who: Caller, own: OwnPath) -> dict[str, str] | None:
    sql, name, dry_run = run.sql, run.name, run.dry_run
    if name is not None:
        held = _history_check(run, policy)
        if held is not None:
            return held if held else None
    run.event("migration_started", detail={"bytes": len(sql.encode()), "name": name})
    try:
        pglast = load_parser()
        analysis = Analysis(sql, pglast) if policy.predict else None
        script = split(sql, pglast, each=analysis)
    except ScriptError as exc:
        run.event("migration_failed", sqlstate=exc.sqlstate, message=exc.message)
        _finish_failed(run, exc.message, exc.sqlstate)
        return _failure(exc.sqlstate, exc.message, "Nothing was run.", exc.hint or "")
    except parser.ParserUnavailable as exc:
        return _failure("58P01", f"heal.migrate: {exc}", "Nothing was run.", "See pgheal install.")
    for notice in script.notices:
        plpy.notice(f"heal.migrate: {notice}")
    if not script.statements:
        plpy.notice("heal.migrate: the script has no statements; nothing was run")
        return None
    run.statements = len(script.statements)
    predicted = Found()
    if analysis is not None:
        try:
            predicted = predict(script, analysis, session_search_path(own.saved, who.role))
        except Exception as exc:  # analysis must never stop a migration; a cancel does
            if cancelled(exc):
                raise
            plpy.notice(f"heal.migrate: static analysis skipped ({exc}); healing reactively")
    healer = Healer(run, policy, who)
    healer.catalog.expect(predicted)  # where the whole script expects extensions
    try:
        with plpy.subtransaction(), _SessionPath(own):
            healer.run_statements(script.statements, predicted)
            if dry_run:
                raise _DryRun
    except _DryRun:
        run.event("migration_succeeded", duration_ms=run.elapsed_ms(), detail=run.summary())
        run.record("dry_run")
        plpy.notice(
            f"heal.migrate: dry run: {run.statements} statements ran, {run.heals} healed; "
            "everything was rolled back"
        )
        return None
    except MigrationFailed as failed:
        err = failed.error
        where = err.where(sql)
        run.event(
            "migration_failed",
            statement=err.statement.number if err.statement else None,
            sqlstate=err.sqlstate,
            message=err.message,
            detail={"where": where, "note": failed.note},
        )
        _finish_failed(run, err.message, err.sqlstate)
        detail = "\n".join(
            part
            for part in (
                err.detail,
                f"heal.migrate: failed at {where}; the migration was rolled back.",
                f"heal.migrate: {failed.note}" if failed.note else None,
            )
            if part
        )
        return _failure(err.sqlstate, err.message, detail, err.hint or ROLLED_BACK_HINT)
    run.event("migration_succeeded", duration_ms=run.elapsed_ms(), detail=run.summary())
    run.record("succeeded")
    if healer.path_kept:
        # For the session, as the DDL trigger does: what the session runs next (the
        # next migration, a query, an operator on a healed type) needs the schema too.
        # Only a schema every new session has (the database's path), or the shared
        # extension schema: one trusted for this migration alone stays with it.
        dropped = set(healer.path_added) - set(healer.path_kept)
        kept = join_path([n for n in split_path(own.saved) if n not in dropped])
        fetch_value("SELECT pg_catalog.set_config('search_path', $1, false)", kept)
    if run.heals:
        plpy.notice(
            f"heal.migrate: {run.statements} statements run, {run.heals} healed "
            f"in {run.elapsed_ms():.0f} ms"
        )
    return None


def _history_check(run: Run, policy: Policy) -> dict[str, str] | bool | None:
    """Serialize runners of the same name, then compare with what was applied.

    Returns None to go on, False when there is nothing to do, or the error to raise.
    """
    deadline = time.monotonic() + policy.lock_timeout_ms / 1000
    while not fetch_value(
        "SELECT pg_catalog.pg_try_advisory_xact_lock(hashtext('heal.migrate'), hashtext($1))",
        run.name,
    ):
        if time.monotonic() >= deadline:
            return _failure(
                "55P03",
                f'heal.migrate: migration "{run.name}" is being run by another session',
                f"Waited {policy.lock_timeout_ms} ms (heal.settings lock_timeout_ms).",
                "Wait for the other runner to finish, then run it again.",
            )
        fetch_value("SELECT pg_catalog.pg_sleep(0.05)")
    rows = fetch(
        "SELECT checksum, finished_at::text AS finished_at FROM heal.last_applied($1)",
        run.name,
    )
    if not rows:
        return None
    applied = rows[0]
    if applied["checksum"] == run.checksum:
        plpy.notice(
            f'heal.migrate: migration "{run.name}" was applied at {applied["finished_at"]}; '
            "nothing to do"
        )
        return False
    if run.forced:
        plpy.notice(
            f'heal.migrate: migration "{run.name}" changed since it was applied; '
            "running it again because force => true"
        )
        return None
    return _failure(
        "P0001",
        f'heal.migrate: migration "{run.name}" was applied with another checksum',
        f"Applied: {applied['checksum']} at {applied['finished_at']}; this script: {run.checksum}.",
        "A migration that ran should not change: add a new migration instead. To run this "
        f"one again anyway, call heal.migrate with force => true and name => "
        f"{plpy.quote_literal(run.name)}.",
    )


def _finish_failed(run: Run, error: str, sqlstate: str | None) -> None:
    """Record the failure; make the record durable when the CALL may commit."""
    run.record("failed", error, sqlstate)
    if run.commit:
        try:
            plpy.commit()
        except plpy.SPIError as exc:  # inside a transaction block: the caller's decides
            if cancelled(exc):
                raise
        else:
            take_own_path()  # the commit ended the transaction that had it


_POLICY_EXISTS = re.compile(r'^policy "(?P<name>.+)" for table "(?P<table>.+)" already exists$')


class Healer:
    """Runs statements one by one, healing the errors that have a fix."""

    def __init__(self, run: Run, policy: Policy, who: Caller) -> None:
        self.run = run
        self.policy = policy
        self.caller = who
        #: The session's path while pgheal's own work runs on its own (see :class:`OwnPath`):
        #: what the planner plans for, as the script has left it.
        self.own: OwnPath | None = None
        self.catalog = DatabaseCatalog(lambda: self.own.saved if self.own else "")
        #: Schemas fixes put on the session's path, and those it keeps after the run.
        self.path_added: list[str] = []
        self.path_kept: list[str] = []

    def run_statements(self, statements: Statements, predicted: Found) -> None:
        """Run every statement: those analysis found wanting, and those PL/pgSQL's
        EXECUTE cannot run (:attr:`Statements.alone`), one by one through
        :meth:`execute`; the others a chunk at a time, in one call of the server each
        (heal._run_statements). A statement of a chunk that fails goes on to
        :meth:`execute` with the error it failed with: it runs no more often than alone.
        """
        chunk: list[tuple[int, int, int]] = []
        size = 0
        alone = statements.alone
        for span in statements.spans():
            number, start, end = span
            if number in predicted or number in alone:
                self._run_chunk(statements, chunk)
                chunk, size = [], 0
                self.execute(statements.numbered(number), predicted.get(number, ()))
                continue
            chunk.append(span)
            size += end - start
            if len(chunk) >= CHUNK_STATEMENTS or size >= CHUNK_BYTES:
                self._run_chunk(statements, chunk)
                chunk, size = [], 0
        self._run_chunk(statements, chunk)

    def _run_chunk(self, statements: Statements, chunk: list[tuple[int, int, int]]) -> None:
        sql = statements.script
        while chunk:
            texts = [sql[start:end] for _, start, end in chunk]
            ran = fetch("SELECT * FROM heal._run_statements($1)", texts, types=("text[]",))[0]
            if not ran["failed"]:
                return
            stmt = statements.numbered(chunk[ran["failed"] - 1][0])
            code = ran["error_code"]
            error = PgError(code, ran["error_message"], ran["error_detail"] or None,
                            ran["error_hint"] or None, stmt, _position(stmt, code))  # fmt: skip
            self.execute(stmt, failed=error)
            chunk = chunk[ran["failed"] :]

    def run_statement(self, stmt: Statement) -> PgError | None:
        try:  # plpy.execute runs in a subtransaction of its own: a failure undoes just it
            plpy.execute(stmt.text)
        except plpy.SPIError as exc:
            if cancelled(exc):
                raise
            return PgError.from_spi(exc, stmt)
        return None

    def execute(
        self, stmt: Statement, predicted: Iterable[Missing] = (), failed: PgError | None = None
    ) -> None:
        """Run `stmt`, healing and retrying until it passes or cannot be healed.

        `predicted` are dependencies static analysis found missing: they are fixed
        before the statement runs, so it needs no failed attempt. `failed` is the
        error it failed with when it ran already: its first attempt.
        """
        for missing in predicted:
            with OwnPath() as self.own:  # the statement runs on the session's path, pgheal not
                self.heal_predicted(stmt, missing)
        healed: set[tuple[str, str]] = set()
        tried: list[str] = []
        retries = 0
        pending: dict | None = None  # the last heal, confirmed once the retry gets past it
        pending_key: tuple[str, str] | None = None
        while True:
            error, failed = failed or self.run_statement(stmt), None
            key = (error.sqlstate, error.message) if error else None
            if pending is not None and key != pending_key:
                self._succeeded(stmt, pending)
            pending = None
            if error is None:
                return
            if error.sqlstate in TRANSIENT_SQLSTATES:
                pending, pending_key = self.retry_transient(stmt, error, retries), key
                retries += 1
                continue
            if key in healed:
                note = "the error survived its own fix; tried: " + "; ".join(tried)
                self._failed(stmt, error, note, reasons.NOT_HELPED)
                raise MigrationFailed(error, note)
            match = plausible(error.message) and _POLICY_EXISTS.match(error.message)
            if error.sqlstate == DUPLICATE_OBJECT and match:
                self.policy_collision(stmt, error)
                return
            missing = classify(error.sqlstate, error.message)
            if missing is None and (name := named_in_string(error.sqlstate, error.message)):
                note = self.string_named(name)
                self._failed(stmt, error, note, reasons.NO_FIX)
                raise MigrationFailed(error, note)
            if error.sqlstate not in HEALABLE_SQLSTATES or missing is None:
                raise MigrationFailed(error)
            if len(healed) >= self.policy.max_attempts:
                note = f"gave up after {len(healed)} fixes (heal.settings max_attempts)"
                self._failed(stmt, error, note, reasons.NOT_HELPED, missing)
                raise MigrationFailed(error, note)
            with OwnPath() as self.own:
                pending, pending_key = self.heal(stmt, missing, error), key
            tried.append(pending["fix_sql"])
            healed.add(key)

    def string_named(self, name: str) -> str:
        """Why a function named only inside a string is not healed, and what would be."""
        with OwnPath():
            providers = sorted(self.catalog.providers(Missing("function", name, None, ANY_ARGS)))
        said = (f'function "{name}" is named only inside a string (a ::regproc or '
                "::regprocedure cast): pgheal does not guess what a string needs")  # fmt: skip
        if providers:
            which = " or ".join(f"extension {p}" for p in providers)
            said += f"; {which} provides a function of that name: install it, or call it"
        return said

    def _succeeded(self, stmt: Statement, fields: dict) -> None:
        self.run.heals += 1
        self.run.event("auto_heal_success", **fields)
        detail = fields["detail"]
        plpy.notice(
            f"heal.migrate: statement {stmt.number} (line {stmt.line}): "
            f"{detail['missing']} -> {detail['fixes']}"
            + (" (predicted)" if detail.get("way") == "predicted" else "")
        )

    def heal(self, stmt: Statement, missing: Missing, error: PgError) -> dict:
        """Plan and apply the fix for one error; return the success event's fields."""
        started = time.monotonic()
        self.run.attempts += 1
        try:
            planned = plan(missing, self.catalog, self.policy, self.caller)
        except plpy.SPIError as exc:  # the error's text cannot be planned for: the
            if cancelled(exc):  # statement fails with its own error, not pgheal's
                raise
            reason = f"pgheal could not plan a fix: {spi_message(exc)}"
            self._failed(stmt, error, reason, reasons.NO_FIX, missing)
            raise MigrationFailed(error, reason) from None
        way = "reactive"
        if not planned.fixes and not planned.refused:
            fp = fingerprint(error.sqlstate, error.message).id
            learned = learned_plan(fp, self.catalog, self.policy, self.caller)
            if learned is not None:
                planned, way = learned, "learned"
        planned = consult_network(planned, missing, self.catalog, self.policy, self.caller)
        if planned.network is not None:
            way = "network"
        fields = self._fields(stmt, missing, planned.fixes, way, error)
        if planned.network is not None:
            fields["detail"]["network"] = planned.network
        self.run.event("auto_heal_attempt", **fields)
        if not planned.ok:
            reason = planned.refused or planned.reason or "no fix is known"
            self._failed(stmt, error, reason, planned.why, missing)
            raise MigrationFailed(error, reason)
        try:
            applied = [self.apply(fix) for fix in planned.fixes]
        except plpy.SPIError as exc:
            if cancelled(exc):
                raise
            reason = spi_message(exc)
            self._failed(stmt, error, reason, fix_error_kind(exc), missing)
            raise MigrationFailed(error, reason) from None
        fields["fix_sql"] = ";\n".join(applied)
        fields["duration_ms"] = round((time.monotonic() - started) * 1000, 3)
        if planned.learned is not None:
            fields["detail"]["learned"] = planned.learned
        return fields

    def heal_predicted(self, stmt: Statement, missing: Missing) -> None:
        """Fix what analysis found before the statement runs. A prediction that cannot
        be fixed is left alone: the statement then fails, or heals, as it would have."""
        started = time.monotonic()
        planned = plan(missing, self.catalog, self.policy, self.caller)
        if not planned.ok:
            return
        fields = self._fields(stmt, missing, planned.fixes, "predicted", None)
        self.run.attempts += 1
        self.run.event("auto_heal_attempt", **fields)
        try:
            with plpy.subtransaction():
                applied = [self.apply(fix) for fix in planned.fixes]
        except plpy.SPIError as exc:
            if cancelled(exc):
                raise
            self._failed(stmt, None, spi_message(exc), fix_error_kind(exc), missing)
            return
        fields["fix_sql"] = ";\n".join(applied)
        fields["duration_ms"] = round((time.monotonic() - started) * 1000, 3)
        self._succeeded(stmt, fields)

    @staticmethod
    def _fields(
        stmt: Statement, missing: Missing, fixes: list[Fix], way: str, error: PgError | None
    ) -> dict:
        return {
            "statement": stmt.number,
            "sqlstate": error.sqlstate if error else PATTERNS[missing.kind][0],
            "message": error.message if error else f"{missing.describe()} is missing",
            "detail": {
                "missing": missing.describe(),
                "pattern": missing.pattern,
                "fixes": ", ".join(f.describe() for f in fixes),
                "way": way,
            },
        }

    def retry_transient(self, stmt: Statement, error: PgError, retries: int) -> dict:
        """Wait and retry a lock timeout, deadlock or serialization failure, with backoff."""
        name = TRANSIENT_SQLSTATES[error.sqlstate]
        refused = self.policy.refuse_kind("retry_transient")
        if refused or retries >= self.policy.max_attempts:
            note = refused or f"still {name} after {retries} retries (heal.settings max_attempts)"
            self._failed(stmt, error, note, reasons.REFUSED if refused else reasons.NOT_HELPED)
            raise MigrationFailed(error, note)
        delay = self.policy.retry_delay_ms * 2**retries / 1000
        self.run.attempts += 1
        fields = {
            "statement": stmt.number,
            "sqlstate": error.sqlstate,
            "message": error.message,
            "detail": {
                "missing": f"{name} (transient)",
                "fixes": f"retry after {delay:g} s",
                "way": "retry",
                "retry": retries + 1,
            },
        }
        self.run.event("auto_heal_attempt", **fields)
        fetch_value("SELECT pg_catalog.pg_sleep($1)", delay, types=("float8",))
        return {**fields, "duration_ms": delay * 1000}

    def policy_collision(self, stmt: Statement, error: PgError) -> None:
        """CREATE POLICY whose name is taken on that table: skip it when the existing
        policy is the same, otherwise fail showing both definitions."""
        refused = self.policy.refuse_kind("skip_identical_policy")
        if refused:
            raise MigrationFailed(error, refused)
        existing, wanted = compare_policy(stmt.text)
        if existing is None or wanted is None:
            raise MigrationFailed(error)
        if existing != wanted:
            note = (
                "a policy of that name already exists with another definition; "
                f"existing: {_show_policy(existing)}; this migration: {_show_policy(wanted)}"
            )
            self._failed(stmt, error, note, reasons.NO_FIX)
            raise MigrationFailed(error, note)
        self.run.attempts += 1
        self._succeeded(
            stmt,
            {
                "statement": stmt.number,
                "sqlstate": error.sqlstate,
                "message": error.message,
                "fix_sql": None,
                "detail": {
                    "missing": "policy exists already",
                    "fixes": "skipped the statement: the existing policy is identical",
                    "way": "reactive",
                },
            },
        )

    def _failed(
        self,
        stmt: Statement,
        error: PgError | None,
        reason: str,
        why: str,
        missing: Missing | None = None,
    ) -> None:
        sqlstate = error.sqlstate if error else PATTERNS[missing.kind][0] if missing else None
        if missing is not None:
            fp: str | None = of_missing(sqlstate, missing).id
        else:
            fp = fingerprint(error.sqlstate, error.message).id if error else None
        self.run.events.append(records.failure(
            reason, why, fp, statement=stmt.number, sqlstate=sqlstate,
            message=error.message if error else f"{missing.describe()} is missing"
            if missing else None,
            detail={"missing": missing.describe() if missing else None,
                    "pattern": missing.pattern if missing else None},
        ))  # fmt: skip

    def apply(self, fix: Fix) -> str:
        if fix.kind == "search_path":
            assert self.own is not None, "fixes are applied on pgheal's own path"
            # The session's path, set when pgheal's work is done (SET LOCAL), and kept
            # for the session once the migration succeeded.
            self.own.saved = appended(self.own.saved or "", fix.target)
            self.path_added.append(fix.target)
            if fix.target == self.policy.extension_schema or fix.target in (database_search_path()):
                self.path_kept.append(fix.target)
            return f"SET LOCAL search_path = {self.own.saved}"
        return apply_fix_as(self.caller.role, fix)


_POLICY_COLUMNS = """SELECT p.polpermissive AS permissive, p.polcmd AS command,
       ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END
               FROM unnest(p.polroles) r ORDER BY 1) AS roles,
       pg_catalog.pg_get_expr(p.polqual, p.polrelid) AS using,
       pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) AS with_check
  FROM pg_catalog.pg_policy p WHERE p.polrelid = $1 AND p.polname = $2"""


class _Probe(Exception):
    """Raised to roll back the subtransaction that tried a policy out."""


def compare_policy(sql: str) -> tuple[dict | None, dict | None]:
    """The existing policy named by a CREATE POLICY, and what the statement would create.

    The statement runs again under a probe name, in a subtransaction rolled back at
    once, so the server itself says what it would create.
    """
    probe = f"pgheal_probe_{os.getpid()}"
    target = policy_probe(sql, probe, load_parser())
    if target is None:
        return None, None
    name = ".".join(plpy.quote_ident(p) for p in (target.schema, target.table) if p)
    # The table as the statement names it, on the session's path; the rest on pgheal's.
    table = fetch_value("SELECT pg_catalog.to_regclass($1)::pg_catalog.oid", name)
    if table is None:
        return None, None
    with OwnPath():
        rows = fetch(_POLICY_COLUMNS, table, target.name, types=("oid", "name"))
    existing = rows[0] if rows else None
    wanted = None
    try:
        with plpy.subtransaction():
            plpy.execute(target.sql)  # the statement itself: the session's path
            with OwnPath():
                rows = fetch(_POLICY_COLUMNS, table, probe, types=("oid", "name"))
            wanted = rows[0] if rows else None
            raise _Probe
    except _Probe:
        pass
    return existing, wanted


def _show_policy(p: dict) -> str:
    kind = "PERMISSIVE" if p["permissive"] else "RESTRICTIVE"
    command = {"*": "ALL", "r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE"}.get(
        p["command"], p["command"]
    )
    parts = [f"AS {kind} FOR {command} TO {', '.join(p['roles'])}"]
    if p["using"]:
        parts.append(f"USING ({p['using']})")
    if p["with_check"]:
        parts.append(f"WITH CHECK ({p['with_check']})")
    return " ".join(parts)


def _retry_row(migration_id: int) -> list[dict]:
    return fetch(
        """SELECT m.name, heal.own_migration_sql(m.id) AS sql, m.status, m.run_by, m.run_by_oid,
                  s.oid AS session_oid, current_user = session_user AS unswitched,
                  (SELECT a.usesysid FROM pg_catalog.pg_stat_activity a
                    WHERE a.pid = pg_catalog.pg_backend_pid()) AS login_oid,
                  EXISTS (SELECT FROM heal.migrations r WHERE r.retry_of = m.id) AS retried
             FROM heal.migrations m, pg_catalog.pg_roles s
            WHERE m.id = $1 AND s.rolname = session_user""",
        migration_id,
        types=("int8",),
    )


def retry(migration_id: int) -> dict[str, str] | None:
    """Body of ``CALL heal.retry_migration(id)``: run a failed migration again, in a
    session of the role that ran it, and nowhere else.

    Another role's script in this session would run with this session's rights, and
    a script can always return to the user who logged in (``RESET ROLE``, ``RESET
    SESSION AUTHORIZATION``): so the login, the session user and the current user
    must all be that very role (by oid: a role dropped, or renamed, gets no retry).
    """
    with OwnPath():
        rows = _retry_row(migration_id)
    if not rows:
        return _failure("22023", f"heal.retry_migration: there is no migration {migration_id}",
                        "Nothing was run.", "See heal.migrations for the ids.")  # fmt: skip
    row = rows[0]
    role = row["run_by_oid"]
    if not (role == row["session_oid"] == row["login_oid"] and row["unswitched"]):
        return _failure(
            "42501",
            f'heal.retry_migration: migration {migration_id} was run by role "{row["run_by"]}"; '
            "only a session of that role may retry it",
            "Nothing was run. Running another role's script in this session would give it "
            "this session's rights.",
            f'Log in as "{row["run_by"]}" and CALL heal.retry_migration({migration_id}), or '
            "let the scan schedule it with pg_cron.",
        )
    if row["status"] != "failed" or row["sql"] is None:
        return _failure(
            "22023", f"heal.retry_migration: migration {migration_id} did not fail "
            f"(status {row['status']})", "Nothing was run.", "Only a failed migration is retried.",
        )  # fmt: skip
    if row["retried"]:
        plpy.notice(f"heal.retry_migration: migration {migration_id} was retried already")
        return None
    return migrate(row["sql"], row["name"], source="retry", retry_of=migration_id)
