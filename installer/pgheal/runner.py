"""Send migration files to ``heal.migrate`` and report what happened."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

import psycopg


def run_file_text(dsn: str, label: str, text: str, out: TextIO) -> bool:
    """Run one script through ``CALL heal.migrate``; print heals as they happen.

    The connection is in autocommit mode, so the CALL is at top level and the record
    of a failed migration is committed even though the migration rolled back.
    """

    def notice(diag: psycopg.errors.Diagnostic) -> None:
        message = diag.message_primary or ""
        print(f"  {message.removeprefix('heal.migrate: ')}", file=out, flush=True)

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.add_notice_handler(notice)
        try:
            conn.execute("CALL heal.migrate(%s)", (text,))
        except psycopg.Error as exc:
            diag = exc.diag
            print(f"{label}: FAILED [{diag.sqlstate}] {diag.message_primary}", file=out)
            for extra in (diag.message_detail, diag.message_hint):
                if extra:
                    print("  " + extra.replace("\n", "\n  "), file=out)
            return False
        row = conn.execute(
            """SELECT statements, heals, round(duration_ms) FROM heal.migrations
                WHERE checksum = md5(%s) AND run_by = current_user
                ORDER BY id DESC LIMIT 1""",
            (text,),
        ).fetchone()
    if row:
        print(f"{label}: ok, {row[0]} statements, {row[1]} healed, {row[2]} ms", file=out)
    else:
        print(f"{label}: ok, nothing to run", file=out)
    return True


def run_files(dsn: str, files: list[Path], out: TextIO) -> bool:
    """Run each file in order; stop at the first failure."""
    return all(run_file_text(dsn, str(path), path.read_text(), out) for path in files)
