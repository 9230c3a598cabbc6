"""Reading csvlog and jsonlog incrementally, and fingerprints of errors."""

from __future__ import annotations

import csv
import io
import json

import pytest

from heal.fingerprint import fingerprint, kind
from heal.logs import (
    CHUNK_BYTES,
    CSV_COLUMNS,
    SALVAGE_BYTES,
    STATEMENT_CHARS,
    LogFile,
    RecordEnd,
    parse_csv,
    parse_json,
    read_log,
    reading_order,
    record_length,
    salvage,
)


def csv_line(**fields: str) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([fields.get(c, "") for c in CSV_COLUMNS])
    return out.getvalue().encode()


ERROR = csv_line(
    log_time="2026-11-27 01:02:03.456 UTC", user_name="app", database_name="shop",
    session_start_time="2026-11-27 01:00:00 UTC", error_severity="ERROR",
    sql_state_code="42883", message="function uuid_generate_v4() does not exist",
    query="SELECT uuid_generate_v4()\nFROM orders\nWHERE 'a,\"b\"' <> ''",
    application_name="api",
)  # fmt: skip
LOG = csv_line(log_time="2026-11-27 01:02:04 UTC", error_severity="LOG", message="checkpoint")


def test_csv_records_span_lines_and_quotes():
    records, used = parse_csv(ERROR + LOG, base=100)
    assert used == len(ERROR + LOG)
    first = records[0]
    assert (first.offset, first.database, first.user, first.application) == (
        100,
        "shop",
        "app",
        "api",
    )
    assert first.sqlstate == "42883" and first.severity == "ERROR"
    assert first.statement.startswith("SELECT uuid_generate_v4()\nFROM orders")
    assert records[1].offset == 100 + len(ERROR)


def test_csv_half_written_record_is_left_for_the_next_run():
    data = ERROR + LOG[:25]
    records, used = parse_csv(data)
    assert len(records) == 1 and used == len(ERROR)
    again, used2 = parse_csv((ERROR + LOG)[used:], base=used)
    assert [r.message for r in again] == ["checkpoint"] and used + used2 == len(ERROR + LOG)


def test_json_lines():
    line = json.dumps(
        {
            "timestamp": "2026-11-27 01:02:03 UTC",
            "dbname": "shop",
            "error_severity": "ERROR",
            "state_code": "42704",
            "message": 'type "citext" does not exist',
            "statement": "CREATE\\nTABLE",
        }
    )
    data = (line + "\n" + line[:10]).encode()
    records, used = parse_json(data, base=7)
    assert len(records) == 1 and used == len(line) + 1 and records[0].offset == 7
    assert records[0].sqlstate == "42704" and records[0].database == "shop"


def test_reading_order_continues_and_follows_rotation():
    old = LogFile("postgresql-1.csv", 100.0, 500, 1)
    new = LogFile("postgresql-2.csv", 200.0, 50, 2)
    assert reading_order([old], None, 0, None, None) == [(old, 0)]
    assert reading_order([old, new], "postgresql-1.csv", 300, 90.0, 1) == [(old, 300), (new, 0)]
    # Rotated away: go on with what was written since.
    assert reading_order([new], "postgresql-1.csv", 300, 90.0, 1) == [(new, 0)]
    # Truncated or replaced under the same name: from the start.
    assert reading_order([LogFile("postgresql-1.csv", 300.0, 100, 1)], "postgresql-1.csv",
                         300, 90.0, 1)[0][1] == 0  # fmt: skip
    assert reading_order([LogFile("postgresql-1.csv", 300.0, 900, 7)], "postgresql-1.csv",
                         300, 90.0, 1)[0][1] == 0  # fmt: skip


def test_fingerprints_share_a_kind_not_an_instance():
    a = fingerprint("42883", "function uuid_generate_v4() does not exist")
    b = fingerprint("42883", "function gen_random_bytes(integer) does not exist")
    assert a.pattern == b.pattern == "function %(%) does not exist"
    assert a.id != b.id
    assert a.id == fingerprint("42883", "function uuid_generate_v4() does not exist").id
    c = fingerprint("22P02", 'invalid input syntax for type integer: "abc"')
    assert c.missing is None and c.pattern == 'invalid input syntax for type integer: "%"'
    assert kind("value 42 for 'x' too long") == "value % for % too long"


# -- records larger than any read ---------------------------------------------------------


def big_error(statement_bytes: int, **extra: str) -> bytes:
    """A failed statement's csvlog record, about `statement_bytes` long."""
    fields = dict(
        log_time="2026-11-27 01:02:05.000 UTC", user_name="app", database_name="shop",
        error_severity="ERROR", sql_state_code="42883",
        message="function no_such_function_xyz(unknown) does not exist",
        detail='a "quoted"\ndetail',
        query="SELECT no_such_function_xyz('" + "x\"y,\n" * (statement_bytes // 5) + "')",
        application_name="api",
    )  # fmt: skip
    fields.update(extra)
    return csv_line(**fields)


def json_line(**fields: str) -> bytes:
    return (json.dumps(fields) + "\n").encode()


BIG_JSON = json_line(
    timestamp="2026-11-27 01:02:05 UTC", user="app", dbname="shop", error_severity="ERROR",
    state_code="42883", message="function no_such_function_xyz(unknown) does not exist",
    detail="d", statement="SELECT no_such_function_xyz('" + "\u00e9\n\"" * 40000 + "')",
)  # fmt: skip


class Reads(io.BytesIO):
    """A log file that remembers how much each read asked for."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.asked: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        self.asked.append(size if size is not None else -1)
        return super().read(size)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 4096])
def test_csv_record_end_is_found_across_chunks_with_quotes_spanning_them(chunk):
    data = ERROR + LOG
    stream = io.BytesIO(data)
    assert record_length(b"", stream.read, "csv", chunk=chunk) == len(ERROR)
    # Every split of the record: the quote state carries over the cut.
    for cut in range(1, len(ERROR)):
        finder = RecordEnd("csv")
        assert finder.feed(data[:cut]) is None
        assert finder.feed(data[cut:]) == len(ERROR)


def test_csv_quoted_newline_right_after_a_chunk_boundary_is_not_an_end():
    record = csv_line(message='one "two"', query='a"\nb')
    newline = record.index(b"\n")
    finder = RecordEnd("csv")
    assert finder.feed(record[:newline]) is None  # ends inside the quoted query
    assert finder.feed(record[newline:]) == len(record)


def test_record_end_is_none_while_the_record_is_still_being_written():
    half = big_error(5000)[:3000]
    assert record_length(half[:100], io.BytesIO(half[100:]).read, "csv", chunk=256) is None
    assert record_length(BIG_JSON[:10], io.BytesIO(BIG_JSON[10:-1]).read, "json") is None


def test_json_record_end_is_the_next_newline():
    rest = io.BytesIO(BIG_JSON[1000:] + BIG_JSON)
    assert record_length(BIG_JSON[:1000], rest.read, "json", chunk=100) == len(BIG_JSON)


def test_salvaged_csv_record_keeps_its_leading_fields_and_marks_the_statement():
    record_bytes = big_error(200_000)
    got = salvage("csv", record_bytes[:SALVAGE_BYTES], 42, len(record_bytes))
    assert (got.offset, got.logged_at, got.user, got.database) == (
        42, "2026-11-27 01:02:05.000 UTC", "app", "shop",
    )  # fmt: skip
    assert (got.severity, got.sqlstate) == ("ERROR", "42883")
    assert got.message == "function no_such_function_xyz(unknown) does not exist"
    assert got.detail == 'a "quoted"\ndetail'
    assert got.statement.startswith('SELECT no_such_function_xyz(\'x"y,\nx"y,')
    assert got.statement.endswith(f" ... [truncated: log record of {len(record_bytes)} bytes]")
    assert len(got.statement) < STATEMENT_CHARS + 100
    assert got.application is None  # after the cut


def test_salvage_cut_inside_the_message_or_the_detail():
    record_bytes = big_error(100, message="m" * 500, detail="d" * 500)
    at_message = record_bytes.index(b"m" * 500) + 100
    got = salvage("csv", record_bytes[:at_message], 0)
    assert got.message == "m" * 100 and got.sqlstate == "42883" and got.statement is None
    got = salvage("csv", record_bytes[: record_bytes.index(b"d" * 500) + 100], 0)
    assert got.message == "m" * 500 and got.detail is None  # a cut detail is not stored half


def test_salvaged_json_record_decodes_key_by_key_up_to_the_cut():
    for cut in range(SALVAGE_BYTES, SALVAGE_BYTES + 7):  # inside escapes, too
        got = salvage("json", BIG_JSON[:cut], 7, len(BIG_JSON))
        assert (got.offset, got.database, got.user, got.sqlstate) == (7, "shop", "app", "42883")
        assert got.message == "function no_such_function_xyz(unknown) does not exist"
        assert got.detail == "d"
        assert got.statement.startswith("SELECT no_such_function_xyz('\u00e9\n\"\u00e9")
        assert got.statement.endswith(f"[truncated: log record of {len(BIG_JSON)} bytes]")
    # Cut inside a unicode escape or right after a backslash: the partial escape is dropped.
    head = b'{"message": "caf\\u00'
    assert salvage("json", head, 0).message == "caf"
    assert salvage("json", b'{"message": "a\\', 0).message == "a"
    assert salvage("json", b"not json", 0).message == ""


def test_a_field_beyond_the_csv_modules_limit_is_salvaged_not_fatal():
    data = big_error(300_000) + LOG
    records, used = parse_csv(data)
    assert used == len(data) and [r.severity for r in records] == ["ERROR", "LOG"]
    assert records[0].sqlstate == "42883" and "[truncated" in records[0].statement


def scan_file(f, fmt: str, budget: int, *, newer: bool = False, runs: int = 20):
    """Read a log file like successive scans do, each with the full budget."""
    records, notes, end = [], [], 0
    size = len(f.getvalue())
    for _ in range(runs):
        got = read_log(f, fmt, end, name="postgresql-1.csv", size=size, newer=newer,
                       budget=budget, full_budget=budget, room=100, want=bool)  # fmt: skip
        records += got.records
        notes += got.notes
        end = got.end
        if got.finished:
            break
    return records, notes, end


def test_an_oversized_record_is_skipped_in_bounded_reads_and_its_error_kept():
    big = big_error(5 * CHUNK_BYTES // 2)
    data = ERROR + big + LOG
    f = Reads(data)
    records, notes, end = scan_file(f, "csv", 1024)
    assert end == len(data)
    assert [r.message for r in records] == [
        "function uuid_generate_v4() does not exist",
        "function no_such_function_xyz(unknown) does not exist",
        "checkpoint",
    ]
    assert records[1].offset == len(ERROR) and "[truncated" in records[1].statement
    assert notes == [f"skipped {len(big)} bytes of an oversized log record (larger than "
                     f"scan_max_bytes) in postgresql-1.csv at byte {len(ERROR)}"]  # fmt: skip
    assert max(f.asked) <= CHUNK_BYTES  # never the whole record at once


def test_an_oversized_json_record_is_skipped_too():
    small = json_line(error_severity="LOG", message="checkpoint")
    records, notes, end = scan_file(io.BytesIO(BIG_JSON + small), "json", 4096)
    assert end == len(BIG_JSON + small) and len(notes) == 1
    assert [r.sqlstate for r in records] == ["42883", None]


def test_a_record_still_being_written_waits_unless_a_newer_file_follows():
    big = big_error(20_000)
    data = ERROR + big[: len(big) // 2]
    for budget in (1024, 64 * 1024):  # larger and smaller than the record
        records, notes, end = scan_file(io.BytesIO(data), "csv", budget)
        assert end == len(ERROR) and len(records) == 1 and not notes
    # Rotation: the server writes only the newest file, so this record never completes.
    records, notes, end = scan_file(io.BytesIO(data), "csv", 1024, newer=True)
    assert end == len(data) and records[-1].sqlstate == "42883"
    assert notes == [f"skipped {len(data) - len(ERROR)} bytes of an incomplete log record at "
                     "the end of postgresql-1.csv (a newer log file follows)"]  # fmt: skip


def test_a_partly_spent_budget_waits_for_the_next_full_one():
    data = big_error(3000) + LOG
    got = read_log(io.BytesIO(data), "csv", 0, name="f", size=len(data), newer=True,
                   budget=1024, full_budget=8192, room=10, want=lambda r: True)  # fmt: skip
    assert (got.end, got.consumed, got.records, got.finished) == (0, 0, [], False)
    got = read_log(io.BytesIO(data), "csv", 0, name="f", size=len(data), newer=True,
                   budget=8192, full_budget=8192, room=10, want=lambda r: True)  # fmt: skip
    assert got.end == len(data) and got.finished and len(got.records) == 2 and not got.notes


def test_room_for_records_stops_before_the_next_wanted_one():
    data = ERROR + LOG + ERROR + ERROR
    got = read_log(io.BytesIO(data), "csv", 0, name="f", size=len(data), newer=False,
                   budget=10_000, full_budget=10_000, room=2,
                   want=lambda r: r.severity == "ERROR")  # fmt: skip
    assert len(got.records) == 2 and got.end == len(ERROR + LOG + ERROR) and not got.finished
    assert got.lines == 3


def test_rotation_after_a_record_cut_off_goes_on_with_the_newer_file():
    cut_off = ERROR + big_error(4000)[:2500]
    old = LogFile("postgresql-1.csv", 100.0, len(cut_off), 1)
    new = LogFile("postgresql-2.csv", 200.0, len(LOG), 2)
    plan = reading_order([old, new], old.name, len(ERROR), 90.0, 1)
    assert plan == [(old, len(ERROR)), (new, 0)]
    files = {old.name: cut_off, new.name: LOG}
    seen = []
    for index, (log, offset) in enumerate(plan):
        got = read_log(io.BytesIO(files[log.name]), "csv", offset, name=log.name, size=log.size,
                       newer=index + 1 < len(plan), budget=1024, full_budget=1024, room=10,
                       want=lambda r: True)  # fmt: skip
        seen += [r.message for r in got.records]
        assert got.finished
    assert seen == ["function no_such_function_xyz(unknown) does not exist", "checkpoint"]
