"""No input crashes the server: deeply nested and very long SQL through every entry point.

pglast's AST objects are built by unchecked recursion, so a deep enough expression
handed to them kills the backend with SIGSEGV and the postmaster restarts every
connection. Each statement below may fail with an ordinary SQL error; what must hold
is that the server did not restart and that connections survived: the one that ran
the statement and an idle one beside it (a crash restart keeps
``pg_postmaster_start_time()``, but ends every session).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg
import pytest

from tests.integration.conftest import connect, scalar
from tests.integration.test_scan import app_error, scan_until

#: Expressions deep enough for each guard on the way: the grammar's own stack (10,000
#: parentheses), libpg_query's stack check (60,000 terms), json.loads' recursion limit
#: (a few hundred levels), and what passes them all (a 100,000-element IN list).
DEPTHS: dict[str, str] = {
    "sum": "1+" * 60_000 + "1",
    "parentheses": "(" * 10_000 + "1" + ")" * 10_000,
    "arrays": "ARRAY[" * 3_000 + "1" + "]" * 3_000,
    "arrays_600": "ARRAY[" * 600 + "1" + "]" * 600,
    "case": "CASE WHEN true THEN " * 1_000 + "1" + " END" * 1_000,
    "subselects": "(SELECT " * 1_000 + "1" + ")" * 1_000,
    "subselects_300": "(SELECT " * 300 + "1" + ")" * 300,
    "in_list": "1 IN (" + ",".join(map(str, range(100_000))) + ")",
}

#: Statement shapes that reach pgheal's parsing: the ones it looks into before running
#: (PREPARE, CONCURRENTLY, transaction control, CLUSTER, DISCARD), the ones static
#: analysis reads, and the CREATE POLICY whose name collides (compared by a probe).
STATEMENTS: dict[str, Callable[[str], str]] = {
    "prepare": lambda e: f"PREPARE fuzz_p AS SELECT {e}",
    "explain": lambda e: f"EXPLAIN SELECT {e}",
    "select": lambda e: f"SELECT {e}",
    "insert": lambda e: f"INSERT INTO fuzz (a) SELECT 1 WHERE ({e}) IS NOT NULL",
    "table_default": lambda e: f"CREATE TABLE fuzz_t (a int DEFAULT ({e}))",
    "index_concurrently": lambda e: (
        f"CREATE INDEX CONCURRENTLY fuzz_i ON fuzz (a) WHERE ({e}) IS NOT NULL"
    ),
    "view": lambda e: f"CREATE VIEW fuzz_v AS SELECT {e} AS x",
    "function_sql_body": lambda e: (
        f"CREATE FUNCTION fuzz_f() RETURNS int LANGUAGE sql AS $body$SELECT {e}$body$"
    ),
    "function_begin_atomic": lambda e: (
        f"CREATE FUNCTION fuzz_g() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT {e}; END"
    ),
    "function_plpgsql": lambda e: (
        f"CREATE FUNCTION fuzz_h() RETURNS int LANGUAGE plpgsql AS $body$"
        f"DECLARE v int; BEGIN v := {e}; IF ({e}) IS NULL THEN RETURN {e}; END IF; RETURN 1;"
        " END$body$"
    ),
    "policy": lambda e: f"CREATE POLICY fuzz_pol ON fuzz USING (({e}) IS NOT NULL)",
    "do": lambda e: f"DO $body$BEGIN PERFORM {e}; END$body$",
    "cluster_junk": lambda e: f"CLUSTER fuzz {e}",
    "discard_junk": lambda e: f"DISCARD ALL {e}",
    "begin_junk": lambda e: f"BEGIN {e}",
    "commit_junk": lambda e: f"COMMIT {e}",
    "word_concurrently": lambda e: f'CREATE TABLE fuzz_c ("concurrently" int DEFAULT ({e}))',
}

#: What the statements refer to; the policy exists, so a CREATE POLICY collides.
SETUP = """CREATE TABLE fuzz (a int PRIMARY KEY);
CREATE POLICY fuzz_pol ON fuzz USING (true)"""

ENTRIES: dict[str, str] = {
    "migrate": "CALL heal.migrate(%s)",
    "plan": "SELECT * FROM heal.plan(%s)",
    "ddl_trigger": "",  # the statement itself, from a plain connection
}


@dataclass
class Alive:
    """What a crash restart would change: the postmaster, and every session."""

    conn: psycopg.Connection
    idle: psycopg.Connection
    started: object

    def check(self, what: str) -> None:
        for c in (self.conn, self.idle):
            assert not c.closed, f"connection lost after {what}"
            assert scalar(c, "SELECT pg_catalog.pg_postmaster_start_time()") == self.started, (
                f"server restarted after {what}"
            )


@pytest.fixture
def alive(conn: psycopg.Connection, dsn: str) -> Iterator[Alive]:
    """The test database with the tables the statements use, watched for a crash."""
    conn.execute(SETUP)
    with connect(dsn) as idle:
        yield Alive(conn, idle, scalar(idle, "SELECT pg_catalog.pg_postmaster_start_time()"))


def try_sql(conn: psycopg.Connection, query: str, params: tuple | None = None) -> None:
    """Run `query`; an ordinary SQL error is fine, a crash is not (checked afterwards),
    nor is pgheal's own failure (PL/Python's 38000, an internal XX000: a traceback)."""
    try:
        conn.execute(query, params)
    except psycopg.Error as exc:
        state = exc.sqlstate or ""
        assert state[:2] not in ("38", "XX"), f"pgheal failed: {state} {exc}"


#: What the DDL trigger sees (see sql/idempotent/0030_event_triggers.sql); the other
#: statements never reach it.
TRIGGER_DDL = frozenset({"table_default", "index_concurrently", "view", "function_sql_body",
                         "function_begin_atomic", "function_plpgsql", "policy",
                         "word_concurrently"})  # fmt: skip
CASES = [
    (statement, entry)
    for statement in STATEMENTS
    for entry in ENTRIES
    if entry != "ddl_trigger" or statement in TRIGGER_DDL
]


@pytest.mark.parametrize(("statement", "entry"), CASES)
def test_deep_sql_does_not_crash_the_server(alive, statement, entry):
    for depth, expression in DEPTHS.items():
        sql = STATEMENTS[statement](expression)
        if ENTRIES[entry]:
            try_sql(alive.conn, ENTRIES[entry], (sql,))
        else:
            try_sql(alive.conn, sql)
        alive.check(f"{statement} with {depth} through {entry}")


#: PL/pgSQL blocks nested past pgheal's own limit, and past the grammar's.
BLOCKS = {depth: "BEGIN " + "IF true THEN " * depth + "PERFORM gen_random_uuid(); "
          + "END IF; " * depth + "END" for depth in (60, 65, 5_000, 20_000)}  # fmt: skip


@pytest.mark.parametrize("entry", list(ENTRIES))
def test_deeply_nested_plpgsql_blocks_do_not_crash_the_server(alive, entry):
    for depth, body in BLOCKS.items():
        for sql in (f"CREATE OR REPLACE FUNCTION fuzz_b() RETURNS void LANGUAGE plpgsql AS "
                    f"$body${body}$body$", f"DO $body${body}$body$"):  # fmt: skip
            if ENTRIES[entry]:
                try_sql(alive.conn, ENTRIES[entry], (sql,))
            else:
                try_sql(alive.conn, sql)
            alive.check(f"PL/pgSQL nested {depth} deep through {entry}")


def test_whole_scripts_of_deep_statements(alive):
    """All of it in one script, as a migration tool would send it."""
    for depth in ("sum", "subselects_300", "arrays_600"):
        script = ";\n".join(make(DEPTHS[depth]) for make in STATEMENTS.values())
        for entry in ("migrate", "plan"):
            try_sql(alive.conn, ENTRIES[entry], (script,))
            alive.check(f"a script of {depth} through {entry}")


def test_the_scan_reads_deep_failed_statements(alive, dsn):
    """Failed statements land in the server log with their text; the scan reads it."""
    conn = alive.conn
    conn.execute("SELECT heal.skip_log_backlog()")
    failed = 0
    for depth in ("sum", "subselects_300", "in_list"):
        for name, make in STATEMENTS.items():
            if name == "function_plpgsql":
                continue  # a PL/pgSQL body is checked when it runs: creating it succeeds
            # no_such_fuzz_function() makes each fail, if its depth did not already
            app_error(dsn, make(f"no_such_fuzz_function() + ({DEPTHS[depth]})"))
            failed += 1
    # A failed migration, which the scan may retry.
    try_sql(conn, "CALL heal.migrate(%s)", (STATEMENTS["prepare"](DEPTHS["subselects_300"]),))
    scan_until(conn, f"SELECT count(*) >= {failed} FROM heal.error_events", scans=300)
    conn.execute("CALL heal.scan()")
    alive.check("the scan")


def test_deeper_than_the_default_stack_allows(alive):
    """With max_stack_depth raised, the server runs deeper trees than pglast's AST
    building survives, and pgheal sees them after the server did (a policy collision)."""
    alive.conn.execute("SET max_stack_depth = '7MB'")  # 8 MB is Debian's ulimit -s
    for terms in (10_000, 20_000):
        expression = "1+" * terms + "1"
        for statement in ("policy", "prepare", "table_default", "function_begin_atomic"):
            sql = STATEMENTS[statement](expression)
            for entry, query in ENTRIES.items():
                if query:
                    try_sql(alive.conn, query, (sql,))
                else:
                    try_sql(alive.conn, sql)
                alive.check(f"{statement} with {terms} terms through {entry}")
    # The collision is reported as the server's own error: the comparison gave up cleanly.
    with pytest.raises(psycopg.Error) as info:
        alive.conn.execute(ENTRIES["migrate"], (STATEMENTS["policy"]("1+" * 20_000 + "1"),))
    assert info.value.sqlstate == "42710"
