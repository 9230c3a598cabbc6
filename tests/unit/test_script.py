"""Splitting scripts: positions, meta-commands, statements a procedure cannot run."""

from __future__ import annotations

import json

import pglast
import pytest

from heal import script as script_module
from heal.analyze import parse
from heal.script import (
    PolicyProbe,
    ScriptError,
    classify_node,
    policy_probe,
    split,
    without_concurrently,
)


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


@pytest.mark.parametrize(
    ("sql", "verdict"),
    [
        ("CREATE DATABASE d", "CREATE DATABASE"),
        ("DROP DATABASE d", "DROP DATABASE"),
        ("ALTER SYSTEM RESET ALL", "ALTER SYSTEM"),
        ("CREATE TABLESPACE s LOCATION '/x'", "CREATE TABLESPACE"),
        ("DROP TABLESPACE s", "DROP TABLESPACE"),
        ("CREATE SUBSCRIPTION s CONNECTION '' PUBLICATION p", "CREATE SUBSCRIPTION"),
        ("DROP SUBSCRIPTION s", "DROP SUBSCRIPTION"),
        ("VACUUM", "VACUUM"),
        ("VACUUM (ANALYZE) t", "VACUUM"),
        ("ANALYZE t", None),
        ("CREATE INDEX CONCURRENTLY ON t (a) WHERE a > 1", "CREATE INDEX CONCURRENTLY"),
        ("CREATE INDEX i ON t (a)", None),
        ("DROP INDEX CONCURRENTLY IF EXISTS i", "DROP INDEX CONCURRENTLY"),
        ("DROP INDEX i", None),
        ("REINDEX (CONCURRENTLY) INDEX i", "REINDEX CONCURRENTLY"),
        ("REINDEX TABLE CONCURRENTLY t", "REINDEX CONCURRENTLY"),
        ("REINDEX SYSTEM", "REINDEX SYSTEM"),
        ("REINDEX DATABASE d", "REINDEX DATABASE"),
        ("REINDEX TABLE t", None),
        ("REINDEX SCHEMA s", "REINDEX SCHEMA"),
        (
            "ALTER TABLE p DETACH PARTITION c CONCURRENTLY",
            "ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY",
        ),
        ("ALTER TABLE p DETACH PARTITION c", None),
        ("ALTER TABLE p DETACH PARTITION c FINALIZE", None),
        ("ALTER SUBSCRIPTION s REFRESH PUBLICATION", "ALTER SUBSCRIPTION ... REFRESH PUBLICATION"),
        (
            "ALTER SUBSCRIPTION s SET PUBLICATION p",
            "ALTER SUBSCRIPTION ... PUBLICATION with refresh",
        ),
        ("ALTER SUBSCRIPTION s ADD PUBLICATION p WITH (refresh = false)", None),
        ("ALTER SUBSCRIPTION s DISABLE", None),
        ("CREATE SUBSCRIPTION s CONNECTION '' PUBLICATION p WITH (connect = false)", None),
        ("CREATE SUBSCRIPTION s CONNECTION '' PUBLICATION p WITH (create_slot = off)", None),
        ("ALTER DATABASE d SET TABLESPACE s", "ALTER DATABASE ... SET TABLESPACE"),
        ("ALTER DATABASE d SET work_mem = '1MB'", None),
        ("ALTER DATABASE d CONNECTION LIMIT 3", None),
        ("CLUSTER", "CLUSTER (all tables)"),
        ("CLUSTER VERBOSE", "CLUSTER (all tables)"),
        ("CLUSTER t USING i", None),
        ("DISCARD ALL", "DISCARD ALL"),
        ("DISCARD PLANS", None),
        ("BEGIN ISOLATION LEVEL SERIALIZABLE", "skip"),
        ("START TRANSACTION", "skip"),
        ("COMMIT", "skip"),
        ("END", "skip"),
        ("ROLLBACK", "ROLLBACK"),
        ("ABORT", "ROLLBACK"),
        ("SAVEPOINT a", "SAVEPOINT"),
        ("RELEASE a", "RELEASE"),
        ("ROLLBACK TO a", "ROLLBACK TO"),
        ("PREPARE TRANSACTION 'x'", "PREPARE"),
        ("COMMIT PREPARED 'x'", "COMMIT PREPARED"),
        ("ROLLBACK PREPARED 'x'", "ROLLBACK PREPARED"),
        ("PREPARE p AS SELECT 1", None),
        ("SELECT 1", None),
    ],
)
def test_classify_the_json_tree(sql, verdict):
    assert classify_node(parse(sql, pglast)[0]) == verdict


def test_cluster_of_every_table_is_refused():
    with pytest.raises(ScriptError, match=r"^CLUSTER \(all tables\) cannot run"):
        split("CLUSTER;", pglast)


#: Statements split() looks into, each holding an expression `n` levels deep.
DEEP = [
    lambda n: "PREPARE p AS SELECT " + "1+" * n + "1",
    lambda n: "PREPARE p AS SELECT " + "(SELECT " * n + "1" + ")" * n,
    lambda n: "CREATE INDEX CONCURRENTLY i ON t (a) WHERE " + "NOT " * n + "true",
    lambda n: 'CREATE TABLE t ("concurrently" int[] DEFAULT ' + "ARRAY[" * n + "1" + "]" * n + ")",
    lambda n: "CLUSTER t USING i; DISCARD ALL" + "; COMMIT" * n,
]


def test_too_deep_to_look_into_is_a_clean_error():
    """600 levels pass the parser but not json.loads: a statement split() must look
    into (CREATE INDEX CONCURRENTLY) is refused, not a traceback."""
    with pytest.raises(ScriptError) as info:
        split(f"SELECT 1;\n{DEEP[2](600)};", pglast, keep_outside=True)
    assert info.value.sqlstate == "54001"
    assert info.value.message == "statement too deeply nested (statement 2, line 2)"


@pytest.mark.parametrize("make", [DEEP[0], DEEP[1], DEEP[3]])
def test_too_deep_to_look_into_runs_where_its_kind_says_enough(make):
    """PREPARE and CREATE TABLE are never refused: their trees' kinds say so, and a
    column named concurrently does not make one a suspect."""
    script = split(f"SELECT 1;\n{make(600)};", pglast)
    assert [s.number for s in script.statements] == [1, 2]


def test_too_deep_for_the_parsers_stack_check_is_a_clean_error():
    with pytest.raises(ScriptError) as info:
        split(DEEP[0](60_000), pglast)
    assert (info.value.sqlstate, info.value.message) == (
        "54001", "statement too deeply nested (statement 1, line 1)"
    )  # fmt: skip


@pytest.mark.parametrize("make", DEEP)
def test_any_depth_gives_a_script_error_or_a_script(make):
    for depth in (10, 300, 3_000, 60_000):
        try:
            split(make(depth), pglast, keep_outside=True)
        except ScriptError as exc:
            assert exc.sqlstate in ("42601", "54001", "25001")


def test_deep_nesting_is_not_looked_into_where_nothing_needs_it():
    sql = "SELECT " + "1+" * 60_000 + "1"
    assert split(sql, pglast).statements[0].text == sql


def test_shallow_suspects_still_run():
    script = split("PREPARE p AS SELECT " + "1+" * 100 + "1; BEGIN; COMMIT", pglast)
    assert len(script.statements) == 1


@pytest.mark.parametrize(
    ("sql", "probe"),
    [
        ('CREATE POLICY "my pol" ON s.t USING (true)',
         PolicyProbe("s", "t", "my pol", 'CREATE POLICY "probe" ON s.t USING (true)')),
        ("-- c\ncreate /* x */ policy name on t for select to r using (a = 1)",
         PolicyProbe(None, "t", "name",
                     '-- c\ncreate /* x */ policy "probe" on t for select to r using (a = 1)')),
        ("CREATE POLICY p ON t USING (" + "NOT " * 100 + "true)",
         PolicyProbe(None, "t", "p", 'CREATE POLICY "probe" ON t USING (' + "NOT " * 100
                     + "true)")),
    ],
)  # fmt: skip
def test_policy_probe_renames_the_policy_in_the_text(sql, probe):
    assert policy_probe(sql, "probe", pglast) == probe


@pytest.mark.parametrize(
    "sql",
    ["CREATE TABLE t (a int)", "CREATE POLICY p ON t USING (" + "NOT " * 600 + "true)",
     "CREATE POLICY p ON t USING (" + "1+" * 60_000 + "1)"],
)  # fmt: skip
def test_policy_probe_gives_up_cleanly(sql):
    assert policy_probe(sql, "probe", pglast) is None


@pytest.mark.parametrize(
    ("sql", "plain"),
    [
        ("CREATE UNIQUE INDEX CONCURRENTLY i ON t (a)", "CREATE UNIQUE INDEX i ON t (a)"),
        ("create index concurrently on t (a)", "create index on t (a)"),
        ("CREATE INDEX CONCURRENTLY concurrently ON t (a)", 'CREATE INDEX "concurrently" ON t (a)'),
        ("DROP INDEX /* c */ CONCURRENTLY IF EXISTS i", "DROP INDEX /* c */ IF EXISTS i"),
        ("CREATE INDEX CONCURRENTLY i ON t (a) WHERE " + "1+" * 60_000 + "1 > 0",
         "CREATE INDEX i ON t (a) WHERE " + "1+" * 60_000 + "1 > 0"),
    ],
)  # fmt: skip
def test_without_concurrently(sql, plain):
    assert without_concurrently(sql, pglast) == plain


def test_statements_not_run_keep_every_number():
    script = split("BEGIN;\nSELECT 1;\nCOMMIT;\nSELECT 2;\n", pglast)
    statements = script.statements
    assert len(statements) == 2
    assert [(s.number, s.line, s.text) for s in statements] == [
        (2, 2, "SELECT 1"), (4, 4, "SELECT 2"),
    ]  # fmt: skip
    assert (statements[1].number, statements[-1].number, statements[-2].number) == (4, 4, 2)
    with pytest.raises(IndexError):
        statements[2]


def test_outside_statements_are_marked_in_place():
    script = split("SELECT 1;\nVACUUM t;\nSELECT 2;", pglast, keep_outside=True)
    assert [(s.number, s.outside) for s in script.statements] == [
        (1, None), (2, "VACUUM"), (3, None),
    ]  # fmt: skip


PIECES = [
    "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$\nBEGIN\n"
    + "PERFORM 1;\n" * 40
    + "RETURN 1; END $$;",
    "CREATE FUNCTION g() RETURNS int LANGUAGE sql BEGIN ATOMIC\n" + "SELECT 1;\n" * 30 + "END;",
    "SELECT 'a;b;c;" + "x;" * 50 + "';",
    "/* a comment; with; semicolons; " + "; " * 40 + "*/ SELECT 2;",
    "INSERT INTO t VALUES (1, 'é;');",
    "-- ünïcode; before\n  /* ä; */ SELECT 'ß', $q$;ö;$q$;",
    "SELECT 1; -- a note; DROP TABLE users; x;\nSELECT 3 -- y;\n + 4;",
]


@pytest.mark.parametrize("piece", range(8, 80, 3))
def test_a_semicolon_in_a_line_comment_never_ends_a_piece(monkeypatch, piece):
    monkeypatch.setattr(script_module, "SPLIT_PIECE", piece)
    texts = [s.text for s in split(PIECES[-1] * 3, pglast).statements]
    assert texts == ["SELECT 1", "SELECT 3 -- y;\n + 4"] * 3


@pytest.mark.parametrize("piece", [64, 100, 257, 1 << 14])
def test_splitting_in_pieces_finds_the_statements_of_a_whole_split(monkeypatch, piece):
    sql = "\n".join(PIECES * 5)
    whole = [(s.start, s.stop) for s in pglast.split(sql, with_parser=True, only_slices=True)]
    monkeypatch.setattr(script_module, "SPLIT_PIECE", piece)
    found = [(s.offset, s.end) for s in split(sql, pglast).statements]
    assert found == whole


@pytest.mark.parametrize("piece", [64, 257, 1 << 14])
def test_each_statement_is_given_its_own_tree_from_the_split(monkeypatch, piece):
    deep = "SELECT " + "1+" * 60_000 + "1;"
    sql = "\n".join(PIECES * 3 + [deep] + PIECES)
    monkeypatch.setattr(script_module, "SPLIT_PIECE", piece)
    pieces = []
    script = split(sql, pglast, each=pieces.append)
    given = [(tree, start, stop) for piece in pieces for start, stop, tree in piece]
    assert [(start, stop) for _, start, stop in given] == [
        (s.offset, s.end) for s in script.statements
    ]
    for tree, start, stop in given:
        if sql[start:stop] == deep[:-1]:
            assert tree is None  # too deep for a JSON tree: the analysis is told so
        else:
            own = parse(sql[start:stop], pglast)[0]
            assert _placeless(json.loads(tree)) == _placeless(own)
    assert sum(tree is None for tree, _, _ in given) == 1


def _placeless(node: object) -> object:
    """A parse tree without its locations, which count from where the parse began."""
    if isinstance(node, dict):
        return {k: _placeless(v) for k, v in node.items() if not k.endswith("location")}
    if isinstance(node, list):
        return [_placeless(v) for v in node]
    return node


def test_a_syntax_error_far_into_a_script_names_its_place(monkeypatch):
    monkeypatch.setattr(script_module, "SPLIT_PIECE", 64)
    sql = "SELECT 1;\n" * 100 + "SELEC 2;\n"
    with pytest.raises(ScriptError, match=r"statement 101, line 101, column 1"):
        split(sql, pglast)
