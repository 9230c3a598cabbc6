"""One log record larger than a scan may read never blinds the scan, nor loses its error."""

from __future__ import annotations

from tests.integration.conftest import scalar
from tests.integration.test_scan import app_error, scan_until

BIG = "SELECT no_such_function_xyz('" + "x" * 100_000 + "')"


def test_an_oversized_failed_statement_is_recorded_and_the_scan_goes_on(conn, dsn):
    conn.execute("SELECT heal.skip_log_backlog()")  # only what this test logs
    conn.execute("UPDATE heal.settings SET value = '1024' WHERE name = 'scan_max_bytes'")
    assert app_error(dsn, BIG) == "42883"  # its csvlog record is ~100 times the budget
    assert app_error(dsn, "SELECT no_such_function_after_it()") == "42883"
    scan_until(conn, "SELECT count(*) = 2 FROM heal.error_events", scans=300)

    big = conn.execute(
        "SELECT sqlstate, message, statement, log_file, log_offset FROM heal.error_events "
        "WHERE message LIKE '%no_such_function_xyz%'"
    ).fetchone()
    assert big[:2] == ("42883", "function no_such_function_xyz(unknown) does not exist")
    assert big[2].startswith("SELECT no_such_function_xyz('xxxx")
    assert "[truncated: log record of " in big[2] and len(big[2]) < 5000
    after = scalar(conn, "SELECT statement FROM heal.error_events "
                         "WHERE message LIKE '%no_such_function_after_it%'")  # fmt: skip
    assert after == "SELECT no_such_function_after_it()"  # whole: it fit the budget
    # The saved position is past the big record, and the bytes it took were counted.
    log_file, log_offset = conn.execute(
        "SELECT log_file, log_offset FROM heal.log_intake"
    ).fetchone()
    assert log_file != big[3] or log_offset > big[4] + len(BIG)
    assert scalar(conn, "SELECT sum(bytes_read) FROM heal.scans") > len(BIG)
    note = scalar(conn, "SELECT note FROM heal.scans WHERE note LIKE '%oversized%'")
    assert "bytes of an oversized log record (larger than scan_max_bytes)" in note
    # heal.health says so: the statements of such records are truncated.
    status, detail, remedy = conn.execute(
        "SELECT status, detail, remediation FROM heal.health WHERE name = 'log_progress'"
    ).fetchone()
    assert status == "warn" and "larger than scan_max_bytes (1024)" in detail
    assert remedy.startswith(
        "UPDATE heal.settings SET value = '1048576' WHERE name = 'scan_max_bytes'"
    )


def log_progress(conn) -> tuple[str, str]:
    return conn.execute(
        "SELECT status, detail FROM heal.health WHERE name = 'log_progress'"
    ).fetchone()


def test_health_tells_when_scans_read_nothing_while_the_log_waits(conn):
    conn.execute("SELECT heal.skip_log_backlog()")
    conn.execute("CALL heal.scan()")
    assert log_progress(conn)[0] == "ok"
    # As if intake were stuck at the start of the log: three scans read nothing, after
    # the log was last written.
    conn.execute("UPDATE heal.log_intake SET log_offset = 0")
    conn.execute(
        "INSERT INTO heal.scans (started_at, duration_ms, status, bytes_read) "
        "SELECT now() + interval '1 minute', 1, 'ok', 0 FROM generate_series(1, 3)"
    )
    status, detail = log_progress(conn)
    assert status == "warn" and detail.endswith("log intake is stuck")
    assert detail.startswith("the last 3 scans read nothing, yet ")
    # Scans long ago, the log written since: new bytes, not a stuck intake...
    conn.execute("UPDATE heal.scans SET started_at = '2000-01-01' WHERE bytes_read = 0")
    conn.execute("UPDATE heal.settings SET value = '2147483648' WHERE name = 'scan_max_bytes'")
    assert log_progress(conn)[0] == "ok"
    # ...unless more is waiting than a scan may read.
    conn.execute("UPDATE heal.settings SET value = '1024' WHERE name = 'scan_max_bytes'")
    assert log_progress(conn)[0] == "warn"
