"""pgheal's own records of a heal.migrate run, written as pgheal.

``heal.migrate`` runs as its caller, and the caller's script can call any function
the caller may execute. A SECURITY DEFINER writer taking the record as arguments
would let any caller write whatever rows it likes. So the record never travels
through SQL: the run hands it to :func:`submit`, which keeps it in this backend's
memory (where SQL cannot reach) and calls ``heal.write_records()``, which takes no
arguments and writes only what pgheal's own code queued. It runs as pgheal, so the
record is written whatever role the script switched to.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import plpy

from .db import fetch_value, load_parser
from .script import split

_PENDING: list[tuple[dict, list[dict]]] = []

#: A script is written in parts of this many characters (heal.migration_scripts): the
#: backend converts and stores one part at a time, never the whole script at once.
SCRIPT_PART = 1 << 20


def now() -> str:
    """A record's time: ISO 8601, UTC."""
    return datetime.now(UTC).isoformat()


def event(event_type: str, **fields: object) -> dict:
    """One event of a run, stamped now: ``heal.build_events``' columns as keys."""
    return {"event_type": event_type, "created_at": now(), **fields}


def failure(reason: str, why: str, fingerprint: str | None, **fields: object) -> dict:
    """An ``auto_heal_failed`` event: the reason as a sentence (in its detail) and as a
    kind (:mod:`heal.reasons`), with the fingerprint of the error it failed on."""
    detail = {**(fields.pop("detail", None) or {}), "reason": reason}  # type: ignore[dict-item]
    return event("auto_heal_failed", reason_kind=why, fingerprint=fingerprint, detail=detail,
                 **fields)  # fmt: skip


def write_events(events: list[dict], source: str) -> None:
    """Write events of a route that records no migration row (the scan, the trigger),
    through the one writer, ``heal.write_events``."""
    fetch_value("SELECT heal.write_events($1::jsonb, $2, NULL)", json.dumps(events), source,
                types=("text", "text"))  # fmt: skip


def submit(migration: dict, events: list[dict]) -> int:
    """Record one run (its row in heal.migrations and its events); return its id."""
    _PENDING.append((migration, events))
    try:
        return int(fetch_value("SELECT heal.write_records()"))
    finally:
        _PENDING.clear()


#: A run's row and events, and its script's first part, in one query.
_RECORD = """WITH m AS (SELECT heal.record_migration($1::jsonb, $2::jsonb) AS id),
     s AS (INSERT INTO heal.migration_scripts (migration_id, part, sql)
           SELECT m.id, 1, $3 FROM m WHERE $3 <> '')
SELECT m.id FROM m"""


def write_pending() -> int | None:
    """Body of ``heal.write_records()`` (SECURITY DEFINER): write what was queued."""
    if not _PENDING:
        return None
    migration, events = _PENDING.pop()
    sql = migration.pop("sql")
    migration_id = int(fetch_value(_RECORD, json.dumps(migration), json.dumps(events),
                                   sql[:SCRIPT_PART], types=("text", "text", "text")))  # fmt: skip
    for part, start in enumerate(range(SCRIPT_PART, len(sql), SCRIPT_PART), 2):
        fetch_value(
            "INSERT INTO heal.migration_scripts (migration_id, part, sql) VALUES ($1, $2, $3)",
            migration_id, part, sql[start : start + SCRIPT_PART], types=("int8", "int4", "text"),
        )  # fmt: skip
    return migration_id


def checksum(sql: str) -> str:
    """The md5 of a script, as heal.migrations records it, hashed a part at a time:
    encoding a large script whole would copy it."""
    digest = hashlib.md5()
    for start in range(0, len(sql), SCRIPT_PART):
        digest.update(sql[start : start + SCRIPT_PART].encode())
    return digest.hexdigest()


#: The most of an error message record_outside keeps (a PostgreSQL message is shorter).
_MAX_ERROR = 10_000


def record_outside(name: str | None, sql: str, error: str | None, duration_ms: float) -> int:
    """Body of ``heal.record_outside``: the record of one statement the CLI ran at top
    level. Only a statement that cannot run inside a transaction is accepted, and the
    record names the session user, so nobody records a migration it did not run."""
    statements = split(sql or "", load_parser(), keep_outside=True).statements
    if len(statements) != 1 or statements[0].outside is None:
        plpy.error(
            "heal.record_outside: only one statement that cannot run inside a transaction "
            "(CREATE INDEX CONCURRENTLY, VACUUM, ...) is recorded this way",
            sqlstate="22023",
        )
    started = now()
    error = error[:_MAX_ERROR] if error else error
    migration = {
        "name": name, "checksum": checksum(sql),
        "status": "failed" if error else "succeeded", "source": "cli", "started_at": started,
        "statements": 1, "attempts": 0, "heals": 0, "error": error,
        "duration_ms": max(float(duration_ms or 0), 0.0), "run_by": None, "sql": sql,
    }  # fmt: skip
    row = event("migration_failed" if error else "migration_succeeded", statement=1,
                message=error, detail={"outside_transaction": statements[0].outside})  # fmt: skip
    _PENDING.append((migration, [row]))
    return write_pending() or 0


def record_baseline(name: str | None, sql: str | None) -> int:
    """Body of ``heal.record_baseline``: migration `name` (with its script `sql`) is
    applied already, by hand or by another tool; record it as the session user's,
    without running it. A runner with more rights than that user still runs it
    (heal.last_applied counts only its peers' records)."""
    if not name or not name.strip() or sql is None:
        plpy.error("heal.record_baseline: name and sql must be given", sqlstate="22023")
    started = now()
    migration = {
        "name": name, "checksum": checksum(sql), "status": "succeeded", "source": "baseline",
        "started_at": started, "statements": 0, "attempts": 0, "heals": 0, "error": None,
        "duration_ms": 0.0, "run_by": None, "sql": sql,
    }  # fmt: skip
    _PENDING.append((migration, [event("migration_succeeded", detail={"baseline": True})]))
    return write_pending() or 0
