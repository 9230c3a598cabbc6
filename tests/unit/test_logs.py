"""Reading csvlog and jsonlog incrementally, and fingerprints of errors."""

from __future__ import annotations

import csv
import io
import json

from heal.fingerprint import fingerprint, kind
from heal.logs import CSV_COLUMNS, LogFile, parse_csv, parse_json, reading_order


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
