"""Static analysis: what a script needs, what it creates, the search_path it sets."""

from __future__ import annotations

from pathlib import Path

import pglast
import pytest

from heal import analyze
from heal.analyze import Snapshot, names, parse, predict, signature, statement
from heal.errors import Missing


def analysed(sql: str):
    return [statement(tree) for tree in parse(sql, pglast)]


CATALOG = Snapshot(
    schemas={"public", "extensions"},
    functions={
        "now": [("pg_catalog", 0, 0)],
        "uuid_generate_v4": [("extensions", 0, 0)],
        "lower": [("pg_catalog", 1, 1)],
        "set_config": [("pg_catalog", 3, 3)],
    },
    types={"text": {"pg_catalog"}, "uuid": {"pg_catalog"}, "citext": {"extensions"}},
    access_methods={"btree", "gin", "gist"},
    extension_objects={"citext": {("type", "citext")}},
)


def test_references_of_a_create_table():
    (stmt,) = analysed(
        "CREATE TABLE app.t (id uuid DEFAULT uuid_generate_v4(), e citext[], n serial,"
        " d double precision)"
    )
    assert Missing("schema", "app") in stmt.refs
    assert Missing("function", "uuid_generate_v4", None, ()) in stmt.refs
    assert Missing("type", "citext") in stmt.refs
    assert not any(r.name in ("serial", "float8") for r in stmt.refs)
    assert ("type", "t") in stmt.creates


def test_predict_reports_each_missing_dependency_once():
    found = predict(
        analysed(
            "CREATE TABLE a (e citext); CREATE TABLE b (e citext);"
            " CREATE TABLE c (id uuid DEFAULT uuid_generate_v4())"
        ),
        CATALOG,
        ["public"],
    )
    assert found == {
        0: [Missing("type", "citext")],
        2: [Missing("function", "uuid_generate_v4", None, ())],
    }


def test_what_the_script_creates_or_installs_is_not_missing():
    found = predict(
        analysed(
            "CREATE SCHEMA app; CREATE TABLE app.t (a int);"
            " CREATE TYPE mood AS ENUM ('ok'); CREATE TABLE m (x mood);"
            " CREATE EXTENSION citext; CREATE TABLE e (x citext);"
        ),
        CATALOG,
        ["public"],
    )
    assert found == {}


def test_search_path_set_by_the_script_is_followed():
    stmts = analysed(
        "SET search_path = public, extensions; CREATE TABLE a (x citext);"
        "SELECT pg_catalog.set_config('search_path', '', false); CREATE TABLE b (y citext);"
    )
    found = predict(stmts, CATALOG, ["public"])
    assert found == {3: [Missing("type", "citext")]}
    dynamic = analysed(
        "SELECT set_config('search_path', current_user, false); CREATE TABLE c (x citext)"
    )
    assert predict(dynamic, CATALOG, ["public"]) == {}


def test_index_opclass_access_method_tablesample_and_operators():
    (index,) = analysed("CREATE INDEX i ON t USING bloom (a my_ops)")
    assert Missing("access_method", "bloom") in index.refs
    assert Missing("opclass", "my_ops", None, ("bloom",)) in index.refs
    (view,) = analysed("CREATE VIEW v AS SELECT * FROM t TABLESAMPLE system_rows(3) WHERE a <%> b")
    assert Missing("tablesample", "system_rows") in view.refs
    assert Missing("operator", "<%>", None, ("unknown", "unknown")) in view.refs


def test_names_collects_lookups():
    wanted = names(analysed("CREATE TABLE x.t (a citext DEFAULT f(1)); CREATE EXTENSION hstore"))
    assert wanted.schemas == {"x"}
    assert wanted.types == {"citext"} and wanted.functions == {"f"}
    assert wanted.extensions == {"hstore"}


def test_sql_function_string_bodies_are_looked_into():
    (stmt,) = [
        statement(tree, pglast)
        for tree in parse(
            "CREATE FUNCTION f(a text) RETURNS real LANGUAGE sql "
            "AS $$ SELECT similarity(a, 'x') $$",
            pglast,
        )
    ]
    assert Missing("function", "similarity", None, ("unknown", "unknown")) in stmt.refs
    (plpgsql,) = [
        statement(tree, pglast)
        for tree in parse(
            "CREATE FUNCTION g() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN nope(); END $$",
            pglast,
        )
    ]
    assert not any(r.name == "nope" for r in plpgsql.refs)


CORPUS = Path(__file__).parents[1] / "corpus"
SHAPES = [
    "CREATE TABLE d1 (id bigint PRIMARY KEY, label text NOT NULL, at timestamptz)",
    "CREATE INDEX d1_label_idx ON d1 (label)",
    "CREATE INDEX i ON t USING gin (doc)",
    "CREATE INDEX i ON t USING bloom ((lower(a)), b)",
    "CREATE FUNCTION d1_count() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM d1 $$",
    "CREATE FUNCTION f(a text) RETURNS real LANGUAGE sql AS $$ SELECT similarity(a, 'x') $$",
    "CREATE FUNCTION g() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN nope(); END $$",
    "CREATE FUNCTION h(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT a <%> 2; END",
    "CREATE FUNCTION k() RETURNS int LANGUAGE sql AS 'SELECT 1; SELECT f()'",
    "CREATE FUNCTION s.k() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE TABLE t (a int CHECK (a > 0 AND f(a) @@ g(a, a)), b t2 DEFAULT '{}'::hstore)",
    "CREATE TABLE t (a int4 DEFAULT pg_catalog.now(), c serial, d ext.citext)",
    "CREATE FUNCTION f(a t.b%TYPE) RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE TABLE t (a text) USING columnar",
    "CREATE VIEW v AS SELECT x FROM t TABLESAMPLE bernoulli(5) WHERE - a = 1",
    'CREATE VIEW v AS SELECT \'"FuncCall":{\' AS """TypeName"":{" FROM t',
    "CREATE TYPE mood AS ENUM ('a'); CREATE TABLE m (x mood)",
    "ALTER TABLE t ADD COLUMN e citext DEFAULT uuid_generate_v4()",
    "CREATE DOMAIN email AS citext CHECK (VALUE ~ '@')",
]


def statements_to_compare() -> list[str]:
    found = list(SHAPES)
    for path in sorted(CORPUS.glob("*/*.sql")):
        try:
            found += [s.strip() for s in pglast.split(path.read_text())]
        except pglast.parser.ParseError:
            continue  # the corpus of refusals holds a syntax error on purpose
    return found


def refs_of(sql: str) -> list[str]:
    (stmt,) = analysed(sql)
    return sorted(map(repr, stmt.refs))


def signature_of(sql: str):
    return signature(pglast.parser.parse_sql_json(sql), pglast)


def test_statements_with_one_signature_have_the_same_references():
    """The DDL trigger keeps its verdict per signature: it must say all that refs depend on."""
    groups: dict[tuple, set[tuple[str, ...]]] = {}
    for sql in statements_to_compare():
        shape = signature_of(sql)
        if shape is not None:
            groups.setdefault(shape, set()).add(tuple(refs_of(sql)))
    assert len(groups) > 40
    assert {shape: refs for shape, refs in groups.items() if len(refs) > 1} == {}


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("CREATE TABLE a (x text, y int)", "CREATE TABLE b (z text, w int NOT NULL)"),
        ("CREATE INDEX i ON a (x)", "CREATE UNIQUE INDEX j ON b (y, z)"),
        (
            "CREATE FUNCTION f() RETURNS bigint LANGUAGE sql AS $$ SELECT count(*) FROM a $$",
            "CREATE FUNCTION g() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM b'",
        ),
        ("CREATE TABLE a (x text DEFAULT lower('A'))", "CREATE TABLE b (y text DEFAULT lower(z))"),
        (
            "CREATE PROCEDURE p(a int) LANGUAGE sql AS 'SELECT abs(a)'",
            "CREATE OR REPLACE PROCEDURE q(b int) LANGUAGE sql AS 'SELECT abs(b)'",
        ),
    ],
)
def test_tables_columns_and_constants_do_not_change_the_signature(one, other):
    assert signature_of(one) is not None
    assert signature_of(one) == signature_of(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("CREATE TABLE a (x text)", "CREATE TABLE a (x citext)"),
        ("CREATE TABLE a (x int DEFAULT f(1))", "CREATE TABLE a (x int DEFAULT f(1, 2))"),
        ("CREATE TABLE a (x int DEFAULT f())", "CREATE TABLE a (x int DEFAULT g())"),
        ("CREATE TABLE a (x int CHECK (x > 0))", "CREATE TABLE a (x int CHECK (- x > 0))"),
        ("CREATE TABLE a (x int CHECK (x > 0))", "CREATE TABLE a (x int CHECK (x <%> 0))"),
        ("CREATE INDEX i ON a USING gin (x)", "CREATE INDEX i ON a USING bloom (x)"),
        (
            "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql AS 'SELECT a'",
            "CREATE FUNCTION f(a b.c%TYPE) RETURNS int LANGUAGE sql AS 'SELECT a'",
        ),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT count(*) FROM a'",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT similarity(1, 2)'",
        ),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT nope()'",
            "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS 'SELECT nope()'",
        ),
    ],
)
def test_what_references_depend_on_changes_the_signature(one, other):
    assert signature_of(one) != signature_of(other)


def test_the_schemas_a_statement_names_are_in_its_signature():
    """A verdict kept per signature holds only while these schemas exist: the trigger
    asks each time (``analyze.named_schemas``)."""
    for sql, schemas in (
        ("CREATE TABLE app.t (a int)", {"app"}),
        ("CREATE FUNCTION s.k() RETURNS int LANGUAGE sql AS 'SELECT 1'", {"s"}),
        ('CREATE VIEW "W x".v AS SELECT a FROM app.t', {"W x", "app"}),
        ("CREATE FUNCTION k() RETURNS int LANGUAGE sql AS 'SELECT count(*) FROM b.t'", {"b"}),
        ("CREATE TABLE t (a int)", set()),
        # Escaped in the JSON tree, decoded; a name without a backslash there is as it is.
        ('CREATE TABLE "back\\slash".t (a int)', {"back\\slash"}),
        ('CREATE TABLE "q""uote".t (a int)', {'q"uote'}),
        ('CREATE TABLE "tab\there".t (a int)', {"tab\there"}),
        ('CREATE VIEW "schéma".v AS SELECT 1', {"schéma"}),
    ):
        assert analyze.named_schemas(signature_of(sql)) == schemas, sql
    assert signature_of("CREATE TABLE app.t (a int)") != signature_of("CREATE TABLE w.t (a int)")


def test_an_index_whose_columns_decide_says_which_they_are():
    """A GIN, GiST, SP-GiST or BRIN index's signature holds only with its columns' types,
    which the trigger's wrapper asks of the catalog each time."""
    gin = "CREATE INDEX i ON app.t USING gin (b, a, (lower(c)), a)"
    assert analyze.columns_decide(signature_of(gin))
    assert signature_of(gin) == signature_of("CREATE INDEX j ON app.u USING gin (x, (lower(y)))")
    tree = pglast.parser.parse_sql_json(gin)
    assert analyze.indexed_columns(tree) == ("app", "t", ["a", "b"], "gin")
    assert analyze.indexed_columns(pglast.parser.parse_sql_json(
        'CREATE INDEX ON "T" USING brin ("A b")')) == (None, "T", ["A b"], "brin")  # fmt: skip
    assert analyze.indexed_columns(pglast.parser.parse_sql_json(
        "CREATE INDEX ON db.s.t USING gist (a)")) is None  # fmt: skip
    for plain in ("CREATE INDEX i ON t (a)", "CREATE INDEX i ON t USING hash (a)",
                  "CREATE INDEX i ON t USING bloom (a)"):  # fmt: skip
        assert not analyze.columns_decide(signature_of(plain)), plain


def test_what_the_signature_leaves_to_the_full_analysis():
    for sql in (
        "ALTER TABLE t SET SCHEMA app",
        "CREATE INDEX i ON t USING gin (a gin_trgm_ops)",
        "CREATE VIEW v AS SELECT x FROM t TABLESAMPLE system_rows(5)",
        "CREATE TYPE mood AS ENUM ('a'); CREATE TABLE m (x mood)",
        "CREATE FUNCTION k() RETURNS int LANGUAGE sql AS 'SELECT 1; SELECT f()'",
        "CREATE VIEW v AS SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM t",
    ):
        assert signature_of(sql) is None, sql


def test_an_ordered_set_aggregate_s_sort_keys_are_arguments():
    """pg_proc counts WITHIN GROUP's sort keys among the arguments; an aggregate's own
    ORDER BY is no argument."""
    (stmt,) = analysed(
        "CREATE VIEW v AS SELECT my_pct(0.5) WITHIN GROUP (ORDER BY x), "
        "my_mode() WITHIN GROUP (ORDER BY x), my_agg(x ORDER BY y) FROM t"
    )
    arity = {r.name: len(r.args) for r in stmt.refs if r.kind == "function"}
    assert arity == {"my_pct": 2, "my_mode": 1, "my_agg": 1}


def _analysed(sql: str) -> list:
    """Each statement of `sql`, analysed with its own text."""
    tree_json = pglast.parser.parse_sql_json(sql)
    return [
        analyze.statement(tree, pglast, text) for tree, text in analyze.with_texts(tree_json, sql)
    ]


def test_a_plpgsql_body_s_static_sql_is_looked_into():
    (fn,) = _analysed(
        "CREATE FUNCTION mk(a int) RETURNS uuid LANGUAGE plpgsql AS $$"
        "DECLARE v text; BEGIN v := lower(levenshtein('a', 'b')::text); PERFORM hstore(v, v);"
        " INSERT INTO t SELECT similarity(v, v); RETURN extensions.uuid_generate_v4();"
        " EXECUTE 'SELECT never_looked_at()'; END$$"
    )
    assert {(r.kind, r.name, r.schema) for r in fn.deferred} == {
        ("function", "lower", None), ("type", "text", None),  # pg_catalog's, looked up later
        ("function", "levenshtein", None), ("function", "hstore", None),
        ("function", "similarity", None), ("function", "uuid_generate_v4", "extensions"),
    }  # fmt: skip
    assert fn.refs == [Missing("type", "uuid")]  # its return type; the body waits for a call
    (block,) = _analysed("DO $$BEGIN PERFORM gen_salt('bf'); END$$")
    assert [(r.kind, r.name) for r in block.refs] == [("function", "gen_salt")]


def test_a_body_too_deep_or_broken_is_left_to_the_server():
    deep = "BEGIN " + "IF x THEN " * 100 + "PERFORM f(); " + "END IF; " * 100 + "END"
    (fn,) = _analysed(f"CREATE FUNCTION d() RETURNS void LANGUAGE plpgsql AS $${deep}$$")
    assert fn.deferred == []
    (broken,) = _analysed(
        "CREATE FUNCTION b() RETURNS int LANGUAGE plpgsql AS $$BEGIN RETURN 1 +; END$$"
    )
    assert broken.deferred == []


def test_body_refs_wait_for_what_the_whole_script_creates():
    statements = _analysed(
        "CREATE FUNCTION a() RETURNS int LANGUAGE plpgsql AS $$BEGIN RETURN b() + c(); END$$;"
        "CREATE FUNCTION b() RETURNS int LANGUAGE sql AS 'SELECT 1';"
    )
    found = analyze.predict(statements, analyze.Snapshot(schemas={"public"}), ["public"])
    assert [r.name for r in found[0] if r.kind == "function"] == ["c"]
    assert found.deferred == set(found[0])


def test_a_create_with_no_schema_on_the_path_to_land_in_needs_the_first():
    statements = [statement(t) for t in parse(
        "SELECT pg_catalog.set_config('search_path', 'app', false);"
        "CREATE TABLE t (a int); CREATE TEMP TABLE u (a int); CREATE TABLE public.v (a int)",
        pglast)]  # fmt: skip
    found = predict(statements, Snapshot(schemas={"public"}), ["public"])
    assert found == {1: [Missing("schema", "app")]}
    assert not predict(statements[1:], Snapshot(schemas={"public"}), ["public"])
