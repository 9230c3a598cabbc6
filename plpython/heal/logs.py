"""Read PostgreSQL's csvlog and jsonlog files incrementally.

Only whole records are consumed: a CSV record may span lines (quoted newlines), and
the last one may still be half-written, so the reader stops at the last record
boundary and the next run starts exactly there. Nothing is read twice, nothing is
skipped.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

#: csvlog columns, PostgreSQL 14 and later.
CSV_COLUMNS = (
    "log_time", "user_name", "database_name", "process_id", "connection_from", "session_id",
    "session_line_num", "command_tag", "session_start_time", "virtual_transaction_id",
    "transaction_id", "error_severity", "sql_state_code", "message", "detail", "hint",
    "internal_query", "internal_query_pos", "context", "query", "query_pos", "location",
    "application_name", "backend_type", "leader_pid", "query_id",
)  # fmt: skip

_JSON_KEYS = {
    "timestamp": "log_time", "user": "user_name", "dbname": "database_name",
    "session_start": "session_start_time", "error_severity": "error_severity",
    "state_code": "sql_state_code", "message": "message", "detail": "detail",
    "context": "context", "statement": "query", "application_name": "application_name",
}  # fmt: skip


@dataclass(frozen=True)
class Record:
    """One log record; `offset` is where it starts in its file (bytes)."""

    offset: int
    logged_at: str
    database: str | None
    user: str | None
    application: str | None
    session_start: str | None
    severity: str
    sqlstate: str | None
    message: str
    detail: str | None
    context: str | None
    statement: str | None


def _record(offset: int, fields: dict[str, str | None]) -> Record:
    def get(name: str) -> str | None:
        value = fields.get(name)
        return value if value not in ("", None) else None

    return Record(
        offset=offset,
        logged_at=get("log_time") or "",
        database=get("database_name"),
        user=get("user_name"),
        application=get("application_name"),
        session_start=get("session_start_time"),
        severity=get("error_severity") or "",
        sqlstate=get("sql_state_code"),
        message=get("message") or "",
        detail=get("detail"),
        context=get("context"),
        statement=get("query"),
    )


def csv_boundaries(data: bytes) -> list[int]:
    """Offsets just past each complete CSV record (a newline outside quotes)."""
    ends, quoted = [], False
    for index, byte in enumerate(data):
        if byte == 0x22:  # "
            quoted = not quoted
        elif byte == 0x0A and not quoted:
            ends.append(index + 1)
    return ends


def parse_csv(data: bytes, base: int = 0) -> tuple[list[Record], int]:
    """Records in `data` (read from file offset `base`), and the bytes consumed."""
    records, start = [], 0
    for end in csv_boundaries(data):
        text = data[start:end].decode("utf-8", errors="replace")
        for row in csv.reader(io.StringIO(text)):
            if row:
                records.append(_record(base + start, dict(zip(CSV_COLUMNS, row, strict=False))))
        start = end
    return records, start


def parse_json(data: bytes, base: int = 0) -> tuple[list[Record], int]:
    """jsonlog: one object per line (newlines inside values are escaped)."""
    records, start = [], 0
    while True:
        end = data.find(b"\n", start)
        if end < 0:
            return records, start
        line = data[start:end].strip()
        if line:
            try:
                fields = json.loads(line.decode("utf-8", errors="replace"))
            except ValueError:
                fields = None
            if isinstance(fields, dict):
                mapped = {_JSON_KEYS[k]: str(v) for k, v in fields.items() if k in _JSON_KEYS}
                records.append(_record(base + start, mapped))
        start = end + 1


@dataclass(frozen=True)
class LogFile:
    name: str
    mtime: float
    size: int
    inode: int


def reading_order(
    files: list[LogFile], last: str | None, offset: int, mtime: float | None, inode: int | None
) -> list[tuple[LogFile, int]]:
    """Which files to read, from which offset, to continue where the last run stopped.

    The file read last goes on from its offset, unless it was truncated or replaced
    (then from 0); then every file written after it, oldest first. On the first run,
    the newest file from its start.
    """
    by_age = sorted(files, key=lambda f: (f.mtime, f.name))
    if last is None:
        return [(by_age[-1], 0)] if by_age else []
    plan: list[tuple[LogFile, int]] = []
    current = next((f for f in files if f.name == last), None)
    if current is not None:
        same = inode is None or current.inode == inode
        plan.append((current, offset if same and current.size >= offset else 0))
    since = mtime if mtime is not None else 0.0
    plan += [(f, 0) for f in by_age if f.name != last and f.mtime >= since]
    return plan
