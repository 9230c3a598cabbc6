"""Read PostgreSQL's csvlog and jsonlog files incrementally.

Only whole records are consumed: a CSV record may span lines (quoted newlines), and
the last one may still be half-written, so the reader stops at the last record
boundary and the next run starts exactly there. Nothing is read twice.

One record can be larger than any read budget (a failed 17 MB INSERT is one record).
Such a record is never held in memory whole: its end is found chunk by chunk, its
leading fields (time, user, database, severity, SQLSTATE, message) are salvaged from
a bounded prefix, and reading goes on after it, so one record never stops the intake.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import BinaryIO

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

#: Bytes read at a time while looking for the end of an oversized record.
CHUNK_BYTES = 1024 * 1024
#: Bytes of an oversized record its leading fields are salvaged from.
SALVAGE_BYTES = 64 * 1024
#: Characters of a salvaged record's statement that are kept.
STATEMENT_CHARS = 4096


#: Bytes of a record's start that hold its database and severity (csvlog): what a
#: reader looks at before parsing it. Names are at most 63 bytes; the fields before
#: the severity are fixed-width or short.
_LEADING_BYTES = 1024


class Wanted:
    """The ERRORs of one database: a record predicate that also says, from a record's
    raw bytes, which records cannot be wanted, so that the rest of the cluster's log
    costs a byte search per record, not a parse.

    PostgreSQL always quotes the database in csvlog (doubling a quote inside) and
    writes the severity unquoted; jsonlog escapes strings as JSON does.
    """

    def __init__(self, database: str, fmt: str, keep: Callable[[Record], bool] | None = None):
        self.database = database
        self._keep = keep
        if fmt == "json":
            self._marks = (b'"dbname":' + json.dumps(database, ensure_ascii=False).encode(),
                           b'"error_severity":"ERROR"')  # fmt: skip
        else:
            self._marks = (b',"' + database.replace('"', '""').encode() + b'",', b",ERROR,")

    def might(self, raw: bytes) -> bool:
        return all(mark in raw for mark in self._marks)

    def __call__(self, record: Record) -> bool:
        return (record.severity == "ERROR" and record.database == self.database
                and (self._keep is None or self._keep(record)))  # fmt: skip


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


_AT = {name: i for i, name in enumerate(CSV_COLUMNS)}


def _from_row(offset: int, row: list[str]) -> Record:
    """A csvlog row as a record: its fields by position."""
    if len(row) < len(CSV_COLUMNS):
        row = row + [""] * (len(CSV_COLUMNS) - len(row))
    return Record(
        offset=offset,
        logged_at=row[_AT["log_time"]],
        database=row[_AT["database_name"]] or None,
        user=row[_AT["user_name"]] or None,
        application=row[_AT["application_name"]] or None,
        session_start=row[_AT["session_start_time"]] or None,
        severity=row[_AT["error_severity"]],
        sqlstate=row[_AT["sql_state_code"]] or None,
        message=row[_AT["message"]],
        detail=row[_AT["detail"]] or None,
        context=row[_AT["context"]] or None,
        statement=row[_AT["query"]] or None,
    )


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


def _record_ends(data: bytes, quoted: bool = False) -> Iterator[int]:
    """Offsets just past each newline outside double quotes, as they are found.

    csvlog doubles a quote inside a quoted field, which toggles the state twice, so a
    newline ends a record when the quotes before it are even in number. `quoted` is
    the state `data` starts in: a chunk taken from the middle of a record goes on where
    the previous chunk left off. A find and a count per line, both in C: a
    multi-megabyte record costs milliseconds, a million short ones a fraction of a second.
    """
    index = 0
    while True:
        newline = data.find(b"\n", index)
        if newline < 0:
            return
        quoted ^= bool(data.count(b'"', index, newline) & 1)
        index = newline + 1
        if not quoted:
            yield index


def _csv_ends(data: bytes, quoted: bool = False, first: bool = False) -> tuple[list[int], bool]:
    """The record ends in `data` (the first only, with `first`), and the quote state after it."""
    ends: list[int] = []
    for end in _record_ends(data, quoted):
        ends.append(end)
        if first:
            return ends, False
    return ends, quoted ^ bool(data.count(b'"') & 1)


def csv_boundaries(data: bytes) -> list[int]:
    """Offsets just past each complete CSV record (a newline outside quotes)."""
    return _csv_ends(data)[0]


#: What a reader may pass over unparsed: given a record's bytes, False when it cannot be
#: one of those wanted (:class:`Wanted`).
Might = Callable[[bytes], bool]


def parse_csv(
    data: bytes, base: int = 0, might: Might | None = None, room: int | None = None
) -> tuple[list[Record | None], int]:
    """Records in `data` (read from file offset `base`), and the bytes consumed; None for
    each record `might` passes over unparsed (and for a blank line). With `room`, it
    stops after that many records parsed: the rest of `data` is not looked at."""
    records: list[Record | None] = []
    places: list[int] = []  # where in `records` each record to parse goes
    spans: list[tuple[int, int]] = []
    start = 0
    for end in _record_ends(data):
        if room is not None and len(spans) >= room:
            break
        if might is None or might(data[start : min(end, start + _LEADING_BYTES)]):
            places.append(len(records))
            spans.append((start, end))
        records.append(None)
        start = end
    for place, record in zip(places, _parse_spans(data, spans, base), strict=True):
        records[place] = record
    return records, start


def _parse_spans(data: bytes, spans: list[tuple[int, int]], base: int) -> list[Record | None]:
    """The records at `spans` of `data`, one each: parsed by one csv reader, each
    record's text a line of its input; should one not come out as one row (a field
    beyond the csv module's limit, 128 KiB), each on its own, and such a one salvaged."""
    texts = [data[a:b].decode("utf-8", errors="replace") for a, b in spans]
    reader = csv.reader(texts)
    out: list[Record | None] = []
    try:
        for row in reader:
            if reader.line_num != len(out) + 1:
                break
            out.append(_from_row(base + spans[len(out)][0], row) if row else None)
        else:
            if len(out) == len(spans):
                return out
    except csv.Error:
        pass
    return [_parse_one(data, a, b, base) for a, b in spans]


def _parse_one(data: bytes, start: int, end: int, base: int) -> Record | None:
    try:
        rows = [r for r in csv.reader(io.StringIO(data[start:end].decode("utf-8", "replace")))
                if r]  # fmt: skip
    except csv.Error:  # a field beyond the csv module's limit (128 KiB): keep its head
        return salvage("csv", data[start : start + SALVAGE_BYTES], base + start, end - start)
    return _from_row(base + start, rows[0]) if rows else None


def parse_json(
    data: bytes, base: int = 0, might: Might | None = None, room: int | None = None
) -> tuple[list[Record | None], int]:
    """jsonlog: one object per line (newlines inside values are escaped); `might` and
    `room` as :func:`parse_csv` takes them."""
    records: list[Record | None] = []
    start = parsed = 0
    while True:
        end = data.find(b"\n", start)
        if end < 0 or (room is not None and parsed >= room):
            return records, start
        line = data[start:end].strip()
        if line and might is not None and not might(line):
            records.append(None)
        elif line:
            parsed += 1
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


# -- records larger than a read ---------------------------------------------------------------


class RecordEnd:
    """Where the log record that starts a byte stream ends, fed one chunk at a time.

    Memory stays bounded by the chunk, whatever the record's size. For csvlog the quote
    state carries from chunk to chunk, so that a quoted newline in a field straddling
    two chunks is not taken for the end; jsonlog escapes newlines in values, so its
    records end at the next newline.
    """

    def __init__(self, fmt: str) -> None:
        self.csv = fmt != "json"
        self.quoted = False
        self.seen = 0

    def feed(self, chunk: bytes) -> int | None:
        """The record's length up to and including its final newline once `chunk` holds
        it, else None (feed the next chunk)."""
        if self.csv:
            ends, self.quoted = _csv_ends(chunk, self.quoted, first=True)
            end = ends[0] if ends else -1
        else:
            newline = chunk.find(b"\n")
            end = newline + 1 if newline >= 0 else -1
        if end < 0:
            self.seen += len(chunk)
            return None
        return self.seen + end


def record_length(
    head: bytes, read: Callable[[int], bytes], fmt: str, chunk: int = CHUNK_BYTES
) -> int | None:
    """Length of the record that `head` begins (bytes from its start), reading on with
    `read` at most `chunk` bytes at a time; None when the data ends before the record
    does (it is still being written, or was cut off)."""
    end = RecordEnd(fmt)
    found = end.feed(head)
    while found is None:
        data = read(chunk)
        if not data:
            return None
        found = end.feed(data)
    return found


def _salvage_csv(prefix: bytes) -> tuple[dict[str, str], tuple[str, str] | None]:
    """The whole fields of a csvlog record cut after `prefix`, and the last one (which may
    be cut) with its name. An open quote is closed so that the csv module reads it."""
    quoted = _csv_ends(prefix)[1]
    text = prefix.decode("utf-8", errors="replace") + ('"' if quoted else "")
    try:
        row = next(csv.reader(io.StringIO(text)), [])
    except csv.Error:
        row = []
    if not row or len(row) > len(CSV_COLUMNS):
        return {}, None
    fields = dict(zip(CSV_COLUMNS, row[:-1], strict=False))
    return fields, (CSV_COLUMNS[len(row) - 1], row[-1])


def _partial_string(text: str, start: int) -> str:
    """A JSON string value cut short: what it holds up to the cut. An escape the cut split
    (``\\``, ``\\u00``) is dropped, and so is a lone high surrogate."""
    rest = text[start:]
    for trim in range(7):
        try:
            value, _ = json.decoder.scanstring(rest[: len(rest) - trim] + '"', 0)
        except ValueError:
            continue
        if value and "\ud800" <= value[-1] <= "\udbff":
            value = value[:-1]
        return value
    return ""


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index


def _salvage_json(prefix: bytes) -> tuple[dict[str, str], tuple[str, str] | None]:
    """The whole fields of a jsonlog record cut after `prefix`, decoded key by key, and
    the string value the cut fell in, with its name."""
    text = prefix.decode("utf-8", errors="replace")
    decoder = json.JSONDecoder()
    found: dict[str, object] = {}
    cut: tuple[str, str] | None = None
    index = _skip_space(text, 0)
    if not text.startswith("{", index):
        return {}, None
    index += 1
    while True:
        index = _skip_space(text, index)
        if not text.startswith('"', index):
            break
        try:
            key, index = json.decoder.scanstring(text, index + 1)
        except ValueError:
            break
        index = _skip_space(text, index)
        if not text.startswith(":", index):
            break
        index = _skip_space(text, index + 1)
        try:
            value, index = decoder.raw_decode(text, index)
        except ValueError:
            if text.startswith('"', index) and key in _JSON_KEYS:
                cut = (_JSON_KEYS[key], _partial_string(text, index + 1))
            break
        found[key] = value
        index = _skip_space(text, index)
        if not text.startswith(",", index):
            break
        index += 1
    fields = {_JSON_KEYS[k]: str(v) for k, v in found.items() if k in _JSON_KEYS}
    return fields, cut


#: Fields kept even when the cut falls inside them: the message (it is what is
#: fingerprinted), the context (it tells heal.migrate's own errors apart), the statement.
_CUT_KEPT = ("message", "context", "query")


def salvage(fmt: str, prefix: bytes, offset: int, size: int | None = None) -> Record:
    """A Record from the first bytes of one too large to read whole (`size` bytes, when
    known), so that its error is recorded and fingerprinted like any other.

    Whole fields are kept; of a field the prefix cuts, only the message, the context and
    the statement (a cut detail is dropped, not stored half). The statement keeps its
    first STATEMENT_CHARS characters and says it was truncated.
    """
    fields, cut = (_salvage_json if fmt == "json" else _salvage_csv)(prefix)
    whole = fields.get("query")
    if cut is not None and cut[0] in _CUT_KEPT:
        fields[cut[0]] = cut[1]
    record = _record(offset, fields)
    statement = record.statement
    if statement is None or (statement == whole and len(statement) <= STATEMENT_CHARS):
        return record
    of = f" of {size} bytes" if size is not None else ""
    marked = f"{statement[:STATEMENT_CHARS]} ... [truncated: log record{of}]"
    return replace(record, statement=marked)


@dataclass
class Intake:
    """What one read of one log file gave: the records wanted, where the next read starts
    (`end`), and whether the file is done with (`finished`: read to its end, or what is
    left can never complete because a newer file follows)."""

    end: int
    records: list[Record] = field(default_factory=list)
    lines: int = 0
    consumed: int = 0
    finished: bool = False
    notes: list[str] = field(default_factory=list)


def read_log(
    f: BinaryIO,
    fmt: str,
    offset: int,
    *,
    name: str,
    size: int,
    newer: bool,
    budget: int,
    full_budget: int,
    room: int,
    want: Callable[[Record], bool],
) -> Intake:
    """Read whole records of one log file from `offset`, within `budget` bytes and `room`
    wanted records, never stuck behind one record.

    A read of the whole budget (`full_budget`, scan_max_bytes) that holds no record end
    means a record larger than any read: its end is found in bounded chunks, its leading
    fields are salvaged, and reading goes on after it. A record the data ends in is
    still being written: it is left for the next run, unless a newer file follows (the
    server writes only the newest), then it is salvaged and the file is done. A read of
    a partly spent budget that holds no record end waits for the next run's full budget.
    """
    parse = parse_json if fmt == "json" else parse_csv
    out = Intake(end=offset)
    while budget > 0 and len(out.records) < room:
        f.seek(out.end)
        data = f.read(budget)
        if not data:
            break
        found, used = parse(data, out.end, getattr(want, "might", None), room - len(out.records))
        for record in found:
            if record is None:  # passed over unparsed: not wanted
                out.lines += 1
                continue
            if len(out.records) >= room:
                used = record.offset - out.end
                break
            out.lines += 1
            if want(record):
                out.records.append(record)
        if used == 0:
            skipped = _skip_record(f, fmt, data, out.end, name, newer, budget, full_budget)
            if skipped is None:
                break
            record, used, note = skipped
            out.lines += 1
            out.notes.append(note)
            if want(record):
                out.records.append(record)
        out.end += used
        out.consumed += used
        budget -= used
    out.finished = out.end >= size
    return out


def _skip_record(
    f: BinaryIO,
    fmt: str,
    data: bytes,
    start: int,
    name: str,
    newer: bool,
    budget: int,
    full_budget: int,
) -> tuple[Record, int, str] | None:
    """The record at `start`, which `data` (read from there) holds no end of: salvaged,
    with its length and a note, when it is to be skipped; None when it is to be waited
    for (still being written, or it may fit the next run's full budget)."""
    if len(data) == budget:
        if budget < full_budget:
            return None
        length = record_length(data, f.read, fmt)  # `f` stands just after `data`
        if length is not None:
            note = (f"skipped {length} bytes of an oversized log record (larger than "
                    f"scan_max_bytes) in {name} at byte {start}")  # fmt: skip
            return salvage(fmt, data[:SALVAGE_BYTES], start, length), length, note
    if not newer:
        return None
    length = f.seek(0, io.SEEK_END) - start
    note = (f"skipped {length} bytes of an incomplete log record at the end of {name} "
            "(a newer log file follows)")  # fmt: skip
    return salvage(fmt, data[:SALVAGE_BYTES], start, length), length, note
