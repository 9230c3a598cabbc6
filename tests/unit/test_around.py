"""Errors as migration tools print them, read back for pgheal run."""

from __future__ import annotations

import pytest

from pgheal.around import errors_in_output


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        # psql, and every tool that runs it (Sqitch)
        (
            "psql:deploy/seed.sql:3: ERROR:  function gen_random_bytes(integer) does not exist\n"
            "LINE 1: INSERT INTO tokens SELECT gen_random_bytes(16) FROM generat...\n",
            [("42883", "function gen_random_bytes(integer) does not exist")],
        ),
        # Go's lib/pq (dbmate), with golang-migrate's framing around it
        (
            "Error: pq: function gen_random_bytes(integer) does not exist\n",
            [("42883", "function gen_random_bytes(integer) does not exist")],
        ),
        (
            "error: migration failed: function gen_random_bytes(integer) does not exist "
            "(column 8) in line 2: INSERT ... (details: pq: function gen_random_bytes(integer) "
            "does not exist)",
            [("42883", "function gen_random_bytes(integer) does not exist")],
        ),
        # pgx: the SQLSTATE is printed
        (
            'ERROR: type "citext" does not exist (SQLSTATE 42704)',
            [("42704", 'type "citext" does not exist')],
        ),
        # psycopg (Alembic, yoyo)
        (
            "sqlalchemy.exc.ProgrammingError: (psycopg.errors.UndefinedObject) operator class "
            '"gin_trgm_ops" does not exist for access method "gin"\n[SQL: CREATE INDEX ...]',
            [("42704", 'operator class "gin_trgm_ops" does not exist for access method "gin"')],
        ),
        (
            'psycopg2.errors.InvalidSchemaName: schema "app" does not exist\nLINE 1: CREATE TABLE',
            [("3F000", 'schema "app" does not exist')],
        ),
        (
            "ERROR:  operator does not exist: integer <-> integer at character 20",
            [("42883", "operator does not exist: integer <-> integer")],
        ),
        ('ERROR:  relation "t" does not exist\nERROR:  syntax error at or near "x"', []),
    ],
)
def test_errors_in_output(output, expected):
    assert errors_in_output(output) == expected
