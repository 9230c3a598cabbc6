"""Static analysis: what a script needs, what it creates, the search_path it sets."""

from __future__ import annotations

import pglast

from heal.analyze import Snapshot, names, parse, predict, statement
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
