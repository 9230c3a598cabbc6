"""Splitting scripts: positions, meta-commands, statements a procedure cannot run."""

from __future__ import annotations

import pglast
import pytest

from heal.script import ScriptError, split


def test_statements_keep_their_position():
    script = split("SELECT 1;\n  SELECT 'é';\n\nCREATE TABLE t (a int);", pglast)
    assert [(s.number, s.line, s.column) for s in script.statements] == [
        (1, 1, 1), (2, 2, 3), (3, 4, 1),
    ]  # fmt: skip
    assert script.statements[1].text == "SELECT 'é'"


def test_syntax_error_names_statement_line_and_column():
    with pytest.raises(ScriptError) as info:
        split("SELECT 1;\nSELECT 2;\n  SELEC 3;", pglast)
    assert info.value.sqlstate == "42601"
    assert "(statement 3, line 3, column 3)" in info.value.message


def test_unterminated_input_points_at_the_end():
    with pytest.raises(ScriptError) as info:
        split("CREATE TABLE t (a int", pglast)
    assert "statement 1, line 1" in info.value.message


def test_pg_dump_restrict_lines_are_skipped():
    script = split("\\restrict X\nSELECT 1;\n\\unrestrict X\n", pglast)
    assert [s.text for s in script.statements] == ["SELECT 1"]
    assert script.notices == [
        "skipped psql meta-command \\restrict on line 1",
        "skipped psql meta-command \\unrestrict on line 3",
    ]


def test_other_meta_commands_are_refused_with_their_line():
    with pytest.raises(ScriptError, match=r"meta-command \\connect on line 2"):
        split("SELECT 1;\n\\connect other\n", pglast)


def test_backslash_lines_inside_literals_and_bodies_are_sql():
    sql = "SELECT 'a\n\\echo b';\nCREATE FUNCTION f() RETURNS text AS $$\n\\q\n$$ LANGUAGE sql;"
    assert len(split(sql, pglast).statements) == 2


def test_transaction_control_is_dropped_with_a_notice():
    script = split("BEGIN;\nSELECT 1;\nCOMMIT;", pglast)
    assert [s.text for s in script.statements] == ["SELECT 1"]
    assert len(script.notices) == 2


@pytest.mark.parametrize(
    ("sql", "name"),
    [
        ("CREATE INDEX CONCURRENTLY i ON t (a)", "CREATE INDEX CONCURRENTLY"),
        ("create unique index concurrently i on t (a)", "CREATE INDEX CONCURRENTLY"),
        ("DROP INDEX CONCURRENTLY i", "DROP INDEX CONCURRENTLY"),
        ("REINDEX TABLE CONCURRENTLY t", "REINDEX CONCURRENTLY"),
        ("REINDEX DATABASE d", "REINDEX DATABASE"),
        ("VACUUM t", "VACUUM"),
        ("CREATE DATABASE d", "CREATE DATABASE"),
        ("ALTER SYSTEM SET work_mem = '1MB'", "ALTER SYSTEM"),
        ("-- comment\n/* c */ CREATE TABLESPACE s LOCATION '/x'", "CREATE TABLESPACE"),
        ("ROLLBACK", "ROLLBACK"),
        ("SAVEPOINT a", "SAVEPOINT"),
        ("DISCARD ALL", "DISCARD ALL"),
    ],
)
def test_statements_a_procedure_cannot_run(sql, name):
    with pytest.raises(ScriptError) as info:
        split(f"SELECT 1;\n{sql};", pglast)
    assert info.value.sqlstate == "25001"
    assert info.value.message.startswith(f"{name} cannot run inside heal.migrate")


@pytest.mark.parametrize(
    "sql",
    ["ANALYZE t", "CREATE INDEX i ON t (a)", "ALTER DATABASE d SET work_mem = '1MB'",
     "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END $$",
     "COMMENT ON TABLE t IS 'concurrently'", "DISCARD PLANS"],
)  # fmt: skip
def test_statements_that_run_fine(sql):
    assert len(split(sql, pglast).statements) == 1
